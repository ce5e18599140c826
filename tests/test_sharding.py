"""Sharded training: the 8-device checks (tests/multidevice/check_sharding.py, run in a subprocess because the
host device count must be set before JAX starts) and a real two-process data-parallel run with
``jax.distributed`` on 127.0.0.1, compared with the single-process run."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MULTI = os.path.join(HERE, "multidevice")
sys.path.insert(0, MULTI)

import dp_model  # noqa: E402


def _env(device_count: int) -> dict:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={device_count}"
    env["PYTHONPATH"] = os.pathsep.join([ROOT, HERE] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["JAX_PLATFORMS"] = "cpu"
    # Compiling for 8 devices dominates these runs; XLA's backend optimizations are not what is tested (the SPMD
    # partitioning is, and it still runs), and skipping them makes the runs ~3x faster on a busy CPU.
    env["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "1"
    return env


def _check_on_eight_host_devices(marker: str) -> None:
    # One process (-n 0): the suite's own workers already fill the cores, and every extra worker would compile
    # the same 8-device programs again.
    cmd = [sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", "-m", marker,
           os.path.join(MULTI, "check_sharding.py")]
    # A guard against a hang, not a speed check: about 30 CPU-seconds, but a busy 2-core machine stretches it.
    result = subprocess.run(cmd, cwd=ROOT, env=_env(8), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout, result.stdout[-3000:]


def test_sharded_state_on_eight_host_devices():
    _check_on_eight_host_devices("not slow")


@pytest.mark.slow
def test_sharded_sweeps_on_eight_host_devices():
    _check_on_eight_host_devices("slow")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _by_name(tree) -> dict:
    return {jax.tree_util.keystr(k): np.asarray(v) for k, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _single_process_reference() -> dict:
    opt = dp_model.optimizer()
    params = dp_model.init_params()
    return _by_name(dp_model.train(params, opt.init(params), opt, zip(*dp_model.data())))


def test_two_processes_data_parallel_equals_single_process(tmp_path):
    out = tmp_path / "final.npz"
    port = _free_port()
    logs = [open(tmp_path / f"worker{i}.log", "w") for i in range(2)]
    procs = [subprocess.Popen([sys.executable, os.path.join(MULTI, "dp_worker.py"), str(port), str(i), str(out)],
                              cwd=ROOT, env=_env(4), stdout=logs[i], stderr=subprocess.STDOUT)
             for i in range(2)]
    deadline = time.monotonic() + 55
    try:
        for p in procs:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        pass
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for f in logs:
            f.close()
    report = "\n".join((tmp_path / f"worker{i}.log").read_text()[-3000:] for i in range(2))
    assert [p.returncode for p in procs] == [0, 0], report
    got = dict(np.load(out))
    expected = _single_process_reference()
    initial = _by_name(dp_model.init_params())
    assert sorted(got) == sorted(expected)
    for name in expected:
        # The batch mean is summed across 8 devices in another order than on one device: last-bit differences.
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, atol=1e-6, err_msg=name)
        assert np.abs(expected[name] - initial[name]).max() > 1e-2, name  # training moved every leaf
