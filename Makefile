# Thin front to CMake + Ninja. `make run` and `make test` install what they need first.
BUILD   ?= build/release
ASAN    ?= build/asan
O3      ?= build/o3
FUZZB   ?= build/fuzz
FUZZ_SECONDS ?= 60
CMAKE_FLAGS ?=

.PHONY: all build run test unit asan o3 fuzz bench deps format clean

all: build

deps:
	@scripts/deps.sh

$(BUILD)/build.ninja:
	@scripts/deps.sh --check || scripts/deps.sh
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS) >/dev/null

build: $(BUILD)/build.ninja
	@ninja -C $(BUILD)

$(ASAN)/build.ninja:
	@scripts/deps.sh --check || scripts/deps.sh
	CC=gcc cmake -S . -B $(ASAN) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCAIRN_SANITIZE=ON >/dev/null

asan: $(ASAN)/build.ninja
	@ninja -C $(ASAN)

# CMake's Release flags (-O3): gcc warns there where -O2 does not (maybe-uninitialized, which
# -Werror turns into a failed build). Built by `make test`, not run.
$(O3)/build.ninja:
	@scripts/deps.sh --check || scripts/deps.sh
	cmake -S . -B $(O3) -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null

o3: $(O3)/build.ninja
	@ninja -C $(O3)

# The demo's npm modules may be newer than the build tree: check them on every run.
run: build
	@scripts/deps.sh --check 2>/dev/null || scripts/deps.sh
	@scripts/run.sh $(BUILD)/cairn

# Unit, fuzz-corpus and integration tests, in the release build and under ASan+UBSan; the
# -O3 build is only compiled.
test: build asan o3
	@scripts/test.sh $(BUILD) $(ASAN)

unit: build
	@cd $(BUILD) && ctest --output-on-failure -L unit

$(FUZZB)/build.ninja:
	@scripts/deps.sh --check || scripts/deps.sh
	CC=clang cmake -S . -B $(FUZZB) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCAIRN_FUZZ=ON \
	  -DCAIRN_SANITIZE=ON >/dev/null

# Runs every libFuzzer target for FUZZ_SECONDS over a scratch copy of its corpus.
fuzz: $(FUZZB)/build.ninja
	@ninja -C $(FUZZB)
	@scripts/fuzz.sh $(FUZZB) $(FUZZ_SECONDS)

# Every side-by-side benchmark (BENCH=http-hello runs one); results go in BENCHMARKS.md.
BENCH ?= http-hello ingest query
bench: build
	@scripts/deps.sh --bench
	@for b in $(BENCH); do echo "== bench/$$b.sh"; bench/$$b.sh || exit 1; done

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build
