"""adam_offload: MindSpore AdamOffload parity (fixtures), bit-identical to adam, state in host memory.

On a CPU backend the default (``on_host=None``) keeps the state in device memory (the same RAM); ``on_host=True``
forces the host-memory path (pinned_host state, update computed on the host), which is what runs on a GPU.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from parity import assert_trajectory, case_paths, load_case, run_trajectory

import jaxopt_ms
from jaxopt_ms._compat import compute_on_host, jit_keeps_host_memory
from jaxopt_ms.transforms import offload

CASES = case_paths("adam_offload")


def _from_config(config: dict):
    kwargs = dict(config["kwargs"])
    groups = config.get("groups")
    if groups:
        kwargs["param_groups"] = [dict({k: v for k, v in g.items() if k != "names"}, params=g["names"])
                                  for g in groups]
    return kwargs


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.rsplit("/", 1)[-1][:-4])
@pytest.mark.parametrize("on_host", [None, True], ids=["default", "on_host"])
def test_matches_mindspore(path, on_host):
    case = load_case(path)
    jit = not ("defaults" in path and on_host)  # one case step by step without jit, on the host path
    opt = jaxopt_ms.adam_offload(**_from_config(case.config), on_host=on_host)
    assert_trajectory(run_trajectory(opt, case.params0, case.grads, jit=jit), case.traj, label=case.name)


def test_fixtures_present():
    assert len(CASES) >= 4


SHAPES = {"conv1.weight": (4, 16, 3, 3), "fc.weight": (5, 32), "fc.bias": (5,), "bn1.gamma": (4,), "bn1.beta": (4,)}
RNG = np.random.default_rng(0)
PARAMS = {k: RNG.standard_normal(s).astype(np.float32) for k, s in SHAPES.items()}
GRADS = [{k: RNG.standard_normal(s).astype(np.float32) for k, s in SHAPES.items()} for _ in range(6)]

OPTIONS = {
    "defaults": {},
    "eps_beta2_loss_scale_wd": dict(learning_rate=0.05, beta2=0.8, eps=0.1, weight_decay=0.01, loss_scale=8.0),
    "nesterov_int_wd_filter": dict(beta1=0.5, use_nesterov=True, weight_decay=1, use_locking=True,
                                   decay_filter=lambda name, leaf: leaf.ndim > 1),
    "lr_schedule_dynamic_wd": dict(learning_rate=optax.exponential_decay(0.05, 2, 0.5),
                                   weight_decay=lambda step: 0.01 / (1.0 + step)),
    "groups": dict(learning_rate=0.02, loss_scale=4.0, param_groups=[
        {"params": r"^conv|^fc\.weight", "weight_decay": 0.05},
        {"params": ["fc.bias", "bn1.gamma"], "lr": [0.1, 0.05, 0.02, 0.01, 0.01, 0.01]},
    ]),  # bn1.beta is in no group: not updated
}


@pytest.mark.parametrize("option", list(OPTIONS))
def test_identical_to_adam(option):
    kwargs = OPTIONS[option]
    got = run_trajectory(jaxopt_ms.adam_offload(**kwargs, on_host=True), PARAMS, GRADS)
    expected = run_trajectory(jaxopt_ms.adam(**kwargs), PARAMS, GRADS)
    for g, e in zip(got, expected):
        jax.tree.map(np.testing.assert_array_equal, g, e)
    assert not np.array_equal(got[-1]["fc.weight"], PARAMS["fc.weight"])


def test_adam_use_offload_is_adam_offload():
    opt = jaxopt_ms.adam(0.01, eps=1e-3, use_offload=True, weight_decay=0.01)
    expected_kind = "pinned_host" if offload.offloads(None) else jax.devices()[0].default_memory().kind
    assert {m.sharding.memory_kind for m in jax.tree.leaves(_adam_states(opt.init(PARAMS))[0].moment1)} == {
        expected_kind}
    got = run_trajectory(opt, PARAMS, GRADS)
    expected = run_trajectory(jaxopt_ms.adam_offload(0.01, eps=1e-3, weight_decay=0.01), PARAMS, GRADS)
    jax.tree.map(np.testing.assert_array_equal, got, expected)


def test_grad_centralization_is_ignored_like_mindspore():
    groups = [{"params": lambda name, leaf: True, "grad_centralization": True}]
    with pytest.warns(UserWarning, match="ignores 'grad_centralization'"):
        opt = jaxopt_ms.adam_offload(0.01, param_groups=groups, on_host=True)
    expected = run_trajectory(jaxopt_ms.adam(0.01, param_groups=[{"params": lambda name, leaf: True}]),
                              PARAMS, GRADS)
    jax.tree.map(np.testing.assert_array_equal, run_trajectory(opt, PARAMS, GRADS), expected)


def _adam_states(state):
    return [s for s in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, jaxopt_ms.transforms.ScaleByAdamState))
            if isinstance(s, jaxopt_ms.transforms.ScaleByAdamState)]


@pytest.mark.parametrize("jit,on_host", [(True, None), (True, True), (True, False), (False, True)])
def test_moments_live_in_host_memory_where_the_backend_has_it(jit, on_host):
    device = jax.devices()[0]
    kinds = {m.kind for m in device.addressable_memories()}
    # pinned_host where the backend has it and jit keeps arrays there (CPU: from jax 0.10.2; jaxopt_ms._compat).
    usable = jit_keeps_host_memory()
    assert usable <= ("pinned_host" in kinds)
    assert offload.host_memory_kind() == ("pinned_host" if usable else None)
    accelerator = device.platform != "cpu"
    to_host = usable and (on_host is True or (on_host is None and accelerator))
    assert offload.offloads(on_host) == to_host
    expected_kind = "pinned_host" if to_host else device.default_memory().kind
    opt = jaxopt_ms.adam_offload(0.01, param_groups=OPTIONS["groups"]["param_groups"], on_host=on_host)
    init = jax.jit(opt.init) if jit else opt.init
    update = jax.jit(opt.update) if jit else opt.update
    params = jax.tree.map(jnp.asarray, PARAMS)
    state = init(params)
    for _ in range(2):
        updates, state = update(GRADS[0], state, params)
        params = optax.apply_updates(params, updates)
        adam_states = _adam_states(state)
        assert len(adam_states) == 2
        for s in adam_states:
            for m in jax.tree.leaves((s.moment1, s.moment2)):
                assert m.sharding.memory_kind == expected_kind
            assert s.beta1_power.sharding.memory_kind == jax.devices()[0].default_memory().kind
        for u in jax.tree.leaves(updates):  # the parameter update happens in device memory
            assert u.sharding.memory_kind == jax.devices()[0].default_memory().kind


def test_backend_without_host_memory_keeps_state_on_device(monkeypatch):
    monkeypatch.setattr(offload, "host_memory_kind", lambda device=None: None)
    opt = jaxopt_ms.adam_offload(0.05, eps=0.1, loss_scale=2.0, on_host=True)
    state = opt.init(PARAMS)
    default = jax.devices()[0].default_memory().kind
    assert {m.sharding.memory_kind for m in jax.tree.leaves(_adam_states(state)[0].moment1)} == {default}
    expected = run_trajectory(jaxopt_ms.adam(0.05, eps=0.1, loss_scale=2.0), PARAMS, GRADS)
    jax.tree.map(np.testing.assert_array_equal, run_trajectory(opt, PARAMS, GRADS), expected)


def test_inside_optax_chain_and_with_overflow_skipping():
    def make(inner):
        return optax.chain(optax.clip_by_global_norm(1.0), optax.apply_if_finite(inner, 2))

    grads = [dict(g) for g in GRADS]
    grads[2] = dict(grads[2], **{"fc.bias": np.full((5,), np.inf, np.float32)})  # a skipped step
    got = run_trajectory(make(jaxopt_ms.adam_offload(0.01, loss_scale=4.0, on_host=True)), PARAMS, grads)
    expected = run_trajectory(make(jaxopt_ms.adam(0.01, loss_scale=4.0)), PARAMS, grads)
    jax.tree.map(np.testing.assert_array_equal, got, expected)
    jax.tree.map(np.testing.assert_array_equal, got[2], got[1])


@pytest.mark.parametrize("wrapper", ["fixed", "fixed_no_drop", "dynamic"])
def test_inside_loss_scale_wrappers(wrapper):
    from jaxopt_ms.loss_scale import dynamic_loss_scale, fixed_loss_scale

    wrap = {"fixed": lambda opt: fixed_loss_scale(opt, 128.0),
            "fixed_no_drop": lambda opt: fixed_loss_scale(opt, 128.0, drop_overflow_update=False),
            "dynamic": lambda opt: dynamic_loss_scale(opt, 2.0 ** 10, 2, 2)}[wrapper]
    grads = [jax.tree.map(lambda g: 128.0 * g, g) for g in GRADS]
    grads[2] = dict(grads[2], **{"fc.bias": np.full((5,), np.inf, np.float32)})  # an overflow
    if wrapper == "fixed_no_drop":
        grads[2] = grads[1]  # without dropping, a non-finite step would poison both runs alike
    got = run_trajectory(wrap(jaxopt_ms.adam_offload(0.01, eps=1e-3, on_host=True)), PARAMS, grads)
    expected = run_trajectory(wrap(jaxopt_ms.adam(0.01, eps=1e-3)), PARAMS, grads)
    jax.tree.map(np.testing.assert_array_equal, got, expected)


def test_learning_rate_can_be_read_and_changed():
    opt = jaxopt_ms.adam_offload(0.01, on_host=True)
    state = opt.init(PARAMS)
    assert float(jaxopt_ms.current_lr(state)) == pytest.approx(0.01)
    state = jaxopt_ms.set_lr(state, 0.5)
    updates, _ = jax.jit(opt.update)(GRADS[0], state, PARAMS)
    ref = jaxopt_ms.adam(0.01)
    ref_updates, _ = ref.update(GRADS[0], jaxopt_ms.set_lr(ref.init(PARAMS), 0.5), PARAMS)
    jax.tree.map(np.testing.assert_array_equal, updates, ref_updates)


@pytest.mark.parametrize("kwargs,error", [
    (dict(beta1=1), TypeError), (dict(beta2=1.0), ValueError), (dict(eps=0.0), ValueError),
    (dict(eps=1), TypeError), (dict(use_locking=1), TypeError), (dict(use_nesterov="no"), TypeError),
    (dict(weight_decay=-0.1), ValueError), (dict(loss_scale=0.0), ValueError), (dict(learning_rate=-1.0), ValueError),
    (dict(on_host=1), TypeError),
])
def test_validation_is_mindspores(kwargs, error):
    with pytest.raises(error, match="AdamOffload"):
        jaxopt_ms.adam_offload(**kwargs)


def test_int_weight_decay_is_accepted_unlike_lazy_adam():
    jaxopt_ms.adam_offload(weight_decay=1)
    with pytest.raises(TypeError):
        jaxopt_ms.lazy_adam(weight_decay=1)


def test_compute_on_host_gives_the_function_s_numbers_in_host_memory():
    # Both spellings of compute_on (jaxopt_ms._compat): the installed JAX's, eager and inside jit.
    f = jax.jit(lambda x, y: (x * y + 1.0, {"s": jnp.sqrt(y)}))
    x, y = jnp.arange(4.0), jnp.full(4, 2.0)
    expected_kind = "pinned_host" if jit_keeps_host_memory() else jax.devices()[0].default_memory().kind
    on_host = compute_on_host(f)
    for got in (on_host(offload.to_host(x), offload.to_host(y)), jax.jit(on_host)(x, y)):
        jax.tree.map(np.testing.assert_array_equal, got, f(x, y))
        assert {leaf.sharding.memory_kind for leaf in jax.tree.leaves(got)} == {expected_kind}
