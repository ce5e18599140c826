"""The fused flat-buffer path equals the per-leaf path, bit for bit, for every optimizer (tests/optimizer_zoo.py).

The reference here is the per-leaf path itself (whose MindSpore parity is tested in each optimizer's module):
the fused path runs the same blocks and the same per-array formulas on flat buffers, so every step must give
the same values, under jax.jit, with float32 and bfloat16 leaves, parameter groups, weight-decay filters, gradient
centralization and loss scales. Bits agree almost everywhere; but XLA may contract a multiply-add into an FMA in
one program and not in another (the per-leaf path run eagerly differs from the same path under jit by as much),
so float32 leaves may differ by ``MAX_ULPS`` units in the last place of the leaf's largest magnitude; bfloat16 ones
must be equal.
"""

from __future__ import annotations

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from optimizer_zoo import OPTIMIZERS

import jaxopt_ms
from jaxopt_ms import fused

STEPS = 6
MAX_ULPS = 2


def make_params(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)

    def arr(shape, dtype=jnp.float32):
        return jnp.asarray(rng.normal(size=shape), dtype)

    return {
        "conv1": {"weight": arr((8, 16, 3, 3)), "bias": arr((8,))},   # 4-D, shape[1] % 16 == 0: centralized
        "bn1": {"gamma": arr((8,)), "beta": arr((8,))},               # MindSpore's filter skips these
        "fc": {"weight": arr((10, 32), jnp.bfloat16), "bias": arr((10,), jnp.bfloat16)},
        "emb": arr((5, 7)),                                           # rank 2 but not centralized
        "scale": arr(()),
    }


def grad_sequence(params: dict, steps: int = STEPS, seed: int = 1) -> list:
    rng = np.random.default_rng(seed)
    return [jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape) * 3.0, p.dtype), params)
            for _ in range(steps)]


def per_leaf_trajectory(opt, params, grads):
    @jax.jit
    def step(p, s, g):
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s

    state, out = opt.init(params), []
    for g in grads:
        params, state = step(params, state, g)
        out.append(params)
    return out, state


def fused_trajectory(fopt, params, grads):
    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def step(flat, s, g):
        u, s = fopt.update(fused.flatten(g, fopt.partition), s, flat)
        flat = optax.apply_updates(flat, u)
        return flat, s, fused.unflatten(flat)

    flat = jax.jit(fopt.flatten)(params)
    state, out = fopt.init(flat), []
    for g in grads:
        flat, state, tree = step(flat, state, g)
        out.append(tree)
    return out, state


def assert_same_bits(fused_traj, leaf_traj, max_ulps: float = MAX_ULPS):
    for k, (a, b) in enumerate(zip(fused_traj, leaf_traj)):
        for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b)):
            assert x.dtype == y.dtype and x.shape == y.shape, (k, path)
            x32, y32 = np.asarray(x, np.float32), np.asarray(y, np.float32)
            where = f"step {k}, leaf {jax.tree_util.keystr(path)}"
            if x.dtype != jnp.float32:
                np.testing.assert_array_equal(x32, y32, err_msg=where)
                continue
            # ulps of the leaf's largest magnitude: a last-bit difference in an intermediate of p + u shows
            # as many ulps of a result that cancels to near zero
            ulps = np.max(np.abs(x32 - y32), initial=0.0) / np.spacing(np.max(np.abs(y32), initial=1.0))
            assert ulps <= max_ulps, f"{where}: {ulps} ulps apart"


# Settings the zoo does not cover: loss scales, nesterov, amsgrad, a per-step learning rate.
MORE = [
    ("sgd_plain", jaxopt_ms.sgd, dict(learning_rate=0.1)),
    ("sgd_momentum_ls", jaxopt_ms.sgd,
     dict(learning_rate=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01, loss_scale=4.0)),
    ("sgd_nesterov", jaxopt_ms.sgd, dict(learning_rate=0.05, momentum=0.8, nesterov=True, weight_decay=0.02)),
    ("momentum_ls", jaxopt_ms.momentum, dict(learning_rate=0.1, momentum=0.9, weight_decay=0.01, loss_scale=8.0)),
    ("momentum_nesterov", jaxopt_ms.momentum, dict(learning_rate=0.1, momentum=0.9, use_nesterov=True)),
    ("adam_nesterov_wd_ls", jaxopt_ms.adam,
     dict(learning_rate=0.01, use_nesterov=True, weight_decay=0.05, loss_scale=16.0)),
    ("adam_amsgrad", jaxopt_ms.adam, dict(learning_rate=[0.01, 0.02, 0.005], beta2=0.5, use_amsgrad=True)),
    ("lazy_adam_ls", jaxopt_ms.lazy_adam, dict(learning_rate=0.01, weight_decay=0.01, loss_scale=2.0)),
    ("adafactor_compression_no_scale", jaxopt_ms.adafactor,
     dict(learning_rate=0.05, relative_step=False, scale_parameter=False, compression=True, clip_threshold=0.5)),
]
CASES = list(OPTIMIZERS) + MORE


@pytest.mark.parametrize("name,factory,kwargs", CASES, ids=[o[0] for o in CASES])
def test_fused_equals_per_leaf(name, factory, kwargs):
    params, grads = make_params(), grad_sequence(make_params())
    opt = factory(**kwargs)
    fused_traj, _ = fused_trajectory(fused.fuse(opt), params, grads)
    leaf_traj, _ = per_leaf_trajectory(opt, params, grads)
    assert_same_bits(fused_traj, leaf_traj)


GROUP_FACTORIES = [
    ("sgd", functools.partial(jaxopt_ms.sgd, momentum=0.9, loss_scale=4.0)),
    ("momentum", functools.partial(jaxopt_ms.momentum, momentum=0.9)),
    ("adam", functools.partial(jaxopt_ms.adam, use_amsgrad=True, loss_scale=8.0)),
    ("lazy_adam", jaxopt_ms.lazy_adam),
    ("adam_weight_decay", jaxopt_ms.adam_weight_decay),
]


@pytest.mark.parametrize("name,factory", GROUP_FACTORIES, ids=[g[0] for g in GROUP_FACTORIES])
@pytest.mark.filterwarnings("ignore:AdamWeightDecay ignores")
def test_fused_groups_equal_per_leaf(name, factory):
    groups = [
        {"params": r"^conv1\.", "weight_decay": 0.01, "grad_centralization": True, "lr": [0.1, 0.05, 0.02]},
        {"params": lambda n, leaf: n.startswith(("fc.", "bn1.")), "lr": 0.01},
        {"params": ["emb"], "weight_decay": 0.1},
        {"order_params": None},
    ]  # 'scale' is in no group: it must not move
    opt = factory(learning_rate=0.03, weight_decay=0.0, param_groups=groups)
    fopt = fused.fuse(opt)
    params, grads = make_params(), grad_sequence(make_params())
    fused_traj, fstate = fused_trajectory(fopt, params, grads)
    leaf_traj, lstate = per_leaf_trajectory(opt, params, grads)
    assert_same_bits(fused_traj, leaf_traj)
    np.testing.assert_array_equal(fused_traj[-1]["scale"], params["scale"])
    np.testing.assert_array_equal(np.array(jaxopt_ms.current_lr(fstate)), np.array(jaxopt_ms.current_lr(lstate)))


def test_decay_filter_splits_buffers_and_is_honoured():
    opt = jaxopt_ms.momentum(0.1, 0.9, weight_decay=0.5, decay_filter=lambda n, leaf: n.endswith("weight"))
    fopt = fused.fuse(opt)
    flat = fopt.flatten(make_params())
    # float32 decayed / not decayed, bfloat16 decayed / not decayed
    assert len(flat.layout.buffers) == 4
    params, grads = make_params(), grad_sequence(make_params())
    assert_same_bits(fused_trajectory(fopt, params, grads)[0], per_leaf_trajectory(opt, params, grads)[0])


def test_view_gradient_equals_pytree_gradient_and_is_one_concatenate():
    params = make_params()
    x = jnp.asarray(np.random.default_rng(2).normal(size=(4, 32)), jnp.float32)

    def loss(p):
        h = jnp.tanh(x @ p["fc"]["weight"].astype(jnp.float32).T + p["fc"]["bias"].astype(jnp.float32))
        conv = jnp.sum(p["conv1"]["weight"] ** 2) + jnp.sum(p["conv1"]["bias"])
        return jnp.sum(h * h) + conv * p["scale"] + jnp.sum(p["emb"] ** 3) + jnp.sum(p["bn1"]["gamma"])

    flat = fused.flatten(params)
    flat_grad = jax.jit(jax.grad(lambda f: loss(fused.view(f))))(flat)
    tree_grad = jax.jit(jax.grad(loss))(params)
    assert isinstance(flat_grad, fused.FlatParams) and flat_grad.layout == flat.layout
    # d/d(scale) is a sum over 1152 elements that XLA may fuse (and so associate) differently in the two programs
    assert_same_bits([fused.unflatten(flat_grad)], [tree_grad], max_ulps=16)
    jaxpr = str(jax.make_jaxpr(jax.grad(lambda f: loss(fused.view(f))))(flat))
    assert " pad[" not in jaxpr and "dynamic_update_slice" not in jaxpr
    assert jaxpr.count("concatenate") == len(flat.layout.buffers)


def test_training_step_pattern_matches_per_leaf_training():
    """The documented pattern: params held flat, loss(view(flat)), grads arrive flat, donated buffers."""
    params = make_params()
    x = jnp.asarray(np.random.default_rng(3).normal(size=(6, 32)), jnp.float32)

    def loss_fn(p, x):
        h = x @ p["fc"]["weight"].astype(jnp.float32).T + p["fc"]["bias"].astype(jnp.float32)
        return jnp.mean(jnp.tanh(h) ** 2) + jnp.mean(p["conv1"]["weight"] ** 2) * p["scale"] ** 2

    opt = jaxopt_ms.adam(0.01, weight_decay=1e-3)
    fopt = fused.fuse(opt)

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def fused_step(flat, state, x):
        loss, grads = jax.value_and_grad(lambda f: loss_fn(fused.view(f), x))(flat)
        updates, state = fopt.update(grads, state, flat)
        return optax.apply_updates(flat, updates), state, loss

    @jax.jit
    def tree_step(p, state, x):
        loss, grads = jax.value_and_grad(loss_fn)(p, x)
        updates, state = opt.update(grads, state, p)
        return optax.apply_updates(p, updates), state, loss

    flat = fopt.flatten(params)
    fstate, tstate = fopt.init(flat), opt.init(params)
    for _ in range(STEPS):
        flat, fstate, floss = fused_step(flat, fstate, x)
        params, tstate, tloss = tree_step(params, tstate, x)
        np.testing.assert_allclose(floss, tloss, rtol=1e-6)
    # the losses are sums that XLA associates differently in the two programs; their gradients follow
    for a, b in zip(jax.tree.leaves(fused.unflatten(flat)), jax.tree.leaves(params)):
        np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(b, np.float32), rtol=1e-5, atol=1e-6)


def test_set_lr_and_current_lr_on_fused_state():
    fopt = fused.fuse(jaxopt_ms.sgd(0.1, momentum=0.9))
    flat = fopt.flatten(make_params())
    state = jaxopt_ms.set_lr(fopt.init(flat), 0.5)
    assert float(jaxopt_ms.current_lr(state)) == 0.5


def test_flatten_unflatten_roundtrip_and_layout():
    params = make_params()
    flat = fused.flatten(params)
    assert [b.dtype for b in flat.buffers] == [jnp.float32, jnp.bfloat16]
    for b, spec in enumerate(flat.layout.buffers):  # leaves aligned to whole rows, zeros between
        slots = flat.layout.buffer_leaves(b)
        used = sum(s.size for s in slots)
        assert spec.size % spec.row == 0 and all(s.offset % spec.row == 0 for s in slots)
        assert used <= spec.size <= used + used // 16 and flat.buffers[b].size == spec.size
        padding = np.ones(spec.size, bool)
        for s in slots:
            padding[s.offset:s.offset + s.size] = False
        np.testing.assert_array_equal(np.asarray(flat.buffers[b], np.float32)[padding], 0.0)
    assert max(spec.row for spec in flat.layout.buffers) > 1  # make_params has leaves to align
    assert_same_bits([fused.unflatten(flat)], [params])
    assert_same_bits([jax.jit(fused.view)(flat)], [params])
    assert jaxopt_ms.param_names(flat) is not None and "flat0" in repr(flat.layout)


def test_map_leaves_and_leaf_sums_see_leaves():
    params = make_params()
    flat = fused.flatten(params)
    norm_scaled = lambda x: x / jnp.sqrt(jnp.sum(x.astype(jnp.float32) ** 2)).astype(x.dtype)
    assert_same_bits([fused.unflatten(fused.map_leaves(norm_scaled, flat))], [jax.tree.map(norm_scaled, params)])
    assert_same_bits([fused.map_leaves(norm_scaled, params)], [jax.tree.map(norm_scaled, params)])
    only_rank2 = fused.map_leaves(jnp.negative, flat, where=lambda shape: len(shape) == 2)
    out = fused.unflatten(only_rank2)
    np.testing.assert_array_equal(out["emb"], -params["emb"])
    np.testing.assert_array_equal(out["conv1"]["weight"], params["conv1"]["weight"])
    # leaf + 1 makes the padding non-zero: no method may read it
    plus_one = jax.tree.map(lambda x: x + 1, flat)
    expected = jax.tree.map(lambda x: jnp.broadcast_to(jnp.sum(x + 1), x.shape), params)
    assert_same_bits([fused.leaf_sums(jax.tree.map(lambda x: x + 1, params))], [expected])
    for method in ("rows", "slices", "segment_sum"):  # summation orders differ: equal to rounding
        sums = fused.unflatten(jax.jit(functools.partial(fused.leaf_sums, method=method))(plus_one))
        for a, b in zip(jax.tree.leaves(sums), jax.tree.leaves(expected)):
            rtol = 1e-5 if a.dtype == jnp.float32 else 2e-2
            np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(b, np.float32), rtol=rtol)


def test_leaf_tree_and_restore_round_trip():
    params = make_params()
    flat = fused.flatten(params)
    as_tree = fused.leaf_tree({"a": flat, "b": params["emb"]})
    assert_same_bits([as_tree["a"]], [params])
    doubled = jax.tree.map(lambda x: x * 2, as_tree)
    back = fused.restore({"a": flat, "b": params["emb"]}, doubled)
    assert isinstance(back["a"], fused.FlatParams) and back["a"].layout == flat.layout
    assert_same_bits([fused.unflatten(back["a"])], [jax.tree.map(lambda x: x * 2, params)])
    masked = fused.FlatParams((optax.MaskedNode(), flat.buffers[1]), flat.layout)
    assert isinstance(fused.leaf_tree(masked)["emb"], optax.MaskedNode)
    assert isinstance(fused.restore(masked, fused.leaf_tree(masked)).buffers[0], optax.MaskedNode)


def test_fused_optimizer_inside_optax_chain():
    params, grads = make_params(), grad_sequence(make_params(), steps=2)
    opt = jaxopt_ms.adam(0.01)
    fopt = fused.fuse(opt)
    chained, reference = optax.chain(optax.clip(1.0), fopt), optax.chain(optax.clip(1.0), opt)

    @jax.jit
    def both(flat, fs, rs, g):
        fu, fs = chained.update(fused.flatten(g, fopt.partition), fs, flat)
        ru, rs = reference.update(g, rs, params)
        return fused.unflatten(fu), fs, ru, rs

    flat = fopt.flatten(params)
    fs, rs = chained.init(flat), reference.init(params)
    for g in grads:
        fu, fs, ru, rs = both(flat, fs, rs, g)
        assert_same_bits([fu], [ru])


def test_errors():
    with pytest.raises(TypeError, match="jaxopt_ms factory"):
        fused.fuse(optax.adam(1e-3))
    with pytest.raises(ValueError, match="thor"):
        fused.fuse(jaxopt_ms.thor(jnp.full(10, 0.05), jnp.full(10, 0.03), 0.9))
    fopt = fused.fuse(jaxopt_ms.adam(1e-3, weight_decay=0.1))
    with pytest.raises(TypeError, match="FlatParams"):
        fopt.init(make_params())
    with pytest.raises(ValueError, match="opt.flatten"):
        fopt.init(fused.flatten(make_params()))  # packed without the decay filter's partition
    with pytest.raises(jaxopt_ms.GroupOverlapError):
        fused.fuse(jaxopt_ms.sgd(0.1, param_groups=[{"params": "conv"}, {"params": "conv1"}])).flatten(make_params())


def test_filters_split_buffers_only_when_they_decide_something():
    # no weight decay: MindSpore's gamma/beta rule decides nothing, so one buffer per dtype
    assert len(fused.fuse(jaxopt_ms.adam(1e-3)).flatten(make_params()).layout.buffers) == 2
    assert len(fused.fuse(jaxopt_ms.adam(1e-3, weight_decay=0.1)).flatten(make_params()).layout.buffers) == 3


OWN_BUFFER_CASES = [c for c in CASES if c[0] in ("adam_weight_decay", "lamb", "lars_momentum", "adafactor",
                                                 "sgd_momentum_ls", "adam_nesterov_wd_ls")]


@pytest.mark.parametrize("name,factory,kwargs", OWN_BUFFER_CASES, ids=[c[0] for c in OWN_BUFFER_CASES])
def test_large_leaves_in_buffers_of_their_own(name, factory, kwargs):
    params, grads = make_params(), grad_sequence(make_params())
    opt = factory(**kwargs)
    fopt = fused.fuse(opt, own_buffer_from=100)
    layout = fopt.flatten(params).layout
    for b, spec in enumerate(layout.buffers):  # each leaf of >= 100 elements alone, viewed by a reshape
        slots = layout.buffer_leaves(b)
        assert len(slots) == 1 or all(s.size < 100 for s in slots), (name, spec)
    assert any(len(layout.buffer_leaves(b)) > 1 for b in range(len(layout.buffers)))  # the small ones share
    fused_traj, _ = fused_trajectory(fopt, params, grads)
    leaf_traj, _ = per_leaf_trajectory(opt, params, grads)
    assert_same_bits(fused_traj, leaf_traj)


def test_own_buffer_from_auto_and_errors():
    params = {"big": jnp.ones((300, 256)), "small": jnp.ones(8), "small2": jnp.ones(8)}
    auto = fused.fuse(jaxopt_ms.adam(1e-3)).flatten(params).layout
    none = fused.fuse(jaxopt_ms.adam(1e-3), own_buffer_from=None).flatten(params).layout
    assert len(none.buffers) == 1
    assert len(auto.buffers) == (2 if jax.default_backend() == "cpu" else 1)  # 'auto': 2**12 on CPU only
    for bad in (0, -3, 1.5, True, "cpu"):
        with pytest.raises(ValueError, match="own_buffer_from"):
            fused.fuse(jaxopt_ms.adam(1e-3), own_buffer_from=bad)


@pytest.mark.parametrize("factory", [lambda: jaxopt_ms.momentum(0.1, 0.9), lambda: jaxopt_ms.adam(1e-3),
                                     lambda: jaxopt_ms.lamb(1e-3), lambda: jaxopt_ms.adafactor()],
                         ids=["momentum", "adam", "lamb", "adafactor"])
def test_one_leaf_fused_program_is_the_per_leaf_program(factory):
    # a tree of one (1-D) leaf is one buffer: the compiled step is the per-leaf one (parameter names aside), so a
    # fused / per-leaf timing difference on it is measurement noise (benchmarks/RESULTS.md)
    params = {"weight": jnp.ones(3072)}
    opt, fopt = factory(), fused.fuse(factory())
    flat = fopt.flatten(params)

    def compiled(o, p):
        step = jax.jit(lambda p, s, g: (lambda u, s: (optax.apply_updates(p, u), s))(*o.update(g, s, p)),
                       donate_argnums=(0, 1))
        text = step.lower(p, o.init(p), p).compile().as_text()
        text = text[text.index("ENTRY"):]
        text = re.sub(r"\(([^()]*)\) ->", lambda m: re.sub(r"[\w.]+:", ":", m.group(1)) + " ->", text, count=1)
        return re.sub(r"metadata=\{[^}]*\}|%[\w.\-]+|\"[^\"]*\"", "", text)

    assert compiled(opt, params) == compiled(fopt, flat)
