"""What parameter groups cost per step: many small leaves, grouped against ungrouped, and optax.

A pytree of ``--leaves`` float32 leaves of ``--size`` elements (default 5000 x 8). Timed: one jitted optimizer
step (``opt.update`` + ``optax.apply_updates``, parameters and state donated), for

* ``ungrouped``: ``jaxopt_ms.adam(1e-3, weight_decay=1e-4, decay_filter=even)``, decay on every other leaf;
* ``grouped``:   the same numbers as two parameter groups (``weight_decay`` 1e-4 on the even leaves, 0 on the
  odd ones): MindSpore's way of saying it;
* ``optax.partition``: the same two groups as ``optax.partition`` of two ``jaxopt_ms.adam`` chains, the layout
  group mode had before (each group's state with an ``optax.MaskedNode`` per leaf of the other group);
* ``optax``:     ``optax.adamw(1e-3, weight_decay=1e-4, mask=even)``.

On many small leaves a step's time is mostly per-leaf dispatch (flattening the state pytree into the call and
rebuilding it from the results), so it shows what a group's bookkeeping costs per leaf. That host-side pytree work
is also timed on its own (``jax.tree.flatten`` of the state plus ``unflatten`` of its leaves, best of
``--pytree-repeats``): it is what the state's layout decides, and it is far less sensitive to a busy machine than
the whole step. The machine may be shared:
the variants are timed in interleaved rounds and each reports its best round (``--rounds``, each the median of
``--steps`` steps), and the ratios come from the same run.

Run from the repository root (prints a Markdown table; ``--out`` also writes it):
    PYTHONPATH=. python benchmarks/groups.py [--leaves 5000 --size 8 --rounds 15 --steps 10] [--out FILE]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import optax

import jaxopt_ms


def _even(name: str, leaf=None) -> bool:
    return int(name[1:]) % 2 == 0


def _variants() -> dict[str, optax.GradientTransformation]:
    return {
        "ungrouped": jaxopt_ms.adam(1e-3, weight_decay=1e-4, decay_filter=_even),
        "grouped": jaxopt_ms.adam(1e-3, param_groups=[{"params": _even, "weight_decay": 1e-4},
                                                      {"params": lambda n, x: not _even(n), "weight_decay": 0.0}]),
        "optax.partition": optax.partition(
            {"decay": jaxopt_ms.adam(1e-3, weight_decay=1e-4, decay_filter=jaxopt_ms.decay_all),
             "no_decay": jaxopt_ms.adam(1e-3)},
            lambda p: {k: "decay" if _even(k) else "no_decay" for k in p}),
        "optax": optax.adamw(1e-3, weight_decay=1e-4, mask=lambda p: {k: _even(k) for k in p}),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--leaves", type=int, default=5000)
    parser.add_argument("--size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--pytree-repeats", type=int, default=200)
    parser.add_argument("--out", default=None, help="also write the Markdown table to this file")
    args = parser.parse_args(argv)

    params = {f"l{i}": jnp.full((args.size,), 0.5, jnp.float32) for i in range(args.leaves)}
    grads = jax.tree.map(lambda p: p * 0.1, params)
    runs = {}
    for name, opt in _variants().items():
        def step(p, s, g, opt=opt):
            u, s = opt.update(g, s, p)
            return optax.apply_updates(p, u), s

        fn = jax.jit(step, donate_argnums=(0, 1))
        p = jax.tree.map(jnp.copy, params)
        s = opt.init(p)
        t0 = time.perf_counter()
        p, s = fn(p, s, grads)
        jax.block_until_ready(p)
        runs[name] = {"fn": fn, "p": p, "s": s, "first_s": time.perf_counter() - t0, "best": float("inf"),
                      "state_nodes": jax.tree.structure(s).num_nodes}

    for _ in range(args.rounds):  # interleaved: a busy moment hits every variant alike
        for run in runs.values():
            times = []
            for _ in range(args.steps):
                t0 = time.perf_counter()
                run["p"], run["s"] = run["fn"](run["p"], run["s"], grads)
                jax.block_until_ready(run["p"])
                times.append(time.perf_counter() - t0)
            run["best"] = min(run["best"], statistics.median(times))

    for run in runs.values():
        leaves, treedef = jax.tree.flatten(run["s"])
        best = float("inf")
        for _ in range(args.pytree_repeats):
            t0 = time.perf_counter()
            treedef.unflatten(jax.tree.flatten(run["s"])[0])
            best = min(best, time.perf_counter() - t0)
        run["pytree"] = best

    base = runs["ungrouped"]["best"]
    lines = [
        f"Parameter groups, {args.leaves} leaves x {args.size} float32, {jax.default_backend()} "
        f"({platform.processor() or platform.machine()}), best of {args.rounds} interleaved rounds "
        f"(median of {args.steps} steps each)",
        "",
        "| variant | step (ms) | / ungrouped | state flatten + unflatten (ms) | state pytree nodes | first call (s) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, run in runs.items():
        lines.append(f"| {name} | {1e3 * run['best']:.2f} | {run['best'] / base:.2f} | {1e3 * run['pytree']:.3f} | "
                     f"{run['state_nodes']} | {run['first_s']:.1f} |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
