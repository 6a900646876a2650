import atexit
import os
import shutil
import signal
import tempfile
from typing import NamedTuple

import pytest
import torch

# A fresh kernel cache per test session: the fused C kernel is really compiled in every run
# (CI included), and tests never touch the user's ~/.cache/coaudio.
if "COAUDIO_CACHE" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="coaudio-test-cache-")
    os.environ["COAUDIO_CACHE"] = _cache
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)

# Pinned threads: per-hop tests must not stall on thread hand-offs when the machine is busy,
# and CLI subprocesses inherit the setting (coaudio.threads honours OMP_NUM_THREADS).
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


# The Ctrl-C tests send SIGINT to real child processes, which inherit this process's disposition:
# a shell starts a background job (`... &`, nohup) with SIGINT ignored, and then no child would
# ever see the signal. The tests need the terminal's default, whoever started them.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


class Ran(NamedTuple):
    status: int
    out: str
    err: str


@pytest.fixture
def cli(capsys):
    """``cli("bench", "encoder", ...)`` runs the command line through ``coaudio_cli.main.run``,
    the entry point of the ``coaudio`` script minus the interpreter start-up (and its torch
    import, seconds per call): the exit status, stdout and stderr.

    For argument checks, cache logic and output formats; what is about the process itself (exit
    status of a real process, stdout kept clean of everything but the output, worker processes,
    signals, stdin pipes) runs in a real subprocess."""
    from coaudio_cli.main import run

    def invoke(*args) -> Ran:
        capsys.readouterr()  # only this command's output
        status = run([str(a) for a in args])
        captured = capsys.readouterr()
        return Ran(status, captured.out, captured.err)

    return invoke
