"""Row-sparse optimizer step vs the dense path on an embedding table.

A ``rows x dim`` float32 table (default 1,000,000 x 64) of which ``touched`` rows (default 1,024, with duplicates
as a real batch has) get a gradient per step. Timed: one optimizer step (``opt.update`` + ``optax.apply_updates``,
jitted, parameters and state donated so that XLA may update them in place), with

* sparse: the gradient is a ``jaxopt_ms.sparse.RowSparse`` of the touched rows;
* dense:  the same gradient as a dense table (what ``jax.grad`` of the lookup gives).

for ``lazy_adam`` (lazy rows vs dense Adam), ``ftrl`` and ``proximal_adagrad`` (lazy rows vs their dense rules) and
``adam`` (MindSpore's non-lazy sparse Adam, which decays every
row's moments, so it is table-sized by definition: it densifies the gradient with one scatter, then runs the dense
update). The memory traffic per
step is computed from the shapes (bytes read + written by the update, not counting the indices' sort).

Run from the repository root (prints a Markdown table; ``--out`` also writes it to a file, e.g. the committed
``benchmarks/results/sparse_embedding.md``):
    PYTHONPATH=. python benchmarks/sparse_embedding.py [--rows 1000000 --dim 64 --touched 1024]
        [--out benchmarks/results/sparse_embedding.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxopt_ms
from jaxopt_ms.sparse import RowSparse, densify


def make_step(opt):
    def step(params, state, grads):
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    return jax.jit(step, donate_argnums=(0, 1))


def time_steps(step, params, state, grads_seq, repeats):
    params, state = step(params, state, grads_seq[0])  # compile + warm up
    jax.block_until_ready((params, state))
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        params, state = step(params, state, grads_seq[i % len(grads_seq)])
        jax.block_until_ready((params, state))
        times.append(time.perf_counter() - t0)
    return (float(np.min(times)), float(np.median(times))), params


def traffic(rows, dim, touched, kind, slots=2):
    """Bytes read + written by one update (float32 arrays, int32 indices); ``slots``: state arrays per param."""
    table = rows * dim * 4
    entries = touched * dim * 4
    idx = touched * 4
    if kind == "lazy_sparse":  # read g entries + indices; gather param and slot rows; write them back
        return idx + entries + 2 * (1 + slots) * entries
    if kind == "adam_sparse":  # write the densified gradient (zeros + scatter), then the dense update
        return table + idx + entries + (3 + 2 * slots) * table
    return (3 + 2 * slots) * table  # dense: read g, param, slots; write param, slots


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--touched", type=int, default=1024)
    ap.add_argument("--sparse-repeats", type=int, default=50)
    ap.add_argument("--dense-repeats", type=int, default=5)
    ap.add_argument("--out", default=None, help="also write the table to this file (default: print it only)")
    args = ap.parse_args()

    rng = np.random.RandomState(0)
    shape = (args.rows, args.dim)
    seq = []
    for _ in range(4):
        idx = rng.randint(0, args.rows, size=args.touched).astype(np.int32)
        idx[-8:] = idx[:8]  # duplicates, as a batch of ids has
        seq.append({"emb": RowSparse(jnp.asarray(idx), jnp.asarray(rng.randn(args.touched, args.dim), jnp.float32),
                                     shape)})
    dense_seq = [densify(g) for g in seq[:2]]
    jax.block_until_ready(dense_seq)

    rows_out = []
    for name, make, sparse_kind, slots in [
        ("lazy_adam", lambda: jaxopt_ms.lazy_adam(1e-3), "lazy_sparse", 2),
        ("ftrl", lambda: jaxopt_ms.ftrl(learning_rate=0.1, l1=1e-3), "lazy_sparse", 2),
        ("proximal_adagrad", lambda: jaxopt_ms.proximal_adagrad(learning_rate=0.1, l1=1e-3), "lazy_sparse", 1),
        ("adam", lambda: jaxopt_ms.adam(1e-3), "adam_sparse", 2),
    ]:
        opt = make()
        results = {}
        for kind, grads, repeats in [("sparse", seq, args.sparse_repeats), ("dense", dense_seq, args.dense_repeats)]:
            params = {"emb": jnp.asarray(rng.randn(*shape), jnp.float32)}
            state = opt.init(params)
            results[kind], _ = time_steps(make_step(opt), params, state, grads, repeats)
            del params, state
        (t_sparse, m_sparse), (t_dense, m_dense) = results["sparse"], results["dense"]
        b_sparse = traffic(*shape, args.touched, sparse_kind, slots)
        b_dense = traffic(*shape, args.touched, "dense", slots)
        rows_out.append((name, t_sparse, m_sparse, t_dense, m_dense, b_sparse, b_dense))
        print(f"{name}: sparse {t_sparse * 1e3:.3f} ms (median {m_sparse * 1e3:.3f}), dense {t_dense * 1e3:.1f} ms "
              f"(median {m_dense * 1e3:.1f}), speed-up {t_dense / t_sparse:.2f}x (medians {m_dense / m_sparse:.2f}x); "
              f"traffic sparse {b_sparse / 2**20:.2f} MiB, dense {b_dense / 2**20:.0f} MiB", flush=True)

    device = jax.devices()[0]
    lines = [
        "# Row-sparse step vs dense step on an embedding table",
        "",
        f"Table {args.rows:,} x {args.dim} float32, {args.touched:,} touched rows per step (with duplicates). "
        "One jitted optimizer step (`opt.update` + `optax.apply_updates`, parameters and state donated), best and "
        f"median of {args.sparse_repeats} (sparse) / {args.dense_repeats} (dense) steps; the speed-up is the ratio "
        f"of the bests (the machine is shared, so medians are noisier). Device: {device.platform} "
        f"({device.device_kind}), {os.cpu_count()} CPU cores, jax {jax.__version__}, {platform.machine()}.",
        "Traffic = bytes read + written by the update, computed from the shapes (float32 values, int32 indices).",
        "",
        "| optimizer | sparse step, best / median (ms) | dense step, best / median (ms) | speed-up (best; medians) "
        "| traffic sparse (MiB) | traffic dense (MiB) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, ts, ms, td, md, bs, bd in rows_out:
        ratio, ratio_m = td / ts, md / ms
        digits, digits_m = (0 if ratio >= 10 else 2), (0 if ratio_m >= 10 else 2)
        lines.append(f"| {name} | {ts * 1e3:.3f} / {ms * 1e3:.3f} | {td * 1e3:.1f} / {md * 1e3:.1f} "
                     f"| {ratio:.{digits}f}x; {ratio_m:.{digits_m}f}x | {bs / 2**20:.2f} | {bd / 2**20:.0f} |")
    lines += [
        "",
        "`adam` with a RowSparse gradient is MindSpore's non-lazy sparse Adam: every row's moments decay, so its",
        "step reads and writes the whole table and its moments by definition (it scatters the gradient into a dense",
        "buffer, then runs the dense update; the dense column is given the dense gradient for free).",
        "`lazy_adam`, `ftrl` and `proximal_adagrad` touch the rows of the gradient only: their cost grows with the",
        "touched rows, not the table.",
        "",
        "Reproduce: `PYTHONPATH=. python benchmarks/sparse_embedding.py`",
        "",
    ]
    print("\n".join(lines))
    if args.out:
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        with open(args.out, "w") as f:
            f.write("\n".join(lines))
        print(f"written to {args.out}")


if __name__ == "__main__":
    main()
