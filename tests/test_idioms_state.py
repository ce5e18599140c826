"""Optax / Flax / JAX idioms on the optimizer state and the gradient pytree, over the whole family.

Row-sparse gradients inside Optax chains, parameter-group selector errors, group mode's state (no per-leaf
Python nodes, same trajectory as ungrouped), fused states through pickle and ``flax.serialization`` in a new
process, ``optax.tree_utils.tree_get`` on the state, the low-precision weight-decay warning, and
``equinox_decay_filter`` built from a model. Small trees, eager updates: no compile per case.
"""

import inspect
import os
import pickle
import subprocess
import sys
import textwrap
import warnings

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import optax
import pytest
from optimizer_zoo import ZOO

import jaxopt_ms
from jaxopt_ms import fused, sparse
from jaxopt_ms.sparse import RowSparse
from jaxopt_ms.transforms.learning_rate import LearningRateState
from jaxopt_ms.transforms.weight_decay import decay_cannot_change

ZOO_IDS = [name for name, _, _ in ZOO]
SPARSE = [row for row in ZOO if row[0] in ("lazy_adam", "adam", "ftrl", "proximal_adagrad")]
SPARSE_IDS = [name for name, _, _ in SPARSE]


def _accepts(factory, arg):
    return arg in inspect.signature(factory).parameters


def _with_groups(name, factory, kwargs, groups):
    """The ZOO optimizer with ``param_groups`` (for the LARS wrapper: on its inner optimizer)."""
    if name.startswith("lars"):
        inner = kwargs["optimizer"]
        return factory(**{**kwargs, "optimizer": inner.factory(**{**inner.arguments, "param_groups": groups})})
    return factory(**kwargs, param_groups=groups)


def _tree(dtype=jnp.float32):
    return {"enc": {"kernel": jnp.linspace(-1.0, 1.0, 12, dtype=jnp.float32).reshape(3, 4).astype(dtype)},
            "dec": {"kernel": jnp.linspace(0.5, -0.5, 8, dtype=jnp.float32).reshape(4, 2).astype(dtype)},
            "bias": jnp.full((4,), 0.25, dtype)}


def _grads(k, params):
    return jax.tree.map(lambda p: (jnp.cos(jnp.arange(p.size, dtype=jnp.float32) * (k + 1.3)).reshape(p.shape)
                                   * 0.7).astype(p.dtype), params)


def _run(opt, params, steps=2):
    state = opt.init(params)
    for k in range(steps):
        updates, state = opt.update(_grads(k, params), state, params)
        params = optax.apply_updates(params, updates)
    return params, state


def _assert_trees_equal(a, b):
    la, ta = jax.tree.flatten(a)
    lb, tb = jax.tree.flatten(b)
    assert ta == tb
    for x, y in zip(la, lb):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# ----------------------------------------------------------------------------------------------------------------
# Row-sparse gradients in Optax chains

V, D = 6, 3


def _sparse_case():
    params = {"emb": jnp.linspace(-1.0, 1.0, V * D, dtype=jnp.float32).reshape(V, D), "w": jnp.ones((D,))}
    # row 1 twice with opposite halves (its sum is small), row 4 once, one padding entry
    idx = jnp.array([1, 4, 1, V], jnp.int32)
    vals = jnp.array([[3.0, -2.0, 1.0], [0.5, 0.5, -0.5], [-2.5, 2.5, -0.5], [9.0, 9.0, 9.0]], jnp.float32)
    grads = {"emb": RowSparse(idx, vals, (V, D)), "w": jnp.array([0.3, -0.2, 0.1])}
    return params, grads


NEEDS_ON_VALUES = {
    "global_norm": lambda: optax.chain(optax.clip_by_global_norm(1.0)),  # via optax.tree.norm
    "clip_by_global_norm": lambda: optax.clip_by_global_norm(1.0),
    "scale_float": lambda: optax.scale(0.5),
    "scale_int": lambda: optax.scale(2),  # an int scale would keep int indices: it must raise too
    "add_noise": lambda: optax.add_noise(0.1, 0.55, 0),
    "clip": lambda: optax.clip(0.5),
    "scale_by_schedule": lambda: optax.scale_by_schedule(lambda n: 0.5),
}


@pytest.mark.parametrize("row", SPARSE, ids=SPARSE_IDS)
@pytest.mark.parametrize("transform", sorted(NEEDS_ON_VALUES))
def test_arithmetic_transform_before_sparse_optimizer_raises_naming_the_fix(row, transform):
    _, factory, kwargs = row
    params, grads = _sparse_case()
    opt = optax.chain(NEEDS_ON_VALUES[transform](), factory(**kwargs))
    state = opt.init(params)
    # jitted (the training step): JAX's TypeError for arithmetic on the indices' dtype, whose name says what
    # to do (ValueError when a sampler is asked for that dtype)
    with pytest.raises(ValueError if transform == "add_noise" else TypeError,
                       match=r"RowSparse\.indices.*jaxopt_ms\.sparse\.on_values"):
        jax.jit(opt.update)(grads, state, params)
    # eagerly too it raises (norms hit NotImplementedError 'Cannot call abstract method real' on the indices)
    with pytest.raises((TypeError, ValueError, NotImplementedError)):
        opt.update(grads, state, params)


def test_global_norm_of_row_sparse_is_the_norm_of_its_densified_sum():
    _, grads = _sparse_case()
    with pytest.raises(TypeError, match=r"RowSparse\.indices"):
        jax.jit(optax.tree.norm)(grads)  # was silently counting the row numbers
    dense = sparse.densify(grads)
    np.testing.assert_allclose(sparse.global_norm(grads), optax.tree.norm(dense), rtol=1e-6)
    naive = optax.tree.norm([grads["emb"].values[:3], grads["w"]])  # duplicates not summed
    assert abs(float(naive) - float(optax.tree.norm(dense))) > 1.0


ON_VALUES = {
    "clip_by_global_norm": lambda: optax.clip_by_global_norm(1.0),
    "scale": lambda: optax.scale(0.5),
    "clip_then_scale": lambda: optax.chain(optax.clip_by_global_norm(2.0), optax.scale(-1.5)),
}


@pytest.mark.parametrize("row", SPARSE, ids=SPARSE_IDS)
@pytest.mark.parametrize("transform", sorted(ON_VALUES))
@pytest.mark.parametrize("grouped", [False, True], ids=["plain", "grouped"])
def test_on_values_has_the_dense_semantics(row, transform, grouped):
    """``on_values(t)`` then a sparse optimizer == the optimizer on the touched rows of ``t(densified grads)``
    (for Adam, whose sparse path is dense Adam, also == dense ``t`` then dense Adam)."""
    name, factory, kwargs = row
    params, grads = _sparse_case()
    make = (lambda: _with_groups(name, factory, kwargs, [{"params": ["emb"]}, {"params": "^w$"}])) if grouped \
        else (lambda: factory(**kwargs))
    opt = optax.chain(sparse.on_values(ON_VALUES[transform]()), make())
    ref_t, ref_opt = ON_VALUES[transform](), make()
    p, s = params, opt.init(params)
    rp, rts, rs = params, ref_t.init(params), ref_opt.init(params)
    rows = sparse.coalesce(grads["emb"]).indices
    for _ in range(2):
        u, s = opt.update(grads, s, p)
        assert isinstance(u["emb"], RowSparse) is (name != "adam")  # MindSpore's sparse Adam is dense Adam
        p = optax.apply_updates(p, u)
        dense_t, rts = ref_t.update(sparse.densify(grads), rts, rp)
        g_ref = dict(dense_t, emb=RowSparse(rows, sparse.gather_rows(dense_t["emb"], rows), (V, D)))
        ru, rs = ref_opt.update(g_ref, rs, rp)
        rp = optax.apply_updates(rp, ru)
    for k in p:
        np.testing.assert_allclose(p[k], rp[k], rtol=1e-6, atol=1e-7)
    if name == "adam" and not grouped:
        dp, dts, ds = params, ref_t.init(params), ref_opt.init(params)
        for _ in range(2):
            dg, dts = ref_t.update(sparse.densify(grads), dts, dp)
            du, ds = ref_opt.update(dg, ds, dp)
            dp = optax.apply_updates(dp, du)
        for k in p:
            np.testing.assert_allclose(p[k], dp[k], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("row", SPARSE, ids=SPARSE_IDS)
def test_apply_if_finite_and_multisteps_with_row_sparse(row):
    name, factory, kwargs = row
    params, grads = _sparse_case()
    plain = factory(**kwargs)
    want, _ = plain.update(grads, plain.init(params), params)
    guarded = optax.apply_if_finite(factory(**kwargs), max_consecutive_errors=3)
    state = guarded.init(params)
    if name == "adam":
        # its sparse path returns a dense update, the skip branch a zero RowSparse: lax.cond refuses (loudly);
        # MindSpore's sparse Adam is dense Adam, so pass sparse.densify(grads)
        with pytest.raises(TypeError, match="same pytree structure"):
            guarded.update(grads, state, params)
        grads = sparse.densify(grads)
    got, state = guarded.update(grads, state, params)
    # apply_if_finite runs the update inside lax.cond (compiled, so fused): the same numbers up to an ulp
    np.testing.assert_allclose(sparse.densify(got)["emb"], sparse.densify(want)["emb"], rtol=1e-6, atol=1e-7)
    bad = jax.tree.map(lambda x: x, grads, is_leaf=lambda x: isinstance(x, RowSparse))
    bad["emb"] = sparse.map_values(lambda v: v.at[0, 0].set(jnp.nan), grads["emb"])
    skipped, state = guarded.update(bad, state, params)
    assert int(state.notfinite_count) == 1
    np.testing.assert_array_equal(optax.apply_updates(params, skipped)["emb"], params["emb"])
    # MultiSteps accumulates into dense buffers with a tree_map led by the gradient: a structure ValueError on
    # a RowSparse; densified gradients accumulate as they should
    ms = optax.MultiSteps(factory(**kwargs), every_k_schedule=2)
    ms_state = ms.init(params)
    _, raw = _sparse_case()
    with pytest.raises(ValueError, match="RowSparse"):
        ms.update(raw, ms_state, params)
    _, ms_state = ms.update(sparse.densify(raw), ms_state, params)
    np.testing.assert_allclose(ms_state.acc_grads["emb"], sparse.densify(raw)["emb"], rtol=1e-6)  # a mean of 1


# ----------------------------------------------------------------------------------------------------------------
# Parameter-group selectors


@pytest.mark.parametrize("row", ZOO, ids=ZOO_IDS)
@pytest.mark.parametrize("variant", ["per_leaf", "fused"])
def test_group_selector_mistakes_are_clear_errors(row, variant):
    name, factory, kwargs = row
    params = _tree()
    wrap = (lambda o: o) if variant == "per_leaf" else fused.fuse
    place = (lambda o: params) if variant == "per_leaf" else (lambda o: o.flatten(params))

    opt = wrap(_with_groups(name, factory, kwargs, [{"params": ["enc.kernel", "dec.kernal"]}]))
    with pytest.raises(ValueError, match=r"'dec\.kernal'.*closest parameter names are \['dec\.kernel'"):
        opt.init(place(opt))

    with pytest.raises(ValueError, match=r"For '\w+', the 'params' of group 1 is not a valid regular expression: "
                                         r"'enc\.\(kernel'"):
        _with_groups(name, factory, kwargs, [{"params": ["bias"]}, {"params": "enc.(kernel"}])

    opt = wrap(_with_groups(name, factory, kwargs, [{"params": "^enc"}, {"params": "^decoder"}]))
    with pytest.raises(ValueError, match=r"group 1 selects no parameter \(its 'params' is '\^decoder'\)"):
        opt.init(place(opt))


# ----------------------------------------------------------------------------------------------------------------
# Group mode: the state holds no per-leaf Python node and the trajectory is the ungrouped one

GROUPS = [{"params": ["enc.kernel", "bias"]}, {"params": r"^dec\."}]


@pytest.mark.parametrize("row", ZOO, ids=ZOO_IDS)
def test_group_mode_state_is_lean_and_matches_ungrouped(row):
    name, factory, kwargs = row
    params = _tree()  # no 'beta'/'gamma' names: MindSpore's decay filter and group mode decay the same leaves
    want, _ = _run(factory(**kwargs), params)
    got, state = _run(_with_groups(name, factory, kwargs, GROUPS), params)
    _assert_trees_equal(got, want)
    nodes = jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, optax.MaskedNode))
    assert not any(isinstance(x, optax.MaskedNode) for x in nodes)


# ----------------------------------------------------------------------------------------------------------------
# Fused state through pickle and flax.serialization, across processes

_FUSED_SCRIPT = textwrap.dedent("""
    import pickle, sys
    import jax, jax.numpy as jnp, numpy as np, optax
    sys.path.insert(0, sys.argv[2])
    from flax import serialization
    from test_idioms_state import _fused_cases, _grads, _tree
    from jaxopt_ms import fused
    saved = pickle.loads(open(sys.argv[1], 'rb').read())
    params = _tree()
    for name, opt in _fused_cases():
        flat = opt.flatten(params)
        state1 = pickle.loads(saved[name]['pickle'])
        layouts = [x.layout for x in jax.tree.leaves(state1, is_leaf=fused.is_flat) if fused.is_flat(x)]
        assert layouts and all(lay == flat.layout and hash(lay) == hash(flat.layout) for lay in layouts), name
        restored = serialization.from_bytes(opt.init(flat), saved[name]['flax'])
        for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(state1)):
            assert np.asarray(a).dtype == np.asarray(b).dtype
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert jax.tree.structure(restored) == jax.tree.structure(state1), name
        for st in (state1, restored):
            _, state2 = opt.update(opt.flatten(_grads(1, params)), st, flat)
            got = [np.asarray(x) for x in jax.tree.leaves(state2)]
            assert len(got) == len(saved[name]['state2']), name
            for a, b in zip(got, saved[name]['state2']):
                np.testing.assert_array_equal(a, b)
        print('OK', name)
""")


def _fused_cases():
    """Every ZOO optimizer fused, plus a grouped one (its state holds FlatParams with None buffers)."""
    out = [(name, fused.fuse(factory(**kwargs))) for name, factory, kwargs in ZOO]
    out.append(("adam_groups", fused.fuse(jaxopt_ms.adam(0.01, param_groups=[
        {"params": ["enc.kernel"], "weight_decay": 0.1}, {"params": "^(dec|bias)", "lr": 0.02}]))))
    return out


def test_fused_state_survives_pickle_and_flax_bytes_in_a_new_process(tmp_path):
    from flax import serialization

    params = _tree()
    saved = {}
    for name, opt in _fused_cases():
        flat = opt.flatten(params)
        state = opt.init(flat)
        _, state1 = opt.update(opt.flatten(_grads(0, params)), state, flat)
        _, state2 = opt.update(opt.flatten(_grads(1, params)), state1, flat)
        blob = serialization.to_bytes(state1)
        back = serialization.from_bytes(state, blob)  # same process too
        _assert_trees_equal(back, state1)
        saved[name] = {"pickle": pickle.dumps(state1), "flax": blob,
                       "state2": [np.asarray(x) for x in jax.tree.leaves(state2)]}
    path = tmp_path / "states.pkl"
    path.write_bytes(pickle.dumps(saved))
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(here), os.environ.get("PYTHONPATH", "")]),
               PYTHONHASHSEED="12345")  # a different string hash seed than this process: PyTreeDef hashes differ
    out = subprocess.run([sys.executable, "-c", _FUSED_SCRIPT, str(path), here], env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("OK ") == len(saved)


# ----------------------------------------------------------------------------------------------------------------
# optax.tree_utils.tree_get on the state

# Lamb's and LARS's own blocks count steps for their bias correction / trust ratio beside the learning-rate
# block: two 'count' fields, always equal; the documented filter picks the learning-rate block's.
DOUBLE_COUNT = {"lamb", "lars_momentum"}


def _lr_block_count(state):
    return optax.tree_utils.tree_get(state, "count", filtering=lambda path, _: getattr(
        path[-1], "tuple_name", None) == "LearningRateState")


@pytest.mark.parametrize("row", ZOO, ids=ZOO_IDS)
@pytest.mark.parametrize("variant", ["per_leaf", "fused"])
def test_tree_get_finds_one_learning_rate_and_count(row, variant):
    name, factory, kwargs = row
    if _accepts(factory, "weight_decay") and not kwargs.get("weight_decay"):
        kwargs = dict(kwargs, weight_decay=0.01)  # a constant decay must not add a 'count'
    opt = factory(**kwargs)
    params = _tree()
    if variant == "fused":
        opt = fused.fuse(opt)
        params = opt.flatten(params)
    state = opt.init(params)
    for k in range(2):
        grads = _grads(k, params) if variant == "per_leaf" else opt.flatten(_grads(k, _tree()))
        _, state = opt.update(grads, state, params)
    lr = optax.tree_utils.tree_get(state, "learning_rate")
    np.testing.assert_allclose(lr, jaxopt_ms.current_lr(state), rtol=0)
    if name in DOUBLE_COUNT:
        counts = [v for _, v in optax.tree_utils.tree_get_all_with_path(state, "count")]
        assert len(counts) == 2 and all(int(c) == 2 for c in counts)
        assert int(_lr_block_count(state)) == 2
    else:
        assert int(optax.tree_utils.tree_get(state, "count")) == 2
    assert any(isinstance(x, LearningRateState) for x in
               jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, LearningRateState)))


def test_dynamic_weight_decay_keeps_its_count():
    opt = jaxopt_ms.adam(0.1, weight_decay=lambda step: 0.01 * (step + 1.0))
    state = opt.init(_tree())
    counts = optax.tree_utils.tree_get_all_with_path(state, "count")
    assert [p[-1].tuple_name for p, _ in counts] == ["AddDecayedWeightsState", "LearningRateState"]


# ----------------------------------------------------------------------------------------------------------------
# Weight decay on 16-bit parameters

WD_ZOO = [row for row in ZOO if _accepts(row[1], "decay_filter")]  # AdaFactor decays in its own rule, LARS's
WD_IDS = [name for name, _, _ in WD_ZOO]                           # inner optimizer has no decay


def test_decay_cannot_change_matches_exhaustive_bfloat16_and_float16_rounding():
    for dtype in (ml_dtypes.bfloat16, np.float16):
        bits = np.arange(2**16, dtype=np.uint16).view(dtype)
        w = bits[np.isfinite(bits)]
        w = w[np.abs(w.astype(np.float64)) >= ml_dtypes.finfo(dtype).tiny]  # normal values
        eps = float(ml_dtypes.finfo(dtype).eps)
        for step, stuck in ((eps / 4 * 0.999, True), (eps / 2, False)):
            moved = (w.astype(np.float64) * (1.0 - step)).astype(dtype) != w
            assert decay_cannot_change(dtype, step) is stuck
            assert (not moved.any()) if stuck else moved.any()
    assert not decay_cannot_change(jnp.float32, 1e-12)  # 32-bit leaves are never reported


@pytest.mark.parametrize("row", WD_ZOO, ids=WD_IDS)
@pytest.mark.parametrize("variant", ["per_leaf", "grouped"])
def test_weight_decay_warns_once_when_it_cannot_change_a_16bit_leaf(row, variant):
    name, factory, kwargs = row
    kwargs = {k: v for k, v in kwargs.items() if k != "weight_decay"}

    def build(wd):
        if variant == "grouped":
            return factory(**kwargs, param_groups=[{"params": ["enc.kernel"], "weight_decay": wd},
                                                   {"params": r"^(dec|bias)", "weight_decay": 0.0}])
        return factory(**kwargs, weight_decay=wd)

    def warnings_of(opt, params):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            opt.init(params)
            opt.init(params)
        return [str(w.message) for w in caught if issubclass(w.category, UserWarning)]

    msgs = warnings_of(build(1e-6), _tree(jnp.bfloat16))
    assert len(msgs) == 1, msgs
    assert "enc.kernel (bfloat16" in msgs[0] and "loss_scale.master_weights" in msgs[0]
    assert ("dec.kernel" in msgs[0]) is (variant == "per_leaf")
    assert warnings_of(build(1e-6), _tree(jnp.float32)) == []      # float32 resolves lr * wd
    assert warnings_of(build(0.5), _tree(jnp.bfloat16)) == []      # lr * wd >= 2**-9
    # float32 master weights: the optimizer and its decay run on float32 copies
    assert warnings_of(jaxopt_ms.loss_scale.master_weights(build(1e-6)), _tree(jnp.bfloat16)) == []


def test_bfloat16_weight_decay_is_a_noop_below_the_threshold():
    params = {"w": jnp.full((4,), 1.0, jnp.bfloat16)}
    zero = {"w": jnp.zeros((4,), jnp.bfloat16)}
    for wd, moves in ((1e-4, False), (0.5, True)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opt = jaxopt_ms.sgd(1e-2, weight_decay=wd)
            state = opt.init(params)
        p = params
        for _ in range(20):
            u, state = opt.update(zero, state, p)
            p = optax.apply_updates(p, u)
        assert bool((p["w"] != params["w"]).any()) is moves


# ----------------------------------------------------------------------------------------------------------------
# equinox_decay_filter decides by the module

eqx = pytest.importorskip("equinox")


class _Model(eqx.Module):
    lin: eqx.nn.Linear
    ln2: eqx.nn.LayerNorm
    ln1: eqx.nn.LayerNorm
    gn: eqx.nn.GroupNorm
    rms: eqx.nn.RMSNorm

    def __init__(self, key):
        self.lin = eqx.nn.Linear(4, 3, key=key)
        self.ln2 = eqx.nn.LayerNorm((3, 4))
        self.ln1 = eqx.nn.LayerNorm(3)
        self.gn = eqx.nn.GroupNorm(2, 4)
        self.rms = eqx.nn.RMSNorm((2, 3))


def _model_params():
    model = _Model(jax.random.key(0))
    params = eqx.filter(model, eqx.is_array)
    return model, params


def test_equinox_decay_filter_from_the_model_skips_every_norm():
    model, params = _model_params()
    f = jaxopt_ms.equinox_decay_filter(model)
    decided = dict(zip(jax.tree.leaves(jaxopt_ms.param_names(params)),
                       jax.tree.leaves(jax.tree.map(f, jaxopt_ms.param_names(params), params))))
    assert decided == {"lin.weight": True, "lin.bias": False, "ln2.weight": False, "ln2.bias": False,
                       "ln1.weight": False, "ln1.bias": False, "gn.weight": False, "gn.bias": False,
                       "rms.weight": False, "rms.bias": False}
    # the name-and-rank form cannot tell a rank-2 norm weight from a linear one (documented)
    assert jaxopt_ms.equinox_decay_filter("ln2.weight", params.ln2.weight)


@pytest.mark.parametrize("row", WD_ZOO, ids=WD_IDS)
@pytest.mark.parametrize("variant", ["per_leaf", "fused"])
def test_equinox_model_filter_leaves_norms_undecayed(row, variant):
    """With the model's filter, every norm leaf follows the no-decay trajectory and the Linear weight does not."""
    name, factory, kwargs = row
    model, params = _model_params()
    kwargs = {k: v for k, v in kwargs.items() if k != "weight_decay"}
    opts = {wd: factory(**kwargs, weight_decay=wd, decay_filter=jaxopt_ms.equinox_decay_filter(model))
            for wd in (0.0, 0.05)}
    runs = {}
    for wd, opt in opts.items():
        if variant == "fused":
            opt = fused.fuse(opt)
            start = opt.flatten(params)
            state = opt.init(start)
            p = start
            for k in range(2):
                u, state = opt.update(opt.flatten(_grads(k, params)), state, p)
                p = optax.apply_updates(p, u)
            runs[wd] = fused.unflatten(p)
        else:
            runs[wd], _ = _run(opt, params)
    names = jax.tree.leaves(jaxopt_ms.param_names(params))
    for n, a, b in zip(names, jax.tree.leaves(runs[0.0]), jax.tree.leaves(runs[0.05])):
        if n == "lin.weight":
            if name != "rprop":  # sign-based: a decay too small to flip a gradient's sign changes nothing
                assert not np.array_equal(a, b), n
        else:
            np.testing.assert_array_equal(a, b, err_msg=n)
