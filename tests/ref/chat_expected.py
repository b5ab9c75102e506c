#!/usr/bin/env python3
"""Independent check of transmla's chat data (train/chat.c, train/rows.c).

    chat_expected.py DATA.jsonl[.gz] TOKENIZER_DIR TEMPLATE DUMP.json --truncated N [--jinja RENDERS.json]

DUMP.json is what tests/chat_dump.c wrote for the same data, tokenizer and
template. This script parses the JSONL itself, renders each conversation with
its own Python version of the chat template (written from the Jinja strings in
the models' tokenizer_config.json; see train/chat.c for the exact strings and
the deliberate differences), and checks:

  * the documents, in order, are the conversations that have an assistant turn
    (the others are counted as skipped), one document per conversation;
  * the decoded text of each document equals the rendered template exactly
    (for SentencePiece tokenizers, with the "▁" that the tokenizer puts in
    front of every text piece decoded as a space);
  * the decoded runs of LABEL tokens are exactly the assistant contents with
    their end-of-turn marker, in order: no system or user text is labelled;
  * exactly N documents are truncated to T tokens, and each is a prefix of
    its rendering, its label runs a prefix of the expected ones;
  * padding only at the end of rows, as its own document without labels;
  * train_rows_batch's targets, pos and doc_start follow the rules, recomputed
    here with numpy from the rows' tokens and flags;
  * the counters n_docs, n_skipped, n_truncated, n_tokens, n_labels;
  * with --jinja: this script's own rendering equals the models' Jinja
    chat_template as Hugging Face's Jinja engine rendered it
    (tests/ref/chat_jinja.mjs), but for the two documented differences:
    Qwen3's empty think block before the final assistant turn and Llama-3's
    unconditional trailing generation prompt are not part of a document.

Any mismatch prints what differs and exits 1.
"""
import gzip
import json
import re
import sys

import numpy as np

LABEL, DOC_START = 1, 2


def fail(msg):
    print(f"chat_expected: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def read_jsonl(path):
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    convs = []
    for line in raw.decode("utf-8").split("\n"):
        if line.strip():
            convs.append(json.loads(line)["messages"])
    return convs


def render(template, msgs):
    """The template as a list of (text, is_label) pieces."""
    p = []
    if template == "chatml":
        for m in msgs:
            if m["role"] == "assistant":
                p += [("<|im_start|>assistant\n", 0), (m["content"] + "<|im_end|>", 1), ("\n", 0)]
            else:
                p.append(("<|im_start|>" + m["role"] + "\n" + m["content"] + "<|im_end|>\n", 0))
    elif template == "llama3":
        p.append(("<|begin_of_text|>", 0))
        for m in msgs:
            p.append(("<|start_header_id|>" + m["role"] + "<|end_header_id|>\n\n", 0))
            p.append((m["content"].strip() + "<|eot_id|>", int(m["role"] == "assistant")))
    elif template == "inst":
        system = None
        if msgs and msgs[0]["role"] == "system":
            system, msgs = msgs[0]["content"], msgs[1:]
        p.append(("<s>", 0))
        for i, m in enumerate(msgs):
            assert m["role"] == ("user" if i % 2 == 0 else "assistant"), "roles must alternate"
            if m["role"] == "user":
                text = (system + "\n\n" + m["content"]) if (i == 0 and system is not None) else m["content"]
                p.append(("[INST] " + text + " [/INST]", 0))
            else:
                p.append((m["content"] + "</s>", 1))
    else:
        fail(f"unknown template {template}")
    merged = []  # neighbouring pieces of the same kind are tokenized together
    for text, lab in p:
        if merged and merged[-1][1] == lab:
            merged[-1] = (merged[-1][0] + text, lab)
        else:
            merged.append((text, lab))
    return merged


class Decoding:
    """What decoding the ids of separately tokenized pieces gives back."""

    def __init__(self, tokenizer_dir):
        with open(f"{tokenizer_dir}/tokenizer.json", encoding="utf-8") as f:
            tj = json.load(f)
        norm = json.dumps(tj.get("normalizer"))
        self.sentencepiece = '"Prepend"' in norm  # Llama-2 / Mistral: "▁" in front of every text piece
        specials = sorted((a["content"] for a in tj["added_tokens"]), key=len, reverse=True)
        self.split = re.compile("(" + "|".join(re.escape(s) for s in specials) + ")")
        self.specials = set(specials)

    def pieces(self, texts):
        if not self.sentencepiece:
            return "".join(texts)
        out = []
        for t in texts:
            for seg in self.split.split(t):
                if seg in self.specials:
                    out.append(seg)
                elif seg:
                    out.append(" " + seg)
        s = "".join(out)
        return s[1:] if s.startswith(" ") else s  # the decoder's Strip(start=1)


def check_jinja(path, tok_name, template, convs):
    with open(path, encoding="utf-8") as f:
        renders = json.load(f)["renders"]
    if tok_name not in renders:
        fail(f"{path}: no renders for {tok_name}")
    if len(renders[tok_name]) != len(convs):
        fail(f"{path}: {len(renders[tok_name])} renders for {len(convs)} conversations")
    for k, (want, msgs) in enumerate(zip(renders[tok_name], convs)):
        if template == "chatml":  # Qwen3: "<think>\n\n</think>\n\n" before the final assistant turn
            head = "<|im_start|>assistant\n"
            cut = want.rfind(head) + len(head)
            if want.rfind(head) >= 0 and want.startswith("<think>\n\n</think>\n\n", cut):
                want = want[:cut] + want[cut + len("<think>\n\n</think>\n\n"):]
        if template == "llama3":  # the template's unconditional generation prompt
            gen = "<|start_header_id|>assistant<|end_header_id|>\n\n"
            if not want.endswith(gen):
                fail(f"{path}: conversation {k}: llama3 render lacks the trailing generation prompt")
            want = want[:-len(gen)]
        got = "".join(t for t, _ in render(template, msgs))
        if template == "chatml":
            # The think-block branch also does content.lstrip('\n') on the final assistant turn, and
            # @huggingface/jinja 0.5.11 ignores lstrip's argument (strips all white space): the white
            # space right after the final assistant header is not compared.
            head = "<|im_start|>assistant\n"

            def lstrip_final(x):
                i = x.rfind(head)
                return x if i < 0 else x[:i + len(head)] + x[i + len(head):].lstrip()

            want, got = lstrip_final(want), lstrip_final(got)
        if got != want:
            fail(f"conversation {k}: this script's {template} rendering differs from the Jinja template's\n"
                 f"  script {got!r}\n  jinja  {want!r}")
    print(f"chat_expected: {template} rendering equals {tok_name}'s Jinja chat_template on {len(convs)} conversations")


def prefix_ok(got, full):
    got = got.rstrip("\ufffd")  # a character cut by truncation
    return full.startswith(got)


def main():
    args = sys.argv[1:]
    jinja = None
    if len(args) == 8 and args[6] == "--jinja":
        jinja, args = args[7], args[:6]
    if len(args) != 6 or args[4] != "--truncated":
        fail("usage: chat_expected.py DATA TOKENIZER_DIR TEMPLATE DUMP.json --truncated N [--jinja RENDERS.json]")
    data, tok_dir, template, dump_path, want_trunc = args[0], args[1], args[2], args[3], int(args[5])
    convs = read_jsonl(data)
    with open(dump_path, encoding="utf-8") as f:
        dump = json.load(f)
    if dump["template"] != template:
        fail(f"dump made with template {dump['template']}, expected {template}")
    dec = Decoding(tok_dir)
    T, pad = dump["T"], dump["pad_id"]
    kept = [c for c in convs if any(m["role"] == "assistant" for m in c)]
    if jinja:
        check_jinja(jinja, tok_dir.rstrip("/").split("/")[-1], template, convs)
    skipped = len(convs) - len(kept)

    # documents in row order; the batch arrays recomputed independently
    docs, n_tokens, n_labels = [], 0, 0
    for ri, row in enumerate(dump["rows"]):
        tok = np.array(row["tokens"], dtype=np.int64)
        fl = np.array(row["flags"], dtype=np.int64)
        if tok.shape != (T,) or fl.shape != (T,):
            fail(f"row {ri}: {tok.shape} tokens, expected {T}")
        if not fl[0] & DOC_START:
            fail(f"row {ri}: does not begin a document")
        if np.any((fl & LABEL) & (fl & DOC_START)) or np.any(fl & ~3):
            fail(f"row {ri}: a document start is a label, or unknown flag bits")
        starts = np.maximum.accumulate(np.where(fl & DOC_START, np.arange(T), 0))
        nxt_label = np.zeros(T, bool)
        nxt_label[:-1] = (fl[1:] & LABEL).astype(bool) & ~(fl[1:] & DOC_START).astype(bool)
        targets = np.where(nxt_label, np.roll(tok, -1), -1)
        for name, want in (("batch_tokens", tok), ("targets", targets), ("pos", np.arange(T) - starts),
                           ("doc_start", starts)):
            got = np.array(row[name])
            if not np.array_equal(got, want):
                i = int(np.argmax(got != want))
                fail(f"row {ri}: {name}[{i}] = {got[i]}, expected {want[i]}")
        rdocs = row["docs"]
        for di, d in enumerate(rdocs):
            s, n = d["start"], d["len"]
            is_pad = di == len(rdocs) - 1 and np.all(tok[s:s + n] == pad) and not np.any(fl[s:s + n] & LABEL)
            if is_pad:
                if s == 0:
                    fail(f"row {ri}: all padding")
                continue
            docs.append((ri, d))
            n_tokens += n
            n_labels += int(np.sum(fl[s:s + n] & LABEL))

    if len(docs) != len(kept):
        fail(f"{len(docs)} documents, expected {len(kept)} conversations with an assistant turn")
    first = {"chatml": "<|im_start|>", "llama3": "<|begin_of_text|>", "inst": "<s>"}[template]
    n_trunc = 0
    for k, ((ri, d), msgs) in enumerate(zip(docs, kept)):
        pieces = render(template, msgs)
        full = dec.pieces([t for t, _ in pieces])
        labels = [dec.pieces([t]) for t, lab in pieces if lab]
        where = f"conversation {k} (row {ri}, tokens {d['start']}..{d['start'] + d['len']})"
        if not d["text"].startswith(first):
            fail(f"{where}: document does not start with {first!r}: {d['text'][:40]!r}")
        runs = d["label_runs"]
        if d["text"] == full:
            if runs != labels:
                fail(f"{where}: label text\n  got      {runs!r}\n  expected {labels!r}")
        else:
            n_trunc += 1
            if d["len"] != T or not prefix_ok(d["text"], full):
                fail(f"{where}: decoded text differs from the template\n  got      {d['text']!r}\n  expected {full!r}")
            if len(runs) > len(labels) or runs[:-1] != labels[:len(runs) - 1] or (
                    runs and not prefix_ok(runs[-1], labels[len(runs) - 1])):
                fail(f"{where}: truncated label runs {runs!r} are not a prefix of {labels!r}")
        for m in msgs:  # explicit: no system or user text in a label
            c = m["content"].strip()
            if m["role"] != "assistant" and len(c) >= 4 and any(c in r for r in runs):
                fail(f"{where}: {m['role']} text {c!r} is labelled")

    for name, want in (("n_docs", len(kept)), ("n_skipped", skipped), ("n_truncated", want_trunc),
                       ("n_tokens", n_tokens), ("n_labels", n_labels)):
        if dump[name] != want:
            fail(f"{name} = {dump[name]}, expected {want}")
    if n_trunc != want_trunc:
        fail(f"{n_trunc} documents differ from the template by truncation, expected {want_trunc}")
    print(f"chat_expected: {template} on {tok_dir.rstrip('/').split('/')[-1]}: {len(kept)} conversations in "
          f"{len(dump['rows'])} rows of {T}, {skipped} skipped, {n_trunc} truncated, {n_labels} labels: OK")


if __name__ == "__main__":
    main()
