"""A line-by-line NumPy (float64) transcription of MindSpore 2.10's GPU THOR for an embedding model.

MindSpore's THOR does not run on its CPU build (``CholeskyTrsm`` and ``ThorIm2Col`` have no CPU kernel), so
``jaxopt_ms.thor`` is checked against this transcription. Citations are ``file:line`` in the installed
MindSpore 2.10 package (``mindspore/``):

* ``train/train_thor/convert_utils.py`` (``ConvertNetUtils``): ``nn.Embedding`` -> ``EmbeddingThor`` with
  ``use_one_hot=False`` and the same table (74-82); ``nn.Dense`` -> ``DenseThor`` (39-70).
* ``nn/layer/thor_layer.py``: ``EmbeddingThor.construct`` (637-658) and ``save_gradient`` (624-635);
  ``DenseThor.construct`` (173-197) and ``save_gradient`` (152-171).
* ``nn/optim/thor.py``: ``ThorGpu.__init__`` (353-393), ``_get_ainv_ginv_list`` (493-543),
  ``_process_layernorm`` (545-555), ``construct`` (563-636).
* ``train/train_thor/model_thor.py:144-166``: the first step of every ``frequency`` steps is a THOR step (layers
  record A/G, the optimizer recomputes the inverses), the next ``frequency - 1`` reuse the stored inverses.
* ``CholeskyTrsm`` (``ops/operations/_thor_ops.py:705-751``; GPU kernel ``CholeskyTrsmGpuKernelMod``,
  ``plugin/device/gpu/kernel/math/cholesky_trsm_solve_gpu_kernel.h`` in MindSpore's sources): cuSOLVER
  ``potrf`` with ``CUBLAS_FILL_MODE_UPPER`` then ``trsm(LEFT, UPPER, N)`` against the identity, on row-major
  data read column-major: for ``M = L Lᵀ`` it returns ``L⁻¹`` (lower triangular). With ``split_dim=128`` it
  does so on the 128x128 diagonal blocks (the last padded with identity), with ``split_dim=0`` (the
  embedding's ``CholeskyTrsm()``, thor.py:416) on the whole matrix.

The model is ``ids -> EmbeddingThor -> LayerNorm -> DenseThor(tanh) -> DenseThor``, softmax cross-entropy
summed over each sequence's tokens and averaged over the sequences, trained with
``FixedLossScaleManager(drop_overflow_update=False)`` (the loss is multiplied by ``loss_scale``, the optimizer
divides the gradients). Weights are kept in MindSpore's layouts (dense ``(out, in)``, table ``(vocab, dim)``).
``BREAKS`` are deliberate departures from the transcription, used by the tests to show that they would notice
each quirk being lost.
"""

from __future__ import annotations

import contextlib

import numpy as np

try:  # small matrices: one BLAS thread is faster and immune to oversubscription on a busy machine
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover
    threadpool_limits = lambda limits: contextlib.nullcontext()  # noqa: E731

SPLIT_DIM = 128
LN_EPS = 1e-5

BREAKS = {
    "inverse_product": "embedding Ginv = (L⁻¹)ᵀL⁻¹ (the true inverse) instead of thor.py:531's L⁻¹ @ L⁻¹",
    "ginv_transposed": "embedding g @ Ginvᵀ instead of g @ Ginv (thor.py:600)",
    "counts_by_tokens": "row counts divided by the number of ids instead of the THOR batch_size (thor.py:527)",
    "counts_unnormalised": "row counts not divided by batch_size",
    "a_damping_lam": "embedding A damped by lam instead of sqrt(lam) (thor.py:518)",
    "g_rows_by_batch": "embedding G divided by the batch instead of the number of ids (thor_layer.py:630-633)",
    "g_no_loss_scale": "G not multiplied by 1/loss_scale² (thor.py:522)",
    "g_split_blocks": "embedding G inverted through CholeskyTrsm(split_dim=128) blocks (thor.py:417 vs 416)",
    "refresh_every_step": "no stale steps: inverses recomputed every step (model_thor.py:144-166)",
    "stale_fresh_counts": "stale steps use the current step's counts with the stored Ginv",
    "embedding_first_order": "the table passes through with its first-order gradient (jaxopt_ms before)",
    "decay_before": "weight decay added before preconditioning (thor.py:630-631 adds it after)",
}


# ------------------------------------------------------------------------------------------------ primitives
def cholesky_trsm(m: np.ndarray, split_dim: int) -> np.ndarray:
    """``CholeskyTrsm(split_dim)``: ``L⁻¹`` of ``m`` (``split_dim=0``), or ``(n, s, s)`` of its diagonal blocks,
    the last one padded with identity (``_Cholesky.infer_shape``, _thor_ops.py:722-735)."""
    if split_dim == 0:
        return np.linalg.inv(np.linalg.cholesky(m))
    d = m.shape[0]
    s = min(d, split_dim)
    n = -(-d // s)
    padded = np.eye(n * s)
    padded[:d, :d] = m
    return np.stack([np.linalg.inv(np.linalg.cholesky(padded[i * s:(i + 1) * s, i * s:(i + 1) * s]))
                     for i in range(n)])


def batch_matmul_ta(x: np.ndarray) -> np.ndarray:
    """``BatchMatMul(transpose_a=True)(x, x)`` (thor.py:418, 535, 538)."""
    return np.einsum("bji,bjk->bik", x, x)


def update_thor_gradient(g_inv: np.ndarray, g: np.ndarray, a_inv: np.ndarray) -> np.ndarray:
    """``UpdateThorGradient(split_dim=128)`` (thor.py:390, 589): block-diagonal ``Ginv @ g @ Ainv``."""
    out_dim, in_dim = g.shape
    ng, sg = g_inv.shape[:2]
    na, sa = a_inv.shape[:2]
    padded = np.zeros((ng * sg, na * sa))
    padded[:out_dim, :in_dim] = g
    result = np.einsum("xij,xjyk,ykl->xiyl", g_inv, padded.reshape(ng, sg, na, sa), a_inv)
    return result.reshape(ng * sg, na * sa)[:out_dim, :in_dim]


# ------------------------------------------------------------------------------- the network (forward+backward)
def forward_backward(p: dict, ids: np.ndarray, labels: np.ndarray, loss_scale: float, brk: str | None = None):
    """Loss, gradients of ``loss_scale * loss`` and the layers' A/G, as EmbeddingThor / DenseThor record them."""
    table, gamma, beta = p["embedding.table"], p["ln.gamma"], p["ln.beta"]
    w1, b1, w2, b2 = p["fc1.weight"], p["fc1.bias"], p["fc2.weight"], p["fc2.bias"]
    vocab, dim = table.shape
    flat_ids = ids.reshape(-1)                                   # thor_layer.py:638-640
    rows = flat_ids.shape[0]
    counts = np.zeros(vocab)                                     # thor_layer.py:647-649: ReduceSum(OneHot(ids), 0)
    np.add.at(counts, flat_ids, 1.0)
    x = table[flat_ids]                                          # thor_layer.py:650 Gather
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    sigma = np.sqrt(var + LN_EPS)
    xhat = (x - mu) / sigma
    h0 = xhat * gamma + beta                                     # nn.LayerNorm over the last axis
    z1 = h0 @ w1.T + b1                                          # DenseThor: MatMul(transpose_b) + BiasAdd
    h1 = np.tanh(z1)
    logits = h1 @ w2.T + b2
    shifted = logits - logits.max(-1, keepdims=True)
    prob = np.exp(shifted) / np.exp(shifted).sum(-1, keepdims=True)
    onehot = np.eye(logits.shape[1])[labels.reshape(-1)]
    loss = -np.sum(onehot * np.log(prob)) / ids.shape[0]       # per sequence: sum over its tokens, mean over batch
    # backward of the scaled loss
    dlogits = loss_scale * (prob - onehot) / ids.shape[0]
    dh1 = dlogits @ w2
    dz1 = dh1 * (1.0 - h1 ** 2)
    dh0 = dz1 @ w1
    dxhat = dh0 * gamma
    dx = (dxhat - dxhat.mean(-1, keepdims=True) - xhat * (dxhat * xhat).mean(-1, keepdims=True)) / sigma
    d_table = np.zeros_like(table)
    np.add.at(d_table, flat_ids, dx)
    grads = {"embedding.table": d_table, "ln.gamma": (dh0 * xhat).sum(0), "ln.beta": dh0.sum(0),
             "fc1.weight": dz1.T @ h0, "fc1.bias": dz1.sum(0), "fc2.weight": dlogits.T @ h1, "fc2.bias": dlogits.sum(0)}
    g_rows = ids.shape[0] if brk == "g_rows_by_batch" else rows
    stats = {
        # EmbeddingThor: A = counts (vector), G = doutᵀdout / dout.shape[0] (thor_layer.py:630-634)
        "embedding.table": ("embedding", counts, dx.T @ dx / g_rows),
        # DenseThor (GPU): A = xᵀx / (xᵀx).shape[0] = / in_channels (thor_layer.py:182-186); G = doutᵀdout / N (166-170)
        "fc1.weight": ("dense", h0.T @ h0 / h0.shape[1], dz1.T @ dz1 / dz1.shape[0]),
        "fc2.weight": ("dense", h1.T @ h1 / h1.shape[1], dlogits.T @ dlogits / dlogits.shape[0]),
    }
    return loss, grads, stats


# ----------------------------------------------------------------------------------------- ThorGpu, step by step
def layer_type(name: str) -> str:
    """``weight_layertype_idx_map`` (thor.py:440-491): Embedding / FC weights, LayerNorm gamma+beta, Other."""
    if name == "embedding.table":
        return "embedding"
    if name.endswith(".weight"):
        return "fc"
    if name.startswith("ln."):
        return "layernorm"
    return "other"


def inverses(kind: str, a: np.ndarray, g: np.ndarray, lam: float, loss_scale: float, batch_size: int, rows: int,
             brk: str | None):
    """``_get_ainv_ginv_list`` for one layer (thor.py:499-542); conv omitted (no conv in this model)."""
    damping_a = damping_g = lam                                          # 505-506
    feature_map = 1.0                                                    # 507 (conv only: 508-515)
    damping_a = np.sqrt(damping_a)                                       # 518
    damping_g = np.sqrt(damping_g)                                       # 519
    if not brk == "g_no_loss_scale":
        g = g * (1.0 / (loss_scale * loss_scale))                        # 522 (self.loss_scale, 371)
    g = g * float(batch_size * batch_size)                               # 523 (372)
    g = g + damping_g * np.eye(g.shape[0])                               # 524
    if kind == "embedding":                                              # 525
        if brk == "a_damping_lam":
            damping_a = lam
        a_eye = np.ones_like(a)                                          # 526 OnesLike
        if brk == "counts_by_tokens":
            a = a * (1.0 / rows)
        elif brk != "counts_unnormalised":
            a = a * (1.0 / batch_size)                                   # 527
        a = a + damping_a * a_eye                                        # 528
        a = 1.0 / a                                                      # 529 Reciprocal
        if brk == "g_split_blocks":
            blocks = cholesky_trsm(g, SPLIT_DIM)
            n, size = blocks.shape[:2]
            full = np.zeros((n * size, n * size))
            for i, block in enumerate(blocks):
                full[i * size:(i + 1) * size, i * size:(i + 1) * size] = block
            lower_inv = full[:g.shape[0], :g.shape[0]]
        else:
            lower_inv = cholesky_trsm(g, 0)                              # 530 CholeskyTrsm() (split_dim=0)
        if brk == "inverse_product":
            g = lower_inv.T @ lower_inv
        else:
            g = lower_inv @ lower_inv                                    # 531 MatMul(): L⁻¹ @ L⁻¹
    else:
        a = a + damping_a * np.eye(a.shape[0])                           # 533
        a = batch_matmul_ta(cholesky_trsm(a, SPLIT_DIM))                 # 534-535
        g = batch_matmul_ta(cholesky_trsm(g, SPLIT_DIM))                 # 537-538
    return a * feature_map, g * feature_map                              # 539-540


def thor_reference(params: dict, batches: list, lr: np.ndarray, damping: np.ndarray, momentum: float, *,
                   weight_decay: float, loss_scale: float, batch_size: int, frequency: int,
                   decay=lambda name: True, brk: str | None = None) -> list[dict]:
    """Parameters (MindSpore layouts, float64) after each ``ThorGpu`` step; ``brk`` one of ``BREAKS`` or None."""
    if brk is not None and brk not in BREAKS:
        raise ValueError(f"unknown break {brk!r}")
    with threadpool_limits(1):
        return _thor_reference(params, batches, lr, damping, momentum, weight_decay, loss_scale, batch_size,
                               frequency, decay, brk)


def _thor_reference(params, batches, lr, damping, momentum, weight_decay, loss_scale, batch_size, frequency,
                    decay, brk):
    p = {n: np.asarray(v, np.float64) for n, v in params.items()}
    moments = {n: np.zeros_like(v) for n, v in p.items()}                # thor.py:362
    stored_a, stored_g = {}, {}                                          # self.matrix_a / self.matrix_g (459-471)
    trajectory = []
    for cov_step, (ids, labels) in enumerate(batches):
        ids = np.asarray(ids)
        rows = ids.size
        thor_step = cov_step % frequency == 0 or brk == "refresh_every_step"   # model_thor.py:144-166
        _, grads, stats = forward_backward(p, ids, np.asarray(labels), loss_scale, brk)
        grads = {n: g * (1.0 / loss_scale) for n, g in grads.items()}    # 566 scale_grad
        lam = float(damping[cov_step])                                   # 567 Gather(damping, cov_step)
        new_grads = {}
        for name in p:                                                   # 579-626
            g = grads[name]
            kind = layer_type(name)
            if brk == "decay_before" and name == "embedding.table" and weight_decay > 0 and decay(name):
                g = g + weight_decay * p[name]
            if kind == "embedding" and brk == "embedding_first_order":
                kind = "other"
            if kind in ("fc", "embedding"):
                if thor_step:                                            # 570-578: fresh inverses, assigned (590-597)
                    _, a, gm = stats[name]
                    stored_a[name], stored_g[name] = inverses(kind, a, gm, lam, loss_scale, batch_size, rows, brk)
                elif kind == "embedding" and brk == "stale_fresh_counts":
                    _, a, gm = stats[name]
                    stored_a[name] = inverses(kind, a, gm, lam, loss_scale, batch_size, rows, brk)[0]
                a_inv, g_inv = stored_a[name], stored_g[name]            # 613-614 / 618-619 on stale steps
                if kind == "fc":
                    g = update_thor_gradient(g_inv, g.reshape(g.shape[0], -1), a_inv)   # 585-589
                else:
                    g = a_inv[:, None] * g                               # 598-599: ExpandDims(Ainv, 1) * g
                    g = g @ (g_inv.T if brk == "ginv_transposed" else g_inv)   # 600 MatMul(g, Ginv)
            elif kind == "layernorm":                                    # 601-602, _process_layernorm 545-555
                g = (1.0 / (g * g * (1.0 / batch_size) + np.sqrt(lam))) * g
            new_grads[name] = g
        for name in p:
            g = new_grads[name]
            if weight_decay > 0 and decay(name) and not (brk == "decay_before" and name == "embedding.table"):
                g = p[name] * weight_decay + g                           # 630-631 apply_decay (after THOR)
            moments[name] = momentum * moments[name] + g                 # 635 ApplyMomentum (use_nesterov=False)
            p[name] = p[name] - lr[cov_step] * moments[name]
        trajectory.append(dict(p))
    return trajectory
