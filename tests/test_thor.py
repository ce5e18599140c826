"""THOR (``jaxopt_ms.thor``, ``jaxopt_ms.thor_layers``) against a plain-NumPy reference.

MindSpore's THOR does not run on its CPU build (``Unsupported op [CholeskyTrsm]`` / ``[ThorIm2Col]``, reference
§8), so there are no fixtures: the reference below is written in float64 NumPy from the documented ``ThorGpu``
rule (reference §3.14, MindSpore 2.10 ``nn/optim/thor.py`` and ``nn/layer/thor_layer.py``): dense
``A = xᵀx/in``, ``G = doutᵀdout/N``; conv ``A``/``G`` from batch-averaged im2col patches ('same' padding for
``A``) and output gradients; damping ``sqrt(lam)`` on each factor (conv: ``sqrt(lam/HoWo)``, inverses times
``sqrt(1/HoWo)``); 128-block-diagonal Cholesky inverses ``(L⁻¹)ᵀL⁻¹`` with the last block padded by identity;
``Gs = G·batch²/loss_scale²``; LayerNorm diagonal rule; weight decay after preconditioning; per-tensor clip;
ApplyMomentum with the GPU kernel's nesterov. Inverses are refreshed at steps ``k % frequency == 0`` and stale
in between; ``damping[k]`` uses THOR's own counter.
"""

from __future__ import annotations

import re
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxopt_ms
from jaxopt_ms.thor_layers import register_conv2d, register_dense, value_grad_and_statistics

STEPS = 7
FREQUENCY = 3
RTOL, ATOL = 2e-4, 2e-5


# ----------------------------------------------------------------------------------------------- NumPy reference
def np_block_inverse(m: np.ndarray) -> np.ndarray:
    """Block-diagonal (128) inverse through Cholesky factors, returned as a full (cropped) matrix."""
    d = m.shape[0]
    s = min(d, 128)
    n = -(-d // s)
    padded = np.eye(n * s)
    padded[:d, :d] = m
    out = np.zeros_like(padded)
    for i in range(n):
        sl = slice(i * s, (i + 1) * s)
        lower_inv = np.linalg.inv(np.linalg.cholesky(padded[sl, sl]))
        out[sl, sl] = lower_inv.T @ lower_inv
    return out[:d, :d]


def np_im2col(x: np.ndarray, k: int, stride: int, padding: str) -> np.ndarray:
    """NCHW -> (N, C*k*k, Ho*Wo), rows ordered (c, i, j); 'SAME' pads as TensorFlow (extra at the end)."""
    n, c, h, w = x.shape
    if padding == "SAME":
        ho, wo = -(-h // stride), -(-w // stride)
        ph, pw = max((ho - 1) * stride + k - h, 0), max((wo - 1) * stride + k - w, 0)
        x = np.pad(x, ((0, 0), (0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)))
    else:
        ho, wo = (h - k) // stride + 1, (w - k) // stride + 1
    cols = [x[:, ci, i:i + stride * ho:stride, j:j + stride * wo:stride].reshape(n, -1)
            for ci in range(c) for i in range(k) for j in range(k)]
    return np.stack(cols, axis=1)


def np_dense_problem(params, batch, loss_scale):
    """Dense layer (kernel (in, out)) times 'ln.gamma' plus 'ln.beta', MSE loss. Returns grads, A, G."""
    x, y = (np.asarray(v, np.float64) for v in batch)
    w, b = params["fc"]["kernel"], params["fc"]["bias"]
    gamma, beta = params["ln"]["gamma"], params["ln"]["beta"]
    h = x @ w + b
    out = h * gamma + beta
    dout = loss_scale * 2.0 * (out - y) / out.size
    dh = dout * gamma
    grads = {"fc": {"kernel": x.T @ dh, "bias": dh.sum(0)},
             "ln": {"gamma": (dout * h).sum(0), "beta": dout.sum(0)}}
    stats = {"fc.kernel": ("dense", x.T @ x / x.shape[1], dh.T @ dh / x.shape[0], 1, 1)}
    return grads, stats


def np_conv_problem(params, batch, loss_scale, k, stride, padding):
    """Conv (kernel OIHW, input NCHW), MSE loss. Returns grads, A, G as MindSpore's Conv2dThor records them."""
    x, y = (np.asarray(v, np.float64) for v in batch)
    w, b = params["conv"]["kernel"], params["conv"]["bias"]
    c_out = w.shape[0]
    patches = np_im2col(x, k, stride, padding)
    out = np.einsum("of,nfp->nop", w.reshape(c_out, -1), patches) + b[None, :, None]
    y = y.reshape(out.shape)
    dout = loss_scale * 2.0 * (out - y) / out.size
    grads = {"conv": {"kernel": np.einsum("nop,nfp->of", dout, patches).reshape(w.shape), "bias": dout.sum((0, 2))}}
    same = np_im2col(x, k, stride, "SAME").mean(0)
    d_mean = dout.mean(0)
    a_n, g_n = same.shape[1], d_mean.shape[1]
    stats = {"conv.kernel": ("conv2d", same @ same.T / a_n, d_mean @ d_mean.T / g_n, a_n, g_n)}
    return grads, stats


def np_to_matrix(name, g):
    return g.T if name == "fc.kernel" else g.reshape(g.shape[0], -1)


def np_from_matrix(name, m, shape):
    return m.T if name == "fc.kernel" else m.reshape(shape)


def np_thor(problem, params, batches, lr, damping, momentum, *, loss_scale=1.0, weight_decay=0.0,
            decay=lambda name: True, layer_norm=lambda name: False, clip=False, nesterov=False,
            frequency=FREQUENCY):
    """The ThorGpu update rule, step by step; returns the list of parameter dicts after each step."""
    flat = lambda tree: {f"{a}.{b}": np.asarray(v, np.float64) for a, sub in tree.items() for b, v in sub.items()}
    p = flat(params)
    moments = {n: np.zeros_like(v) for n, v in p.items()}
    inverses = {}
    trajectory = []
    for k, batch in enumerate(batches):
        nested = {}
        for n, v in p.items():
            a, b = n.split(".")
            nested.setdefault(a, {})[b] = v
        grads, stats = problem(nested, batch, loss_scale)
        grads = flat(grads)
        batch_size = batch[0].shape[0]
        lam = damping[k]
        if k % frequency == 0:
            for name, (kind, a, g, a_n, g_n) in stats.items():
                gs = g * batch_size ** 2 / loss_scale ** 2
                if kind == "dense":
                    inverses[name] = (np_block_inverse(a + np.sqrt(lam) * np.eye(len(a))),
                                      np_block_inverse(gs + np.sqrt(lam) * np.eye(len(gs))))
                else:
                    f = np.sqrt(1.0 / a_n)
                    inverses[name] = (np_block_inverse(a + np.sqrt(lam / a_n) * np.eye(len(a))) * f,
                                      np_block_inverse(gs + np.sqrt(lam / g_n) * np.eye(len(gs))) * f)
        for name in p:
            g = grads[name] / loss_scale
            if name in inverses:
                a_inv, g_inv = inverses[name]
                g = np_from_matrix(name, g_inv @ np_to_matrix(name, g) @ a_inv, g.shape)
            elif layer_norm(name):
                g = g / (g * g / batch_size + np.sqrt(lam))
            if weight_decay > 0 and decay(name):
                g = g + weight_decay * p[name]
            if clip:
                g = g / max(np.linalg.norm(g), 1.0)
            moments[name] = momentum * moments[name] + g
            step = g + momentum * moments[name] if nesterov else moments[name]
            p[name] = p[name] - lr[k] * step
        trajectory.append(dict(p))
    return trajectory


# ------------------------------------------------------------------------------------------------- JAX models
def dense_loss(params, batch, loss_scale=1.0):
    x, y = batch
    h = register_dense(x, params["fc"]["kernel"], params["fc"]["bias"])
    out = h * params["ln"]["gamma"] + params["ln"]["beta"]
    return loss_scale * jnp.mean((out - y) ** 2)


def conv_loss(params, batch, loss_scale=1.0, stride=1, padding="SAME"):
    x, y = batch
    out = register_conv2d(x, params["conv"]["kernel"], params["conv"]["bias"], strides=stride, padding=padding,
                          data_format="NCHW")
    return loss_scale * jnp.mean((out - y.reshape(out.shape)) ** 2)


def run_jax(loss_fn, params, batches, opt, *, jit=True, skip_stale_statistics=True):
    def step(params, state, batch):
        compute = jaxopt_ms.thor_refresh_due(state) if skip_stale_statistics else True
        _, grads, stats = value_grad_and_statistics(loss_fn, params, batch, compute_statistics=compute)
        updates, state = opt.update(grads, state, params, statistics=stats)
        return optax.apply_updates(params, updates), state

    step = jax.jit(step) if jit else step
    state = opt.init(params)
    trajectory = []
    for batch in batches:
        params, state = step(params, state, batch)
        trajectory.append(params)
    return trajectory, state


def make_thor(loss_fn, params, batch, *args, lazy=False, **kwargs):
    """``jaxopt_ms.thor`` with its inverses allocated in ``init`` (one compilation), or lazily."""
    layers = None if lazy else jaxopt_ms.thor_layers.statistics_shapes(loss_fn, params, batch)
    return jaxopt_ms.thor(*args, layers=layers, **kwargs)


def assert_close(jax_traj, np_traj, layout=lambda name, v: v):
    assert len(jax_traj) == len(np_traj)
    for k, (pj, pn) in enumerate(zip(jax_traj, np_traj)):
        names = jaxopt_ms.param_names(pj)
        for name, value in zip(jax.tree.leaves(names), jax.tree.leaves(pj)):
            np.testing.assert_allclose(layout(name, np.asarray(value)), pn[name], rtol=RTOL, atol=ATOL,
                                       err_msg=f"step {k}, leaf {name}")


def make_dense(rng, d_in, d_out, n):
    params = {"fc": {"kernel": rng.normal(size=(d_in, d_out)).astype(np.float32) / np.sqrt(d_in),
                     "bias": rng.normal(size=d_out).astype(np.float32) * 0.1},
              "ln": {"gamma": 1.0 + 0.1 * rng.normal(size=d_out).astype(np.float32),
                     "beta": 0.1 * rng.normal(size=d_out).astype(np.float32)}}
    batches = [(rng.normal(size=(n, d_in)).astype(np.float32), rng.normal(size=(n, d_out)).astype(np.float32))
               for _ in range(STEPS)]
    return params, batches


SCHEDULE_LR = np.linspace(0.2, 0.05, STEPS).astype(np.float32)
SCHEDULE_DAMPING = (0.5 * 0.6 ** np.arange(STEPS)).astype(np.float32)


# ------------------------------------------------------------------------------------------------------ tests
# 150: two 128-blocks, the last padded by identity; (4, 150): an output size past 128 and not a multiple of it, where
# MindSpore's GPU UpdateThorGradient writes past its output (the values inside follow the block formula)
@pytest.mark.parametrize("d_in,d_out", [(5, 3), (150, 4), (4, 150)])
def test_dense_matches_reference(d_in, d_out):
    rng = np.random.default_rng(0)
    n, loss_scale = 8, 4.0
    params, batches = make_dense(rng, d_in, d_out, n)
    loss = lambda p, b: dense_loss(p, b, loss_scale)
    opt = make_thor(loss, params, batches[0], jnp.asarray(SCHEDULE_LR), jnp.asarray(SCHEDULE_DAMPING), 0.9,
                    loss_scale=loss_scale, batch_size=n, frequency=FREQUENCY, lazy=d_in < 128,
                    layer_norm_filter=lambda name, _: name.startswith("ln."))
    got, _ = run_jax(loss, params, batches, opt)
    want = np_thor(np_dense_problem, params, batches, SCHEDULE_LR, SCHEDULE_DAMPING, 0.9, loss_scale=loss_scale,
                   layer_norm=lambda name: name.startswith("ln."))
    assert_close(got, want)
    # The stale steps matter: refreshing every step gives another trajectory.
    every_step = np_thor(np_dense_problem, params, batches, SCHEDULE_LR, SCHEDULE_DAMPING, 0.9,
                         loss_scale=loss_scale, layer_norm=lambda name: name.startswith("ln."), frequency=1)
    assert not np.allclose(every_step[-1]["fc.kernel"], want[-1]["fc.kernel"], rtol=10 * RTOL, atol=10 * ATOL)


@pytest.mark.parametrize("weight_decay,clip,nesterov", [(0.05, False, False), (0.0, True, False), (0.01, True, True)])
def test_dense_options(weight_decay, clip, nesterov):
    rng = np.random.default_rng(1)
    n = 6
    params, batches = make_dense(rng, 4, 3, n)
    decay = lambda name, _=None: not name.endswith("bias")
    opt = make_thor(dense_loss, params, batches[0], jnp.asarray(SCHEDULE_LR * 3), jnp.asarray(SCHEDULE_DAMPING),
                    0.8, weight_decay=weight_decay, batch_size=n, use_nesterov=nesterov, decay_filter=decay,
                    enable_clip_grad=clip, frequency=2)
    got, _ = run_jax(dense_loss, params, batches, opt, skip_stale_statistics=False)
    want = np_thor(np_dense_problem, params, batches, SCHEDULE_LR * 3, SCHEDULE_DAMPING, 0.8,
                   weight_decay=weight_decay, decay=decay, clip=clip, nesterov=nesterov, frequency=2)
    assert_close(got, want)


def make_conv(rng, c_in, c_out, k, n, hw, stride, padding, layout="NCHW"):
    kernel = rng.normal(size=(c_out, c_in, k, k)).astype(np.float32) / np.sqrt(c_in * k * k)
    params = {"conv": {"kernel": kernel, "bias": 0.1 * rng.normal(size=c_out).astype(np.float32)}}
    out_hw = -(-hw // stride) if padding == "SAME" else (hw - k) // stride + 1
    batches = [(rng.normal(size=(n, c_in, hw, hw)).astype(np.float32),
                rng.normal(size=(n, c_out, out_hw, out_hw)).astype(np.float32)) for _ in range(STEPS)]
    return params, batches


@pytest.mark.parametrize("c_in,k,stride,padding", [
    (2, 3, 1, "SAME"),
    (3, 3, 2, "VALID"),    # A from 'same' patches, G from the conv's own (smaller) output: MindSpore's GPU build
    (15, 3, 1, "SAME"),    # A is 135 x 135: a 128-block and a padded one
])
def test_conv_matches_reference(c_in, k, stride, padding):
    rng = np.random.default_rng(2)
    n, loss_scale = 4, 2.0
    params, batches = make_conv(rng, c_in, 4, k, n, 6, stride, padding)
    loss = lambda p, b: conv_loss(p, b, loss_scale, stride, padding)
    opt = make_thor(loss, params, batches[0], jnp.asarray(SCHEDULE_LR), jnp.asarray(SCHEDULE_DAMPING), 0.9,
                    loss_scale=loss_scale, batch_size=n, frequency=FREQUENCY)
    got, _ = run_jax(loss, params, batches, opt)
    problem = lambda p, b, s: np_conv_problem(p, b, s, k, stride, padding)
    want = np_thor(problem, params, batches, SCHEDULE_LR, SCHEDULE_DAMPING, 0.9, loss_scale=loss_scale)
    assert_close(got, want)


class FlaxConv(nn.Module):
    """A linen conv layer (NHWC, HWIO kernel) registered for THOR."""

    features: int
    kernel_size: int

    @nn.compact
    def __call__(self, x):
        k = self.kernel_size
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (k, k, x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        return register_conv2d(x, kernel, bias, padding="SAME")


class FlaxDense(nn.Module):
    features: int

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        return register_dense(x, kernel, bias)


class FlaxNet(nn.Module):
    @nn.compact
    def __call__(self, x):
        h = jax.nn.relu(FlaxConv(3, 3, name="conv")(x))
        return FlaxDense(2, name="fc")(h.reshape(h.shape[0], -1))


def test_flax_linen_conv_matches_reference():
    rng = np.random.default_rng(3)
    n = 4
    params_oihw, batches_nchw = make_conv(rng, 2, 3, 3, n, 5, 1, "SAME")
    model = FlaxConv(3, 3)
    params = {"conv": {"kernel": params_oihw["conv"]["kernel"].transpose(2, 3, 1, 0),
                       "bias": params_oihw["conv"]["bias"]}}
    batches = [(x.transpose(0, 2, 3, 1), y.transpose(0, 2, 3, 1)) for x, y in batches_nchw]
    loss = lambda p, b: jnp.mean((model.apply({"params": p["conv"]}, b[0]) - b[1]) ** 2)
    opt = make_thor(loss, params, batches[0], jnp.asarray(SCHEDULE_LR), jnp.asarray(SCHEDULE_DAMPING), 0.9,
                    batch_size=n, frequency=FREQUENCY)
    got, _ = run_jax(loss, params, batches, opt)
    problem = lambda p, b, s: np_conv_problem(p, b, s, 3, 1, "SAME")
    want = np_thor(problem, params_oihw, batches_nchw, SCHEDULE_LR, SCHEDULE_DAMPING, 0.9)
    to_oihw = lambda name, v: v.transpose(3, 2, 0, 1) if name == "conv.kernel" else v
    assert_close(got, want, layout=to_oihw)


def test_flax_model_statistics_and_training():
    rng = np.random.default_rng(4)
    model = FlaxNet()
    x = rng.normal(size=(8, 5, 5, 2)).astype(np.float32)
    labels = (x.sum((1, 2, 3)) > 0).astype(np.int32)
    params = jax.jit(model.init)(jax.random.key(0), x)["params"]
    loss = lambda p, b: optax.softmax_cross_entropy_with_integer_labels(model.apply({"params": p}, b[0]), b[1]).mean()
    value, grads, stats = jax.jit(lambda p, b: value_grad_and_statistics(loss, p, b))(params, (x, labels))
    assert sorted(stats) == ["conv.kernel", "fc.kernel"]
    assert stats["conv.kernel"].a.shape == (18, 18) and stats["conv.kernel"].g.shape == (3, 3)
    assert stats["fc.kernel"].a.shape == (75, 75) and stats["fc.kernel"].g.shape == (2, 2)
    plain_grads = jax.jit(jax.grad(loss))(params, (x, labels))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), grads, plain_grads)
    np.testing.assert_allclose(value, loss(params, (x, labels)), rtol=1e-6)
    # Dense A = xᵀx / in_features on the flattened conv activations.
    h = np.asarray(jax.jit(FlaxConv(3, 3).apply)({"params": params["conv"]}, x))
    h = np.maximum(h, 0.0).reshape(8, -1)
    np.testing.assert_allclose(stats["fc.kernel"].a, h.T @ h / 75, rtol=1e-5, atol=1e-6)

    opt = make_thor(loss, params, (x, labels), jnp.full(10, 0.1), jnp.full(10, 0.1), 0.9, batch_size=8,
                    frequency=5)
    trajectory, state = run_jax(loss, params, [(x, labels)] * 10, opt)
    assert float(loss(trajectory[-1], (x, labels))) < 0.5 * float(value)
    assert int(state[1].count) == 10


def test_inverses_allocated_in_init_and_chain_compose():
    rng = np.random.default_rng(5)
    params, batches = make_dense(rng, 5, 3, 4)
    opt = make_thor(dense_loss, params, batches[0], jnp.asarray(SCHEDULE_LR), jnp.asarray(SCHEDULE_DAMPING), 0.9,
                    batch_size=4, frequency=FREQUENCY)
    state0 = opt.init(params)
    assert state0[1].a_inv["fc.kernel"].shape == (1, 5, 5) and state0[1].g_inv["fc.kernel"].shape == (1, 3, 3)
    # Inside optax.chain: the statistics keyword reaches THOR; the state keeps its structure; lr is readable.
    chained = optax.chain(opt, optax.scale(1.0))
    got, state = run_jax(dense_loss, params, batches, chained)
    assert jax.tree.structure(state[0]) == jax.tree.structure(state0)
    want = np_thor(np_dense_problem, params, batches, SCHEDULE_LR, SCHEDULE_DAMPING, 0.9)
    assert_close(got, want)
    np.testing.assert_allclose(jaxopt_ms.current_lr(state), SCHEDULE_LR[-1])


def test_refresh_flag_and_missing_statistics():
    rng = np.random.default_rng(6)
    params, batches = make_dense(rng, 3, 2, 4)
    opt = jaxopt_ms.thor(jnp.asarray(0.1), jnp.asarray(0.1), 0.9, batch_size=4, frequency=2)
    state = opt.init(params)
    flags = []
    grads_and_stats = jax.jit(lambda p, b: value_grad_and_statistics(dense_loss, p, b)[1:])
    update = jax.jit(lambda g, st, p, stats: opt.update(g, st, p, statistics=stats))
    for batch in batches[:5]:
        flags.append(bool(jaxopt_ms.thor_refresh_due(state)))
        grads, stats = grads_and_stats(params, batch)
        _, state = update(grads, state, params, stats)
    assert flags == [True, False, True, False, True]
    with pytest.raises(ValueError, match="statistics"):
        opt.update(grads, state, params)
    _, _, zeros = value_grad_and_statistics(dense_loss, params, batches[0], compute_statistics=False)
    assert not np.any(np.asarray(zeros["fc.kernel"].a)) and not np.any(np.asarray(zeros["fc.kernel"].g))


def test_registration_errors():
    params = {"w": jnp.ones((3, 2))}
    x = jnp.ones((4, 3))
    with pytest.raises(ValueError, match="not a leaf"):
        value_grad_and_statistics(lambda p, b: register_dense(b, p["w"] * 1.0).sum(), params, x)
    with pytest.raises(ValueError, match="twice"):
        value_grad_and_statistics(lambda p, b: register_dense(register_dense(b, p["w"]) @ p["w"].T, p["w"]).sum(),
                                  params, x)
    # Outside value_grad_and_statistics the tags are the plain layers.
    np.testing.assert_allclose(register_dense(x, params["w"], jnp.ones(2)), x @ params["w"] + 1.0)


@pytest.mark.parametrize("kwargs,error", [
    ({"momentum": 1}, TypeError),
    ({"momentum": -0.1}, ValueError),
    ({"frequency": 1}, ValueError),
    ({"frequency": 2.0}, TypeError),
    ({"learning_rate": 0.1}, TypeError),          # MindSpore: learning_rate must be a Tensor
    ({"learning_rate": np.ones((2, 2), np.float32)}, ValueError),
    ({"damping": [0.1, 0.2]}, TypeError),
    ({"loss_scale": 0.0}, ValueError),
    ({"weight_decay": -1.0}, ValueError),
    ({"use_nesterov": 1}, TypeError),
])
def test_validation(kwargs, error):
    args = {"learning_rate": np.array(0.1, np.float32), "damping": np.ones(3, np.float32),
            "momentum": 0.9}
    args.update(kwargs)
    with pytest.raises(error):
        jaxopt_ms.thor(**args)


def test_readme_thor_example_runs():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", readme, flags=re.S) if "jaxopt_ms.thor(" in b)
    namespace: dict = {}
    exec(block, namespace)  # noqa: S102 - the README's own example
    assert np.isfinite(float(namespace["loss"])) and int(namespace["state"][1].count) == 1
