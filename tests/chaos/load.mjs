// The chaos suite's client side: streamed POST /v1/completions requests classified by how
// they ended, a closed loop of concurrent clients, and the reference texts that every
// served reply is compared with.
import http from 'node:http';
import { performance } from 'node:perf_hooks';

// Short, distinct prompts: a few decode steps each, so that a fault always finds requests
// in prefill, in decode and queued.
export const PROMPTS = [
  'The capital of France is',
  'Once upon a time,',
  'def fibonacci(n):',
  'The three primary colours are',
  'In 1969, the first person to walk on the Moon',
  'Translate to German: good morning',
  'List of prime numbers: 2, 3, 5,',
  'Dear hiring manager,',
];

// Greedy replies must be reproducible; seeded sampling must be too (the seed fixes the
// draws, so a request moved to another worker has to continue the same random stream).
export const SAMPLINGS = {
  greedy: () => ({ temperature: 0 }),
  seeded: (promptIndex) => ({ temperature: 0.8, seed: 1000 + promptIndex }),
};

export const MAX_TOKENS = 24;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function requestBody(promptIndex, sampling) {
  return { model: 'dsv3-tiny', prompt: PROMPTS[promptIndex], max_tokens: MAX_TOKENS, stream: true,
           ...SAMPLINGS[sampling](promptIndex) };
}

export const referenceKey = (promptIndex, sampling) => `${promptIndex}:${sampling}`;

// Folds one SSE event (its lines, without the blank separator) into the stream state.
// The gateway reports a mid-stream failure as a data event holding {"error": ...} (and no
// [DONE]); an `event: error` line is accepted as well.
function applySseEvent(block, st) {
  let name = 'message';
  const data = [];
  for (const line of block.split('\n')) {
    if (line.startsWith('event:')) name = line.slice(6).trim();
    else if (line.startsWith('data:')) data.push(line.slice(line.startsWith('data: ') ? 6 : 5));
  }
  if (!data.length) return;
  const payload = data.join('\n');
  if (payload === '[DONE]') { st.done = true; return; }
  let chunk;
  try { chunk = JSON.parse(payload); } catch { st.errorEvent = `malformed SSE data: ${payload.slice(0, 120)}`; return; }
  if (name === 'error' || chunk.error) {
    st.errorEvent = chunk.error?.message ?? (chunk.error ? JSON.stringify(chunk.error) : payload.slice(0, 200));
    return;
  }
  const choice = chunk.choices?.[0];
  if (!choice) return;
  st.text += choice.text ?? '';
  if (choice.finish_reason) st.finish = choice.finish_reason;
}

// How a 200 stream that has closed ended: ok needs [DONE] after a finish_reason; an error
// event means the gateway gave up cleanly; anything else is a cut-off stream.
function classifyStream(st) {
  if (st.errorEvent) return ['error', `SSE error: ${st.errorEvent}`];
  if (st.done && st.finish) return ['ok', ''];
  if (st.done) return ['truncated', '[DONE] without a finish_reason'];
  return ['truncated', 'the connection ended without [DONE] or an error event'];
}

// One streamed completion. Never rejects; resolves to
// { outcome: ok|error|hung|truncated, detail, text, finish, status, start, end } (times:
// performance.now() ms). A failure before any response (connection refused or reset) is
// `error`: the client knows it was not served and may retry.
export function streamCompletion({ url, apiKey, body, idleMs, totalMs }) {
  return new Promise((resolve) => {
    const start = performance.now();
    const st = { text: '', finish: null, done: false, errorEvent: null, status: 0 };
    let settled = false, idle = null, req = null;
    const total = setTimeout(() => settle('hung', `not complete within ${totalMs} ms`), totalMs);
    const touch = () => {
      clearTimeout(idle);
      idle = setTimeout(() => settle('hung', `no byte for ${idleMs} ms`), idleMs);
    };
    function settle(outcome, detail) {
      if (settled) return;
      settled = true;
      clearTimeout(idle);
      clearTimeout(total);
      req.destroy();
      resolve({ outcome, detail, text: st.text, finish: st.finish, status: st.status, start, end: performance.now() });
    }
    const payload = JSON.stringify(body);
    req = http.request(`${url}/v1/completions`, {
      method: 'POST', agent: false,
      headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(payload),
                 Authorization: `Bearer ${apiKey}`, Accept: 'text/event-stream' },
    }, (res) => {
      st.status = res.statusCode;
      res.setEncoding('utf8');
      let buf = '';
      res.on('data', (d) => {
        touch();
        buf += d;
        if (res.statusCode !== 200) return;
        buf = buf.replace(/\r\n/g, '\n');
        let sep;
        while ((sep = buf.indexOf('\n\n')) >= 0) {
          applySseEvent(buf.slice(0, sep), st);
          buf = buf.slice(sep + 2);
        }
      });
      res.on('error', () => {});  // the 'close' below classifies what arrived
      res.on('close', () => {
        if (res.statusCode !== 200) {
          let msg = buf.slice(0, 200);
          try { msg = JSON.parse(buf).error?.message ?? msg; } catch {}
          settle('error', `HTTP ${res.statusCode}: ${msg}`);
          return;
        }
        settle(...classifyStream(st));
      });
    });
    req.on('error', (e) => settle(st.status ? 'truncated' : 'error', `${e.code ?? ''} ${e.message}`.trim()));
    touch();
    req.end(payload);
  });
}

// Closed-loop load: `clients` clients, each sending its next request as soon as the last
// one ended, until schedule.stopAt (performance.now() ms; the caller moves it once the fault
// sequence is over). Client i walks the prompt list from prompt i; the last `seeded` clients
// sample with a seed, the others greedily. After a failed request a client pauses
// `retryPauseMs`, so that a gateway that is down is not hammered in a tight loop.
// Resolves to every request's record (outcome fields plus client, promptIndex, sampling).
export async function runLoad({ url, apiKey, clients, seeded, schedule, idleMs, totalMs, retryPauseMs = 100 }) {
  const records = [];
  const client = async (c) => {
    const sampling = c >= clients - seeded ? 'seeded' : 'greedy';
    await sleep(c * 20);  // staggered, so that requests are at different steps when the fault hits
    for (let k = 0; performance.now() < schedule.stopAt; k++) {
      const promptIndex = (c + k) % PROMPTS.length;
      const r = await streamCompletion({ url, apiKey, body: requestBody(promptIndex, sampling), idleMs, totalMs });
      records.push({ ...r, client: c, promptIndex, sampling });
      if (r.outcome !== 'ok') await sleep(retryPauseMs);
    }
  };
  await Promise.all(Array.from({ length: clients }, (_, c) => client(c)));
  return records;
}

// The reply text of every (prompt, sampling) pair, one request at a time on the healthy
// cluster before any fault. Throws when one is not served: the cluster is broken before
// the chaos starts. `aborted()` ends the pass early (the scenario ran out of time).
export async function recordReferences({ url, apiKey, idleMs, totalMs, aborted = () => false }) {
  const refs = new Map();
  for (const sampling of Object.keys(SAMPLINGS)) {
    for (let p = 0; p < PROMPTS.length && !aborted(); p++) {
      const r = await streamCompletion({ url, apiKey, body: requestBody(p, sampling), idleMs, totalMs });
      if (r.outcome !== 'ok') {
        throw new Error(`reference request (prompt ${p}, ${sampling}) was ${r.outcome}: ${r.detail}`);
      }
      refs.set(referenceKey(p, sampling), r.text);
    }
  }
  return refs;
}
