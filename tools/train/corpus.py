#!/usr/bin/python3
"""Assemble the training corpus of the bundled tiny model from text installed on this Debian machine.

Sources are pinned to a fixed list of Debian packages (read from dpkg's file lists), so installing other
packages does not change the corpus; with the same package versions the output is byte-identical.

  python   .py files of the Python 3.11 standard library
  c        C headers (/usr/include/**.h) of glibc, Linux UAPI, CPython, OpenSSL, zlib, PCRE2
  shell    shell scripts (#!/bin/sh, #!/bin/bash) of core packages
  man      manual pages of core packages rendered to plain ASCII text (man --nj --nh -P cat)
  doc      README / NEWS / guide text from /usr/share/doc of the same packages
  chat     short question/answer conversations in the Qwen3.5 chat format, built from the NAME and
           DESCRIPTION of the man pages and from Python docstrings (so the model knows the turn format)

Capped sources are sampled by sha256 of the path (deterministic, spread over the whole tree); the output
is ordered by (source, path). The held-out test split is by file: sha256("split:" + path) mod 100 < 2.

Outputs in OUT (default /work/scratch/train/corpus):
  train.jsonl, test.jsonl   one document per line: {"src", "path", "pkg", "text"}
  manifest.tsv              src, split, pkg, bytes, sha256[:16] of text, path
  licences.tsv              pkg, version, licence summary, copyright file
  summary.json              bytes / docs per source and split, sha256 of train and test
"""
import argparse, ast, concurrent.futures, gzip, hashlib, json, os, re, subprocess, sys

# Package -> licence summary (from each package's /usr/share/doc/<pkg>/copyright).
PACKAGES = {
    "libpython3.11-stdlib": "PSF-2.0 (Python Software Foundation License)",
    "libpython3.11-minimal": "PSF-2.0 (Python Software Foundation License)",
    "libpython3.11-dev": "PSF-2.0 (Python Software Foundation License)",
    "libc6-dev": "LGPL-2.1+ (GNU C Library)",
    "linux-libc-dev": "GPL-2.0 WITH Linux-syscall-note (Linux UAPI headers)",
    "libssl-dev": "Apache-2.0 (OpenSSL 3)",
    "zlib1g-dev": "Zlib",
    "libpcre2-dev": "BSD-3-Clause WITH PCRE2-exception",
    "manpages": "various permissive man-pages licences (Linux man-pages project; see copyright)",
    "manpages-dev": "various permissive man-pages licences (Linux man-pages project; see copyright)",
    "coreutils": "GPL-3.0+ (docs: GFDL-1.3+)",
    "git": "GPL-2.0 (some parts LGPL-2.1+, BSD, MIT)",
    "git-man": "GPL-2.0",
    "gzip": "GPL-3.0+",
    "gettext-base": "GPL-3.0+",
    "apt": "GPL-2.0+",
    "debianutils": "GPL-2.0+ / public domain",
    "dpkg": "GPL-2.0+",
    "dpkg-dev": "GPL-2.0+",
    "bzip2": "BSD-style (bzip2 licence)",
    "xz-utils": "public domain / GPL-2.0+ / LGPL-2.1+",
    "e2fsprogs": "GPL-2.0 / LGPL-2.0 / BSD-3-Clause / MIT",
    "ucf": "GPL-2.0",
    "sensible-utils": "GPL-2.0+",
    "groff-base": "GPL-3.0+",
    "openssh-client": "BSD-2-Clause / BSD-3-Clause / ISC / public domain",
    "openssl": "Apache-2.0",
    "iproute2": "GPL-2.0",
    "util-linux": "GPL-2.0+ / LGPL-2.1+ / BSD / public domain",
    "systemd": "LGPL-2.1+ / GPL-2.0+",
    "bash": "GPL-3.0+",
    "grep": "GPL-3.0+",
    "sed": "GPL-3.0+",
    "tar": "GPL-3.0+",
    "findutils": "GPL-3.0+",
    "make": "GPL-3.0+",
    "mawk": "GPL-2.0",
    "binutils": "GPL-3.0+ (docs: GFDL)",
    "diffutils": "GPL-3.0+",
    "less": "GPL-3.0+ or BSD-2-Clause (less licence)",
    "procps": "GPL-2.0+ / LGPL-2.0+",
    "curl": "curl licence (MIT-style)",
    "wget": "GPL-3.0+",
    "man-db": "GPL-2.0+",
}

PY_PKGS = ["libpython3.11-stdlib", "libpython3.11-minimal"]
C_PKGS = ["libc6-dev", "linux-libc-dev", "libpython3.11-dev", "libssl-dev", "zlib1g-dev", "libpcre2-dev"]
SH_PKGS = ["git", "gzip", "gettext-base", "apt", "debianutils", "dpkg", "dpkg-dev", "bzip2", "xz-utils",
           "e2fsprogs", "ucf", "sensible-utils", "groff-base", "openssh-client", "man-db", "util-linux",
           "systemd", "procps", "findutils"]
MAN_PKGS = ["manpages", "manpages-dev", "coreutils", "git-man", "openssl", "iproute2", "util-linux",
            "systemd", "bash", "grep", "sed", "tar", "findutils", "make", "mawk", "binutils", "diffutils",
            "less", "procps", "curl", "wget", "man-db", "gzip", "apt", "dpkg", "dpkg-dev", "xz-utils",
            "e2fsprogs", "openssh-client", "groff-base", "debianutils", "libpcre2-dev", "libssl-dev"]
DOC_PKGS = sorted(set(MAN_PKGS + SH_PKGS + PY_PKGS))

MB = 1000 * 1000
CAPS = {"python": 12 * MB, "c": 16 * MB, "shell": 2 * MB, "man": 12 * MB, "doc": 3 * MB, "chat": 2500 * 1000}
MAX_FILE = 256 * 1024       # larger files are mostly generated tables
MAX_LINE = 400              # minified / data-like files


def h(s):
    return hashlib.sha256(s.encode()).hexdigest()


def is_test(path):
    return int(h("split:" + path)[:8], 16) % 100 < 2


def pkg_list(pkg):
    for name in (pkg, pkg + ":amd64", pkg + ":all"):
        p = "/var/lib/dpkg/info/%s.list" % name
        if os.path.exists(p):
            with open(p, encoding="utf-8", errors="replace") as f:
                return [l.rstrip("\n") for l in f]
    return None


def pkg_version(pkg):
    r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True)
    return r.stdout.strip() or "?"


def read_text(path):
    """File as text if it is acceptable corpus material, else None."""
    try:
        if os.path.islink(path) or not os.path.isfile(path):
            return None
        if os.path.getsize(path) > MAX_FILE * 4:
            return None
        with open(path, "rb") as f:
            raw = f.read()
        if path.endswith(".gz"):
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile):
        return None
    if len(raw) > MAX_FILE or len(raw) < 64 or b"\0" in raw:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    text = text.replace("\r\n", "\n")
    if max(len(l) for l in text.split("\n")) > MAX_LINE:
        return None
    return text


def owned(pkgs, pred):
    """(path, pkg) for the files of pkgs that satisfy pred, sorted by path, first owner wins."""
    seen = {}
    for pkg in pkgs:
        files = pkg_list(pkg)
        if files is None:
            print("corpus: package %s is not installed, skipped" % pkg, file=sys.stderr)
            continue
        for f in files:
            if f not in seen and pred(f):
                seen[f] = pkg
    return sorted(seen.items())


def sample(items, cap, load):
    """Take items in sha256(path) order until cap bytes of text; return them sorted by path."""
    out, total = [], 0
    for path, pkg in sorted(items, key=lambda it: h(it[0])):
        text = load(path)
        if text is None:
            continue
        out.append((path, pkg, text))
        total += len(text.encode())
        if total >= cap:
            break
    return sorted(out)


def render_man(path):
    env = dict(os.environ, LC_ALL="C", LANG="C", MANWIDTH="80")
    try:
        r = subprocess.run(["man", "--nj", "--nh", "-l", "-P", "cat", path], capture_output=True, env=env,
                           timeout=30)
    except subprocess.TimeoutExpired:
        return None
    if r.returncode != 0:
        return None
    text = r.stdout.decode("ascii", errors="replace")
    text = re.sub(r"\n{3,}", "\n\n", text).strip("\n") + "\n"
    if len(text) < 200 or len(text.encode()) > MAX_FILE:
        return None
    return text


def sh_script(path):
    if not (path.startswith("/usr/bin/") or path.startswith("/usr/sbin/") or path.startswith("/usr/lib/")
            or path.startswith("/usr/share/") or path.startswith("/etc/") or path.startswith("/bin/")
            or path.startswith("/sbin/")):
        return False
    if path.startswith("/usr/share/man/") or path.startswith("/usr/share/doc/"):
        return False
    try:
        if os.path.islink(path) or not os.path.isfile(path):
            return False
        with open(path, "rb") as f:
            first = f.readline(128)
    except OSError:
        return False
    return re.match(rb"#!\s*/(usr/)?bin/(env )?(ba|da)?sh\b", first) is not None


DOC_NAME = re.compile(r"^(README|NEWS|INTRO|POSIX|COMPAT|Explanations|FAQ|TODO|HACKING)[^/]*$|^[^/]*\.(md|txt)(\.gz)?$")


def doc_file(path):
    if not path.startswith("/usr/share/doc/"):
        return False
    base = os.path.basename(path)
    return DOC_NAME.match(base) is not None and "changelog" not in base.lower()


# ---- chat conversations -------------------------------------------------------------------------------

SYSTEMS = ["You are a helpful assistant.", "You are a concise assistant for Linux and programming questions.",
           "Answer briefly."]
MAN_Q = ["What does the `{n}` command do?", "What is `{n}`?", "Explain `{n}` in a few words.",
         "What is {n} used for?", "Tell me about {n}."]
MAN_Q3 = ["What does the C function `{n}` do?", "What is `{n}` in C?", "Explain the C library call {n}."]
MAN_Q2 = ["What does the system call `{n}` do?", "Explain the {n} system call."]
PY_Q = ["What does `{n}` do in Python?", "Explain the Python function `{n}`.", "What is `{n}` for?"]
THINK = ["The user asks about {n}. I will describe it briefly.", "This is a question about {n}.",
         "I should explain what {n} does."]


def pick(lst, key):
    return lst[int(h(key)[:8], 16) % len(lst)]


def render_chat(key, q, a, n):
    mode = int(h("mode:" + key)[:8], 16) % 4
    s = ""
    if mode == 0:
        s += "<|im_start|>system\n%s<|im_end|>\n" % pick(SYSTEMS, "sys:" + key)
    s += "<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n" % q.strip()
    if mode == 3:
        s += "<think>\n\n</think>\n\n"                 # enable_thinking = false
    else:
        s += "<think>\n%s\n</think>\n\n" % pick(THINK, "think:" + key).format(n=n)
    return s + a.strip() + "<|im_end|>\n"


def man_chat(path, text):
    m = re.search(r"^NAME\n\s+(.+?)\n\n", text, re.M | re.S)
    if not m:
        return None
    name_line = " ".join(m.group(1).split())
    parts = re.split(r"\s+(?:-|\\-)\s+", name_line, maxsplit=1)
    if len(parts) != 2:
        return None
    names, what = parts[0], parts[1]
    n = names.split(",")[0].strip()
    if not re.match(r"^[\w.+-]{1,40}$", n):
        return None
    sec = re.search(r"\.(\d)[^/]*$", path)
    sec = sec.group(1) if sec else "1"
    qs = MAN_Q3 if sec == "3" else MAN_Q2 if sec == "2" else MAN_Q
    answer = "`%s`: %s." % (n, what.rstrip("."))
    d = re.search(r"^DESCRIPTION\n(.+?)\n\n", text, re.M | re.S)
    if d:
        para = " ".join(d.group(1).split())
        if 40 <= len(para) <= 600:
            answer += "\n\n" + para
    return render_chat(path, pick(qs, "q:" + path).format(n=n), answer, n)


def py_chats(path, text):
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return []
    mod = path.split("/python3.11/", 1)[-1][:-3].replace("/", ".").replace(".__init__", "")
    out = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
            doc = ast.get_docstring(node)
            if not doc:
                continue
            para = doc.strip().split("\n\n")[0].strip()
            if not (30 <= len(para) <= 700):
                continue
            n = "%s.%s" % (mod, node.name)
            key = path + ":" + node.name
            out.append(render_chat(key, pick(PY_Q, "q:" + key).format(n=n), para, n))
    return out


# ---- main ---------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="/work/scratch/train/corpus")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every cap (dry runs: 0.05)")
    ap.add_argument("-j", type=int, default=2, help="parallel man renderers")
    args = ap.parse_args()
    caps = {k: int(v * args.scale) for k, v in CAPS.items()}
    os.makedirs(args.out, exist_ok=True)
    docs = []   # (src, path, pkg, text)

    py = owned(PY_PKGS, lambda f: f.startswith("/usr/lib/python3.11/") and f.endswith(".py")
               and "/site-packages/" not in f and "/dist-packages/" not in f)
    py_docs = sample(py, caps["python"], read_text)
    docs += [("python", p, k, t) for p, k, t in py_docs]
    print("corpus: python %d files" % len(py_docs), file=sys.stderr)

    c = owned(C_PKGS, lambda f: f.startswith("/usr/include/") and f.endswith(".h"))
    docs += [("c", p, k, t) for p, k, t in sample(c, caps["c"], read_text)]
    sh = owned(SH_PKGS, sh_script)
    docs += [("shell", p, k, t) for p, k, t in sample(sh, caps["shell"], read_text)]
    dc = owned(DOC_PKGS, doc_file)
    docs += [("doc", p, k, t) for p, k, t in sample(dc, caps["doc"], read_text)]

    # man pages: English sections 1-8 only; render in sha256 order, in parallel, until the cap
    man = owned(MAN_PKGS, lambda f: re.match(r"^/usr/share/man/man[1-8]/[^/]+$", f) is not None)
    man = [it for it in sorted(man, key=lambda it: h(it[0])) if not os.path.islink(it[0])]
    man_docs, total = [], 0
    with concurrent.futures.ThreadPoolExecutor(args.j) as ex:
        for i in range(0, len(man), 64):
            batch = man[i:i + 64]
            for (p, k), t in zip(batch, ex.map(lambda it: render_man(it[0]), batch)):
                if t is None or total >= caps["man"]:
                    continue
                man_docs.append((p, k, t))
                total += len(t.encode())
            if total >= caps["man"]:
                break
    man_docs.sort()
    docs += [("man", p, k, t) for p, k, t in man_docs]
    print("corpus: man %d pages" % len(man_docs), file=sys.stderr)

    # chat: one conversation per man page, plus docstrings; all go to the split of their source file
    chats = []
    for p, k, t in man_docs:
        s = man_chat(p, t)
        if s:
            chats.append((p, k, s))
    for p, k, t in py_docs:
        for s in py_chats(p, t):
            chats.append((p, k, s))
    chats.sort(key=lambda it: h("chat:" + it[2]))
    # group conversations into documents of ~8 conversations (a document is one training unit)
    total, group, gi = 0, [], 0
    chat_docs = []
    for p, k, s in chats:
        if total >= caps["chat"]:
            break
        group.append((p, k, s))
        total += len(s.encode())
        if len(group) == 8:
            chat_docs.append(group)
            group = []
    if group:
        chat_docs.append(group)
    for g in chat_docs:
        # split by the first conversation's source file; conversations of test files go to test docs
        for split in (False, True):
            part = [it for it in g if is_test(it[0]) == split]
            if part:
                docs.append(("chat", "chat:%s:%d" % ("test" if split else "train", gi), "(derived)",
                             "<|endoftext|>".join(it[2] for it in part)))
                gi += 1

    stats, hashes = {}, {"train": hashlib.sha256(), "test": hashlib.sha256()}
    used_pkgs = set()
    with open(os.path.join(args.out, "train.jsonl"), "w") as ftr, \
         open(os.path.join(args.out, "test.jsonl"), "w") as fte, \
         open(os.path.join(args.out, "manifest.tsv"), "w") as fm:
        fm.write("src\tsplit\tpkg\tbytes\tsha256_16\tpath\n")
        for src, path, pkg, text in docs:
            split = ("test" if path.startswith("chat:test") else "train") if src == "chat" else \
                    ("test" if is_test(path) else "train")
            line = json.dumps({"src": src, "path": path, "pkg": pkg, "text": text}, ensure_ascii=False)
            (fte if split == "test" else ftr).write(line + "\n")
            hashes[split].update(line.encode() + b"\n")
            n = len(text.encode())
            st = stats.setdefault(src, {"train_bytes": 0, "test_bytes": 0, "train_docs": 0, "test_docs": 0})
            st[split + "_bytes"] += n
            st[split + "_docs"] += 1
            fm.write("%s\t%s\t%s\t%d\t%s\t%s\n" % (src, split, pkg, n, h(text)[:16], path))
            if pkg in PACKAGES:
                used_pkgs.add(pkg)
    with open(os.path.join(args.out, "licences.tsv"), "w") as fl:
        fl.write("pkg\tversion\tlicence\tcopyright_file\n")
        for pkg in sorted(used_pkgs):
            fl.write("%s\t%s\t%s\t/usr/share/doc/%s/copyright\n" % (pkg, pkg_version(pkg), PACKAGES[pkg], pkg))
    summary = {"sources": stats, "sha256": {k: v.hexdigest() for k, v in hashes.items()},
               "total_bytes": sum(s["train_bytes"] + s["test_bytes"] for s in stats.values()),
               "scale": args.scale}
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
