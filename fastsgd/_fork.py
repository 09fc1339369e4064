"""Keep a forked child process from hanging in its first OpenMP parallel region.

GNU libgomp is not fork-safe: once a thread has run a parallel region, the
runtime keeps a pool of idle worker threads for it, and a child forked from
that process inherits the bookkeeping of the pool but not its threads, so
the child's first parallel region with more than one thread waits forever.
A team of one thread never touches the pool, so a child that runs the
kernels serially is safe.

The runtime gives no way to ask whether a pool exists, so this module
watches the operating system's threads (``/proc/self/task``) instead:
libgomp's workers are threads that Python does not know about and that stay
alive once started. At every fork, the child runs serially
(``set_num_threads(1)``) when fastsgd's OpenMP runtime is libgomp and the
parent *may* have had a pool, that is when any of these held at the fork:

* the parent had an OS thread that is not a Python thread and did not
  exist when fastsgd was imported (NumPy's BLAS threads, started before,
  do not count; a BLAS that restarts its threads after a fork makes the
  rule err on the safe side);
* the copy of libgomp that fastsgd's kernels use was already loaded, by
  another library, before fastsgd was imported (its pool could predate the
  list of threads we keep; other copies, such as the one scikit-learn's
  wheels bundle, have pools of their own and do not matter);
* the parent was itself a child that had to run serially (it inherited a
  stale pool, and so do its children);
* the threads cannot be listed (no ``/proc``).

Otherwise the child keeps the parent's setting. With LLVM's or Intel's
OpenMP runtimes (fork-safe) or a serial build nothing changes.
``fastsgd.config()`` reports ``forked_child`` and ``threads_reason``.
"""
import os
import threading

_TASKS = "/proc/self/task"
_MAPS = "/proc/self/maps"


def _os_threads():
    """The ids of this process's OS threads, or None when they cannot be listed."""
    try:
        return {int(t) for t in os.listdir(_TASKS)}
    except (OSError, ValueError):
        return None


def _python_threads():
    ids = set()
    for t in threading.enumerate():
        nid = getattr(t, "native_id", None)
        if nid is not None:
            ids.add(nid)
    return ids


def _foreign_threads():
    """OS threads that are not Python threads, or None when unknown."""
    tids = _os_threads()
    if tids is None:
        return None
    return tids - _python_threads()


def _mapped_gomp():
    """Paths of the libgomp copies mapped into this process (None if unknown)."""
    try:
        with open(_MAPS) as f:
            return {os.path.realpath(line.split(None, 5)[5].strip()) for line in f
                    if "libgomp" in line and len(line.split(None, 5)) == 6}
    except OSError:
        return None


_state = {
    "gomp_before": None,      # libgomp copies mapped before fastsgd's kernels were loaded
    "gomp_preloaded": False,  # fastsgd's libgomp was one of them
    "libgomp": False,         # fastsgd's kernels use GNU libgomp
    "baseline": None,         # foreign OS threads at import (or at the start of a child)
    "at_fork": None,          # foreign OS threads seen by the last fork's before-hook
    "stale_pool": False,      # this process inherited libgomp state from a parent with a pool
    "forked_child": False,
    "serial_applied": False,  # set_num_threads(1) was applied after the fork
}


def note_before_kernels():
    """Record which libgomp copies were mapped before fastsgd's kernels loaded."""
    _state["gomp_before"] = _mapped_gomp()


def _omp_library(path):
    """Real path of the OpenMP runtime that the compiled module at ``path``
    calls (``dlsym`` through its dependencies, then ``dladdr``), or None."""
    try:
        import ctypes

        class _DlInfo(ctypes.Structure):
            _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                        ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]

        addr = ctypes.cast(ctypes.CDLL(path).omp_get_max_threads, ctypes.c_void_p).value
        info = _DlInfo()
        if not ctypes.CDLL(None).dladdr(ctypes.c_void_p(addr), ctypes.byref(info)):
            return None
        return os.path.realpath(os.fsdecode(info.dli_fname)) if info.dli_fname else None
    except (OSError, AttributeError, ValueError, TypeError):
        return None


def install(kernels):
    """Called once fastsgd's kernels are loaded: find their OpenMP runtime,
    take the thread baseline and register the fork hooks."""
    _state["kernels"] = kernels
    before = _state["gomp_before"]
    if not kernels.openmp_enabled():
        _state["libgomp"] = False
    else:
        runtime = _omp_library(kernels.__file__)
        if runtime is not None:
            _state["libgomp"] = "libgomp" in os.path.basename(runtime)
            _state["gomp_preloaded"] = before is None or runtime in before
        else:
            # cannot tell which runtime: assume libgomp, preloaded unless the
            # kernels brought a copy of their own
            after = _mapped_gomp()
            _state["libgomp"] = True
            _state["gomp_preloaded"] = not (after and before is not None and after - before)
    _state["baseline"] = _foreign_threads()
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)


def _may_have_pool():
    """Why a child forked now might inherit a libgomp pool (a string), or None."""
    if not _state["libgomp"]:
        return None
    if _state["stale_pool"]:
        return "this process was itself forked from a process with OpenMP worker threads"
    if _state["gomp_preloaded"]:
        return "libgomp was loaded before fastsgd, so its worker threads cannot be told apart"
    now = _state["at_fork"]
    base = _state["baseline"]
    if now is None or base is None:
        return "the process's threads cannot be listed"
    if now - base:
        return "the parent had started threads outside Python (OpenMP workers, probably)"
    return None


def _before_fork():
    try:
        _state["at_fork"] = _foreign_threads()
    except Exception:  # never let a fork fail because of this bookkeeping
        _state["at_fork"] = None


def _after_fork_in_child():
    try:
        why = _may_have_pool()
        _state["forked_child"] = True
        _state["why"] = why
        if why is not None:
            _state["stale_pool"] = True
            _state["serial_applied"] = True
            _state["kernels"].set_num_threads(1)
        # the child starts with only the forking thread: a new baseline
        _state["baseline"] = _foreign_threads()
        _state["at_fork"] = None
    except Exception:
        pass


def thread_cap():
    """1 in a process where more than one OpenMP thread may hang, else None."""
    return 1 if _state["stale_pool"] else None


def status():
    """``forked_child`` and ``threads_reason`` for :func:`fastsgd.config`."""
    kernels = _state.get("kernels")
    n = kernels.get_num_threads() if kernels is not None else None
    if not _state["forked_child"]:
        reason = ("set_num_threads(), else OMP_NUM_THREADS (or a threadpoolctl limit), "
                  "else the number of cores")
    elif _state["serial_applied"]:
        why = _state.get("why") or "the parent may have had OpenMP worker threads"
        if n == 1:
            reason = (f"forked child: serial because {why}; GNU libgomp is not fork-safe, "
                      "so more than one thread could hang")
        else:
            reason = (f"forked child: set to {n} after the fork although {why}; "
                      "more than one thread can hang with GNU libgomp")
    else:
        reason = ("forked child: the parent had no OpenMP worker threads at the fork, "
                  "so the parent's setting is kept")
    return {"forked_child": _state["forked_child"], "threads_reason": reason}
