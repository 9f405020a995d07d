// The gateway's web chat page (GET /, services/gateway/web/index.html) in real headless
// Chromium (Debian's `chromium`, driven by playwright-core) against a cluster started
// like `./dsv3 up`: API key entry and the model picker, a streamed reply that grows as it
// arrives, the Stop button (the stream ends and the workers free the sequence), markdown
// rendering and HTML escaping (through a canned SSE stream and the page's own renderer),
// and a screenshot in $DSV3_TEST_ARTIFACTS (default <build dir>/test-artifacts).
//   node tests/e2e/web_chat_test.mjs <repo root> <build dir>
// Chromium is required: a missing browser fails the test (`./dsv3 setup` installs it);
// DSV3_CHROMIUM=/path overrides /usr/bin/chromium.
import { describe, test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { startCluster, scrapeSum } from './cluster.mjs';

const [root, binDir] = process.argv.slice(2);
if (!root || !binDir) {
  console.error('usage: node tests/e2e/web_chat_test.mjs <repo root> <build dir>');
  process.exit(2);
}
const CHROMIUM = process.env.DSV3_CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = process.env.DSV3_TEST_ARTIFACTS || path.join(binDir, 'test-artifacts');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let cluster, browser, page, workers;
const pageErrors = [];
const chatRequests = [];   // { body, auth } of each POST /v1/chat/completions the page made
const chatResponses = [];  // { status, contentType }

// Everything is bounded: if the whole file runs past this (ctest allows 300 s), stop the
// cluster and the browser and fail rather than hang.
const watchdog = setTimeout(async () => {
  console.error('web_chat_test: overall time limit (280 s) reached, giving up');
  await Promise.race([Promise.allSettled([browser?.close(), cluster?.stop()]), sleep(12000)]);
  process.exit(1);
}, 280000);
watchdog.unref();

// Records every distinct text of the last assistant message (MutationObserver in the page).
async function recordReplies() {
  await page.evaluate(() => {
    window.__replies?.observer.disconnect();
    const seen = [];
    const last = () => {
      const all = document.querySelectorAll('#log .msg.assistant .content');
      return all.length ? all[all.length - 1].textContent : '';
    };
    const observer = new MutationObserver(() => {
      const t = last();
      if (t && t !== seen[seen.length - 1]) seen.push(t);
    });
    observer.observe(document.getElementById('log'), { childList: true, subtree: true, characterData: true });
    window.__replies = { seen, observer };
  });
}
const replies = () => page.evaluate(() => window.__replies.seen.slice());
const lastReply = () => page.evaluate(() => {
  const all = document.querySelectorAll('#log .msg.assistant');
  const m = all[all.length - 1];
  return m ? { text: m.querySelector('.content').textContent, html: m.querySelector('.content').innerHTML,
               error: m.classList.contains('error') } : null;
});
const status = () => page.textContent('#status');
const running = () => scrapeSum(workers, 'dsv3_attention_requests_running');

async function waitMetric(pred, what, ms = 15000) {
  let v;
  for (const end = Date.now() + ms; Date.now() < end; await sleep(250)) {
    v = await running();
    if (pred(v)) return v;
  }
  assert.fail(`${what}: dsv3_attention_requests_running is ${v} after ${ms} ms`);
}

// Fail (not skip) without the browser: CI installs it through ./dsv3 setup.
const haveChromium = fs.existsSync(CHROMIUM);
if (!haveChromium) {
  const msg = `Chromium not found at ${CHROMIUM}: this test needs Debian's chromium package ` +
              `(./dsv3 setup installs it, or apt-get install chromium; DSV3_CHROMIUM=/path overrides)`;
  console.error(`web_chat_test: FAIL: ${msg}`);
  test('Chromium is installed', () => assert.fail(msg));
}

describe('web chat page in headless Chromium', { skip: !haveChromium && 'no Chromium (see the failure above)' }, () => {
  before(async () => {
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'], timeout: 60000 });
    cluster = await startCluster({ root, binDir });
    workers = cluster.metricsTargets.filter((t) => t.labels.service === 'attention-worker').flatMap((t) => t.targets);
    assert.ok(workers.length >= 2, `attention-worker metrics targets: ${JSON.stringify(cluster.metricsTargets)}`);
    const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
    page = await context.newPage();
    page.setDefaultTimeout(30000);
    page.on('pageerror', (e) => pageErrors.push(e.message));
    page.on('request', (r) => {
      if (r.method() === 'POST' && r.url().endsWith('/v1/chat/completions')) {
        chatRequests.push({ body: JSON.parse(r.postData()), auth: r.headers().authorization });
      }
    });
    page.on('response', (r) => {
      if (r.url().endsWith('/v1/chat/completions')) {
        chatResponses.push({ status: r.status(), contentType: r.headers()['content-type'] });
      }
    });
  }, { timeout: 180000 });

  after(async () => {
    await Promise.race([browser?.close(), sleep(10000)]);
    await cluster?.stop();
  }, { timeout: 30000 });

  test('the page loads; without a key no models, with the key the picker lists dsv3-tiny', { timeout: 60000 }, async () => {
    const resp = await page.goto(`${cluster.url}/`);
    assert.equal(resp.status(), 200);
    assert.match(resp.headers()['content-type'], /^text\/html/);
    assert.equal(await page.title(), 'dsv3 chat');
    // The page lists models on load; the gateway wants a key, so the status says why.
    await page.waitForFunction(() => document.getElementById('status').textContent !== '');
    assert.equal(await page.locator('#model option').count(), 0);
    // Entering the key (committed with Enter -> change event) lists the models.
    await page.fill('#key', cluster.apiKey);
    await page.press('#key', 'Enter');
    await page.waitForSelector('#model option[value="dsv3-tiny"]', { state: 'attached' });
    assert.equal(await page.inputValue('#model'), 'dsv3-tiny');
    assert.equal(await status(), '');
    assert.equal(await page.evaluate(() => localStorage.getItem('dsv3.apiKey')), cluster.apiKey);
  });

  test('a message sent with Enter gets a streamed reply that grows while it arrives', { timeout: 120000 }, async () => {
    await page.fill('#maxtok', '200');
    await page.fill('#temp', '0.7');
    await recordReplies();
    const t0 = Date.now();
    await page.fill('#input', 'Tell me a long story about a lighthouse.');
    await page.press('#input', 'Enter');
    await page.waitForFunction(() => document.getElementById('send').disabled && !document.getElementById('stop').disabled);
    assert.equal(await page.textContent('#log .msg.user .content'), 'Tell me a long story about a lighthouse.');
    assert.equal(await page.inputValue('#input'), '');
    await page.waitForFunction(() => !document.getElementById('send').disabled, null, { timeout: 100000 });
    const seen = await replies();
    const final = await lastReply();
    console.log(`reply after ${Date.now() - t0} ms, ${seen.length} distinct texts while streaming: ` +
                JSON.stringify(final.text.slice(0, 120)));
    assert.equal(final.error, false, `the page shows an error: ${final.text}`);
    assert.match(await status(), /^done in /);
    assert.ok(final.text.length > 0, 'empty reply');
    assert.ok(seen.length >= 2 && new Set(seen).size >= 2,
              `the reply should grow while streaming; saw ${JSON.stringify(seen)}`);
    assert.equal(seen[seen.length - 1], final.text);
    assert.ok(await page.isDisabled('#stop'));
    // What the page asked for, and that the answer was an SSE stream.
    const req = chatRequests[chatRequests.length - 1];
    assert.equal(req.auth, `Bearer ${cluster.apiKey}`);
    assert.equal(req.body.model, 'dsv3-tiny');
    assert.equal(req.body.stream, true);
    assert.equal(req.body.max_tokens, 200);
    assert.deepEqual(req.body.messages, [{ role: 'user', content: 'Tell me a long story about a lighthouse.' }]);
    const res = chatResponses[chatResponses.length - 1];
    assert.equal(res.status, 200);
    assert.match(res.contentType, /^text\/event-stream/);
  });

  test('Stop ends a long generation: no more text, Send usable again, the workers free the sequence', { timeout: 120000 }, async () => {
    await page.click('#clear');
    assert.equal(await page.locator('#log .msg').count(), 0);
    await page.fill('#maxtok', '100000');
    await recordReplies();
    await page.fill('#input', 'Go on forever.');
    await page.click('#send');
    // Streaming: a few texts seen, and the workers report it running.
    await page.waitForFunction(() => (window.__replies.seen.length >= 3), null, { timeout: 60000 });
    assert.equal(chatRequests[chatRequests.length - 1].body.max_tokens, 100000);
    await waitMetric((v) => v >= 1, 'while generating');
    assert.ok(await page.isDisabled('#send'), 'Send is disabled while streaming');
    await page.click('#stop');
    await page.waitForFunction(() => document.getElementById('status').textContent === 'stopped');
    await page.waitForFunction(() => !document.getElementById('send').disabled);
    assert.ok(await page.isDisabled('#stop'));
    const stopped = await lastReply();
    assert.equal(stopped.error, false, `the page shows an error: ${stopped.text}`);
    assert.ok(stopped.text.length > 0);
    const n = (await replies()).length;
    await sleep(1500);
    assert.equal((await lastReply()).text, stopped.text, 'the reply kept growing after Stop');
    assert.equal((await replies()).length, n);
    // The browser closed the stream; the gateway cancelled the gRPC calls.
    await waitMetric((v) => v === 0, 'after Stop');
    assert.equal(await scrapeSum(workers, 'dsv3_attention_kv_cache_usage_ratio'), 0);
    console.log(`stopped after ${stopped.text.length} characters; workers running: 0`);

    // The conversation goes on after a stop (the partial reply is part of the history).
    await page.fill('#maxtok', '6');
    await page.fill('#input', 'And then?');
    await page.click('#send');
    await page.waitForFunction(() => /^done in /.test(document.getElementById('status').textContent), null, { timeout: 60000 });
    const req = chatRequests[chatRequests.length - 1];
    assert.deepEqual(req.body.messages.map((m) => m.role), ['user', 'assistant', 'user']);
    // ... as received: the shown reply is exactly its rendering.
    const rendered = await page.evaluate((s) => {
      const t = document.createElement('template'); t.innerHTML = renderMarkdown(s); return t.innerHTML;
    }, req.body.messages[1].content);
    assert.equal(rendered, stopped.html);
    assert.equal((await lastReply()).error, false);
  });

  test('markdown from a (canned) SSE reply renders, and HTML in it is escaped', { timeout: 60000 }, async () => {
    // The model's weights are random, so the reply is served by the test: same SSE shape
    // as the gateway's, split mid-markdown across events.
    const markdown = '**Bold** and *italic* and `inline <b>code</b>`.\n\n- item one\n- item two\n\n' +
                     '1. first\n2. second\n\n```js\nconst x = 1 < 2 && "a" > \'b\';\n```\n\n' +
                     '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"> & done';
    const pieces = [];
    for (let i = 0; i < markdown.length; i += 7) pieces.push(markdown.slice(i, i + 7));
    const chunk = (delta, finish = null) => `data: ${JSON.stringify({
      id: 'chatcmpl-canned', object: 'chat.completion.chunk', created: 0, model: 'dsv3-tiny',
      choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
    const sse = chunk({ role: 'assistant', content: '' }) +
                chunk({ reasoning_content: 'thinking <b onclick="window.__pwned = 3">hard</b>' }) +
                pieces.map((p) => chunk({ content: p })).join('') + chunk({}, 'stop') + 'data: [DONE]\n\n';
    await page.route('**/v1/chat/completions', (route) =>
      route.fulfill({ status: 200, headers: { 'content-type': 'text/event-stream' }, body: sse }));
    try {
      await page.fill('#input', 'Show me some markdown.');
      await page.click('#send');
      await page.waitForFunction(() => /^done in /.test(document.getElementById('status').textContent));
    } finally {
      await page.unroute('**/v1/chat/completions');
    }
    const msg = page.locator('#log .msg.assistant').last();
    const content = msg.locator('.content');
    assert.equal(await content.locator('strong').first().textContent(), 'Bold');
    assert.equal(await content.locator('em').first().textContent(), 'italic');
    assert.equal(await content.locator(':not(pre) > code').first().textContent(), 'inline <b>code</b>');
    assert.deepEqual(await content.locator('ul > li').allTextContents(), ['item one', 'item two']);
    assert.deepEqual(await content.locator('ol > li').allTextContents(), ['first', 'second']);
    assert.equal(await content.locator('pre > code').textContent(), 'const x = 1 < 2 && "a" > \'b\';');
    // No markup from the reply became elements; it shows as text.
    assert.equal(await page.locator('#log script, #log img, #log b').count(), 0);
    assert.match(await content.textContent(), /<script>window\.__pwned = 1<\/script><img src=x onerror="window\.__pwned = 2"> & done/);
    assert.equal(await msg.locator('.reasoning').isVisible(), true);
    assert.equal(await msg.locator('.reasoning').textContent(), 'thinking <b onclick="window.__pwned = 3">hard</b>');
    await sleep(200);
    assert.equal(await page.evaluate(() => window.__pwned), undefined);
    // The routed request was the page's own: the user's message last.
    assert.equal(chatRequests[chatRequests.length - 1].body.messages.at(-1).content, 'Show me some markdown.');
  });

  test("the page's renderMarkdown: exact output, and only its own tags, never attributes", { timeout: 30000 }, async () => {
    const out = await page.evaluate(() => [
      renderMarkdown('**a** <b>'),
      renderMarkdown('# Title\ntext `x<y`'),
      renderMarkdown('```\n<script>alert(1)</script>\n```'),
      renderMarkdown('"quoted" & \'single\''),
    ]);
    assert.deepEqual(out, [
      '<p><strong>a</strong> &lt;b&gt;</p>',
      '<p><strong>Title</strong></p><p>text <code>x&lt;y</code></p>',
      '<pre><code>&lt;script&gt;alert(1)&lt;/script&gt;</code></pre>',
      '<p>&quot;quoted&quot; &amp; &#39;single&#39;</p>',
    ]);
    // Random mixes of markdown and HTML syntax: whatever comes out has only the renderer's
    // tags and no attribute at all (so no handlers, no src/href).
    const bad = await page.evaluate(() => {
      const atoms = ['<', '>', '"', "'", '&', '*', '**', '`', '```', '\n', '\n\n', ' ', '- ', '1. ', '# ', 'a', 'script',
                     'img src=x', ' onerror=alert(1)', '=', '/', '&lt;', '&#60;', 'javascript:', '<svg onload=x>', '</p>'];
      const allowed = new Set(['P', 'STRONG', 'EM', 'CODE', 'PRE', 'UL', 'OL', 'LI', 'BR']);
      let seed = 12345;
      const rnd = (n) => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n; };
      const found = [];
      for (let i = 0; i < 3000 && found.length < 5; i++) {
        let s = '';
        for (let k = 1 + rnd(30); k > 0; k--) s += atoms[rnd(atoms.length)];
        const t = document.createElement('template');
        t.innerHTML = renderMarkdown(s);
        for (const el of t.content.querySelectorAll('*')) {
          if (!allowed.has(el.tagName) || el.attributes.length) { found.push({ s, html: t.innerHTML }); break; }
        }
      }
      return found;
    });
    assert.deepEqual(bad, []);
  });

  test('screenshot, and no uncaught errors in the page', { timeout: 30000 }, async () => {
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    const file = path.join(ARTIFACTS, 'web_chat.png');
    await page.screenshot({ path: file });
    assert.ok(fs.statSync(file).size > 1000);
    console.log(`screenshot: ${file}`);
    assert.deepEqual(pageErrors, []);
  });
});
