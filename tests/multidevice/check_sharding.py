"""Sharded optimizer state on 8 host CPU devices (a 2x4 mesh): results equal the single-device run.

Run in its own process (``tests/test_sharding.py`` does it): the device count must be set before JAX starts.
Global reductions (global-norm clipping, trust ratios, overflow checks) are exercised with Optax blocks here;
the optimizers that reduce over whole parameters (Lamb, LARS, AdaFactor, loss-scale wrappers) are covered as
soon as they are listed in ``tests/optimizer_zoo.py``. Also: a ZeRO-1 state checkpointed with orbax-checkpoint
and restored into its sharded layout resumes bit-identically, and (hypothesis) random parameter shapes,
partitionings and ZeRO-1 axes give the single-device result.
"""

import functools
import os

os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"

import jax  # noqa: E402
import jax.flatten_util  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import orbax.checkpoint as ocp  # noqa: E402
import pytest  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from jax.sharding import NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402
from optimizer_zoo import ZOO  # noqa: E402
from parity import run_trajectory  # noqa: E402

import jaxopt_ms  # noqa: E402
from jaxopt_ms.loss_scale import dynamic_loss_scale, loss_scale_value  # noqa: E402
from jaxopt_ms.sharding import (  # noqa: E402
    shard_state,
    sharded_init,
    state_shardings,
    with_zero1_layout,
    zero1_spec,
)
from jaxopt_ms.transforms.offload import offloads  # noqa: E402

assert jax.device_count() == 8, f"needs 8 devices, got {jax.devices()}"

# Explicit axes (jax.make_mesh's default: shardings are part of the types) and Auto axes (the compiler places
# intermediates); ZeRO-1 with Explicit axes runs the update through with_zero1_layout.
EXPLICIT = jax.make_mesh((2, 4), ("data", "model"), axis_types=(jax.sharding.AxisType.Explicit,) * 2)
MESH = jax.make_mesh((2, 4), ("data", "model"), axis_types=(jax.sharding.AxisType.Auto,) * 2)
SHAPES = {"conv1": {"weight": (8, 16, 3, 3)}, "fc": {"weight": (16, 32), "bias": (16,)},
          "bn1.gamma": (8,), "bn1.beta": (8,)}
# Parameters partitioned over 'model' (tensor-parallel style) in several ways; gamma replicated.
SPECS = {"conv1": {"weight": P("model")}, "fc": {"weight": P(None, "model"), "bias": P("model")},
         "bn1.gamma": P(), "bn1.beta": P("model")}
STEPS = 4
is_shape = lambda x: isinstance(x, tuple) and all(isinstance(i, int) for i in x)


def _tree(seed: int, scale: float = 1.0):
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: (scale * rng.standard_normal(s)).astype(np.float32), SHAPES, is_leaf=is_shape)


PARAMS0 = _tree(0)
GRADS = [_tree(i + 1, 0.5) for i in range(STEPS)]
PARAM_SH = jax.tree.map(lambda spec: NamedSharding(MESH, spec), SPECS, is_leaf=lambda x: isinstance(x, P))
PARAM_SH_EXPLICIT = jax.tree.map(lambda spec: NamedSharding(EXPLICIT, spec), SPECS, is_leaf=lambda x: isinstance(x, P))
REPLICATED_SH = jax.tree.map(lambda _: NamedSharding(EXPLICIT, P()), SPECS, is_leaf=lambda x: isinstance(x, P))


def single_device(opt, params0=PARAMS0, grads=GRADS):
    return run_trajectory(opt, params0, grads)


def on_mesh(opt, param_sh, zero1_axis=None, init_in_place=False, params0=PARAMS0, grads=GRADS):
    if zero1_axis is not None:
        opt = with_zero1_layout(opt, zero1_axis)
    params = jax.device_put(params0, param_sh)
    state_sh = state_shardings(opt, params, zero1_axis=zero1_axis)
    if init_in_place:
        state = sharded_init(opt, params, zero1_axis=zero1_axis)
    else:  # cheaper (no compilation): made on the host, then placed
        state = shard_state(opt.init(params0), state_sh)
    assert jax.tree.all(jax.tree.map(lambda x, s: x.sharding.is_equivalent_to(s, x.ndim), state, state_sh))

    def step(params, state, grads):
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    step = jax.jit(step, out_shardings=(param_sh, state_sh))
    out = []
    for g in grads:
        params, state = step(params, state, jax.device_put(g, param_sh))
        out.append(jax.tree.map(np.asarray, params))
    return out, params, state


def assert_same(got, expected, label, rtol=2e-6, atol=1e-7):
    for k, (g, e) in enumerate(zip(got, expected)):
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=f"{label} {k}"),
                     g, e)


def state_bytes_per_device(state):
    per_device = {d: 0 for d in jax.devices()}
    total = 0
    for leaf in jax.tree.leaves(state):
        if leaf.ndim == 0:
            continue
        total += leaf.nbytes
        for shard in leaf.addressable_shards:
            per_device[shard.device] += shard.data.nbytes
    return per_device, total


_REFERENCE = {}


def reference(name, make):
    if name not in _REFERENCE:
        _REFERENCE[name] = single_device(make())
    return _REFERENCE[name]


GROUPS = ("adam_groups", jaxopt_ms.adam, dict(learning_rate=0.01, param_groups=[
    {"params": r"^conv1|^fc\\.weight", "weight_decay": 0.01}, {"params": r"^bn1|bias$", "lr": [0.1, 0.05, 0.02]}]))
ALL = ZOO + [GROUPS]


def _steps_of_many(opts, params, state, place=lambda tree: tree, out_shardings=None):
    def step(params, state, grads):
        new_params, new_state = {}, {}
        for name, opt in opts.items():
            updates, new_state[name] = opt.update(grads, state[name], params[name])
            new_params[name] = optax.apply_updates(params[name], updates)
        return new_params, new_state

    step = jax.jit(step) if out_shardings is None else jax.jit(step, out_shardings=out_shardings)
    trajectory = []
    for g in GRADS:
        params, state = step(params, state, place(g))
        trajectory.append(jax.tree.map(np.asarray, params))
    return {name: [t[name] for t in trajectory] for name in opts}, params, state


@functools.cache
def whole_zoo_on_one_device():
    opts = {name: factory(**kwargs) for name, factory, kwargs in ALL}
    trajectories, _, _ = _steps_of_many(opts, {name: PARAMS0 for name in opts},
                                        {name: opt.init(PARAMS0) for name, opt in opts.items()})
    return trajectories


@functools.cache
def whole_zoo_on_mesh(zero1_axis):
    """Every optimizer of the zoo in one jitted step (one compilation instead of one per optimizer)."""
    opts = {name: factory(**kwargs) for name, factory, kwargs in ALL}
    if zero1_axis is not None:
        opts = {name: with_zero1_layout(opt, zero1_axis) for name, opt in opts.items()}
    params = {name: jax.device_put(PARAMS0, PARAM_SH_EXPLICIT) for name in opts}
    state_sh = {name: state_shardings(opt, params[name], zero1_axis=zero1_axis) for name, opt in opts.items()}
    state = {name: shard_state(opt.init(PARAMS0), state_sh[name]) for name, opt in opts.items()}
    return _steps_of_many(opts, params, state, lambda g: jax.device_put(g, PARAM_SH_EXPLICIT),
                          ({name: PARAM_SH_EXPLICIT for name in opts}, state_sh))


@pytest.mark.parametrize("name,factory,kwargs", ALL, ids=[z[0] for z in ALL])
def test_state_follows_parameters(name, factory, kwargs):
    trajectories, all_params, all_state = whole_zoo_on_mesh(None)
    params, state = all_params[name], all_state[name]
    assert_same(trajectories[name], whole_zoo_on_one_device()[name], name)
    # Every state leaf shaped like a parameter is partitioned like it; scalars are replicated.
    flat_params = {tuple(p): leaf for p, leaf in jax.tree_util.tree_flatten_with_path(params)[0]}
    matched = 0
    for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
        if leaf.ndim == 0:
            assert leaf.sharding.is_fully_replicated, (name, path)
            continue
        for start in range(len(path)):
            param = flat_params.get(tuple(path[start:]))
            if param is not None and param.shape == leaf.shape:
                assert leaf.sharding.is_equivalent_to(param.sharding.with_memory_kind(leaf.sharding.memory_kind),
                                                      leaf.ndim), (name, path)
                matched += 1
                break
    assert matched >= 1, name  # (a factored AdaFactor without beta1 keeps full-shape state for vectors only)


@pytest.mark.parametrize("name,factory,kwargs", ALL, ids=[z[0] for z in ALL])
def test_zero1_state_is_an_eighth_per_device(name, factory, kwargs):
    trajectories, _, all_state = whole_zoo_on_mesh("data")
    assert_same(trajectories[name], whole_zoo_on_one_device()[name], name)
    per_device, total = state_bytes_per_device(all_state[name])
    assert total > 0
    # 4 model shards x 2 data shards: each moment is split 8 ways except bn1.gamma's (replicated parameter, 8
    # elements, split over 'data' only): 215 of 1696 elements per device, 1.014 / 8 (1.02 with groups).
    # AdaFactor's small factored moments keep only the splits of the dimensions they share with their
    # parameter: up to 1.19 / 8 here.
    assert max(per_device.values()) <= 1.2 * total / 8, (per_device, total)
    if not name.startswith("adafactor"):
        assert max(per_device.values()) <= 1.03 * total / 8, (per_device, total)


@pytest.mark.parametrize("name", ["sgd", "adam_offload"])
def test_zero1_over_the_whole_mesh_with_replicated_parameters(name):
    _, factory, kwargs = next(z for z in ZOO if z[0] == name)
    got, _, state = on_mesh(factory(**kwargs), REPLICATED_SH, zero1_axis=("data", "model"), init_in_place=True)
    assert_same(got, reference(name, lambda: factory(**kwargs)), name)
    per_device, total = state_bytes_per_device(state)
    assert set(per_device.values()) == {total // 8}


# Whole-parameter reductions beyond the zoo's (Lamb, LARS, AdaFactor): global-norm clipping and the loss-scale
# overflow check, which must skip the update on every shard.
REDUCING = {
    "clip_global_norm+adam": lambda: optax.chain(optax.clip_by_global_norm(0.3), jaxopt_ms.adam(0.01)),
    "dynamic_loss_scale(adam_offload)": lambda: dynamic_loss_scale(jaxopt_ms.adam_offload(0.01, on_host=True),
                                                                   2.0 ** 4, 2, 2),
}


@pytest.mark.parametrize("name", list(REDUCING))
def test_global_reductions_are_over_whole_parameters(name):
    # Parameters split over 'model' and state over 'data' too (ZeRO-1): every operand is sharded.
    got, _, _ = on_mesh(REDUCING[name](), PARAM_SH, zero1_axis="data")
    # A norm summed in another order differs in the last bits (seen: 6e-7 after 4 steps); a norm over one shard
    # instead of the whole parameter would be off by a factor ~2 (4 model shards).
    assert_same(got, reference(name, REDUCING[name]), name, rtol=1e-5, atol=3e-6)


def flat_buffer_momentum(lr: float = 0.1, mu: float = 0.9) -> optax.GradientTransformation:
    """A stand-in for the fused path: the whole state is one flat buffer (plus a scalar count)."""

    def init(params):
        flat, _ = jax.flatten_util.ravel_pytree(params)
        return (jnp.zeros_like(flat), jnp.zeros([], jnp.int32))

    def update(grads, state, params=None):
        flat, unravel = jax.flatten_util.ravel_pytree(grads)
        buf = mu * state[0] + flat
        return unravel(-lr * buf), (buf, state[1] + 1)

    return optax.GradientTransformation(init, update)


def test_flat_buffer_state_is_split_along_its_axis():
    n = sum(int(np.prod(s)) for s in jax.tree.leaves(SHAPES, is_leaf=is_shape))  # 1696 = 8 * 212
    opt = flat_buffer_momentum()
    params = jax.device_put(PARAMS0, PARAM_SH)
    follow = state_shardings(opt, params)
    assert follow[0].is_fully_replicated and follow[1].is_fully_replicated  # belongs to no parameter
    # Auto axes: flattening arrays split over Explicit axes needs an explicit out_sharding for each reshape.
    got, _, state = on_mesh(opt, PARAM_SH, zero1_axis=("data", "model"))
    assert_same(got, reference("flat_buffer_momentum", flat_buffer_momentum), "flat buffer")
    assert state[0].shape == (n,) and {s.data.shape for s in state[0].addressable_shards} == {(n // 8,)}


def test_overflow_in_one_shard_skips_every_shard():
    opt = with_zero1_layout(dynamic_loss_scale(jaxopt_ms.adam(0.01), 2.0 ** 4, 2, 2), "data")
    params = jax.device_put(PARAMS0, PARAM_SH_EXPLICIT)
    state = sharded_init(opt, params, zero1_axis="data")
    grads = jax.tree.map(np.copy, GRADS[0])
    grads["conv1"]["weight"][7, 15, 2, 2] = np.inf  # lives on one device only
    updates, new_state = jax.jit(opt.update)(jax.device_put(grads, PARAM_SH_EXPLICIT), state, params)
    assert all(float(jnp.abs(u).max()) == 0.0 for u in jax.tree.leaves(updates))
    assert float(loss_scale_value(new_state)) == 8.0  # halved once, on every device
    jax.tree.map(np.testing.assert_array_equal, new_state.inner_state, state.inner_state)


def test_offloaded_state_keeps_host_memory_on_the_mesh():
    opt = jaxopt_ms.adam_offload(0.01, on_host=True)
    params = jax.device_put(PARAMS0, PARAM_SH)
    # Where the backend keeps host memory under jit (CPU: from jax 0.10.2, jaxopt_ms._compat), else on the device.
    kind = "pinned_host" if offloads(True) else jax.devices()[0].default_memory().kind
    for zero1_axis in (None, "data"):
        sh = state_shardings(opt, params, zero1_axis=zero1_axis)
        state = sharded_init(opt, params, zero1_axis=zero1_axis)
        adam_state = next(s for s in state if hasattr(s, "moment1"))
        adam_sh = next(s for s in sh if hasattr(s, "moment1"))
        moments = jax.tree.leaves((adam_state.moment1, adam_state.moment2))
        assert {m.sharding.memory_kind for m in moments} == {kind}
        assert (jax.tree.leaves(adam_sh.moment1)[0].memory_kind == "pinned_host") == (kind == "pinned_host")


def test_shard_state_places_an_existing_state():
    opt = jaxopt_ms.adam(0.01)
    params = jax.device_put(PARAMS0, PARAM_SH)
    state = jax.tree.map(np.asarray, opt.init(PARAMS0))  # e.g. restored from a checkpoint
    sh = state_shardings(opt, params, zero1_axis="data")
    placed = shard_state(state, sh)
    assert jax.tree.all(jax.tree.map(lambda x, s: x.sharding.is_equivalent_to(s, x.ndim), placed, sh))


def test_zero1_rule():
    mesh = MESH  # data: 2, model: 4
    assert zero1_spec((6, 4), P(), mesh, "data") == P("data")                   # leading dim divisible
    assert zero1_spec((3, 4), P(), mesh, "data") == P(None, "data")             # else a divisible one
    assert zero1_spec((3, 6, 8), P(), mesh, ("data", "model")) == P(None, None, ("data", "model"))
    assert zero1_spec((3, 5), P(), mesh, "data") == P()                         # else replicated
    assert zero1_spec((8, 4), P("model"), mesh, "data") == P(("model", "data"))  # 8 % (4 * 2) == 0
    assert zero1_spec((4, 6), P("model"), mesh, "data") == P("model", "data")
    assert zero1_spec((8,), P("data"), mesh, "data") == P("data")               # already split (FSDP)
    assert zero1_spec((), P(), mesh, "data") == P()
    with pytest.raises(ValueError, match="zero1_axis"):
        zero1_spec((8,), P(), mesh, "batch")


# --- checkpoints and random problems -------------------------------------------------------------------------------

def _run(step, params, state, grads):
    for g in grads:
        params, state = step(params, state, jax.device_put(g, PARAM_SH_EXPLICIT))
    return params, state


def _zero1_step(opt, state_sh):
    def step(params, state, grads):
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    return jax.jit(step, out_shardings=(PARAM_SH_EXPLICIT, state_sh))


@pytest.mark.parametrize("name", ["adam", "lamb"])
def test_zero1_resume_from_checkpoint_is_bit_identical(tmp_path, name):
    _, factory, kwargs = next(z for z in ZOO if z[0] == name)
    make = lambda: with_zero1_layout(factory(**kwargs), "data")
    params0, half = jax.device_put(PARAMS0, PARAM_SH_EXPLICIT), STEPS // 2
    opt = make()
    state_sh = state_shardings(opt, params0, zero1_axis="data")
    step = _zero1_step(opt, state_sh)
    full = _run(step, params0, sharded_init(opt, params0, zero1_axis="data"), GRADS)
    params, state = _run(step, params0, sharded_init(opt, params0, zero1_axis="data"), GRADS[:half])
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(tmp_path / "ckpt", {"params": params, "opt_state": state})
    checkpointer.wait_until_finished()

    # A fresh optimizer restores straight into its ZeRO-1 layout: the state is never whole on one device.
    opt2 = make()
    state_sh2 = state_shardings(opt2, params0, zero1_axis="data")
    abstract_state = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                                  jax.eval_shape(opt2.init, PARAMS0), state_sh2)
    restored = checkpointer.restore(tmp_path / "ckpt", {
        "params": jax.tree.map(ocp.utils.to_shape_dtype_struct, params0), "opt_state": abstract_state})
    assert jax.tree.all(jax.tree.map(lambda x, s: x.sharding.is_equivalent_to(s, x.ndim), restored["opt_state"],
                                     state_sh2))
    per_device, total = state_bytes_per_device(restored["opt_state"])
    assert max(per_device.values()) <= 1.03 * total / 8
    resumed = _run(_zero1_step(opt2, state_sh2), restored["params"], restored["opt_state"], GRADS[half:])
    assert jax.tree.structure(resumed) == jax.tree.structure(full)
    jax.tree.map(np.testing.assert_array_equal, resumed, full)


SHARDED_FEW = [z for z in ZOO if z[0] in ("sgd", "adam", "lamb")]


@st.composite
def sharded_problems(draw):
    """1-3 leaves of rank 0-3, each replicated or split over 'model' along a dimension divisible by 4; the
    gradients and the ZeRO-1 axis (none, 'data', the whole mesh)."""
    shapes, specs = {}, {}
    for i in range(draw(st.integers(1, 3))):
        shape = tuple(draw(st.lists(st.sampled_from([4, 8, 2, 3, 1]), max_size=3)))
        axis = draw(st.sampled_from([d for d, size in enumerate(shape) if size % 4 == 0] + [None]))
        shapes[f"p{i}"], specs[f"p{i}"] = shape, P() if axis is None else P(*[None] * axis, "model")
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    params0, *grads = [{k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
                       for _ in range(STEPS)]
    zero1_axis = draw(st.sampled_from([None, "data", ("data", "model")]))
    return specs, params0, grads, zero1_axis


# Adam in the default run; the sweep over the others is marked slow (tests/test_sharding.py runs it in CI's slow
# stage).
@pytest.mark.parametrize("name,factory,kwargs", [
    pytest.param(*z, id=z[0], marks=() if z[0] == "adam" else pytest.mark.slow) for z in SHARDED_FEW])
@settings(max_examples=3, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(problem=sharded_problems())
def test_sharded_equals_single_device(name, factory, kwargs, problem):
    specs, params0, grads, zero1_axis = problem
    param_sh = {k: NamedSharding(MESH, spec) for k, spec in specs.items()}
    got, _, _ = on_mesh(factory(**kwargs), param_sh, zero1_axis, init_in_place=True, params0=params0, grads=grads)
    # Lamb's trust ratio is a norm, summed across shards in another order (see the global-reduction test).
    tol = dict(rtol=1e-5, atol=3e-6) if name == "lamb" else {}
    assert_same(got, single_device(factory(**kwargs), params0, grads), f"{name} {specs} {zero1_axis}", **tol)
