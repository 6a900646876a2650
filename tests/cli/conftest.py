"""Shared by the command-line tests: the ``coaudio`` command line run in this process."""

from __future__ import annotations

from typing import NamedTuple

import pytest


class Ran(NamedTuple):
    status: int
    out: str
    err: str


@pytest.fixture
def cli(capsys):
    """``cli("bench", "encoder", ...)`` runs the command line through ``coaudio_cli.main.run``,
    the entry point of the ``coaudio`` script minus the interpreter start-up (and its torch
    import, seconds per call): the exit status, stdout and stderr.

    For argument checks and cache logic; what is about the process itself (exit status of a real
    process, stdout kept clean of everything but the output, worker processes, signals) runs in
    a real subprocess."""
    from coaudio_cli.main import run

    def invoke(*args) -> Ran:
        capsys.readouterr()  # only this command's output
        status = run([str(a) for a in args])
        captured = capsys.readouterr()
        return Ran(status, captured.out, captured.err)

    return invoke
