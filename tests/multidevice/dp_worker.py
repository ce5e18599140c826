"""One of the two processes of the data-parallel test in tests/test_sharding.py.

Usage: dp_worker.py PORT PROCESS_ID OUT.npz. Each process has 4 CPU devices; together they form a mesh of 8
devices over the 'data' axis. Parameters are replicated, each process feeds its half of every batch, and the
optimizer state is split ZeRO-1 style over all 8 devices (across both processes).
"""

import os
import sys

os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import dp_model  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

from jaxopt_ms.sharding import sharded_init, state_shardings  # noqa: E402


def main(port: str, process_id: str, out: str) -> None:
    jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=int(process_id),
                               initialization_timeout=40)
    assert jax.device_count() == 8 and jax.local_device_count() == 4
    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    replicated = NamedSharding(mesh, P())
    batch_sharding = NamedSharding(mesh, P("data"))
    opt = dp_model.optimizer()
    params = jax.device_put(dp_model.init_params(), replicated)
    state = sharded_init(opt, params, zero1_axis="data")
    param_sh = jax.tree.map(lambda _: replicated, params)
    state_sh = state_shardings(opt, params, zero1_axis="data")
    moment = jax.tree.leaves(state)[-1]
    assert len(moment.addressable_shards) == 4 and not moment.is_fully_addressable

    xs, ys = dp_model.data()
    half = dp_model.BATCH // 2
    mine = slice(int(process_id) * half, (int(process_id) + 1) * half)  # this process's examples

    def batches():
        for x, y in zip(xs, ys):
            yield (jax.make_array_from_process_local_data(batch_sharding, x[mine], x.shape),
                   jax.make_array_from_process_local_data(batch_sharding, y[mine], y.shape))

    final = dp_model.train(params, state, opt, batches(),
                           step_fn=lambda f: jax.jit(f, out_shardings=(param_sh, state_sh)))
    if int(process_id) == 0:
        flat = {jax.tree_util.keystr(k): np.asarray(v.addressable_data(0))
                for k, v in jax.tree_util.tree_flatten_with_path(final)[0]}
        np.savez(out, **flat)
    jax.distributed.shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:])
