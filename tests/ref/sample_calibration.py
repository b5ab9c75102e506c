#!/usr/bin/python3
"""Expected outputs of the dataset sampler and the Alpaca split, for tests/test_dataset.c.

Usage:  /usr/bin/python3 tests/ref/sample_calibration.py WIKITEXT_DIR OUTDIR

Independent of the C code: documents are read the way Hugging Face's
wikitext-2-raw-v1 script yields rows (Python text mode, each line with its
"\\n", whitespace-only rows dropped as the reference filters empty rows), and
the sampler is fxmeng/TransMLA utils.prepare_dataloader (varied_seqlen False)
with torch's RNG replaced by splitmix64 and the tokenizer by UTF-8 bytes (the
bundled bytelm-dev tokenizer, whose ids are the bytes):

  pool = all document indices; while fewer than nsamples and pool not empty:
    start = next() % len(pool); take pool[start], pool[start+1], ... counting
    len((sep + doc).encode()) (sep "" first, "\\n\\n" after) until >= seqlen or
    the pool ends; drop those positions; if the count reached seqlen, keep the
    first seqlen bytes of the taken documents joined with "\\n\\n".

Writes, per case NAME (see CASES):
  OUTDIR/NAME.bin   the kept samples, seqlen bytes each (got = size / seqlen)
  OUTDIR/wiki_test_joined.bin  the test split's rows joined with "\n\n" (the
                    perplexity stream: its bytes are the bytelm-dev ids)
and for the Alpaca split check:
  OUTDIR/alpaca_data.json                   23 records (with input, without, with "text")
  OUTDIR/alpaca_{train,validation,test}.json  expected documents of each split, in order
When WIKITEXT_DIR is missing, only the Alpaca files are written.
"""
import json
import os
import sys

MASK = (1 << 64) - 1

# name, split file, nsamples, seqlen, seed
CASES = [
    ("wiki_test_16x256_s42", "test.txt", 16, 256, 42),
    ("wiki_test_128x64_s123", "test.txt", 128, 64, 123),
    ("wiki_valid_1000x4096_s7", "valid.txt", 1000, 4096, 7),  # runs out of text
]


class SplitMix64:
    def __init__(self, seed):
        self.state = seed & MASK

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)


def wikitext_rows(path):
    with open(path, encoding="utf-8") as f:
        return [row for row in f if row.strip()]


def sample(docs, nsamples, seqlen, seed):
    rng = SplitMix64(seed)
    indices = list(range(len(docs)))
    out = []
    while len(out) < nsamples and len(indices) > 0:
        start = rng.next() % len(indices)
        idx = start
        count = 0
        taken = []
        while count < seqlen and idx < len(indices):
            sep = "" if idx == start else "\n\n"
            count += len((sep + docs[indices[idx]]).encode("utf-8"))
            taken.append(docs[indices[idx]])
            idx += 1
        indices = indices[:start] + indices[idx:]
        if count >= seqlen:
            ids = "\n\n".join(taken).encode("utf-8")
            if len(ids) >= seqlen:
                out.append(ids[:seqlen])
    return out


PROMPT_INPUT = ("Below is an instruction that describes a task, paired with an input that provides further "
                "context. Write a response that appropriately completes the request.\n\n"
                "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n{output}")
PROMPT_NO_INPUT = ("Below is an instruction that describes a task. Write a response that appropriately "
                   "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n{output}")


def alpaca_records():
    recs = []
    for i in range(23):
        r = {"instruction": f"Task {i}: say something about número {i}.", "input": "", "output": f"Answer {i} ✓"}
        if i % 3 == 1:
            r["input"] = f"context line {i}\nsecond line"
        if i % 5 == 4:
            r["text"] = f"precomputed text {i}"
        recs.append(r)
    return recs


def alpaca_splits(recs):
    rendered = []
    for r in recs:
        if isinstance(r.get("text"), str):
            rendered.append(r["text"])
        elif r.get("input"):
            rendered.append(PROMPT_INPUT.format(**r))
        else:
            rendered.append(PROMPT_NO_INPUT.format(**r))
    n = len(recs)
    idx = list(range(n))
    rng = SplitMix64(42)
    for i in range(n - 1, 0, -1):
        j = rng.next() % (i + 1)
        idx[i], idx[j] = idx[j], idx[i]
    n_train, n_test = n * 8 // 10, n // 10
    order = [rendered[i] for i in idx]
    return {"train": order[:n_train], "test": order[n_train:n_train + n_test],
            "validation": order[n_train + n_test:]}


def main():
    wiki, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    recs = alpaca_records()
    with open(os.path.join(out, "alpaca_data.json"), "w", encoding="utf-8") as f:
        json.dump(recs, f, ensure_ascii=False, indent=1)
    for split, docs in alpaca_splits(recs).items():
        with open(os.path.join(out, f"alpaca_{split}.json"), "w", encoding="utf-8") as f:
            json.dump(docs, f, ensure_ascii=False)
    if not os.path.isdir(wiki):
        print(f"{wiki}: missing; sampler cases skipped")
        return
    with open(os.path.join(out, "wiki_test_joined.bin"), "wb") as f:
        f.write("\n\n".join(wikitext_rows(os.path.join(wiki, "test.txt"))).encode("utf-8"))
    for name, split_file, nsamples, seqlen, seed in CASES:
        samples = sample(wikitext_rows(os.path.join(wiki, split_file)), nsamples, seqlen, seed)
        with open(os.path.join(out, name + ".bin"), "wb") as f:
            for s in samples:
                f.write(s)
        print(f"{name}: {len(samples)} samples")


if __name__ == "__main__":
    main()
