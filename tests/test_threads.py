"""The thread policy: per-hop work on one thread, batch work never above the idle cores."""

from __future__ import annotations

import subprocess
import sys

import torch

from coaudio import threads


def test_explicit_counts_win_and_omp_num_threads_is_honoured(monkeypatch):
    assert threads.batch_threads(3) == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert threads.batch_threads() == 2
    monkeypatch.delenv("OMP_NUM_THREADS")
    cores = threads.usable_cores()
    assert threads.batch_threads(measure=False) == cores
    assert threads.batch_threads(processes=cores * 2, measure=False) == 1  # never below one
    assert 1 <= threads.batch_threads() <= cores


def test_busy_cores_sees_a_process_that_spins():
    spinner = subprocess.Popen(
        [sys.executable, "-c", "import time\nend = time.time() + 30\nwhile time.time() < end: pass"]
    )
    try:
        busy = threads.busy_cores(sample_s=0.5)
    finally:
        spinner.kill()
        spinner.wait()
    assert busy >= 0.5  # one spinning process keeps (most of) a core busy


def test_batch_threads_leave_the_busy_cores_alone(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "busy_cores", lambda sample_s=0.2: float(threads.usable_cores()))
    assert threads.batch_threads() == 1  # every core busy: one thread, not the default of all cores


def test_per_hop_and_torch_threads_restore_the_previous_count():
    before = torch.get_num_threads()
    with threads.torch_threads(2):
        assert torch.get_num_threads() == 2
        with threads.per_hop():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
    assert torch.get_num_threads() == before
