// Expected token ids from Hugging Face's own JavaScript tokenizer
// (@huggingface/tokenizers, the engine of transformers.js), an implementation
// independent of ours. Run by make_tokenizer_expected.sh; the outputs are
// committed under tests/data/tokenizer/expected and read by test_tokenizer.
//
//   node hf_tokenize.mjs TOKENIZER_DIR INPUT_FILE OUTPUT.json.gz
import { Tokenizer } from "@huggingface/tokenizers";
import fs from "fs";
import zlib from "zlib";

const [, , dir, input, output] = process.argv;
const read = (f) => JSON.parse(fs.readFileSync(`${dir}/${f}`, "utf8"));
const tok = new Tokenizer(read("tokenizer.json"), read("tokenizer_config.json"));
const text = fs.readFileSync(input, "utf8");
const plain = tok.encode(text, { add_special_tokens: false }).ids;
const special = tok.encode(text, { add_special_tokens: true }).ids;
const decoded = tok.decode(plain, { skip_special_tokens: false, clean_up_tokenization_spaces: false });
const pkg = JSON.parse(fs.readFileSync("node_modules/@huggingface/tokenizers/package.json", "utf8"));
const out = {
  tool: `${pkg.name} ${pkg.version}`,
  tokenizer: dir.split("/").pop(),
  input: input.split("/").pop(),
  input_bytes: Buffer.byteLength(text),
  ids: plain,
  ids_with_special_tokens: special,
  decode_roundtrip: decoded === text,
};
fs.writeFileSync(output, zlib.gzipSync(JSON.stringify(out)));
console.error(`${output}: ${plain.length} ids, round trip ${out.decode_roundtrip}`);
