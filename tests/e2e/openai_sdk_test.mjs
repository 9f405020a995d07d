// End to end through the official `openai` npm SDK against a cluster started like
// `./dsv3 up` (gateway + prefill + decode attention workers + 2 expert workers):
// models, chat (plain, streamed, content parts), completions with token ids, logprobs,
// n = 2, stop strings, API errors, abort mid-stream (the workers free the sequence), and
// the documentation's curl command verbatim (`-X Post`).
//   node tests/e2e/openai_sdk_test.mjs <repo root> <build dir>
import { describe, test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import OpenAI from 'openai';
import { startCluster, scrapeSum } from './cluster.mjs';

const [root, binDir] = process.argv.slice(2);
let cluster, client;

// One suite: its hooks bracket exactly these tests (top-level hooks can run early).
describe('dsv3 cluster through the openai SDK', () => {
  before(async () => {
    cluster = await startCluster({ root, binDir });
    client = new OpenAI({ apiKey: cluster.apiKey, baseURL: `${cluster.url}/v1`, maxRetries: 0, timeout: 60000 });
  });
  after(async () => { await cluster?.stop(); });

  test('models.list names the served model', async () => {
    const models = await client.models.list();
    assert.equal(models.data[0].id, 'dsv3-tiny');
    assert.equal(models.data[0].object, 'model');
  });

  test('chat completion, not streamed', async () => {
    const r = await client.chat.completions.create({
      model: 'dsv3-tiny', messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hello!' }],
      max_tokens: 8, temperature: 0.7, top_p: 0.9, top_k: 40 });
    assert.equal(r.object, 'chat.completion');
    assert.match(r.id, /^chatcmpl-/);
    assert.equal(r.model, 'dsv3-tiny');
    assert.ok(r.system_fingerprint);
    assert.equal(r.choices.length, 1);
    assert.equal(typeof r.choices[0].message.content, 'string');
    assert.ok(['stop', 'length'].includes(r.choices[0].finish_reason));
    assert.ok(r.usage.prompt_tokens > 0);
    assert.ok(r.usage.completion_tokens > 0 && r.usage.completion_tokens <= 8);
    assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
  });

  test('streamed chat with content parts and include_usage, as the documentation shows', async () => {
    const stream = await client.chat.completions.create({
      messages: [{ role: 'user', content: [{ type: 'text', text: '你好，介绍一下你自己，越详细越好。' }] }],
      model: 'dsv3-tiny', max_completion_tokens: 12, stream: true, stream_options: { include_usage: true } });
    let text = '', chunks = 0, finish = null, usage = null;
    for await (const chunk of stream) {
      chunks++;
      assert.equal(chunk.object, 'chat.completion.chunk');
      if (chunk.usage) usage = chunk.usage;
      if (chunk.choices.length) {
        text += chunk.choices[0].delta.content ?? '';
        finish = chunk.choices[0].finish_reason ?? finish;
      }
    }
    assert.ok(chunks >= 2);
    assert.ok(['stop', 'length'].includes(finish));
    assert.ok(usage && usage.completion_tokens > 0 && usage.completion_tokens <= 12);
    assert.equal(typeof text, 'string');
  });

  test('completions with token ids, echo and legacy logprobs', async () => {
    const r = await client.completions.create({ model: 'dsv3-tiny', prompt: [[100, 200, 300, 400]], max_tokens: 5,
                                                 temperature: 0, logprobs: 2, echo: true });
    assert.equal(r.object, 'text_completion');
    assert.equal(r.choices.length, 1);
    assert.ok(r.choices[0].logprobs.tokens.length >= 5);
    assert.equal(r.usage.prompt_tokens, 4);
    assert.equal(r.usage.completion_tokens, 5);
  });

  test('echo + logprobs scores the prompt (max_tokens 0), as lm-eval-style clients do', async () => {
    const ids = [0, 4123, 880, 19, 7777, 301, 12045, 66, 2048, 910, 5, 31000];
    const r = await client.completions.create({ model: 'dsv3-tiny', prompt: ids, max_tokens: 0, echo: true,
                                                logprobs: 3, temperature: 0 });
    const c = r.choices[0];
    assert.equal(c.finish_reason, 'length');
    assert.equal(r.usage.prompt_tokens, ids.length);
    assert.equal(r.usage.completion_tokens, 0);
    const lp = c.logprobs;
    assert.equal(lp.tokens.length, ids.length);
    assert.equal(lp.token_logprobs[0], null, 'the first prompt token has no logprob');
    assert.equal(lp.top_logprobs[0], null);
    for (let i = 1; i < ids.length; i++) {
      assert.equal(typeof lp.token_logprobs[i], 'number');
      assert.ok(lp.token_logprobs[i] <= 0);
      assert.ok(Object.keys(lp.top_logprobs[i]).length >= 1);
    }
    // Position k's alternatives are the distribution after ids[0..k): a one-token greedy
    // generation from that prefix reports the same one.
    for (const k of [3, 8]) {
      const g = await client.completions.create({ model: 'dsv3-tiny', prompt: ids.slice(0, k), max_tokens: 1,
                                                  logprobs: 3, temperature: 0 });
      const want = g.choices[0].logprobs.top_logprobs[0];
      const got = lp.top_logprobs[k];
      assert.deepEqual(Object.keys(got).sort(), Object.keys(want).sort(), `position ${k}`);
      for (const t of Object.keys(want)) assert.ok(Math.abs(got[t] - want[t]) < 1e-4, `position ${k} token ${t}`);
    }
    // Streamed: the echo chunk comes first and already carries the prompt logprobs.
    const stream = await client.completions.create({ model: 'dsv3-tiny', prompt: ids, max_tokens: 2, echo: true,
                                                     logprobs: 1, temperature: 0, stream: true });
    let first = null;
    for await (const chunk of stream) if (!first && chunk.choices.length) first = chunk.choices[0];
    assert.equal(first.logprobs.tokens.length, ids.length);
    assert.equal(first.logprobs.token_logprobs[0], null);
    for (let i = 1; i < ids.length; i++) {
      assert.ok(Math.abs(first.logprobs.token_logprobs[i] - lp.token_logprobs[i]) < 1e-4, `streamed position ${i}`);
    }
  });

  test('response_format json_object: replies are JSON objects; json_schema is refused', async () => {
    const tk = await (await fetch(`${cluster.url}/tokenize`, {
      method: 'POST', headers: { Authorization: `Bearer ${cluster.apiKey}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ model: 'dsv3-tiny', prompt: '}', add_special_tokens: false }) })).json();
    assert.equal(tk.tokens.length, 1);
    // '}' favoured so that some of the random model's choices close their object early.
    const r = await client.chat.completions.create({
      model: 'dsv3-tiny', messages: [{ role: 'user', content: 'Reply in JSON.' }], response_format: { type: 'json_object' },
      n: 8, max_tokens: 40, temperature: 1, seed: 3, logit_bias: { [tk.tokens[0]]: 8 } });
    let stopped = 0;
    for (const c of r.choices) {
      assert.ok(c.message.content.startsWith('{'), c.message.content);
      if (c.finish_reason === 'stop') {
        stopped++;
        const v = JSON.parse(c.message.content);
        assert.equal(typeof v, 'object');
        assert.ok(v !== null && !Array.isArray(v));
      } else {
        assert.equal(c.finish_reason, 'length');
      }
    }
    assert.ok(stopped >= 1, 'some choice closes its object');
    await assert.rejects(
      client.chat.completions.create({ model: 'dsv3-tiny', messages: [{ role: 'user', content: 'x' }],
                                       response_format: { type: 'json_schema', json_schema: { name: 'x', schema: {} } } }),
      (e) => e.status === 400 && e.param === 'response_format');
  });

  test('chat logprobs with top_logprobs', async () => {
    const r = await client.chat.completions.create({ model: 'dsv3-tiny', messages: [{ role: 'user', content: 'Count.' }],
                                                      max_tokens: 6, temperature: 0, logprobs: true, top_logprobs: 3 });
    const content = r.choices[0].logprobs.content;
    assert.equal(content.length, r.usage.completion_tokens);
    for (const t of content) {
      assert.ok(t.logprob <= 0);
      assert.equal(t.top_logprobs.length, 3);
      assert.ok(t.top_logprobs[0].logprob >= t.top_logprobs[2].logprob);
    }
  });

  test('n = 2 gives two choices', async () => {
    const r = await client.chat.completions.create({ model: 'dsv3-tiny', messages: [{ role: 'user', content: 'Hi' }],
                                                      max_tokens: 6, n: 2, temperature: 1.0, seed: 3 });
    assert.deepEqual(r.choices.map((c) => c.index).sort(), [0, 1]);
    assert.ok(r.usage.completion_tokens >= 2 && r.usage.completion_tokens <= 12);
  });

  test('stop strings end the output before the match', async () => {
    const ask = (extra) => client.chat.completions.create({ model: 'dsv3-tiny', max_tokens: 24, temperature: 0,
                                                            messages: [{ role: 'user', content: 'Tell me a story.' }], ...extra });
    const full = (await ask({})).choices[0].message.content;
    assert.ok(full.length >= 6, `need some text to cut, got ${JSON.stringify(full)}`);
    // A stop string from the middle of the greedy output (greedy: the same text again).
    const cut = Math.floor(full.length / 2);
    const stop = full.slice(cut, cut + 3);
    const r = await ask({ stop: [stop, 'never-appears'] });
    assert.equal(r.choices[0].finish_reason, 'stop');
    assert.equal(r.choices[0].message.content, full.slice(0, full.indexOf(stop)));
  });

  test('an invalid request is an APIError naming the parameter', async () => {
    await assert.rejects(
      client.chat.completions.create({ model: 'dsv3-tiny', messages: [{ role: 'user', content: 'x' }], temperature: 7 }),
      (e) => e instanceof OpenAI.BadRequestError && e.status === 400 && e.param === 'temperature' &&
             e.error?.type === 'invalid_request_error');
    await assert.rejects(
      client.chat.completions.create({ model: 'no-such-model', messages: [{ role: 'user', content: 'x' }] }),
      (e) => e instanceof OpenAI.NotFoundError && e.status === 404);
    const bad = new OpenAI({ apiKey: 'wrong', baseURL: `${cluster.url}/v1`, maxRetries: 0 });
    await assert.rejects(bad.models.list(), (e) => e instanceof OpenAI.AuthenticationError && e.status === 401);
  });

  test('abort mid-stream frees the sequence in the workers', async () => {
    const workers = cluster.metricsTargets.filter((t) => t.labels.service === 'attention-worker').flatMap((t) => t.targets);
    const controller = new AbortController();
    const stream = await client.chat.completions.create(
      { model: 'dsv3-tiny', messages: [{ role: 'user', content: 'Go on forever.' }], max_tokens: 4000,
        stream: true }, { signal: controller.signal });
    let got = 0, finished = false;
    try {
      for await (const chunk of stream) {
        if (chunk.choices[0]?.finish_reason) finished = true;
        if (chunk.choices[0]?.delta?.content !== undefined) got++;
        if (got >= 3) controller.abort();
      }
    } catch (e) {
      // Depending on the SDK version an abort ends the iteration or throws an abort error.
      assert.ok(e.name === 'APIUserAbortError' || e.name === 'AbortError', `unexpected ${e.name}: ${e.message}`);
    }
    assert.ok(got >= 3 && !finished, `the stream should be cut after 3 deltas (got ${got}, finished ${finished})`);
    // The gateway cancels the gRPC call; the decode worker drops the sequence (metrics are
    // refreshed once a second).
    // The two gauges are set one after the other by the collector: a scrape may fall
    // between them, so wait for both.
    let running = -1, usage = -1;
    for (let i = 0; i < 40; i++) {
      await new Promise((r) => setTimeout(r, 250));
      running = await scrapeSum(workers, 'dsv3_attention_requests_running');
      usage = await scrapeSum(workers, 'dsv3_attention_kv_cache_usage_ratio');
      if (running === 0 && usage === 0) break;
    }
    assert.equal(running, 0);
    assert.equal(usage, 0);
  });

  test('the documented curl command works verbatim (-X Post)', () => {
    const body = JSON.stringify({ model: 'dsv3-tiny', messages: [{ role: 'user', content: '给闺女写一份来自未来2035的信' }],
                                  max_tokens: 4 });
    const out = execFileSync('curl', ['-sS', '-X', 'Post', `${cluster.url}/v1/chat/completions`,
                                      '-H', 'Content-Type: application/json', '-H', `Authorization: Bearer ${cluster.apiKey}`,
                                      '-d', body], { encoding: 'utf8' });
    const r = JSON.parse(out);
    assert.equal(r.object, 'chat.completion');
    assert.ok(r.choices[0].message.content !== undefined);
  });
});
