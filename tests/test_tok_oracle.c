/* tests/test_tok_oracle.c — differential test of the tokenizer against llama.cpp.
 *
 * Generates a few thousand strings from fragments (source code in several languages, CJK, emoji with
 * ZWJ sequences and skin tones, combining marks, RTL and Indic scripts, whitespace and digit runs,
 * contractions, invalid UTF-8, NUL bytes, special-token texts, random code points, long runs) with a
 * seeded PRNG, tokenizes them with arbor and with the oracle (`llama_oracle tokbatch VOCAB IN OUT
 * [--special]`), and compares every id list. A quarter of the strings run with parse_special on. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "format/gguf.h"
#include "tests/test.h"
#include "tok/vocab.h"

/* ---- generator ---------------------------------------------------------------------------------- */

static uint64_t rng_state = 0x5eed2024abcdULL;
static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static uint32_t below(uint32_t n) { return (uint32_t)(rnd() % n); }
#define PICK(arr) (arr[below(sizeof arr / sizeof arr[0])])

typedef struct buf { char *p; size_t n, cap; } buf;
static void put(buf *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        while (b->n + n + 1 > b->cap) b->cap = b->cap ? b->cap * 2 : 256;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}
static void puts_(buf *b, const char *s) { put(b, s, strlen(s)); }
static void put_cp(buf *b, uint32_t cp)   /* encodes surrogates too (they are "invalid" input) */
{
    char o[4];
    int n;
    if (cp < 0x80) { o[0] = (char)cp; n = 1; }
    else if (cp < 0x800) { o[0] = (char)(0xc0 | cp >> 6); o[1] = (char)(0x80 | (cp & 0x3f)); n = 2; }
    else if (cp < 0x10000) { o[0] = (char)(0xe0 | cp >> 12); o[1] = (char)(0x80 | ((cp >> 6) & 0x3f)); o[2] = (char)(0x80 | (cp & 0x3f)); n = 3; }
    else { o[0] = (char)(0xf0 | cp >> 18); o[1] = (char)(0x80 | ((cp >> 12) & 0x3f)); o[2] = (char)(0x80 | ((cp >> 6) & 0x3f)); o[3] = (char)(0x80 | (cp & 0x3f)); n = 4; }
    put(b, o, (size_t)n);
}

static const char *const code[] = {
    /* C */ "#include <stdio.h>", "int main(int argc, char **argv) {", "    for (size_t i = 0; i < n; i++) sum += a[i] * b[i];",
    "static inline uint32_t rotl(uint32_t x, int k) { return (x << k) | (x >> (32 - k)); }", "    if (!p) return -ENOMEM;",
    "/* it's the caller's job */", "#define MAX(a,b) ((a)>(b)?(a):(b))", "\treturn 0;\n}", "printf(\"%d items, %.2f%%\\n\", n, pct);",
    /* Python */ "def tokenize(self, text: str) -> list[int]:", "    return [t for t in toks if t not in self.special]",
    "if __name__ == '__main__':", "    print(f\"{name!r} has {len(items):,} items\")", "class Foo(Bar, metaclass=ABCMeta):",
    "x = {'a': 1, \"b\": [2, 3.5e-7], 'c': None}", "    raise ValueError('can''t parse %s' % s)", "lambda x: x**2 // 3",
    /* Rust */ "fn main() -> Result<(), Box<dyn Error>> {", "    let v: Vec<u8> = s.bytes().rev().collect();", "impl<'a> Iterator for Tokens<'a> {",
    "    match x { Some(ref y) if *y > 0 => y, _ => &0 }", "#[derive(Debug, Clone, PartialEq)]", "pub(crate) struct Vocab { ids: HashMap<String, u32> }",
    /* JS */ "const f = async (a, b = 2) => { await g?.(a ?? b); };", "export default function App() { return <div className=\"x\">{n}</div>; }",
    "let re = /^[a-z]+(?:'s)?$/gi;", "console.log(`${a} + ${b} = ${a + b}`);", "arr.map((x, i) => x * i).filter(Boolean);",
    /* Go */ "func (v *Vocab) Encode(s string) ([]int, error) {", "\tif err != nil {\n\t\treturn nil, fmt.Errorf(\"encode: %w\", err)\n\t}",
    "go func() { ch <- struct{}{} }()", "var _ io.Reader = (*reader)(nil)",
    /* shell */ "#!/usr/bin/env bash", "set -euo pipefail", "for f in *.gguf; do echo \"$f\"; done 2>/dev/null | sort -u",
    "export PATH=\"$HOME/.local/bin:$PATH\"", "grep -rn 'TODO' --include='*.c' . || true", "x=$(( (a+b) * 3 )); [[ -f $x ]] && rm -- \"$x\"",
    /* SQL */ "SELECT id, name FROM users WHERE age >= 18 AND name LIKE 'O''Brien%';", "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL);",
    "INSERT INTO logs VALUES (1, 'it''s done', NOW());", "WITH x AS (SELECT * FROM y) SELECT COUNT(*) FROM x GROUP BY 1 ORDER BY 2 DESC;",
};
static const char *const cjk[] = {
    "你好，世界！", "这是一个测试。", "我们今天去公园散步吧", "東京都渋谷区", "こんにちは、元気ですか？", "カタカナとひらがな",
    "안녕하세요 세계", "한국어 텍스트입니다.", "漢字かな交じり文", "「引用」『二重』【括弧】", "中文，标点；符号：测试！",
    "１２３４５６", "ＡＢＣｄｅｆ", "第3章 第12节",
};
static const char *const emoji[] = {
    "\xf0\x9f\x98\x80", "\xf0\x9f\xa6\x99", "\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd", "\xf0\x9f\x91\x8b\xf0\x9f\x8f\xbf",
    "\xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x91\xa7\xe2\x80\x8d\xf0\x9f\x91\xa6",
    "\xf0\x9f\x8f\xb3\xef\xb8\x8f\xe2\x80\x8d\xf0\x9f\x8c\x88", "\xf0\x9f\x87\xaf\xf0\x9f\x87\xb5", "\xf0\x9f\x87\xa9\xf0\x9f\x87\xaa",
    "1\xef\xb8\x8f\xe2\x83\xa3", "#\xef\xb8\x8f\xe2\x83\xa3", "\xe2\x9d\xa4\xef\xb8\x8f", "\xe2\x9c\x8c\xf0\x9f\x8f\xbb",
    "\xf0\x9f\xa7\x91\xe2\x80\x8d\xf0\x9f\x92\xbb", "\xf0\x9f\x91\xa9\xf0\x9f\x8f\xbe\xe2\x80\x8d\xf0\x9f\x9a\x80",
    "\xe2\x98\x95", "\xf0\x9f\x94\xa5\xf0\x9f\x94\xa5\xf0\x9f\x94\xa5", "\xf0\x9f\xab\xa0", "\xf0\x9f\xaa\xbf",
};
static const char *const scripts[] = {
    "\xd9\x85\xd8\xb1\xd8\xad\xd8\xa8\xd8\xa7 \xd8\xa8\xd8\xa7\xd9\x84\xd8\xb9\xd8\xa7\xd9\x84\xd9\x85",   /* Arabic */
    "\xd8\xa7\xd9\x84\xd9\x84\xd9\x91\xd9\x8e\xd9\x87\xd9\x8f", "\xd9\xa1\xd9\xa2\xd9\xa3 \xd9\x83\xd8\xaa\xd8\xa7\xd8\xa8",
    "\xd7\xa9\xd7\x9c\xd7\x95\xd7\x9d \xd7\xa2\xd7\x95\xd7\x9c\xd7\x9d", "\xd7\x91\xd6\xb0\xd6\xbc\xd7\xa8\xd6\xb5\xd7\x90\xd7\xa9\xd7\x81\xd6\xb4\xd7\x99\xd7\xaa", /* Hebrew + niqqud */
    "\xe0\xa4\xa8\xe0\xa4\xae\xe0\xa4\xb8\xe0\xa5\x8d\xe0\xa4\xa4\xe0\xa5\x87 \xe0\xa4\xa6\xe0\xa5\x81\xe0\xa4\xa8\xe0\xa4\xbf\xe0\xa4\xaf\xe0\xa4\xbe", /* Devanagari */
    "\xe0\xa4\xb9\xe0\xa4\xbf\xe0\xa4\x82\xe0\xa4\xa6\xe0\xa5\x80 \xe0\xa5\xa7\xe0\xa5\xa8\xe0\xa5\xa9",
    "\xe0\xb8\xaa\xe0\xb8\xa7\xe0\xb8\xb1\xe0\xb8\xaa\xe0\xb8\x94\xe0\xb8\xb5\xe0\xb8\x84\xe0\xb8\xa3\xe0\xb8\xb1\xe0\xb8\x9a", /* Thai */
    "\xe0\xb8\x9b\xe0\xb8\xa3\xe0\xb8\xb0\xe0\xb9\x80\xe0\xb8\x97\xe0\xb8\xa8\xe0\xb9\x84\xe0\xb8\x97\xe0\xb8\xa2 \xe0\xb9\x91\xe0\xb9\x92",
    "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82, \xd0\xbc\xd0\xb8\xd1\x80!", "\xce\x9a\xce\xb1\xce\xbb\xce\xb7\xce\xbc\xce\xad\xcf\x81\xce\xb1 \xce\xba\xcf\x8c\xcf\x83\xce\xbc\xce\xb5",
    "T\xe1\xba\xa1i sao kh\xc3\xb4ng?", "Stra\xc3\x9f" "e \xc3\x84pfel \xc3\x96l \xc3\x9c" "ber", "\xc5\xbc\xc3\xb3\xc5\x82w \xc4\x87ma",
    "\xe1\x83\xa5\xe1\x83\x90\xe1\x83\xa0\xe1\x83\x97\xe1\x83\xa3\xe1\x83\x9a\xe1\x83\x98", "\xe1\x8a\xa0\xe1\x88\x9b\xe1\x88\xad\xe1\x8a\x9b",
};
static const char *const contractions[] = {
    "'s", "'S", "'t", "'T", "'re", "'RE", "'rE", "'ve", "'VE", "'m", "'M", "'ll", "'LL", "'lL", "'d", "'D",
    "don't", "I'M", "we'Re", "they'LL", "it's", "'", "''s", "' s", "'x", "'123", "rock'n'roll", "O'Neil's",
    "'\xe2\x84\xaa", "'\xc4\xb0", "'\xc5\xbf", "\xe2\x80\x99s", "'s'", "'sss",
};
static const char *const specials[] = {
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|im_start|>user\n", "<|im_end|>\n", "<|im_start|", "|im_end|>",
    "<|im_start|><|im_end|>", "<<|im_end|>>", "<|endoftext|><|endoftext|>", "[PAD151700]", "[PAD151646]", "[PAD15170",
    "[PAD151935][PAD151646]", "x<|im_start|>assistant\n<think>\n", "<|im_start|>system\nYou are helpful.<|im_end|>",
    "<|IM_START|>", "< |im_start| >",
};
static const char *const misc[] = {
    "Hello world", "The quick brown fox jumps over the lazy dog.", "https://example.com/path?q=a+b&x=1#frag", "user@mail.example.org",
    "3.14159", "1,000,000.00", "-42", "1e-10", "0x7fff_ffff", "v1.2.3-rc.4", "$100 \xe2\x82\xac" "50 \xc2\xa3" "3 \xc2\xa5" "9",
    "# Title\n\n- item *one*\n- item **two**\n", "| a | b |\n|---|---|\n| 1 | 2 |", "{\"key\": [1, 2, {\"x\": null}], \"s\": \"\\u00e9\"}",
    "<html><body class=\"m\">&amp;&lt;</body></html>", "$$\\int_0^\\infty e^{-x^2} dx = \\frac{\\sqrt{\\pi}}{2}$$",
    "\xe2\x88\x80x \xe2\x88\x88 \xe2\x84\x9d: x\xc2\xb2 \xe2\x89\xa5 0", "\xe2\x86\x92\xe2\x87\x92\xe2\x9f\xb9", "\xc2\xbd \xc2\xbe \xe2\x85\x93 \xe2\x85\xab \xe2\x85\xb0\xe2\x85\xb1",
    "\xe2\xbf\xbc\xe2\xbf\xbd\xe2\xbf\xbe\xe2\xbf\xbf\xe3\x87\xaf", "\xf0\xae\xaf\xb0\xf0\xae\xaf\xb1\xf0\xae\xb9\x9d",   /* Unicode 15.1 additions */
    "\xcd\xb8\xcd\xb9", "\xef\xb7\x90\xef\xbf\xbe\xef\xbf\xbf", "\xee\x80\x80\xf3\xb0\x80\x80", "\xe1\xa0\x8e", "a\xe2\x80\x8b" "b", "\xef\xbb\xbftext",
    "soft\xc2\xad" "hyphen", "\xc2\x85next line", "a\xe2\x80\xa8" "b\xe2\x80\xa9" "c", "\xe3\x80\x80\xe3\x80\x80x", "\xc2\xa0\xc2\xa0nbsp",
    "\xf0\x9d\x90\x80\xf0\x9d\x90\x81\xf0\x9d\x9f\x8e\xf0\x9d\x9f\x8f", "\xf0\x90\x8c\xb0\xf0\x90\x8c\xb1", "\xe2\x80\x8e\xe2\x80\x8f\xe2\x80\xaa",
    "\xe4\xb8\x80\xcc\x81", "1\xcc\x81", " \xcc\x81", "\xcc\x81\xcc\x82start", "!\xcc\x81", "\n\xcc\x81", "\xe0\xa4\x95\xe0\xa5\x8d\xe2\x80\x8d\xe0\xa4\xb7",
};
static const char *const invalid[] = {
    "\x80", "\xbf", "\x80\x80\x80", "\xc3", "\xe4\xb8", "\xf0\x9f\x98", "\xf0\x9f", "\xc0\x80", "\xc1\xbf", "\xe0\x80\x80",
    "\xe0\x9f\xbf", "\xf0\x80\x80\x80", "\xf0\x8f\xbf\xbf", "\xff", "\xfe", "\xfe\xff", "\xed\xa0\x80", "\xed\xbf\xbf",
    "\xed\xa0\xbd\xed\xb8\x80", "\xf8\x88\x80\x80\x80", "\xfc\x84\x80\x80\x80\x80", "\xc2" "A", "\xe4" "A" "\xb8", "\xf4\x8f\xbf\xbf",
    "\xf5", "\xf7\xbf", "\xc3\x28", "\xa0\xa1", "\xe2\x28\xa1", "\xe2\x82\x28", "\xf0\x28\x8c\xbc", "\xf0\x90\x28\xbc",
};
static const char *const ws_chars[] = {
    " ", " ", " ", "\t", "\n", "\n", "\r\n", "\r", "\v", "\f", "\xc2\xa0", "\xe3\x80\x80", "\xe2\x80\xa8", "\xc2\x85",
    "\xe2\x80\x83", "\xe1\x9a\x80", "\xe2\x80\xaf",
};
static const char *const digit_sets[] = {
    "0123456789", "\xd9\xa0\xd9\xa1\xd9\xa2\xd9\xa3\xd9\xa4", "\xef\xbc\x90\xef\xbc\x91\xef\xbc\x92", "\xc2\xb2\xc2\xb3\xc2\xb9",
    "\xe2\x85\xa0\xe2\x85\xa1\xe2\x85\xa2", "\xe0\xa5\xa6\xe0\xa5\xa7\xe0\xa5\xa8", "\xe2\x91\xa0\xe2\x91\xa1",
};

static void frag_ws(buf *b)
{
    for (uint32_t n = 1 + below(12), i = 0; i < n; i++) puts_(b, PICK(ws_chars));
}

static void frag_digits(buf *b)
{
    const char *set = PICK(digit_sets);
    /* pick whole characters of the set */
    size_t len = strlen(set), step = (unsigned char)set[0] < 0x80 ? 1 : (unsigned char)set[0] < 0xe0 ? 2 : 3;
    for (uint32_t n = 1 + below(24), i = 0; i < n; i++) put(b, set + step * below((uint32_t)(len / step)), step);
}

static void frag_random_cps(buf *b)
{
    for (uint32_t n = 1 + below(6), i = 0; i < n; i++) {
        uint32_t r = below(10), cp;
        if (r < 4) cp = 0x80 + below(0x800 - 0x80);
        else if (r < 8) { do cp = 0x800 + below(0x10000 - 0x800); while (cp >= 0xd800 && cp < 0xe000); }
        else cp = 0x10000 + below(0x110000 - 0x10000);
        put_cp(b, cp);
        if (below(3) == 0) put(b, " ", 1);
    }
}

static void frag_marks(buf *b)
{
    static const char *const bases[] = { "e", "a", "n", "Z", "\xce\xb1", "\xe0\xa4\x95", "1", " ", "!", "" };
    puts_(b, PICK(bases));
    for (uint32_t n = 1 + below(5), i = 0; i < n; i++) put_cp(b, below(4) ? 0x300 + below(0x70) : PICK(((uint32_t[]){ 0x20dd, 0x903, 0x93e, 0x1ab0, 0xfe20, 0x1d167 })));
    if (below(2)) puts_(b, PICK(bases));
}

/* A code point between neighbours whose split depends on its class (letter, mark, digit, space, punct). */
static void frag_class_probe(buf *b)
{
    static const char *const around[] = { "a", "Z", "1", " ", "", "!", "\n", "'", "\xcc\x81", "\xe4\xb8\x80", "\t" };
    static const uint32_t interesting[] = { 0x2ffc, 0x2ffd, 0x2fff, 0x31ef, 0x2ebf0, 0x2ec00, 0x2ee5d, 0x2ee5e, 0x85, 0xa0, 0x180e,
        0x200b, 0x2028, 0x3000, 0x378, 0xfdd0, 0xfffe, 0xe000, 0x10ffff, 0x1f600, 0x1f3fb, 0x20dd, 0x903, 0x2160, 0xb2, 0xbd,
        0x1c89, 0x1c8a, 0x2c2f, 0x10570, 0x11f00, 0x1e4d0, 0x1f7d9, 0x1fae9, 0xaa, 0xba, 0x2e2f, 0x16fe4, 0x1da9b };
    puts_(b, PICK(around));
    uint32_t cp;
    switch (below(3)) {
    case 0: cp = PICK(interesting); break;
    case 1: cp = 0x80 + below(0x3000); break;
    default: do cp = 0x80 + below(0x110000 - 0x80); while (cp >= 0xd800 && cp < 0xe000); break;
    }
    put_cp(b, cp);
    puts_(b, PICK(around));
}

static void frag_long(buf *b)
{
    uint32_t n = 50 + below(250), kind = below(6);
    for (uint32_t i = 0; i < n; i++) {
        switch (kind) {
        case 0: { char c = (char)('a' + below(26)); put(b, &c, 1); break; }
        case 1: put_cp(b, 0x4e00 + below(0x5000)); break;
        case 2: put(b, "=-*#~"+ below(5), 1); break;
        case 3: put(b, below(8) ? " " : "\t", 1); break;
        case 4: put_cp(b, 0xe01 + below(0x2e)); break;   /* Thai letters and marks */
        default: put_cp(b, 0xac00 + below(0x2ba4)); break;
        }
    }
}

static void frag_random_bytes(buf *b)
{
    for (uint32_t n = 1 + below(6), i = 0; i < n; i++) { char c = (char)below(256); put(b, &c, 1); }
}

static void gen_string(buf *b, bool *special)
{
    b->n = 0;
    *special = below(4) == 0;
    uint32_t n = 1 + below(6);
    for (uint32_t i = 0; i < n; i++) {
        switch (below(19)) {
        case 0: case 1: {
            uint32_t lines = 1 + below(4);
            for (uint32_t k = 0; k < lines; k++) {
                if (k) puts_(b, below(4) ? "\n" : "\r\n");
                for (uint32_t ind = below(3) ? 0 : below(9); ind; ind--) put(b, below(3) ? " " : "\t", 1);
                puts_(b, PICK(code));
            }
            break;
        }
        case 2: puts_(b, PICK(cjk)); break;
        case 3: puts_(b, PICK(emoji)); break;
        case 4: frag_marks(b); break;
        case 5: puts_(b, PICK(scripts)); break;
        case 6: frag_ws(b); break;
        case 7: frag_digits(b); break;
        case 8: puts_(b, PICK(contractions)); break;
        case 9: puts_(b, PICK(invalid)); break;
        case 10: put(b, "a\0b\0", 1 + below(4)); break;
        case 11: puts_(b, PICK(specials)); break;
        case 12: frag_random_cps(b); break;
        case 13: if (below(3) == 0) frag_long(b); else puts_(b, PICK(misc)); break;
        case 14: frag_random_bytes(b); break;
        case 15: case 16: frag_class_probe(b); break;
        default: puts_(b, PICK(misc)); break;
        }
        switch (below(6)) {
        case 0: put(b, " ", 1); break;
        case 1: put(b, "\n", 1); break;
        case 2: if (below(2)) frag_ws(b); break;
        default: break;
        }
    }
    /* llama.cpp aborts on a 4-byte sequence above U+10FFFF (unicode_cpt_to_utf8 throws): make its lead byte
     * 0xFF, which both tokenizers take as a plain invalid byte (test_tok checks arbor on the raw form). */
    unsigned char *s = (unsigned char *)b->p;
    for (size_t i = 0; i + 3 < b->n; i++) {
        if ((s[i] & 0xf8) != 0xf0) continue;
        if ((s[i + 1] & 0xc0) != 0x80 || (s[i + 2] & 0xc0) != 0x80 || (s[i + 3] & 0xc0) != 0x80) continue;
        uint32_t cp = (s[i] & 7u) << 18 | (s[i + 1] & 0x3fu) << 12 | (s[i + 2] & 0x3fu) << 6 | (s[i + 3] & 0x3fu);
        if (cp > 0x10ffff) s[i] = 0xff;
    }
}

/* ---- comparison ------------------------------------------------------------------------------------ */

static void escape(const char *s, size_t n, FILE *out)
{
    for (size_t i = 0; i < n && i < 400; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '\\') fputc(c, out);
        else fprintf(out, "\\x%02x", c);
    }
    if (n > 400) fprintf(out, "...(%zu bytes)", n);
}

static void print_ids(const int32_t *ids, size_t n, FILE *out)
{
    for (size_t i = 0; i < n && i < 120; i++) fprintf(out, i ? " %d" : "%d", ids[i]);
    if (n > 120) fprintf(out, " ...(%zu ids)", n);
}

static int oracle_run(const char *oracle, const char *vocab, const char *in, const char *out, bool special,
                      const char *log)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' tokbatch '%s' '%s' '%s'%s 2>'%s'", oracle, vocab, in, out, special ? " --special" : "", log);
    int st = system(cmd);
    CHECK(st == 0, "oracle failed (exit %d): %s (see %s)", st, cmd, log);
    return st;
}

/* Compare arbor with the oracle's output file for the strings i with want_batch(i); returns mismatches. */
static size_t compare(const ar_vocab *v, const char *label, buf *strs, const bool *spec, int n, int batch,
                      const char *out_path, size_t *n_ids)
{
    FILE *res = fopen(out_path, "r");
    CHECK(res != NULL, "oracle wrote no %s", out_path);
    if (!res) return (size_t)n;
    size_t mismatches = 0;
    char *line = NULL;
    size_t line_cap = 0;
    int32_t *want = NULL;
    size_t want_cap = 0;
    for (int i = 0; i < n; i++) {
        if (batch < 2 && spec[i] != (batch == 1)) continue;
        bool special = batch < 2 && spec[i];
        ssize_t ll = getline(&line, &line_cap, res);
        size_t nw = 0;
        bool oracle_err = ll < 0 || !strncmp(line, "ERR", 3);
        for (char *p = ll > 0 ? line : (char *)"", *e; !oracle_err; p = e) {
            long id = strtol(p, &e, 10);
            if (e == p) break;
            if (nw == want_cap) want = realloc(want, sizeof *want * (want_cap = want_cap ? want_cap * 2 : 256));
            want[nw++] = (int32_t)id;
        }
        int32_t *got = NULL;
        size_t ng = 0;
        ar_error err;
        int rc = ar_tokenize(v, strs[i].p, strs[i].n, special, &got, &ng, &err);
        *n_ids += ng;
        bool ok = !rc && !oracle_err && ng == nw && (nw == 0 || !memcmp(got, want, nw * sizeof *got));
        if (ok) test_passed++;   /* each agreeing string counts; the disagreements fail one check below */
        if (!ok && ++mismatches <= 5) {
            printf("mismatch #%zu (%s, string %d, parse_special %d): '", mismatches, label, i, special);
            escape(strs[i].p, strs[i].n, stdout);
            printf("'\n  arbor:     ");
            print_ids(got, ng, stdout);
            printf("%s\n  llama.cpp: ", rc ? " (error)" : "");
            if (oracle_err) printf("(oracle error)"); else print_ids(want, nw, stdout);
            printf("\n");
        }
        free(got);
    }
    fclose(res);
    free(line);
    free(want);
    return mismatches;
}

static ar_vocab *load_vocab(const char *path)
{
    gguf_file *f = NULL;
    ar_vocab *v = NULL;
    ar_error err;
    int rc = gguf_open(&f, path, &err);
    CHECK(rc == 0, "fixture %s missing (run scripts/fixtures.sh or set ARBOR_FIXTURES): %s", path, err.msg);
    if (rc) return NULL;
    rc = ar_vocab_load(&v, f, &err);
    CHECK(rc == 0, "load %s: %s", path, err.msg);
    gguf_close(f);
    return v;
}

/* The same vocabulary with tokenizer.ggml.pre = qwen2, to test that pre-tokenizer too. */
static int write_qwen2_copy(const char *src, const char *dst)
{
    gguf_file *f = NULL;
    ar_error err;
    if (gguf_open(&f, src, &err)) return -1;
    gguf_writer *w = gguf_writer_create();
    int rc = 0;
    for (int64_t i = 0; i < gguf_n_kv(f) && !rc; i++) rc = gguf_set_kv(w, gguf_kv_at(f, i));
    if (!rc) rc = gguf_set_str(w, "tokenizer.ggml.pre", "qwen2");
    if (!rc) rc = gguf_writer_write(w, dst, &err);
    gguf_writer_free(w);
    gguf_close(f);
    return rc;
}

int main(void)
{
    /* ARBOR_TOK_ORACLE_STRINGS / _SEED widen the search when hunting a bug */
    const char *env_n = getenv("ARBOR_TOK_ORACLE_STRINGS"), *env_seed = getenv("ARBOR_TOK_ORACLE_SEED");
    int n_strings = env_n && atoi(env_n) > 0 ? atoi(env_n) : test_sanitized() ? 1000 : 2400;
    if (env_seed && *env_seed) rng_state = strtoull(env_seed, NULL, 0);
    char vocab[1024];
    snprintf(vocab, sizeof vocab, "%s/vocab-qwen35.gguf", test_fixtures());
    if (access(vocab, R_OK) != 0) snprintf(vocab, sizeof vocab, "%s/ggml-vocab-qwen35.gguf", test_fixtures());
    const char *oracle = getenv("ARBOR_ORACLE");
    if (!oracle || !*oracle) oracle = "build/oracle/llama_oracle";
    CHECK(access(oracle, X_OK) == 0, "oracle %s not found or not executable (scripts/oracle.sh builds it; or set ARBOR_ORACLE)", oracle);
    ar_vocab *v = load_vocab(vocab);
    if (!v || access(oracle, X_OK) != 0) { ar_vocab_free(v); TEST_END(); }

    const char *tmp = getenv("TMPDIR");
    char dir[512];
    snprintf(dir, sizeof dir, "%s/arbor-tok-oracle-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) { CHECK(0, "mkdtemp %s", dir); ar_vocab_free(v); TEST_END(); }
    char qwen2[600], tiny[1100], in_path[3][600], out_path[4][600], log_path[4][600];
    snprintf(qwen2, sizeof qwen2, "%s/vocab-qwen2.gguf", dir);
    snprintf(tiny, sizeof tiny, "%s/tiny-f32.gguf", test_fixtures());   /* mkmodel's pruned 4096-token vocab */
    FILE *in[3];
    for (int k = 0; k < 4; k++) {
        snprintf(out_path[k], sizeof out_path[k], "%s/out%d.txt", dir, k);
        snprintf(log_path[k], sizeof log_path[k], "%s/oracle%d.log", dir, k);
    }
    for (int k = 0; k < 3; k++) {
        snprintf(in_path[k], sizeof in_path[k], "%s/in%d.bin", dir, k);
        in[k] = fopen(in_path[k], "wb");
        CHECK(in[k] != NULL, "cannot write %s", in_path[k]);
        if (!in[k]) TEST_END();
    }

    /* batch 0: qwen35 plain, 1: qwen35 with parse_special, 2: every string through the qwen2 copy,
     * 3: every string through the tiny fixture's vocab (input file of batch 2) */
    buf *strs = calloc((size_t)n_strings, sizeof *strs);
    bool *spec = calloc((size_t)n_strings, sizeof *spec);
    size_t total_bytes = 0, n_special = 0;
    for (int i = 0; i < n_strings; i++) {
        gen_string(&strs[i], &spec[i]);
        uint32_t len = (uint32_t)strs[i].n;
        unsigned char le[4] = { (unsigned char)len, (unsigned char)(len >> 8), (unsigned char)(len >> 16), (unsigned char)(len >> 24) };
        for (int k = spec[i]; k < 3; k += 2 - spec[i]) {   /* batch spec[i], then batch 2 */
            fwrite(le, 1, 4, in[k]);
            fwrite(strs[i].p, 1, len, in[k]);
        }
        total_bytes += len;
        n_special += spec[i];
    }
    for (int k = 0; k < 3; k++) fclose(in[k]);
    int rc = write_qwen2_copy(vocab, qwen2);
    CHECK(rc == 0, "cannot write the qwen2 copy of %s", vocab);
    ar_vocab *v2 = rc == 0 ? load_vocab(qwen2) : NULL, *v3 = load_vocab(tiny);
    if (!v2 || !v3 || oracle_run(oracle, vocab, in_path[0], out_path[0], false, log_path[0]) ||
        oracle_run(oracle, vocab, in_path[1], out_path[1], true, log_path[1]) ||
        oracle_run(oracle, qwen2, in_path[2], out_path[2], false, log_path[2]) ||
        oracle_run(oracle, tiny, in_path[2], out_path[3], false, log_path[3])) {
        ar_vocab_free(v);
        ar_vocab_free(v2);
        ar_vocab_free(v3);
        TEST_END();   /* keeps the temp dir for the logs */
    }

    size_t n_ids = 0, n_ids2 = 0;
    size_t mm = compare(v, "qwen35", strs, spec, n_strings, 0, out_path[0], &n_ids);
    mm += compare(v, "qwen35", strs, spec, n_strings, 1, out_path[1], &n_ids);
    size_t mm2 = compare(v2, "qwen2", strs, spec, n_strings, 2, out_path[2], &n_ids2);
    size_t n_ids3 = 0, mm3 = compare(v3, "tiny-f32", strs, spec, n_strings, 3, out_path[3], &n_ids3);
    CHECK(mm == 0, "qwen35: %zu of %d strings differ from llama.cpp", mm, n_strings);
    CHECK(mm2 == 0, "qwen2: %zu of %d strings differ from llama.cpp", mm2, n_strings);
    CHECK(mm3 == 0, "tiny-f32 vocab: %zu of %d strings differ from llama.cpp", mm3, n_strings);
    printf("ok tokenizer vs llama.cpp, qwen35: %d strings (%zu with parse_special, %zu bytes, %zu ids), %zu mismatches\n",
           n_strings, n_special, total_bytes, n_ids, mm);
    printf("ok tokenizer vs llama.cpp, qwen2:  %d strings (%zu ids), %zu mismatches\n", n_strings, n_ids2, mm2);
    printf("ok tokenizer vs llama.cpp, tiny-f32 (4096-token vocab): %d strings (%zu ids), %zu mismatches\n",
           n_strings, n_ids3, mm3);
    for (int k = 0; k < 3; k++) unlink(in_path[k]);
    for (int k = 0; k < 4; k++) { unlink(out_path[k]); unlink(log_path[k]); }
    unlink(qwen2);
    rmdir(dir);
    for (int i = 0; i < n_strings; i++) free(strs[i].p);
    free(strs);
    free(spec);
    ar_vocab_free(v);
    ar_vocab_free(v2);
    ar_vocab_free(v3);
    TEST_END();
}
