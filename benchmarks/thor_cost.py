"""Cost of a THOR step that refreshes its inverses vs an ordinary (stale-inverse) step, vs Momentum, on CPU.

Two models: a LeNet-style CNN on 8x8 images (all factors < 128: one block each) and an MLP with 512-wide
layers (factors split into 128-blocks). Each step is one jitted call: forward + backward (+ statistics on
refresh steps) + optimizer update. Run from the repository root::

    PYTHONPATH=. python benchmarks/thor_cost.py [--repeats 50]

The Cholesky factorisations and triangular solves of a refresh go to LAPACK (OpenBLAS on CPU). OpenBLAS's worker
threads spin while they wait, so on a CPU shared with other processes a refresh can take 50x longer than its
arithmetic; the script therefore uses one OpenBLAS thread unless ``OPENBLAS_NUM_THREADS`` is set.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before jax loads LAPACK

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxopt_ms
from jaxopt_ms import register_conv2d, register_dense, thor_layers, value_grad_and_statistics


def lenet():
    k = jax.random.split(jax.random.key(0), 5)
    params = {
        "conv1": {"kernel": jax.random.normal(k[0], (5, 5, 1, 6)) * 0.3, "bias": jnp.zeros(6)},
        "conv2": {"kernel": jax.random.normal(k[1], (3, 3, 6, 16)) * 0.2, "bias": jnp.zeros(16)},
        "fc1": {"kernel": jax.random.normal(k[2], (64, 120)) * 0.1, "bias": jnp.zeros(120)},
        "fc2": {"kernel": jax.random.normal(k[3], (120, 84)) * 0.1, "bias": jnp.zeros(84)},
        "fc3": {"kernel": jax.random.normal(k[4], (84, 10)) * 0.1, "bias": jnp.zeros(10)},
    }
    pool = lambda h: jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")

    def apply(p, x):
        h = pool(jax.nn.relu(register_conv2d(x, p["conv1"]["kernel"], p["conv1"]["bias"])))
        h = pool(jax.nn.relu(register_conv2d(h, p["conv2"]["kernel"], p["conv2"]["bias"])))
        h = jax.nn.relu(register_dense(h.reshape(h.shape[0], -1), p["fc1"]["kernel"], p["fc1"]["bias"]))
        h = jax.nn.relu(register_dense(h, p["fc2"]["kernel"], p["fc2"]["bias"]))
        return register_dense(h, p["fc3"]["kernel"], p["fc3"]["bias"])

    x = np.random.default_rng(0).normal(size=(32, 8, 8, 1)).astype(np.float32)
    return params, apply, x


def mlp(width: int = 512, depth: int = 3):
    keys = jax.random.split(jax.random.key(1), depth + 1)
    dims = [256] + [width] * depth + [10]
    params = {f"fc{i}": {"kernel": jax.random.normal(keys[i], (dims[i], dims[i + 1])) / np.sqrt(dims[i]),
                         "bias": jnp.zeros(dims[i + 1])} for i in range(depth + 1)}

    def apply(p, x):
        for i in range(depth + 1):
            x = register_dense(x, p[f"fc{i}"]["kernel"], p[f"fc{i}"]["bias"])
            x = jax.nn.relu(x) if i < depth else x
        return x

    x = np.random.default_rng(0).normal(size=(128, 256)).astype(np.float32)
    return params, apply, x


def timed(fn, *args, repeats: int) -> float:
    """Best of ``repeats`` calls: the minimum is the estimate least disturbed by other processes."""
    out = fn(*args)
    jax.block_until_ready(out)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return float(np.min(times))


def bench(name: str, params, apply, x, repeats: int) -> None:
    labels = np.arange(len(x)) % 10
    batch = (x, labels)
    loss_fn = lambda p, b: optax.softmax_cross_entropy_with_integer_labels(apply(p, b[0]), b[1]).mean()
    layers = thor_layers.statistics_shapes(loss_fn, params, batch)
    thor = jaxopt_ms.thor(jnp.asarray(0.01), jnp.asarray(0.3), 0.9, batch_size=len(x), frequency=10,
                          layers=layers)
    momentum = jaxopt_ms.momentum(0.01, 0.9)

    @jax.jit
    def thor_step(p, state, b):
        _, grads, stats = value_grad_and_statistics(loss_fn, p, b,
                                                    compute_statistics=jaxopt_ms.thor_refresh_due(state))
        updates, state = thor.update(grads, state, p, statistics=stats)
        return optax.apply_updates(p, updates), state

    @jax.jit
    def momentum_step(p, state, b):
        grads = jax.grad(loss_fn)(p, b)
        updates, state = momentum.update(grads, state, p)
        return optax.apply_updates(p, updates), state

    refresh_state = thor.init(params)                        # count 0: refresh due
    _, stale_state = thor_step(params, refresh_state, batch)  # count 1: stale inverses
    t_refresh = timed(thor_step, params, refresh_state, batch, repeats=repeats)
    t_stale = timed(thor_step, params, stale_state, batch, repeats=repeats)
    t_momentum = timed(momentum_step, params, momentum.init(params), batch, repeats=repeats)
    dims = {n: (s.a.shape[0], s.g.shape[0]) for n, s in layers.items()}
    print(f"{name}: factor sizes (A, G) {dims}; best of {repeats} calls")
    print(f"  momentum step      {t_momentum * 1e3:8.3f} ms")
    print(f"  THOR ordinary step {t_stale * 1e3:8.3f} ms  ({t_stale / t_momentum:.1f}x momentum)")
    print(f"  THOR refresh step  {t_refresh * 1e3:8.3f} ms  ({t_refresh / t_stale:.1f}x an ordinary THOR step)")
    print(f"  amortised over frequency=10: {(t_refresh + 9 * t_stale) / 10 * 1e3:.3f} ms/step")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    print(f"jax {jax.__version__}, backend {jax.default_backend()}, {os.cpu_count()} CPUs, "
          f"OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}")
    bench("LeNet-style CNN, batch 32, 8x8x1", *lenet(), repeats=args.repeats)
    bench("MLP 256-512-512-512-10, batch 128", *mlp(), repeats=args.repeats)


if __name__ == "__main__":
    main()
