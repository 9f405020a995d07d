#!/usr/bin/env bash
# Runs every benchmark of the engine core in one go, so baselines (read bandwidth, FMA
# peak, OpenBLAS) and our kernels are measured under the same machine conditions.
# Output: docs/bench-results/*.json and a console summary; docs/BENCHMARKS.md quotes it.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=docs/bench-results
mkdir -p "$OUT" models
B=build
for dt in bf16 fp8; do
  if [ ! -f models/bench-s-$dt/config.json ]; then
    $B/tools/mkmodel/dsv3-mkmodel --preset bench-s --dtype $dt --seed 1 --out models/bench-s-$dt
  fi
done
MIN_TIME="${DSV3_BENCH_MIN_TIME:-0.5}"
echo "== kernels (machine baselines, linear layers, MLA decode) =="
$B/bench/dsv3_bench_kernels --benchmark_min_time="$MIN_TIME" --benchmark_repetitions="${DSV3_BENCH_REPS:-3}" \
  --benchmark_report_aggregates_only=true --benchmark_out="$OUT/kernels.json" --benchmark_out_format=json
for dt in bf16 fp8; do
  echo "== whole model on bench-s ($dt) =="
  DSV3_BENCH_MODEL=models/bench-s-$dt $B/bench/dsv3_bench_model --benchmark_min_time="$MIN_TIME" \
    --benchmark_out="$OUT/model-$dt.json" --benchmark_out_format=json
done
PROMPT=$(seq 3 7919 4100000 | head -512 | awk '{printf "%s%d", (NR>1?",":""), $1 % 120000 + 3}')
for dt in bf16 fp8; do
  echo "== dsv3-generate bench-s ($dt): 512-token prompt, 128 new tokens =="
  $B/tools/generate/dsv3-generate --model models/bench-s-$dt --prompt-ids "$PROMPT" --max-new-tokens 128 \
    --ignore-eos --json > "$OUT/generate-$dt.json"
  grep -o '"\(prefill\|decode\)_[a-z_]*":[0-9.e+-]*' "$OUT/generate-$dt.json" | tr '\n' ' '; echo
done
