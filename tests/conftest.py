import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# The default run uses two workers (pyproject addopts). A long test that starts last keeps one worker busy while
# the other idles; these start first, longest first (xdist hands tests out in collection order, alternately), so
# the short ones fill in around them. Measured on 2 cores; the order changes no result.
LONG_FIRST = (
    "tests/test_sharding.py::test_sharded_state_on_eight_host_devices",
    "tests/test_notebooks.py::test_notebook_runs_and_prints_what_is_stored[thor]",
    "tests/test_benchmarks.py",
    "tests/test_notebooks.py::test_notebook_runs_and_prints_what_is_stored[optimizer_zoo]",
    "tests/test_sharding.py::test_two_processes_data_parallel_equals_single_process",
    "tests/test_packaging.py::test_type_checker",
    "tests/test_notebooks.py::test_notebook_runs_and_prints_what_is_stored",
    "tests/test_thor.py::test_flax_model_statistics_and_training",
)


def _rank(nodeid: str) -> int:
    return next((i for i, prefix in enumerate(LONG_FIRST) if nodeid.startswith(prefix)), len(LONG_FIRST))


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: _rank(item.nodeid))  # stable: the rest keeps its order
