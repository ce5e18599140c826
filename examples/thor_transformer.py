"""A small transformer encoder trained with THOR, AdamWeightDecay and Lamb (the notebook ``notebooks/thor.ipynb``,
second part, as a script).

The task: scikit-learn's digits read as sequences of 64 pixel tokens (intensity 0..16), classified from the
mean-pooled output of one pre-LN encoder block. Token and position embeddings are registered with
``jaxopt_ms.register_embedding``, every projection with ``register_dense``; the LayerNorm parameters get THOR's
diagonal rule.

    python examples/thor_transformer.py                        # 150 steps of each optimizer
    python examples/thor_transformer.py --row-sparse --plot loss.png
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxopt_ms
from jaxopt_ms import register_dense, register_embedding, value_grad_and_statistics

SEQ, WIDTH, HEADS, FFN, VOCAB, CLASSES, BATCH = 64, 32, 2, 64, 17, 10, 32
POSITIONS = np.arange(SEQ, dtype=np.int32)


def load_tokens(seed: int = 0):
    """Digits as token sequences: ``(train_ids, train_labels, test_ids, test_labels)``."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    ids = digits.images.reshape(len(digits.images), SEQ).astype(np.int32)   # intensities 0..16
    return train_test_split(ids, digits.target.astype(np.int32), test_size=0.2, random_state=seed,
                            stratify=digits.target)


def init_params(key):
    k = jax.random.split(key, 9)
    dense = lambda key, n_in, n_out: {"kernel": jax.random.normal(key, (n_in, n_out)) / np.sqrt(n_in),
                                      "bias": jnp.zeros(n_out)}
    norm = lambda: {"gamma": jnp.ones(WIDTH), "beta": jnp.zeros(WIDTH)}
    return {
        "tok": {"table": 0.5 * jax.random.normal(k[0], (VOCAB, WIDTH))},
        "pos": {"table": 0.5 * jax.random.normal(k[1], (SEQ, WIDTH))},
        "ln1": norm(), "q": dense(k[2], WIDTH, WIDTH), "k": dense(k[3], WIDTH, WIDTH), "v": dense(k[4], WIDTH, WIDTH),
        "o": dense(k[5], WIDTH, WIDTH), "ln2": norm(), "ff1": dense(k[6], WIDTH, FFN), "ff2": dense(k[7], FFN, WIDTH),
        "ln3": norm(), "cls": dense(k[8], WIDTH, CLASSES),
    }


def layer_norm(h, p):
    mu = h.mean(-1, keepdims=True)
    return (h - mu) / jnp.sqrt(((h - mu) ** 2).mean(-1, keepdims=True) + 1e-5) * p["gamma"] + p["beta"]


def dense(h, p):
    return register_dense(h, p["kernel"], p["bias"])


def encode(params, ids):
    """Logits ``(n, CLASSES)`` of the token sequences ``ids`` ``(n, SEQ)``."""
    n = ids.shape[0]
    h = register_embedding(ids, params["tok"]["table"]) + register_embedding(POSITIONS, params["pos"]["table"])
    h = h.reshape(n * SEQ, WIDTH)
    a = layer_norm(h, params["ln1"])
    split = lambda t: t.reshape(n, SEQ, HEADS, WIDTH // HEADS)
    q, k, v = (split(dense(a, params[name])) for name in ("q", "k", "v"))
    weights = jax.nn.softmax(jnp.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(WIDTH // HEADS), axis=-1)
    h = h + dense(jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(n * SEQ, WIDTH), params["o"])
    h = h + dense(jax.nn.gelu(dense(layer_norm(h, params["ln2"]), params["ff1"])), params["ff2"])
    return dense(layer_norm(h, params["ln3"]).reshape(n, SEQ, WIDTH).mean(1), params["cls"])


def loss_fn(params, batch):
    return optax.softmax_cross_entropy_with_integer_labels(encode(params, batch[0]), batch[1]).mean()


def is_norm(name: str, _) -> bool:
    return name.startswith("ln")


def decayed(name: str, _) -> bool:
    return not (name.startswith("ln") or name.endswith("bias"))


def make_optimizers(steps: int, params, batch) -> dict:
    """Settings from a small search over 150 steps (see the notebook)."""
    shapes = jaxopt_ms.thor_layers.statistics_shapes(loss_fn, params, batch)
    return {
        "THOR": jaxopt_ms.thor(jnp.full(steps, 0.05), jnp.full(steps, 0.1), 0.9, weight_decay=1e-4,
                               batch_size=BATCH, frequency=10, decay_filter=decayed, layer_norm_filter=is_norm,
                               layers=shapes),
        "AdamWeightDecay": jaxopt_ms.adam_weight_decay(3e-3, weight_decay=1e-4, decay_filter=decayed),
        "Lamb": jaxopt_ms.lamb(1e-2, weight_decay=1e-4, decay_filter=decayed),
    }


def train(opt, use_thor: bool, data, steps: int, seed: int = 0, row_sparse: bool = False):
    """Returns ``(losses, wall_times, test_accuracy)``; wall time counted after compilation."""
    x_train, x_test, y_train, y_test = data

    @jax.jit
    def step(params, state, batch):
        if use_thor:
            loss, grads, stats = value_grad_and_statistics(
                loss_fn, params, batch, row_sparse=row_sparse, compute_statistics=jaxopt_ms.thor_refresh_due(state))
            updates, state = opt.update(grads, state, params, statistics=stats)
        else:
            loss, grads = jax.value_and_grad(loss_fn)(params, batch)
            updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    params = init_params(jax.random.key(seed))
    state = opt.init(params)
    rng = np.random.default_rng(seed)
    batches = [rng.choice(len(x_train), BATCH, replace=False) for _ in range(steps)]
    jax.block_until_ready(step(params, state, (x_train[batches[0]], y_train[batches[0]])))   # compile
    losses, times, start = [], [], time.perf_counter()
    for idx in batches:
        params, state, loss = step(params, state, (x_train[idx], y_train[idx]))
        losses.append(float(loss))
        times.append(time.perf_counter() - start)
    accuracy = float(jnp.mean(jnp.argmax(encode(params, x_test), -1) == y_test))
    return np.array(losses), np.array(times), accuracy


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--optimizers", default="THOR,AdamWeightDecay,Lamb")
    parser.add_argument("--row-sparse", action="store_true", help="row-sparse embedding gradients for THOR")
    parser.add_argument("--plot", help="write the loss curves to this image file")
    args = parser.parse_args(argv)
    data = load_tokens()
    optimizers = make_optimizers(args.steps, init_params(jax.random.key(0)), (data[0][:BATCH], data[2][:BATCH]))
    runs = {}
    for name in args.optimizers.split(","):
        losses, times, accuracy = train(optimizers[name], name == "THOR", data, args.steps, row_sparse=args.row_sparse)
        runs[name] = (losses, times, accuracy)
        tail = losses[-min(20, len(losses)):].mean()
        print(f"{name:16s} loss {losses[0]:.3f} -> {tail:.3f} (mean of the last 20 steps)  test accuracy "
              f"{accuracy:.3f}  {times[-1] / args.steps * 1e3:.1f} ms/step")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
        for name, (losses, times, _) in runs.items():
            ax1.plot(losses, label=name)
            ax2.plot(times, losses, label=name)
        ax1.set(xlabel="step", ylabel="training loss", yscale="log")
        ax2.set(xlabel="wall time after compilation (s)", ylabel="training loss", yscale="log")
        ax1.legend()
        fig.tight_layout()
        fig.savefig(args.plot)
    return runs


if __name__ == "__main__":
    main()
