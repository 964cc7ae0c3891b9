// Peer figures for bench_tokenizer: Hugging Face's tokenizers.js encoding
// WikiText-2 (test, raw) in one call, single-threaded, timed in process CPU
// time like bench_tokenizer. Dev-only; node resolves the package from the
// script's folder, so run a copy where it is installed:
//   cp bench/tokenizers_js.mjs DIR && cd DIR && npm i @huggingface/tokenizers@0.2.0
//   node tokenizers_js.mjs DATA_DIR
import { Tokenizer } from "@huggingface/tokenizers";
import fs from "fs";

const data = process.argv[2] || "../shared/data";
const text = fs.readFileSync(data + "/text/wikitext-2-raw-test.txt", "utf8");
const bytes = Buffer.byteLength(text, "utf8");
const rows = [["LLaMA-2", "tokenizers/llama2"], ["tinystories-656k", "tinystories-656k"],
              ["Llama-3", "tokenizers/llama3"], ["Qwen3", "tokenizers/qwen3"]];
console.log("| tokenizer | ids | MB/s (tokenizers.js, 1 thread) |");
console.log("|---|---|---|");
for (const [name, dir] of rows) {
  const json = JSON.parse(fs.readFileSync(`${data}/${dir}/tokenizer.json`, "utf8"));
  const cfg = JSON.parse(fs.readFileSync(`${data}/${dir}/tokenizer_config.json`, "utf8"));
  const tok = new Tokenizer(json, cfg);
  const t0 = process.cpuUsage();
  const ids = tok.encode(text, { add_special_tokens: false }).ids;
  const dt = process.cpuUsage(t0);
  const sec = (dt.user + dt.system) / 1e6;
  console.log(`| ${name} | ${ids.length} | ${(bytes / sec / 1e6).toFixed(2)} |`);
}
