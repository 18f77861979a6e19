# arbor — plain GNU Make. `make` builds libarbor.a, the arbor CLI and the tests;
# `make test` installs what the tests need (scripts/deps.sh), then builds and runs everything.
# BUILD selects the output directory, so parallel builds (helpers, sanitizers) never collide.

BUILD    ?= build
CC       ?= cc
OPT      ?= -O2 -g
SAN      ?=
DEFS     ?=
CFLAGS   ?=
CFLAGS   += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror $(OPT) $(SAN) $(DEFS) -pthread \
            -I. -Iinclude $(shell pkg-config --cflags libpcre2-8 2>/dev/null)
LDLIBS   += $(shell pkg-config --libs libpcre2-8 2>/dev/null) -lutf8proc -lmicrohttpd -ljansson -lm -pthread -ldl
LDFLAGS  += $(SAN)

LAYERS   := base format tok compute compute/cpu model spec engine server
LIB_SRC  := $(foreach d,$(LAYERS),$(wildcard $(d)/*.c))
CLI_SRC  := $(wildcard cli/*.c)
TEST_SRC := $(wildcard tests/test_*.c)

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o)
TESTS    := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)

# Kernel files carry their own ISA flags; dispatch picks one at run time (compute/cpu/gemm.c).
ARCH := $(shell $(CC) -dumpmachine | cut -d- -f1)
ifeq ($(ARCH),x86_64)
AVX512_FLAGS := -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni -mavx512bf16 -mfma -mf16c -mavx2
AVX2_FLAGS   := -mavx2 -mfma -mf16c
$(BUILD)/compute/cpu/%_avx512.o: CFLAGS += $(AVX512_FLAGS)
$(BUILD)/compute/cpu/%_avx2.o:   CFLAGS += $(AVX2_FLAGS)
endif
ifeq ($(ARCH),aarch64)
$(BUILD)/compute/cpu/%_neon.o:   CFLAGS += -march=armv8.2-a+dotprod
endif

.PHONY: all test test-asan fuzz clean run
all: $(BUILD)/libarbor.a $(BUILD)/arbor $(TESTS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libarbor.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/arbor: $(CLI_OBJ) $(BUILD)/libarbor.a
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/tests/%: tests/%.c tests/test.h $(BUILD)/libarbor.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< $(BUILD)/libarbor.a $(LDFLAGS) $(LDLIBS) -o $@

# The whole suite: dependencies (apt, npm oracle), then the normal build, then the sanitizer build.
test:
	scripts/deps.sh
	$(MAKE) all
	scripts/run-tests.sh $(BUILD)
	$(MAKE) test-asan

# ASan+UBSan build of the library and tests (oracle-heavy suites run in reduced form there). Large state
# buffers come from the heap there (base/bigmem.h), so that LeakSanitizer sees one that is never freed.
test-asan:
	$(MAKE) BUILD=build-asan OPT="-O1 -g -fno-omit-frame-pointer" \
	    SAN="-fsanitize=address,undefined -fno-sanitize-recover=all" DEFS=-DAR_BIGMEM_MALLOC all
	ARBOR_SANITIZED=1 scripts/run-tests.sh build-asan

# The main job: dependencies, build, then `arbor serve` on the bundled default model
# (OpenAI and Anthropic APIs on http://127.0.0.1:8080; SERVE_ARGS adds flags, e.g. --port 9000).
SERVE_ARGS ?=
run:
	scripts/deps.sh
	$(MAKE) all
	scripts/serve-default.sh $(BUILD) $(SERVE_ARGS)

# libFuzzer targets (clang); FUZZ_SECONDS bounds each run.
FUZZ_SECONDS ?= 60
fuzz:
	scripts/fuzz.sh $(FUZZ_SECONDS)

clean:
	rm -rf build build-asan build-fuzz

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d)
