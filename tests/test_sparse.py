"""Row-sparse gradients (jaxopt_ms.sparse) and the sparse paths of lazy_adam, adam, ftrl and proximal_adagrad.

Parity: MindSpore's sparse paths run on CPU only in GRAPH mode (fixtures from scripts/mindspore_fixtures/sparse.py:
RowTensor fed to the optimizer with ``target='CPU'``, whose FusedSparse kernels deduplicate, and
``nn.EmbeddingLookup(target='CPU', sparse=True)`` networks). The shared blocks on RowSparse leaves (per-entry weight
decay, centralization, which MindSpore cannot run on CPU, loss-scale division) are checked against NumPy
transcriptions of reference §2.4-§2.6 written here.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from parity import assert_trajectory, case_paths, load_case, run_final, run_trajectory

import jaxopt_ms
from jaxopt_ms import sparse
from jaxopt_ms.sparse import RowSparse, coalesce, densify
from jaxopt_ms.transforms import ScaleByAdamState, add_decayed_weights, centralize_gradients, unscale_gradients

EMB = "emb.embedding_table"
V, D = 12, 4

# ----------------------------------------------------------------------------------------------------------------
# the type


def test_pytree_node_with_static_dense_shape():
    rs = RowSparse(jnp.array([1, 3]), jnp.ones((2, 4)), (6, 4))
    leaves, treedef = jax.tree.flatten(rs)
    assert len(leaves) == 2 and jax.tree.unflatten(treedef, leaves).dense_shape == (6, 4)
    paths = [jaxopt_ms.names.path_name(p) for p, _ in jax.tree_util.tree_flatten_with_path({"e": rs})[0]]
    assert paths == ["e.indices", "e.values"]
    out = jax.jit(lambda g: g * 2.0)(rs)
    assert isinstance(out, RowSparse) and out.dense_shape == (6, 4)
    np.testing.assert_array_equal(out.values, 2 * np.ones((2, 4)))
    assert rs.shape == (6, 4) and rs.ndim == 2 and rs.dtype == jnp.float32 and rs.fill_index == 6
    assert jaxopt_ms.param_names({"e": rs, "w": jnp.ones(2)}) == {"e": "e", "w": "w"}


def test_invalid_shapes_raise():
    with pytest.raises(ValueError, match="rank >= 2"):
        RowSparse(jnp.array([0]), jnp.ones((1,)), (4,))
    with pytest.raises(ValueError, match="values"):
        RowSparse(jnp.array([0, 1]), jnp.ones((2, 3)), (4, 2))
    opt, params = jaxopt_ms.lazy_adam(0.1), {"e": jnp.ones((5, 2))}
    with pytest.raises(ValueError, match="gradient of 'e' has shape \\(6, 2\\)"):
        opt.update({"e": RowSparse(jnp.array([1]), jnp.ones((1, 2)), (6, 2))}, opt.init(params), params)


def _np_dense(indices, values, shape):
    out = np.zeros(shape, np.float64)
    for i, v in zip(np.asarray(indices), np.asarray(values, np.float64)):
        if 0 <= i < shape[0]:
            out[i] += v
    return out


def test_coalesce_and_densify_sum_duplicates_and_drop_padding():
    idx = jnp.array([3, 1, 3, 6, -1, 1, 0], jnp.int32)  # 6 = fill index, -1 = padding too
    vals = jnp.asarray(np.random.RandomState(0).randn(7, 2, 3).astype(np.float32))
    rs = RowSparse(idx, vals, (6, 2, 3))
    expected = _np_dense(idx, vals, (6, 2, 3))
    np.testing.assert_allclose(densify(rs), expected, rtol=1e-6)
    c = jax.jit(coalesce)(rs)
    np.testing.assert_array_equal(c.indices, [0, 1, 3, 6, 6, 6, 6])
    np.testing.assert_allclose(c.values[:3], expected[[0, 1, 3]], rtol=1e-6)
    np.testing.assert_array_equal(c.values[3:], 0.0)
    np.testing.assert_allclose(densify(c), expected, rtol=1e-6)
    dense = jnp.ones((6, 2, 3))
    np.testing.assert_allclose(dense + rs, 1 + expected, rtol=1e-6)          # what optax.apply_updates does
    np.testing.assert_allclose(np.ones((6, 2, 3), np.float32) + rs, 1 + expected, rtol=1e-6)
    np.testing.assert_allclose(densify(rs + rs), 2 * expected, rtol=1e-6)
    tree = densify({"a": rs, "b": jnp.ones(3)})
    np.testing.assert_allclose(tree["a"], expected, rtol=1e-6)


# ----------------------------------------------------------------------------------------------------------------
# MindSpore parity


def _factory(config):
    name, kw = config["optimizer"], dict(config["kwargs"])
    if name == "LazyAdam":
        return jaxopt_ms.lazy_adam(**kw)
    if name == "Adam":
        return jaxopt_ms.adam(**kw)
    return {"FTRL": jaxopt_ms.ftrl, "ProximalAdagrad": jaxopt_ms.proximal_adagrad}[name](**kw)


ROWS = [p for p in case_paths("sparse") if "rows_" in p]
LOOKUPS = [p for p in case_paths("sparse") if "lookup_" in p]


@pytest.mark.parametrize("path", ROWS, ids=lambda p: p.rsplit("/", 1)[-1][:-4])
def test_rowtensor_parity(path):
    case = load_case(path)
    opt = _factory(case.config)
    grads = []
    for s, g in enumerate(case.grads):
        g = dict(g)
        g[EMB] = RowSparse(case.extra[f"indices__{s}"], case.extra[f"values__{s}"], (V, D))
        grads.append(g)
    jit = case.name != "rows_adam_use_lazy_dup"  # one case eagerly (slow), the rest under jit
    assert_trajectory(run_trajectory(opt, case.params0, grads, jit=jit), case.traj, rtol=2e-5, atol=2e-6,
                      label=case.name)


def _lookup_loss(params, ids, y):
    rows = sparse.embedding_lookup(params[EMB], ids)
    return jnp.sum((jnp.sum(rows * params["head"], -1) - y) ** 2)


@pytest.mark.parametrize("path", LOOKUPS, ids=lambda p: p.rsplit("/", 1)[-1][:-4])
def test_embedding_lookup_parity(path):
    case = load_case(path)
    opt = _factory(case.config)
    params = {k: jnp.asarray(v) for k, v in case.params0.items()}
    state = opt.init(params)

    @jax.jit
    def step(params, state, ids, y):
        _, grads = sparse.value_and_sparse_grad(_lookup_loss)(params, ids, y)
        assert isinstance(grads[EMB], RowSparse)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    got = []
    for s in range(len(case.traj)):
        params, state = step(params, state, case.extra[f"ids__{s}"], case.extra[f"y__{s}"])
        got.append(jax.tree.map(np.asarray, params))
    assert_trajectory(got, case.traj, rtol=2e-5, atol=2e-6, label=case.name)


# ----------------------------------------------------------------------------------------------------------------
# semantics where they coincide with the dense path


def _random_sparse(rng, steps, n, rows=V, dim=D, dup=True):
    out = []
    for _ in range(steps):
        idx = rng.randint(0, rows, size=n) if dup else rng.choice(rows, size=n, replace=False)
        out.append(RowSparse(jnp.asarray(idx, jnp.int32), jnp.asarray(rng.randn(n, dim).astype(np.float32)),
                             (rows, dim)))
    return out


@pytest.mark.parametrize("nesterov", [False, True])
def test_sparse_adam_is_dense_adam_on_densified_grads(nesterov):
    rng = np.random.RandomState(0)
    params = {"emb": jnp.asarray(rng.randn(V, D).astype(np.float32)), "w": jnp.ones((3, 2))}
    seq = [{"emb": g, "w": jnp.full((3, 2), 0.5)} for g in _random_sparse(rng, 6, 5)]
    opt = jaxopt_ms.adam(0.05, beta2=0.9, eps=1e-3, use_nesterov=nesterov, weight_decay=0.0, loss_scale=2.0)
    got, state = run_final(opt, params, seq)
    want, want_state = run_final(opt, params, [densify(g) for g in seq])
    np.testing.assert_allclose(got["emb"], want["emb"], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(got["w"], want["w"], rtol=1e-6)
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(want_state)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_lazy_adam_with_every_row_touched_is_adam():
    rng = np.random.RandomState(1)
    params = {"emb": jnp.asarray(rng.randn(V, D).astype(np.float32))}
    seq = []
    for _ in range(5):
        perm = np.concatenate([rng.permutation(V), rng.randint(0, V, 3)])  # every row, some twice
        seq.append({"emb": RowSparse(jnp.asarray(perm, jnp.int32),
                                     jnp.asarray(rng.randn(len(perm), D).astype(np.float32)), (V, D))})
    got, _ = run_final(jaxopt_ms.lazy_adam(0.05, beta2=0.9, use_nesterov=True), params, seq)
    want, _ = run_final(jaxopt_ms.adam(0.05, beta2=0.9, use_nesterov=True), params, [densify(g) for g in seq])
    np.testing.assert_allclose(got["emb"], want["emb"], rtol=1e-6, atol=1e-7)


def _adam_state(state):
    found = [x for x in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, ScaleByAdamState))
             if isinstance(x, ScaleByAdamState)]
    assert len(found) == 1
    return found[0]


def _np_lazy_adam(p, seq, lr, b1, b2, eps):
    """NumPy LazyAdam (reference §3.5): per touched row after dedup, global f32 beta powers every call."""
    p = p.astype(np.float32).copy()
    m, v = np.zeros_like(p), np.zeros_like(p)
    b1p = b2p = np.float32(1)
    for g in seq:
        b1p, b2p = np.float32(b1p * np.float32(b1)), np.float32(b2p * np.float32(b2))
        dense = _np_dense(g.indices, g.values, p.shape).astype(np.float32)
        rows = sorted({int(i) for i in np.asarray(g.indices) if 0 <= i < p.shape[0]})
        lr_t = lr * np.sqrt(1 - b2p) / (1 - b1p)
        for r in rows:
            m[r] = b1 * m[r] + (1 - b1) * dense[r]
            v[r] = b2 * v[r] + (1 - b2) * dense[r] ** 2
            p[r] -= lr_t * m[r] / (np.sqrt(v[r]) + eps)
    return p, m, v


def test_lazy_adam_touches_only_rows_and_pads_under_jit():
    rng = np.random.RandomState(2)
    p0 = rng.randn(V, D).astype(np.float32)
    seq = _random_sparse(rng, 6, 4)
    # the same gradients padded with the fill index and a negative index (values there are garbage)
    padded = [RowSparse(jnp.concatenate([g.indices, jnp.array([V, V, -1], jnp.int32)]),
                        jnp.concatenate([g.values, jnp.full((3, D), 1e3, jnp.float32)]), (V, D)) for g in seq]
    opt = jaxopt_ms.lazy_adam(0.05, beta2=0.9, eps=1e-3)
    got, state = run_final(opt, {"emb": jnp.asarray(p0)}, [{"emb": g} for g in padded])
    want_p, want_m, want_v = _np_lazy_adam(p0, seq, 0.05, 0.9, 0.9, 1e-3)
    np.testing.assert_allclose(got["emb"], want_p, rtol=1e-5, atol=1e-6)
    adam_state = _adam_state(state)
    np.testing.assert_allclose(adam_state.moment1["emb"], want_m, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(adam_state.moment2["emb"], want_v, rtol=1e-5, atol=1e-7)
    untouched = sorted(set(range(V)) - {int(i) for g in seq for i in np.asarray(g.indices)})
    assert untouched, "the test needs untouched rows"
    np.testing.assert_array_equal(np.asarray(got["emb"])[untouched], p0[untouched])
    np.testing.assert_array_equal(np.asarray(adam_state.moment1["emb"])[untouched], 0.0)
    np.testing.assert_allclose(adam_state.beta1_power, np.float32(0.9) ** 6, rtol=1e-6)


def test_lazy_adam_update_is_row_sparse_and_beta_powers_advance_without_rows():
    opt = jaxopt_ms.lazy_adam(0.1)
    params = {"emb": jnp.ones((V, D))}
    empty = RowSparse(jnp.full((2,), V, jnp.int32), jnp.ones((2, D)), (V, D))  # padding only
    updates, state = jax.jit(opt.update)({"emb": empty}, opt.init(params), params)
    assert isinstance(updates["emb"], RowSparse)
    np.testing.assert_array_equal(optax.apply_updates(params, updates)["emb"], 1.0)
    adam_state = _adam_state(state)
    np.testing.assert_allclose(adam_state.beta2_power, np.float32(0.999), rtol=1e-7)


# ----------------------------------------------------------------------------------------------------------------
# shared blocks on RowSparse leaves (NumPy transcriptions of reference §2.4-§2.6)


def test_weight_decay_per_entry_before_dedup():
    rng = np.random.RandomState(3)
    w = rng.randn(V, D).astype(np.float32)
    idx = np.array([3, 1, 3, V], np.int32)  # row 3 twice, one padding entry
    vals = rng.randn(4, D).astype(np.float32)
    params = {"emb": jnp.asarray(w), "bn.gamma": jnp.ones(D)}
    grads = {"emb": RowSparse(idx, vals, (V, D)), "bn.gamma": jnp.ones(D)}
    block = add_decayed_weights(0.1, loss_scale=4.0)
    out, _ = jax.jit(block.update)(grads, block.init(params), params)
    wd_s = np.float32(0.1 * 4.0)
    expected = vals.copy()
    expected[:3] += w[idx[:3]] * wd_s
    np.testing.assert_allclose(out["emb"].values[:3], expected[:3], rtol=1e-6)
    dense = _np_dense(idx, expected, (V, D))
    np.testing.assert_allclose(densify(out["emb"]), dense, rtol=1e-6)  # row 3 decayed twice, row 0 not at all
    np.testing.assert_array_equal(out["bn.gamma"], 1.0)                 # name filter still applies


def test_centralization_and_loss_scale_on_values():
    rng = np.random.RandomState(4)
    shape = (8, 16)  # shape[1] % 16 == 0: qualifies
    idx = np.array([2, 5, 2], np.int32)
    vals = rng.randn(3, 16).astype(np.float32)
    grads = {"t": RowSparse(idx, vals, shape), "small": RowSparse(idx, vals[:, :4], (8, 4))}
    chain = optax.chain(centralize_gradients(), unscale_gradients(4.0))
    out, _ = jax.jit(chain.update)(grads, chain.init(None))
    recip = np.float32(1 / 4.0)
    np.testing.assert_allclose(out["t"].values, (vals - vals.mean(1, keepdims=True)) * recip, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(out["small"].values, vals[:, :4] * recip, rtol=1e-6)  # shape[1] = 4: untouched
    assert out["t"].dense_shape == shape


def test_param_groups_label_a_row_sparse_as_one_leaf():
    rng = np.random.RandomState(5)
    params = {"emb": jnp.asarray(rng.randn(V, D).astype(np.float32)), "fc": jnp.ones((3, 16))}
    opt = jaxopt_ms.lazy_adam(0.1, param_groups=[
        {"params": lambda name, leaf: name == "emb" and leaf.shape == (V, D), "lr": 0.01, "weight_decay": 0.1},
        {"params": ["fc"]},
    ])
    seq = [{"emb": g, "fc": jnp.full((3, 16), 0.1)} for g in _random_sparse(rng, 3, 4)]
    got, _ = run_final(opt, params, seq)
    single = jaxopt_ms.lazy_adam(0.01, weight_decay=0.1, decay_filter=jaxopt_ms.decay_all)
    want, _ = run_final(single, {"emb": params["emb"]}, [{"emb": g["emb"]} for g in seq])
    np.testing.assert_allclose(got["emb"], want["emb"], rtol=1e-6)


# ----------------------------------------------------------------------------------------------------------------
# optimizers without a sparse path


@pytest.mark.parametrize("name, make", [
    ("SGD", lambda: jaxopt_ms.sgd(0.1)),
    ("Momentum", lambda: jaxopt_ms.momentum(0.1, 0.9)),
    ("Adagrad", lambda: jaxopt_ms.adagrad()),
    ("RMSProp", lambda: jaxopt_ms.rmsprop()),
    ("AdamWeightDecay", lambda: jaxopt_ms.adam_weight_decay(0.1)),
    ("Lamb", lambda: jaxopt_ms.lamb(0.1)),
    ("AdaFactor", lambda: jaxopt_ms.adafactor()),
    ("LARS", lambda: jaxopt_ms.lars(jaxopt_ms.momentum(0.1, 0.9))),
    ("Adadelta", lambda: jaxopt_ms.adadelta()),
    ("AdaMax", lambda: jaxopt_ms.adamax()),
    ("ASGD", lambda: jaxopt_ms.asgd()),
    ("Rprop", lambda: jaxopt_ms.rprop()),
    ("Adam", lambda: jaxopt_ms.adam(0.1, use_amsgrad=True)),
    ("SGD", lambda: jaxopt_ms.sgd(0.1, param_groups=[{"params": ".*", "lr": 0.1}])),
])
def test_optimizers_without_sparse_path_raise_type_error(name, make):
    opt = make()
    params = {"emb": jnp.ones((V, D)), "w": jnp.ones(3)}
    grads = {"emb": RowSparse(jnp.array([1]), jnp.ones((1, D)), (V, D)), "w": jnp.ones(3)}
    with pytest.raises(TypeError, match=f"For '{name}'.*(the gradient of 'emb' is a RowSparse|amsgrad)"):
        opt.update(grads, opt.init(params), params)
    opt.update(densify(grads), opt.init(params), params)  # the documented way out


# ----------------------------------------------------------------------------------------------------------------
# the embedding-lookup helper


def test_value_and_sparse_grad_matches_dense_grad_without_forming_it():
    rng = np.random.RandomState(6)
    rows = 1000
    params = {"emb": jnp.asarray(rng.randn(rows, D).astype(np.float32)), "head": jnp.ones(D),
              "tied": {"bias": jnp.zeros(())}}
    ids = jnp.asarray(np.array([[3, 7, 3], [rows, 9, 0]], np.int32))  # a duplicate and a padding id

    def loss(p, ids):
        a = sparse.embedding_lookup(p["emb"], ids)
        b = sparse.embedding_lookup(p["emb"], ids[:, :1])      # a second lookup of the same table
        return jnp.sum(jnp.tanh(a @ p["head"])) + jnp.sum(b ** 2) + p["tied"]["bias"], a.shape

    (value, shape), grads = jax.jit(sparse.value_and_sparse_grad(loss, has_aux=True))(params, ids)
    assert shape == (2, 3, D)
    dense_value, dense_grads = jax.value_and_grad(lambda p: loss(p, ids)[0])(params)
    np.testing.assert_allclose(value, dense_value, rtol=1e-6)
    assert isinstance(grads["emb"], RowSparse) and grads["emb"].indices.shape == (8,)
    np.testing.assert_allclose(densify(grads["emb"]), dense_grads["emb"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grads["head"], dense_grads["head"], rtol=1e-5)
    jaxpr = jax.make_jaxpr(sparse.value_and_sparse_grad(loss, has_aux=True))(params, ids)
    table_sized = [e for e in jaxpr.eqns if any(getattr(v.aval, "shape", None) == (rows, D) for v in e.outvars)]
    assert not table_sized, f"a table-sized array is formed: {[e.primitive for e in table_sized]}"


def test_embedding_lookup_outside_the_helper_is_a_plain_gather():
    table = jnp.arange(12.0).reshape(6, 2)
    out = sparse.embedding_lookup(table, jnp.array([[5, 6], [-1, 0]]))
    np.testing.assert_array_equal(out, [[[10, 11], [0, 0]], [[0, 0], [0, 1]]])
    g = jax.grad(lambda t: sparse.embedding_lookup(t, jnp.array([1, 1])).sum())(table)
    np.testing.assert_array_equal(g[1], [2, 2])


@pytest.mark.parametrize("name", ["FTRL", "ProximalAdagrad"])
def test_lazy_rule_with_every_row_touched_is_the_dense_rule(name):
    rng = np.random.RandomState(7)
    params = {"emb": jnp.asarray(rng.randn(V, D).astype(np.float32))}
    seq = []
    for _ in range(4):
        perm = np.concatenate([rng.permutation(V), rng.randint(0, V, 3)])
        seq.append({"emb": RowSparse(jnp.asarray(perm, jnp.int32),
                                     jnp.asarray(rng.randn(len(perm), D).astype(np.float32)), (V, D))})
    opt = (jaxopt_ms.ftrl(learning_rate=0.1, l1=0.05, l2=0.02, lr_power=-0.6) if name == "FTRL"
           else jaxopt_ms.proximal_adagrad(learning_rate=0.1, l1=0.05, l2=0.02))
    got, state = run_final(opt, params, seq)
    want, want_state = run_final(opt, params, [densify(g) for g in seq])
    np.testing.assert_allclose(got["emb"], want["emb"], rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(want_state)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("make", [lambda: jaxopt_ms.lazy_adam(0.1, weight_decay=0.1, loss_scale=2.0),
                                  lambda: jaxopt_ms.ftrl(learning_rate=0.1, l1=0.1, weight_decay=0.1),
                                  lambda: jaxopt_ms.proximal_adagrad(learning_rate=0.1, l1=0.1, loss_scale=2.0)],
                         ids=["lazy_adam", "ftrl", "proximal_adagrad"])
def test_lazy_step_touches_the_table_only_through_row_scatters(make):
    """Cost grows with the touched rows: in the traced step, every table-sized result is a scatter into the
    (donated) table or state, never an element-wise pass over the table."""
    rows = 100_000
    opt = make()
    params = {"emb": jnp.zeros((rows, D))}
    grads = {"emb": RowSparse(jnp.array([5, 9, 5], jnp.int32), jnp.ones((3, D)), (rows, D))}

    def step(params, state, grads):
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    jaxpr = jax.make_jaxpr(step)(params, opt.init(params), grads)

    table_sized = {e.primitive.name for e in jaxpr.jaxpr.eqns
                   if any(getattr(v.aval, "shape", None) == (rows, D) for v in e.outvars)}
    assert table_sized <= {"scatter", "scatter-add"}, table_sized  # dense Adam here: mul, add, sqrt, div, ...
