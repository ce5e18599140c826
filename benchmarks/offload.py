"""adam_offload vs adam on a GPU: device memory held by the optimizer state, step time, and a model that only
trains with the state offloaded.

    python benchmarks/offload.py                 # all three parts, a markdown report on stdout
    python benchmarks/offload.py --params 50e6   # a larger model for parts 1 and 2

1. State memory: device bytes in use before and after ``opt.init`` (``Device.memory_stats``), per parameter, and
   the optimizer state's bytes per memory kind (goal: ~0 B/param on the device with adam_offload, 8 with adam).
2. Step time: a jitted training step (gradient + update + apply, parameters and state donated) of an MLP, median
   over repeated steps, for both optimizers; the overhead is the gradient/direction traffic over PCIe.
3. Capped memory: a child process with ``XLA_PYTHON_CLIENT_MEM_FRACTION`` set trains a model sized so that
   parameters + gradients fit in the cap but parameters + gradients + Adam's two moments do not: ``adam``
   runs out of memory, ``adam_offload`` trains (its loss goes down).

Needs an accelerator whose devices have a ``pinned_host`` memory space (NVIDIA GPUs). On a CPU-only backend
device and host memory are the same RAM and there is nothing to measure: the script says so and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def _bytes_in_use(device) -> int | None:
    stats = device.memory_stats()
    return None if stats is None else int(stats.get("bytes_in_use", 0))


def _state_bytes_by_kind(state) -> dict:
    import jax

    out: dict[str, int] = {}
    for leaf in jax.tree.leaves(state):
        kind = leaf.sharding.memory_kind or "device"
        out[kind] = out.get(kind, 0) + leaf.nbytes
    return out


def _mlp_params(n_params: float) -> dict:
    """Square float32 dense layers, as many as give about ``n_params`` parameters."""
    import jax
    import jax.numpy as jnp

    width = 4096 if n_params >= 16e6 else 512
    layers = max(1, round(n_params / (width * width + width)))
    make = jax.jit(lambda k: jax.random.normal(k, (width, width), jnp.float32) / width ** 0.5)
    return {f"dense{i}": {"weight": make(jax.random.key(i)), "bias": jnp.zeros((width,), jnp.float32)}
            for i in range(layers)}


def _mlp_loss(params, x):
    import jax.numpy as jnp

    h = x
    for name in sorted(params):
        h = jnp.tanh(h @ params[name]["weight"] + params[name]["bias"])
    return jnp.mean(jnp.square(h - x))


def _make_step(opt, loss, params):
    import functools

    import jax
    import optax

    from jaxopt_ms.sharding import state_shardings

    # Explicit output shardings keep the state's memory kinds when it is donated (JAX could otherwise reuse a
    # donated host buffer for a device output).
    out_shardings = (jax.tree.map(lambda p: p.sharding, params), state_shardings(opt, params), None)

    @functools.partial(jax.jit, donate_argnums=(0, 1), out_shardings=out_shardings)
    def step(params, state, x):
        value, grads = jax.value_and_grad(loss)(params, x)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, value

    return step


def _optimizers():
    import jaxopt_ms

    # --smoke takes the host-memory path on a CPU backend too, where the default does not offload.
    on_host = True if os.environ.get("JAXOPT_MS_BENCH_FORCE_HOST") else None
    return {"adam": jaxopt_ms.adam(1e-4), "adam_offload": jaxopt_ms.adam_offload(1e-4, on_host=on_host)}


def state_memory(n_params: float) -> list[dict]:
    """Part 1: device memory taken by ``opt.init`` for each optimizer."""
    import jax

    device = jax.devices()[0]
    rows = []
    for name, opt in _optimizers().items():
        params = _mlp_params(n_params)
        count = sum(p.size for p in jax.tree.leaves(params))
        jax.block_until_ready(params)
        before = _bytes_in_use(device)
        state = jax.block_until_ready(opt.init(params))
        after = _bytes_in_use(device)
        by_kind = _state_bytes_by_kind(state)
        rows.append({
            "optimizer": name, "params": count,
            "device_bytes_per_param": None if before is None else (after - before) / count,
            "state_bytes_per_param_by_memory_kind": {k: v / count for k, v in by_kind.items()},
        })
        del params, state
    return rows


def step_time(n_params: float, batch: int, repeats: int) -> list[dict]:
    """Part 2: median time of a jitted training step for each optimizer."""
    import jax

    rows = []
    for name, opt in _optimizers().items():
        params = _mlp_params(n_params)
        count = sum(p.size for p in jax.tree.leaves(params))
        width = params["dense0"]["weight"].shape[0]
        x = jax.random.normal(jax.random.key(99), (batch, width))
        state = opt.init(params)
        step = _make_step(opt, _mlp_loss, params)
        params, state, _ = jax.block_until_ready(step(params, state, x))  # compile
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            params, state, value = jax.block_until_ready(step(params, state, x))
            times.append(time.perf_counter() - start)
        rows.append({"optimizer": name, "params": count, "median_ms": 1e3 * statistics.median(times),
                     "min_ms": 1e3 * min(times), "final_loss": float(value)})
        del params, state
    base = rows[0]["median_ms"]
    for row in rows:
        row["vs_adam"] = row["median_ms"] / base
    return rows


def capped_child(optimizer: str, steps: int) -> dict:
    """Part 3, in a child process whose device memory is capped: size a model to the cap and train it."""
    import jax
    import jax.numpy as jnp

    device = jax.devices()[0]
    stats = device.memory_stats() or {}
    limit = int(stats.get("bytes_limit", 64 * 2**20))  # the fallback only serves --smoke runs on a CPU
    # Parameters 4 B + gradients 4 B (+ the 4 B direction for offload) per parameter stay under the cap; with
    # Adam's 8 B of moments on the device too (16 B per parameter before any temporary) they cannot.
    rows = 4096
    cols = max(1, int(limit / 15 / 4 / rows)) * 4
    n = rows * cols
    opt = _optimizers()[optimizer]
    target = jnp.ones((rows,), jnp.float32)

    def loss(params, x):
        return jnp.mean(jnp.square(params["w"] @ x - target))

    result = {"optimizer": optimizer, "bytes_limit": limit, "params": n, "params_bytes": 4 * n,
              "params+adam_state_bytes": 12 * n}
    try:
        params = {"w": jax.jit(lambda: jnp.full((rows, cols), 1e-3, jnp.float32))()}
        state = opt.init(params)
        step = _make_step(opt, loss, params)
        x = jnp.ones((cols,), jnp.float32) / cols
        losses = []
        for _ in range(steps):
            params, state, value = step(params, state, x)
            losses.append(float(value))
        peak = (device.memory_stats() or {}).get("peak_bytes_in_use", 0)
        result.update(trained=True, losses=losses, peak_bytes=int(peak))
    except Exception as e:  # XlaRuntimeError RESOURCE_EXHAUSTED is the expected failure for adam
        result.update(trained=False, error=f"{type(e).__name__}: {str(e).splitlines()[0][:300]}")
    return result


def capped_memory(fraction: float, steps: int) -> list[dict]:
    """Part 3: runs :func:`capped_child` for each optimizer in a fresh process with the memory cap."""
    env = dict(os.environ, XLA_PYTHON_CLIENT_MEM_FRACTION=str(fraction), XLA_PYTHON_CLIENT_PREALLOCATE="true")
    rows = []
    for name in ("adam", "adam_offload"):
        cmd = [sys.executable, os.path.abspath(__file__), "--capped-child", name, "--steps", str(steps)]
        # Child processes start a fresh backend so that the cap applies to them alone.
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        rows.append(json.loads(lines[-1]) if lines else
                    {"optimizer": name, "trained": False, "error": (done.stderr or done.stdout)[-500:]})
    return rows


def _report(memory, timing, capped, fraction) -> str:
    import jax

    out = [f"## adam_offload vs adam ({jax.devices()[0].device_kind}, jax {jax.__version__})", ""]
    out += ["### Optimizer state memory", "",
            "| optimizer | params | device B/param after init | state B/param by memory kind |", "|---|---|---|---|"]
    for r in memory:
        dev = "n/a" if r["device_bytes_per_param"] is None else f"{r['device_bytes_per_param']:.2f}"
        kinds = ", ".join(f"{k}: {v:.2f}" for k, v in sorted(r["state_bytes_per_param_by_memory_kind"].items()))
        out.append(f"| {r['optimizer']} | {r['params']:,} | {dev} | {kinds} |")
    out += ["", "### Training step time (median)", "",
            "| optimizer | params | ms/step | vs adam |", "|---|---|---|---|"]
    for r in timing:
        out.append(f"| {r['optimizer']} | {r['params']:,} | {r['median_ms']:.2f} | {r['vs_adam']:.2f}x |")
    out += ["", f"### Capped device memory (XLA_PYTHON_CLIENT_MEM_FRACTION={fraction})", "",
            "| optimizer | cap | params | trained | first -> last loss / error |", "|---|---|---|---|---|"]
    for r in capped:
        cap = f"{r.get('bytes_limit', 0) / 2**30:.2f} GiB"
        what = (f"{r['losses'][0]:.4g} -> {r['losses'][-1]:.4g}" if r.get("trained") else r.get("error", ""))
        out.append(f"| {r['optimizer']} | {cap} | {r.get('params', 0):,} | {r.get('trained')} | {what} |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", type=float, default=100e6, help="parameters of the MLP (parts 1, 2)")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--fraction", type=float, default=0.1, help="XLA_PYTHON_CLIENT_MEM_FRACTION (part 3)")
    parser.add_argument("--steps", type=int, default=5, help="training steps in part 3")
    parser.add_argument("--json", help="also write the raw results to this file")
    parser.add_argument("--capped-child", help=argparse.SUPPRESS)
    parser.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)  # exercise the code on any backend
    args = parser.parse_args()

    if args.capped_child:
        print(json.dumps(capped_child(args.capped_child, args.steps)))
        return

    import jax

    from jaxopt_ms.transforms.offload import host_memory_kind

    device = jax.devices()[0]
    if args.smoke:
        args.params, args.batch, args.repeats, args.steps = 2e6, 8, 2, 2
        os.environ["JAXOPT_MS_BENCH_FORCE_HOST"] = "1"
    elif device.platform == "cpu" or host_memory_kind(device) is None or device.memory_stats() is None:
        print(f"SKIPPED: benchmarks/offload.py needs a GPU (an accelerator with a 'pinned_host' memory space and "
              f"memory statistics); this machine's JAX backend is '{device.platform}' ({device.device_kind}), where "
              f"device and host memory are the same RAM, so there is no device memory to save. adam_offload still "
              f"runs here with the numbers of adam (tests/test_adam_offload.py). Run this script on a GPU machine.")
        return

    memory = state_memory(args.params)
    timing = step_time(args.params, args.batch, args.repeats)
    capped = capped_memory(args.fraction, args.steps)
    print(_report(memory, timing, capped, args.fraction))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"memory": memory, "timing": timing, "capped": capped}, f, indent=1)


if __name__ == "__main__":
    main()
