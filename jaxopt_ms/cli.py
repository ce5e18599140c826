"""Command line: ``jaxopt-ms demo | compare | bench | list`` (also ``python -m jaxopt_ms ...``).

* ``demo``: trains a small CNN (or MLP) on scikit-learn's digits with any jaxopt_ms optimizer and its options
  (learning rate, schedule, weight decay, decay filter, parameter groups, loss scale), shows a progress bar, prints
  loss and accuracy per epoch and the final test accuracy, and saves the loss curve as an image (by default in the
  system's temporary folder).
* ``compare``: the same task with several optimizers; prints a table and saves one plot.
* ``bench``: runs ``benchmarks/run.py`` of a source checkout in its quick mode, passing every flag on; the runner
  writes into a new temporary folder unless ``--out DIR`` names one.
* ``list``: the optimizers this installation has, with the first sentence of their documentation.

Every flag value is checked before any data is loaded or anything compiled; a bad one is reported as one line
``jaxopt-ms: error: ...`` naming the flag and the value, with exit status 2.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import math
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import jax

import jaxopt_ms

__all__ = ["main", "run"]

# Every optimizer name of the design, in display order; those this installation has are used.
OPTIMIZER_NAMES = (
    "sgd", "momentum", "adam", "adam_weight_decay", "lazy_adam", "adam_offload", "rmsprop", "adagrad",
    "proximal_adagrad", "ftrl", "lamb", "lars", "adafactor", "adadelta", "adamax", "asgd", "rprop", "thor",
)
# Starting points that train the digits task well; any of them can be overridden from the command line.
DEMO_SETTINGS: dict[str, dict[str, Any]] = {
    "sgd": {"learning_rate": 0.1, "momentum": 0.9},
    "momentum": {"learning_rate": 0.05, "momentum": 0.9},
    "adam": {"learning_rate": 3e-3},
    "adam_weight_decay": {"learning_rate": 3e-3},
    "lazy_adam": {"learning_rate": 3e-3},
    "adam_offload": {"learning_rate": 3e-3},
    "rmsprop": {"learning_rate": 1e-3},
    "adagrad": {"learning_rate": 0.05},
    "proximal_adagrad": {"learning_rate": 0.05},
    "ftrl": {"learning_rate": 0.2},
    "lamb": {"learning_rate": 1e-2},
    "lars": {"learning_rate": 0.1, "coefficient": 0.02},
    "adafactor": {},
    "adadelta": {"learning_rate": 1.0},
    "adamax": {"learning_rate": 3e-3},
    "asgd": {"learning_rate": 0.05},
    "rprop": {"learning_rate": 1e-3},
}
UNSUPPORTED = {"thor": "THOR needs per-layer activations and output gradients of registered layers; the demo's "
                       "plain-JAX model has no layer registration. See jaxopt_ms.thor's documentation."}
SCHEDULES = ("constant", "cosine", "exponential", "polynomial", "warmup", "inverse")
DECAY_FILTERS = {"mindspore": "mindspore_decay_filter", "flax": "flax_decay_filter",
                 "equinox": "equinox_decay_filter", "all": "decay_all"}
LARS_FILTERS = {"mindspore": "mindspore_lars_filter", "all": "decay_all"}
# Matplotlib's raster and vector formats (checked before training, without importing matplotlib).
PLOT_FORMATS = (".png", ".pdf", ".svg", ".svgz", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".eps", ".ps")
# scikit-learn's digits: 1797 images, of which the demo trains on all but the test fifth.
DIGITS_IMAGES = 1797
TEST_FRACTION = 0.2


class CliError(Exception):
    """A usage error reported as ``jaxopt-ms: error: ...`` with exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse that raises :class:`CliError` instead of printing its usage and exiting: one error line."""

    def error(self, message: str) -> NoReturn:
        raise CliError(f"{message} (see '{self.prog} --help')")


def available_optimizers() -> list[str]:
    """The optimizer names of the design that this installation of jaxopt_ms exports."""
    return [n for n in OPTIMIZER_NAMES if callable(getattr(jaxopt_ms, n, None))]


def _factory(name: str, flag: str = "--optimizer") -> Callable[..., Any]:
    if name in UNSUPPORTED:
        raise CliError(f"{flag} {name}: not supported by this command: {UNSUPPORTED[name]}")
    factory = getattr(jaxopt_ms, name, None) if name in OPTIMIZER_NAMES else None
    if not callable(factory) or inspect.isclass(factory):
        raise CliError(f"{flag}: unknown optimizer '{name}'; available: {', '.join(available_optimizers())}.")
    return factory


# ---------------------------------------------------------------------------------------------- argument types
# argparse calls these on the text of a flag; an ArgumentTypeError becomes "argument --flag: <message>".

def _number(text: str, *, lower: float | None = None, strict: bool = False) -> float:
    """A finite float, ``> lower`` (``strict``) or ``>= lower``."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, but got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, but got {text!r}")
    if lower is not None and (value <= lower if strict else value < lower):
        raise argparse.ArgumentTypeError(f"expected a number {'>' if strict else '>='} {lower:g}, but got {text!r}")
    return value


def non_negative_number(text: str) -> float:
    """A finite number ``>= 0`` (learning rates, weight decays)."""
    return _number(text, lower=0.0)


def positive_number(text: str) -> float:
    """A finite number ``> 0`` (loss scales)."""
    return _number(text, lower=0.0, strict=True)


def _integer(text: str, lower: int, upper: int | None = None) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, but got {text!r}") from None
    if value < lower or (upper is not None and value > upper):
        bound = f">= {lower}" if upper is None else f"in [{lower}, {upper}]"
        raise argparse.ArgumentTypeError(f"expected an integer {bound}, but got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An integer ``>= 1`` (epochs, batch size)."""
    return _integer(text, 1)


def seed(text: str) -> int:
    """A seed: an integer in ``[0, 2**32 - 1]`` (what ``jax.random.PRNGKey`` and NumPy both take)."""
    return _integer(text, 0, 2**32 - 1)


def regex(text: str) -> str:
    """A regular expression that compiles."""
    if not text:
        raise argparse.ArgumentTypeError("expected a regular expression, but got an empty one")
    try:
        re.compile(text)
    except re.error as e:
        raise argparse.ArgumentTypeError(f"invalid regular expression {text!r}: {e}") from None
    return text


def _group_value(text: str) -> tuple[str, float]:
    # The value never contains '=', a regular expression may: split at the last '='.
    pattern, sep, value = text.rpartition("=")
    if not sep or not pattern:
        raise argparse.ArgumentTypeError(f"expected REGEX=VALUE, but got {text!r}")
    try:
        return regex(pattern), non_negative_number(value)
    except argparse.ArgumentTypeError as e:
        raise argparse.ArgumentTypeError(f"{e} (in {text!r})") from None


def option(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with a Python-literal value (``0.99``, ``True``, ``(0.5, 1.2)``); other text stays a string."""
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE with KEY an argument name, but got {text!r}")
    value = _literal(value)
    if key in ("decay_filter", "lars_filter"):
        value = _filter_preset(key, value)
    return key, value


def optimizer_names(text: str) -> list[str]:
    """A comma-separated list of optimizer names; spaces around the names are ignored."""
    names = [n.strip() for n in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected comma-separated optimizer names, but got {text!r}")
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"an optimizer is named twice in {text!r}")
    return names


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        lowered = text.lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        return text


def _filter_preset(key: str, value: Any) -> Callable[..., bool]:
    """``--opt decay_filter=flax``: a preset name (or its function's name) for a name filter."""
    presets = LARS_FILTERS if key == "lars_filter" else DECAY_FILTERS
    name = value.removeprefix("jaxopt_ms.") if isinstance(value, str) else None
    name = presets.get(name, name)
    if name not in presets.values():
        raise argparse.ArgumentTypeError(f"{key} takes a preset name, one of {', '.join(presets)}, but got "
                                         f"{value!r}")
    return getattr(jaxopt_ms, name)


def _learning_rate(kind: str, lr: float, total_steps: int, steps_per_epoch: int, epochs: int, as_list: bool) -> Any:
    """``lr`` as a jaxopt_ms schedule (callable) or MindSpore dynamic-lr list over the whole run."""
    if kind == "constant":
        return lr
    lr = float(lr)
    if as_list:
        module_name = "jaxopt_ms.dynamic_lr"
        build = {
            "cosine": lambda m: m.cosine_decay_lr(0.0, lr, total_steps, steps_per_epoch, epochs),
            "exponential": lambda m: m.exponential_decay_lr(lr, 0.1, total_steps, steps_per_epoch, epochs),
            "polynomial": lambda m: m.polynomial_decay_lr(lr, 0.0, total_steps, steps_per_epoch, epochs, 1.0),
            "warmup": lambda m: m.warmup_lr(lr, total_steps, steps_per_epoch, 1),
            "inverse": lambda m: m.inverse_decay_lr(lr, 1.0, total_steps, steps_per_epoch, epochs),
        }[kind]
    else:
        module_name = "jaxopt_ms.schedules"
        build = {
            "cosine": lambda m: m.cosine_decay(0.0, lr, total_steps),
            "exponential": lambda m: m.exponential_decay(lr, 0.1, total_steps),
            "polynomial": lambda m: m.polynomial_decay(lr, 0.0, total_steps, 1.0),
            "warmup": lambda m: m.warmup(lr, steps_per_epoch),
            "inverse": lambda m: m.inverse_decay(lr, 1.0, total_steps),
        }[kind]
    return build(_optional_module(module_name, f"--schedule {kind}"))


def _param_groups(args: argparse.Namespace, lr_of: Callable[[float], Any], names: list[str]) -> list[dict] | None:
    """MindSpore parameter groups from ``--group-lr/--group-wd/--group-gc``, plus one group for the rest."""
    groups: dict[str, dict[str, Any]] = {}
    for pattern, value in args.group_lr:
        groups.setdefault(pattern, {})["lr"] = lr_of(value)
    for pattern, value in args.group_wd:
        groups.setdefault(pattern, {})["weight_decay"] = value
    for pattern in args.group_gc:
        groups.setdefault(pattern, {})["grad_centralization"] = True
    if not groups:
        return None
    patterns = [re.compile(r) for r in groups]
    out = [{"params": pattern, **settings} for pattern, settings in groups.items()]
    rest = [n for n in names if not any(p.search(n) for p in patterns)]
    if rest:  # the other leaves train with the optimizer-level settings (a leaf in no group is frozen)
        out.append({"params": rest})
    return out


def _options(name: str, factory: Callable[..., Any], options: list[tuple[str, Any]]) -> dict[str, Any]:
    """``--opt`` pairs as keyword arguments (filter presets already resolved); an integer for a float default made a
    float (MindSpore's float checks are strict, ``--opt momentum=0`` means ``0.0``)."""
    params = inspect.signature(factory).parameters
    out = {}
    for key, value in options:
        default = params[key].default if key in params else None
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if key == "learning_rate" and not (isinstance(value, (int, float)) and not isinstance(value, bool)
                                           and math.isfinite(value) and value >= 0):
            raise CliError(f"--opt learning_rate: expected a finite number >= 0, but got {value!r}; or use --lr.")
        out[key] = value
    return out


def build_optimizer(name: str, args: argparse.Namespace, *, total_steps: int, steps_per_epoch: int,
                    param_names: list[str]) -> tuple[Any, Callable[[Any], Any] | None, dict[str, Any]]:
    """The optimizer the command line asks for, the loss multiplier (loss scale) and the arguments used."""
    factory = _factory(name)
    accepted = inspect.signature(factory).parameters
    kwargs: dict[str, Any] = dict(DEMO_SETTINGS.get(name, {}))
    if args.lr is not None:
        kwargs["learning_rate"] = args.lr
    kwargs.update(_options(name, factory, args.opt))

    def lr_of(value: float) -> Any:
        return _learning_rate(args.schedule, value, total_steps, steps_per_epoch, args.epochs, args.lr_list)

    if "learning_rate" in kwargs and kwargs["learning_rate"] is not None:
        kwargs["learning_rate"] = lr_of(kwargs["learning_rate"])
    elif args.schedule != "constant":
        raise CliError(f"--schedule needs a learning rate; give one with --lr for optimizer '{name}'.")
    if args.weight_decay is not None:
        kwargs["weight_decay"] = args.weight_decay
    if args.decay_filter is not None:
        kwargs["decay_filter"] = getattr(jaxopt_ms, DECAY_FILTERS[args.decay_filter])
    if args.loss_scale is not None:
        kwargs["loss_scale"] = args.loss_scale
    groups = _param_groups(args, lr_of, param_names)
    if groups is not None:
        kwargs["param_groups"] = groups

    if name == "lars":  # a wrapper: the keyword arguments above configure the optimizer it wraps
        inner_name = kwargs.pop("optimizer", "momentum")
        if not isinstance(inner_name, str):
            raise CliError(f"--opt optimizer: expected an optimizer name, but got {inner_name!r}.")
        _factory(inner_name, "--opt optimizer")
        lars_keys = {k for k in accepted if k != "optimizer"}
        lars_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in lars_keys and k != "learning_rate"}
        inner_args = argparse.Namespace(**{**vars(args), "opt": [], "lr": None})
        inner, _, inner_kwargs = build_optimizer(inner_name, inner_args, total_steps=total_steps,
                                                 steps_per_epoch=steps_per_epoch, param_names=param_names)
        inner = _construct(inner_name, _factory(inner_name), {**inner_kwargs, **kwargs}, _flags(args))
        kwargs = {"optimizer": inner, **lars_kwargs}

    unknown = sorted(k for k in kwargs if k not in accepted)
    if unknown and not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values()):
        raise CliError(f"optimizer '{name}' has no argument(s) {unknown}; its arguments are "
                       f"{[k for k in accepted]}.")
    optimizer = _construct(name, factory, kwargs, _flags(args))

    multiplier = None
    if args.loss_scale is not None:
        scale = float(args.loss_scale)
        multiplier = lambda state: scale  # the optimizer divides by the same loss_scale
    if args.dynamic_loss_scale:
        loss_scale = _optional_module("jaxopt_ms.loss_scale", "--dynamic-loss-scale")
        optimizer = loss_scale.dynamic_loss_scale(optimizer, init_loss_scale=2.0**15, scale_window=50)
        multiplier = loss_scale.loss_scale_value
    return optimizer, multiplier, kwargs


def _flags(args: argparse.Namespace) -> dict[str, str]:
    """Optimizer argument -> the flag that set it, for error messages."""
    given = {"learning_rate": ("--lr", args.lr), "weight_decay": ("--weight-decay", args.weight_decay),
             "loss_scale": ("--loss-scale", args.loss_scale)}
    flags = {key: flag for key, (flag, value) in given.items() if value is not None}
    if args.group_lr or args.group_wd or args.group_gc:
        flags["param_groups"] = "--group-lr/--group-wd/--group-gc"
    flags.update({key: f"--opt {key}" for key, _ in args.opt})
    return flags


def _construct(name: str, factory: Callable[..., Any], kwargs: dict[str, Any], flags: dict[str, str]) -> Any:
    """``factory(**kwargs)``; the factory's argument checks (TypeError / ValueError) become usage errors naming
    the flag that gave the argument."""
    try:
        return factory(**kwargs)
    except (TypeError, ValueError, KeyError, OverflowError) as e:
        flag = next((f for key, f in flags.items() if f"'{key}'" in str(e)), None)
        raise CliError(f"argument {flag}: {e}" if flag else f"{name}: {e}") from e


def _optional_module(module_name: str, flag: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ImportError as e:
        raise CliError(f"{flag} needs {module_name}, which this version of jaxopt_ms does not have.") from e


def _format_value(value: Any) -> str:
    factory = getattr(value, "factory", None)
    if callable(factory) and isinstance(getattr(value, "arguments", None), dict):  # an optimizer (LARS's inner)
        shown = ", ".join(f"{k}={_format_value(v)}" for k, v in value.arguments.items())
        return f"{getattr(factory, '__name__', 'optimizer')}({shown})"
    if callable(value) and not isinstance(value, type):
        return getattr(value, "__name__", type(value).__name__)
    if isinstance(value, list) and len(value) > 4 and all(isinstance(v, (int, float)) for v in value):
        return f"[{value[0]:.3g}, {value[1]:.3g}, ..., {value[-1]:.3g}] ({len(value)} steps)"
    if isinstance(value, dict) and "params" in value:
        return "{" + ", ".join(f"{k}: {_format_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_format_value(v) for v in value) + "]"
    return repr(value)


def _progress(total: int, enabled: bool, desc: str) -> Any:
    if not enabled:
        return None
    from jaxopt_ms._demo import require

    tqdm = require("tqdm", "tqdm")
    # disable=None: no bar when stderr is not a terminal (a log file would collect every redraw)
    return tqdm.tqdm(total=total, desc=f"{desc} (compiling)", unit="step", leave=False, dynamic_ncols=True,
                     disable=None)


def _say(bar: Any, text: str) -> None:
    if bar is not None:
        bar.write(text)
    else:
        print(text, flush=True)


def train_size(test_fraction: float = TEST_FRACTION) -> int:
    """Training images of the demo's split of the digits (known without loading them)."""
    return DIGITS_IMAGES - int(round(DIGITS_IMAGES * test_fraction))


def _check_training_arguments(args: argparse.Namespace, names: Sequence[str]) -> None:
    """Everything that can be checked before data, compilation and training; raises :class:`CliError`."""
    for name in names:
        _factory(name, "--optimizers" if args.command == "compare" else "--optimizer")
    if args.batch_size > train_size():
        raise CliError(f"argument --batch-size: {args.batch_size} is larger than the {train_size()} training "
                       f"images (an epoch would have no step).")
    if args.lr_list and args.schedule == "constant":
        raise CliError("argument --lr-list: needs a --schedule other than constant.")
    if args.dynamic_loss_scale and args.loss_scale is not None:
        raise CliError(f"argument --dynamic-loss-scale: not allowed with --loss-scale {args.loss_scale:g} (the "
                       f"dynamic manager chooses the scale).")
    if args.plot:
        args.out = _check_output(args.out)


def _check_output(path: str) -> str:
    """The plot's path, checked to be writable before training (its default folder is created)."""
    out = Path(path).expanduser()
    if out.suffix.lower() not in PLOT_FORMATS:
        raise CliError(f"argument --out: {path!r} has no image extension; use one of {', '.join(PLOT_FORMATS)}.")
    if out == _default_plot(out.name):
        out.parent.mkdir(parents=True, exist_ok=True)
    folder = out.parent
    if out.is_dir():
        raise CliError(f"argument --out: {path!r} is a directory; give a file name such as {out / 'loss.png'}.")
    if not folder.is_dir():
        raise CliError(f"argument --out: folder {str(folder)!r} of {path!r} does not exist.")
    if not os.access(folder, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise CliError(f"argument --out: {path!r} is not writable.")
    return str(out)


def _default_plot(name: str) -> Path:
    """Plots go to the system's temporary folder by default: nothing is written into the current folder."""
    return Path(tempfile.gettempdir()) / "jaxopt-ms" / name


def _train_one(name: str, args: argparse.Namespace, data: Any, *, verbose: bool) -> Any:
    from jaxopt_ms import _demo

    spe = _demo.steps_per_epoch(data, args.batch_size)
    params = _demo.init_model(args.model, args.seed)
    optimizer, multiplier, kwargs = build_optimizer(name, args, total_steps=spe * args.epochs, steps_per_epoch=spe,
                                                    param_names=jax.tree.leaves(jaxopt_ms.param_names(params)))
    try:  # group selection errors (overlaps, empty groups) surface at init
        optimizer.init(params)
    except (TypeError, ValueError) as e:
        if "param_groups" in _flags(args):
            names = ", ".join(jax.tree.leaves(jaxopt_ms.param_names(params)))
            raise CliError(f"argument {_flags(args)['param_groups']}: {e} (the leaf names: {names})") from e
        raise CliError(f"{name}: {e}") from e
    if verbose:
        shown = ", ".join(f"{k}={_format_value(v)}" for k, v in kwargs.items())
        print(f"jaxopt_ms.{name}({shown})")
        print(f"model: {args.model}, {len(data.y_train)} train / {len(data.y_test)} test digits, "
              f"{args.epochs} epochs x {spe} steps of {args.batch_size}", flush=True)
    bar = _progress(spe * args.epochs, args.progress, name)

    def on_step(step: int, loss: float) -> None:
        if bar is None:
            return
        if step == 1:  # the first step compiled the program: restart the clock so the ETA is the training's
            bar.reset()
            bar.set_description(name, refresh=False)
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}", refresh=False)

    def on_epoch(rec: Any) -> None:
        if not verbose:
            return
        lr = "" if rec.learning_rate is None else f"  lr {rec.learning_rate}"
        label = "before training" if rec.epoch == 0 else f"epoch {rec.epoch:3d}"
        _say(bar, f"{label:<15}  loss {rec.train_loss:.4f}  train acc {rec.train_accuracy:6.1%}  "
                  f"test acc {rec.test_accuracy:6.1%}{lr}")

    try:
        result = _demo.train(optimizer, data, model=args.model, epochs=args.epochs, batch_size=args.batch_size,
                             seed=args.seed, loss_multiplier=multiplier, name=name, on_step=on_step,
                             on_epoch=on_epoch)
    finally:
        if bar is not None:
            bar.close()
    bad = next((i for i, loss in enumerate(result.step_losses, 1) if not math.isfinite(loss)), None)
    if bad is not None:
        print(f"jaxopt-ms: warning: {name}: the training loss became {result.step_losses[bad - 1]} at step {bad} "
              f"(a learning rate too large for this task?).", file=sys.stderr, flush=True)
    return result


def _demo_command(args: argparse.Namespace) -> Any:
    from jaxopt_ms import _demo

    _check_training_arguments(args, [args.optimizer])
    data = _demo.load_digits(args.seed, TEST_FRACTION)
    result = _train_one(args.optimizer, args, data, verbose=True)
    print(f"final test accuracy: {result.test_accuracy:.2%} ({result.seconds:.1f} s)")
    if args.plot:
        path = _demo.plot_losses([result], args.out, f"jaxopt_ms.{args.optimizer} on digits ({args.model})")
        print(f"loss curve saved to {path}")
    return result


def _compare_command(args: argparse.Namespace) -> list[Any]:
    from jaxopt_ms import _demo

    names = args.optimizers or [n for n in available_optimizers() if n not in UNSUPPORTED]
    _check_training_arguments(args, names)  # fail before training anything
    data = _demo.load_digits(args.seed, TEST_FRACTION)
    results = []
    for n in names:
        try:
            res = _train_one(n, args, data, verbose=False)
        except CliError as e:  # one optimizer that cannot take these settings does not stop the others
            print(f"{n:<18} skipped: {e}", flush=True)
            continue
        results.append(res)
        print(f"{n:<18} test acc {res.test_accuracy:6.1%}  ({res.seconds:.1f} s)", flush=True)
    if not results:
        raise CliError("no optimizer could be trained with these settings.")
    rows = [("optimizer", "final train loss", "train acc", "test acc", "seconds")]
    for res in sorted(results, key=lambda r: -r.test_accuracy):
        last = res.epochs[-1]
        rows.append((res.name, f"{last.train_loss:.4f}", f"{last.train_accuracy:.1%}", f"{last.test_accuracy:.1%}",
                     f"{res.seconds:.1f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print()
    for i, row in enumerate(rows):
        print("  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths))))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    if args.plot:
        path = _demo.plot_losses(results, args.out, f"optimizers on digits ({args.model}, {args.epochs} epochs)")
        print(f"\nplot saved to {path}")
    return results


def benchmark_script() -> Path | None:
    """``benchmarks/run.py`` of the source checkout (next to the package, or under the current directory)."""
    for root in (Path(jaxopt_ms.__file__).resolve().parent.parent, Path.cwd()):
        script = root / "benchmarks" / "run.py"
        if script.is_file():
            return script
    return None


BENCH_HELP = """\
usage: jaxopt-ms bench [--full] [RUNNER FLAGS ...]

Runs the benchmark suite of a source checkout (benchmarks/run.py) in its quick mode; every flag is passed to the
runner, e.g. 'jaxopt-ms bench --algorithms sgd,adam --workloads flat'. --full runs the full sizes instead of
--quick. Results go to a new temporary folder (printed at the end) unless --out DIR names one; nothing is written
into the checkout. 'jaxopt-ms bench --runner-help' shows the runner's flags.
"""


def _bench_command(extra: list[str]) -> int:
    if extra[:1] == ["--"]:
        extra = extra[1:]
    if any(a in ("-h", "--help") for a in extra):
        print(BENCH_HELP, end="")
        return 0
    script = benchmark_script()
    if script is None:
        raise CliError("bench: no benchmarks/run.py found. The benchmark suite lives in the source repository "
                       "(benchmarks/); run this command from a source checkout.")
    if "--runner-help" in extra:
        extra = ["--help"]
    elif "--full" in extra:
        extra = [a for a in extra if a != "--full"]
    elif "--quick" not in extra:
        extra = ["--quick", *extra]
    command = [sys.executable, str(script), *extra]
    print("running:", " ".join(command), flush=True)
    # The runner reports its usage errors as 'jaxopt-ms: error: ...' too.
    return subprocess.call(command, cwd=script.parent.parent, env={**os.environ, "JAXOPT_MS_BENCH_PROG": "jaxopt-ms"})


def _plain(text: str) -> str:
    """reStructuredText markup as plain text: ``x`` -> x, :func:`~a.b` -> b, *x* -> x."""
    text = re.sub(r":[a-z]+:`~?([^`]*?)`", lambda m: m.group(1).rsplit(".", 1)[-1] if "~" in m.group(0)
                  else m.group(1), text)
    text = re.sub(r"``([^`]*)``", r"\1", text)
    text = re.sub(r"`([^`]*)`", r"\1", text)
    return re.sub(r"\*\*?([^*\s][^*]*?)\*\*?", r"\1", text)


def summary(obj: Any) -> str:
    """The first sentence of ``obj``'s docstring, whole and in plain text."""
    paragraph = " ".join((inspect.getdoc(obj) or "").split("\n\n", 1)[0].split())
    text = _plain(paragraph)
    match = re.search(r"(?<!e\.g)(?<!i\.e)\.(?=\s+[A-Z(])", text)
    return text[:match.end()] if match else text


def _list_command(args: argparse.Namespace) -> int:
    for name in available_optimizers():
        note = "  (not usable in demo/compare)" if name in UNSUPPORTED else ""
        print(f"{name:<18} {summary(getattr(jaxopt_ms, name))}{note}")
    return 0


def _add_training_arguments(p: argparse.ArgumentParser, plot_name: str, epochs: int) -> None:
    p.add_argument("--model", choices=("cnn", "mlp"), default="cnn", help="network (default: %(default)s)")
    p.add_argument("--epochs", type=positive_int, default=epochs, help="training epochs (default: %(default)s)")
    p.add_argument("--batch-size", type=positive_int, default=64,
                   help=f"images per step, at most {train_size()} (default: %(default)s)")
    p.add_argument("--seed", type=seed, default=0, help="initialisation and shuffling seed "
                   "(default: %(default)s)")
    p.add_argument("--lr", type=non_negative_number, default=None,
                   help="learning rate (default: a good one per optimizer)")
    p.add_argument("--schedule", choices=SCHEDULES, default="constant",
                   help="decay the learning rate over the run with a jaxopt_ms.schedules schedule "
                        "(default: %(default)s)")
    p.add_argument("--lr-list", action="store_true",
                   help="with --schedule: pass MindSpore's dynamic-lr list (jaxopt_ms.dynamic_lr) instead")
    p.add_argument("--weight-decay", type=non_negative_number, default=None)
    p.add_argument("--decay-filter", choices=sorted(DECAY_FILTERS), default=None,
                   help="which leaves weight decay touches (default: MindSpore's rule, names without gamma/beta)")
    p.add_argument("--loss-scale", type=positive_number, default=None,
                   help="multiply the loss by this and pass it as the optimizer's loss_scale")
    p.add_argument("--dynamic-loss-scale", action="store_true", help="wrap in jaxopt_ms.loss_scale.dynamic_loss_scale")
    p.add_argument("--opt", type=option, action="append", default=[], metavar="KEY=VALUE",
                   help="any other optimizer argument, e.g. --opt beta2=0.99 --opt use_nesterov=True; "
                        f"decay_filter takes a preset name ({'|'.join(DECAY_FILTERS)})")
    p.add_argument("--group-lr", type=_group_value, action="append", default=[], metavar="REGEX=LR",
                   help="parameter group: leaves whose name matches REGEX get this learning rate (repeatable)")
    p.add_argument("--group-wd", type=_group_value, action="append", default=[], metavar="REGEX=WD",
                   help="parameter group with its own weight decay (repeatable)")
    p.add_argument("--group-gc", type=regex, action="append", default=[], metavar="REGEX",
                   help="parameter group with gradient centralization (repeatable)")
    p.add_argument("--out", default=str(_default_plot(plot_name)), help="image file for the plot, .png, .pdf or "
                   ".svg (default: %(default)s)")
    p.add_argument("--no-plot", dest="plot", action="store_false", help="do not save a plot")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="jaxopt-ms", description="jaxopt_ms: MindSpore optimizers for JAX.")
    parser.add_argument("--version", action="version", version=f"jaxopt_ms {jaxopt_ms.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    demo = sub.add_parser("demo", help="train a small network on scikit-learn's digits with one optimizer",
                          description="Train a small CNN/MLP on scikit-learn's digits with a jaxopt_ms optimizer.")
    demo.add_argument("--optimizer", "-o", default="adam", help="optimizer name, e.g. adam, momentum, sgd "
                      "(default: %(default)s; jaxopt-ms list shows them all)")
    _add_training_arguments(demo, "demo.png", 15)
    compare = sub.add_parser("compare", help="train with several optimizers; print a table, save a plot",
                             description="Train the digits task with several optimizers; print a table and save "
                                         "one plot.")
    compare.add_argument("--optimizers", type=optimizer_names, default=None, metavar="NAME[,NAME...]",
                         help="comma-separated names, e.g. 'sgd, adam' (default: every available optimizer)")
    _add_training_arguments(compare, "compare.png", 10)
    sub.add_parser("bench", help="run the benchmark suite (benchmarks/run.py) in its quick mode; flags go to the "
                                 "runner (jaxopt-ms bench --help)", add_help=False)
    sub.add_parser("list", help="list the optimizers of this installation",
                   description="List the optimizers of this installation with a one-sentence summary.")
    return parser


def run(argv: Sequence[str] | None = None) -> Any:
    """Parses ``argv`` and runs the command; returns its result (raises :class:`CliError` on usage errors)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:  # every flag after 'bench' belongs to the benchmark runner
        return _bench_command(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        return _demo_command(args)
    if args.command == "compare":
        return _compare_command(args)
    return _list_command(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``jaxopt-ms`` and ``python -m jaxopt_ms``; returns the exit status."""
    from jaxopt_ms._demo import MissingExtraError

    try:
        result = run(argv)
        sys.stdout.flush()
    except (CliError, MissingExtraError) as e:
        print(f"jaxopt-ms: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (``jaxopt-ms list | head -3``): stop quietly
        # Python flushes stdout again at exit; point it at /dev/null so that flush cannot fail.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return result if isinstance(result, int) else 0
