"""``optax.inject_hyperparams(factory)(...)``: the inner state has the plain optimizer's tree structure.

Optax's own ``alias_test`` (``test_optimizers_can_be_wrapped_in_inject_hyperparams``) runs each optimizer plain and
wrapped, on a list of two leaves, eagerly and under ``jax.jit`` (``init`` included, so the injected
hyperparameters are traced there too), and asks for equal updates and for ``new_state_inject.inner_state`` to have
the structure and values of the plain optimizer's new state. The same check runs here over the whole family
(``tests/optimizer_zoo.py``) and over the settings whose state used to differ: hyperparameters at the value that
makes a block the identity (weight decay 0, loss scale 1, momentum 0), groups and LARS. Then the use it serves: a
run trained with ``adam(...)`` resumes from its checkpoint under ``inject_hyperparams(adam)(...)``.

The one hyperparameter where the structures cannot agree is AdaFactor's ``beta1`` at 0: MindSpore (and so the
plain optimizer, whose state mirrors MindSpore's) keeps no first moment there, while an injected ``beta1`` may
become > 0 at any update and needs one; that is a ``ValueError`` naming the ways out.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from optimizer_zoo import ZOO

import jaxopt_ms

# value-decides-structure settings (the defaults: weight decay 0, loss scale 1, momentum 0), groups, LARS
EXTRA = [
    ("sgd_defaults", jaxopt_ms.sgd, {}),
    ("momentum_0", jaxopt_ms.momentum, dict(learning_rate=0.1, momentum=0.0)),
    ("rmsprop_defaults", jaxopt_ms.rmsprop, {}),
    ("adam_defaults", jaxopt_ms.adam, dict(use_amsgrad=True)),
    ("adam_loss_scale", jaxopt_ms.adam, dict(learning_rate=0.01, loss_scale=8.0, weight_decay=0.1)),
    ("adam_weight_decay_0", jaxopt_ms.adam_weight_decay, {}),
    ("lamb_defaults", jaxopt_ms.lamb, dict(learning_rate=0.01)),
    ("ftrl_defaults", jaxopt_ms.ftrl, {}),
    ("adagrad_defaults", jaxopt_ms.adagrad, {}),
    ("proximal_adagrad_defaults", jaxopt_ms.proximal_adagrad, {}),
    ("adafactor_beta1_none", jaxopt_ms.adafactor, dict(learning_rate=0.01, relative_step=False, beta1=None)),
    ("adam_groups", jaxopt_ms.adam, dict(learning_rate=0.01, param_groups=[
        {"params": ["0"], "lr": [0.01, 0.02], "weight_decay": 0.1}, {"params": ["1"]}])),
    ("sgd_groups", jaxopt_ms.sgd, dict(learning_rate=0.1, param_groups=[
        {"params": ["1"], "lr": 0.2, "grad_centralization": True}, {"params": ["0"], "weight_decay": 0.01}])),
    ("lars_sgd", jaxopt_ms.lars, dict(optimizer=jaxopt_ms.sgd(0.1))),
]
CONFIGS = ZOO + EXTRA


def _params():
    return [jnp.negative(jnp.ones((2, 3))), jnp.ones((2, 5, 2))]  # optax's alias_test


def _grads():
    return [jnp.ones((2, 3)), jnp.negative(jnp.ones((2, 5, 2)))]


EAGER = {"sgd_defaults", "adam_groups", "adafactor", "lars_sgd"}  # eager too by default; all of them with -m slow
CASES = [pytest.param(*row, True, id=f"{row[0]}-jit") for row in CONFIGS] + [
    pytest.param(*row, False, id=f"{row[0]}-eager", marks=[] if row[0] in EAGER else [pytest.mark.slow])
    for row in CONFIGS]


@pytest.mark.parametrize("name,factory,kwargs,jit", CASES)
def test_inner_state_has_the_plain_structure(name, factory, kwargs, jit):
    variant = jax.jit if jit else (lambda f: f)
    opt = factory(**kwargs)
    opt_inject = optax.inject_hyperparams(factory)(**kwargs)
    params, grads = _params(), _grads()

    state = variant(opt.init)(params)
    updates, new_state = variant(opt.update)(grads, state, params)
    state_inject = variant(opt_inject.init)(params)
    updates_inject, new_state_inject = variant(opt_inject.update)(grads, state_inject, params)

    assert jax.tree.structure(state_inject.inner_state) == jax.tree.structure(state)
    assert jax.tree.structure(new_state_inject.inner_state) == jax.tree.structure(new_state)
    chex.assert_trees_all_close(updates_inject, updates, rtol=1e-4)
    chex.assert_trees_all_close(new_state_inject.inner_state, new_state, rtol=1e-4)


RESUME = [("adam", jaxopt_ms.adam, dict(learning_rate=0.01, weight_decay=0.01)),
          ("sgd", jaxopt_ms.sgd, dict(learning_rate=0.1)),
          ("rmsprop", jaxopt_ms.rmsprop, dict(learning_rate=0.01)),
          ("adafactor", jaxopt_ms.adafactor, dict(learning_rate=0.01, relative_step=False)),
          ("lamb", jaxopt_ms.lamb, dict(learning_rate=0.01))]


@pytest.mark.parametrize("name,factory,kwargs", RESUME, ids=[r[0] for r in RESUME])
def test_plain_checkpoint_resumes_under_inject_hyperparams(name, factory, kwargs):
    """Train plain, checkpoint (the state's leaves), restore into the inject-wrapped optimizer's inner state (a
    checkpointer's restore: the saved leaves unflattened with the target's structure), anneal the rate: the same
    trajectory as the plain optimizer continued with ``set_lr``."""
    params, grads = {"w": jnp.ones((3, 4)), "b": jnp.full(4, 0.5)}, {"w": jnp.full((3, 4), 0.3), "b": jnp.ones(4)}
    plain = factory(**kwargs)
    inject = optax.inject_hyperparams(factory)(**kwargs)
    state, p = plain.init(params), params
    for _ in range(3):
        u, state = jax.jit(plain.update)(grads, state, p)
        p = optax.apply_updates(p, u)
    saved = [np.asarray(x) for x in jax.tree.leaves(state)]

    template = inject.init(p)
    assert jax.tree.structure(template.inner_state) == jax.tree.structure(state)
    restored = template._replace(inner_state=jax.tree.unflatten(jax.tree.structure(template.inner_state), saved))
    restored = jaxopt_ms.set_lr(restored, 0.5 * kwargs["learning_rate"])
    continued = jaxopt_ms.set_lr(state, 0.5 * kwargs["learning_rate"])
    p_inject, p_plain = p, p
    for _ in range(3):
        u, restored = jax.jit(inject.update)(grads, restored, p_inject)
        p_inject = optax.apply_updates(p_inject, u)
        u, continued = jax.jit(plain.update)(grads, continued, p_plain)
        p_plain = optax.apply_updates(p_plain, u)
    chex.assert_trees_all_close(p_inject, p_plain, rtol=1e-6, atol=1e-7)
    assert jax.tree.structure(restored.inner_state) == jax.tree.structure(continued)


def test_adafactor_injected_beta1_zero_is_a_clear_error():
    with pytest.raises(ValueError, match="beta1=None"):
        optax.inject_hyperparams(jaxopt_ms.adafactor)(learning_rate=0.01, relative_step=False,
                                                      beta1=0.0).init(_params())
    # the ways out: no first moment, or a static beta1
    for beta1, tx in ((None, optax.inject_hyperparams(jaxopt_ms.adafactor)(learning_rate=0.01, relative_step=False,
                                                                            beta1=None)),
                      (0.0, optax.inject_hyperparams(jaxopt_ms.adafactor, static_args=("beta1",))(
                          learning_rate=0.01, relative_step=False, beta1=0.0))):
        plain = jaxopt_ms.adafactor(0.01, relative_step=False, beta1=beta1)
        assert jax.tree.structure(tx.init(_params()).inner_state) == jax.tree.structure(plain.init(_params()))
