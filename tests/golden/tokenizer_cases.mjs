import { Tokenizer } from "@huggingface/tokenizers";
import fs from "fs";
// Writes the reference cases of tests/test_tokenizer.c (without the comment
// at the top of tokenizer_cases.inc). Node resolves the package from the
// script's folder, so run a copy where it is installed:
//   cp tests/golden/tokenizer_cases.mjs DIR && cd DIR && npm i @huggingface/tokenizers@0.2.0
//   node tokenizer_cases.mjs DATA_DIR OUT
const D = process.argv[2];
const toks = { llama2: D + "/tokenizers/llama2", llama3: D + "/tokenizers/llama3", qwen3: D + "/tokenizers/qwen3", ts656k: D + "/tinystories-656k" };
// cases: [name, bytes (as JS array of numbers or a string), add_special]
const cases = [
  ["special", "Hello<|endoftext|> world<|end_of_text|><s>x</s> <|im_start|>", false],
  ["special_bos", "Hello world", true],
  ["nfc", "Cafe\u0301 \u212B e\u0301\u0323 \uAC00\u11A8", false],
  ["spaces", "a  b   c\t\td\n\n\ne \u00A0f\u3000g\u180Eh\u2028i \r\n j", false],
  ["digits", "1234567 12.5e-3 \u0661\u0662\u0663\u0664", false],
  ["run", "a".repeat(700) + " " + " ".repeat(300) + "!".repeat(100), false],
  ["emoji", "\u{1F600}\u{1F468}\u200D\u{1F469} \u4F60\u597D\u4E16\u754C \u0928\u092E\u0938\u094D\u0924\u0947", false],
  ["contractions", "I'M don'T we'Ve they'LL \u017Ftill", false],
  ["added_normalized", "Once upon a time<|end_story|> \u00e9\u2603 a <|end_story|> b", true],
  ["added_first", "<|start_story|>x<s>y", true],
  ["empty", "", false],
  ["empty_bos", "", true],
];
const bad = [
  ["bad_ff", [0x61, 0xFF, 0x62]],
  ["bad_trunc", [0x61, 0xE2, 0x82, 0x20, 0xF0, 0x9F, 0x98]],
  ["bad_surrogate", [0xED, 0xA0, 0x80, 0x41, 0xC0, 0xAF, 0xF4, 0x90, 0x80, 0x80]],
];
let out = "";
for (const [tn, dir] of Object.entries(toks)) {
  const json = JSON.parse(fs.readFileSync(dir + "/tokenizer.json", "utf8"));
  const cfg = JSON.parse(fs.readFileSync(dir + "/tokenizer_config.json", "utf8"));
  const tok = new Tokenizer(json, cfg);
  const all = cases.map(([n, s, add]) => [n, Buffer.from(s, "utf8"), add, s]);
  for (const [n, b] of bad) all.push([n, Buffer.from(b), false, new TextDecoder().decode(Buffer.from(b))]);
  for (const [n, b, add, s] of all) {
    const ids = tok.encode(s, { add_special_tokens: add }).ids;
    out += `{"${tn}", "${n}", "${[...b].map(x => "\\x" + x.toString(16).padStart(2, "0")).join("")}", ${b.length}, ${add ? 1 : 0}, ${ids.length}, (const uint32_t[]){${ids.join(",") || "0"}}},\n`;
  }
}
fs.writeFileSync(process.argv[3], out);
console.log(out.length);
