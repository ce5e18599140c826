"""Per-element memory traffic of each fused optimizer step, read from the compiled program (no timing).

For every optimizer of the family, ``jaxopt_ms.fused.fuse(opt)`` on one tensor of ``--size`` float32 is compiled
as the benchmark compiles it (jit, parameters and state donated, update then ``optax.apply_updates``), and the
optimized HLO is read: every loop fusion, reduction or copy over whole buffers is one pass; each whole-buffer
operand it reads and each whole-buffer result it writes counts 4 bytes per parameter. ``minimum`` is what any
implementation must move (parameters, gradient and state read, parameters and state written); the last column
is the best fraction of a same-bytes copy the program can reach if it ran at memory bandwidth.

    python benchmarks/passes.py                 # the whole family
    python benchmarks/passes.py adam lamb       # some of it
"""

from __future__ import annotations

import argparse
import functools
import re
import sys

FAMILY = {
    "sgd": lambda j: j.sgd(0.1),
    "momentum": lambda j: j.momentum(0.1, 0.9),
    "adam": lambda j: j.adam(1e-3),
    "adamw": lambda j: j.adam_weight_decay(1e-3, weight_decay=0.01, decay_filter=j.decay_all),
    "lazy_adam": lambda j: j.lazy_adam(1e-3),
    "rmsprop": lambda j: j.rmsprop(0.01),
    "rmsprop_centered": lambda j: j.rmsprop(0.01, centered=True),
    "adagrad": lambda j: j.adagrad(learning_rate=0.01),
    "proximal_adagrad": lambda j: j.proximal_adagrad(0.01),
    "ftrl": lambda j: j.ftrl(),
    "adamax": lambda j: j.adamax(1e-3),
    "adadelta": lambda j: j.adadelta(),
    "asgd": lambda j: j.asgd(),
    "rprop": lambda j: j.rprop(),
    "lamb": lambda j: j.lamb(1e-3),
    "lars": lambda j: j.lars(j.momentum(0.1, 0.9)),
    "adafactor": lambda j: j.adafactor(),
}

_OP = re.compile(r"\s*(?:ROOT )?%([\w.\-]+) = (\S+) (fusion|copy)\((.*?)\)")


def traffic(hlo: str, size: int) -> tuple[list[str], int, int]:
    """(passes as 'kind:<reads>r<writes>w', bytes per parameter moved, minimum bytes per parameter)."""
    entry = hlo[hlo.index("ENTRY"):]
    whole = f"f32[{size}]"
    buffers = set(re.findall(rf"%([\w.\-]+) = f32\[{size}\]\{{0\}} parameter", entry))
    inputs, used = set(buffers), set()
    passes, moved = [], 0
    for line in entry.splitlines():
        m = _OP.match(line)
        if not m:
            continue
        name, shape, op, args = m.groups()
        reads = [a for a in (x.strip().lstrip("%") for x in args.split(",")) if a in buffers]
        writes = shape.count(whole)
        if not reads and not writes:
            continue  # scalar work
        if writes:
            buffers.add(name)
        moved += 4 * (len(reads) + writes)
        passes.append(f"{op}:{len(reads)}r{writes}w" + (" (reduction)" if "ynn" in line or "reduce" in name else ""))
        used.update(a for a in reads if a in inputs)
    # all used inputs read (params, grads, state), all but the gradient written; a state buffer the step passes
    # through untouched (SGD's accum without momentum: donated, so aliased to its output) moves nothing
    minimum = 4 * (2 * len(used) - 1)
    return passes, moved, minimum


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("optimizers", nargs="*", help=f"subset of {', '.join(FAMILY)}")
    parser.add_argument("--size", type=int, default=2**20, help="parameters in the one tensor (default 2**20)")
    args = parser.parse_args(argv)
    import jax
    import jax.numpy as jnp
    import optax

    import jaxopt_ms
    from jaxopt_ms import fused

    print("| optimizer | passes | bytes / param | minimum | minimum / bytes | passes (whole-buffer reads, writes) |")
    print("|---|---|---|---|---|---|")
    for name in args.optimizers or list(FAMILY):
        fopt = fused.fuse(FAMILY[name](jaxopt_ms))
        flat = fopt.flatten({"weight": jnp.full((args.size,), 0.5, jnp.float32)})
        grads = jax.tree.map(lambda x: 0.01 * x, flat)

        @functools.partial(jax.jit, donate_argnums=(0, 1))
        def step(p, s, g, fopt=fopt):
            u, s = fopt.update(g, s, p)
            return optax.apply_updates(p, u), s

        hlo = step.lower(flat, fopt.init(flat), grads).compile().as_text()
        passes, moved, minimum = traffic(hlo, args.size)
        print(f"| {name} | {len(passes)} | {moved} | {minimum} | {minimum / moved:.2f} | {', '.join(passes)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
