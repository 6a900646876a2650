"""Library progress for Python callers: a tqdm bar when no callback is given, none otherwise."""

from __future__ import annotations

import numpy as np
import soundfile

from coaudio import progress
from coaudio.features.cache import FeatureConfig, extract


def test_a_bar_counts_and_the_callers_own_progress_turns_it_off():
    bar = progress.bar(3, "files", "file")
    assert bar.total == 3  # drawn only on a terminal (disable=None)
    progress.advance(bar)
    progress.advance(bar, 2, loss="0.1")
    progress.close(bar)
    off = progress.bar(3, "files", "file", enabled=False)
    assert off is None
    progress.advance(off)  # no-ops
    progress.close(off)


def test_extract_works_with_and_without_its_bar(tmp_path):
    soundfile.write(tmp_path / "a.wav", np.zeros(16_000, dtype=np.float32), 16_000)
    seen = []
    first = extract([tmp_path / "a.wav"], tmp_path / "c", FeatureConfig())  # bar (library caller)
    again = extract([tmp_path / "a.wav"], tmp_path / "c", FeatureConfig(), on_done=seen.append)
    assert first.count("extracted") == 1 and again.count("cached") == 1 and len(seen) == 1
