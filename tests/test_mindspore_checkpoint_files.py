"""MindSpore checkpoint files (jaxopt_ms.mindspore_checkpoint.formats): errors that say what is wrong with a file
(missing, truncated, damaged, another kind of file) and a ``save`` that never loses the previous checkpoint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from jaxopt_ms import mindspore_checkpoint as msc
from jaxopt_ms.mindspore_checkpoint import formats

pytest.importorskip("safetensors")
pytest.importorskip("google.protobuf")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FOLDER = os.path.join(ROOT, "tests", "fixtures", "checkpoints")


def test_missing_file_is_file_not_found(tmp_path):
    for name in ("missing.ckpt", "missing.safetensors"):
        with pytest.raises(FileNotFoundError, match="No checkpoint file at .*missing"):
            msc.load(tmp_path / name)
    with pytest.raises(FileNotFoundError):
        msc.from_mindspore(__import__("jaxopt_ms").momentum(0.1, 0.9), tmp_path / "missing.ckpt", None)
    (tmp_path / "dir.ckpt").mkdir()
    with pytest.raises(IsADirectoryError, match="directory"):
        msc.load(tmp_path / "dir.ckpt")


@pytest.mark.parametrize("fmt", ["ckpt", "safetensors"])
@pytest.mark.parametrize("keep", [0.3, 0.7, 0.97])
def test_truncated_file_says_truncated(fmt, keep, tmp_path):
    """MindSpore's own file (Momentum, saved by save_checkpoint), cut at 30/70/97%: the error says truncated,
    not encrypted."""
    data = open(os.path.join(FOLDER, f"momentum.{fmt}"), "rb").read()
    path = tmp_path / f"cut.{fmt}"
    path.write_bytes(data[:int(len(data) * keep)])
    with pytest.raises(ValueError, match="truncated") as info:
        msc.load(path)
    assert "encrypt" not in str(info.value)


@pytest.mark.parametrize("fmt", ["ckpt", "safetensors"])
def test_empty_and_garbage_files(fmt, tmp_path):
    path = tmp_path / f"x.{fmt}"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        msc.load(path)
    path.write_bytes(np.random.RandomState(0).bytes(4096))
    with pytest.raises(ValueError, match="not a (MindSpore .ckpt|safetensors) file"):
        msc.load(path)


def test_damaged_ckpt_says_damaged(tmp_path):
    data = bytearray(open(os.path.join(FOLDER, "momentum.ckpt"), "rb").read())
    # the second entry's first byte (the field tag 0x0a) overwritten: the entries after it cannot be read
    length, start = formats._varint(bytes(data), 1)
    second = start + length
    assert data[0] == data[second] == 0x0A
    data[second] = 0xFF
    (tmp_path / "d.ckpt").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="damaged: after 1 readable entries"):
        msc.load(tmp_path / "d.ckpt")


def test_ckpt_cut_between_entries_lists_what_is_missing(tmp_path):
    """A .ckpt has no entry count: cut exactly between two entries it is a valid, shorter checkpoint (only a
    crc_check=True file tells). from_mindspore then names every entry that is gone."""
    import jaxopt_ms

    data = open(os.path.join(FOLDER, "momentum.ckpt"), "rb").read()
    pos = 0
    for _ in range(5):  # keep five entries
        length, start = formats._varint(data, pos + 1)
        pos = start + length
    (tmp_path / "short.ckpt").write_bytes(data[:pos])
    kept = msc.load(tmp_path / "short.ckpt")
    assert len(kept) == 5
    full = msc.load(os.path.join(FOLDER, "momentum.ckpt"))
    gone = [k for k in full if k not in kept and k not in ("learning_rate", "momentum")]
    params_like = {k: v for k, v in full.items() if k.startswith("fc")}
    with pytest.raises(ValueError, match="The checkpoint lacks") as info:
        msc.from_mindspore(jaxopt_ms.momentum(0.1, 0.9, weight_decay=0.01), tmp_path / "short.ckpt", params_like)
    assert all(repr(k) in str(info.value) for k in gone), (gone, str(info.value))


def test_wrong_kind_of_file_is_named(tmp_path):
    # a safetensors file named .ckpt, an .npz named .ckpt, a .ckpt named .safetensors
    st = open(os.path.join(FOLDER, "momentum.safetensors"), "rb").read()
    (tmp_path / "a.ckpt").write_bytes(st)
    with pytest.raises(ValueError, match="it is a safetensors file .*format='safetensors'"):
        msc.load(tmp_path / "a.ckpt")
    np.savez(tmp_path / "b.npz", w=np.zeros(3))
    os.rename(tmp_path / "b.npz", tmp_path / "b.ckpt")
    with pytest.raises(ValueError, match="not a MindSpore .ckpt file: it is a zip archive"):
        msc.load(tmp_path / "b.ckpt")
    ck = open(os.path.join(FOLDER, "momentum.ckpt"), "rb").read()
    (tmp_path / "c.safetensors").write_bytes(ck)
    with pytest.raises(ValueError, match="not a safetensors file"):
        msc.load(tmp_path / "c.safetensors")
    # a .ckpt read as a .ckpt still works when named otherwise and the format is given
    (tmp_path / "c.bin").write_bytes(ck)
    assert set(msc.load(tmp_path / "c.bin", format="ckpt")) == set(msc.load(os.path.join(FOLDER, "momentum.ckpt")))


@pytest.mark.parametrize("fmt", ["ckpt", "safetensors"])
def test_save_replaces_atomically_and_keeps_mode(fmt, tmp_path):
    path = tmp_path / f"a.{fmt}"
    msc.save(path, {"w": np.arange(3, dtype=np.float32)})
    os.chmod(path, 0o440)  # MindSpore leaves its checkpoints read-only
    msc.save(path, {"w": np.arange(4, dtype=np.float32)})
    np.testing.assert_array_equal(msc.load(path)["w"], np.arange(4, dtype=np.float32))
    assert os.stat(path).st_mode & 0o777 == 0o440
    assert os.listdir(tmp_path) == [f"a.{fmt}"]
    # a failing write (a dtype MindSpore cannot hold is found before writing; a writer error after) keeps the file
    with pytest.raises(ValueError):
        msc.save(path, {"w": np.array([object()])})
    np.testing.assert_array_equal(msc.load(path)["w"], np.arange(4, dtype=np.float32))
    assert os.listdir(tmp_path) == [f"a.{fmt}"]


_CHILD = textwrap.dedent("""
    import sys, time
    import numpy as np
    from jaxopt_ms.mindspore_checkpoint import formats

    path, fmt = sys.argv[1], sys.argv[2]
    if fmt == "ckpt":
        real = formats._checkpoint()

        class Slow:  # every message serialised slowly: the file grows while the parent kills the process
            def __init__(self):
                self.message = real()

            def __getattr__(self, name):
                return getattr(self.message, name)

            def SerializeToString(self):
                time.sleep(0.02)
                return self.message.SerializeToString()
        formats._checkpoint = lambda: Slow
        formats._CHUNK_BYTES = 4096
    else:
        import safetensors.numpy
        real_save = safetensors.numpy.save_file

        def save_file(tensors, filename, metadata=None):
            with open(filename, "wb") as f:  # half of the file, then a long pause
                f.write(b"x" * 100000)
                f.flush()
                print("writing", flush=True)
                time.sleep(60)
            real_save(tensors, filename, metadata)
        safetensors.numpy.save_file = save_file
    big = {f"w{i}": np.full(4096, i, np.float32) for i in range(200)}
    print("writing", flush=True)
    formats.save(path, big)
""")


@pytest.mark.parametrize("fmt", ["ckpt", "safetensors"])
def test_killed_save_leaves_the_old_checkpoint(fmt, tmp_path):
    """A process killed (SIGKILL) in the middle of a large save: the old file loads unchanged, and no partial
    file is visible as a checkpoint."""
    path = tmp_path / f"run.{fmt}"
    old = {"w": np.arange(5, dtype=np.float32), "global_step": np.array([7], np.int32)}
    msc.save(path, old)
    before = path.read_bytes()
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(path), fmt], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "writing", child.stderr.read()
        deadline = time.time() + 30
        while time.time() < deadline:  # until the temporary file holds part of the new checkpoint
            partial = [f for f in os.listdir(tmp_path) if f != path.name]
            if partial and os.path.getsize(tmp_path / partial[0]) > 20000:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the child never wrote a temporary file")
        assert partial[0].startswith(f".{path.name}.") and partial[0].endswith(".tmp")
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL
    assert path.read_bytes() == before
    got = msc.load(path)
    np.testing.assert_array_equal(got["w"], old["w"])
    np.testing.assert_array_equal(got["global_step"], old["global_step"])
    visible = [f for f in os.listdir(tmp_path) if not f.startswith(".")]
    assert visible == [path.name]
    assert not [f for f in os.listdir(tmp_path) if f.endswith((".ckpt", ".safetensors")) and f != path.name]
