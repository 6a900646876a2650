"""``coaudio evaluate``: --split with a checkpoint and --data is a usage error; --compare-clips 0
claims no comparison."""

from __future__ import annotations

import soundfile

from coaudio.features.frontend import FrontendConfig
from coaudio.models.checkpoint import load_checkpoint
from coaudio.online.evaluation import streaming_report
from coaudio_cli.main import run
from tests.online.helpers import make_checkpoint, tone_mix


def test_split_with_a_checkpoint_and_data_is_a_usage_error(tmp_path, capsys):
    checkpoint = tmp_path / "best.safetensors"
    checkpoint.write_bytes(b"")  # refused before it is read
    (tmp_path / "data").mkdir()
    status = run(["evaluate", str(checkpoint), "--data", str(tmp_path / "data"), "--split", "valid"])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert status == 2 and len(lines) == 1 and lines[0].startswith("error: "), lines
    assert "--split: 'valid'" in lines[0] and "has no splits" in lines[0]


def test_no_compared_clips_report_no_comparison(tmp_path, capsys, monkeypatch):
    model, labels, _ = load_checkpoint(make_checkpoint(tmp_path / "m.safetensors"))
    audio = tmp_path / "a.wav"
    soundfile.write(audio, tone_mix(1.5, 16000)[:, 0], 16000)
    report = streaming_report(model, [str(audio)], [0], FrontendConfig(hop_frames=20), compare_clips=0)
    assert report.compared_hops == 0 and report.max_logit_diff is None and report.regular_us is None
    assert report.curve and report.continual_us > 0

    import coaudio.runs
    from coaudio_cli.console import out_console
    from coaudio_cli.evaluate import _streaming

    monkeypatch.setattr(coaudio.runs, "evaluate_streaming", lambda done, clips: report)
    done = type("Done", (), {"source": type("Source", (), {"tag": "test", "split": {"description": "x"}})()})
    _streaming(done, 0, out_console(), out_console())
    text = " ".join(capsys.readouterr().out.split())
    assert (
        "not compared (--compare-clips 0)" in text and "==" not in text and "regular (1 thread)" not in text
    )
