/* cli/quantize.c — `arbor quantize IN OUT TYPE [-t N]`: a GGUF to another file type, with the
 * same per-tensor types and bytes as llama.cpp's llama-quantize (no importance matrix). */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/timer.h"
#include "format/quantize_model.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: arbor quantize IN.gguf OUT.gguf TYPE [-t N]\n"
            "\n"
            "Writes OUT with every tensor converted as llama.cpp's llama-quantize would (its type mixes:\n"
            "q4_k_m keeps some ffn_down/attn_v in q6_k, norms and 1-D tensors stay as they are).\n"
            "\n"
            "  TYPE   one of: %s\n"
            "  -t N   threads (default: one per core)\n",
            ar_ftype_list());
}

int cmd_quantize(int argc, char **argv)
{
    const char *pos[3];
    int n_pos = 0, n_threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            char *end;
            if (i + 1 >= argc) return cli_fail("%s needs a number of threads", a);
            long v = strtol(argv[++i], &end, 10);
            if (*end || end == argv[i] || v < 1 || v > 1024) return cli_fail("%s: '%s' is not a thread count (1..1024)", a, argv[i]);
            n_threads = (int)v;
        } else if (a[0] == '-' && a[1]) {
            usage(stderr);
            return cli_fail("quantize: unknown option '%s'", a);
        } else if (n_pos < 3) {
            pos[n_pos++] = a;
        } else {
            usage(stderr);
            return cli_fail("quantize: too many arguments ('%s')", a);
        }
    }
    if (n_pos != 3) {
        usage(stderr);
        return cli_fail("quantize: expected IN OUT TYPE");
    }
    if (!ar_ftype_find(pos[2])) return cli_fail("unknown quantization type '%s'; valid types: %s", pos[2], ar_ftype_list());
    ar_error err = { 0 };
    double t0 = ar_now();
    if (ar_quantize_model(pos[0], pos[1], pos[2], n_threads, &err)) return cli_fail("%s", err.msg);
    fprintf(stderr, "arbor: wrote %s (%s) in %.1f s\n", pos[1], pos[2], ar_now() - t0);
    return 0;
}
