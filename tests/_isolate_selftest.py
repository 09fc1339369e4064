"""Cases for the test of the case runner itself (one of them crashes on purpose)."""
import ctypes

from _isolate import Case


def _segfault():
    ctypes.string_at(0)  # reads address 0: SIGSEGV


def _raise():
    raise KeyError("k")


CASES = {
    "before": Case("selftest", "before", lambda: None, None, None, "valid"),
    "segfault": Case("selftest", "segfault", _segfault, None, None, "crash"),
    "after": Case("selftest", "after", lambda: None, None, None, "valid"),
    "raises": Case("selftest", "raises", _raise, KeyError, "k", "value"),
}
