// Turns a scenario's request records into its figures (outcomes per bucket, mismatches,
// seconds until served again) and prints / stores them.
import fs from 'node:fs';
import path from 'node:path';
import { referenceKey } from './load.mjs';

export const BUCKETS = ['before', 'across', 'after'];
export const OUTCOMES = ['ok', 'error', 'hung', 'truncated'];

// Relative to the first fault: ended before it, in flight at it, or started after it. With
// no fault at all every request is "before".
export function bucketOf(rec, faultAt) {
  if (faultAt === null || rec.end < faultAt) return 'before';
  return rec.start < faultAt ? 'across' : 'after';
}

// For each fault, the time from it until the first request started after it completed ok;
// the worst of those (seconds), or null when some fault was never followed by a served request.
export function servedAgain(records, faultTimes) {
  let worst = 0;
  for (const at of faultTimes) {
    const ends = records.filter((r) => r.outcome === 'ok' && r.start >= at).map((r) => r.end - at);
    if (!ends.length) return null;
    worst = Math.max(worst, Math.min(...ends));
  }
  return faultTimes.length ? +(worst / 1000).toFixed(3) : null;
}

// From the first fault to the end of the last request that failed (error, hung or
// truncated), in seconds: how long clients saw failures; null when none failed.
export function lastFailure(records, faultAt) {
  const ends = records.filter((r) => r.outcome !== 'ok' && faultAt !== null && r.end >= faultAt).map((r) => r.end);
  return ends.length ? +((Math.max(...ends) - faultAt) / 1000).toFixed(3) : null;
}

// The most frequent failure details per bucket (what to look at first).
function failureSamples(records, faultAt, limit = 3) {
  const out = {};
  for (const b of BUCKETS) {
    const counts = new Map();
    for (const r of records) {
      if (r.outcome === 'ok' || bucketOf(r, faultAt) !== b) continue;
      const k = `${r.outcome}: ${r.detail}`;
      counts.set(k, (counts.get(k) ?? 0) + 1);
    }
    const top = [...counts].sort((x, y) => y[1] - x[1]).slice(0, limit);
    if (top.length) out[b] = top.map(([k, n]) => `${n} x ${k}`);
  }
  return out;
}

// faultEvents / recoveries: { name, at } of each fault and each restart seen (performance.now()
// ms); loadStart: when the load began (times are reported from it).
export function summarize(records, faultEvents, recoveries, refs, loadStart) {
  const faultTimes = faultEvents.map((e) => e.at);
  const faultAt = faultTimes.length ? faultTimes[0] : null;
  const counts = Object.fromEntries(BUCKETS.map((b) => [b, Object.fromEntries(OUTCOMES.map((o) => [o, 0]))]));
  const mismatches = { before: 0, across: 0, after: 0, total: 0 };
  let firstMismatch = null;
  for (const r of records) {
    const b = bucketOf(r, faultAt);
    counts[b][r.outcome]++;
    if (r.outcome !== 'ok') continue;
    const want = refs.get(referenceKey(r.promptIndex, r.sampling));
    if (want === undefined || r.text === want) continue;
    mismatches[b]++;
    mismatches.total++;
    firstMismatch ??= { bucket: b, startS: +((r.start - loadStart) / 1000).toFixed(2), client: r.client,
                        promptIndex: r.promptIndex, sampling: r.sampling, want, got: r.text };
  }
  return {
    counts, mismatches, firstMismatch,
    servedAgainS: servedAgain(records, faultTimes),
    lastFailureS: lastFailure(records, faultAt),
    inFlightAtFault: OUTCOMES.reduce((n, o) => n + counts.across[o], 0),
    faults: faultEvents.map((e) => ({ name: e.name, signal: e.signal, atS: +((e.at - loadStart) / 1000).toFixed(2) })),
    // A restart proves something only if the cluster serves after it (e.g. the new gateway).
    recoveries: recoveries.map((e) => ({ name: e.name, atS: +((e.at - loadStart) / 1000).toFixed(2),
                                         servedAfter: records.some((r) => r.outcome === 'ok' && r.start >= e.at) })),
    failures: failureSamples(records, faultAt),
  };
}

const cell = (c) => OUTCOMES.map((o) => c[o]).join('/');
const COLUMNS = [
  ['scenario', 20, (r) => r.scenario],
  ['before ok/err/hung/trunc', 24, (r) => cell(r.counts.before)],
  ['across ok/err/hung/trunc', 24, (r) => cell(r.counts.across)],
  ['after ok/err/hung/trunc', 24, (r) => cell(r.counts.after)],
  ['mismatch', 8, (r) => String(r.mismatches.total)],
  ['served again', 12, (r) => (!r.faults.length ? '-' : r.servedAgainS === null ? 'never' : `${r.servedAgainS.toFixed(1)} s`)],
  ['last failure', 12, (r) => (r.lastFailureS === null ? '-' : `${r.lastFailureS.toFixed(1)} s`)],
  ['result', 6, (r) => (r.pass ? 'PASS' : 'FAIL')],
];

export const tableHeader = () => COLUMNS.map(([h, w]) => h.padEnd(w)).join(' | ');
export const tableRow = (row) => COLUMNS.map(([, w, f]) => f(row).padEnd(w)).join(' | ');

// Appends the row as one JSON line (several ctest entries may append at once: one write each).
export function appendJsonLine(file, row) {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.appendFileSync(file, JSON.stringify(row) + '\n');
}
