#!/usr/bin/env python3
"""Writes the seed inputs for tests/fuzz_safetensors.c next to this script."""
import json, os, struct

def image(header, data=b"", pad=True):
    h = header if isinstance(header, bytes) else json.dumps(header, separators=(",", ":")).encode()
    if pad:
        h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data

def t(dtype, shape, b, e):
    return {"dtype": dtype, "shape": shape, "data_offsets": [b, e]}

seeds = {
    "f32_single": image({"w": t("F32", [2, 2], 0, 16)}, struct.pack("<4f", 1, -2, 0.5, 3)),
    "bf16_two": image({"b": t("BF16", [3], 0, 6), "a": t("BF16", [1, 2], 6, 10)},
                      struct.pack("<5H", 0x3F80, 0xBF80, 0x4049, 0, 0x7F80)),
    "metadata": image({"__metadata__": {"format": "pt"}, "s": t("F16", [], 0, 2), "e": t("I64", [0, 3], 2, 2)},
                      b"\x00\x3c"),
    "empty": image({}),
    "bad_gap": image({"a": t("U8", [2], 0, 2), "b": t("U8", [2], 3, 5)}, b"abcde"),
    "bad_shape": image({"a": t("F32", [3], 0, 8)}, bytes(8)),
    "bad_truncated": image({"w": t("F64", [4], 0, 32)}, bytes(20)),
}
here = os.path.dirname(os.path.abspath(__file__))
for name, blob in seeds.items():
    with open(os.path.join(here, name + ".safetensors"), "wb") as f:
        f.write(blob)
