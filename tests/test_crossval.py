"""folds.json survives a refused, failed or interrupted resume, and keeps what it recorded;
the standard deviation over one fold is undefined (null), not 0."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from coaudio import crossval
from coaudio.crossval import FOLDS_FILE, CrossValidation, FoldResult, _write_record, run_cross_validation
from coaudio.data.kfold import Folds
from coaudio.data.tracks import Track
from coaudio.train.run import RunError


def _folds(root: Path) -> Folds:
    parts = [
        [Track(root / label / f"{label}{i}.wav", label, f"{label}/{label}{i}") for label in "ab"]
        for i in range(3)
    ]
    return Folds(root, parts, None, 0)


def _result(fold: int, accuracy: float, out: Path) -> FoldResult:
    document = {"accuracy": accuracy, "split_method": {"method": "fold"}, "checkpoint_epoch": 1}
    return FoldResult(fold, out / f"fold-{fold}", False, {"train": 2, "valid": 2, "test": 2}, document)


@pytest.fixture
def finished(tmp_path):
    """A cross-validation whose folds.json records folds 1 and 2 (0.5 and 0.7)."""
    out = tmp_path / "cv"
    out.mkdir()
    folds = _folds(tmp_path / "data")
    _write_record(out, CrossValidation(folds, [_result(1, 0.5, out), _result(2, 0.7, out)]))
    return out, folds


def _resume(out, folds, monkeypatch, train, results):
    monkeypatch.setattr(crossval, "train_run", train)
    monkeypatch.setattr(crossval, "_fold_result", lambda fold, *_: results(fold))
    return run_cross_validation(None, folds, out, resume=True)


def _trained(*_args, **_kwargs):
    return SimpleNamespace(rank=0, trained=False)


def test_a_refused_resume_leaves_folds_json_as_it_was(finished, monkeypatch):
    out, folds = finished
    before = (out / FOLDS_FILE).read_bytes()

    def refuse(*_args, **_kwargs):
        raise RunError(f"{out}/fold-1 was trained with other settings")

    with pytest.raises(RunError):
        _resume(out, folds, monkeypatch, refuse, None)
    assert (out / FOLDS_FILE).read_bytes() == before


def test_an_interrupted_resume_keeps_the_results_of_folds_it_did_not_reach(finished, monkeypatch):
    out, folds = finished
    before = (out / FOLDS_FILE).read_bytes()

    def stop_at_2(fold):
        if fold == 2:
            raise KeyboardInterrupt
        return _result(1, 0.5, out)  # read back unchanged: nothing to write

    with pytest.raises(KeyboardInterrupt):
        _resume(out, folds, monkeypatch, _trained, stop_at_2)
    assert (out / FOLDS_FILE).read_bytes() == before

    def changed_then_stop(fold):
        if fold == 2:
            raise KeyboardInterrupt
        return _result(1, 0.9, out)  # fold 1 trained on: its new result is recorded

    with pytest.raises(KeyboardInterrupt):
        _resume(out, folds, monkeypatch, _trained, changed_then_stop)
    record = json.loads((out / FOLDS_FILE).read_text())
    assert [(r["fold"], r["test_accuracy"]) for r in record["results"]] == [(1, 0.9), (2, 0.7)]
    assert record["test_accuracy"]["mean"] == pytest.approx(0.8) and record["test_accuracy"]["folds"] == 2


def test_a_new_cross_validation_records_its_folds_first(tmp_path, monkeypatch):
    out = tmp_path / "cv"
    out.mkdir()

    def refuse(*_args, **_kwargs):
        raise RunError("stop")

    monkeypatch.setattr(crossval, "train_run", refuse)
    with pytest.raises(RunError):
        run_cross_validation(None, _folds(tmp_path / "data"), out)
    record = json.loads((out / FOLDS_FILE).read_text())
    assert record["folds"] == 3 and record["results"] == [] and record["test_accuracy"] is None


def test_the_std_of_one_fold_is_undefined(tmp_path):
    folds = _folds(tmp_path / "data")
    one = CrossValidation(folds, [_result(1, 0.5, tmp_path)])
    assert one.std is None and one.mean == 0.5
    _write_record(tmp_path, one)
    assert json.loads((tmp_path / FOLDS_FILE).read_text())["test_accuracy"] == {
        "mean": 0.5,
        "std": None,
        "folds": 1,
    }
    two = CrossValidation(folds, [_result(1, 0.5, tmp_path), _result(2, 0.7, tmp_path)])
    assert two.std == pytest.approx(0.1414, abs=1e-4)
