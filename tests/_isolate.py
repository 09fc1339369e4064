"""Run a table of cases in child processes and report how each one ended.

A case table is a module with a dict ``CASES`` (name -> :class:`Case`). The
parent calls :func:`run` with the module's name and the names of the cases
to run; one child process runs them in order and records, for every case,
that it started and how it ended (returned, or raised: the exception's class
names and message) in a file, written case by case, so a crash loses
nothing. When the child dies -- killed by a signal (a segmentation fault, an
abort from a sanitizer) or exiting early -- the case it had started is
reported as a crash with the child's status and the tail of its stderr, and
a fresh child runs the cases after it.

The child is this file run as a script::

    python _isolate.py MODULE RESULTS_FILE NAME...
"""
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import Callable, Optional

HERE = os.path.dirname(os.path.abspath(__file__))


@dataclass
class Case:
    """One call and what it must do.

    ``expect`` is an exception class (the case must raise it, or a subclass,
    with a message matching the regular expression ``match``) or None (the
    call must return normally). ``kind`` classifies the bad input (for the
    counts in the report).
    """

    group: str
    name: str
    fn: Callable[[], object]
    expect: Optional[type]
    match: Optional[str]
    kind: str

    @property
    def key(self):
        return f"{self.group}: {self.name}"


@dataclass
class Outcome:
    """How a case ended in the child."""

    status: str                 # "returned", "raised", "crashed" or "hung"
    exc_types: tuple = ()       # the raised exception's class names along its MRO
    message: str = ""           # its message, or the child's status and stderr for a crash

    def describe(self):
        if self.status == "raised":
            return f"raised {self.exc_types[0]}: {self.message}"
        return f"{self.status} {self.message}".strip()


def _child(module, results, names):
    import faulthandler
    import importlib
    import warnings

    faulthandler.enable()  # a Python traceback on stderr before a fatal signal
    warnings.simplefilter("ignore")
    cases = importlib.import_module(module).CASES
    fd = os.open(results, os.O_WRONLY | os.O_APPEND)

    def record(obj):
        os.write(fd, (json.dumps(obj) + "\n").encode())

    for name in names:
        record({"start": name})
        try:
            cases[name].fn()
        except BaseException as e:  # noqa: B036 -- every way out is reported
            record({"name": name, "status": "raised",
                    "types": [c.__name__ for c in type(e).__mro__], "message": str(e)})
        else:
            record({"name": name, "status": "returned"})
    os.close(fd)


def _signal_name(rc):
    import signal
    try:
        return signal.Signals(-rc).name
    except ValueError:
        return f"signal {-rc}"


def run(module, names, *, timeout=120.0, env=None):
    """Run the cases ``names`` of ``module`` (importable from this folder) in
    child processes; returns ``{name: Outcome}`` for every name."""
    names = list(names)
    out = {}
    while names:
        fd, path = tempfile.mkstemp(prefix="fastsgd-cases-", suffix=".jsonl")
        os.close(fd)
        try:
            cmd = [sys.executable, os.path.join(HERE, "_isolate.py"), module, path, *names]
            try:
                proc = subprocess.run(cmd, cwd=HERE, env=env, capture_output=True, text=True,
                                      timeout=timeout)
                rc, stderr, hung = proc.returncode, proc.stderr, False
            except subprocess.TimeoutExpired as e:
                rc, hung = None, True
                stderr = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else \
                    (e.stderr or "")
            with open(path) as f:
                lines = [json.loads(line) for line in f if line.strip()]
        finally:
            os.unlink(path)
        started = None
        for rec in lines:
            if "start" in rec:
                started = rec["start"]
                continue
            started = None
            out[rec["name"]] = Outcome(rec["status"], tuple(rec.get("types", ())),
                                       rec.get("message", ""))
        if started is None and all(n in out for n in names):
            if rc not in (0, None):  # every case ended, then the child did not exit cleanly
                tail = "\n".join(stderr.strip().splitlines()[-30:])
                out[names[-1]] = Outcome("crashed", (), f"(at exit: status {rc})\n{tail}")
            return out
        culprit = started if started is not None else next(n for n in names if n not in out)
        tail = "\n".join(stderr.strip().splitlines()[-30:])
        if hung:
            out[culprit] = Outcome("hung", (), f"(no result within {timeout:.0f} s)\n{tail}")
        else:
            how = _signal_name(rc) if rc is not None and rc < 0 else f"exit status {rc}"
            out[culprit] = Outcome("crashed", (), f"({how})\n{tail}")
        names = names[names.index(culprit) + 1:]
    return out


if __name__ == "__main__":
    sys.path.insert(0, HERE)
    _child(sys.argv[1], sys.argv[2], sys.argv[3:])
