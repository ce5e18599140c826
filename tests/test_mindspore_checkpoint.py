"""MindSpore checkpoints in and out (jaxopt_ms.mindspore_checkpoint), against MindSpore itself.

Fixtures: scripts/mindspore_fixtures/checkpoints.py trains a small network in MindSpore for K steps with each
optimizer, saves the training cell in both formats, then records MindSpore's next K steps. Here the checkpoint is
loaded, the run continues in jaxopt_ms (per leaf and fused) and must follow MindSpore's parameters at every step.
The live tests (``-m mindspore``) write checkpoints with :func:`save` and continue them in MindSpore; they find
MindSpore through ``JAXOPT_MS_MINDSPORE_PYTHON`` (a Python with MindSpore) or the running interpreter.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import optax
import pytest
from parity import mindspore_python

import jaxopt_ms
from jaxopt_ms import mindspore_checkpoint as msc
from jaxopt_ms.mindspore_checkpoint import formats, hyperparameters

pytest.importorskip("safetensors")
pytest.importorskip("google.protobuf")

FOLDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "checkpoints")
NAMES = ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
SHAPES = {"fc1.weight": (8, 6), "fc1.bias": (8,), "fc2.weight": (3, 8), "fc2.bias": (3,)}
CASES = sorted(os.path.basename(p)[:-4] for p in glob.glob(os.path.join(FOLDER, "*.npz"))
               if "notebook" not in p and ".conv." not in p)
# fused AdaFactor is refused (test_error_unsupported_optimizers_and_types)
FUSED_CASES = [c for c in CASES if not c.startswith("adafactor")]


def like(nested: bool = False):
    flat = {n: jax.ShapeDtypeStruct(s, jnp.float32) for n, s in SHAPES.items()}
    if not nested:
        return flat
    return {"fc1": {"weight": flat["fc1.weight"], "bias": flat["fc1.bias"]},
            "fc2": {"weight": flat["fc2.weight"], "bias": flat["fc2.bias"]}}


def fixture(case: str):
    data = np.load(os.path.join(FOLDER, f"{case}.npz"))
    config = json.loads(str(data["config"]))
    steps = config["steps"]
    grads = [{n: data[f"g__{k}__{n}"] for n in NAMES} for k in range(steps)]
    traj = [{n: data[f"p__{k}__{n}"] for n in NAMES} for k in range(steps)]
    return config, grads, traj


def build(config: dict):
    kwargs = dict(config["kwargs"])
    if "schedule" in config:
        name, args = config["schedule"]
        kwargs["learning_rate"] = getattr(jaxopt_ms.schedules, name)(*args)
    opt = getattr(jaxopt_ms, config["optimizer"])(**kwargs, param_groups=config.get("groups"))
    if "dynamic_loss_scale" in config:
        opt = jaxopt_ms.loss_scale.dynamic_loss_scale(opt, **config["dynamic_loss_scale"])
    if "fixed_loss_scale" in config:
        opt = jaxopt_ms.loss_scale.fixed_loss_scale(opt, **config["fixed_loss_scale"])
    return opt


def close(got, want, label: str) -> None:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    bad = np.abs(got - want) > 1e-6 + 1e-5 * np.abs(want)
    assert not bad.any(), f"{label}: max |d| = {np.max(np.abs(got - want))} at {np.argwhere(bad)[:3].tolist()}"


def jitted_step(opt):
    return jax.jit(lambda p, s, g: (lambda u, s: (optax.apply_updates(p, u), s))(*opt.update(g, s, p)))


def fused(config: dict):
    """``(optimizer, fused inner optimizer, params_like)``: a loss-scale wrapper goes around the fused optimizer."""
    plain = dict(config)
    dynamic, fixed = plain.pop("dynamic_loss_scale", None), plain.pop("fixed_loss_scale", None)
    inner = jaxopt_ms.fused.fuse(build(plain), own_buffer_from=None)
    opt = inner
    if dynamic:
        opt = jaxopt_ms.loss_scale.dynamic_loss_scale(inner, **dynamic)
    if fixed:
        opt = jaxopt_ms.loss_scale.fixed_loss_scale(inner, **fixed)
    wrap = dynamic or fixed
    flat_like = inner.flatten({n: jnp.zeros(s, jnp.float32) for n, s in SHAPES.items()}) if wrap else like()
    return opt, inner, flat_like


def continue_run(opt, params, state, grads, flatten=None, step=None):
    """Feeds MindSpore's gradients; returns the parameters (as a flat dict) after each step, and the last ones."""
    step = step or jitted_step(opt)
    out = []
    for g in grads:
        g = flatten(g) if flatten else g
        params, state = step(params, state, g)
        tree = jaxopt_ms.fused.unflatten(params) if flatten else params
        out.append(dict(zip(jax.tree.leaves(jaxopt_ms.param_names(tree)), jax.tree.leaves(tree))))
    return out, params, state


@pytest.mark.parametrize("case", CASES)
def test_resumes_mindspore_run_per_leaf(case):
    """Both formats MindSpore wrote, one compiled step."""
    config, grads, traj = fixture(case)
    opt = build(config)
    step = jitted_step(opt)
    for fmt in ("ckpt", "safetensors"):
        params, state = msc.from_mindspore(opt, os.path.join(FOLDER, f"{case}.{fmt}"), like())
        got, _, _ = continue_run(opt, params, state, grads, step=step)
        for k, (g, w) in enumerate(zip(got, traj)):
            for n in NAMES:
                close(g[n], w[n], f"{case}.{fmt} step {k} {n}")


@pytest.mark.parametrize("case", FUSED_CASES)
def test_resumes_mindspore_run_fused(case):
    config, grads, traj = fixture(case)
    opt, inner, flat_like = fused(config)
    params, state = msc.from_mindspore(opt, msc.load(os.path.join(FOLDER, f"{case}.ckpt")), flat_like)
    assert isinstance(params, jaxopt_ms.fused.FlatParams)
    got, _, _ = continue_run(opt, params, state, grads, flatten=inner.flatten)
    for k, (g, w) in enumerate(zip(got, traj)):
        for n in NAMES:
            close(g[n], w[n], f"{case} fused step {k} {n}")


def test_nested_params_map_by_path_name():
    """MindSpore's ``fc1.weight`` is the leaf at path fc1 -> weight of a nested pytree."""
    config, grads, traj = fixture("adam")
    opt = build(config)
    params, state = msc.from_mindspore(opt, os.path.join(FOLDER, "adam.ckpt"), like(nested=True))
    assert set(params) == {"fc1", "fc2"}
    nested = [{"fc1": {"weight": g["fc1.weight"], "bias": g["fc1.bias"]},
               "fc2": {"weight": g["fc2.weight"], "bias": g["fc2.bias"]}} for g in grads]
    got, _, _ = continue_run(opt, params, state, nested)
    close(got[-1]["fc1.weight"], traj[-1]["fc1.weight"], "nested")


@pytest.mark.parametrize("is_fused", [False, True])
def test_conv_batchnorm_network_with_weight_decay(is_fused):
    """A conv + BatchNorm network: MindSpore's default decay filter skips bn1.gamma / bn1.beta by name, as
    jaxopt_ms's; the moving statistics in the checkpoint are not parameters and are left out with ``ignore``."""
    data = np.load(os.path.join(FOLDER, "adam_conv_bn.conv.npz"))
    config = json.loads(str(data["config"]))
    shapes = {n: tuple(s) for n, s in config["shapes"].items()}
    nested = lambda d: {"conv1": {"weight": d["conv1.weight"]}, "bn1": {"gamma": d["bn1.gamma"], "beta": d["bn1.beta"]},
                        "fc": {"weight": d["fc.weight"], "bias": d["fc.bias"]}}  # noqa: E731
    params_like = nested({n: jax.ShapeDtypeStruct(s, jnp.float32) for n, s in shapes.items()})
    opt = build(config)
    ckpt = msc.load(os.path.join(FOLDER, "adam_conv_bn.ckpt"))
    with pytest.raises(ValueError, match="moving_mean"):
        msc.from_mindspore(opt, ckpt, params_like)
    flatten = None
    if is_fused:
        opt = jaxopt_ms.fused.fuse(opt, own_buffer_from=None)
        flatten = opt.flatten
    params, state = msc.from_mindspore(opt, ckpt, params_like, ignore=lambda name: ".moving_" in name)
    grads = [nested({n: data[f"g__{k}__{n}"] for n in shapes}) for k in range(config["steps"])]
    got, _, _ = continue_run(opt, params, state, grads, flatten=flatten)
    for k, g in enumerate(got):
        for n in shapes:
            close(g[n], data[f"p__{k}__{n}"], f"conv_bn step {k} {n}")


def test_both_formats_hold_the_same_entries():
    for case in CASES:
        a = msc.load(os.path.join(FOLDER, f"{case}.ckpt"))
        b = msc.load(os.path.join(FOLDER, f"{case}.safetensors"))
        assert sorted(a) == sorted(b), case
        for k in a:
            assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), (case, k)


def test_state_names_as_mindspore_saves_them():
    """The saved names this module's table maps (docs/checkpoints.md), read from MindSpore's own files."""
    expect = {
        "sgd": {"accum.", "stat."}, "momentum": {"moments."}, "adam": {"moment1.", "moment2."},
        "adam_amsgrad": {"moment1.", "moment2.", "vhat."}, "adam_weight_decay": {"adam_m.", "adam_v."},
        "ftrl": {"moments.", "linear."}, "rmsprop": {"mean_square.", "moment."},
        "rmsprop_centered": {"mean_square.", "mean_grad.", "moment."}, "proximal_adagrad": {"accum."},
        "adagrad": {"accum."}, "adadelta": {"accum.", "accum_update."}, "adamax": {"moment1.", "moment2."},
        "rprop": {"prev.", "step_size."}, "asgd": {"eta_", "mu_", "ax_."}, "lamb_init": {"lamb_m.", "lamb_v."},
        "adafactor": {"exp_avg.", "exp_avg_sq_row_", "exp_avg_sq_col_", "exp_avg_sq_"}, "lars_init": {"moments."},
    }
    for case, prefixes in expect.items():
        names = set(msc.load(os.path.join(FOLDER, f"{case}.ckpt")))
        for prefix in prefixes:
            assert {prefix + n for n in NAMES} <= names, (case, prefix)
        assert "global_step" in names
    ls = msc.load(os.path.join(FOLDER, "adam_dynamic_loss_scale.ckpt"))
    assert {"scale_sense", "current_iterator_step", "last_overflow_iterator_step"} <= set(ls)


def test_dynamic_loss_scale_state_is_mindspores():
    ckpt = msc.load(os.path.join(FOLDER, "adam_dynamic_loss_scale.ckpt"))
    config, _, _ = fixture("adam_dynamic_loss_scale")
    _, state = msc.from_mindspore(build(config), ckpt, like())
    # an overflow at step 1 of 3 halved 1024 and skipped that update: two updates done
    assert float(jaxopt_ms.loss_scale.loss_scale_value(state)) == float(ckpt["scale_sense"]) == 512.0
    assert int(state.cur_iter) == int(ckpt["current_iterator_step"])
    assert int(state.last_overflow_iter) == int(ckpt["last_overflow_iterator_step"])
    assert int(ckpt["global_step"][0]) == 2 and int(state.inner_state[-1].count) == 2


@pytest.mark.parametrize("case", ["momentum_lr_list", "adam_schedule", "adam_groups"])
def test_learning_rate_continues_at_global_step(case):
    config, _, _ = fixture(case)
    opt = build(config)
    ckpt = msc.load(os.path.join(FOLDER, f"{case}.ckpt"))
    _, state = msc.from_mindspore(opt, ckpt, like())
    step = int(ckpt["global_step"][0])
    lr = jaxopt_ms.current_lr(state)
    lrs = jax.tree.leaves(lr)
    if case == "momentum_lr_list":
        assert float(lrs[0]) == np.float32(config["kwargs"]["learning_rate"][step])
    elif case == "adam_schedule":
        assert float(lrs[0]) == pytest.approx(float(jaxopt_ms.schedules.exponential_decay(0.05, 0.7, 2)(step)))
    else:
        assert float(lrs[0]) == np.float32(ckpt["learning_rate_group_0"][step])


@pytest.mark.parametrize("case", ["adam", "sgd", "adam_dynamic_loss_scale", "asgd", "adafactor", "rmsprop_centered",
                                  "rmsprop", "adam_groups", "lazy_adam", "ftrl", "adamax"])
@pytest.mark.parametrize("is_fused", [False, True])
def test_to_mindspore_is_the_inverse(case, is_fused, tmp_path):
    if is_fused and case == "adafactor":
        pytest.skip("fused AdaFactor is refused (test_error_unsupported_optimizers_and_types)")
    config, grads, _ = fixture(case)
    opt, _, params_like = fused(config) if is_fused else (build(config), None, like())
    ckpt = msc.load(os.path.join(FOLDER, f"{case}.ckpt"))
    params, state = msc.from_mindspore(opt, ckpt, params_like)
    out = msc.to_mindspore(opt, params, state)
    hyper = {k for k in ckpt if hyperparameters.HYPERPARAMETER.match(k)}
    unused = {"moment." + n for n in NAMES} if case == "rmsprop" else set()  # RMSProp without momentum
    assert set(out) | hyper | unused == set(ckpt)
    for k, v in out.items():
        if k in ckpt:
            np.testing.assert_array_equal(v.reshape(ckpt[k].shape), ckpt[k], err_msg=k)
            assert v.dtype == ckpt[k].dtype, k
    for fmt in ("ckpt", "safetensors"):
        path = tmp_path / f"x.{fmt}"
        msc.save(path, out)
        back = msc.load(path)
        assert sorted(back) == sorted(out)
        for k in out:
            np.testing.assert_array_equal(back[k], out[k])
        p2, s2 = msc.from_mindspore(opt, back, params_like)
        chex_equal = jax.tree.map(lambda a, b: np.array_equal(np.asarray(a), np.asarray(b)), (p2, s2),
                                  (params, state))
        assert all(jax.tree.leaves(chex_equal)), (case, fmt)


def test_lamb_and_lars_checkpoints_load():
    """Lamb and LARS do not step on MindSpore's CPU build: their saved names still map, both ways."""
    for case, opt in [("lamb_init", jaxopt_ms.lamb(0.01)), ("lars_init", jaxopt_ms.lars(jaxopt_ms.momentum(0.1, 0.9)))]:
        ckpt = msc.load(os.path.join(FOLDER, f"{case}.ckpt"))
        params, state = msc.from_mindspore(opt, ckpt, like())
        out = msc.to_mindspore(opt, params, state)
        for k, v in out.items():
            np.testing.assert_array_equal(v.reshape(ckpt[k].shape), ckpt[k], err_msg=(case, k))


def test_load_every_dtype_mindspore_writes():
    a = msc.load(os.path.join(FOLDER, "dtypes.ckpt"))
    b = msc.load(os.path.join(FOLDER, "dtypes.safetensors"))
    base = np.array([[0, 1, 2], [3, 125, 1]])
    want = {"Float16": np.float16, "Float32": np.float32, "Float64": np.float64, "BFloat16": ml_dtypes.bfloat16,
            "Int8": np.int8, "Int16": np.int16, "Int32": np.int32, "Int64": np.int64, "UInt8": np.uint8,
            "UInt16": np.uint16, "UInt32": np.uint32, "UInt64": np.uint64, "Bool": np.bool_}
    for d in (a, b):
        for ms_name, dtype in want.items():
            got = d[f"t_{ms_name}"]
            assert got.dtype == np.dtype(dtype), ms_name
            np.testing.assert_array_equal(got, base.astype(dtype))
        assert d["scalar0d"].shape == () and d["scalar0d"] == np.float32(3.5)
        np.testing.assert_array_equal(d["big"], np.arange(900, dtype=np.float32).reshape(300, 3))
        assert d["epoch_num"].shape == () and d["epoch_num"].dtype == np.int64 and d["epoch_num"] == 3
    assert a["note"].shape == () and str(a["note"]) == "resume here"


def test_large_tensor_split_over_values_is_joined():
    """The fixture's ``big`` was written by MindSpore in several values with one tag (slicing threshold lowered)."""
    message = formats._checkpoint()()
    with open(os.path.join(FOLDER, "dtypes.ckpt"), "rb") as f:
        message.ParseFromString(f.read())
    assert sum(v.tag == "big" for v in message.value) > 1


def test_save_roundtrips_dtypes_strings_and_large(tmp_path, monkeypatch):
    monkeypatch.setattr(formats, "_CHUNK_BYTES", 100)
    data = {"bf": np.arange(6, dtype=np.float32).reshape(2, 3).astype(ml_dtypes.bfloat16),
            "z": np.float64(2.5), "b": np.array([True, False]), "big": np.arange(1000, dtype=np.float32),
            "u": np.array(7, np.uint64), "h": jnp.ones((2,), jnp.float16)}
    msc.save(tmp_path / "a.safetensors", data)
    msc.save(tmp_path / "a.ckpt", dict(data, s="text"))
    for path in (tmp_path / "a.ckpt", tmp_path / "a.safetensors"):
        back = msc.load(path)
        for k, v in data.items():
            v = np.asarray(v)
            assert back[k].dtype == v.dtype and back[k].shape == v.shape, (path, k)
            np.testing.assert_array_equal(back[k].astype(np.float64), v.astype(np.float64))
    assert str(msc.load(tmp_path / "a.ckpt")["s"]) == "text"


# ----------------------------------------------------------------------------------------------- error paths
def _adam_ckpt():
    return msc.load(os.path.join(FOLDER, "adam.ckpt"))


def test_error_missing_state_entry():
    ckpt = _adam_ckpt()
    del ckpt["moment2.fc2.bias"]
    with pytest.raises(ValueError, match=r"moment2\.fc2\.bias"):
        msc.from_mindspore(jaxopt_ms.adam(0.01, eps=1e-3, weight_decay=0.01), ckpt, like())


def test_error_missing_parameter_and_global_step():
    ckpt = _adam_ckpt()
    del ckpt["fc1.bias"]
    with pytest.raises(ValueError, match=r"'fc1\.bias'"):
        msc.from_mindspore(jaxopt_ms.adam(0.01), ckpt, like())
    ckpt = _adam_ckpt()
    del ckpt["global_step"]
    with pytest.raises(ValueError, match="global_step"):
        msc.from_mindspore(jaxopt_ms.adam(0.01), ckpt, like())


def test_error_name_maps_nowhere():
    ckpt = _adam_ckpt()
    ckpt["bn.moving_mean"] = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match=r"map nowhere.*bn\.moving_mean"):
        msc.from_mindspore(jaxopt_ms.adam(0.01), ckpt, like())
    msc.from_mindspore(jaxopt_ms.adam(0.01), ckpt, like(), ignore=["bn.moving_mean"])
    msc.from_mindspore(jaxopt_ms.adam(0.01), dict(ckpt, epoch_num=np.array(3), step_num=np.array(30)), like(),
                       ignore=lambda name: "moving_" in name)
    # a momentum checkpoint's `moments.*` mean nothing to Adam (and Adam's state is missing)
    with pytest.raises(ValueError, match="beta1_power"):
        msc.from_mindspore(jaxopt_ms.adam(0.01), os.path.join(FOLDER, "momentum.ckpt"), like())
    with pytest.raises(ValueError, match=r"map nowhere.*moments\.fc1"):
        msc.from_mindspore(jaxopt_ms.sgd(0.1, momentum=0.9), dict(msc.load(os.path.join(FOLDER, "momentum.ckpt")),
                                                                  **{f"stat.{n}": np.zeros(SHAPES[n], np.float32)
                                                                     for n in NAMES},
                                                                  **{f"accum.{n}": np.zeros(SHAPES[n], np.float32)
                                                                     for n in NAMES}), like())
    # the checkpoint's loss-scale state has no place without a loss-scale wrapper
    with pytest.raises(ValueError, match="scale_sense"):
        msc.from_mindspore(jaxopt_ms.adam(0.01), os.path.join(FOLDER, "adam_dynamic_loss_scale.ckpt"), like())


def test_error_leaf_name_not_in_checkpoint():
    with pytest.raises(ValueError, match=r"'fc3\.weight'"):
        msc.from_mindspore(jaxopt_ms.adam(0.01), _adam_ckpt(), dict(like(), **{"fc3.weight": jnp.zeros(2)}))


def test_error_shape_and_dtype_mismatch():
    ckpt = _adam_ckpt()
    ckpt["moment1.fc1.weight"] = ckpt["moment1.fc1.weight"].T.copy()
    with pytest.raises(ValueError, match=r"moment1\.fc1\.weight.*shape"):
        msc.from_mindspore(jaxopt_ms.adam(0.01), ckpt, like())
    ckpt = _adam_ckpt()
    ckpt["moment2.fc1.bias"] = ckpt["moment2.fc1.bias"].astype(np.float16)
    with pytest.raises(ValueError, match=r"moment2\.fc1\.bias.*dtype"):
        msc.from_mindspore(jaxopt_ms.adam(0.01), ckpt, like())
    ckpt = _adam_ckpt()
    ckpt["beta1_power"] = np.ones(3, np.float32)
    with pytest.raises(ValueError, match="beta1_power.*scalar"):
        msc.from_mindspore(jaxopt_ms.adam(0.01), ckpt, like())
    with pytest.raises(ValueError, match=r"'fc2\.bias'.*dtype"):
        msc.from_mindspore(jaxopt_ms.adam(0.01), _adam_ckpt(),
                           dict(like(), **{"fc2.bias": jax.ShapeDtypeStruct((3,), jnp.bfloat16)}))


def test_error_inconsistent_sgd_stat_and_adafactor_step():
    ckpt = msc.load(os.path.join(FOLDER, "sgd.ckpt"))
    ckpt["stat.fc1.bias"] = np.ones_like(ckpt["stat.fc1.bias"])
    with pytest.raises(ValueError, match="stat"):
        msc.from_mindspore(jaxopt_ms.sgd(0.1, momentum=0.9, dampening=0.1, weight_decay=0.01), ckpt, like())
    ckpt = msc.load(os.path.join(FOLDER, "adafactor.ckpt"))
    ckpt["afactor_step"] = np.array([7.0], np.float32)
    with pytest.raises(ValueError, match="afactor_step"):
        msc.from_mindspore(jaxopt_ms.adafactor(), ckpt, like())


def test_error_unsupported_optimizers_and_types():
    with pytest.raises(TypeError, match="optimizer"):
        msc.from_mindspore("adam", _adam_ckpt(), like())
    with pytest.raises(ValueError, match="fused AdaFactor"):
        msc.from_mindspore(jaxopt_ms.fused.fuse(jaxopt_ms.adafactor(), own_buffer_from=None),
                           os.path.join(FOLDER, "adafactor.ckpt"), like())
    from jaxopt_ms.transforms.thor import ScaleByThorState

    thor_state = ScaleByThorState(*[None] * len(ScaleByThorState._fields))
    with pytest.raises(ValueError, match="THOR"):
        msc.to_mindspore(optax.identity(), {}, (optax.EmptyState(), thor_state))
    with pytest.raises(ValueError, match="master_weights"):
        msc.from_mindspore(jaxopt_ms.loss_scale.master_weights(jaxopt_ms.adam(0.01)), _adam_ckpt(), like())


def test_error_files_and_dtypes(tmp_path):
    with pytest.raises(ValueError, match="'.ckpt' or"):
        msc.load(tmp_path / "x.bin")
    with pytest.raises(FileNotFoundError, match="No checkpoint file"):
        msc.load(tmp_path / "missing.ckpt")
    (tmp_path / "bad.ckpt").write_bytes(b"\xff\xff\xff\xff not protobuf")
    with pytest.raises(ValueError, match="not a MindSpore .ckpt"):
        msc.load(tmp_path / "bad.ckpt")
    with pytest.raises(ValueError, match="format"):
        msc.save(tmp_path / "x.ckpt", {"a": np.zeros(2)}, format="npz")
    with pytest.raises(ValueError, match="'a'.*dtype"):
        msc.save(tmp_path / "x.ckpt", {"a": np.array([object()])})
    with pytest.raises(ValueError, match="str.*safetensors"):
        msc.save(tmp_path / "x.safetensors", {"a": "text"})
    # MindSpore types with no numpy layout, and a damaged size, each named
    Checkpoint = formats._checkpoint()
    for tensor_type, content, match in [("Int4", b"\x00", "Int4"), ("HiFloat8", b"\x00", "HiFloat8"),
                                        ("Float128", b"\x00", "unknown"), ("Float32", b"\x00" * 6, "damaged")]:
        m = Checkpoint()
        v = m.value.add()
        v.tag = "w"
        v.tensor.dims.extend([2])
        v.tensor.tensor_type = tensor_type
        v.tensor.tensor_content = content
        (tmp_path / "t.ckpt").write_bytes(m.SerializeToString())
        with pytest.raises(ValueError, match=f"'w'.*{match}|{match}.*'w'"):
            msc.load(tmp_path / "t.ckpt")
    m = Checkpoint()
    v = m.value.add()
    v.tag = "table"
    v.maptensor.tensor.add(tensor_type="Int32", tensor_content=b"")
    (tmp_path / "m.ckpt").write_bytes(m.SerializeToString())
    with pytest.raises(ValueError, match="'table'.*MapParameter"):
        msc.load(tmp_path / "m.ckpt")


def test_crc_checked_files(tmp_path):
    msc.save(tmp_path / "a.ckpt", {"w": np.arange(3, dtype=np.float32)})
    body = (tmp_path / "a.ckpt").read_bytes()
    import binascii

    good = body + b"crc_num" + binascii.crc32(body).to_bytes(10, "big")
    (tmp_path / "c.ckpt").write_bytes(good)
    np.testing.assert_array_equal(msc.load(tmp_path / "c.ckpt")["w"], np.arange(3, dtype=np.float32))
    (tmp_path / "d.ckpt").write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(ValueError, match="crc"):
        msc.load(tmp_path / "d.ckpt")


# ------------------------------------------------------------------------------------- live: back to MindSpore
LIVE = """
import json, os, sys
os.environ.setdefault("GLOG_v", "3")
import numpy as np
import checkpoints as fx
import mindspore as ms
from mindspore import Tensor, nn
out = {}
for case, path in json.load(open(sys.argv[1])).items():
    make, extra = fx.MS_CASES[case]
    net = fx.Net({n: np.zeros_like(v) for n, v in fx.initial_weights(np.random.RandomState(0)).items()})
    opt = make(net.trainable_params())
    loss_net = nn.WithLossCell(net, nn.MSELoss())
    if "loss_scale" in extra:
        cell = nn.TrainOneStepWithLossScaleCell(loss_net, opt, scale_sense=fx.scale_sense(extra["loss_scale"]))
    else:
        cell = nn.TrainOneStepCell(loss_net, opt)
    loaded = ms.load_checkpoint(path, format=path.rsplit(".", 1)[1])
    not_loaded, _ = ms.load_param_into_net(cell, loaded, strict_load=True)
    opt_not_loaded, _ = ms.load_param_into_net(opt, loaded, strict_load=True)   # the optimizer alone, too
    names = [p.name for p in opt._parameters]
    traj = []
    for g in json.load(open(path + ".grads.json")):
        grads = tuple(Tensor(np.asarray(g[n], np.float32)) for n in names)
        fx.scaled_step(cell, opt, grads) if "loss_scale" in extra else opt(grads)
        traj.append({p.name: p.asnumpy().tolist() for p in net.trainable_params()})
    out[case] = {"not_loaded": list(not_loaded) + list(opt_not_loaded), "traj": traj}
print("RESULT" + json.dumps(out))
"""


@pytest.mark.mindspore
@pytest.mark.parametrize("fmt", ["ckpt", "safetensors"])
def test_saved_checkpoints_continue_in_mindspore(fmt, tmp_path):
    """For every case: jaxopt_ms resumes MindSpore's checkpoint, takes 2 steps, saves with ``save``; MindSpore loads
    that into its training cell (``strict_load``) and its next step equals jaxopt_ms's."""
    python = mindspore_python()
    if python is None:
        pytest.skip("MindSpore not found (set JAXOPT_MS_MINDSPORE_PYTHON to a Python that has it)")
    paths, want = {}, {}
    for case in CASES:
        config, grads, _ = fixture(case)
        opt = build(config)
        params, state = msc.from_mindspore(opt, os.path.join(FOLDER, f"{case}.ckpt"), like())
        _, params, state = continue_run(opt, params, state, grads[:2])
        path = paths[case] = str(tmp_path / f"{case}.{fmt}")
        msc.save(path, msc.to_mindspore(opt, params, state))
        with open(path + ".grads.json", "w") as f:
            json.dump([{n: g[n].tolist() for n in NAMES} for g in grads[2:]], f)
        want[case], _, _ = continue_run(opt, params, state, grads[2:])
    with open(tmp_path / "cases.json", "w") as f:
        json.dump(paths, f)
    scripts = os.path.abspath(os.path.join(FOLDER, "..", "..", "..", "scripts", "mindspore_fixtures"))
    run = subprocess.run([python, "-c", LIVE, str(tmp_path / "cases.json")], capture_output=True, text=True,
                         timeout=600, env=dict(os.environ, PYTHONPATH=scripts), cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.split("RESULT", 1)[1])
    assert sorted(result) == sorted(CASES)
    for case in CASES:
        # learning rates are configuration (the MindSpore optimizer is built with its own); state MindSpore never
        # reads keeps its initial value: RMSProp's `moment` and SGD's `accum`/`stat` without momentum, AdaFactor's
        # anonymous placeholder without beta1
        unread = {"rmsprop": ("moment.",), "sgd_no_momentum": ("accum.", "stat."),
                  "adafactor_no_beta1": ("Parameter$",)}
        skipped = [n for n in result[case]["not_loaded"] if not n.startswith(("learning_rate", "momentum"))
                   and not n.startswith(unread.get(case, ()))]
        assert skipped == [], (case, skipped)
        for k, (got, ours) in enumerate(zip(result[case]["traj"], want[case])):
            for n in NAMES:
                close(got[n], ours[n], f"MindSpore after {case}.{fmt} step {k} {n}")


def test_error_learning_rate_differs_from_mindspores():
    with pytest.raises(ValueError, match=r"learning rate.*0\.01.*0\.02"):
        msc.from_mindspore(jaxopt_ms.adam(0.02, eps=1e-3, weight_decay=0.01), _adam_ckpt(), like())
    lrs = [0.1, 0.09, 0.08, 0.07, 0.06, 0.05]
    ckpt = msc.load(os.path.join(FOLDER, "momentum_lr_list.ckpt"))
    msc.from_mindspore(jaxopt_ms.momentum(lrs, 0.9), ckpt, like())
    with pytest.raises(ValueError, match="global_step 3"):
        msc.from_mindspore(jaxopt_ms.momentum(lrs[1:], 0.9), ckpt, like())


def test_crc_checked_files_written_by_mindspore(tmp_path):
    for fmt in ("ckpt", "safetensors"):
        path = os.path.join(FOLDER, f"crc.{fmt}")
        got = msc.load(path)
        np.testing.assert_array_equal(got["t_Float16"], np.array([[0, 1, 2], [3, 125, 1]], np.float16))
        data = bytearray(open(path, "rb").read())
        at = data.find(np.array([3, 125], np.float16).tobytes())  # a value inside t_Float16
        data[at] ^= 1
        (tmp_path / f"bad.{fmt}").write_bytes(bytes(data))
        with pytest.raises(ValueError, match="crc"):
            msc.load(tmp_path / f"bad.{fmt}")


def test_refuses_mindspore_int4_in_safetensors(tmp_path):
    import safetensors.numpy

    safetensors.numpy.save_file({"q": np.zeros(4, np.int8)}, str(tmp_path / "q.safetensors"),
                                metadata={"format": "ms", "q": "Int4"})
    with pytest.raises(ValueError, match="'q'.*Int4"):
        msc.load(tmp_path / "q.safetensors")
