/* tests/test_cpu.c — the CPU feature table's cap (ARBOR_CPU_ISA, compute/cpu/cpu_features.h): the
 * table is read once per process, so each cap runs in a child process (this program with argument
 * "child"), which prints what dispatch sees; the parent checks it against the uncapped table. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "compute/cpu/cpu_features.h"
#include "compute/cpu/gemm.h"
#include "tests/test.h"

static int child(void)
{
    const ar_cpu_features *f = ar_cpu_features_get();
    const char *note = ar_cpu_isa_cap_error();
    printf("%s %d %d %d %d %s\n", ar_gemm_isa(), ar_cpu_has_avx512_set(), ar_cpu_has_avx2_set(), ar_cpu_has_neon_dot(),
           f->avx512bf16, note ? "ignored" : "ok");
    return 0;
}

typedef struct { char isa[16]; int avx512, avx2, neon_dot, bf16; char note[16]; } seen;

/* What a child running under ARBOR_CPU_ISA=cap (NULL: unset) reports. */
static int run_child(const char *self, const char *cap, seen *s)
{
    char cmd[4096];
    if (cap) snprintf(cmd, sizeof cmd, "ARBOR_CPU_ISA='%s' '%s' child", cap, self);
    else snprintf(cmd, sizeof cmd, "unset ARBOR_CPU_ISA; '%s' child", self);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    int n = fscanf(p, "%15s %d %d %d %d %15s", s->isa, &s->avx512, &s->avx2, &s->neon_dot, &s->bf16, s->note);
    const int rc = pclose(p);
    return n == 6 && rc == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "child")) return child();
    const char *self = "/proc/self/exe";
    char path[4096];
    const ssize_t len = readlink(self, path, sizeof path - 1);
    if (len > 0) { path[len] = 0; self = path; }

    seen base, s;
    CHECK(run_child(self, NULL, &base) == 0, "child without ARBOR_CPU_ISA did not report");
    CHECK(!strcmp(base.note, "ok"), "no cap, yet the cap was reported ignored");
    printf("cpu: kernels %s without a cap (avx512 set %d, avx2 set %d, neon+dotprod %d)\n", base.isa, base.avx512,
           base.avx2, base.neon_dot);

    /* native / avx512 / an empty value: the table as detected */
    const char *same[] = { "native", "avx512", "" };
    for (int i = 0; i < 3; i++) {
        CHECK(run_child(self, same[i], &s) == 0, "child with ARBOR_CPU_ISA=%s did not report", same[i]);
        CHECK(!strcmp(s.isa, base.isa) && s.avx512 == base.avx512 && s.avx2 == base.avx2 && !strcmp(s.note, "ok"),
              "ARBOR_CPU_ISA=%s changed the table: %s against %s", same[i], s.isa, base.isa);
    }

    /* avx2: no AVX-512 kernel anywhere; the AVX2 ones where the CPU has them */
    CHECK(run_child(self, "avx2", &s) == 0, "child with ARBOR_CPU_ISA=avx2 did not report");
    CHECK(s.avx512 == 0 && s.bf16 == 0 && s.neon_dot == 0, "ARBOR_CPU_ISA=avx2 left AVX-512 (%d, bf16 %d) or dotprod (%d)",
          s.avx512, s.bf16, s.neon_dot);
    CHECK(s.avx2 == base.avx2, "ARBOR_CPU_ISA=avx2 changed the AVX2 set: %d against %d", s.avx2, base.avx2);
    CHECK(!strcmp(s.isa, base.avx2 ? "avx2" : "scalar"), "ARBOR_CPU_ISA=avx2: kernels %s", s.isa);

    /* scalar: nothing but the reference kernels */
    CHECK(run_child(self, "scalar", &s) == 0, "child with ARBOR_CPU_ISA=scalar did not report");
    CHECK(!strcmp(s.isa, "scalar") && !s.avx512 && !s.avx2 && !s.neon_dot, "ARBOR_CPU_ISA=scalar: kernels %s (%d %d %d)",
          s.isa, s.avx512, s.avx2, s.neon_dot);

    /* neon: NEON without dotprod, so no dotprod kernels (and on x86 no SIMD kernels at all) */
    CHECK(run_child(self, "neon", &s) == 0, "child with ARBOR_CPU_ISA=neon did not report");
    CHECK(!s.avx512 && !s.neon_dot && !strcmp(s.isa, "scalar"), "ARBOR_CPU_ISA=neon: kernels %s", s.isa);

    /* anything else: ignored, and said so */
    CHECK(run_child(self, "avx1024", &s) == 0, "child with ARBOR_CPU_ISA=avx1024 did not report");
    CHECK(!strcmp(s.isa, base.isa) && !strcmp(s.note, "ignored"), "ARBOR_CPU_ISA=avx1024: kernels %s, note %s", s.isa,
          s.note);
    TEST_END();
}
