"""MindSpore's two checkpoint file formats, read and written without MindSpore.

``.ckpt`` is MindSpore's protobuf ``Checkpoint`` message (``value { tag, tensor { dims, tensor_type,
tensor_content } }``, a large tensor split over several consecutive values with the same tag), read with the
``protobuf`` package from a descriptor built here; ``.safetensors`` is read and written with the ``safetensors``
package. Both are the optional extra ``pip install jaxopt_ms[mindspore]``.

:func:`save` never leaves a half-written checkpoint: it writes a temporary file beside the target, flushes it to
disk and renames it over the target in one step, so a process killed mid-save leaves the previous file intact.
"""

from __future__ import annotations

import binascii
import os
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np

__all__ = ["load", "save"]

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
    problem = _scan_ckpt(path, data)
    if problem:
        raise ValueError(problem)
    message = _checkpoint()()
    try:
        message.ParseFromString(data)  # the concatenated messages MindSpore writes merge into one
    except Exception as e:
        raise ValueError(f"The checkpoint {path!r} is damaged: its entries have the right sizes, but their contents "
                         f"do not parse as MindSpore's checkpoint entries ({e}).") from e
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


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """A protobuf varint at ``pos``: ``(value, next position)``; ``(-1, pos)`` where the data ends inside it."""
    value = shift = 0
    while pos < len(data):
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    return -1, pos


def _kind_of_bytes(data: bytes) -> str | None:
    """What a file that is not a .ckpt looks like, where that is recognisable."""
    if len(data) >= 9:
        n = int.from_bytes(data[:8], "little")
        if 0 < n <= len(data) - 8 and data[8:9] == b"{":
            return "a safetensors file (pass format='safetensors' or name it '.safetensors')"
    if data[:4] == b"PK\x03\x04":
        return "a zip archive (a numpy .npz, or a PyTorch checkpoint?)"
    if data[:6] == b"\x93NUMPY":
        return "a numpy .npy file"
    if data[:2] in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05"):
        return "a Python pickle"
    if data[:8] == b"\x89HDF\r\n\x1a\n":
        return "an HDF5 file"
    return None


def _scan_ckpt(path: str, data: bytes) -> str | None:
    """What is wrong with ``data`` as MindSpore's ``Checkpoint`` (truncated, damaged, another kind of file), or
    ``None`` where its top-level structure is sound.

    A ``.ckpt`` is a sequence of ``value`` fields (tag byte ``0x0a``, a length, that many bytes): walking them
    finds where the file ends early or stops looking like a checkpoint.
    """
    if not data:
        return f"The checkpoint {path!r} is empty (0 bytes): it was not written completely."
    other = _kind_of_bytes(data)
    if other is not None:
        return f"{path!r} is not a MindSpore .ckpt file: it is {other}."
    pos = entries = 0
    while pos < len(data):
        start = pos
        if data[pos] != 0x0A:
            if entries == 0:
                return (f"{path!r} is not a MindSpore .ckpt file (its first bytes {data[:8]!r} do not start a "
                        "checkpoint entry). MindSpore's encrypted checkpoints (saved with enc_key) also look like "
                        "this: decrypt them with MindSpore first.")
            return (f"The checkpoint {path!r} is damaged: after {entries} readable entries, the bytes at offset "
                    f"{start} of {len(data)} do not start an entry.")
        length, pos = _varint(data, pos + 1)
        if length < 0 or pos + length > len(data):
            return (f"The checkpoint {path!r} is truncated: it ends at byte {len(data)} inside its entry number "
                    f"{entries + 1} (which needs {max(length, 0) + pos - start} bytes from offset {start}); "
                    "the file was not written completely, or was cut while copying.")
        pos += length
        entries += 1
    return None


def _diagnose_safetensors(path: str, error: Exception) -> str:
    """Why a file does not read as safetensors: truncated (header or data cut short), or another kind of file."""
    import json

    with open(path, "rb") as f:
        data = f.read()
    if not data:
        return f"The checkpoint {path!r} is empty (0 bytes): it was not written completely."
    if len(data) < 8:
        return f"The checkpoint {path!r} is truncated: {len(data)} bytes, less than a safetensors header."
    n = int.from_bytes(data[:8], "little")
    if data[8:9] != b"{" or n > 100_000_000:
        other = _kind_of_bytes(data)
        kind = f"it is {other}" if other and "safetensors" not in other else f"its first bytes are {data[:8]!r}"
        return f"{path!r} is not a safetensors file: {kind} ({error})."
    if 8 + n > len(data):
        return (f"The checkpoint {path!r} is truncated: its header needs {n} bytes after offset 8, the file holds "
                f"{len(data) - 8}.")
    try:
        header = json.loads(data[8:8 + n])
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    except (ValueError, KeyError, TypeError, IndexError):
        return f"The checkpoint {path!r} is damaged: its safetensors header does not parse ({error})."
    if 8 + n + end > len(data):
        return (f"The checkpoint {path!r} is truncated: its entries need {end} bytes of data, the file holds "
                f"{len(data) - 8 - n}; the file was not written completely, or was cut while copying.")
    return f"The checkpoint {path!r} is damaged: {error}."


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
        raise ValueError(_diagnose_safetensors(path, e)) from e
    for name, kind in metadata.items():
        if kind in _REFUSED:  # MindSpore records its packed types in the metadata, the header says int8
            raise ValueError(f"Checkpoint entry {name!r} has MindSpore dtype {kind}, which cannot be read: "
                             f"{_REFUSED[kind]}.")
    try:
        out = {k: np.array(v) for k, v in load_file(path).items()}
    except (KeyError, TypeError):  # a dtype the numpy API lacks (bfloat16, float8): decode the raw bytes
        out = _load_safetensors_raw(path)
    except Exception as e:  # safetensors' own error type: the data do not match the header
        raise ValueError(_diagnose_safetensors(path, e)) from e
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
        FileNotFoundError: no file at ``path`` (``IsADirectoryError``: a directory).
        ValueError: a truncated file (saying where it ends), a damaged one (crc, sizes, unparsable entries),
            another kind of file (naming the kind where recognisable: safetensors, npz, pickle, ...), an encrypted
            ``.ckpt``, a MapParameter, or a dtype with no numpy type (MindSpore's ``Int4`` / ``HiFloat8``), each
            naming the entry.
        ImportError: the ``protobuf`` / ``safetensors`` package is missing.

    Example:
        >>> ckpt = jaxopt_ms.mindspore_checkpoint.load('lenet-1_1875.ckpt')
        >>> ckpt['moment1.conv1.weight'].shape
        (6, 1, 5, 5)
    """
    path = os.fspath(path)
    fmt = _format_of(path, format)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No checkpoint file at {path!r}.")
    if not os.path.isfile(path):
        raise IsADirectoryError(f"The checkpoint path {path!r} is a directory, not a file.")
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
        path: the file to write. An existing file is replaced atomically: the new checkpoint is written to a
            temporary file beside it, flushed to disk and renamed over it, so an interrupted save (an error, a
            full disk, a killed process) leaves the previous file as it was.
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
        _replace_atomically(path, lambda tmp: safetensors.numpy.save_file(little, tmp, metadata={"format": "ms"}))
        return
    _replace_atomically(path, lambda tmp: _write_ckpt(tmp, arrays))


def _write_ckpt(path: str, arrays: dict[str, np.ndarray]) -> None:
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


def _replace_atomically(path: str, write: Callable[[str], None]) -> None:
    """``write(tmp)`` to a temporary file beside ``path``, flushed to disk, then renamed over ``path``.

    ``os.replace`` within one directory is atomic: a reader (or a crash, or a process killed mid-save) sees the
    old file or the new one, never a partial file. The temporary name (``.<name>.<random>.tmp``) is hidden and
    does not end in ``.ckpt`` / ``.safetensors``, so a directory scan for checkpoints never picks it up; it is
    removed if writing fails. The new file gets the old file's permissions (else the umask's default).
    """
    target = os.path.realpath(path)  # a symlink: replace the file it points to, keep the link
    folder, base = os.path.split(target)
    if os.path.exists(target):
        mode = os.stat(target).st_mode & 0o777
    else:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp", dir=folder)
    try:
        os.close(fd)
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable (POSIX)
        dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
