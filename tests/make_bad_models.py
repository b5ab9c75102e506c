#!/usr/bin/python3
"""Broken copies of the bundled stories260K model, one fault each, for
tests/cli_errors.sh. Usage: make_bad_models.py SRC_MODEL_DIR OUT_DIR"""
import json, os, shutil, struct, sys

src, out = sys.argv[1], sys.argv[2]


def read_raw(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n)), f.read()


def write_raw(path, header, data):
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data)


def case(name, config_edit=None):
    d = os.path.join(out, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    cfg = json.load(open(os.path.join(src, "config.json")))
    if config_edit:
        config_edit(cfg)
    json.dump(cfg, open(os.path.join(d, "config.json"), "w"), indent=1)
    return d


def without(header, data, name):
    """Drop one tensor and repack the data so the file stays well formed."""
    items = sorted(((k, v) for k, v in header.items() if k != "__metadata__"), key=lambda kv: kv[1]["data_offsets"][0])
    new_h, chunks, off = {}, [], 0
    for k, v in items:
        if k == name:
            continue
        a, b = v["data_offsets"]
        chunks.append(data[a:b])
        new_h[k] = dict(v, data_offsets=[off, off + b - a])
        off += b - a
    return new_h, b"".join(chunks)


hdr, data = read_raw(os.path.join(src, "model.safetensors"))
raw = open(os.path.join(src, "model.safetensors"), "rb").read()

d = case("truncated")
open(os.path.join(d, "model.safetensors"), "wb").write(raw[: len(raw) // 2])

d = case("offsets_lie")
h = json.loads(json.dumps(hdr))
h["model.norm.weight"]["data_offsets"][1] += 4096
write_raw(os.path.join(d, "model.safetensors"), h, data)

d = case("shape_lies")
h = json.loads(json.dumps(hdr))
h["model.norm.weight"]["shape"] = [65]
write_raw(os.path.join(d, "model.safetensors"), h, data)

d = case("unknown_dtype")
h = json.loads(json.dumps(hdr))
h["model.norm.weight"]["dtype"] = "F99"
write_raw(os.path.join(d, "model.safetensors"), h, data)

d = case("int_dtype")
h = json.loads(json.dumps(hdr))
h["model.norm.weight"]["dtype"] = "I32"
write_raw(os.path.join(d, "model.safetensors"), h, data)

d = case("missing_tensor")
write_raw(os.path.join(d, "model.safetensors"), *without(hdr, data, "model.layers.2.mlp.up_proj.weight"))

def fewer_kv_heads(c):
    c["num_key_value_heads"] = 2
d = case("config_mismatch", fewer_kv_heads)
shutil.copy(os.path.join(src, "model.safetensors"), d)

def fewer_layers(c):
    c["num_hidden_layers"] = 4
d = case("extra_layer", fewer_layers)
shutil.copy(os.path.join(src, "model.safetensors"), d)

d = case("bad_json")
open(os.path.join(d, "config.json"), "w").write('{"model_type": "llama", ')
shutil.copy(os.path.join(src, "model.safetensors"), d)

d = case("no_weights")


def with_value(name, tensor, value):
    """A copy whose tensor's first element is `value` (float32): NaN, or a
    huge but finite number that overflows later."""
    d = case(name)
    a = hdr[tensor]["data_offsets"][0]
    patched = bytearray(data)
    patched[a : a + 4] = struct.pack("<f", value)
    write_raw(os.path.join(d, "model.safetensors"), hdr, bytes(patched))

with_value("nan_weight", "model.layers.1.self_attn.q_proj.weight", float("nan"))
# keys of 3e38 * x overflow float32: NaN scores, perplexity and key statistics
with_value("huge_key_weight", "model.layers.0.self_attn.k_proj.weight", 3e38)
# fine in float32, beyond float16's 65504: a float16 export overflows
with_value("f16_overflow", "model.layers.0.mlp.up_proj.weight", 1e5)

open(os.path.join(out, "oov.u16"), "wb").write(struct.pack("<4H", 1, 5, 600, 7))
open(os.path.join(out, "odd.u16"), "wb").write(b"\x01\x00\x05")
