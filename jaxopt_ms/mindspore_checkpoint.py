"""MindSpore checkpoints in and out, optimizer state included: resume a MindSpore run in JAX, and go back.

MindSpore's ``save_checkpoint(train_cell)`` writes the network's parameters *and* the optimizer's state under
names such as ``moment1.conv1.weight``, ``beta1_power``, ``global_step`` or ``scale_sense``. This module reads
and writes both of MindSpore's file formats without MindSpore, and places that state under a jaxopt_ms
optimizer's state so that the next ``update`` is MindSpore's next step::

    ckpt = jaxopt_ms.mindspore_checkpoint.load('resnet-5_100.ckpt')          # {name: numpy array}
    opt = jaxopt_ms.adam(1e-3)                                               # built as in MindSpore
    params, state = jaxopt_ms.mindspore_checkpoint.from_mindspore(opt, ckpt, params_like)
    ...                                                                      # train on in JAX
    out = jaxopt_ms.mindspore_checkpoint.to_mindspore(opt, params, state)
    jaxopt_ms.mindspore_checkpoint.save('resumed.ckpt', out)                 # mindspore.load_checkpoint reads it

Formats: ``.ckpt`` is MindSpore's protobuf ``Checkpoint`` message (``value { tag, tensor { dims, tensor_type,
tensor_content } }``, a large tensor split over several consecutive values with the same tag), read with the
``protobuf`` package from a descriptor built here; ``.safetensors`` is read and written with the ``safetensors``
package. Both are the optional extra ``pip install jaxopt_ms[mindspore]``. Names map through
:func:`jaxopt_ms.param_names`: MindSpore's ``conv1.weight`` is the leaf whose path name is ``conv1.weight``. The
name mapping per optimizer is tabulated in ``docs/checkpoints.md``.
"""

from __future__ import annotations

import binascii
import dataclasses
import os
import re
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxopt_ms._flat import FlatParams
from jaxopt_ms.fused import FusedOptimizer
from jaxopt_ms.loss_scale import DynamicLossScaleState, FixedLossScaleState, MasterWeightsState
from jaxopt_ms.names import param_names, path_name
from jaxopt_ms.transforms.adadelta import ScaleByAdadeltaState
from jaxopt_ms.transforms.adafactor import AdaFactorState, ScaleByFactoredRmsState
from jaxopt_ms.transforms.adagrad import AdagradState, ScaleByAdagradState
from jaxopt_ms.transforms.adam import ScaleByAdamState
from jaxopt_ms.transforms.adam_weight_decay import ScaleByAdamWeightDecayState
from jaxopt_ms.transforms.adamax import ScaleByAdamaxState
from jaxopt_ms.transforms.asgd import ASGDState
from jaxopt_ms.transforms.ftrl import FtrlState
from jaxopt_ms.transforms.lamb import ScaleByLambState
from jaxopt_ms.transforms.lars import LarsState
from jaxopt_ms.transforms.learning_rate import LearningRateState
from jaxopt_ms.transforms.proximal_adagrad import ProximalAdagradState
from jaxopt_ms.transforms.rprop import RpropState
from jaxopt_ms.transforms.sgd import ScaleBySgdState
from jaxopt_ms.transforms.thor import ScaleByThorState
from jaxopt_ms.transforms.weight_decay import AddDecayedWeightsState

__all__ = ["from_mindspore", "load", "save", "to_mindspore"]

# --------------------------------------------------------------------------------------------------- dtypes
# MindSpore's tensor_type strings (str(mindspore.dtype)) -> numpy. MindSpore 2.10's own loader knows the first
# fifteen; complex and float8 tensors can be written by save_checkpoint (its loader refuses them) and are
# standard layouts, so they are read too.
_NP_OF_MS = {
    "Float16": np.dtype(np.float16), "Float32": np.dtype(np.float32), "Float64": np.dtype(np.float64),
    "BFloat16": np.dtype(jnp.bfloat16),
    "Int8": np.dtype(np.int8), "Int16": np.dtype(np.int16), "Int32": np.dtype(np.int32), "Int64": np.dtype(np.int64),
    "UInt8": np.dtype(np.uint8), "UInt16": np.dtype(np.uint16), "UInt32": np.dtype(np.uint32),
    "UInt64": np.dtype(np.uint64), "Bool": np.dtype(np.bool_),
    "Complex64": np.dtype(np.complex64), "Complex128": np.dtype(np.complex128),
    "Float8E4M3FN": np.dtype(jnp.float8_e4m3fn), "Float8E5M2": np.dtype(jnp.float8_e5m2),
}
# Types a checkpoint can name that have no numpy layout: refused with the reason.
_REFUSED = {
    "Int4": "MindSpore's qint4x2 packs two 4-bit integers per byte in a layout numpy has no type for",
    "HiFloat8": "HiFloat8 is a MindSpore-specific 8-bit float with no numpy type",
}
_MS_OF_NP = {v: k for k, v in _NP_OF_MS.items()}
# safetensors dtype strings the numpy API lacks (bfloat16, float8): read through the package's deserialize.
_NP_OF_SAFETENSORS_EXTRA = {"BF16": np.dtype(jnp.bfloat16), "F8_E4M3": np.dtype(jnp.float8_e4m3fn),
                            "F8_E5M2": np.dtype(jnp.float8_e5m2)}
# MindSpore writes a tensor in pieces of at most 512 MiB (serialization.SLICE_SIZE): protobuf messages are
# limited to 2 GiB, and its loader joins consecutive values with the same tag.
_CHUNK_BYTES = 512 * 1024 * 1024


def _checkpoint_class() -> type:
    """MindSpore's ``Checkpoint`` message (checkpoint.proto), built from a descriptor in a private pool.

    The wire format depends only on field numbers and types: ``Checkpoint { repeated Value value = 1; }``,
    ``Value { required string tag = 1; oneof { TensorProto tensor = 2; MapTensorProto maptensor = 3; } }``,
    ``TensorProto { repeated int64 dims = 1; required string tensor_type = 2; required bytes tensor_content = 3; }``.
    """
    try:
        from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    except ImportError as e:  # an optional extra
        raise ImportError("Reading and writing MindSpore .ckpt files needs the 'protobuf' package: "
                          "pip install 'jaxopt_ms[mindspore]'.") from e
    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(name="jaxopt_ms_mindspore_checkpoint.proto", package="jaxopt_ms_ms",
                                             syntax="proto2")

    def field(msg, name, number, label, ftype, type_name=None, oneof=None):
        f = msg.field.add(name=name, number=number, label=label, type=ftype)
        if type_name:
            f.type_name = type_name
        if oneof is not None:
            f.oneof_index = oneof

    tensor = fdp.message_type.add(name="TensorProto")
    field(tensor, "dims", 1, F.LABEL_REPEATED, F.TYPE_INT64)
    field(tensor, "tensor_type", 2, F.LABEL_REQUIRED, F.TYPE_STRING)
    field(tensor, "tensor_content", 3, F.LABEL_REQUIRED, F.TYPE_BYTES)
    map_tensor = fdp.message_type.add(name="MapTensorProto")
    field(map_tensor, "tensor", 1, F.LABEL_REPEATED, F.TYPE_MESSAGE, ".jaxopt_ms_ms.TensorProto")
    ckpt = fdp.message_type.add(name="Checkpoint")
    value = ckpt.nested_type.add(name="Value")
    value.oneof_decl.add(name="value")
    field(value, "tag", 1, F.LABEL_REQUIRED, F.TYPE_STRING)
    field(value, "tensor", 2, F.LABEL_OPTIONAL, F.TYPE_MESSAGE, ".jaxopt_ms_ms.TensorProto", oneof=0)
    field(value, "maptensor", 3, F.LABEL_OPTIONAL, F.TYPE_MESSAGE, ".jaxopt_ms_ms.MapTensorProto", oneof=0)
    field(ckpt, "value", 1, F.LABEL_REPEATED, F.TYPE_MESSAGE, ".jaxopt_ms_ms.Checkpoint.Value")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("jaxopt_ms_ms.Checkpoint"))


_CHECKPOINT: type | None = None


def _checkpoint() -> type:
    global _CHECKPOINT
    if _CHECKPOINT is None:
        _CHECKPOINT = _checkpoint_class()
    return _CHECKPOINT


def _format_of(path: str, format: str | None) -> str:
    if format is not None:
        if format not in ("ckpt", "safetensors"):
            raise ValueError(f"'format' must be 'ckpt' or 'safetensors', but got {format!r}.")
        return format
    if str(path).endswith(".safetensors"):
        return "safetensors"
    if str(path).endswith(".ckpt"):
        return "ckpt"
    raise ValueError(f"Cannot tell the checkpoint format of {str(path)!r}: the name must end with '.ckpt' or "
                     "'.safetensors', or pass format='ckpt' / format='safetensors'.")


# ------------------------------------------------------------------------------------------------ load / save
def _tensor_array(tag: str, dims: list[int], tensor_type: str, content: bytes) -> np.ndarray:
    if tensor_type == "str":
        # MindSpore writes a str as numpy's fixed-width unicode (UTF-32, 4 bytes a character) with dims [0].
        return np.array(np.frombuffer(content, f"<U{len(content) // 4}")[0]) if content else np.array("")
    if tensor_type in _REFUSED:
        raise ValueError(f"Checkpoint entry {tag!r} has MindSpore dtype {tensor_type}, which cannot be read: "
                         f"{_REFUSED[tensor_type]}.")
    if tensor_type not in _NP_OF_MS:
        raise ValueError(f"Checkpoint entry {tag!r} has an unknown MindSpore dtype {tensor_type!r}; known: "
                         f"{sorted(_NP_OF_MS)} and 'str'.")
    dtype = _NP_OF_MS[tensor_type].newbyteorder("<")
    shape = tuple(int(d) for d in dims)
    if shape == (0,) and len(content) == dtype.itemsize:
        shape = ()  # MindSpore's loader reads dims [0] as a scalar (older writers)
    if len(content) != dtype.itemsize * int(np.prod(shape, dtype=np.int64)):
        raise ValueError(f"Checkpoint entry {tag!r}: {len(content)} bytes of {tensor_type} for dims {list(dims)}; "
                         "the file is damaged or truncated.")
    # astype: native byte order and a writable copy
    return np.frombuffer(content, dtype).reshape(shape).astype(_NP_OF_MS[tensor_type])


def _load_ckpt(path: str) -> dict[str, np.ndarray]:
    with open(path, "rb") as f:
        data = f.read()
    # save_checkpoint(crc_check=True) appends b'crc_num' + a 10-byte big-endian crc32 of what precedes it.
    if len(data) >= 17 and data[-17:-10] == b"crc_num":
        body, crc = data[:-17], int.from_bytes(data[-10:], "big")
        if binascii.crc32(body) != crc:
            raise ValueError(f"The checkpoint {path!r} fails its crc check: the file is damaged.")
        data = body
    message = _checkpoint()()
    try:
        message.ParseFromString(data)  # the concatenated messages MindSpore writes merge into one
    except Exception as e:
        raise ValueError(f"{path!r} is not a MindSpore .ckpt file (or it is encrypted, which needs MindSpore's "
                         f"key to read): {e}") from e
    out: dict[str, np.ndarray] = {}
    pieces: list[bytes] = []
    values = list(message.value)
    for i, value in enumerate(values):
        if value.WhichOneof("value") != "tensor":
            raise ValueError(f"Checkpoint entry {value.tag!r} is a MindSpore MapParameter (a hash-table embedding); "
                             "it has no array form and cannot be read.")
        pieces.append(value.tensor.tensor_content)
        if i + 1 < len(values) and values[i + 1].tag == value.tag:
            continue  # a large tensor continues in the next value
        out[value.tag] = _tensor_array(value.tag, list(value.tensor.dims), value.tensor.tensor_type, b"".join(pieces))
        pieces = []
    return out


def _load_safetensors(path: str) -> dict[str, np.ndarray]:
    try:
        import safetensors
        from safetensors.numpy import load_file
    except ImportError as e:
        raise ImportError("Reading MindSpore .safetensors files needs the 'safetensors' package: "
                          "pip install 'jaxopt_ms[mindspore]'.") from e
    try:
        with safetensors.safe_open(path, framework="np") as f:
            metadata = f.metadata() or {}
    except Exception as e:
        raise ValueError(f"{path!r} is not a safetensors file: {e}") from e
    for name, kind in metadata.items():
        if kind in _REFUSED:  # MindSpore records its packed types in the metadata, the header says int8
            raise ValueError(f"Checkpoint entry {name!r} has MindSpore dtype {kind}, which cannot be read: "
                             f"{_REFUSED[kind]}.")
    try:
        out = {k: np.array(v) for k, v in load_file(path).items()}
    except (KeyError, TypeError):  # a dtype the numpy API lacks (bfloat16, float8): decode the raw bytes
        out = _load_safetensors_raw(path)
    if "crc_num" in metadata:  # save_checkpoint(crc_check=True): crc32 over (name, bytes) in name order
        crc = 0
        for name in sorted(out):
            crc = binascii.crc32(out[name].astype(out[name].dtype.newbyteorder("<")).tobytes(),
                                 binascii.crc32(name.encode(), crc))
        if str(crc) != metadata["crc_num"]:
            raise ValueError(f"The checkpoint {path!r} fails its crc check: the file is damaged.")
    return out


def _load_safetensors_raw(path: str) -> dict[str, np.ndarray]:
    import safetensors

    with open(path, "rb") as f:
        entries = safetensors.deserialize(f.read())
    out = {}
    for name, info in entries:
        dtype = _NP_OF_SAFETENSORS_EXTRA.get(info["dtype"])
        if dtype is None:
            from safetensors.numpy import _getdtype

            try:
                dtype = np.dtype(_getdtype(info["dtype"]))
            except KeyError:
                raise ValueError(f"Checkpoint entry {name!r} has safetensors dtype {info['dtype']}, which has no "
                                 "numpy type.") from None
        out[name] = np.frombuffer(bytes(info["data"]), dtype.newbyteorder("<")).reshape(info["shape"]).astype(dtype)
    return out


def load(path: str | os.PathLike, format: str | None = None) -> dict[str, np.ndarray]:
    """Reads a MindSpore checkpoint into ``{name: numpy array}``, without MindSpore.

    Args:
        path: a file written by ``mindspore.save_checkpoint`` (or :func:`save`).
        format: ``'ckpt'`` or ``'safetensors'``; by default from the file name's ending.
    Returns:
        Every entry in file order (safetensors: sorted by name): parameters and optimizer state under
        MindSpore's names; bfloat16 as ``ml_dtypes.bfloat16``; a 0-d tensor as a 0-d array; a ``str`` entry
        (``append_dict``) as a 0-d numpy unicode array.
    Raises:
        ValueError: not such a file, damaged (crc, size), encrypted, a MapParameter, or a dtype with no numpy
            type (MindSpore's ``Int4`` / ``HiFloat8``), each naming the entry.
        ImportError: the ``protobuf`` / ``safetensors`` package is missing.

    Example:
        >>> ckpt = jaxopt_ms.mindspore_checkpoint.load('lenet-1_1875.ckpt')
        >>> ckpt['moment1.conv1.weight'].shape
        (6, 1, 5, 5)
    """
    path = os.fspath(path)
    fmt = _format_of(path, format)
    if not os.path.isfile(path):
        raise ValueError(f"No checkpoint file at {path!r}.")
    return _load_ckpt(path) if fmt == "ckpt" else _load_safetensors(path)


def _ms_type(name: str, value: np.ndarray) -> str:
    if value.dtype.kind == "U":
        return "str"
    dtype = value.dtype.newbyteorder("=")
    if dtype not in _MS_OF_NP:
        raise ValueError(f"Entry {name!r} has dtype {value.dtype}, which no MindSpore checkpoint type holds; "
                         f"supported: {sorted(str(d) for d in _MS_OF_NP)} and str.")
    return _MS_OF_NP[dtype]


def save(path: str | os.PathLike, checkpoint: Mapping[str, Any], format: str | None = None) -> None:
    """Writes ``{name: array}`` as a MindSpore checkpoint that ``mindspore.load_checkpoint`` reads.

    Args:
        path: the file to write (replaced if it exists).
        checkpoint: names to arrays (numpy, JAX or scalars; a str becomes MindSpore's ``str`` entry in ``.ckpt``).
        format: ``'ckpt'`` (MindSpore's protobuf) or ``'safetensors'`` (with MindSpore's ``{'format': 'ms'}``
            metadata); by default from the file name's ending.
    Raises:
        ValueError: an unknown format, a dtype MindSpore has no type for, a str entry in safetensors, a name that
            is not a non-empty str.
    """
    path = os.fspath(path)
    fmt = _format_of(path, format)
    arrays = {}
    for name, value in checkpoint.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"Checkpoint names must be non-empty str, but got {name!r}.")
        arr = np.asarray(value)
        _ms_type(name, arr)
        if fmt == "safetensors" and arr.dtype.kind == "U":
            raise ValueError(f"Entry {name!r} is a str, which safetensors cannot hold; save it in .ckpt format.")
        arrays[name] = np.array(arr, order="C")  # (np.ascontiguousarray would make a 0-d array 1-d)
    if fmt == "safetensors":
        try:
            import safetensors.numpy
        except ImportError as e:
            raise ImportError("Writing .safetensors files needs the 'safetensors' package: "
                              "pip install 'jaxopt_ms[mindspore]'.") from e
        little = {k: v.astype(v.dtype.newbyteorder("<")) for k, v in sorted(arrays.items())}
        safetensors.numpy.save_file(little, path, metadata={"format": "ms"})
        return
    Checkpoint = _checkpoint()
    with open(path, "wb") as f:
        for name, arr in arrays.items():
            tensor_type = _ms_type(name, arr)
            if tensor_type == "str":
                dims, content = [0], arr.tobytes()
            else:
                dims, content = list(arr.shape), arr.astype(arr.dtype.newbyteorder("<")).tobytes()
            for start in range(0, max(len(content), 1), _CHUNK_BYTES):
                message = Checkpoint()
                value = message.value.add()
                value.tag = name
                value.tensor.dims.extend(dims)
                value.tensor.tensor_type = tensor_type
                value.tensor.tensor_content = content[start:start + _CHUNK_BYTES]
                f.write(message.SerializeToString())


# ------------------------------------------------------------------------------------------ the name mapping
@dataclasses.dataclass(frozen=True)
class _Field:
    """How one state field maps to MindSpore.

    ``kind``: ``'param'`` (a tree of per-parameter arrays, MindSpore's ``prefix + name``), ``'scalar'`` (one
    MindSpore entry ``ms``), ``'step'`` (``global_step``), ``'lr'`` (the next learning rate, derived from the
    step), ``'stat'`` (SGD's first-step flag, MindSpore's per-parameter ``stat.<name>``), ``'keep'`` (not saved by
    MindSpore: the flag of the last step only) or ``'scale'`` (a fixed loss scale, ``scale_sense`` if saved).
    ``sign``: MindSpore's value is ``sign *`` ours.
    """

    kind: str
    ms: str = ""
    sign: float = 1.0
    ms_shape: tuple | None = None
    leaf_scalar: bool = False


def _p(prefix: str, sign: float = 1.0, leaf_scalar: bool = False) -> _Field:
    return _Field("param", prefix, sign, leaf_scalar=leaf_scalar)


def _s(name: str, ms_shape: tuple | None = None) -> _Field:
    return _Field("scalar", name, ms_shape=ms_shape)


_STEP, _LR, _KEEP = _Field("step", "global_step"), _Field("lr"), _Field("keep")
_RECURSE = None

# Optax's RMS states hold RMSProp's moments; optax.trace is Momentum's `moments` and RMSProp's `moment` (which
# RMSProp's chain keeps after the `-lr` block, so with the opposite sign).
_FIELDS: dict[type, dict[str, _Field | None]] = {
    ScaleByAdamState: dict(beta1_power=_s("beta1_power", (1,)), beta2_power=_s("beta2_power", (1,)),
                           moment1=_p("moment1."), moment2=_p("moment2."), vhat=_p("vhat.")),
    ScaleByAdamWeightDecayState: dict(adam_m=_p("adam_m."), adam_v=_p("adam_v.")),
    ScaleByAdagradState: dict(accum=_p("accum.")),
    AdagradState: dict(accum=_p("accum."), lr=_RECURSE),
    ProximalAdagradState: dict(accum=_p("accum."), lr=_RECURSE),
    FtrlState: dict(moments=_p("moments."), linear=_p("linear."), lr=_RECURSE),
    # eta, mu: one scalar per parameter (a fused state repeats it over the leaf's elements)
    ASGDState: dict(eta=_p("eta_", leaf_scalar=True), mu=_p("mu_", leaf_scalar=True), ax=_p("ax_."), lr=_RECURSE),
    ScaleByAdamaxState: dict(beta1_power=_s("beta1_power", (1,)), moment1=_p("moment1."), moment2=_p("moment2.")),
    ScaleByAdadeltaState: dict(accum=_p("accum."), accum_update=_p("accum_update.")),
    ScaleBySgdState: dict(accum=_p("accum."), stat=_Field("stat", "stat.")),
    ScaleByLambState: dict(count=_STEP, lamb_m=_p("lamb_m."), lamb_v=_p("lamb_v.")),
    AdaFactorState: dict(exp_avg=_p("exp_avg."), exp_avg_sq_row=_p("exp_avg_sq_row_"),
                         exp_avg_sq_col=_p("exp_avg_sq_col_"), exp_avg_sq=_p("exp_avg_sq_"), lr=_RECURSE),
    ScaleByFactoredRmsState: dict(count=_STEP, exp_avg_sq_row=_p("exp_avg_sq_row_"),
                                  exp_avg_sq_col=_p("exp_avg_sq_col_"), exp_avg_sq=_p("exp_avg_sq_")),
    RpropState: dict(prev=_p("prev."), step_size=_p("step_size."), lr=_RECURSE),
    LearningRateState: dict(count=_STEP, learning_rate=_LR),
    LarsState: dict(count=_STEP),
    AddDecayedWeightsState: dict(count=_STEP),
    optax.ScaleByRmsState: dict(nu=_p("mean_square.")),
    optax.ScaleByRStdDevState: dict(mu=_p("mean_grad."), nu=_p("mean_square.")),
    DynamicLossScaleState: dict(loss_scale=_s("scale_sense", ()), cur_iter=_s("current_iterator_step", ()),
                                last_overflow_iter=_s("last_overflow_iterator_step", ()), overflow=_KEEP,
                                inner_state=_RECURSE),
    FixedLossScaleState: dict(loss_scale=_Field("scale", "scale_sense"), overflow=_KEEP, inner_state=_RECURSE),
}
_TRACE_MOMENTUM, _TRACE_RMSPROP = _p("moments."), _p("moment.", -1.0)
_UNSUPPORTED = {
    ScaleByThorState: "THOR's state (its per-layer inverse statistics) has no counterpart in MindSpore's "
                      "checkpoint layout that can be checked on CPU",
    "fused AdaFactor": "a fused AdaFactor keeps its factored second moments in a per-buffer layout; convert with "
                       "the per-leaf optimizer",
    MasterWeightsState: "master_weights keeps float32 copies MindSpore's checkpoints do not separate from the "
                        "parameters",
}
# MindSpore entries that are hyperparameters (the JAX optimizer carries its own) or bookkeeping (ModelCheckpoint's
# append_info; LARS's placeholders; AdaFactor's step, checked against global_step).
_HYPERPARAMETER = re.compile(r"^(learning_rate(_group_\d+)?|momentum|fake_lr|fake_param|afactor_step|epoch_num|"
                             r"step_num)$")


def _check_learning_rate(ckpt: dict, state: Any, step: int | None) -> None:
    """Without parameter groups, MindSpore's saved ``learning_rate`` (a value, or the per-step list at
    ``global_step``) must be the rate the jaxopt_ms optimizer's next update uses: a run whose rate was changed
    in MindSpore would otherwise continue with another one. (AdaFactor's saved rate is unused with
    ``relative_step``; schedules save none.)"""
    lr_states: list = []
    _walk(state, lambda f, v, w: lr_states.append(v) if f.kind == "lr" else v, "", False)
    saved = ckpt.get("learning_rate")
    if saved is None or len(lr_states) != 1 or any(k.startswith("learning_rate_group_") for k in ckpt) \
            or _contains(state, (AdaFactorState,)) or saved.ndim > 1:
        return
    want = np.float32(saved.reshape(-1)[min(step or 0, saved.size - 1)] if saved.ndim == 1 else saved)
    have = np.float32(lr_states[0])
    if want != have:
        raise ValueError(f"The checkpoint's learning rate for the next step is {float(want):.7g} ('learning_rate' at "
                         f"global_step {step}), but the optimizer's is {float(have):.7g}: build it with MindSpore's "
                         "learning_rate (or change it with jaxopt_ms.set_lr).")


def _unread_state(ckpt: dict, state: Any, rmsprop: bool, names: set[str]) -> set[str]:
    """MindSpore state entries that cannot affect the next step, where jaxopt_ms keeps no counterpart.

    RMSProp without momentum overwrites ``moment`` every step; SGD without momentum (``momentum`` 0) never reads
    ``accum`` and ``stat``; a ``Parameter$<n>`` of size <= 1 is MindSpore's anonymous placeholder (AdaFactor's
    ``exp_avg`` when ``beta1=None``).
    """
    out = {k for k in ckpt if re.fullmatch(r"Parameter\$\d+", k) and ckpt[k].size <= 1}
    if rmsprop and not _contains(state, (optax.TraceState,)):
        out |= {f"moment.{n}" for n in names}
    momentum = ckpt.get("momentum")
    no_momentum = momentum is not None and momentum.size == 1 and float(momentum.reshape(())) == 0.0
    if no_momentum and not _contains(state, (ScaleBySgdState,)):
        out |= {f"{prefix}{n}" for n in names for prefix in ("accum.", "stat.")
                if f"accum.{n}" not in ckpt or not np.any(ckpt[f"accum.{n}"])}
    return out


def _is_namedtuple(x: Any) -> bool:
    return isinstance(x, tuple) and hasattr(x, "_fields")


def _contains(tree: Any, types: tuple) -> bool:
    found = []

    def visit(x):
        if isinstance(x, types):
            found.append(x)
        elif _is_namedtuple(x):
            for v in x:
                visit(v)
        elif isinstance(x, (list, tuple)):
            for v in x:
                visit(v)
        elif isinstance(x, dict):
            for v in x.values():
                visit(v)
    visit(tree)
    return bool(found)


def _absent(buffer: Any) -> bool:
    """A fused buffer that belongs to another parameter group (``None``, or optax's ``MaskedNode``)."""
    return buffer is None or isinstance(buffer, optax.MaskedNode)


def _walk(node: Any, fn: Callable[[_Field, Any, str], Any], where: str, rmsprop: bool) -> Any:
    """Rebuilds the state ``node``, calling ``fn(field, value, where)`` on every field the table maps."""
    if type(node) in _UNSUPPORTED:
        raise ValueError(f"mindspore_checkpoint: {type(node).__name__} is not supported: "
                         f"{_UNSUPPORTED[type(node)]}.")
    if _is_namedtuple(node):
        if isinstance(node, AdaFactorState) and isinstance(node.exp_avg_sq_row, FlatParams):
            raise ValueError(f"mindspore_checkpoint: {_UNSUPPORTED['fused AdaFactor']}.")
        table = _FIELDS.get(type(node))
        if table is None and isinstance(node, optax.TraceState):
            table = {"trace": _TRACE_RMSPROP if rmsprop else _TRACE_MOMENTUM}
        out = {}
        for name in node._fields:
            value = getattr(node, name)
            spec = table.get(name, _RECURSE) if table is not None else _RECURSE
            sub = f"{where}.{name}"
            out[name] = _walk(value, fn, sub, rmsprop) if spec is None or value is None else fn(spec, value, sub)
        return type(node)(**out)
    if isinstance(node, (list, tuple)):
        return type(node)(_walk(v, fn, f"{where}[{i}]", rmsprop) for i, v in enumerate(node))
    if isinstance(node, dict):
        return {k: _walk(v, fn, f"{where}[{k!r}]", rmsprop) for k, v in node.items()}
    if _absent(node):
        return node
    raise ValueError(f"mindspore_checkpoint: the state field {where or 'state'} (type {type(node).__name__}) has no "
                     "MindSpore counterpart in this module's table.")


def _first(flat: FlatParams, buffer: int) -> Any:
    """The first leaf slot of ``buffer``."""
    return flat.layout.leaves[flat.layout.buffers[buffer].leaves[0]]


def _per_param(tree: Any) -> list[tuple[str, Any]]:
    """``(name, leaf)`` pairs of a per-parameter state tree (a FlatParams: its leaves' slots)."""
    if isinstance(tree, FlatParams):
        return [(slot.name, slot) for slot in tree.layout.leaves]
    pairs = jax.tree_util.tree_flatten_with_path(tree)[0]
    return [(path_name(path), leaf) for path, leaf in pairs]


_JITTED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _jitted_update(optimizer: optax.GradientTransformation) -> Callable:
    """``jax.jit(optimizer.update)``, kept per optimizer (one compile; eager execution costs one per op)."""
    update = optimizer.update
    if update not in _JITTED:
        _JITTED[update] = jax.jit(update)
    return _JITTED[update]


def _unwrap(optimizer: Any) -> tuple[Any, bool]:
    if isinstance(optimizer, FusedOptimizer):
        return optimizer, True
    if not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(f"'optimizer' must be a jaxopt_ms optimizer (an optax.GradientTransformation), but got type "
                        f"'{type(optimizer).__name__}'.")
    return optimizer, False


def _check_entry(name: str, have: np.ndarray, shape: tuple, dtype: Any, what: str) -> None:
    if tuple(have.shape) != tuple(shape):
        raise ValueError(f"Checkpoint entry {name!r} has shape {tuple(have.shape)}, but {what} has shape "
                         f"{tuple(shape)}.")
    if np.dtype(have.dtype) != np.dtype(dtype):
        raise ValueError(f"Checkpoint entry {name!r} has dtype {have.dtype}, but {what} has dtype "
                         f"{np.dtype(dtype)}.")


def _scalar_entry(name: str, have: np.ndarray, dtype: Any) -> np.ndarray:
    """A MindSpore scalar (shape ``()`` or ``(1,)``) as a 0-d array of ``dtype``."""
    if have.size != 1 or have.ndim > 1:
        raise ValueError(f"Checkpoint entry {name!r} should be a scalar (shape () or (1,)), but has shape "
                         f"{tuple(have.shape)}.")
    if np.dtype(have.dtype) != np.dtype(dtype):
        raise ValueError(f"Checkpoint entry {name!r} has dtype {have.dtype}, but the optimizer state expects "
                         f"{np.dtype(dtype)}.")
    return have.reshape(())


def from_mindspore(optimizer: optax.GradientTransformation, checkpoint: Mapping[str, Any] | str | os.PathLike,
                   params_like: Any, *, ignore: Iterable[str] | Callable[[str], bool] = ()) -> tuple[Any, Any]:
    """MindSpore's parameters and optimizer state as jaxopt_ms ``(params, state)``: the next update is MindSpore's.

    Args:
        optimizer: the jaxopt_ms optimizer built with MindSpore's hyperparameters (per leaf or
            ``jaxopt_ms.fused.fuse(...)``; with parameter groups; inside :func:`jaxopt_ms.lars` or a loss-scale
            wrapper of :mod:`jaxopt_ms.loss_scale`).
        checkpoint: ``{name: array}`` (e.g. from :func:`load`) or a checkpoint file's path.
        params_like: the parameter pytree (arrays or ``jax.ShapeDtypeStruct``) whose leaf names
            (:func:`jaxopt_ms.param_names`) are MindSpore's parameter names; or, for a fused optimizer inside a
            wrapper (``dynamic_loss_scale(fuse(...))``), the ``FlatParams`` from ``fused.flatten(params)``.
        ignore: checkpoint names to leave unread, or a predicate on the name (e.g. ``lambda n: 'moving_' in n`` for
            BatchNorm statistics kept outside ``params``). ``learning_rate*``, ``momentum``, ``epoch_num`` and
            ``step_num`` are never read.
    Returns:
        ``(params, state)``: ``params`` with the structure of ``params_like`` (a fused optimizer: its
        ``flatten(params)``) holding the checkpoint's values; ``state`` the optimizer state after MindSpore's
        ``global_step`` updates: moments and accumulators, beta powers, the step that drives the learning rate
        (per-step lists and schedules continue at index ``global_step``), the dynamic loss scale and its counters.
    Raises:
        ValueError: a parameter or state entry missing from the checkpoint, a checkpoint entry that maps nowhere
            (neither a parameter, nor this optimizer's state, nor a known hyperparameter), a shape or dtype
            mismatch, inconsistent per-parameter flags, each naming the entry; an optimizer whose state has no
            MindSpore form (THOR, master weights).

    Example:
        >>> opt = jaxopt_ms.momentum(0.1, 0.9)
        >>> params, state = jaxopt_ms.mindspore_checkpoint.from_mindspore(opt, 'net.ckpt', params_like)
        >>> updates, state = opt.update(grads, state, params)       # MindSpore's next step
    """
    optimizer, fused = _unwrap(optimizer)
    if isinstance(checkpoint, (str, os.PathLike)):
        checkpoint = load(checkpoint)
    ckpt = {k: np.asarray(v) for k, v in checkpoint.items()}
    is_ignored = ignore if callable(ignore) else set(ignore).__contains__
    used: set[str] = set()

    def take(name: str) -> np.ndarray:
        if name not in ckpt:
            raise ValueError(f"The checkpoint has no entry {name!r}, which the optimizer state needs (nothing is "
                             "initialised in its place).")
        used.add(name)
        return ckpt[name]

    if isinstance(params_like, FlatParams):  # packed by a fused optimizer that a wrapper hides
        layout = params_like.layout
        flat_names = [slot.name for slot in layout.leaves]
        buffers = [np.zeros(b.shape, b.dtype) for b in params_like.buffers]  # flatten pads with zeros
        for slot in layout.leaves:
            value = take(slot.name)
            _check_entry(slot.name, value, slot.shape, slot.dtype, f"the parameter {slot.name!r}")
            buffers[slot.buffer][slot.offset:slot.offset + slot.size] = value.reshape(-1)
        params = FlatParams(tuple(jnp.asarray(b) for b in buffers), layout)
    else:
        names = param_names(params_like)
        flat_names, treedef = jax.tree.flatten(names)
        values = []
        for name, like in zip(flat_names, treedef.flatten_up_to(params_like)):
            value = take(name)
            _check_entry(name, value, tuple(like.shape), like.dtype, f"the parameter {name!r}")
            values.append(jnp.asarray(value))
        params = treedef.unflatten(values)
        if fused:
            params = optimizer.flatten(params)
    state0 = optimizer.init(params)
    rmsprop = _contains(state0, (optax.ScaleByRmsState, optax.ScaleByRStdDevState))
    has_step = []
    _walk(state0, lambda f, v, w: has_step.append(f.kind in ("step", "lr")) or v, "", rmsprop)
    step = None
    if any(has_step):
        step = int(_scalar_entry("global_step", take("global_step"), np.int32))
        if step < 0:
            raise ValueError(f"Checkpoint entry 'global_step' must be >= 0, but got {step}.")
    if step:
        # The learning rate the next update uses is the optimizer's own rule at `step`: set every step counter to
        # step - 1 and advance it by one update (its other results are overwritten from the checkpoint below).
        before = _walk(state0, lambda f, v, w: jnp.asarray(step - 1, v.dtype) if f.kind == "step" else v, "", rmsprop)
        zeros = jax.tree.map(jnp.zeros_like, params)
        _, template = _jitted_update(optimizer)(zeros, before, params)
    else:
        template = state0
    if "afactor_step" in ckpt and step is not None:
        afactor = float(_scalar_entry("afactor_step", ckpt["afactor_step"], ckpt["afactor_step"].dtype))
        if afactor != step:
            raise ValueError(f"Checkpoint entries 'afactor_step' ({afactor}) and 'global_step' ({step}) differ; "
                             "AdaFactor's step and the learning-rate step are one count here.")

    def fill(field: _Field, value: Any, where: str) -> Any:
        if field.kind in ("step", "lr", "keep"):
            return value
        if field.kind == "scale":
            if field.ms in ckpt:
                return jnp.asarray(_scalar_entry(field.ms, take(field.ms), value.dtype))
            return value  # a fixed scale is configuration; MindSpore saves it only with a loss-scale cell
        if field.kind == "scalar":
            return jnp.asarray(_scalar_entry(field.ms, take(field.ms), value.dtype))
        if field.kind == "stat":
            flags = {n: np.unique(take(field.ms + n)) for n in flat_names}
            found = {float(v[0]) for v in flags.values() if v.size == 1}
            if len(found) != 1 or any(v.size != 1 for v in flags.values()):
                raise ValueError(f"The checkpoint's '{field.ms}<name>' entries disagree ({flags}); SGD's first-step "
                                 "flag is one value for all parameters.")
            return jnp.asarray(found.pop(), value.dtype)
        # per-parameter arrays
        if isinstance(value, FlatParams):
            buffers = [b if _absent(b) else np.array(b) for b in value.buffers]
            for slot in value.layout.leaves:
                buf = buffers[slot.buffer]
                if _absent(buf):
                    continue  # a buffer of another parameter group
                name = field.ms + slot.name
                got = take(name)
                _check_entry(name, got, () if field.leaf_scalar else slot.shape, buf.dtype, f"the state field {where}")
                got = got * np.asarray(field.sign, buf.dtype)
                if buf.ndim == 0:  # one value for the whole buffer (ASGD's eta, mu): every leaf must agree
                    first = buffers[slot.buffer] = np.array(got) if slot is _first(value, slot.buffer) else buf
                    if got != first:
                        raise ValueError(f"Checkpoint entry {name!r} ({got}) differs from the other parameters' "
                                         f"({first}), which the fused state holds as one value.")
                    continue
                buf[slot.offset:slot.offset + slot.size] = got.reshape(-1)
            return FlatParams(tuple(b if _absent(b) else jnp.asarray(b) for b in buffers),
                              value.layout)

        def one(path, leaf):
            name = field.ms + path_name(path)
            got = take(name)
            _check_entry(name, got, leaf.shape, leaf.dtype, f"the state field {where}")
            return jnp.asarray(got * np.asarray(field.sign, got.dtype) if field.sign != 1.0 else got)
        return jax.tree_util.tree_map_with_path(one, value)

    state = _walk(template, fill, "", rmsprop)
    _check_learning_rate(ckpt, state, step)
    if step is not None:
        used.add("global_step")
    unread = _unread_state(ckpt, state, rmsprop, set(flat_names))
    left = [k for k in ckpt if k not in used and not is_ignored(k) and not _HYPERPARAMETER.match(k)
            and k not in unread]
    if left:
        raise ValueError(f"Checkpoint entries map nowhere (not a leaf of params_like, not this optimizer's state): "
                         f"{left[:10]}{' ...' if len(left) > 10 else ''}; pass ignore=[...] to leave them out.")
    return params, state


def to_mindspore(optimizer: optax.GradientTransformation, params: Any, state: Any) -> dict[str, np.ndarray]:
    """jaxopt_ms ``(params, state)`` as MindSpore's checkpoint entries (the way back of :func:`from_mindspore`).

    The result, written by :func:`save`, loads with ``mindspore.load_checkpoint`` and
    ``mindspore.load_param_into_net(net_or_train_cell, ...)``; the MindSpore optimizer built with the same
    hyperparameters continues the run. Scalars are written with MindSpore's shapes where one form fits every
    optimizer (``global_step``, beta powers: ``(1,)``, which MindSpore reshapes to ``()`` where it keeps a 0-d).
    Learning rates are not written: the MindSpore optimizer carries its own (as it is built).

    Raises:
        ValueError: an optimizer whose state has no MindSpore form (THOR, master weights).
    """
    optimizer, _ = _unwrap(optimizer)
    out: dict[str, np.ndarray] = {}
    tree = _flat_unflatten(params)
    names = param_names(tree)
    for name, leaf in zip(jax.tree.leaves(names), jax.tree.leaves(tree)):
        out[name] = np.asarray(leaf)
    rmsprop = _contains(state, (optax.ScaleByRmsState, optax.ScaleByRStdDevState))
    leaf_names = jax.tree.leaves(names)
    adafactor = _contains(state, (AdaFactorState,))

    def emit(field: _Field, value: Any, where: str) -> Any:
        if field.kind == "step":
            out["global_step"] = np.asarray(value, np.int32).reshape(1)
            if adafactor:
                out["afactor_step"] = np.asarray(value, np.float32).reshape(1)
        elif field.kind in ("scalar", "scale"):
            arr = np.asarray(value)
            out[field.ms] = arr.reshape(field.ms_shape) if field.ms_shape is not None else arr
        elif field.kind == "stat":
            for n, leaf in zip(leaf_names, jax.tree.leaves(tree)):
                out[field.ms + n] = np.full(np.shape(leaf), float(value), np.float32)
        elif field.kind == "param":
            if isinstance(value, FlatParams):
                for slot in value.layout.leaves:
                    if _absent(value.buffers[slot.buffer]):
                        continue
                    buf = np.asarray(value.buffers[slot.buffer])
                    arr = buf.reshape(1) if buf.ndim == 0 else buf[slot.offset:slot.offset + slot.size]
                    arr = arr[0] if field.leaf_scalar else arr.reshape(slot.shape)
                    out[field.ms + slot.name] = arr * np.asarray(field.sign, arr.dtype) if field.sign != 1.0 else arr
            else:
                for n, arr in _per_param(value):
                    arr = np.asarray(arr)
                    out[field.ms + n] = arr * np.asarray(field.sign, arr.dtype) if field.sign != 1.0 else arr
        return value

    _walk(state, emit, "", rmsprop)
    return out


def _flat_unflatten(params: Any) -> Any:
    from jaxopt_ms._flat import unflatten

    return unflatten(params) if isinstance(params, FlatParams) else params
