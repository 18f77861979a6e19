#!/usr/bin/python3
"""Byte-level BPE tokenizer of the bundled tiny model: training, encoding, corpus tokenization.

Same pipeline as llama.cpp's `gpt2` tokenizer with the `qwen35` pre-tokenizer (specs/qwen35.md 5.2):
special-token partition (USER_DEFINED tokens always, CONTROL tokens only with parse_special), the qwen35
pre-tokenizer regex, GPT-2 byte-to-unicode mapping, then BPE merges by rank (lowest rank first, leftmost
on ties). The vocabulary is [256 byte tokens] + [merged tokens in merge order] + [special tokens].

  tokenizer.py train  --corpus DIR --out TOK.json [--vocab 8192]
  tokenizer.py encode --tok TOK.json --corpus DIR --out DIR     (train.bin / test.bin, uint16, + .idx)
  tokenizer.py tok    --tok TOK.json [--special] TEXT           (prints ids; for checks against llama.cpp)

The .bin files are the documents' tokens, each document followed by <|endoftext|>; the .idx files hold
int64 [start, end) token offsets of every document (end excludes the <|endoftext|>).
"""
import argparse, heapq, json, os, sys, time

import regex

QWEN35_PRE = (r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}"
              r"| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
PRE = regex.compile(QWEN35_PRE)

# Special tokens (qwen35.md 5.3, same order as Qwen's added-token block) + the DFlash mask token.
TT_NORMAL, TT_CONTROL, TT_USER_DEFINED = 1, 3, 4
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
            "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
            "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>",
            "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>",
            "<tool_response>", "</tool_response>", "<think>", "</think>", "<|mask|>"]


def special_type(s):
    return TT_CONTROL if s.startswith("<|") and s.endswith("|>") else TT_USER_DEFINED


def bytes_to_unicode():
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


B2U = bytes_to_unicode()


def pre_tokens(text):
    """Byte-level-encoded pre-tokens of a span without special tokens."""
    return ["".join(B2U[b] for b in m.encode("utf-8")) for m in PRE.findall(text)]


class Tokenizer:
    def __init__(self, tokens, types, merges):
        self.tokens, self.types, self.merges = tokens, types, merges
        self.id = {t: i for i, t in enumerate(tokens)}
        self.rank = {tuple(m.split(" ")): r for r, m in enumerate(merges)}
        self.cache = {}
        user = [t for t, ty in zip(tokens, types) if ty == TT_USER_DEFINED]
        ctrl = [t for t, ty in zip(tokens, types) if ty == TT_CONTROL]
        self.re_user = self._alt(user)
        self.re_all = self._alt(user + ctrl)

    @staticmethod
    def _alt(toks):
        if not toks:
            return None
        return regex.compile("|".join(regex.escape(t) for t in sorted(toks, key=lambda t: (-len(t), t))))

    @classmethod
    def load(cls, path):
        with open(path) as f:
            d = json.load(f)
        return cls(d["tokens"], d["types"], d["merges"])

    def bpe(self, word):
        ids = self.cache.get(word)
        if ids is not None:
            return ids
        parts = list(word)
        while len(parts) > 1:
            best, bi = None, -1
            for i in range(len(parts) - 1):
                r = self.rank.get((parts[i], parts[i + 1]))
                if r is not None and (best is None or r < best):
                    best, bi = r, i
            if best is None:
                break
            parts[bi:bi + 2] = [parts[bi] + parts[bi + 1]]
        ids = [self.id[p] for p in parts]
        self.cache[word] = ids
        return ids

    def encode(self, text, parse_special=False):
        out = []
        rx = self.re_all if parse_special else self.re_user
        pos = 0
        spans = []
        if rx is not None:
            for m in rx.finditer(text):
                spans.append((text[pos:m.start()], None))
                spans.append((None, self.id[m.group(0)]))
                pos = m.end()
        spans.append((text[pos:], None))
        for span, sid in spans:
            if sid is not None:
                out.append(sid)
            elif span:
                for w in pre_tokens(span):
                    out.extend(self.bpe(w))
        return out

    def decode(self, ids):
        u2b = {u: b for b, u in B2U.items()}
        out = bytearray()
        for i in ids:
            t = self.tokens[i]
            if self.types[i] == TT_NORMAL:
                out += bytes(u2b[c] for c in t)
            else:
                out += t.encode()
        return out.decode("utf-8", errors="replace")


def iter_docs(path):
    with open(path) as f:
        for line in f:
            yield json.loads(line)


def doc_spans(doc):
    """Text spans to train BPE on: chat documents are split at their special tokens."""
    if doc["src"] != "chat":
        return [doc["text"]]
    return regex.split("|".join(regex.escape(s) for s in SPECIALS), doc["text"])


def train(corpus, vocab_size, log=sys.stderr):
    t0 = time.time()
    counts = {}
    for doc in iter_docs(os.path.join(corpus, "train.jsonl")):
        for span in doc_spans(doc):
            for w in pre_tokens(span):
                counts[w] = counts.get(w, 0) + 1
    print("tokenizer: %d distinct pre-tokens (%.0f s)" % (len(counts), time.time() - t0), file=log)

    tokens = [B2U[b] for b in range(256)]
    tok_id = {t: i for i, t in enumerate(tokens)}
    words = sorted(counts.items())                 # deterministic word order
    syms = [[tok_id[c] for c in w] for w, _ in words]
    freq = [c for _, c in words]
    pair_count, where = {}, {}
    for wi, s in enumerate(syms):
        for a, b in zip(s, s[1:]):
            pair_count[(a, b)] = pair_count.get((a, b), 0) + freq[wi]
            where.setdefault((a, b), set()).add(wi)
    # heap key: highest count first, then the pair's token strings (deterministic tie-break)
    heap = [(-c, tokens[a], tokens[b], a, b) for (a, b), c in pair_count.items()]
    heapq.heapify(heap)
    merges = []
    n_merge_tokens = vocab_size - 256 - len(SPECIALS)
    while len(tokens) - 256 < n_merge_tokens and heap:
        negc, _, _, a, b = heapq.heappop(heap)
        c = pair_count.get((a, b), 0)
        if c <= 0:
            continue
        if c != -negc:
            heapq.heappush(heap, (-c, tokens[a], tokens[b], a, b))
            continue
        new = tokens[a] + tokens[b]
        merges.append(tokens[a] + " " + tokens[b])
        if new in tok_id:
            nid = tok_id[new]
        else:
            nid = len(tokens)
            tokens.append(new)
            tok_id[new] = nid
        changed = set()
        for wi in sorted(where.pop((a, b), ())):
            s, f = syms[wi], freq[wi]
            for p in zip(s, s[1:]):
                pair_count[p] -= f
                changed.add(p)
                ws = where.get(p)
                if ws is not None:
                    ws.discard(wi)
            out, i = [], 0
            while i < len(s):
                if i + 1 < len(s) and s[i] == a and s[i + 1] == b:
                    out.append(nid)
                    i += 2
                else:
                    out.append(s[i])
                    i += 1
            syms[wi] = out
            for p in zip(out, out[1:]):
                pair_count[p] = pair_count.get(p, 0) + f
                where.setdefault(p, set()).add(wi)
                changed.add(p)
        pair_count.pop((a, b), None)
        for p in changed:
            c2 = pair_count.get(p, 0)
            if c2 > 0:
                heapq.heappush(heap, (-c2, tokens[p[0]], tokens[p[1]], p[0], p[1]))
            elif p in pair_count:
                del pair_count[p]
        if len(merges) % 1000 == 0:
            print("tokenizer: %d merges, last %r (%.0f s)" % (len(merges), new, time.time() - t0), file=log)
    types = [TT_NORMAL] * len(tokens)
    for s in SPECIALS:
        tokens.append(s)
        types.append(special_type(s))
    print("tokenizer: vocab %d (%d merges) in %.0f s" % (len(tokens), len(merges), time.time() - t0), file=log)
    return Tokenizer(tokens, types, merges)


def encode_corpus(tok, corpus, out):
    import numpy as np
    eot = tok.id["<|endoftext|>"]
    stats = {}
    for split in ("train", "test"):
        ids, idx = [], []
        nbytes = 0
        for doc in iter_docs(os.path.join(corpus, split + ".jsonl")):
            t = tok.encode(doc["text"], parse_special=(doc["src"] == "chat"))
            idx.append((len(ids), len(ids) + len(t)))
            ids.extend(t)
            ids.append(eot)
            nbytes += len(doc["text"].encode())
        np.asarray(ids, dtype=np.uint16).tofile(os.path.join(out, split + ".bin"))
        np.asarray(idx, dtype=np.int64).tofile(os.path.join(out, split + ".idx"))
        stats[split] = {"tokens": len(ids), "docs": len(idx), "bytes": nbytes,
                        "bytes_per_token": nbytes / max(1, len(ids) - len(idx))}
        print("tokenizer: %s %d tokens, %.2f bytes/token" % (split, len(ids), stats[split]["bytes_per_token"]),
              file=sys.stderr)
    with open(os.path.join(out, "tokens.json"), "w") as f:
        json.dump(stats, f, indent=1)
    return stats


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("train")
    a.add_argument("--corpus", required=True)
    a.add_argument("--out", required=True)
    a.add_argument("--vocab", type=int, default=8192)
    a = sub.add_parser("encode")
    a.add_argument("--tok", required=True)
    a.add_argument("--corpus", required=True)
    a.add_argument("--out", required=True)
    a = sub.add_parser("tok")
    a.add_argument("--tok", required=True)
    a.add_argument("--special", action="store_true")
    a.add_argument("text")
    args = ap.parse_args()
    if args.cmd == "train":
        tok = train(args.corpus, args.vocab)
        with open(args.out, "w") as f:
            json.dump({"tokens": tok.tokens, "types": tok.types, "merges": tok.merges}, f, ensure_ascii=False)
    elif args.cmd == "encode":
        encode_corpus(Tokenizer.load(args.tok), args.corpus, args.out)
    else:
        print(" ".join(map(str, Tokenizer.load(args.tok).encode(args.text, args.special))))


if __name__ == "__main__":
    main()
