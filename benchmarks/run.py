"""One benchmark run, side by side: jaxopt_ms (per-leaf and fused), optax, torch (foreach, fused) and MindSpore.

Optimizer step (one update including applying it; jit with donated buffers; median of N after warm-up; the first
call's time includes compilation) on three workloads, with the effective bandwidth against a measured copy
bandwidth (a jitted ``x * s`` over the same bytes). The copy (over one buffer of the workload's size and over the
fused step's bytes) and torch's steps run in the same interleaved rounds as the JAX steps, and each row also
reports its best call as a fraction of the best copy (the "Best of all calls" table). Then the whole training
step (forward + backward alone, pytree + optax, pytree + jaxopt_ms, flat params viewed by plain slicing, flat
params through ``fused.view``).

    python benchmarks/run.py            # GPU sizes if a GPU is present, else CPU sizes (~64x smaller)
    python benchmarks/run.py --quick    # smoke run, smallest sizes
    python benchmarks/run.py --out benchmarks/results   # update the committed results

Writes ``results.json``, ``results.md`` and ``results.png`` into ``--out``, by default a new temporary folder (its
path is printed at the end): a run never overwrites the committed ``benchmarks/results`` unless asked to.

Quick mode's sizes fit in cache and its steps take microseconds, so its step times are mostly dispatch overhead: it
checks that everything runs, not how fast. Figures that no memory-bound step can reach (an optimizer step above the
measured copy bandwidth, a training step faster than its own forward + backward) are flagged as not measurable
rather than reported, in every mode.
Libraries that are not installed are skipped. MindSpore (CPU) is measured in a separate interpreter when the
environment variable ``JAXOPT_MS_BENCH_MINDSPORE`` holds the command that starts one (e.g. a venv's python).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from workloads import model_workloads, tree_workloads  # noqa: E402

# algorithm -> (jaxopt_ms factory name, jaxopt_ms optimizer, optax optimizer, torch class and kwargs, MindSpore
# class and kwargs); the same algorithm and hyperparameters in every library (decoupled decay on every leaf for
# AdamW, as optax.adamw and torch do)
ALGORITHMS = {
    "sgd": ("sgd", lambda j: j.sgd(0.1), lambda o: o.sgd(0.1), ("SGD", dict(lr=0.1)),
            ("SGD", dict(learning_rate=0.1))),
    "momentum": ("momentum", lambda j: j.momentum(0.1, 0.9), lambda o: o.sgd(0.1, momentum=0.9),
                 ("SGD", dict(lr=0.1, momentum=0.9)), ("Momentum", dict(learning_rate=0.1, momentum=0.9))),
    "adam": ("adam", lambda j: j.adam(1e-3), lambda o: o.adam(1e-3), ("Adam", dict(lr=1e-3)),
             ("Adam", dict(learning_rate=1e-3))),
    "adamw": ("adam_weight_decay", lambda j: j.adam_weight_decay(1e-3, weight_decay=0.01, decay_filter=j.decay_all),
              lambda o: o.adamw(1e-3, weight_decay=0.01), ("AdamW", dict(lr=1e-3, weight_decay=0.01)),
              ("AdamWeightDecay", dict(learning_rate=1e-3, weight_decay=0.01))),
    "rmsprop": ("rmsprop", lambda j: j.rmsprop(0.01), lambda o: o.rmsprop(0.01), ("RMSprop", dict(lr=0.01)),
                ("RMSProp", dict(learning_rate=0.01))),
    "adagrad": ("adagrad", lambda j: j.adagrad(learning_rate=0.01), lambda o: o.adagrad(0.01),
                ("Adagrad", dict(lr=0.01)), ("Adagrad", dict(learning_rate=0.01))),
    "lamb": ("lamb", lambda j: j.lamb(1e-3), lambda o: o.lamb(1e-3), None, None),
    "lars": ("lars", lambda j: j.lars(j.momentum(0.1, 0.9)), lambda o: o.lars(0.1, momentum=0.9), None, None),
    "adafactor": ("adafactor", lambda j: j.adafactor(), lambda o: o.adafactor(), None, None),
}


def median_ms(samples: list[float]) -> float:
    return 1e3 * statistics.median(samples)


# Physical bounds a timing must respect; a figure outside them measured overhead or noise, not the step.
BANDWIDTH_FLAG = "above the copy bandwidth: overhead-bound, not a bandwidth"
TRAINING_FLAG = "below forward + backward alone: overhead-bound (dispatch, output buffers), not the optimizer's cost"


def flag_unphysical(result: dict) -> None:
    """Marks figures no memory-bound step can produce: ``flag`` on the row, the figure itself set to None.

    An optimizer step reads and writes more bytes than the copy it is compared with, so it cannot exceed the copy's
    bandwidth (``fraction_of_copy > 1``); a training step runs its forward and backward pass plus an update, so it
    cannot be faster than the forward and backward pass alone (``vs_fwd_bwd < 1``). Both happen when the step is
    dominated by overhead (sizes far below the cache, microsecond steps: dispatch, and the baseline's fresh output
    buffers for every gradient where the donated step updates in place) or by noise.
    """
    for row in result["optimizer"]:
        if (row.get("fraction_of_copy") or 0.0) > 1.0:
            row.update(flag=BANDWIDTH_FLAG, measured_fraction_of_copy=row["fraction_of_copy"], fraction_of_copy=None)
    for row in result["training"]:
        if row["vs_fwd_bwd"] < 1.0:
            row.update(flag=TRAINING_FLAG)


# ---------------------------------------------------------------------------------------------- JAX side

def jax_env():
    import functools

    import jax
    import jax.numpy as jnp
    import optax

    import jaxopt_ms
    from jaxopt_ms import fused
    return functools, jax, jnp, optax, jaxopt_ms, fused


def make_optimizers(algorithm: str) -> tuple[object | None, object | None, str | None]:
    """(jaxopt_ms optimizer, optax optimizer, reason when jaxopt_ms lacks it)."""
    functools, jax, jnp, optax, jaxopt_ms, fused = jax_env()
    factory, ours, theirs, _, _ = ALGORITHMS[algorithm]
    if not hasattr(jaxopt_ms, factory):
        return None, None, f"jaxopt_ms has no {factory} yet"
    try:
        ours = ours(jaxopt_ms)
    except Exception as e:  # a factory whose signature differs from the one assumed here
        return None, None, f"jaxopt_ms.{factory} failed: {e}"
    return ours, theirs(optax), None


class Timed:
    """A compiled step with its live arguments; ``run(n)`` returns n per-call wall times."""

    def __init__(self, label, step, params, state, extra, nbytes):
        self.label, self.step, self.params, self.state, self.extra, self.nbytes = (
            label, step, params, state, extra, nbytes)
        import jax
        t = time.perf_counter()
        out = self.step(self.params, self.state, self.extra)
        jax.block_until_ready(out)
        self.first_call_s = time.perf_counter() - t
        self.params, self.state = out[0], out[1]
        self.samples: list[float] = []

    def run(self, n: int) -> None:
        import jax
        for _ in range(n):
            t = time.perf_counter()
            out = self.step(self.params, self.state, self.extra)
            jax.block_until_ready(out)
            self.samples.append(time.perf_counter() - t)
            self.params, self.state = out[0], out[1]


def tree_nbytes(tree) -> int:
    import jax
    return int(sum(x.nbytes for x in jax.tree.leaves(tree) if hasattr(x, "nbytes")))


def optimizer_step_variants(workload, algorithm: str):
    """The compiled optimizer steps to compare for one (workload, algorithm); None entries are skipped."""
    functools, jax, jnp, optax, jaxopt_ms, fused = jax_env()
    ours, theirs, reason = make_optimizers(algorithm)
    if reason:
        return [], reason
    key = jax.random.PRNGKey(0)
    shapes = workload.shapes
    keys = jax.random.split(key, len(shapes))
    params = {n: jnp.full(s, 0.5, jnp.float32) for n, s in shapes.items()}
    grads = {n: 1e-2 * jax.random.normal(k, s, jnp.float32) for k, (n, s) in zip(keys, shapes.items())}

    def tree_step(opt):
        @functools.partial(jax.jit, donate_argnums=(0, 1))
        def step(p, s, g):
            u, s = opt.update(g, s, p)
            return optax.apply_updates(p, u), s
        return step

    variants = []
    for label, opt in (("jaxopt_ms per-leaf", ours), ("optax", theirs)):
        p = jax.tree.map(jnp.copy, params)
        state = jax.tree.map(jnp.copy, opt.init(p))  # distinct buffers: some inits share one zeros array
        nbytes = 2 * tree_nbytes(p) + tree_nbytes(grads) + 2 * tree_nbytes(state)
        variants.append(Timed(label, tree_step(opt), p, state, grads, nbytes))
    fopt = fused.fuse(ours)  # own_buffer_from='auto': on CPU, leaves >= 2**12 elements in buffers of their own
    flat = jax.jit(fopt.flatten)(params)
    flat_grads = jax.jit(lambda g: fused.flatten(g, fopt.partition))(grads)
    state = jax.tree.map(jnp.copy, fopt.init(flat))
    nbytes = 2 * tree_nbytes(flat) + tree_nbytes(flat_grads) + 2 * tree_nbytes(state)
    variants.insert(1, Timed("jaxopt_ms fused", tree_step(fopt), flat, state, flat_grads, nbytes))

    # What a fused *default* for pytree users would cost: pack params and grads, unpack the result, every step.
    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def repack_step(p, s, g):
        flat = fopt.flatten(p)
        u, s = fopt.update(fused.flatten(g, fopt.partition), s, flat)
        return fused.unflatten(optax.apply_updates(flat, u)), s

    p = jax.tree.map(jnp.copy, params)
    variants.append(Timed("fused, repacked per step", repack_step, p,
                          jax.tree.map(jnp.copy, fopt.init(fopt.flatten(p))), grads, nbytes))
    del params
    return variants, None


def copy_bandwidth(num_params: int, repeats: int) -> float:
    """GB/s of a jitted ``x * s`` over ``num_params`` float32 (read + write), donated like the optimizer steps.

    The best of ``repeats`` calls after a warm-up (the fastest copy is the bandwidth bound the steps are held to)."""
    _, jax, jnp, _, _, _ = jax_env()
    x = jnp.ones((num_params,), jnp.float32)
    s = jnp.float32(1.0)
    f = jax.jit(lambda x, s: x * s, donate_argnums=(0,))
    for _ in range(3):  # compile, then warm the caches and the allocator
        x = jax.block_until_ready(f(x, s))
    samples = []
    for _ in range(repeats):
        t = time.perf_counter()
        x = jax.block_until_ready(f(x, s))
        samples.append(time.perf_counter() - t)
    return 2 * x.nbytes / min(samples) / 1e9


COPY = "copy x * s"  # the copy limit: one buffer of the workload's size (read + written)
COPY_STEP = "copy x * s, step's bytes"  # the same copy over as many bytes as the fused step must move


def copy_variants(num_params: int, step_bytes: int) -> list[Timed]:
    """Donated jitted ``x * s`` over ``num_params`` float32 and over ``step_bytes / 8`` float32, timed in the same
    interleaved rounds as the optimizer steps (best-of and median compare like with like). The second one is
    the limit for the step's own working set: a buffer of the workload's size may stay in the last-level cache
    between calls where the step's parameters, gradients and state (3-5x larger) cannot."""
    _, jax, jnp, _, _, _ = jax_env()
    step = jax.jit(lambda x, s, c: (x * c, s), donate_argnums=(0,))
    out = []
    for label, n in ((COPY, num_params), (COPY_STEP, max(1, step_bytes // 8))):
        out.append(Timed(label, step, jnp.ones((n,), jnp.float32), None, jnp.float32(1.0), 8 * n))
    return out


# ---------------------------------------------------------------------------------------------- torch side

class TorchTimed:
    """A torch optimizer's ``step()`` with the interface of :class:`Timed` (so it joins the interleaved rounds)."""

    def __init__(self, label, opt, sync, nbytes):
        self.label, self.opt, self.sync, self.nbytes = label, opt, sync, nbytes
        t = time.perf_counter()
        opt.step()
        sync()
        self.first_call_s = time.perf_counter() - t
        self.samples: list[float] = []

    def run(self, n: int) -> None:
        for _ in range(n):
            t = time.perf_counter()
            self.opt.step()
            self.sync()
            self.samples.append(time.perf_counter() - t)


def torch_variants(workload, algorithm: str) -> tuple[list[TorchTimed], list[dict]]:
    """torch's foreach and fused steps for one (workload, algorithm), and rows for those torch lacks."""
    try:
        import torch
    except ImportError:
        return [], []
    spec = ALGORITHMS[algorithm][3]
    if spec is None:
        return [], []
    cls_name, kwargs = spec
    device = "cuda" if torch.cuda.is_available() else "cpu"
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    timed, skipped = [], []
    for mode in ("foreach", "fused"):
        try:
            params = [torch.full(s, 0.5, device=device, requires_grad=True) for s in workload.shapes.values()]
            for p in params:
                p.grad = 1e-2 * torch.randn_like(p)
            opt = getattr(torch.optim, cls_name)(params, **kwargs, **{mode: True})
            opt.step()  # creates the state
            state_bytes = sum(v.numel() * v.element_size() for st in opt.state.values() for v in st.values()
                              if torch.is_tensor(v) and v.numel() > 1)
            timed.append(TorchTimed(f"torch {mode}", opt, sync, 3 * 4 * workload.num_params + 2 * state_bytes))
        except Exception as e:  # e.g. no fused kernel for this optimizer/device
            skipped.append(dict(library=f"torch {mode}", skipped=f"{type(e).__name__}: {e}"))
    return timed, skipped


# ---------------------------------------------------------------------------------------------- MindSpore side

def mindspore_worker(spec: dict) -> list[dict]:
    """Runs inside a MindSpore interpreter (no JAX): times ``optimizer(grads)`` in graph mode on CPU."""
    import mindspore as ms
    import numpy as np
    from mindspore import nn

    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
    out = []
    for algorithm in spec["algorithms"]:
        entry = ALGORITHMS[algorithm][4]
        if entry is None:
            continue
        cls_name, kwargs = entry
        params = [ms.Parameter(ms.Tensor(np.full(s, 0.5, np.float32)), name=n.replace(".", "_"))
                  for n, s in spec["shapes"].items()]
        rng = np.random.default_rng(0)
        grads = tuple(ms.Tensor((1e-2 * rng.standard_normal(s)).astype(np.float32)) for s in spec["shapes"].values())
        opt = getattr(nn, cls_name)(params, **kwargs)
        t = time.perf_counter()
        opt(grads)
        first = time.perf_counter() - t
        samples = []
        for _ in range(spec["samples"]):
            t = time.perf_counter()
            opt(grads)
            samples.append(time.perf_counter() - t)
        out.append(dict(algorithm=algorithm, library="MindSpore CPU", step_ms=median_ms(samples), first_call_s=first))
    return out


def mindspore_results(workload, algorithms: list[str], samples: int) -> list[dict]:
    command = os.environ.get("JAXOPT_MS_BENCH_MINDSPORE")
    if not command:
        try:
            import mindspore  # noqa: F401
        except ImportError:
            return []
        command = sys.executable
    spec = dict(shapes=workload.shapes, algorithms=algorithms, samples=samples)
    try:
        proc = subprocess.run(shlex.split(command) + [os.path.abspath(__file__), "--mindspore-worker",
                                                      json.dumps(spec)],
                              capture_output=True, text=True, timeout=600)
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except Exception as e:
        print(f"  MindSpore skipped: {type(e).__name__}: {e}", file=sys.stderr)
        return []


# ---------------------------------------------------------------------------------------------- training step

def training_variants(model):
    """Compiled whole training steps (forward + backward [+ Adam]) for one model."""
    functools, jax, jnp, optax, jaxopt_ms, fused = jax_env()
    key = jax.random.PRNGKey(1)
    k = iter(jax.random.split(key, 4 * max(model.blocks, 3) + 4))
    if model.heads:
        d, h = model.width, model.heads
        params = {f"block{i}": {
            "ln_1.gamma": jnp.ones((d,)), "ln_1.beta": jnp.zeros((d,)),
            "attn.qkv.weight": jax.random.normal(next(k), (d, 3 * d)) / d ** 0.5, "attn.qkv.bias": jnp.zeros((3 * d,)),
            "attn.proj.weight": jax.random.normal(next(k), (d, d)) / d ** 0.5, "attn.proj.bias": jnp.zeros((d,)),
            "ln_2.gamma": jnp.ones((d,)), "ln_2.beta": jnp.zeros((d,)),
            "mlp.fc1.weight": jax.random.normal(next(k), (d, model.hidden)) / d ** 0.5,
            "mlp.fc1.bias": jnp.zeros((model.hidden,)),
            "mlp.fc2.weight": jax.random.normal(next(k), (model.hidden, d)) / model.hidden ** 0.5,
            "mlp.fc2.bias": jnp.zeros((d,)),
        } for i in range(model.blocks)}
        x = jax.random.normal(next(k), (model.rows // model.seq, model.seq, d))
        y = jax.random.normal(next(k), x.shape)
        mask = jnp.tril(jnp.ones((model.seq, model.seq), bool))

        def layer_norm(x, g, b):
            mu = jnp.mean(x, -1, keepdims=True)
            return (x - mu) * jax.lax.rsqrt(jnp.var(x, -1, keepdims=True) + 1e-5) * g + b

        def loss_fn(p, x, y):
            for i in range(model.blocks):
                b = p[f"block{i}"]
                qkv = layer_norm(x, b["ln_1.gamma"], b["ln_1.beta"]) @ b["attn.qkv.weight"] + b["attn.qkv.bias"]
                q, kk, v = (t.reshape(*t.shape[:2], h, d // h) for t in jnp.split(qkv, 3, -1))
                att = jnp.einsum("bqhd,bkhd->bhqk", q, kk) / (d // h) ** 0.5
                att = jax.nn.softmax(jnp.where(mask, att, -1e9), -1)
                a = jnp.einsum("bhqk,bkhd->bqhd", att, v).reshape(x.shape)
                x = x + a @ b["attn.proj.weight"] + b["attn.proj.bias"]
                m = layer_norm(x, b["ln_2.gamma"], b["ln_2.beta"]) @ b["mlp.fc1.weight"] + b["mlp.fc1.bias"]
                x = x + jax.nn.gelu(m) @ b["mlp.fc2.weight"] + b["mlp.fc2.bias"]
            return jnp.mean((x - y) ** 2)
    elif model.blocks:
        params = {f"block{i}": {
            "ln.gamma": jnp.ones((model.width,)), "ln.beta": jnp.zeros((model.width,)),
            "fc1.weight": jax.random.normal(next(k), (model.width, model.hidden)) / model.width ** 0.5,
            "fc1.bias": jnp.zeros((model.hidden,)),
            "fc2.weight": jax.random.normal(next(k), (model.hidden, model.width)) / model.hidden ** 0.5,
            "fc2.bias": jnp.zeros((model.width,)),
        } for i in range(model.blocks)}
        x = jax.random.normal(next(k), (model.rows, model.width))
        y = jax.random.normal(next(k), (model.rows, model.width))

        def loss_fn(p, x, y):
            for i in range(model.blocks):
                b = p[f"block{i}"]
                mu = jnp.mean(x, -1, keepdims=True)
                h = (x - mu) * jax.lax.rsqrt(jnp.var(x, -1, keepdims=True) + 1e-5) * b["ln.gamma"] + b["ln.beta"]
                x = x + jax.nn.gelu(h @ b["fc1.weight"] + b["fc1.bias"]) @ b["fc2.weight"] + b["fc2.bias"]
            return jnp.mean((x - y) ** 2)
    else:
        sizes = [model.inputs, model.width, model.width, model.classes]
        params = {f"fc{i}": {"weight": jax.random.normal(next(k), (a, b)) / a ** 0.5, "bias": jnp.zeros((b,))}
                  for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))}
        x = jax.random.normal(next(k), (model.rows, model.inputs))
        y = jax.nn.one_hot(jax.random.randint(next(k), (model.rows,), 0, model.classes), model.classes)

        def loss_fn(p, x, y):
            h = x
            for i in range(3):
                h = h @ p[f"fc{i}"]["weight"] + p[f"fc{i}"]["bias"]
                h = jax.nn.relu(h) if i < 2 else h
            return -jnp.mean(jnp.sum(jax.nn.log_softmax(h) * y, -1))

    batch = (x, y)
    variants = []

    @functools.partial(jax.jit, donate_argnums=(0,))
    def fwd_bwd(p, s, batch):
        loss, grads = jax.value_and_grad(loss_fn)(p, *batch)
        return p, s, loss, grads
    variants.append(("forward + backward alone", fwd_bwd, jax.tree.map(jnp.copy, params), None))

    def pytree_step(opt):
        @functools.partial(jax.jit, donate_argnums=(0, 1))
        def step(p, s, batch):
            loss, grads = jax.value_and_grad(loss_fn)(p, *batch)
            u, s = opt.update(grads, s, p)
            return optax.apply_updates(p, u), s, loss
        return step

    for label, opt in (("pytree + optax.adam", optax.adam(1e-3)), ("pytree + jaxopt_ms.adam", jaxopt_ms.adam(1e-3))):
        p = jax.tree.map(jnp.copy, params)
        variants.append((label, pytree_step(opt), p, opt.init(p)))

    def flat_step(viewer, fopt):
        @functools.partial(jax.jit, donate_argnums=(0, 1))
        def step(flat, s, batch):
            loss, grads = jax.value_and_grad(lambda f: loss_fn(viewer(f), *batch))(flat)
            u, s = fopt.update(grads, s, flat)
            return optax.apply_updates(flat, u), s, loss
        return step

    # one buffer (the layout for GPU), then the large leaves in buffers of their own ('auto' on CPU)
    own = fused.CPU_OWN_BUFFER_FROM  # own_buffer_from='auto' on CPU: large leaves viewed by a reshape, not a slice
    packed, large = (fused.fuse(jaxopt_ms.adam(1e-3), own_buffer_from=n) for n in (None, own))
    for label, viewer, opt in (("flat, plain slices, fused adam", fused.unflatten, packed),
                               ("flat, fused.view (custom VJP), fused adam", fused.view, packed),
                               (f"flat, fused.view, leaves >= {own} in own buffers", fused.view, large)):
        flat = jax.jit(opt.flatten)(params)
        variants.append((label, flat_step(viewer, opt), flat, opt.init(flat)))
    return [Timed(label, step, p, s, batch, 0) for label, step, p, s in variants], \
        int(sum(v.size for v in jax.tree.leaves(params)))


# ---------------------------------------------------------------------------------------------- driver

def interleave(variants, repeats: int, rounds: int) -> None:
    """Rounds of ``repeats`` calls per variant, alternating, so background load hits all of them alike."""
    for v in variants:
        v.run(2)  # warm-up
        v.samples.clear()
    for _ in range(rounds):
        for v in variants:
            v.run(repeats)


def machine_name() -> str:
    import jax
    dev = jax.devices()[0]
    if dev.platform != "cpu":
        return f"{dev.device_kind} ({dev.platform})"
    model = platform.processor() or "CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores (XLA CPU)"


def run(args) -> dict:
    import jax
    import optax

    import jaxopt_ms
    on_gpu = jax.devices()[0].platform != "cpu"
    scale = "quick" if args.quick else ("gpu" if on_gpu else "cpu")
    algorithms = args.algorithms.split(",") if args.algorithms else (["adam"] if args.quick else list(ALGORITHMS))
    result = dict(machine=machine_name(), scale=scale, jax=jax.__version__, optax=optax.__version__,
                  jaxopt_ms=jaxopt_ms.__version__, repeats=args.repeats, rounds=args.rounds,
                  date=time.strftime("%Y-%m-%d %H:%M"), optimizer=[], training=[], skipped=[])
    workloads = tree_workloads(scale)
    if args.workloads:
        workloads = [w for w in workloads if w.name in args.workloads.split(",")]
    for w in workloads:
        copy_gbps = copy_bandwidth(w.num_params, max(args.repeats * args.rounds, 20))
        print(f"[{w.name}] {w.title}: {w.num_leaves} leaves, {w.num_params} params, copy {copy_gbps:.1f} GB/s",
              flush=True)
        todo = [a for a in algorithms if w.algorithms is None or a in w.algorithms]
        for algorithm in todo:
            variants, reason = optimizer_step_variants(w, algorithm)
            if reason:
                result["skipped"].append(dict(workload=w.name, algorithm=algorithm, reason=reason))
                print(f"  {algorithm}: skipped ({reason})", flush=True)
                continue
            fused_bytes = next(v.nbytes for v in variants if v.label == "jaxopt_ms fused")
            torch_timed, rows = torch_variants(w, algorithm)
            variants += torch_timed + copy_variants(w.num_params, fused_bytes)
            interleave(variants, args.repeats, args.rounds)
            rows = [dict(library=v.label, step_ms=median_ms(v.samples), best_ms=1e3 * min(v.samples),
                         first_call_s=v.first_call_s, bytes=v.nbytes) for v in variants] + rows
            del variants, torch_timed
            best_gbps = {r["library"]: r["bytes"] / (r["best_ms"] / 1e3) / 1e9 for r in rows if "best_ms" in r}
            for row in rows:
                row.update(workload=w.name, algorithm=algorithm, copy_gbps=copy_gbps)
                if "step_ms" in row:
                    row["gbps"] = row["bytes"] / (row["step_ms"] / 1e3) / 1e9
                    row["fraction_of_copy"] = row["gbps"] / copy_gbps
                    # best of all calls against the best of the copies timed in the same rounds
                    row["best_fraction_of_copy"] = best_gbps[row["library"]] / best_gbps[COPY]
                    row["best_fraction_of_step_copy"] = best_gbps[row["library"]] / best_gbps[COPY_STEP]
            result["optimizer"] += rows
            print("  " + algorithm + ": " + ", ".join(
                f"{r['library']} {r['step_ms']:.3f} ms ({r['first_call_s']:.2f} s first)" for r in rows
                if "step_ms" in r), flush=True)
        if not args.quick:
            for row in mindspore_results(w, todo, args.repeats * args.rounds):
                row.update(workload=w.name, copy_gbps=copy_gbps)
                result["optimizer"].append(row)
                print(f"  {row['algorithm']}: MindSpore CPU {row['step_ms']:.3f} ms", flush=True)
    if not args.no_training:
        models = model_workloads(scale)
        if args.models:
            models = [m for m in models if m.name in args.models.split(",")]
        for model in models:
            variants, n = training_variants(model)
            interleave(variants, args.repeats, args.rounds)
            base, base_best = median_ms(variants[0].samples), min(variants[0].samples)
            for v in variants:
                ms = median_ms(v.samples)
                result["training"].append(dict(model=model.name, title=model.title, params=n, variant=v.label,
                                               step_ms=ms, first_call_s=v.first_call_s, vs_fwd_bwd=ms / base,
                                               best_ms=1e3 * min(v.samples),
                                               best_vs_fwd_bwd=min(v.samples) / base_best))
            print(f"[{model.name}] " + ", ".join(f"{v.label} {median_ms(v.samples):.2f} ms" for v in variants),
                  flush=True)
    flag_unphysical(result)
    return result


def markdown(result: dict) -> str:
    titles = {w.name: w.title for w in tree_workloads(result["scale"])}
    lines = [f"Machine: {result['machine']}; jax {result['jax']}, optax {result['optax']}; scale '{result['scale']}'; "
             f"median of {result['repeats'] * result['rounds']} calls ({result['rounds']} interleaved rounds); "
             f"{result['date']}.", ""]
    if result["scale"] == "quick":
        lines += ["**Quick mode is a smoke run**: its sizes fit in cache and its steps take microseconds, so the times "
                  "below are mostly dispatch overhead and say little about speed; bandwidths and ratios that no "
                  "memory-bound step can reach are marked n/a. Run without --quick for figures.", ""]
    rows = result["optimizer"]
    libs = []
    for r in rows:
        if r["library"] not in libs and "step_ms" in r:
            libs.append(r["library"])
    lines.append("### Optimizer step (ms, median; first call incl. compile in s)")
    lines.append("")
    lines.append("| workload | algorithm | " + " | ".join(libs) + " | fused / optax | fused GB/s (% of copy) |")
    lines.append("|---|---|" + "---|" * len(libs) + "---|---|")
    seen = []
    for r in rows:
        if (r["workload"], r["algorithm"]) not in seen:
            seen.append((r["workload"], r["algorithm"]))
    for wname, alg in seen:
        cell = {r["library"]: r for r in rows if r["workload"] == wname and r["algorithm"] == alg and "step_ms" in r}
        cells = []
        for lib in libs:
            r = cell.get(lib)
            if r is None:
                cells.append("—")
            elif r.get("first_call_s") is not None:
                cells.append(f"{r['step_ms']:.3f} ({r['first_call_s']:.2f} s)")
            else:
                cells.append(f"{r['step_ms']:.3f}")
        f, o = cell.get("jaxopt_ms fused"), cell.get("optax")
        ratio = f"{f['step_ms'] / o['step_ms']:.2f}" if f and o else "—"
        if f is None:
            bw = "—"
        elif f.get("flag"):
            bw = f"n/a ({100 * f['measured_fraction_of_copy']:.0f}% measured: overhead-bound)"
        else:
            bw = f"{f['gbps']:.1f} ({100 * f['fraction_of_copy']:.0f}%)"
        lines.append(f"| {titles.get(wname, wname)} | {alg} | " + " | ".join(cells) + f" | {ratio} | {bw} |")
    lines += best_table(result, titles)
    copies = {r["workload"]: r["copy_gbps"] for r in rows}
    lines += ["", "Copy bandwidth (jitted x * s): " + ", ".join(f"{titles.get(k, k)} {v:.1f} GB/s"
                                                                 for k, v in copies.items())]
    if result["skipped"]:
        lines += ["", "Skipped: " + "; ".join(sorted({f"{s['algorithm']} ({s['reason']})"
                                                      for s in result["skipped"]}))]
    if result["training"]:
        lines += ["", "### Whole training step (forward + backward + Adam)", "",
                  "| model | variant | step ms | vs forward+backward | first call s |", "|---|---|---|---|---|"]
        for r in result["training"]:
            ratio = f"{r['vs_fwd_bwd']:.3f}"
            if r.get("flag"):
                ratio = f"n/a ({ratio} measured: overhead-bound)"
            lines.append(f"| {r['title']} | {r['variant']} | {r['step_ms']:.3f} | {ratio} | "
                         f"{r['first_call_s']:.2f} |")
        if all("best_ms" in r for r in result["training"]):
            lines += ["", "Best of all calls: " + "; ".join(
                f"{r['model']} / {r['variant']}: {r['best_ms']:.3f} ms ({r['best_vs_fwd_bwd']:.3f}x)"
                for r in result["training"])]
    return "\n".join(lines) + "\n"


BEST_LIBS = ("jaxopt_ms per-leaf", "jaxopt_ms fused", "optax", "torch foreach", "torch fused")


def best_table(result: dict, titles: dict) -> list[str]:
    """Best of all calls per variant as a fraction of the best copy timed in the same rounds (the copy of one
    buffer of the workload's size; in parentheses, the copy over the fused step's bytes)."""
    rows = [r for r in result["optimizer"] if "best_fraction_of_copy" in r]
    if not rows:
        return []
    lines = ["", "### Best of all calls: fraction of copy bandwidth (same rounds)", "",
             "| workload | algorithm | " + " | ".join(BEST_LIBS) + " | fused best ms | torch fused best ms | "
             "fused / optax (best) | fused / torch fused (best) |",
             "|---|---|" + "---|" * (len(BEST_LIBS) + 4)]
    seen = []
    for r in rows:
        if (r["workload"], r["algorithm"]) not in seen:
            seen.append((r["workload"], r["algorithm"]))
    for wname, alg in seen:
        cell = {r["library"]: r for r in rows if r["workload"] == wname and r["algorithm"] == alg}
        pct = lambda r: f"{100 * r['best_fraction_of_copy']:.0f}% ({100 * r['best_fraction_of_step_copy']:.0f}%)"
        frac = [pct(cell[lib]) if lib in cell else "—" for lib in BEST_LIBS]
        f, o, t = cell.get("jaxopt_ms fused"), cell.get("optax"), cell.get("torch fused")
        ms = lambda r: f"{r['best_ms']:.3f}" if r else "—"
        ratio = lambda a, b: f"{a['best_ms'] / b['best_ms']:.2f}" if a and b else "—"
        lines.append(f"| {titles.get(wname, wname)} | {alg} | " + " | ".join(frac) +
                     f" | {ms(f)} | {ms(t)} | {ratio(f, o)} | {ratio(f, t)} |")
    return lines


def plot(result: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["optimizer"] if "step_ms" in r]
    pairs = []
    for r in rows:
        if (r["workload"], r["algorithm"]) not in pairs:
            pairs.append((r["workload"], r["algorithm"]))
    libs = []
    for r in rows:
        if r["library"] not in libs:
            libs.append(r["library"])
    ncols = 2 if result["training"] else 1
    fig, axes = plt.subplots(1, ncols, figsize=(7 * ncols + 3, 0.45 * max(len(pairs), 6) + 2), squeeze=False)
    ax = axes[0][0]
    height = 0.8 / max(len(libs), 1)
    for j, lib in enumerate(libs):
        vals = []
        for w, a in pairs:
            match = [r["step_ms"] for r in rows if r["workload"] == w and r["algorithm"] == a and r["library"] == lib]
            vals.append(match[0] if match else 0.0)
        ax.barh([i + j * height for i in range(len(pairs))], vals, height=height, label=lib)
    ax.set_yticks([i + 0.4 - height / 2 for i in range(len(pairs))])
    ax.set_yticklabels([f"{w} / {a}" for w, a in pairs])
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("optimizer step, ms (log)")
    ax.legend(fontsize=8)
    ax.set_title(f"Optimizer step — {result['machine']}", fontsize=9)
    if result["training"]:
        ax = axes[0][1]
        labels = [f"{r['model']}: {r['variant']}" for r in result["training"]]
        ax.barh(range(len(labels)), [r["vs_fwd_bwd"] for r in result["training"]])
        ax.set_yticks(range(len(labels)))
        ax.set_yticklabels(labels, fontsize=8)
        ax.invert_yaxis()
        ax.axvline(1.0, color="k", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("training step time / (forward + backward alone), log")
        ax.set_title("Whole training step (Adam)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


class OneLineErrors(argparse.ArgumentParser):
    """Usage errors as one line, exit status 2; ``jaxopt-ms bench`` names itself through JAXOPT_MS_BENCH_PROG."""

    def error(self, message: str):
        prog = os.environ.get("JAXOPT_MS_BENCH_PROG", self.prog)
        print(f"{prog}: error: {message} (see 'jaxopt-ms bench --runner-help')" if prog == "jaxopt-ms" else
              f"{prog}: error: {message} (see '{self.prog} --help')", file=sys.stderr)
        sys.exit(2)


def main(argv=None) -> int:
    parser = OneLineErrors(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: smallest sizes, Adam only (checks that "
                        "everything runs; its times are mostly overhead)")
    parser.add_argument("--algorithms", help=f"comma-separated subset of {','.join(ALGORITHMS)}")
    parser.add_argument("--workloads", help="comma-separated subset of workload names (flat,gpt,leaves,...)")
    parser.add_argument("--repeats", type=positive_int, default=None, help="timed calls per round (default 10; "
                        "quick 20)")
    parser.add_argument("--rounds", type=positive_int, default=None, help="interleaved rounds (default 3; quick 5)")
    parser.add_argument("--models",
                        help="comma-separated subset of training-step models (mlp_stack,transformer,demo_mlp)")
    parser.add_argument("--no-training", action="store_true", help="skip the whole-training-step probe")
    parser.add_argument("--out", metavar="DIR", help="folder for results.{json,md,png} (default: a new temporary "
                        "folder; benchmarks/results holds the committed figures)")
    parser.add_argument("--mindspore-worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.mindspore_worker:
        print(json.dumps(mindspore_worker(json.loads(args.mindspore_worker))))
        return 0
    check_names(parser, args)
    # Quick mode's steps take microseconds: many samples cost nothing next to compilation and steady the medians.
    args.repeats = args.repeats or (20 if args.quick else 10)
    args.rounds = args.rounds or (5 if args.quick else 3)
    args.out = output_folder(parser, args.out)  # before any measurement: a bad folder fails in a second
    result = run(args)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(result, f, indent=1)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(markdown(result))
    plot(result, os.path.join(args.out, "results.png"))
    print(markdown(result))
    print(f"results written to {args.out}", flush=True)
    return 0


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, but got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, but got {text!r}")
    return value


def check_names(parser: argparse.ArgumentParser, args) -> None:
    """Unknown names in --algorithms / --workloads / --models are usage errors, not a silently empty run."""
    known = {"algorithms": set(ALGORITHMS),
             "workloads": {w.name for s in ("quick", "cpu", "gpu") for w in tree_workloads(s)},
             "models": {m.name for s in ("quick", "cpu", "gpu") for m in model_workloads(s)}}
    for flag, names in known.items():
        given = getattr(args, flag)
        if given is None:
            continue
        unknown = [n for n in given.split(",") if n not in names]
        if unknown:
            parser.error(f"argument --{flag}: unknown {', '.join(map(repr, unknown))}; expected names from "
                         f"{','.join(sorted(names))}")


def output_folder(parser: argparse.ArgumentParser, out: str | None) -> str:
    """``--out``, created and checked writable, or a new temporary folder."""
    if out is None:
        return tempfile.mkdtemp(prefix="jaxopt-ms-bench-")
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        parser.error(f"argument --out: cannot create {out!r}: {e.strerror}")
    if not os.access(out, os.W_OK):
        parser.error(f"argument --out: {out!r} is not writable")
    return os.path.abspath(out)


if __name__ == "__main__":
    sys.exit(main())
