"""Model FLOPs of the per-layer fits, for the benchmarks and projections
(bench_attn_fit.sh, project_conversion.py). Model FLOPs, as MFU counts them:
recomputation is not counted.

The attention fit (pipeline/attn_fit.h) trains the converted (native, no
q_lora) MLA block. Forward FLOPs per token, with D hidden, H heads,
dn/dr/dv qk_nope/qk_rope/v head dims, R kv_lora_rank:
    q_proj 2 D H (dn+dr), kv_a_proj_with_mqa 2 D (R+dr),
    kv_b_proj 2 R H (dn+dv) (the training kernels expand per-head K and V),
    o_proj 2 H dv D;
per window of T tokens, causal attention: QK^T 2 H (dn+dr) T(T+1)/2 and
PV 2 H dv T(T+1)/2. Backward counts 2x forward (gradients of inputs and
weights) for kv_b_proj, o_proj and the attention, but 1x for q_proj and
kv_a_proj: the fit needs no gradient of the layer input, so only their
weight gradients are computed.
"""


def mla_dims(cfg):
    """The converted block's dims from a deepseek_v3 config.json."""
    return (cfg["hidden_size"], cfg["num_attention_heads"], cfg["kv_lora_rank"], cfg["qk_nope_head_dim"],
            cfg["qk_rope_head_dim"], cfg["v_head_dim"])


def mla_dims_converted(gqa_cfg, kv_lora_rank, rope=64):
    """The dims `transmla convert --qk-mqa-dim rope` gives a GQA config.json."""
    D, H = gqa_cfg["hidden_size"], gqa_cfg["num_attention_heads"]
    d = gqa_cfg.get("head_dim") or D // H
    return D, H, kv_lora_rank, d, rope, d


def block_flops(dims, T, w, train):
    """FLOPs of the MLA block's forward (train: + backward) over w windows of T tokens."""
    D, H, R, dn, dr, dv = dims
    fq, fkva, fkvb, fo = 2 * D * H * (dn + dr), 2 * D * (R + dr), 2 * R * H * (dn + dv), 2 * H * dv * D
    fatt = 2 * H * (dn + dr + dv) * T * (T + 1) / 2
    n = w * T
    if not train:
        return n * (fq + fkva + fkvb + fo) + w * fatt
    return n * (2 * fq + 2 * fkva + 3 * fkvb + 3 * fo) + 3 * w * fatt


def attn_fit_layer_flops(dims, T, wtrain, held, steps, wps, judge_every=5):
    """One layer's attention fit: the error over the trained windows before
    and after, each step's forward + backward on wps windows, the held-back
    windows' forward every judge_every steps and after the last
    (ATTN_JUDGE_EVERY in pipeline/attn_fit.h) and once more at the end.
    Returns (layer, step): a step is its forward + backward."""
    judges = len(set(range(0, steps + 1, judge_every)) | {steps})
    step = block_flops(dims, T, wps, True)
    return 2 * block_flops(dims, T, wtrain, False) + (judges + 1) * block_flops(dims, T, held, False) + steps * step, step


def attn_fit_defaults_flops(dims, T=256):
    """At convert's defaults: 128 windows, 16 held back, 112 trained, 150 steps of 16."""
    return attn_fit_layer_flops(dims, T, 112, 16, 150, 16)[0]


def attn_fit_report_flops(dims, fit):
    """A layer's attention fit as a one-replica conversion ran it
    (transmla_report.json's attn_fit: its windows, those it held back, its
    steps of windows_per_step)."""
    held = fit["held_back_windows"]
    return attn_fit_layer_flops(dims, fit["seqlen"], fit["windows"] - held, held, fit["steps"],
                                fit["windows_per_step"])[0]


def gqa_attention_flops(cfg, T=256):
    """Forward FLOPs per token of a GQA config's attention: q, k, v, o and
    causal attention over T-token windows (what the rotation fit's work
    grows with)."""
    D, H, G = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    d = cfg.get("head_dim") or D // H
    return 2 * D * (H * d + 2 * G * d) + 2 * H * d * D + 2 * H * d * (T + 1)


def layer_forward_flops(cfg, T=256):
    """Forward FLOPs per token of one decoder layer of a GQA config: its
    attention and its MLP (MoE: the routed experts and the router)."""
    D = cfg["hidden_size"]
    if "num_local_experts" in cfg:  # mixtral
        mlp = cfg["num_experts_per_tok"] * 6 * D * cfg["intermediate_size"] + 2 * D * cfg["num_local_experts"]
    elif "num_experts" in cfg:  # qwen3_moe
        mlp = cfg["num_experts_per_tok"] * 6 * D * cfg["moe_intermediate_size"] + 2 * D * cfg["num_experts"]
    else:
        mlp = 6 * D * cfg["intermediate_size"]
    return gqa_attention_flops(cfg, T) + mlp


def attn_fit_stream_flops(cfg, windows, T, sequential):
    """Moving the attention fit's data on through one layer: the original
    model's stream over the windows, and with the sequential schedule the
    fitted prefix's stream too (pipeline/run_attn_fit.c)."""
    return (2 if sequential else 1) * windows * T * layer_forward_flops(cfg, T)
