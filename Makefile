# Thin wrapper over CMake and the dependency script: no build logic lives here.
# `make demo` and `make test` are the two commands a newcomer needs (see README.md).
BUILD      ?= build
TEST_BUILD ?= build-test
JOBS       ?= $(shell nproc)

.PHONY: all deps demo test valgrind bench clean

all: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo
	cmake --build $(BUILD) -j$(JOBS)

deps:
	@bash scripts/deps.sh

# Tests run against an ASan/UBSan build of every binary. The release build (what make demo
# and make bench run) is compiled too: -O2 finds warnings, -Werror ones, that -O0 does not.
test: all
	cmake -S . -B $(TEST_BUILD) -DCMAKE_BUILD_TYPE=Debug -DTV_SANITIZE=ON \
	      -DTV_VALGRIND_SERVER=$(abspath $(BUILD))/tracevaultd
	cmake --build $(TEST_BUILD) -j$(JOBS)
	ctest --test-dir $(TEST_BUILD) --output-on-failure --timeout 600

# Every integration test once more, tracevaultd (the release build) under valgrind's memcheck;
# the CLI and the tools stay the ASan build. Slow (tens of minutes): not part of make test,
# which runs two of them so (valgrind/server_tests).
valgrind: all
	cmake -S . -B $(TEST_BUILD) -DCMAKE_BUILD_TYPE=Debug -DTV_SANITIZE=ON \
	      -DTV_VALGRIND_SERVER=$(abspath $(BUILD))/tracevaultd
	cmake --build $(TEST_BUILD) -j$(JOBS)
	/usr/bin/python3 tests/valgrind_suite.py --test-build $(abspath $(TEST_BUILD)) \
	      --server $(abspath $(BUILD))/tracevaultd

demo: all
	bash scripts/demo.sh $(BUILD)

bench: all
	bash bench/run.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(TEST_BUILD)
