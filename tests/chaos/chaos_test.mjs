// Chaos suite for the self-healing cluster: each scenario starts a fresh local cluster
// (dsv3-launch, tiny random model), records reference replies, puts it under a closed-loop
// streaming load, injects a fault (SIGKILL / SIGSTOP / SIGTERM of a named process) a third
// of the way in, and checks how every request ended against the scenario's criteria.
//   node tests/chaos/chaos_test.mjs <repo root> <build dir> [scenario,scenario,...]
// Without a list every scenario runs (see scenarios.mjs). Environment:
//   DSV3_CHAOS_SECONDS   load time per scenario (default 20); the fault sequence extends it
//   DSV3_KEEP_LOGS=1     keep every scenario's cluster logs (a failed scenario's are always kept)
//   DSV3_TEST_ARTIFACTS  where chaos.jsonl goes (default <build dir>/test-artifacts)
//   DSV3_CHAOS_RECORDS=DIR  also write every request of a scenario to DIR/<scenario>.jsonl
//   DSV3_CHAOS_STEP_TOKENS  cap on the attention workers' tokens per step (default 64; 0: the
//                        cluster description's own maxBatchTokens). Steps of <= 64 tokens are
//                        batch-invariant (bit-exact whatever else is batched), so a reply that
//                        differs from its reference is the fault's doing, not a burst of
//                        retries landing in one big step (docs/RELIABILITY.md).
// Prints one table row per scenario and appends it as a JSON line to chaos.jsonl; exits 1
// when a scenario misses its criteria, 2 on a usage error.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { startCluster } from '../e2e/cluster.mjs';
import { recordReferences, runLoad } from './load.mjs';
import { appendJsonLine, summarize, tableHeader, tableRow } from './report.mjs';
import { Faults, SCENARIOS, judge } from './scenarios.mjs';

const [root, binDir, list] = process.argv.slice(2);
const SECONDS = Number(process.env.DSV3_CHAOS_SECONDS || 20);
const CLIENTS = 16;                 // concurrent closed-loop clients
const SEEDED = 4;                   // of which sample with a seed (the rest greedily)
const IDLE_MS = 30000;              // no byte for this long: hung
const TOTAL_MS = 45000;             // 24 tokens not complete in this long: hung
const START_MS = 90000;             // cluster start-up bound
// Per scenario, so that three scenarios fit one ctest entry's 600 s.
const BUDGET_MS = (140 + 2 * SECONDS) * 1000;
const ARTIFACTS = process.env.DSV3_TEST_ARTIFACTS || path.join(binDir ?? '.', 'test-artifacts');
const STEP_TOKENS = Number(process.env.DSV3_CHAOS_STEP_TOKENS ?? 64);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// The scenario's cluster description with every attention pool's maxBatchTokens capped at
// STEP_TOKENS, written next to the other temporary files; the description itself when 0.
function batchInvariantCluster(cluster) {
  if (!(STEP_TOKENS > 0)) return cluster;
  const desc = JSON.parse(fs.readFileSync(path.resolve(root, cluster), 'utf8'));
  for (const pool of ['prefill', 'decode', 'both']) {
    const p = desc.attention?.[pool];
    if (p) p.maxBatchTokens = Math.min(p.maxBatchTokens ?? 512, STEP_TOKENS);
  }
  const out = path.join(os.tmpdir(), `dsv3-chaos-${process.pid}-${path.basename(cluster)}`);
  fs.writeFileSync(out, JSON.stringify(desc, null, 2));
  return out;
}

let current = null;  // the running scenario's state, for the signal and exit handlers

function pickScenarios() {
  if (!root || !binDir || !(SECONDS > 0)) return null;
  if (!list) return SCENARIOS;
  const names = list.split(',').filter(Boolean);
  const unknown = names.filter((n) => !SCENARIOS.some((s) => s.name === n));
  if (unknown.length) {
    console.error(`unknown scenario(s): ${unknown.join(', ')}`);
    return null;
  }
  return names.map((n) => SCENARIOS.find((s) => s.name === n));  // in the given order; repeats run again
}

// Ends a scenario early: no new requests, nothing left stopped, the launcher told to stop
// (its children go, so in-flight requests and restart waits end at once).
function abortRun(run, reason) {
  run.aborted = true;
  run.reasons.push(reason);
  run.schedule.stopAt = -Infinity;
  run.faults?.releaseAll();
  run.cluster?.child.kill('SIGINT');
}

// The load, with the scenario's fault sequence a third of the way in. The load goes on for
// SECONDS in all and for at least a third of that after the last fault step.
async function loadWithFault(scenario, run) {
  const loadStart = performance.now();
  const load = runLoad({ url: run.cluster.url, apiKey: run.cluster.apiKey, clients: CLIENTS, seeded: SEEDED,
                         schedule: run.schedule, idleMs: IDLE_MS, totalMs: TOTAL_MS });
  await sleep(SECONDS * 1000 / 3);
  try {
    if (!run.aborted) await scenario.inject(run.faults);
  } catch (e) {
    run.reasons.push(`fault sequence: ${e.message}`);
  } finally {
    run.faults.releaseAll();
  }
  if (!run.aborted) run.schedule.stopAt = Math.max(loadStart + SECONDS * 1000, performance.now() + SECONDS * 1000 / 3);
  return { records: await load, loadStart };
}

// The launcher's own lines (starts, exits, restarts): the first thing to read on a failure.
function launcherTail(cluster, lines = 20) {
  return cluster.launcherLog().split('\n').filter((l) => l.startsWith('[dsv3-launch]')).slice(-lines);
}

// Every request (times in s from the load start) for a closer look: DSV3_CHAOS_RECORDS=DIR.
function dumpRecords(name, records, loadStart) {
  const dir = process.env.DSV3_CHAOS_RECORDS;
  fs.mkdirSync(dir, { recursive: true });
  const rel = (t) => +((t - loadStart) / 1000).toFixed(3);
  const lines = records.map((r) => JSON.stringify({ ...r, start: rel(r.start), end: rel(r.end) }));
  fs.writeFileSync(path.join(dir, `${name}.jsonl`), lines.join('\n') + '\n');
}

function gitCommit() {
  try { return execFileSync('git', ['-C', root, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim(); } catch { return null; }
}

async function runScenario(scenario) {
  const run = { aborted: false, reasons: [], cluster: null, faults: null, schedule: { stopAt: Infinity } };
  current = run;
  const timer = setTimeout(() => abortRun(run, `ran past its ${BUDGET_MS / 1000} s budget`), BUDGET_MS);
  let records = [], refs = new Map(), loadStart = 0;
  try {
    run.cluster = await startCluster({ root, binDir, cluster: batchInvariantCluster(scenario.cluster), timeoutMs: START_MS });
    run.faults = new Faults(run.cluster);
    refs = await recordReferences({ url: run.cluster.url, apiKey: run.cluster.apiKey, idleMs: IDLE_MS,
                                    totalMs: TOTAL_MS, aborted: () => run.aborted });
    ({ records, loadStart } = await loadWithFault(scenario, run));
  } catch (e) {
    console.error(e.message);
    run.reasons.push(e.message.split('\n')[0]);
  } finally {
    clearTimeout(timer);
    run.faults?.releaseAll();
  }
  const child = run.cluster?.child;
  if (child && !run.aborted && (child.exitCode !== null || child.signalCode !== null)) {
    run.reasons.push(`dsv3-launch exited (${child.exitCode ?? child.signalCode}) during the scenario`);
  }
  const summary = summarize(records, run.faults?.events ?? [], run.faults?.recoveries ?? [], refs, loadStart);
  if (process.env.DSV3_CHAOS_RECORDS) dumpRecords(scenario.name, records, loadStart);
  // Criteria only mean something once the load ran; a set-up failure speaks for itself.
  const why = records.length ? [...run.reasons, ...judge(scenario, summary)] : run.reasons;
  const launcher = run.cluster ? launcherTail(run.cluster) : [];
  await run.cluster?.stop({ keepLogs: Boolean(process.env.DSV3_KEEP_LOGS) || why.length > 0 });
  current = null;
  return { scenario: scenario.name, cluster: scenario.cluster, fault: scenario.fault, seconds: SECONDS,
           clients: CLIENTS, seeded: SEEDED, commit: gitCommit(), date: new Date().toISOString(),
           ...summary, pass: why.length === 0, why, launcher: why.length ? launcher : undefined };
}

// What a reader needs to see under a row: why it failed, the first wrong text, the most
// frequent failure details, and the launcher's last lines.
function explain(row) {
  for (const w of row.why) console.log(`  why: ${w}`);
  const m = row.firstMismatch;
  if (m) {
    console.log(`  first mismatch (${m.bucket}, started at ${m.startS} s by client ${m.client}, ` +
                `prompt ${m.promptIndex}, ${m.sampling}):\n` +
                `    want ${JSON.stringify(m.want)}\n    got  ${JSON.stringify(m.got)}`);
  }
  for (const [b, lines] of Object.entries(row.failures)) for (const l of lines) console.log(`  ${b}: ${l}`);
  if (row.launcher?.length) console.log(`  launcher:\n    ${row.launcher.join('\n    ')}`);
}

async function main() {
  const chosen = pickScenarios();
  if (!chosen) {
    console.error('usage: node tests/chaos/chaos_test.mjs <repo root> <build dir> [scenario,...]\n' +
                  `scenarios: ${SCENARIOS.map((s) => s.name).join(', ')}`);
    return 2;
  }
  const jsonl = path.join(ARTIFACTS, 'chaos.jsonl');
  const rows = [];
  for (const s of chosen) {
    console.log(`\n=== chaos scenario ${s.name} (${s.cluster}): ${s.fault}`);
    const row = await runScenario(s);
    rows.push(row);
    console.log(tableHeader());
    console.log(tableRow(row));
    explain(row);
    appendJsonLine(jsonl, row);
  }
  console.log(`\nchaos summary (${SECONDS} s of load per scenario, ${CLIENTS} clients; rows appended to ${jsonl})`);
  console.log(tableHeader());
  for (const r of rows) console.log(tableRow(r));
  const failed = rows.filter((r) => !r.pass);
  for (const r of failed) console.log(`FAIL ${r.scenario}: ${r.why.join('; ')}`);
  return failed.length ? 1 : 0;
}

// Interrupted (Ctrl-C, ctest's timeout): resume anything stopped and stop the cluster first.
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, async () => {
    current?.faults?.releaseAll();
    await current?.cluster?.stop({ keepLogs: true });
    process.exit(130);
  });
}
process.on('exit', () => current?.faults?.releaseAll());

process.exit(await main());
