"""The small training task behind ``jaxopt-ms demo`` and ``jaxopt-ms compare``.

scikit-learn's handwritten digits (1797 8x8 images that ship inside scikit-learn: nothing is downloaded), split
80/20, and a small network written in plain JAX whose parameter names follow MindSpore's conventions
(``fc1.weight``, ``ln1.gamma``, ``ln1.beta``, ...) so that MindSpore's default weight-decay filter and
regular-expression parameter groups behave as they would in a MindSpore script.

Not imported by ``import jaxopt_ms``; scikit-learn is an optional extra (``pip install 'jaxopt_ms[demo]'``).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = ["Dataset", "EpochRecord", "TrainResult", "init_model", "load_digits", "model_apply", "train"]

MODELS = ("mlp", "cnn")


class MissingExtraError(RuntimeError):
    """An optional dependency of the demo is not installed."""


def require(module: str, package: str) -> Any:
    """Imports ``module`` or raises :class:`MissingExtraError` saying how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingExtraError(
            f"this command needs '{package}', which is not installed; install the demo extra with "
            f"pip install 'jaxopt_ms[demo]' (or pip install {package})."
        ) from e


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Digits images in ``[0, 1]`` with shape ``(n, 8, 8, 1)`` and integer labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_digits(seed: int = 0, test_fraction: float = 0.2) -> Dataset:
    """scikit-learn's digits, shuffled with ``seed`` and split into train and test sets."""
    datasets = require("sklearn.datasets", "scikit-learn")
    digits = datasets.load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]
    y = digits.target.astype(np.int32)
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = int(round(len(y) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    return Dataset(x[train], y[train], x[test], y[test])


def _dense(key: jax.Array, n_in: int, n_out: int) -> dict[str, jax.Array]:
    weight = jax.random.normal(key, (n_out, n_in), jnp.float32) * np.sqrt(2.0 / n_in)
    return {"weight": weight, "bias": jnp.zeros((n_out,), jnp.float32)}


def _conv(key: jax.Array, c_in: int, c_out: int) -> dict[str, jax.Array]:
    # MindSpore's layout: (out_channels, in_channels, kh, kw).
    weight = jax.random.normal(key, (c_out, c_in, 3, 3), jnp.float32) * np.sqrt(2.0 / (9 * c_in))
    return {"weight": weight, "bias": jnp.zeros((c_out,), jnp.float32)}


def _layer_norm_params(n: int) -> dict[str, jax.Array]:
    return {"gamma": jnp.ones((n,), jnp.float32), "beta": jnp.zeros((n,), jnp.float32)}


def init_model(kind: str, seed: int = 0) -> dict[str, Any]:
    """Parameters of the ``'mlp'`` (64-128-LayerNorm-64-10) or ``'cnn'`` (2 conv + LayerNorm + dense) model."""
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)
    if kind == "mlp":
        return {"fc1": _dense(k1, 64, 128), "ln1": _layer_norm_params(128), "fc2": _dense(k2, 128, 64),
                "fc3": _dense(k3, 64, 10)}
    if kind == "cnn":
        return {"conv1": _conv(k1, 1, 16), "conv2": _conv(k2, 16, 32), "ln1": _layer_norm_params(128),
                "fc1": _dense(k3, 128, 10)}
    raise ValueError(f"unknown model {kind!r}; expected one of {MODELS}.")


def _linear(p: dict[str, jax.Array], x: jax.Array) -> jax.Array:
    return x @ p["weight"].T + p["bias"]


def _layer_norm(p: dict[str, jax.Array], x: jax.Array) -> jax.Array:
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + 1e-5) * p["gamma"] + p["beta"]


def _conv_relu_pool(p: dict[str, jax.Array], x: jax.Array) -> jax.Array:
    y = jax.lax.conv_general_dilated(x, p["weight"], (1, 1), "SAME", dimension_numbers=("NHWC", "OIHW", "NHWC"))
    y = jax.nn.relu(y + p["bias"])
    return jax.lax.reduce_window(y, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")


def model_apply(params: dict[str, Any], x: jax.Array) -> jax.Array:
    """Logits of a batch ``x`` of shape ``(n, 8, 8, 1)``; the model kind is read from the parameter names."""
    if "conv1" in params:
        h = _conv_relu_pool(params["conv2"], _conv_relu_pool(params["conv1"], x))
        h = _layer_norm(params["ln1"], h.reshape(h.shape[0], -1))
        return _linear(params["fc1"], h)
    h = jax.nn.relu(_linear(params["fc1"], x.reshape(x.shape[0], -1)))
    h = jax.nn.relu(_linear(params["fc2"], _layer_norm(params["ln1"], h)))
    return _linear(params["fc3"], h)


def cross_entropy(params: dict[str, Any], x: jax.Array, y: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy of the model on ``(x, y)``."""
    return optax.softmax_cross_entropy_with_integer_labels(model_apply(params, x), y).mean()


@dataclasses.dataclass
class EpochRecord:
    """Metrics after ``epoch`` epochs (epoch 0: before training)."""

    epoch: int
    train_loss: float
    train_accuracy: float
    test_accuracy: float
    learning_rate: str | None


@dataclasses.dataclass
class TrainResult:
    """What one training run produced: per-step losses, per-epoch metrics, wall time."""

    name: str
    step_losses: list[float]
    epochs: list[EpochRecord]
    seconds: float
    final_params: Any = None

    @property
    def test_accuracy(self) -> float:
        return self.epochs[-1].test_accuracy


def _batches(n: int, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    order = rng.permutation(n)
    for start in range(0, n - batch_size + 1, batch_size):  # full batches only: one compiled shape
        yield order[start:start + batch_size]


def steps_per_epoch(data: Dataset, batch_size: int) -> int:
    return len(data.y_train) // batch_size


def _learning_rate_of(state: Any) -> str | None:
    """``current_lr`` for display: one value, or one per parameter group."""
    from jaxopt_ms.transforms.learning_rate import current_lr

    try:
        lr = current_lr(state)
    except ValueError:
        return None
    if isinstance(lr, tuple):
        return "(" + ", ".join(f"{float(x):.3g}" for x in lr) + ")"
    return f"{float(lr):.3g}"


def train(
    optimizer: optax.GradientTransformation,
    data: Dataset,
    *,
    model: str = "mlp",
    epochs: int = 10,
    batch_size: int = 64,
    seed: int = 0,
    loss_multiplier: Callable[[Any], Any] | None = None,
    name: str = "",
    on_step: Callable[[int, float], None] | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> TrainResult:
    """Trains the model with ``optimizer`` and returns the loss curve and per-epoch metrics.

    Args:
        optimizer: any ``optax.GradientTransformation``.
        loss_multiplier: ``state -> scale``; the loss is multiplied by it before differentiation (a loss scale:
            the optimizer, built with the same ``loss_scale``, divides the gradients by it again).
        on_step, on_epoch: callbacks for progress display.
    """
    params = init_model(model, seed)
    state = optimizer.init(params)
    multiplier = loss_multiplier or (lambda _: 1.0)

    @jax.jit
    def step(params, state, x, y):
        def scaled_loss(p):
            loss = cross_entropy(p, x, y)
            return loss * multiplier(state), loss

        grads, loss = jax.grad(scaled_loss, has_aux=True)(params)
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    @jax.jit
    def evaluate(params, x, y):
        logits = model_apply(params, x)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return loss, (logits.argmax(-1) == y).mean()

    def record(epoch: int) -> EpochRecord:
        train_loss, train_acc = evaluate(params, data.x_train, data.y_train)
        _, test_acc = evaluate(params, data.x_test, data.y_test)
        rec = EpochRecord(epoch, float(train_loss), float(train_acc), float(test_acc), _learning_rate_of(state))
        if on_epoch is not None:
            on_epoch(rec)
        return rec

    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    history = [record(0)]
    step_losses: list[float] = []
    for epoch in range(1, epochs + 1):
        for idx in _batches(len(data.y_train), batch_size, rng):
            params, state, loss = step(params, state, data.x_train[idx], data.y_train[idx])
            step_losses.append(float(loss))
            if on_step is not None:
                on_step(len(step_losses), step_losses[-1])
        history.append(record(epoch))
    return TrainResult(name, step_losses, history, time.perf_counter() - start, params)


def plot_losses(results: list[TrainResult], path: str, title: str) -> str:
    """Saves the per-step training loss of each result (log scale) to ``path`` (PNG); returns ``path``."""
    require("matplotlib", "matplotlib")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.0), dpi=100)
    ax = fig.subplots()
    for res in results:
        losses = np.asarray(res.step_losses)
        window = max(1, len(losses) // 50)  # light smoothing so curves can be told apart
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        ax.plot(np.arange(window, len(losses) + 1), smooth, label=f"{res.name} ({res.test_accuracy:.1%})")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (batch)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    return path
