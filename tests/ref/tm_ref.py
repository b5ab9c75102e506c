#!/usr/bin/python3
"""tm_ref: independent float64 numpy test oracle for transmla.

Run with Debian's interpreter (it has numpy):  /usr/bin/python3 tests/ref/tm_ref.py ...

Contents
  * safetensors I/O: read F32/F16/BF16 (single file or sharded dir with
    model.safetensors.index.json) into float64; write F32/F16/BF16, single or
    sharded with an index.
  * The decoder forward pass in float64 as Hugging Face transformers computes it
    for model_type llama, mistral, qwen2, mixtral, qwen3 (Qwen3ForCausalLM:
    per-head q_norm/k_norm before RoPE), qwen3_moe (Qwen3MoeForCausalLM: the
    same attention, softmax top-k MoE, dense layers per mlp_only_layers and
    decoder_sparse_step), phi3 (fused qkv_proj and gate_up_proj,
    partial_rotary_factor), gemma2 (Gemma2ForCausalLM: (1 + w) RMSNorms, sandwich
    norms, GeGLU, query_pre_attn_scalar, attention and final logit soft-capping,
    embeddings scaled by sqrt(hidden_size) in the weights' dtype, sliding window on
    the layers layer_types names, by default the even ones) and deepseek_v3
    (DeepseekV3ForCausalLM: MLA attention, dense/MoE MLP), and gemma2_mla (transmla's
    format for a converted Gemma-2: gemma2's layers with DeepSeek-V3's MLA attention,
    which keeps gemma2's score scale, soft-cap and windows).  For deepseek_v3 the
    MoE routing is transformers' by default (router="hf": sigmoid scores,
    e_score_correction_bias, group-limited top-k; scoring_func ignored) or, with
    router="vllm", what vLLM's DeepSeek model computes (scoring_func honoured).
  * CLI:
      tm_ref.py ppl MODEL_DIR TOKENS_FILE --seqlen N [--nseq K] [--token-dtype u16|u32] [--router hf|vllm]
          -> one JSON line {"ppl": ..., "nll": ..., "tokens": ...}
      tm_ref.py logits MODEL_DIR TOKENS_FILE --seqlen N --out FILE [--nseq K] [--token-dtype ...] [--router ...]
          -> writes float64 logits [window][t][vocab] (little endian) to FILE

Only numpy and the standard library are used.  Not part of the product.
"""
import argparse
import json
import math
import os
import struct
import sys

import numpy as np

# --------------------------------------------------------------------------
# safetensors
# --------------------------------------------------------------------------

_ELEM = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8}


def _decode(raw, dtype):
    """Raw little-endian bytes of one tensor -> flat float64 array."""
    if dtype == "F32":
        return np.frombuffer(raw, dtype="<f4").astype(np.float64)
    if dtype == "F16":
        return np.frombuffer(raw, dtype="<f2").astype(np.float64)
    if dtype == "BF16":
        hi = np.frombuffer(raw, dtype="<u2").astype(np.uint32)
        return (hi << np.uint32(16)).view(np.float32).astype(np.float64)
    if dtype == "F64":
        return np.frombuffer(raw, dtype="<f8").astype(np.float64)
    raise ValueError("unsupported safetensors dtype %r" % dtype)


def read_safetensors(path):
    """Read one .safetensors file -> {name: float64 ndarray}."""
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise ValueError("%s: too short for a safetensors file" % path)
    (hlen,) = struct.unpack_from("<Q", blob, 0)
    if 8 + hlen > len(blob):
        raise ValueError("%s: header length %d past end of file" % (path, hlen))
    header = json.loads(blob[8:8 + hlen].decode("utf-8"))
    data = memoryview(blob)[8 + hlen:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        shape = [int(s) for s in info["shape"]]
        n = int(np.prod(shape)) if shape else 1
        if info["dtype"] not in _ELEM:
            raise ValueError("%s: tensor %s has unsupported dtype %s" % (path, name, info["dtype"]))
        if e - b != n * _ELEM[info["dtype"]] or e > len(data):
            raise ValueError("%s: tensor %s has inconsistent offsets" % (path, name))
        out[name] = _decode(bytes(data[b:e]), info["dtype"]).reshape(shape)
    return out


def read_model_weights(model_dir):
    """Weights of a model directory: sharded (index.json) or model.safetensors."""
    idx = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(idx):
        with open(idx) as f:
            wmap = json.load(f)["weight_map"]
        out = {}
        for fname in sorted(set(wmap.values())):
            part = read_safetensors(os.path.join(model_dir, fname))
            for name, arr in part.items():
                if wmap.get(name) == fname:
                    out[name] = arr
        missing = [n for n in wmap if n not in out]
        if missing:
            raise ValueError("index names tensors not found in their shard: %s" % missing[:5])
        return out
    return read_safetensors(os.path.join(model_dir, "model.safetensors"))


def _f32_to_bf16_bits(a32):
    """float32 array -> uint16 bf16 bits, round to nearest even (NaN not handled)."""
    u = np.ascontiguousarray(a32, dtype="<f4").view("<u4").astype(np.uint64)
    u = u + 0x7FFF + ((u >> 16) & 1)
    return ((u >> 16) & 0xFFFF).astype("<u2")


def encode(arr, dtype):
    """float array -> little-endian bytes in safetensors dtype F32/F16/BF16/F64."""
    a = np.asarray(arr, dtype=np.float64)
    if dtype == "F32":
        return np.ascontiguousarray(a.astype("<f4")).tobytes()
    if dtype == "F16":
        return np.ascontiguousarray(a.astype("<f2")).tobytes()
    if dtype == "BF16":
        return _f32_to_bf16_bits(a.astype(np.float32)).tobytes()
    if dtype == "F64":
        return np.ascontiguousarray(a.astype("<f8")).tobytes()
    raise ValueError("unsupported dtype %r" % dtype)


def quantize(arr, dtype):
    """The float64 values an array has once stored as dtype and read back."""
    a = np.asarray(arr, dtype=np.float64)
    return _decode(encode(a, dtype), dtype).reshape(a.shape)


def write_safetensors(path, tensors, dtype="F32"):
    """Write {name: array} (insertion order kept) as one safetensors file.

    dtype: "F32", "F16", "BF16" (one dtype for all tensors) or a callable name -> dtype.
    Returns the number of tensor-data bytes written."""
    header, blobs, off = {}, [], 0
    for name, arr in tensors.items():
        dt = dtype(name) if callable(dtype) else dtype
        a = np.asarray(arr)
        raw = encode(a, dt)
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        off += len(raw)
        blobs.append(raw)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((-len(h)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for raw in blobs:
            f.write(raw)
    return off


def write_sharded(out_dir, tensors, nshards, dtype="F32"):
    """Split tensors (in order) over nshards files model-0000i-of-0000N.safetensors,
    balanced by bytes, and write model.safetensors.index.json."""
    names = list(tensors)
    if nshards < 1 or nshards > len(names):
        raise ValueError("bad shard count %d for %d tensors" % (nshards, len(names)))
    sizes = [len(encode(np.zeros(1), dtype(n) if callable(dtype) else dtype)) * int(np.asarray(tensors[n]).size)
             for n in names]
    total = sum(sizes)
    groups, cur, acc = [], [], 0
    for i, n in enumerate(names):
        cur.append(n)
        acc += sizes[i]
        left_names = len(names) - i - 1
        left_groups = nshards - len(groups) - 1
        if left_groups > 0 and (acc >= total * (len(groups) + 1) / nshards or left_names == left_groups):
            groups.append(cur)
            cur = []
    groups.append(cur)
    assert len(groups) == nshards and all(groups)
    wmap, written = {}, 0
    for i, g in enumerate(groups):
        fname = "model-%05d-of-%05d.safetensors" % (i + 1, nshards)
        written += write_safetensors(os.path.join(out_dir, fname), {n: tensors[n] for n in g}, dtype)
        for n in g:
            wmap[n] = fname
    with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": written}, "weight_map": wmap}, f, indent=2)
        f.write("\n")
    return wmap


# --------------------------------------------------------------------------
# config
# --------------------------------------------------------------------------

# transformers' config-class defaults for the keys we use (per model_type)
_DEFAULTS = {
    "llama": dict(rope_theta=10000.0, rms_norm_eps=1e-6),
    "mistral": dict(rope_theta=10000.0, rms_norm_eps=1e-6, sliding_window=4096),
    "qwen2": dict(rope_theta=10000.0, rms_norm_eps=1e-6, sliding_window=4096,
                  use_sliding_window=False, max_window_layers=28),
    "mixtral": dict(rope_theta=1e6, rms_norm_eps=1e-5, sliding_window=None,
                    num_local_experts=8, num_experts_per_tok=2),
    # Qwen3Config: head_dim 128 (not hidden_size / heads); Qwen3MoeConfig has no head_dim
    "qwen3": dict(rope_theta=10000.0, rms_norm_eps=1e-6, head_dim=128, sliding_window=4096,
                  use_sliding_window=False, max_window_layers=28, attention_bias=False),
    "qwen3_moe": dict(rope_theta=10000.0, rms_norm_eps=1e-6, sliding_window=4096, use_sliding_window=False,
                      attention_bias=False, num_experts=128, num_experts_per_tok=8, moe_intermediate_size=768,
                      decoder_sparse_step=1, norm_topk_prob=False, mlp_only_layers=None),
    "phi3": dict(rope_theta=10000.0, rms_norm_eps=1e-5, sliding_window=None, partial_rotary_factor=1.0),
    # Gemma2Config
    "gemma2": dict(rope_theta=10000.0, rms_norm_eps=1e-6, head_dim=256, sliding_window=4096,
                   query_pre_attn_scalar=256, attn_logit_softcapping=50.0, final_logit_softcapping=30.0,
                   tie_word_embeddings=True, hidden_activation="gelu_pytorch_tanh", attention_bias=False,
                   layer_types=None),
}


# DeepseekV3Config.__init__ defaults (transformers configuration_deepseek_v3.py).
# A key absent from config.json gets these values, not 0 / None.
_DSV3_DEFAULTS = dict(
    vocab_size=129280, hidden_size=7168, intermediate_size=18432, moe_intermediate_size=2048,
    num_hidden_layers=61, num_attention_heads=128, num_key_value_heads=128,
    n_shared_experts=1, n_routed_experts=256, routed_scaling_factor=2.5,
    kv_lora_rank=512, q_lora_rank=1536, qk_rope_head_dim=64, v_head_dim=128, qk_nope_head_dim=128,
    n_group=8, topk_group=4, num_experts_per_tok=8, first_k_dense_replace=3, norm_topk_prob=True,
    hidden_act="silu", rms_norm_eps=1e-6, tie_word_embeddings=False, rope_theta=10000.0,
    rope_interleave=True, attention_bias=False,
)

# DeepseekV3Attention builds q_a_layernorm / kv_a_layernorm as DeepseekV3RMSNorm(width)
# without passing eps, so they keep the class default 1e-6 whatever rms_norm_eps says
# (vLLM passes config.rms_norm_eps instead; the two agree only when that is 1e-6).
_DSV3_LATENT_EPS = 1e-6

ROUTERS = ("hf", "vllm")


def _config_getters(raw, defaults, model_type):
    """get(k): the config's value, else the default; num(k, cast): the same, never null."""

    def get(k):
        return raw[k] if k in raw else defaults.get(k)

    def num(k, cast=int):
        v = get(k)
        if v is None:
            raise ValueError("%s: %s must not be null" % (model_type, k))
        return cast(v)

    return get, num


class Config:
    """The parts of an HF config.json that the forward pass needs.

    router: MoE routing semantics for deepseek_v3, "hf" (transformers) or "vllm"."""

    def __init__(self, raw, router="hf"):
        self.raw = dict(raw)
        if router not in ROUTERS:
            raise ValueError("router must be one of %s, not %r" % (ROUTERS, router))
        self.router = router
        mt = raw.get("model_type")
        self.mla = mt in ("deepseek_v3", "gemma2_mla")
        if mt == "deepseek_v3":
            self._init_dsv3(raw)
            return
        if mt == "gemma2_mla":
            self._init_gemma2_mla(raw)
            return
        if mt not in _DEFAULTS:
            raise ValueError("model_type %r not supported (llama, mistral, qwen2, mixtral, qwen3, qwen3_moe, "
                             "phi3, gemma2, deepseek_v3, gemma2_mla)" % mt)
        dflt = _DEFAULTS[mt]

        def get(k, default=None):
            if k in raw:
                return raw[k]
            return dflt.get(k, default)

        self.model_type = mt
        self.D = int(raw["hidden_size"])
        self.n_layers = int(raw["num_hidden_layers"])
        self.H = int(raw["num_attention_heads"])
        self.G = int(raw.get("num_key_value_heads") or self.H)
        self.d = int(get("head_dim") or self.D // self.H)
        self.I = int(raw["intermediate_size"])
        self.V = int(raw["vocab_size"])
        if self.H % self.G:
            raise ValueError("num_attention_heads %d not a multiple of num_key_value_heads %d" % (self.H, self.G))
        if self.d % 2:
            raise ValueError("head_dim must be even")
        self.rope_dim = self.d
        if mt == "phi3":  # Phi3RotaryEmbedding: dim = int(head_dim * partial_rotary_factor), the leading dims
            self.rope_dim = int(self.d * float(get("partial_rotary_factor")))
        self.rope_theta, self.rope_scaling = _rope_settings(raw, get)
        self.eps = float(get("rms_norm_eps"))
        self.tie = bool(get("tie_word_embeddings", False))
        # biases, per the HF module definitions
        if mt == "llama":
            ab, mb = bool(raw.get("attention_bias", False)), bool(raw.get("mlp_bias", False))
            self.qkv_bias, self.o_bias, self.mlp_bias = ab, ab, mb
        elif mt == "qwen2":
            self.qkv_bias, self.o_bias, self.mlp_bias = True, False, False
        elif mt in ("qwen3", "qwen3_moe", "gemma2"):
            ab = bool(get("attention_bias"))
            self.qkv_bias, self.o_bias, self.mlp_bias = ab, ab, False
        else:
            self.qkv_bias, self.o_bias, self.mlp_bias = False, False, False
        # per-layer attention window (None = full causal)
        if mt in ("mistral", "mixtral", "phi3"):
            sw = get("sliding_window")
            self.windows = [sw] * self.n_layers
        elif mt == "qwen3_moe":
            # Qwen3MoeAttention: config.sliding_window on every layer (None unless use_sliding_window)
            self.windows = [get("sliding_window") if get("use_sliding_window") else None] * self.n_layers
        elif mt in ("qwen2", "qwen3"):
            sw = get("sliding_window") if get("use_sliding_window") else None
            lt = raw.get("layer_types")
            if lt is not None:
                self.windows = [sw if t == "sliding_attention" else None for t in lt]
            else:
                mwl = int(get("max_window_layers"))
                self.windows = [sw if (sw is not None and l >= mwl) else None for l in range(self.n_layers)]
        elif mt == "gemma2":
            # Gemma2Config: layer_types, by default "sliding_attention" where (i + 1) % 2, i.e. even i
            lt = get("layer_types") or ["sliding_attention" if (l + 1) % 2 else "full_attention"
                                        for l in range(self.n_layers)]
            self.windows = [get("sliding_window") if t == "sliding_attention" else None for t in lt]
        else:
            self.windows = [None] * self.n_layers
        self.windows = [None if w is None else int(w) for w in self.windows]
        self.gemma2 = mt == "gemma2"
        self.attn_scale = 1.0 / math.sqrt(self.d)
        self.attn_cap = self.final_cap = None
        if self.gemma2:
            if get("hidden_activation") != "gelu_pytorch_tanh":
                raise ValueError("gemma2 hidden_activation %r not supported" % get("hidden_activation"))
            self.attn_scale = float(get("query_pre_attn_scalar")) ** -0.5
            self.attn_cap = get("attn_logit_softcapping")
            self.final_cap = get("final_logit_softcapping")
            self.torch_dtype = raw.get("torch_dtype", "float32")
        self.qk_norm = mt in ("qwen3", "qwen3_moe")
        # MoE
        self.n_experts = int(get("num_local_experts")) if mt == "mixtral" else 0
        self.top_k = int(get("num_experts_per_tok")) if mt == "mixtral" else 0
        self.sparse = [False] * self.n_layers   # qwen3_moe layers with the sparse block
        if mt == "qwen3_moe":
            ne = int(get("num_experts"))
            only = get("mlp_only_layers") or []
            step = int(get("decoder_sparse_step"))
            self.sparse = [l not in only and ne > 0 and (l + 1) % step == 0 for l in range(self.n_layers)]
            self.n_experts = ne
            self.top_k = int(get("num_experts_per_tok"))
            self.moe_I = int(get("moe_intermediate_size"))
            self.norm_topk_prob = bool(get("norm_topk_prob"))

    def _init_dsv3(self, raw):
        """deepseek_v3: DeepseekV3Config semantics (defaults for absent keys; an explicit
        null is kept, e.g. q_lora_rank null = plain q_proj)."""

        get, num = _config_getters(raw, _DSV3_DEFAULTS, "deepseek_v3")

        self.model_type = "deepseek_v3"
        self._mla_attention_fields(raw, get, num)
        if get("hidden_act") != "silu":
            raise ValueError("deepseek_v3: hidden_act %r not supported (silu only)" % get("hidden_act"))
        self.scale = dsv3_softmax_scale(self.qk_nope + self.qk_rope, self.rope_scaling)
        self.attn_cap = self.final_cap = None
        self.tie = bool(get("tie_word_embeddings"))
        self.qkv_bias = self.o_bias = self.mlp_bias = False  # (dense MLP and experts: no bias)
        self.windows = [None] * self.n_layers
        self.n_experts = 0  # the Mixtral MoE path is not used
        # MoE
        self.first_k_dense = num("first_k_dense_replace")
        ne = get("n_routed_experts")
        self.n_routed = None if ne is None else int(ne)
        self.moe_I = num("moe_intermediate_size")
        ns = get("n_shared_experts")
        self.n_shared = 0 if ns is None else int(ns)
        self.top_k = None if get("num_experts_per_tok") is None else int(get("num_experts_per_tok"))
        self.n_group = None if get("n_group") is None else int(get("n_group"))
        self.topk_group = None if get("topk_group") is None else int(get("topk_group"))
        self.norm_topk_prob = bool(get("norm_topk_prob"))
        self.routed_scaling = float(get("routed_scaling_factor"))
        self.scoring_func = raw.get("scoring_func", "softmax")  # vLLM: getattr(config, "scoring_func", "softmax")
        self.topk_method = raw.get("topk_method")               # vLLM uses the bias iff "noaux_tc"
        self.moe_layer_freq = int(raw.get("moe_layer_freq", 1))  # vLLM only; transformers ignores it
        if self.scoring_func not in ("softmax", "sigmoid"):
            raise ValueError("deepseek_v3: scoring_func %r not supported" % self.scoring_func)

    def _mla_attention_fields(self, raw, get, num):
        """Sizes and DeepseekV3Attention's fields, shared by deepseek_v3 and gemma2_mla."""
        mt = self.model_type
        self.qk_norm = False
        self.D = num("hidden_size")
        self.n_layers = num("num_hidden_layers")
        self.H = num("num_attention_heads")
        # the config turns an explicit null into num_attention_heads
        self.G = int(get("num_key_value_heads") if get("num_key_value_heads") is not None else self.H)
        if self.G != self.H:
            # kv_b_proj already yields H key heads; the attention functions still
            # repeat_kv by H // num_key_value_heads, which only works for 1
            raise ValueError("%s: num_key_value_heads (%d) must equal num_attention_heads (%d)"
                             % (mt, self.G, self.H))
        self.V = num("vocab_size")
        self.I = num("intermediate_size")
        self.q_lora_rank = None if get("q_lora_rank") is None else int(get("q_lora_rank"))
        self.kv_lora_rank = num("kv_lora_rank")
        self.qk_nope = num("qk_nope_head_dim")
        self.qk_rope = num("qk_rope_head_dim")
        self.v_head = num("v_head_dim")
        if self.qk_rope % 2 or self.qk_rope <= 0:
            raise ValueError("%s: qk_rope_head_dim must be positive and even" % mt)
        # transformers sizes the rotary table from config.head_dim, which the config
        # sets to qk_rope_head_dim unless config.json overrides it
        if raw.get("head_dim") is not None and int(raw["head_dim"]) != self.qk_rope:
            raise ValueError("%s: head_dim %s differs from qk_rope_head_dim %d: transformers would "
                             "build a rotary table of the wrong width" % (mt, raw["head_dim"], self.qk_rope))
        prf = raw.get("partial_rotary_factor")
        if prf is not None and float(prf) != 1.0:
            raise ValueError("%s: partial_rotary_factor %s not supported" % (mt, prf))
        self.d = self.rope_dim = self.qk_rope
        self.rope_theta, self.rope_scaling = _rope_settings(raw, get)
        kind = _rope_kind(self.rope_scaling)
        if kind not in ("default", "linear", "llama3"):
            raise NotImplementedError("%s: rope_scaling type %r not supported "
                                      "(only none/default, linear, llama3; yarn is refused)" % (mt, kind))
        self.rope_interleave = bool(get("rope_interleave"))
        self.attention_bias = bool(get("attention_bias"))
        self.eps = num("rms_norm_eps", float)
        self.latent_eps = _DSV3_LATENT_EPS

    def _init_gemma2_mla(self, raw):
        """gemma2_mla, transmla's format for a converted Gemma-2: Gemma2DecoderLayer (sandwich
        (1 + w) norms, GeGLU, embeddings times sqrt(hidden_size) in the weights' dtype, tied
        head, final soft-cap) with DeepseekV3Attention in place of Gemma2Attention, which keeps
        Gemma-2's score soft-cap and per-layer window.  Its latent norms are DeepSeek's
        (plain w, eps 1e-6).  Scores are scaled by query_pre_attn_scalar^-1/2, where an
        absent query_pre_attn_scalar means qk_nope_head_dim + qk_rope_head_dim (DeepSeek's
        scale).  Absent MLA fields take DeepseekV3Config's defaults, the rest Gemma2Config's."""
        dflt = dict(_DSV3_DEFAULTS, **_DEFAULTS["gemma2"])

        get, num = _config_getters(raw, dflt, "gemma2_mla")

        self.model_type = "gemma2_mla"
        self._mla_attention_fields(raw, get, num)
        if get("hidden_activation") != "gelu_pytorch_tanh":
            raise ValueError("gemma2_mla hidden_activation %r not supported" % get("hidden_activation"))
        qpas = get("query_pre_attn_scalar") if "query_pre_attn_scalar" in raw else self.qk_nope + self.qk_rope
        self.scale = float(qpas) ** -0.5
        self.attn_cap = get("attn_logit_softcapping")
        self.final_cap = get("final_logit_softcapping")
        self.torch_dtype = raw.get("torch_dtype", "float32")
        self.gemma2 = True
        self.tie = bool(get("tie_word_embeddings"))
        lt = get("layer_types") or ["sliding_attention" if (l + 1) % 2 else "full_attention"
                                    for l in range(self.n_layers)]
        sw = get("sliding_window")
        self.windows = [None if (sw is None or t != "sliding_attention") else int(sw) for t in lt]
        self.qkv_bias = self.o_bias = self.mlp_bias = False
        self.n_experts = 0
        self.first_k_dense, self.n_routed, self.moe_I = self.n_layers, None, self.I  # every MLP dense
        self.n_shared, self.top_k, self.n_group, self.topk_group = 0, None, None, None
        self.norm_topk_prob, self.routed_scaling, self.scoring_func = True, 1.0, "softmax"
        self.topk_method, self.moe_layer_freq = None, 1

    def is_moe_layer(self, layer):
        """Whether layer `layer` of a deepseek_v3 model has the MoE MLP."""
        if layer < self.first_k_dense:
            return False
        if self.router == "vllm":
            return self.n_routed is not None and layer % self.moe_layer_freq == 0
        return True

    def inv_freq(self):
        """RoPE inverse frequencies (rope_dim/2,), float64, incl. rope_scaling."""
        d = self.rope_dim
        inv = 1.0 / (self.rope_theta ** (np.arange(0, d, 2, dtype=np.float64) / d))
        sc = self.rope_scaling
        if not sc:
            return inv
        kind = sc.get("rope_type", sc.get("type", "default"))
        if kind == "default":
            return inv
        if kind == "linear":
            return inv / float(sc["factor"])
        if kind == "llama3":
            return llama3_inv_freq(inv, float(sc["factor"]), float(sc["low_freq_factor"]),
                                   float(sc["high_freq_factor"]), float(sc["original_max_position_embeddings"]))
        raise NotImplementedError("rope_scaling type %r" % kind)


def _rope_settings(raw, get):
    """(rope_theta, rope_scaling dict or None) from rope_theta/rope_scaling or the
    newer rope_parameters layout."""
    rp = raw.get("rope_parameters") or {}
    theta = float(rp.get("rope_theta", get("rope_theta")))
    scaling = raw.get("rope_scaling") or (rp if rp.get("rope_type") not in (None, "default") else None)
    return theta, scaling


def _rope_kind(sc):
    if not sc:
        return "default"
    return sc.get("rope_type", sc.get("type", "default"))


def yarn_get_mscale(scale, mscale):
    """DeepSeek's attention-temperature factor (1 for scale <= 1)."""
    if scale <= 1:
        return 1.0
    return 0.1 * mscale * math.log(scale) + 1.0


def dsv3_softmax_scale(qk_head_dim, rope_scaling):
    """DeepseekV3Attention.scaling: qk_head_dim^-0.5, times mscale^2 when a non-default
    rope_scaling carries a non-zero mscale_all_dim (only yarn configs normally do)."""
    scale = qk_head_dim ** -0.5
    if _rope_kind(rope_scaling) != "default":
        mad = rope_scaling.get("mscale_all_dim", 0)
        if mad:
            m = yarn_get_mscale(float(rope_scaling["factor"]), float(mad))
            scale = scale * m * m
    return scale


def llama3_inv_freq(inv, factor, low_ff, high_ff, old_ctx):
    """transformers' _compute_llama3_parameters, written out per frequency."""
    out = np.empty_like(inv)
    low_wl = old_ctx / low_ff    # wavelengths above this: low-frequency band, divided by factor
    high_wl = old_ctx / high_ff  # wavelengths below this: high-frequency band, unchanged
    for i, f in enumerate(inv):
        wl = 2.0 * math.pi / f
        if wl < high_wl:
            out[i] = f
        elif wl > low_wl:
            out[i] = f / factor
        else:
            s = (old_ctx / wl - low_ff) / (high_ff - low_ff)
            out[i] = (1.0 - s) * f / factor + s * f
    return out


def llama3_regimes(cfg):
    """For tests: per frequency index, 'high' / 'medium' / 'low' as llama3 scaling classifies it."""
    sc = cfg.rope_scaling
    d = cfg.rope_dim
    inv = 1.0 / (cfg.rope_theta ** (np.arange(0, d, 2, dtype=np.float64) / d))
    old = float(sc["original_max_position_embeddings"])
    res = []
    for f in inv:
        wl = 2 * math.pi / f
        res.append("high" if wl < old / sc["high_freq_factor"] else
                   "low" if wl > old / sc["low_freq_factor"] else "medium")
    return res


def load_model(model_dir, router="hf"):
    """-> (Config, {name: float64 array}); router: deepseek_v3 MoE semantics "hf" | "vllm"."""
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = Config(json.load(f), router=router)
    return cfg, read_model_weights(model_dir)


def with_router(cfg, router):
    """The same config with another deepseek_v3 router ("hf" | "vllm")."""
    return Config(cfg.raw, router=router)


# --------------------------------------------------------------------------
# forward pass
# --------------------------------------------------------------------------

def _w(W, name):
    try:
        return W[name]
    except KeyError:
        raise KeyError("tensor %s missing from the model" % name) from None


def _linear(W, x, prefix, bias):
    y = x @ _w(W, prefix + ".weight").T
    if bias:
        y = y + _w(W, prefix + ".bias")
    return y


def rmsnorm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def silu(x):
    return x / (1.0 + np.exp(-x))


def rope(x, cos, sin):
    """x (..., T, d); HF rotate-half layout: pairs (i, i + d/2)."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    rot = np.concatenate([-x2, x1], axis=-1)
    return x * cos + rot * sin


def attention(cfg, W, layer, h, cos, sin):
    T = h.shape[0]
    H, G, d = cfg.H, cfg.G, cfg.d
    p = "model.layers.%d.self_attn." % layer
    q = _linear(W, h, p + "q_proj", cfg.qkv_bias).reshape(T, H, d).transpose(1, 0, 2)
    k = _linear(W, h, p + "k_proj", cfg.qkv_bias).reshape(T, G, d).transpose(1, 0, 2)
    v = _linear(W, h, p + "v_proj", cfg.qkv_bias).reshape(T, G, d).transpose(1, 0, 2)
    if cfg.qk_norm:  # qwen3: every query and key head RMS-normalised over its d values, before RoPE
        q = rmsnorm(q, _w(W, p + "q_norm.weight"), cfg.eps)
        k = rmsnorm(k, _w(W, p + "k_norm.weight"), cfg.eps)
    q = rope(q, cos, sin)
    k = rope(k, cos, sin)
    rep = H // G
    # query head h belongs to kv head h // rep: group the query heads by kv head
    qg = q.reshape(G, rep * T, d)
    s = np.matmul(qg, k.transpose(0, 2, 1)).reshape(G, rep, T, T) * cfg.attn_scale
    if cfg.attn_cap is not None:  # gemma2: soft-capped before the mask
        s = cfg.attn_cap * np.tanh(s / cfg.attn_cap)
    i = np.arange(T)[:, None]
    j = np.arange(T)[None, :]
    visible = j <= i
    win = cfg.windows[layer]
    if win is not None:
        visible = visible & (i - j < win)
    s = np.where(visible, s, -np.inf)
    s = s - s.max(axis=-1, keepdims=True)
    pr = np.exp(s)
    pr = pr / pr.sum(axis=-1, keepdims=True)
    o = np.matmul(pr.reshape(G, rep * T, T), v).reshape(H, T, d)
    o = o.transpose(1, 0, 2).reshape(T, H * d)
    return _linear(W, o, p + "o_proj", cfg.o_bias)


def phi3_attention(cfg, W, layer, h, cos, sin):
    """Phi3Attention: one fused qkv_proj, rows [q; k; v]; RoPE on the leading
    rope_dim dims of each head (cos/sin are rope_dim wide), the rest untouched."""
    T = h.shape[0]
    H, G, d, r = cfg.H, cfg.G, cfg.d, cfg.rope_dim
    p = "model.layers.%d.self_attn." % layer
    qkv = h @ _w(W, p + "qkv_proj.weight").T
    q = qkv[:, :H * d].reshape(T, H, d)
    k = qkv[:, H * d:(H + G) * d].reshape(T, G, d)
    v = qkv[:, (H + G) * d:].reshape(T, G, d)
    cos_t, sin_t = cos[:, None, :], sin[:, None, :]
    q = np.concatenate([rope(q[..., :r], cos_t, sin_t), q[..., r:]], axis=-1)
    k = np.concatenate([rope(k[..., :r], cos_t, sin_t), k[..., r:]], axis=-1)
    out = np.empty((T, H, d))
    visible = np.tril(np.ones((T, T), dtype=bool))
    win = cfg.windows[layer]
    if win is not None:
        visible &= np.subtract.outer(np.arange(T), np.arange(T)) < win
    for hh in range(H):
        g = hh // (H // G)
        s = q[:, hh, :] @ k[:, g, :].T / math.sqrt(d)
        s = np.where(visible, s, -np.inf)
        e = np.exp(s - s.max(axis=1, keepdims=True))
        out[:, hh, :] = (e / e.sum(axis=1, keepdims=True)) @ v[:, g, :]
    return out.reshape(T, H * d) @ _w(W, p + "o_proj.weight").T


def phi3_mlp(cfg, W, layer, h):
    """Phi3MLP: gate_up_proj rows [gate; up], down(up * silu(gate))."""
    p = "model.layers.%d.mlp." % layer
    gate, up = np.split(h @ _w(W, p + "gate_up_proj.weight").T, 2, axis=-1)
    return (up * silu(gate)) @ _w(W, p + "down_proj.weight").T


def dense_mlp(cfg, W, layer, h):
    p = "model.layers.%d.mlp." % layer
    g = _linear(W, h, p + "gate_proj", cfg.mlp_bias)
    u = _linear(W, h, p + "up_proj", cfg.mlp_bias)
    return _linear(W, silu(g) * u, p + "down_proj", cfg.mlp_bias)


def moe_mlp(cfg, W, layer, h):
    p = "model.layers.%d.block_sparse_moe." % layer
    E, k = cfg.n_experts, cfg.top_k
    r = h @ _w(W, p + "gate.weight").T                      # (T, E)
    r = np.exp(r - r.max(axis=-1, keepdims=True))
    prob = r / r.sum(axis=-1, keepdims=True)
    out = np.zeros_like(h)
    for t in range(h.shape[0]):
        top = np.argsort(-prob[t], kind="stable")[:k]     # ties -> lower index
        wts = prob[t, top] / prob[t, top].sum()
        for e, we in zip(top, wts):
            q = p + "experts.%d." % e
            a = silu(_w(W, q + "w1.weight") @ h[t]) * (_w(W, q + "w3.weight") @ h[t])
            out[t] += we * (_w(W, q + "w2.weight") @ a)
    return out


def qwen3_moe_block(cfg, W, layer, h):
    """Qwen3MoeSparseMoeBlock on h (T, D): softmax over all experts, top-k (ties to the
    lower index), the k probabilities renormalised only under norm_topk_prob."""
    p = "model.layers.%d.mlp." % layer
    z = h @ _w(W, p + "gate.weight").T                      # (T, E)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    prob = z / z.sum(axis=-1, keepdims=True)
    out = np.zeros_like(h)
    for t in range(h.shape[0]):
        top = _topk(prob[t], cfg.top_k)
        wts = prob[t, top]
        if cfg.norm_topk_prob:
            wts = wts / wts.sum()
        for e, we in zip(top, wts):
            out[t] += we * swiglu(W, h[t], p + "experts.%d." % e)
    return out


def gqa_mlp(cfg, W, layer, h):
    if cfg.sparse[layer]:
        return qwen3_moe_block(cfg, W, layer, h)
    if cfg.model_type == "mixtral":
        return moe_mlp(cfg, W, layer, h)
    return dense_mlp(cfg, W, layer, h)


# --------------------------------------------------------------------------
# gemma2 (Gemma2ForCausalLM)
# --------------------------------------------------------------------------

def gemma_rmsnorm(x, w, eps):
    """Gemma2RMSNorm: the weight is stored around 0 and multiplies as (1 + w)."""
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * (1.0 + w)


def gelu_tanh(x):
    """PyTorch gelu(approximate="tanh"), transformers' gelu_pytorch_tanh."""
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def round_to_dtype(v, torch_dtype):
    """A float64 scalar as a tensor of torch_dtype holds it (round to nearest even)."""
    if torch_dtype == "bfloat16":
        return float(quantize(np.array([v]), "BF16")[0])
    if torch_dtype == "float16":
        return float(np.float16(v))
    if torch_dtype == "float32":
        return float(np.float32(v))
    return float(v)


def gemma2_layer(cfg, W, layer, x, cos, sin):
    """Gemma2DecoderLayer: sandwich norms around the attention and the GeGLU MLP."""
    p = "model.layers.%d." % layer
    eps = cfg.eps
    h = gemma_rmsnorm(x, _w(W, p + "input_layernorm.weight"), eps)
    h = (mla_attention if cfg.mla else attention)(cfg, W, layer, h, cos, sin)
    x = x + gemma_rmsnorm(h, _w(W, p + "post_attention_layernorm.weight"), eps)
    h = gemma_rmsnorm(x, _w(W, p + "pre_feedforward_layernorm.weight"), eps)
    m = p + "mlp."
    h = (gelu_tanh(h @ _w(W, m + "gate_proj.weight").T) * (h @ _w(W, m + "up_proj.weight").T)) \
        @ _w(W, m + "down_proj.weight").T
    return x + gemma_rmsnorm(h, _w(W, p + "post_feedforward_layernorm.weight"), eps)


# --------------------------------------------------------------------------
# deepseek_v3 (DeepseekV3ForCausalLM)
# --------------------------------------------------------------------------

def deinterleave(x):
    """(..., d) pairs (2i, 2i+1) -> rotate-half layout (i, i + d/2): what transformers'
    apply_rotary_pos_emb_interleave does (view as d/2 pairs, transpose) before rotate-half."""
    d = x.shape[-1]
    return x.reshape(x.shape[:-1] + (d // 2, 2)).swapaxes(-1, -2).reshape(x.shape)


def causal_softmax(s, window=None):
    """Softmax over the last axis of scores (..., T, T) with keys j > query i masked, and
    with a window also keys j <= i - window."""
    T = s.shape[-1]
    i, j = np.arange(T)[:, None], np.arange(T)[None, :]
    visible = j <= i
    if window is not None:
        visible = visible & (i - j < window)
    s = np.where(visible, s, -np.inf)
    s = s - s.max(axis=-1, keepdims=True)
    pr = np.exp(s)
    return pr / pr.sum(axis=-1, keepdims=True)


def mla_attention(cfg, W, layer, h, cos, sin):
    """DeepseekV3Attention on one sequence h (T, D); cos/sin (T, qk_rope_head_dim).
    gemma2_mla: scores scaled by cfg.scale, soft-capped before the mask, the layer's window."""
    T = h.shape[0]
    H, dn, dr, dv, R = cfg.H, cfg.qk_nope, cfg.qk_rope, cfg.v_head, cfg.kv_lora_rank
    p = "model.layers.%d.self_attn." % layer
    if cfg.q_lora_rank is None:
        q = _linear(W, h, p + "q_proj", False)
    else:
        qa = _linear(W, h, p + "q_a_proj", cfg.attention_bias)
        qa = rmsnorm(qa, _w(W, p + "q_a_layernorm.weight"), cfg.latent_eps)
        q = _linear(W, qa, p + "q_b_proj", False)
    q = q.reshape(T, H, dn + dr).transpose(1, 0, 2)          # (H, T, dn + dr)
    q_nope, q_pe = q[..., :dn], q[..., dn:]
    ckv = _linear(W, h, p + "kv_a_proj_with_mqa", cfg.attention_bias)  # (T, R + dr)
    c, k_pe = ckv[:, :R], ckv[:, R:]
    c = rmsnorm(c, _w(W, p + "kv_a_layernorm.weight"), cfg.latent_eps)
    kv = _linear(W, c, p + "kv_b_proj", False).reshape(T, H, dn + dv).transpose(1, 0, 2)
    k_nope, v = kv[..., :dn], kv[..., dn:]
    if cfg.rope_interleave:
        q_pe, k_pe = deinterleave(q_pe), deinterleave(k_pe)
    q_pe = rope(q_pe, cos, sin)
    k_pe = rope(k_pe, cos, sin)                               # (T, dr): one rope key for all heads
    s = (np.matmul(q_nope, k_nope.transpose(0, 2, 1)) + q_pe @ k_pe.T) * cfg.scale
    if cfg.attn_cap is not None:
        s = cfg.attn_cap * np.tanh(s / cfg.attn_cap)
    o = np.matmul(causal_softmax(s, cfg.windows[layer]), v)  # (H, T, dv)
    o = o.transpose(1, 0, 2).reshape(T, H * dv)
    return _linear(W, o, p + "o_proj", cfg.attention_bias)


def swiglu(W, x, prefix):
    """down(silu(gate x) * up x) for a bias-free gate_proj/up_proj/down_proj MLP."""
    g = x @ _w(W, prefix + "gate_proj.weight").T
    u = x @ _w(W, prefix + "up_proj.weight").T
    return (silu(g) * u) @ _w(W, prefix + "down_proj.weight").T


def _topk(x, k):
    """Indices of the k largest entries, ties to the lower index."""
    return np.argsort(-x, kind="stable")[:k]


def _check_groups(cfg, E, topk2):
    if cfg.top_k is None or cfg.n_group is None or cfg.topk_group is None:
        raise ValueError("deepseek_v3 MoE: num_experts_per_tok, n_group and topk_group must be set")
    if E % cfg.n_group or cfg.topk_group > cfg.n_group or cfg.top_k > E:
        raise ValueError("deepseek_v3 MoE: %d experts, n_group %d, topk_group %d, top-k %d do not fit"
                         % (E, cfg.n_group, cfg.topk_group, cfg.top_k))
    if topk2 and E // cfg.n_group < 2:
        raise ValueError("deepseek_v3 MoE: groups of %d expert(s); the group score needs 2" % (E // cfg.n_group))
    _check_kept(cfg.top_k, cfg.topk_group * (E // cfg.n_group))


def _check_kept(top_k, kept):
    # more picks than experts in the kept groups: the rest would be chosen among
    # equal masked values (0.0 / -inf), in an order neither library defines
    if top_k > kept:
        raise ValueError("deepseek_v3 MoE: top-%d from %d experts in the kept groups is not well defined"
                         % (top_k, kept))


def route_hf(cfg, logit, bias):
    """transformers' DeepseekV3 routing of one token: logit (E,) -> (experts, weights).

    Always sigmoid (scoring_func is not read); the correction bias (zeros when the
    checkpoint has none) steers only the choice; group score = sum of the group's top 2;
    experts outside the chosen groups are set to 0.0 (not -inf) before the top-k."""
    E = logit.shape[0]
    _check_groups(cfg, E, True)
    score = 1.0 / (1.0 + np.exp(-logit))
    choice = score + (np.zeros(E) if bias is None else bias)
    groups = choice.reshape(cfg.n_group, E // cfg.n_group)
    gscore = np.sort(groups, axis=-1)[:, -2:].sum(axis=-1)
    keep = np.zeros(cfg.n_group, dtype=bool)
    keep[_topk(gscore, cfg.topk_group)] = True
    choice = np.where(np.repeat(keep, E // cfg.n_group), choice, 0.0)
    top = _topk(choice, cfg.top_k)
    w = score[top]
    if cfg.norm_topk_prob:
        w = w / (w.sum() + 1e-20)
    return top, w * cfg.routed_scaling


def route_vllm(cfg, logit, bias):
    """vLLM's grouped_topk for DeepSeek of one token: logit (E,) -> (experts, weights).

    scoring_func softmax or sigmoid; the bias exists only for topk_method "noaux_tc";
    group score = top-2 sum with a bias, else the group max; experts outside the chosen
    groups get -inf; weights = the (unbiased) scores, renormalised if norm_topk_prob,
    times routed_scaling_factor.  A grouping vLLM rejects (E <= n_group or not a
    multiple) is routed without groups."""
    E = logit.shape[0]
    if cfg.scoring_func == "softmax":
        z = np.exp(logit - logit.max())
        score = z / z.sum()
    else:
        score = 1.0 / (1.0 + np.exp(-logit))
    choice = score if bias is None else score + bias
    ng = cfg.n_group if cfg.n_group is not None else 1
    if E <= ng or E % ng:
        ng = 1
    tg = min(cfg.topk_group if cfg.topk_group is not None else 1, ng)
    if cfg.top_k is None or cfg.top_k > E:
        raise ValueError("deepseek_v3 MoE: bad num_experts_per_tok %r for %d experts" % (cfg.top_k, E))
    _check_kept(cfg.top_k, tg * (E // ng))
    groups = choice.reshape(ng, E // ng)
    if bias is not None:
        if E // ng < 2:
            raise ValueError("deepseek_v3 MoE: groups of 1 expert; the biased group score needs 2")
        gscore = np.sort(groups, axis=-1)[:, -2:].sum(axis=-1)
    else:
        gscore = groups.max(axis=-1)
    keep = np.zeros(ng, dtype=bool)
    keep[_topk(gscore, tg)] = True
    choice = np.where(np.repeat(keep, E // ng), choice, -np.inf)
    top = _topk(choice, cfg.top_k)
    w = score[top]
    if cfg.norm_topk_prob:
        w = w / w.sum()
    return top, w * cfg.routed_scaling


def _router_bias(cfg, W, p):
    name = p + "gate.e_score_correction_bias"
    if cfg.router == "vllm":
        if cfg.topk_method != "noaux_tc":
            return None
        return _w(W, name)
    return W.get(name)  # transformers: a zero buffer unless the checkpoint sets it


def dsv3_moe(cfg, W, layer, h):
    """DeepseekV3MoE: routed experts (per cfg.router) + shared experts, h (T, D)."""
    p = "model.layers.%d.mlp." % layer
    r = h @ _w(W, p + "gate.weight").T                        # (T, E) router logits
    bias = _router_bias(cfg, W, p)
    route = route_vllm if cfg.router == "vllm" else route_hf
    out = np.zeros_like(h)
    for t in range(h.shape[0]):
        for e, we in zip(*route(cfg, r[t], bias)):
            out[t] += we * swiglu(W, h[t], p + "experts.%d." % e)
    if cfg.n_shared:
        out += swiglu(W, h, p + "shared_experts.")
    return out


def dsv3_mlp(cfg, W, layer, h):
    if cfg.is_moe_layer(layer):
        return dsv3_moe(cfg, W, layer, h)
    return swiglu(W, h, "model.layers.%d.mlp." % layer)


# --------------------------------------------------------------------------
# model
# --------------------------------------------------------------------------

def hidden_states(cfg, W, ids):
    """Final-normed hidden states (T, D) of one sequence, positions 0..T-1."""
    if not isinstance(cfg, Config):
        cfg = Config(cfg)
    ids = np.asarray(ids, dtype=np.int64)
    if ids.ndim != 1:
        raise ValueError("ids must be one sequence (T,)")
    if ids.size and (ids.min() < 0 or ids.max() >= cfg.V):
        raise ValueError("token id out of range [0, %d)" % cfg.V)
    T = ids.shape[0]
    ang = np.outer(np.arange(T, dtype=np.float64), cfg.inv_freq())
    ang = np.concatenate([ang, ang], axis=-1)
    cos, sin = np.cos(ang), np.sin(ang)
    x = _w(W, "model.embed_tokens.weight")[ids]
    if getattr(cfg, "gemma2", False):
        # Gemma2Model: normalizer = torch.tensor(hidden_size ** 0.5, dtype=hidden_states.dtype)
        x = x * round_to_dtype(cfg.D ** 0.5, cfg.torch_dtype)
        for l in range(cfg.n_layers):
            x = gemma2_layer(cfg, W, l, x, cos, sin)
        return gemma_rmsnorm(x, _w(W, "model.norm.weight"), cfg.eps)
    for l in range(cfg.n_layers):
        p = "model.layers.%d." % l
        h = rmsnorm(x, _w(W, p + "input_layernorm.weight"), cfg.eps)
        if cfg.mla:
            x = x + mla_attention(cfg, W, l, h, cos, sin)
            h = rmsnorm(x, _w(W, p + "post_attention_layernorm.weight"), cfg.eps)
            x = x + dsv3_mlp(cfg, W, l, h)
            continue
        if cfg.model_type == "phi3":
            x = x + phi3_attention(cfg, W, l, h, cos, sin)
            h = rmsnorm(x, _w(W, p + "post_attention_layernorm.weight"), cfg.eps)
            x = x + phi3_mlp(cfg, W, l, h)
            continue
        x = x + attention(cfg, W, l, h, cos, sin)
        h = rmsnorm(x, _w(W, p + "post_attention_layernorm.weight"), cfg.eps)
        x = x + gqa_mlp(cfg, W, l, h)
    return rmsnorm(x, _w(W, "model.norm.weight"), cfg.eps)


def output_matrix(cfg, W):
    if not isinstance(cfg, Config):
        cfg = Config(cfg)
    if cfg.tie or "lm_head.weight" not in W:
        return _w(W, "model.embed_tokens.weight")
    return W["lm_head.weight"]


def logits(cfg, W, ids, router=None):
    """Logits (T, V) of one sequence (T,), float64.  router: override cfg.router."""
    if router is not None:
        cfg = with_router(cfg if isinstance(cfg, Config) else Config(cfg), router)
    z = hidden_states(cfg, W, ids) @ output_matrix(cfg, W).T
    cap = getattr(cfg, "final_cap", None)
    if cap is not None:  # gemma2: final_logit_softcapping
        z = cap * np.tanh(z / cap)
    return z


def log_softmax(z):
    m = z.max(axis=-1, keepdims=True)
    return z - (m + np.log(np.exp(z - m).sum(axis=-1, keepdims=True)))


def nll_sum(cfg, W, seqs):
    """(sum of -log p(token t+1 | prefix), number of predicted tokens)."""
    tot, n = 0.0, 0
    for s in seqs:
        s = np.asarray(s, dtype=np.int64)
        if s.shape[0] < 2:
            continue
        lp = log_softmax(logits(cfg, W, s[:-1]))
        tot += -float(lp[np.arange(s.shape[0] - 1), s[1:]].sum())
        n += s.shape[0] - 1
    return tot, n


def mean_nll(cfg, W, seqs):
    """Mean over all predicted tokens of -log softmax (T-1 per sequence)."""
    tot, n = nll_sum(cfg, W, seqs)
    if n == 0:
        raise ValueError("no tokens to predict")
    return tot / n


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------

def _windows(path, seqlen, nseq, token_dtype):
    dt = {"u16": "<u2", "u32": "<u4"}[token_dtype]
    toks = np.fromfile(path, dtype=dt).astype(np.int64)
    avail = toks.shape[0] // seqlen
    k = avail if nseq is None else nseq
    if k > avail or k < 1:
        raise SystemExit("%s: %d tokens give %d complete windows of %d, %d requested"
                         % (path, toks.shape[0], avail, seqlen, k))
    return [toks[i * seqlen:(i + 1) * seqlen] for i in range(k)]


def main(argv=None):
    ap = argparse.ArgumentParser(description="float64 reference forward pass "
                                             "(llama/mistral/qwen2/mixtral/qwen3/qwen3_moe/phi3/gemma2/deepseek_v3/gemma2_mla)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("ppl", "logits"):
        sp = sub.add_parser(name)
        sp.add_argument("model_dir")
        sp.add_argument("tokens", help="raw little-endian token ids")
        sp.add_argument("--seqlen", type=int, required=True)
        sp.add_argument("--nseq", type=int, default=None, help="first K windows (default: all complete)")
        sp.add_argument("--token-dtype", choices=("u16", "u32"), default="u16")
        sp.add_argument("--router", choices=ROUTERS, default="hf",
                        help="deepseek_v3 MoE routing: transformers (hf) or vLLM (honours scoring_func)")
        if name == "logits":
            sp.add_argument("--out", required=True, help="float64 little-endian [window][t][vocab]")
    a = ap.parse_args(argv)
    if a.seqlen < 2:
        raise SystemExit("--seqlen must be >= 2")
    cfg, W = load_model(a.model_dir, router=a.router)
    seqs = _windows(a.tokens, a.seqlen, a.nseq, a.token_dtype)
    if a.cmd == "ppl":
        tot, n = nll_sum(cfg, W, seqs)
        nll = tot / n
        print(json.dumps({"ppl": math.exp(nll), "nll": nll, "tokens": n}))
    else:
        with open(a.out, "wb") as f:
            for s in seqs:
                f.write(np.ascontiguousarray(logits(cfg, W, s), dtype="<f8").tobytes())
    return 0


if __name__ == "__main__":
    sys.exit(main())
