// The Node.js anchor of bench/tokenizer: @huggingface/tokenizers encoding the same documents.
//
//   node tokenizer_node.mjs NPM_DIR DOCUMENTS_JSON OUT_IDS MIN_SECONDS
//
// DOCUMENTS_JSON is a JSON array of strings. Encodes them all, pass after pass, until MIN_SECONDS
// have gone by (at least 2 passes); prints one JSON line {"best_seconds", "first_seconds",
// "load_seconds", "passes", "bytes", "tokens"} (load: reading the files, building the tokenizer).
// OUT_IDS gets the ids for verification: per document a little-endian int32 count, then the ids.
import fs from "node:fs";
import { loadReference } from "../tests/model/tokenizer_reference.mjs";

const [npmDir, documentsPath, outIds, minSecondsText] = process.argv.slice(2);
if (!outIds) {
  console.error("usage: tokenizer_node.mjs NPM_DIR DOCUMENTS_JSON OUT_IDS MIN_SECONDS");
  process.exit(2);
}
const loadStart = process.hrtime.bigint();
const tokenizer = await loadReference(npmDir);
const loadSeconds = Number(process.hrtime.bigint() - loadStart) / 1e9;
const documents = JSON.parse(fs.readFileSync(documentsPath, "utf8"));
const bytes = documents.reduce((sum, d) => sum + Buffer.byteLength(d, "utf8"), 0);

let best = Infinity, first = 0, passes = 0, elapsed = 0, ids = null;
while (passes < 2 || elapsed < Number(minSecondsText)) {
  const start = process.hrtime.bigint();
  const pass = documents.map((d) => tokenizer.encode(d).ids);
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  best = Math.min(best, seconds);
  if (passes === 0) first = seconds;
  elapsed += seconds;
  passes += 1;
  ids ??= pass;
}
const total = ids.reduce((sum, x) => sum + x.length, 0);
const out = new Int32Array(total + ids.length);
let at = 0;
for (const list of ids) {
  out[at++] = list.length;
  for (const id of list) out[at++] = id;
}
fs.writeFileSync(outIds, Buffer.from(out.buffer));
console.log(JSON.stringify({ best_seconds: best, first_seconds: first, load_seconds: loadSeconds, passes, bytes,
                             tokens: total }));
