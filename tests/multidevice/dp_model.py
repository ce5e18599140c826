"""A small MLP trained data-parallel, shared by the two-process test's workers and its single-process reference."""

from __future__ import annotations

import numpy as np

STEPS = 6
BATCH = 32
SIZES = (12, 16, 3)


def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    x = rng.standard_normal((STEPS, BATCH, SIZES[0])).astype(np.float32)
    y = rng.integers(0, SIZES[-1], (STEPS, BATCH)).astype(np.int32)
    return x, y


def init_params() -> dict:
    rng = np.random.default_rng(3)
    return {f"dense{i}": {"weight": (rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32),
                          "bias": np.zeros((b,), np.float32)}
            for i, (a, b) in enumerate(zip(SIZES[:-1], SIZES[1:]))}


def loss(params, x, y):
    import jax
    import jax.numpy as jnp

    h = x
    for i in range(len(SIZES) - 1):
        h = h @ params[f"dense{i}"]["weight"] + params[f"dense{i}"]["bias"]
        if i < len(SIZES) - 2:
            h = jnp.tanh(h)
    logp = jax.nn.log_softmax(h)
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))


def optimizer():
    import jaxopt_ms

    return jaxopt_ms.adam(0.05, eps=1e-6, weight_decay=0.01, loss_scale=2.0)


def train(params, state, opt, batches, step_fn=None):
    """Runs the training steps; ``batches`` yields ``(x, y)``; returns the final params."""
    import jax
    import optax

    def step(params, state, x, y):
        grads = jax.grad(loss)(params, x, y)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    step = step_fn(step) if step_fn else jax.jit(step)
    for x, y in batches:
        params, state = step(params, state, x, y)
    return params
