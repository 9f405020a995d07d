// The chaos scenarios: which cluster, which fault, what must hold. Faults are signals sent
// to dsv3-launch's children, found by name through the pid files the launcher writes
// (<log dir>/<name>.pid, rewritten on every restart).
import fs from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { BUCKETS } from './report.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// The environment may point the suite at other descriptions of the same shapes.
const HA = process.env.DSV3_CHAOS_HA_CLUSTER ?? 'deploy/cluster/local-ha.json';  // 2 prefill, 2 decode, 2 slices x 2 replicas
const LOCAL = process.env.DSV3_CHAOS_CLUSTER ?? 'deploy/cluster/local.json';     // 1 prefill, 1 decode, 2 slices, no redundancy
const RESTART_TIMEOUT_MS = 30000;             // backoff 0.5 s + a tiny-model start, with room for a busy machine

// Signals the cluster's processes and keeps the timeline of faults (what "before", "across"
// and "after" are measured against).
export class Faults {
  constructor(cluster) {
    this.cluster = cluster;
    this.events = [];          // { name, signal, pid, at } of each fault, in order
    this.recoveries = [];      // { name, at } of each restart seen (the cluster must serve after it)
    this.stopped = new Map();  // pid -> name of processes left SIGSTOPped
  }

  pid(name) {
    const file = path.join(this.cluster.logs, `${name}.pid`);
    let text;
    try { text = fs.readFileSync(file, 'utf8'); } catch (e) { throw new Error(`cannot read ${file}: ${e.code ?? e.message}`); }
    const pid = Number.parseInt(text, 10);
    if (!(pid > 1)) throw new Error(`${file} holds no pid: ${JSON.stringify(text)}`);
    return pid;
  }

  // How often the launcher has reported `[dsv3-launch] NAME restarted on HOST:PORT`.
  restarts(name) {
    const marker = `[dsv3-launch] ${name} restarted on `;
    return this.cluster.launcherLog().split('\n').filter((l) => l.includes(marker)).length;
  }

  // How often the launcher has said it gave up on NAME (a crash loop: it stays down).
  givenUp(name) {
    return this.cluster.launcherLog().split('\n').filter((l) => l.includes('giving up') &&
      (l.includes(`] ${name} exited (`) || l.includes(`restart of ${name} failed`))).length;
  }

  // Sends `signal` to the named process and records it as a fault; returns a handle for
  // waitRestarted / resume.
  inject(name, signal) {
    const pid = this.pid(name);
    const handle = { name, pid, restarts: this.restarts(name), givenUp: this.givenUp(name) };
    process.kill(pid, signal);
    this.events.push({ name, signal, pid, at: performance.now() });
    if (signal === 'SIGSTOP') this.stopped.set(pid, name);
    console.log(`  fault: ${signal} -> ${name} (pid ${pid})`);
    return handle;
  }

  // SIGCONT for a stopped process (gone already is fine: the supervisor may have replaced it).
  resume(handle) {
    this.stopped.delete(handle.pid);
    try { process.kill(handle.pid, 'SIGCONT'); } catch (e) { if (e.code !== 'ESRCH') throw e; }
    console.log(`  resumed: SIGCONT -> ${handle.name} (pid ${handle.pid})`);
  }

  // Never leave a stopped process behind (it would ignore the launcher's SIGTERM on stop).
  releaseAll() {
    for (const [pid, name] of this.stopped) this.resume({ name, pid });
  }

  // Until the supervisor has replaced the process: a new pid in its pid file and a
  // "restarted on" line from the launcher.
  async waitRestarted(handle, timeoutMs = RESTART_TIMEOUT_MS) {
    const t0 = performance.now();
    for (;;) {
      let pid = null;
      try { pid = this.pid(handle.name); } catch {}  // may be missing while being rewritten
      if (pid && pid !== handle.pid && this.restarts(handle.name) > handle.restarts) {
        this.recoveries.push({ name: handle.name, at: performance.now() });
        console.log(`  restarted: ${handle.name} (pid ${pid}) after ${((performance.now() - t0) / 1000).toFixed(1)} s`);
        return;
      }
      if (this.givenUp(handle.name) > handle.givenUp) throw new Error(`dsv3-launch gave up on ${handle.name}`);
      const child = this.cluster.child;
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`dsv3-launch exited (${child.exitCode ?? child.signalCode}) while ${handle.name} was down`);
      }
      if (performance.now() - t0 > timeoutMs) {
        throw new Error(`${handle.name} was not restarted within ${timeoutMs / 1000} s (pid file ${pid ?? 'unreadable'}, ` +
                        `restart lines ${this.restarts(handle.name)})`);
      }
      await sleep(100);
    }
  }
}

// Fault sequences.
const killAndWait = (name, signal) => async (f) => { await f.waitRestarted(f.inject(name, signal)); };
const oneAtATime = (names, signal, settleMs = 2000) => async (f) => {
  for (const name of names) {
    await f.waitRestarted(f.inject(name, signal));
    await sleep(settleMs);  // let the restarted one rejoin before the next goes
  }
};
const stopThenContinue = (name, stoppedMs) => async (f) => {
  const h = f.inject(name, 'SIGSTOP');
  await sleep(stoppedMs);
  f.resume(h);
};

// Pass criteria. Hung and truncated streams and wrong texts are never acceptable, and the
// cluster must serve a request started after each fault; errors only where a scenario says.
const strict = { errorsAllowedIn: [] };

export const SCENARIOS = [
  // Control: the same load with no fault. Mismatches here come from the load itself (e.g.
  // numerics that depend on batch composition), not from failover.
  { name: 'baseline', cluster: LOCAL, fault: 'none (control)', inject: async () => {}, control: true, ...strict },
  { name: 'expert-sigkill-ha', cluster: HA, fault: 'SIGKILL expert-1 (its replica takes over)',
    inject: killAndWait('expert-1', 'SIGKILL'), ...strict },
  { name: 'expert-sigstop-ha', cluster: HA, fault: 'SIGSTOP expert-1, SIGCONT 8 s later (hang failover)',
    inject: stopThenContinue('expert-1', 8000), ...strict },
  { name: 'expert-rolling-ha', cluster: HA, fault: 'SIGTERM each expert worker in turn (rolling restart)',
    inject: oneAtATime(['expert-0', 'expert-1', 'expert-0-r1', 'expert-1-r1'], 'SIGTERM'), ...strict },
  { name: 'decode-sigkill-ha', cluster: HA, fault: 'SIGKILL decode-0 (streams migrate to decode-1)',
    inject: killAndWait('decode-0', 'SIGKILL'), ...strict },
  { name: 'prefill-sigkill-ha', cluster: HA, fault: 'SIGKILL prefill-0 (prompts prefilled again on prefill-1)',
    inject: killAndWait('prefill-0', 'SIGKILL'), ...strict },
  { name: 'sigterm-drain-ha', cluster: HA, fault: 'SIGTERM expert-0, prefill-1, decode-1 in turn (drain + restart)',
    inject: oneAtATime(['expert-0', 'prefill-1', 'decode-1'], 'SIGTERM'), ...strict },
  { name: 'expert-sigkill', cluster: LOCAL, fault: 'SIGKILL expert-0, no replica (held until it is restarted)',
    inject: killAndWait('expert-0', 'SIGKILL'), ...strict },
  { name: 'decode-sigkill', cluster: LOCAL, fault: 'SIGKILL the only decode worker',
    inject: killAndWait('decode-0', 'SIGKILL'), errorsAllowedIn: ['across', 'after'] },
  { name: 'gateway-sigterm', cluster: LOCAL, fault: 'SIGTERM the gateway (drain, then restarted)',
    inject: killAndWait('gateway', 'SIGTERM'), errorsAllowedIn: ['after'] },
];

// Why a summarized scenario fails its criteria ([] = it passes).
export function judge(scenario, summary) {
  const why = [];
  for (const b of BUCKETS) {
    const c = summary.counts[b];
    if (c.hung) why.push(`${c.hung} hung request(s) ${b} the fault`);
    if (c.truncated) why.push(`${c.truncated} truncated stream(s) ${b} the fault`);
    if (c.error && !scenario.errorsAllowedIn.includes(b)) why.push(`${c.error} error(s) ${b} the fault`);
  }
  if (summary.mismatches.total) why.push(`${summary.mismatches.total} reply text(s) differ from the reference`);
  if (scenario.control) return why;
  if (!summary.faults.length) why.push('no fault was injected');
  else if (summary.servedAgainS === null) why.push('not served again after the fault');
  for (const r of summary.recoveries) if (!r.servedAfter) why.push(`nothing served after ${r.name} was restarted`);
  // Otherwise the fault hit an idle cluster and proved nothing about in-flight work.
  if (summary.faults.length && !summary.inFlightAtFault) why.push('no request was in flight at the fault');
  return why;
}
