"""Golden trajectories of MindSpore's sparse (RowTensor) optimizer paths, family ``sparse`` (reference §2.8).

RowTensor gradients only reach an optimizer in GRAPH mode, so this script runs in GRAPH mode whatever MSMODE says.
Two kinds of case:

* ``rows_*``: a graph cell builds ``RowTensorInner(indices, values, dense_shape)`` from the fed arrays and calls the
  optimizer with it beside dense gradients. Extras ``x__indices__<step>`` / ``x__values__<step>`` hold the sparse
  gradient of ``emb.embedding_table`` (``g__<step>__emb.embedding_table`` is its densified sum, for reference).
  Duplicated indices use ``opt.target = 'CPU'`` (the ``FusedSparse*`` kernels deduplicate, which is the documented
  semantics); the Adam nesterov case has no duplicates and uses the default (python) path, because
  ``FusedSparseAdam`` with nesterov reads an uninitialised workspace (reference §2.8).
* ``lookup_*``: ``nn.EmbeddingLookup(target='CPU', sparse=True)`` and a dense ``head`` in a ``TrainOneStepCell``,
  loss ``sum((emb(ids) @ head - y)²)``; extras ``x__ids__<step>``, ``x__y__<step>``; no ``g__`` arrays.

Run from the repository root:
    PYTHONPATH=$NP1:scripts/mindspore_fixtures $MS_PY scripts/mindspore_fixtures/sparse.py
"""

from __future__ import annotations

import os

os.environ["MSMODE"] = "GRAPH"

import numpy as np  # noqa: E402
from common import Parameter, Tensor, save_case  # noqa: E402
from mindspore import nn  # noqa: E402
from mindspore.common.sparse_tensor import RowTensorInner  # noqa: E402

FAMILY = "sparse"
V, D = 12, 4
STEPS = 6
EMB = "emb.embedding_table"


class SparseStep(nn.Cell):
    def __init__(self, opt, dense_shape):
        super().__init__()
        self.opt = opt
        self.dense_shape = dense_shape

    def construct(self, indices, values, *dense):
        return self.opt((RowTensorInner(indices, values, self.dense_shape),) + dense)


def row_grads(rng, steps, n, dup):
    out = []
    for _ in range(steps):
        if dup:
            idx = rng.randint(0, V, size=n).astype(np.int32)
            idx[-1] = idx[0]  # at least one duplicate per step
        else:
            idx = rng.choice(V, size=n, replace=False).astype(np.int32)
        out.append((idx, rng.randn(n, D).astype(np.float32)))
    return out


def rows_case(case, ctor, kwargs, target, dense_shapes, dup=True, n=5, seed=0):
    rng = np.random.RandomState(seed)
    p0 = {EMB: rng.randn(V, D).astype(np.float32)}
    p0.update({k: rng.randn(*s).astype(np.float32) for k, s in dense_shapes.items()})
    params = [Parameter(Tensor(v.copy()), name=k) for k, v in p0.items()]
    opt = ctor(params, **kwargs)
    if target:
        opt.target = target
    step = SparseStep(opt, (V, D))
    sparse = row_grads(rng, STEPS, n, dup)
    grads, traj, extra = [], [], {}
    for s, (idx, vals) in enumerate(sparse):
        dense = {k: rng.randn(*p0[k].shape).astype(np.float32) for k in dense_shapes}
        step(Tensor(idx), Tensor(vals), *(Tensor(dense[k]) for k in dense_shapes))
        summed = np.zeros((V, D), np.float32)
        np.add.at(summed, idx, vals)
        grads.append({EMB: summed, **dense})
        traj.append({k: p.asnumpy().copy() for k, p in zip(p0, params)})  # graph cells prefix names
        extra[f"indices__{s}"] = idx
        extra[f"values__{s}"] = vals
    config = {"optimizer": ctor.__name__, "kwargs": kwargs, "target": target or "default", "sparse": EMB,
              "notes": "GRAPH mode, RowTensorInner fed to the optimizer; duplicates " + ("yes" if dup else "no")}
    print(save_case(FAMILY, case, config, p0, grads, traj, extra))


class LookupNet(nn.Cell):
    def __init__(self, table, head):
        super().__init__()
        self.emb = nn.EmbeddingLookup(V, D, target="CPU", sparse=True, param_init=Tensor(table))
        self.head = Parameter(Tensor(head), name="head")

    def construct(self, ids, y):
        pred = (self.emb(ids) * self.head).sum(-1)
        return ((pred - y) ** 2).sum()


def lookup_case(case, ctor, kwargs, target, seed=0, batch=8):
    rng = np.random.RandomState(seed)
    p0 = {EMB: rng.randn(V, D).astype(np.float32), "head": rng.randn(D).astype(np.float32)}
    net = LookupNet(p0[EMB].copy(), p0["head"].copy())
    opt = ctor(net.trainable_params(), **kwargs)
    if target:
        opt.target = target
    train = nn.TrainOneStepCell(net, opt)
    traj, extra = [], {}
    for s in range(STEPS):
        ids = rng.randint(0, V, size=batch).astype(np.int32)
        ids[-1] = ids[0]
        y = rng.randn(batch).astype(np.float32)
        train(Tensor(ids), Tensor(y))
        traj.append({EMB: net.emb.embedding_table.asnumpy().copy(), "head": net.head.asnumpy().copy()})
        extra[f"ids__{s}"] = ids
        extra[f"y__{s}"] = y
    config = {"optimizer": ctor.__name__, "kwargs": kwargs, "target": target or "default", "sparse": EMB,
              "notes": "GRAPH mode, nn.EmbeddingLookup(target='CPU', sparse=True) + dense head, TrainOneStepCell"}
    print(save_case(FAMILY, case, config, p0, [{} for _ in range(STEPS)], traj, extra))


def main():
    mixed = {"fc.weight": (3, 16), "bn1.gamma": (4,)}
    adam_kw = dict(learning_rate=0.05, beta1=0.8, beta2=0.9, eps=1e-3)
    rows_case("rows_lazy_adam_dup", nn.LazyAdam, adam_kw, "CPU", mixed)
    rows_case("rows_lazy_adam_wd_ls_nesterov", nn.LazyAdam,
              dict(adam_kw, weight_decay=0.1, loss_scale=4.0, use_nesterov=True), "CPU", mixed, seed=1)
    rows_case("rows_adam_dup_wd_ls", nn.Adam, dict(adam_kw, weight_decay=0.1, loss_scale=4.0), "CPU", mixed,
              seed=2)
    rows_case("rows_adam_nesterov_nodup", nn.Adam, dict(adam_kw, use_nesterov=True), None, mixed, dup=False,
              seed=3)
    rows_case("rows_adam_use_lazy_dup", nn.Adam, dict(adam_kw, use_lazy=True, weight_decay=0.05), "CPU", mixed,
              seed=4)
    rows_case("rows_proximal_adagrad_dup", nn.ProximalAdagrad,
              dict(learning_rate=0.1, l1=0.05, l2=0.02, weight_decay=0.1, loss_scale=2.0), "CPU", mixed, seed=5)
    # FTRL's dense CPU kernel has the l1 sign bug (reference §3.8): the l1 case has only the sparse leaf
    rows_case("rows_ftrl_l1_dup", nn.FTRL, dict(learning_rate=0.1, l1=0.05, l2=0.02, lr_power=-0.6), "CPU", {},
              seed=6)
    rows_case("rows_ftrl_wd_ls_dup", nn.FTRL, dict(learning_rate=0.1, l2=0.02, weight_decay=0.1, loss_scale=2.0),
              "CPU", mixed, seed=7)
    lookup_case("lookup_lazy_adam", nn.LazyAdam, dict(adam_kw), "CPU", seed=8)
    lookup_case("lookup_adam", nn.Adam, dict(adam_kw), "CPU", seed=9)
    lookup_case("lookup_proximal_adagrad", nn.ProximalAdagrad, dict(learning_rate=0.1, l1=0.01), "CPU", seed=10)
    # l1 = 0: the dense head would hit the CPU kernel's l1 sign bug
    lookup_case("lookup_ftrl", nn.FTRL, dict(learning_rate=0.1, l2=0.01, lr_power=-0.7), "CPU", seed=11)


if __name__ == "__main__":
    main()
