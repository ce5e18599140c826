"""Command line: ``jaxopt-ms demo | compare | bench | list`` (also ``python -m jaxopt_ms ...``).

* ``demo``: trains a small CNN (or MLP) on scikit-learn's digits with any jaxopt_ms optimizer and its options
  (learning rate, schedule, weight decay, decay filter, parameter groups, loss scale), shows a progress bar, prints
  loss and accuracy per epoch and the final test accuracy, and saves the loss curve as a PNG.
* ``compare``: the same task with several optimizers; prints a table and saves one plot.
* ``bench``: runs ``benchmarks/run.py`` of a source checkout in its quick mode.
* ``list``: the optimizers this installation has.

Optimizers are looked up by name on the :mod:`jaxopt_ms` module, so every factory it exports can be used.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

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


class CliError(Exception):
    """A usage error reported as ``error: ...`` with exit status 2."""


def available_optimizers() -> list[str]:
    """The optimizer names of the design that this installation of jaxopt_ms exports."""
    return [n for n in OPTIMIZER_NAMES if callable(getattr(jaxopt_ms, n, None))]


def _factory(name: str) -> Callable[..., Any]:
    if name in UNSUPPORTED:
        raise CliError(f"optimizer '{name}' is not supported by this command: {UNSUPPORTED[name]}")
    factory = getattr(jaxopt_ms, name, None)
    if name.startswith("_") or not callable(factory) or inspect.isclass(factory):
        raise CliError(f"unknown optimizer '{name}'; available: {', '.join(available_optimizers())}.")
    return factory


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        lowered = text.lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        return text


def _key_value(text: str, what: str) -> tuple[str, Any]:
    key, sep, value = text.rpartition("=")
    if not sep or not key:
        raise CliError(f"{what} expects KEY=VALUE, but got {text!r}.")
    return key, _literal(value)


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
    for text in args.group_lr:
        regex, value = _key_value(text, "--group-lr")
        groups.setdefault(regex, {})["lr"] = lr_of(float(value))
    for text in args.group_wd:
        regex, value = _key_value(text, "--group-wd")
        groups.setdefault(regex, {})["weight_decay"] = float(value)
    for regex in args.group_gc:
        groups.setdefault(regex, {})["grad_centralization"] = True
    if not groups:
        return None
    patterns = [re.compile(r) for r in groups]
    out = [{"params": regex, **settings} for regex, settings in groups.items()]
    rest = [n for n in names if not any(p.search(n) for p in patterns)]
    if rest:  # the other leaves train with the optimizer-level settings (a leaf in no group is frozen)
        out.append({"params": rest})
    return out


def build_optimizer(name: str, args: argparse.Namespace, *, total_steps: int, steps_per_epoch: int,
                    param_names: list[str]) -> tuple[Any, Callable[[Any], Any] | None, dict[str, Any]]:
    """The optimizer the command line asks for, the loss multiplier (loss scale) and the arguments used."""
    factory = _factory(name)
    accepted = inspect.signature(factory).parameters
    kwargs: dict[str, Any] = dict(DEMO_SETTINGS.get(name, {}))
    if args.lr is not None:
        kwargs["learning_rate"] = args.lr
    for text in args.opt:
        key, value = _key_value(text, "--opt")
        kwargs[key] = value

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
        lars_keys = {k for k in accepted if k != "optimizer"}
        lars_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in lars_keys and k != "learning_rate"}
        inner_args = argparse.Namespace(**{**vars(args), "opt": [], "lr": None})
        inner, _, inner_kwargs = build_optimizer(inner_name, inner_args, total_steps=total_steps,
                                                 steps_per_epoch=steps_per_epoch, param_names=param_names)
        inner = _factory(inner_name)(**{**inner_kwargs, **kwargs})
        kwargs = {"optimizer": inner, **lars_kwargs}

    unknown = sorted(k for k in kwargs if k not in accepted)
    if unknown and not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values()):
        raise CliError(f"optimizer '{name}' has no argument(s) {unknown}; its arguments are "
                       f"{[k for k in accepted]}.")
    try:
        optimizer = factory(**kwargs)
    except (TypeError, ValueError, KeyError) as e:
        raise CliError(f"{name}: {e}") from e

    multiplier = None
    if args.loss_scale is not None:
        scale = float(args.loss_scale)
        multiplier = lambda state: scale  # the optimizer divides by the same loss_scale
    if args.dynamic_loss_scale:
        loss_scale = _optional_module("jaxopt_ms.loss_scale", "--dynamic-loss-scale")
        optimizer = loss_scale.dynamic_loss_scale(optimizer, init_loss_scale=2.0**15, scale_window=50)
        multiplier = loss_scale.loss_scale_value
    return optimizer, multiplier, kwargs


def _optional_module(module_name: str, flag: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ImportError as e:
        raise CliError(f"{flag} needs {module_name}, which this version of jaxopt_ms does not have.") from e


def _format_value(value: Any) -> str:
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
    return tqdm.tqdm(total=total, desc=desc, unit="step", leave=False, dynamic_ncols=True)


def _say(bar: Any, text: str) -> None:
    if bar is not None:
        bar.write(text)
    else:
        print(text, flush=True)


def _train_one(name: str, args: argparse.Namespace, data: Any, *, verbose: bool) -> Any:
    from jaxopt_ms import _demo

    spe = _demo.steps_per_epoch(data, args.batch_size)
    params = _demo.init_model(args.model, args.seed)
    optimizer, multiplier, kwargs = build_optimizer(name, args, total_steps=spe * args.epochs, steps_per_epoch=spe,
                                                    param_names=jax.tree.leaves(jaxopt_ms.param_names(params)))
    try:  # group selection errors (overlaps, empty groups) surface at init
        optimizer.init(params)
    except (TypeError, ValueError) as e:
        raise CliError(f"{name}: {e}") from e
    if verbose:
        shown = ", ".join(f"{k}={_format_value(v)}" for k, v in kwargs.items())
        print(f"jaxopt_ms.{name}({shown})")
        print(f"model: {args.model}, {len(data.y_train)} train / {len(data.y_test)} test digits, "
              f"{args.epochs} epochs x {spe} steps of {args.batch_size}", flush=True)
    bar = _progress(spe * args.epochs, args.progress, name)

    def on_step(step: int, loss: float) -> None:
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", refresh=False)

    def on_epoch(rec: Any) -> None:
        if not verbose:
            return
        lr = "" if rec.learning_rate is None else f"  lr {rec.learning_rate}"
        _say(bar, f"epoch {rec.epoch:3d}  loss {rec.train_loss:.4f}  train acc {rec.train_accuracy:6.1%}  "
                  f"test acc {rec.test_accuracy:6.1%}{lr}")

    try:
        return _demo.train(optimizer, data, model=args.model, epochs=args.epochs, batch_size=args.batch_size,
                           seed=args.seed, loss_multiplier=multiplier, name=name, on_step=on_step,
                           on_epoch=on_epoch)
    finally:
        if bar is not None:
            bar.close()


def _demo_command(args: argparse.Namespace) -> Any:
    from jaxopt_ms import _demo

    data = _demo.load_digits(args.seed)
    result = _train_one(args.optimizer, args, data, verbose=True)
    print(f"final test accuracy: {result.test_accuracy:.2%} ({result.seconds:.1f} s)")
    if args.plot:
        path = _demo.plot_losses([result], args.out, f"jaxopt_ms.{args.optimizer} on digits ({args.model})")
        print(f"loss curve saved to {path}")
    return result


def _compare_command(args: argparse.Namespace) -> list[Any]:
    from jaxopt_ms import _demo

    names = args.optimizers.split(",") if args.optimizers else [
        n for n in available_optimizers() if n not in UNSUPPORTED]
    for n in names:
        _factory(n)  # fail before training anything
    data = _demo.load_digits(args.seed)
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


def _bench_command(args: argparse.Namespace) -> int:
    script = benchmark_script()
    if script is None:
        print("jaxopt-ms bench: no benchmarks/run.py found. The benchmark suite lives in the source repository "
              "(benchmarks/); run this command from a source checkout.", file=sys.stderr)
        return 1
    extra = list(args.bench_args) or ["--quick"]
    if extra and extra[0] == "--":
        extra = extra[1:]
    command = [sys.executable, str(script), *extra]
    print("running:", " ".join(command), flush=True)
    return subprocess.call(command, cwd=script.parent.parent)


def _list_command(args: argparse.Namespace) -> int:
    for name in available_optimizers():
        doc = (inspect.getdoc(getattr(jaxopt_ms, name)) or "").split("\n", 1)[0]
        note = "  (not usable in demo/compare)" if name in UNSUPPORTED else ""
        print(f"{name:<18} {doc}{note}")
    return 0


def _add_training_arguments(p: argparse.ArgumentParser, plot_name: str) -> None:
    p.add_argument("--model", choices=("cnn", "mlp"), default="cnn", help="network (default: cnn)")
    p.add_argument("--epochs", type=int, default=15, help="training epochs (default: 15)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: a good one per optimizer)")
    p.add_argument("--schedule", choices=SCHEDULES, default="constant",
                   help="decay the learning rate over the run with a jaxopt_ms.schedules schedule")
    p.add_argument("--lr-list", action="store_true",
                   help="with --schedule: pass MindSpore's dynamic-lr list (jaxopt_ms.dynamic_lr) instead")
    p.add_argument("--weight-decay", type=float, default=None)
    p.add_argument("--decay-filter", choices=sorted(DECAY_FILTERS), default=None,
                   help="which leaves weight decay touches (default: MindSpore's rule, names without gamma/beta)")
    p.add_argument("--loss-scale", type=float, default=None,
                   help="multiply the loss by this and pass it as the optimizer's loss_scale")
    p.add_argument("--dynamic-loss-scale", action="store_true", help="wrap in jaxopt_ms.loss_scale.dynamic_loss_scale")
    p.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE",
                   help="any other optimizer argument, e.g. --opt beta2=0.99 --opt use_nesterov=True")
    p.add_argument("--group-lr", action="append", default=[], metavar="REGEX=LR",
                   help="parameter group: leaves whose name matches REGEX get this learning rate (repeatable)")
    p.add_argument("--group-wd", action="append", default=[], metavar="REGEX=WD",
                   help="parameter group with its own weight decay (repeatable)")
    p.add_argument("--group-gc", action="append", default=[], metavar="REGEX",
                   help="parameter group with gradient centralization (repeatable)")
    p.add_argument("--out", default=plot_name, help=f"PNG file for the plot (default: {plot_name})")
    p.add_argument("--no-plot", dest="plot", action="store_false", help="do not save a plot")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jaxopt-ms", description="jaxopt_ms: MindSpore optimizers for JAX.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="train a small network on scikit-learn's digits with one optimizer",
                          description="Train a small CNN/MLP on scikit-learn's digits with a jaxopt_ms optimizer.")
    demo.add_argument("--optimizer", "-o", default="adam", help="optimizer name, e.g. adam, momentum, sgd")
    _add_training_arguments(demo, "jaxopt-ms-demo.png")
    compare = sub.add_parser("compare", help="train with several optimizers; print a table, save a plot")
    compare.add_argument("--optimizers", default=None,
                         help="comma-separated names (default: every available optimizer)")
    _add_training_arguments(compare, "jaxopt-ms-compare.png")
    compare.set_defaults(epochs=10)
    bench = sub.add_parser("bench", help="run the benchmark suite (benchmarks/run.py) in its quick mode")
    bench.add_argument("bench_args", nargs=argparse.REMAINDER, help="arguments for benchmarks/run.py "
                       "(default: --quick)")
    sub.add_parser("list", help="list the optimizers of this installation")
    return parser


def run(argv: Sequence[str] | None = None) -> Any:
    """Parses ``argv`` and runs the command; returns its result (raises :class:`CliError` on usage errors)."""
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        return _demo_command(args)
    if args.command == "compare":
        return _compare_command(args)
    if args.command == "bench":
        return _bench_command(args)
    return _list_command(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``jaxopt-ms`` and ``python -m jaxopt_ms``; returns the exit status."""
    from jaxopt_ms._demo import MissingExtraError

    try:
        result = run(argv)
    except (CliError, MissingExtraError) as e:
        print(f"jaxopt-ms: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return result if isinstance(result, int) else 0
