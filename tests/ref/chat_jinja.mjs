// Render the chat fixture with the models' own Jinja chat_template strings
// (tokenizer_config.json), through Hugging Face's JavaScript Jinja engine
// (@huggingface/jinja, what transformers.js's apply_chat_template uses). The
// output is committed as tests/data/chat/jinja_render.json and read by
// chat_expected.py, which checks that its own rendering matches. Regenerate:
//
//   mkdir /tmp/j && cd /tmp/j && npm init -y && npm install @huggingface/jinja@0.5.11
//   cp REPO/tests/ref/chat_jinja.mjs . && node chat_jinja.mjs SHARED/tokenizers REPO/tests/data/chat/smoltalk_tiny.jsonl \
//       > REPO/tests/data/chat/jinja_render.json
//
// Only qwen3 and llama3: the shared Mistral tokenizer_config.json has no chat_template.
import { Template } from "@huggingface/jinja";
import fs from "fs";

const [, , tokdir, data] = process.argv;
const convs = fs.readFileSync(data, "utf8").split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l).messages);
const pkg = JSON.parse(fs.readFileSync("node_modules/@huggingface/jinja/package.json", "utf8"));
const out = { tool: `${pkg.name} ${pkg.version}`, renders: {} };
for (const tok of ["qwen3", "llama3"]) {
  const cfg = JSON.parse(fs.readFileSync(`${tokdir}/${tok}/tokenizer_config.json`, "utf8"));
  const tmpl = new Template(cfg.chat_template);
  out.renders[tok] = convs.map((messages) =>
    tmpl.render({ messages, bos_token: cfg.bos_token ?? "", eos_token: cfg.eos_token ?? "", add_generation_prompt: false }),
  );
}
console.log(JSON.stringify(out, null, 1));
