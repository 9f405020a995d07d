#!/usr/bin/env bash
# Runs every benchmark in one go, so baselines (read bandwidth, FMA peak, OpenBLAS, the
# single-process engine) and what is compared with them are measured under the same
# machine conditions. Output: docs/bench-results/*.json plus a console log;
# docs/BENCHMARKS.md quotes them.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=docs/bench-results
mkdir -p "$OUT" models
B=build
MK=$B/tools/mkmodel/dsv3-mkmodel
for dt in bf16 fp8; do
  [ -f models/bench-s-$dt/config.json ] || $MK --preset bench-s --dtype $dt --seed 1 --out models/bench-s-$dt
done
# Exchange benchmark models: only the hidden size matters (workers skip the expert math).
[ -f models/exch-512/config.json ] || $MK --preset tiny --dtype bf16 --seed 2 --set hidden_size=512 \
  --set vocab_size=2048 --set num_hidden_layers=2 --out models/exch-512
[ -f models/exch-7168/config.json ] || $MK --preset tiny --dtype bf16 --seed 2 --set hidden_size=7168 \
  --set vocab_size=2048 --set num_hidden_layers=2 --set moe_intermediate_size=8 --set intermediate_size=64 \
  --out models/exch-7168
MIN_TIME="${DSV3_BENCH_MIN_TIME:-0.5}"
REPS="${DSV3_BENCH_REPS:-3}"
GB=(--benchmark_min_time="$MIN_TIME" --benchmark_repetitions="$REPS" --benchmark_report_aggregates_only=true)

echo "== kernels: machine baselines, linear layers, MLA decode =="
$B/bench/dsv3_bench_kernels "${GB[@]}" --benchmark_out="$OUT/kernels.json" --benchmark_out_format=json

for dt in bf16 fp8; do
  echo "== whole model on bench-s ($dt), single process =="
  DSV3_BENCH_MODEL=models/bench-s-$dt $B/bench/dsv3_bench_model "${GB[@]}" \
    --benchmark_out="$OUT/model-$dt.json" --benchmark_out_format=json
done

echo "== serving engine on bench-s (bf16), single process: decode batches, TTFT, prefix cache, KV transfer =="
DSV3_BENCH_MODEL=models/bench-s-bf16 $B/bench/dsv3_bench_engine \
  --benchmark_out="$OUT/engine-bf16.json" --benchmark_out_format=json

echo "== expert exchange round trip (no expert compute), gRPC vs UCX =="
DSV3_BENCH_EXCHANGE_MODELS=512:models/exch-512,7168:models/exch-7168 $B/bench/dsv3_bench_exchange \
  --benchmark_min_time="$MIN_TIME" --benchmark_out="$OUT/exchange.json" --benchmark_out_format=json

run_dir=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$run_dir"' EXIT
for transport in grpc ucx; do
  addrs=()
  for slice in 0-127 128-255; do
    $B/services/expert-worker/dsv3-expert-worker --model models/bench-s-bf16 --experts $slice --listen 127.0.0.1:0 \
      --transport $transport --threads 1 > "$run_dir/$transport-$slice.out" 2>/dev/null &
    pids+=($!)
    for _ in $(seq 1 600); do grep -q listening "$run_dir/$transport-$slice.out" 2>/dev/null && break; sleep 0.1; done
    addrs+=("$(sed -n 's/^listening on //p' "$run_dir/$transport-$slice.out")")
  done
  if [ "$transport" = grpc ]; then
    echo "== serving engine on bench-s (bf16), experts in 2 worker processes over grpc: decode batches =="
    DSV3_BENCH_MODEL=models/bench-s-bf16 DSV3_BENCH_EXPERT_WORKERS="$(IFS=,; echo "${addrs[*]}")" \
      $B/bench/dsv3_bench_engine --benchmark_filter=EngineDecode \
      --benchmark_out="$OUT/engine-bf16-2workers.json" --benchmark_out_format=json
  fi
  echo "== whole model on bench-s (bf16), experts in 2 worker processes over $transport =="
  DSV3_BENCH_MODEL=models/bench-s-bf16 DSV3_BENCH_EXPERT_WORKERS="$(IFS=,; echo "${addrs[*]}")" \
    DSV3_BENCH_EXPERT_TRANSPORT=$transport $B/bench/dsv3_bench_model "${GB[@]}" --benchmark_filter=DecodeStep \
    --benchmark_out="$OUT/model-bf16-2workers-$transport.json" --benchmark_out_format=json
  kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null || true; pids=()
done

PROMPT=$(seq 3 7919 4100000 | head -512 | awk '{printf "%s%d", (NR>1?",":""), $1 % 120000 + 3}')
for dt in bf16 fp8; do
  echo "== dsv3-generate bench-s ($dt): 512-token prompt, 128 new tokens =="
  $B/tools/generate/dsv3-generate --model models/bench-s-$dt --prompt-ids "$PROMPT" --max-new-tokens 128 \
    --ignore-eos --json > "$OUT/generate-$dt.json"
  grep -o '"\(prefill\|decode\)_[a-z_]*":[0-9.e+-]*' "$OUT/generate-$dt.json" | tr '\n' ' '; echo
done
