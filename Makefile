# Thin wrapper over CMake and the dependency script: no build logic lives here.
# `make demo` and `make test` are the two commands a newcomer needs (see README.md).
BUILD      ?= build
TEST_BUILD ?= build-test
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
JOBS       ?= $(shell nproc)

.PHONY: all deps demo test valgrind bench fuzz fuzz-build clean

all: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release
	cmake --build $(BUILD) -j$(JOBS)

deps:
	@bash scripts/deps.sh

# Tests run against an ASan/UBSan build of every binary. The release build (-O3 -g: what make
# demo and make bench run) is compiled too: it finds warnings, -Werror ones, that -O0 does not;
# integration/test_bench_quick runs make bench QUICK=1 on it (TV_BENCH_BUILD).
# ctest runs JOBS tests at once: most wait on servers and disks more than they compute (2 cores:
# 603 s against 1268 s one at a time, 2026-12-02). Tests that cannot share the machine say so
# in tests/CMakeLists.txt (RESOURCE_LOCK: the eBPF captures, which see each other's traffic).
test: all
	cmake -S . -B $(TEST_BUILD) -DCMAKE_BUILD_TYPE=Debug -DTV_SANITIZE=ON \
	      -DTV_VALGRIND_SERVER=$(abspath $(BUILD))/tracevaultd -DTV_BENCH_BUILD=$(abspath $(BUILD))
	cmake --build $(TEST_BUILD) -j$(JOBS)
	ctest --test-dir $(TEST_BUILD) -j$(JOBS) --output-on-failure --timeout 600
	$(MAKE) fuzz-build
	ctest --test-dir $(FUZZ_BUILD) -j$(JOBS) --output-on-failure --timeout 600

# The libFuzzer harnesses (tests/fuzz/README.md): a clang build of their libraries alone, every
# one instrumented (-fsanitize=fuzzer-no-link,address,undefined). `make test` runs each for a
# few seconds (ctest fuzz/NAME); `make fuzz` for FUZZ_SECONDS each and reports execs and crashes.
fuzz-build:
	CC=clang cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTV_FUZZ=ON
	cmake --build $(FUZZ_BUILD) --target tv_fuzz -j$(JOBS)

fuzz: deps fuzz-build
	bash scripts/fuzz.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

# Every integration test once more, tracevaultd (the release build) under valgrind's memcheck;
# the CLI and the tools stay the ASan build. Slow (tens of minutes): not part of make test,
# which runs four of them so (valgrind/server_tests).
valgrind: all
	cmake -S . -B $(TEST_BUILD) -DCMAKE_BUILD_TYPE=Debug -DTV_SANITIZE=ON \
	      -DTV_VALGRIND_SERVER=$(abspath $(BUILD))/tracevaultd -DTV_BENCH_BUILD=$(abspath $(BUILD))
	cmake --build $(TEST_BUILD) -j$(JOBS)
	/usr/bin/python3 tests/valgrind_suite.py --test-build $(abspath $(TEST_BUILD)) \
	      --server $(abspath $(BUILD))/tracevaultd

demo: all
	bash scripts/demo.sh $(BUILD)

# The benchmarks (bench/README.md): ingest, capture, under-store and read side, each step announced
# as "bench step K/N: WHAT (elapsed S s)". `make bench QUICK=1` runs every step small
# (TV_BENCH_QUICK=1: a minute or two on 2 cores), as make test does (integration/test_bench_quick).
bench: all
	$(if $(filter 1,$(QUICK)),TV_BENCH_QUICK=1) bash bench/run.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(TEST_BUILD) $(FUZZ_BUILD)
