#!/usr/bin/env bash
# Builds the safetensors header fuzzer with clang in its own build directory and runs it
# for a bounded time on a scratch copy of the committed seed corpus (the committed corpus
# is never grown). Exits non-zero if the fuzzer finds a crash, leak or timeout; the
# reproducer is kept under $BUILD/fuzz-artifacts/.
#
#   fuzz/run.sh [SECONDS]          (default 60)
set -euo pipefail

secs="${1:-60}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${DSV3_FUZZ_BUILD_DIR:-$root/build-fuzz}"
jobs="${DSV3_FUZZ_JOBS:-$(nproc)}"

CC=clang CXX=clang++ cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DDSV3_BUILD_FUZZ=ON -DDSV3_BUILD_TESTS=OFF -DDSV3_BUILD_BENCH=OFF -DDSV3_ENABLE_CUDA=OFF >/dev/null
cmake --build "$build" --target safetensors_header_fuzzer -j "$jobs"

fuzzer="$(find "$build" -type f -name safetensors_header_fuzzer -perm -u+x | head -n1)"
[[ -x "$fuzzer" ]] || { echo "fuzz/run.sh: fuzzer binary not found under $build" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/corpus" "$build/fuzz-artifacts"
cp "$root/fuzz/corpus/safetensors_header/"* "$work/corpus/"

echo "fuzz/run.sh: fuzzing the safetensors header parser for ${secs}s"
"$fuzzer" -max_total_time="$secs" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
  -print_final_stats=1 -artifact_prefix="$build/fuzz-artifacts/" "$work/corpus"
