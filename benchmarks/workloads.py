"""Benchmark workloads: parameter trees (optimizer step) and models (whole training step), at three scales.

``gpu`` sizes are those of the fast-path issue (an H100); ``cpu`` sizes are scaled down about 64x in parameters
(leaf counts kept) so a 2-core machine runs the suite in minutes; ``quick`` is a smoke test.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class TreeWorkload:
    """A parameter tree given as ``{name: shape}`` (all float32); ``algorithms`` limits what runs on it."""

    name: str
    title: str
    shapes: dict
    algorithms: tuple[str, ...] | None = None

    @property
    def num_params(self) -> int:
        return int(sum(np.prod(s, dtype=np.int64) for s in self.shapes.values()))

    @property
    def num_leaves(self) -> int:
        return len(self.shapes)


def gpt_tree(d: int, vocab: int, ctx: int, blocks: int) -> dict:
    """GPT-2-medium-like: embeddings, ``blocks`` x (LN, qkv, proj, LN, mlp), final LN (292 leaves at 24 blocks)."""
    shapes = {"wte": (vocab, d), "wpe": (ctx, d)}
    for i in range(blocks):
        h = f"h.{i}."
        shapes.update({
            h + "ln_1.gamma": (d,), h + "ln_1.beta": (d,),
            h + "attn.c_attn.weight": (d, 3 * d), h + "attn.c_attn.bias": (3 * d,),
            h + "attn.c_proj.weight": (d, d), h + "attn.c_proj.bias": (d,),
            h + "ln_2.gamma": (d,), h + "ln_2.beta": (d,),
            h + "mlp.c_fc.weight": (d, 4 * d), h + "mlp.c_fc.bias": (4 * d,),
            h + "mlp.c_proj.weight": (4 * d, d), h + "mlp.c_proj.bias": (d,),
        })
    shapes.update({"ln_f.gamma": (d,), "ln_f.beta": (d,)})
    return shapes


def many_leaves(count: int, size: int) -> dict:
    return {f"layer{i:04d}.weight": (size,) for i in range(count)}


def tree_workloads(scale: str) -> list[TreeWorkload]:
    if scale == "gpu":
        return [
            TreeWorkload("flat", "one 256M-param tensor", {"weight": (256 * 2**20,)}),
            TreeWorkload("gpt", "GPT-2-medium-like tree (292 leaves, 355M)", gpt_tree(1024, 50304, 1024, 24)),
            TreeWorkload("leaves", "2000 leaves x 4096", many_leaves(2000, 4096)),
        ]
    if scale == "cpu":
        return [
            TreeWorkload("flat", "one 4M-param tensor (256M/64)", {"weight": (4 * 2**20,)}),
            TreeWorkload("gpt", "GPT-2-medium-like tree /64 (292 leaves, 5.5M)", gpt_tree(128, 6288, 128, 24)),
            # Per-leaf programs with 2000 leaves take ~50 s each to compile on 2 cores: Adam only there, and
            # the same parameter count in 500 leaves for every algorithm.
            TreeWorkload("leaves", "2000 leaves x 64 (2000 x 4096 / 64)", many_leaves(2000, 64), ("adam",)),
            TreeWorkload("leaves500", "500 leaves x 256 (2000 x 4096 / 64)", many_leaves(500, 256)),
            # the per-leaf path against optax where per-array overhead dominates (2M params in 2000 arrays)
            TreeWorkload("leaves1024", "2000 leaves x 1024", many_leaves(2000, 1024), ("adam", "momentum")),
        ]
    return [
        TreeWorkload("flat", "one 64K-param tensor", {"weight": (2**16,)}),
        TreeWorkload("gpt", "GPT-like tree, 2 blocks (28 leaves)", gpt_tree(16, 64, 16, 2)),
        TreeWorkload("leaves", "50 leaves x 64", many_leaves(50, 64)),
    ]


@dataclasses.dataclass(frozen=True)
class ModelWorkload:
    """A residual MLP stack ``x + W2 gelu(W1 LN(x))`` (transformer-like), a stack of transformer blocks (causal
    self-attention with ``heads`` heads over sequences of ``seq`` of the ``rows``, then the MLP; ``heads > 0``),
    or a plain MLP (``blocks == 0``)."""

    name: str
    title: str
    rows: int
    width: int
    hidden: int
    blocks: int
    inputs: int = 0
    classes: int = 0
    heads: int = 0
    seq: int = 0


def model_workloads(scale: str) -> list[ModelWorkload]:
    demo = ModelWorkload("demo_mlp", "demo-sized MLP 64-128-128-10 (digits), batch 128", 128, 128, 0, 0, 64, 10)
    if scale == "gpu":
        return [ModelWorkload("mlp_stack", "24-block MLP stack, 302M params, 4096 rows", 4096, 1024, 6144, 24),
                ModelWorkload("transformer", "24 transformer blocks (d 1024, 16 heads), 302M params, 8 x 1024 tokens",
                              8192, 1024, 4096, 24, heads=16, seq=1024), demo]
    if scale == "cpu":
        return [ModelWorkload("mlp_stack", "24-block MLP stack, 4.7M params, 64 rows", 64, 128, 768, 24),
                ModelWorkload("transformer", "8 transformer blocks (d 128, 4 heads), 1.6M params, 4 x 64 tokens",
                              256, 128, 512, 8, heads=4, seq=64), demo]
    return [ModelWorkload("mlp_stack", "2-block MLP stack, 32 rows", 32, 16, 64, 2),
            ModelWorkload("transformer", "2 transformer blocks, 2 x 8 tokens", 16, 16, 32, 2, heads=2, seq=8),
            ModelWorkload("demo_mlp", "demo-sized MLP, batch 16", 16, 32, 0, 0, 64, 10)]
