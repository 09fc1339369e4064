"""Every public function and kernel refuses bad input with the documented
exception, naming the argument, and nothing crashes the interpreter.

The table is ``tests/_bad_cases.py``; each family of cases runs in one child
process (``tests/_isolate.py``), so a case that kills its process (a
segmentation fault, a sanitizer's abort) fails alone, with the signal and
the child's stderr in its report.
"""
import re

import pytest

import _bad_cases
import _isolate

_results = {}


def _outcome(case):
    fam = _bad_cases.family(case)
    if fam not in _results:
        names = [k for k, c in _bad_cases.CASES.items() if _bad_cases.family(c) == fam]
        _results[fam] = _isolate.run("_bad_cases", names, timeout=300)
    return _results[fam][case.key]


def _names(expect):
    if expect is None:
        return ()
    return tuple(e.__name__ for e in (expect if isinstance(expect, tuple) else (expect,)))


@pytest.mark.parametrize("key", sorted(_bad_cases.CASES, key=lambda k: (
    _bad_cases.FAMILIES.index(_bad_cases.family(_bad_cases.CASES[k])), k)))
def test_bad_input(key):
    case = _bad_cases.CASES[key]
    got = _outcome(case)
    if got.status in ("crashed", "hung"):
        pytest.fail(f"{key}: the child process {got.status}: {got.message}")
    if case.expect is None:
        assert got.status == "returned", f"{key}: expected to return, {got.describe()}"
        return
    want = _names(case.expect)
    assert got.status == "raised", f"{key}: expected {'/'.join(want)}, but it returned"
    assert any(w in got.exc_types for w in want), \
        f"{key}: expected {'/'.join(want)}, {got.describe()}"
    assert re.search(case.match, got.message), \
        f"{key}: the message does not match {case.match!r}: {got.message!r}"


def test_the_table_covers_every_kernel_and_class():
    groups = {c.group for c in _bad_cases.CASES.values()}
    from fastsgd import kernels
    for name in kernels.__all__:
        assert f"kernels.{name}" in groups, name
    for group in ("set_num_threads", "Dense", "Rescaling", "Dropout", "BatchNormalization",
                  "Sequential", "Sequential.predict", "Huber",
                  "Sequential.set_weights", "Trainer", "Trainer.fit", "Trainer.partial_fit",
                  "Trainer.evaluate", "Trainer.gradients", "SGD", "Adagrad", "RMSprop", "Adam",
                  "AdamW", "Optimizer.step", "read_idx"):
        assert group in groups, group
    kinds = {c.kind for c in _bad_cases.CASES.values()}
    assert {"dtype", "layout", "readonly", "alias", "shape", "empty", "labels", "value", "type",
            "source", "range"} <= kinds


def test_a_crash_is_reported_as_a_crash_of_its_case():
    """The runner itself: a case that kills its process is reported with the
    signal, and the cases after it still run."""
    out = _isolate.run("_isolate_selftest", ["before", "segfault", "after", "raises"])
    assert out["before"].status == "returned"
    assert out["segfault"].status == "crashed" and "SEGV" in out["segfault"].message
    assert out["after"].status == "returned"
    assert out["raises"].status == "raised" and out["raises"].exc_types[0] == "KeyError"
