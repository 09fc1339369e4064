# cython: language_level=3
"""Threads, the SIMD path and the facts of the build."""
import numbers

from fastsgd cimport _core
from fastsgd._core import SIMD_PATHS, simd_name

#: the largest thread count set_num_threads accepts
MAX_THREADS = 256

cdef int _threads = 0  # 0: not set explicitly
cdef int _initial_omp = _core.omp_max_threads()


cdef int num_threads() noexcept nogil:
    """The thread count every kernel call passes on (see get_num_threads)."""
    if not _core.openmp_enabled():
        return 1
    if _threads > 0:
        return _threads
    cdef int n = _core.omp_max_threads()
    return n if n > 0 else 1


def get_num_threads():
    """The number of threads the kernels use.

    An explicit :func:`set_num_threads` wins; otherwise the OpenMP runtime's
    setting, which honours ``OMP_NUM_THREADS`` (and threadpoolctl's limits),
    else the number of cores. Always 1 in a build without OpenMP.
    """
    return num_threads()


def set_num_threads(n):
    """Set the number of threads the kernels use (an integer from 1 to
    :data:`MAX_THREADS`).

    Results do not depend on it: every thread count gives bit-identical
    numbers. The setting is also handed to the OpenMP runtime, so
    threadpoolctl reports it.
    """
    global _threads
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"set_num_threads: n must be an integer >= 1, got {n!r}")
    if n < 1 or n > MAX_THREADS:
        raise ValueError(f"set_num_threads: n must be >= 1 and <= {MAX_THREADS}, got {n}")
    _threads = int(n)
    _core.omp_set_threads(_threads)


def _reset_num_threads():
    """Forget an explicit setting (back to the environment's default)."""
    global _threads
    _threads = 0
    _core.omp_set_threads(_initial_omp)


def openmp_enabled():
    """True when the core was built with OpenMP."""
    return bool(_core.openmp_enabled())


def compiler():
    """The compiler that built the C core."""
    return _core.compiler()


def cpu_count():
    """The processors OpenMP sees (1 in a build without OpenMP)."""
    return _core.cpu_count()


def simd_supported():
    """The best SIMD path this CPU runs (``'generic'``, ``'avx2'`` or ``'avx512'``)."""
    return simd_name(_core.simd_supported())


def simd_path():
    """The SIMD path the GEMM engine uses now."""
    return simd_name(_core.simd_get())


def simd_available():
    """Every SIMD path this CPU can run, as names accepted by :func:`set_simd`."""
    best = _core.simd_supported()
    return [name for name, code in SIMD_PATHS.items() if code <= best]


def set_simd(name):
    """Choose the GEMM engine's SIMD path (``'generic'``, ``'avx2'``, ``'avx512'``)."""
    if name not in SIMD_PATHS:
        raise ValueError(f"SIMD path must be one of {sorted(SIMD_PATHS)}, got {name!r}")
    if _core.simd_set(SIMD_PATHS[name]) != 0:
        raise ValueError(f"this CPU cannot run the {name!r} path; available: {simd_available()}")
