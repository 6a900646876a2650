"""Messages say what they mean in words: a count and its pronoun agree, a front end is described,
not printed as a Python repr, and a warning starts with ``warning:``."""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys

import pytest
import soundfile
import torch

from coaudio.continual import EncoderConfig, LayerConfig
from coaudio.models.checkpoint import save_checkpoint
from coaudio.models.classifier import AudioClassifier, ModelConfig
from coaudio.serve.history import History
from tests.online.helpers import LABELS, tone_mix


@pytest.mark.parametrize("left_open,words", [(1, "1 stream session that"), (2, "2 stream sessions that")])
def test_closing_sessions_a_server_left_open_says_it_or_them(tmp_path, caplog, left_open, words):
    path = tmp_path / "h.sqlite"
    with History(path) as history:
        for k in range(left_open):
            history.open_stream(f"s{k}", "websocket", "x", 16_000, 1, "m")
    conn = sqlite3.connect(path)
    with conn:  # written by a coaudio before sessions named their writer: its writer is gone
        conn.execute("UPDATE sessions SET writer = NULL")
    conn.close()
    with caplog.at_level(logging.WARNING, logger="coaudio.serve"):
        History(path).close()
    (message,) = [r.getMessage() for r in caplog.records if "left open" in r.getMessage()]
    pronoun = "it" if left_open == 1 else "them"
    assert message == (
        f"closed {words} a server left open when it stopped without ending {pronoun} (marked ended_by=crash)"
    )


def test_an_old_checkpoint_names_the_front_end_it_assumes_in_words(tmp_path):
    layer = LayerConfig(d_model=32, n_heads=4, d_ff=64, dropout=0.0)
    config = ModelConfig(
        n_classes=len(LABELS), token_dim=32, embedder_width=4, encoder=EncoderConfig(layer=layer, window=6)
    )
    torch.manual_seed(0)
    old = tmp_path / "old.safetensors"  # no front end in it and no config.json beside it
    save_checkpoint(old, AudioClassifier(config).eval(), LABELS, {"epoch": 1})
    soundfile.write(tmp_path / "a.wav", tone_mix(2.0, 16_000), 16_000)
    done = subprocess.run(
        [sys.executable, "-m", "coaudio", "classify", old, tmp_path / "a.wav", "--jobs", "1", "-q",
         "--format", "csv", "--journal", tmp_path / "j"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning: ")]
    assert warnings == [
        f"warning: {old} has no front-end settings and no run config beside it; assuming the learned "
        "front end with 25-frame hops (0.25 s) and 96-frame patches"
    ], done.stderr
