"""The build and run-time configuration (fastsgd.config, fastsgd.show_config)."""
import numpy as np

from ._config import compiler, cpu_count, get_num_threads, openmp_enabled, simd_path, simd_supported
from ._fork import status as _fork_status
from ._version import __version__


def config():
    """The build and run-time configuration, as a dict.

    ``forked_child`` is True in a process made by ``fork`` after fastsgd was
    imported, and ``threads_reason`` says where ``threads`` comes from (in a
    forked child: whether it was set to 1 because GNU libgomp is not
    fork-safe; see :mod:`fastsgd._fork`).
    """
    return {
        "version": __version__,
        "compiler": compiler(),
        "openmp": openmp_enabled(),
        "simd": simd_path(),
        "simd_supported": simd_supported(),
        "threads": get_num_threads(),
        "cpu_count": cpu_count(),
        "numpy": np.__version__,
        **_fork_status(),
    }


def show_config():
    """Print :func:`config` (version, compiler, OpenMP, SIMD path, threads)."""
    for k, v in config().items():
        print(f"{k:>15}: {v}")
