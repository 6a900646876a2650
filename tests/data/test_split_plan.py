"""Honest splits: recordings never straddle splits, labels are spread evenly, and every way of
giving a split (CSV, folders, --group, folds) fails with a message that says what to fix."""

from __future__ import annotations

import random
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile

from coaudio.data.grouping import group_folds, group_tracks, grouped_split
from coaudio.data.kfold import Folds, plan_folds
from coaudio.data.split_plan import (
    SplitError,
    SplitMethod,
    SplitOptions,
    SplitUsageError,
    check_options,
    plan_split,
)
from coaudio.data.tracks import DatasetError, Track

SPLITS = ("train", "valid", "test")


def _wav(path: Path) -> Path:
    """A tiny real WAV file (splitting never decodes it, but it is what a user would have)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, np.zeros(160, dtype=np.float32), 16_000)
    return path


def _recordings(root: Path, labels: dict[str, int], clips: int = 3) -> Path:
    """``root/<label>/rec<NN>_clip<M>.wav``: ``labels[label]`` recordings of ``clips`` clips."""
    for label, count in labels.items():
        for rec in range(count):
            for clip in range(clips):
                _wav(root / label / f"rec{rec:02d}_clip{clip}.wav")
    return root


def _synthetic_tracks(seed: int, root: Path) -> list[Track]:
    """Tracks (no files needed for grouping) with random labels and recording lengths."""
    rng = random.Random(seed)
    tracks = []
    for rec in range(rng.randint(12, 40)):
        label = rng.choice("abcd")
        for clip in range(rng.randint(1, 6)):
            path = root / label / f"r{rec}_c{clip}.wav"
            tracks.append(Track(path, label, f"{label}/r{rec}_c{clip}"))
    tracks += [Track(root / "a" / f"loose{i}.wav", "a", f"a/loose{i}") for i in range(rng.randint(0, 5))]
    return tracks


GROUP = re.compile(r"(r\d+)_c\d+")


def _recording(track: Track) -> str:
    found = GROUP.search(track.path.name)
    return found.group(1) if found else track.track_id


@pytest.mark.parametrize("seed", range(12))
def test_a_recording_never_lands_in_two_splits(seed, tmp_path):
    tracks = _synthetic_tracks(seed, tmp_path)
    groups = group_tracks(tracks, tmp_path, GROUP)
    splits = grouped_split(groups, seed)
    where: dict[str, set[str]] = {}
    for name, part in splits.items():
        for t in part:
            where.setdefault(_recording(t), set()).add(name)
    assert all(len(names) == 1 for names in where.values())
    assert sorted(t.track_id for part in splits.values() for t in part) == sorted(t.track_id for t in tracks)
    assert all(splits[name] for name in SPLITS)
    for k in (2, 3, 5):
        parts = group_folds(groups, k, seed)
        seen = [{_recording(t) for t in part} for part in parts]
        assert sum(map(len, seen)) == len(set().union(*seen))  # each recording in one fold
        assert sum(map(len, parts)) == len(tracks)
        folds = Folds(tmp_path, parts, GROUP.pattern, seed)
        for fold in range(1, k + 1):
            split = folds.split(fold).splits
            assert [t.track_id for t in split["test"]] == [t.track_id for t in parts[fold - 1]]
            recs = [{_recording(t) for t in split[name]} for name in SPLITS]
            assert not (recs[0] & recs[1]) and not (recs[0] & recs[2]) and not (recs[1] & recs[2])
            assert (
                sum(len(split[name]) for name in SPLITS) == len(tracks) and split["train"] and split["valid"]
            )


@pytest.mark.parametrize("seed", range(5))
def test_splits_and_folds_are_stratified_by_label(seed, tmp_path):
    # 4 labels x 20 recordings of 2 clips: 80/10/10 of every label's recordings, within one
    tracks = [
        Track(tmp_path / label / f"r{rec}_c{clip}.wav", label, f"{label}/r{rec}_c{clip}")
        for label in "abcd"
        for rec in range(20)
        for clip in range(2)
    ]
    groups = group_tracks(tracks, tmp_path, GROUP)
    splits = grouped_split(groups, seed)
    for name, share in zip(SPLITS, (16, 2, 2)):
        per_label = Counter(t.label for t in splits[name])  # files: 2 per recording
        assert all(abs(per_label[label] / 2 - share) <= 1 for label in "abcd"), (name, per_label)
    for part in group_folds(groups, 4, seed):
        assert Counter(t.label for t in part) == {label: 10 for label in "abcd"}
    assert grouped_split(groups, seed) == splits  # seeded
    assert grouped_split(groups, seed + 100) != splits


def test_group_regex_notes_and_errors(tmp_path):
    root = _recordings(tmp_path / "data", {"dog": 3, "cat": 3})
    _wav(root / "dog" / "odd.wav")
    split = plan_split(root, SplitOptions(group=r"(rec\d+)_clip"), seed=0)
    assert split.method == SplitMethod("group", seed=0, regex=r"(rec\d+)_clip")
    assert any("1 of 19 files do not match" in note for note in split.notes)
    assert split.headline.startswith("split: 80/10/10 by recording (--group '(rec\\d+)_clip')")
    # the regex is searched in the path relative to the folder, so it may use the label folder
    by_folder = plan_split(root, SplitOptions(group=r"^([^/]+/rec\d+)"), seed=0)
    assert len({t.label for t in by_folder.splits["train"]}) == 2
    across = plan_split(root, SplitOptions(group=r"(rec\d+)"), seed=0)  # rec00 of dog and cat: one
    assert "note: 3 recording(s) hold files of more than one label" in " ".join(across.notes)
    with pytest.raises(DatasetError, match="matches none of the 19"):
        plan_split(root, SplitOptions(group=r"(nothing)"), seed=0)
    with pytest.raises(SplitUsageError, match="no capture group"):
        check_options(SplitOptions(group=r"rec\d+"), root)
    with pytest.raises(SplitUsageError, match="not a valid regular expression"):
        check_options(SplitOptions(group=r"(rec"), root)
    with pytest.raises(DatasetError, match="at least 3"):
        plan_split(_recordings(tmp_path / "few", {"a": 1, "b": 1}), SplitOptions(group=r"(rec\d+)"), seed=0)


def test_the_random_fallback_says_it_may_leak(tmp_path):
    root = _recordings(tmp_path / "data", {"dog": 4, "cat": 4})
    split = plan_split(root, SplitOptions(), seed=3)
    assert split.method == SplitMethod("random", seed=3)
    assert split.headline == (
        "warning: split: random 80/10/10 by file, seed 3; clips of one recording may straddle train and "
        "test: use --splits, --group or train/valid/test folders"
    )


def _csv(path: Path, *rows: str) -> Path:
    path.write_text("\n".join(rows) + "\n")
    return path


def test_a_csv_gives_the_split(tmp_path):
    root = _recordings(tmp_path / "data", {"dog": 2, "cat": 2}, clips=2)
    (tmp_path / "lists").mkdir()
    csv = _csv(
        tmp_path / "lists" / "splits.csv",
        "path,split",
        "dog/rec00_clip0.wav,train",
        f"{root / 'dog' / 'rec00_clip1.wav'},train",  # absolute
        "../data/cat/rec00_clip0.wav,train",  # relative to the CSV's folder
        "",
        "cat/rec01_clip0.wav, Valid ",
        "dog/rec01_clip0.wav,test",
    )
    split = plan_split(root, SplitOptions(csv=csv), seed=0)
    assert {k: len(v) for k, v in split.splits.items()} == {"train": 3, "valid": 1, "test": 1}
    assert split.method == SplitMethod("file", csv=str(csv))
    assert split.notes == [
        f"warning: {csv} puts no files of dog in the valid split: their accuracy is not measured on the "
        "valid split",
        f"warning: {csv} puts no files of cat in the test split: their accuracy is not measured on the "
        "test split",
        f"note: 3 of the 8 files under {root} are not in {csv}: left out",
    ]
    assert split.headline == f"split: from the file {csv}"


@pytest.mark.parametrize(
    "rows,expected",
    [
        (["path,split", "dog/nope.wav,train"], "line 2: dog/nope.wav: no such file"),
        (["path,split", "dog/rec00_clip0.wav,training"], "line 2: unknown split 'training'"),
        (["file,set", "dog/rec00_clip0.wav,train"], "the first line must be the header path,split"),
        ([""], "the first line must be the header path,split (found 'an empty file')"),
        (
            ["path,split", "dog/rec00_clip0.wav,train", "cat/rec00_clip0.wav,test"],
            "no files for the valid split",
        ),
        (
            ["path,split", "dog/rec00_clip0.wav,train", "dog/rec00_clip0.wav,test"],
            "listed twice (also on line 2)",
        ),
        (["path,split", "../outside.wav,train"], "is not an audio file in a label folder of"),
        (["path,split", "dog/rec00_clip0.wav"], "line 2: 1 column(s), the header has 2"),
    ],
)
def test_csv_problems_are_named(tmp_path, rows, expected):
    root = _recordings(tmp_path / "data", {"dog": 1, "cat": 1}, clips=1)
    _wav(tmp_path / "outside.wav")
    with pytest.raises(SplitError) as caught:
        plan_split(root, SplitOptions(csv=_csv(tmp_path / "s.csv", *rows)), seed=0)
    assert expected in str(caught.value) and "\n" not in str(caught.value)


def test_train_valid_test_folders_are_the_split(tmp_path):
    root = tmp_path / "data"
    for name, labels in {
        "train": ("dog", "cat", "owl"),
        "valid": ("dog", "cat"),
        "test": ("dog", "cat", "owl"),
    }.items():
        for label in labels:
            _wav(root / name / label / "a.wav")
    split = plan_split(root, SplitOptions(), seed=0)
    assert split.method == SplitMethod("folders") and split.headline == "split: the train/valid/test folders"
    assert {k: len(v) for k, v in split.splits.items()} == {"train": 3, "valid": 2, "test": 3}
    assert len({t.track_id for part in split.splits.values() for t in part}) == 8  # ids differ per split
    assert {t.label for t in split.splits["test"]} == {"dog", "cat", "owl"}
    assert split.notes == [
        f"warning: {root / 'valid'} has no files for owl: their accuracy is not measured on the valid split"
    ]
    with pytest.raises(SplitUsageError, match="train/valid/test folders, which fix the split; --folds"):
        check_options(SplitOptions(folds=2), root)
    with pytest.raises(SplitUsageError, match="--group"):
        check_options(SplitOptions(group="(a)"), root)
    _wav(root / "test" / "bat" / "a.wav")
    with pytest.raises(SplitError, match=r"label folder\(s\) bat are not in"):
        plan_split(root, SplitOptions(), seed=0)


def test_folder_layout_problems(tmp_path):
    root = tmp_path / "data"
    for label in ("dog", "cat"):
        _wav(root / "train" / label / "a.wav")
        _wav(root / "test" / label / "a.wav")
    with pytest.raises(SplitError, match="no valid/ folder"):
        plan_split(root, SplitOptions(), seed=0)
    _wav(root / "valid" / "dog" / "a.wav")
    _wav(root / "extra" / "dog" / "a.wav")
    with pytest.raises(SplitError, match="also extra"):
        plan_split(root, SplitOptions(), seed=0)


def test_options_that_do_not_go_together(tmp_path):
    root = _recordings(tmp_path / "data", {"dog": 1, "cat": 1}, clips=1)
    csv = tmp_path / "s.csv"
    for options, expected in [
        (SplitOptions(folds=1), "at least 2 folds"),
        (SplitOptions(csv=csv, group="(a)"), "give one"),
        (SplitOptions(csv=csv, folds=3), "give one"),
    ]:
        with pytest.raises(SplitUsageError, match=expected):
            check_options(options, root)


def test_recorded_folds_are_re_read_exactly(tmp_path):
    root = _recordings(tmp_path / "data", {"dog": 3, "cat": 3})
    folds = plan_folds(root, SplitOptions(group=r"(rec\d+)", folds=3), seed=1)
    assert (
        folds.method(2).describe()
        == "fold 2 of 3 by recording (--group '(rec\\d+)'), stratified by label, seed 1"
    )
    _wav(root / "dog" / "rec09_clip0.wav")  # added since: not part of the recorded folds
    again = Folds.from_assignment(root, folds.assignment(), folds.regex, folds.seed)
    assert again.parts == folds.parts
    assert again.split(2).splits == folds.split(2).splits
    (root / "cat" / "rec00_clip0.wav").unlink()
    with pytest.raises(SplitError, match="1 file.* of the recorded folds are not under"):
        Folds.from_assignment(root, folds.assignment(), folds.regex, folds.seed)


def test_a_split_method_round_trips_and_names_differences():
    method = SplitMethod("group", seed=0, regex="(x)")
    assert SplitMethod.from_dict(method.to_dict()) == method
    assert method.differs_from(SplitOptions(group="(x)").asked()) == ""
    assert "the options ask for \"80/10/10 by recording (--group '(y)')" in method.differs_from(
        SplitOptions(group="(y)").asked()
    )
    fold = SplitMethod("fold", seed=0, regex=None, fold=2, folds=5)
    assert fold.differs_from(SplitOptions(folds=5).asked()) == ""
    assert fold.differs_from(SplitOptions(folds=4).asked())


def test_a_csv_gets_the_label_checks_of_the_folder_layout(tmp_path):
    root = _recordings(tmp_path / "data", {"dog": 2, "cat": 2, "owl": 1}, clips=1)
    rows = ["path,split", "dog/rec00_clip0.wav,train", "cat/rec00_clip0.wav,train"]
    only_tested = _csv(tmp_path / "a.csv", *rows, "dog/rec01_clip0.wav,valid", "owl/rec00_clip0.wav,test")
    with pytest.raises(SplitError, match=r"label\(s\) owl have files in the test split but none in train"):
        plan_split(root, SplitOptions(csv=only_tested), seed=0)
    lacking = _csv(tmp_path / "b.csv", *rows, "dog/rec01_clip0.wav,valid", "cat/rec01_clip0.wav,test")
    split = plan_split(root, SplitOptions(csv=lacking), seed=0)
    assert split.notes[:2] == [
        f"warning: {lacking} puts no files of cat in the valid split: their accuracy is not measured on "
        "the valid split",
        f"warning: {lacking} puts no files of dog in the test split: their accuracy is not measured on "
        "the test split",
    ]


def test_split_options_are_refused_on_a_train_valid_test_root(tmp_path):
    root = tmp_path / "data"
    for name in SPLITS:
        for label in ("dog", "cat"):
            _wav(root / name / label / "a.wav")
    csv = _csv(tmp_path / "s.csv", "path,split", "train/dog/a.wav,train")
    for options, which in [(SplitOptions(csv=csv), "--splits"), (SplitOptions(group="(a)"), "--group")]:
        with pytest.raises(SplitUsageError, match=f"which fix the split; {which} needs one folder"):
            plan_split(root, options, seed=0)


def test_folds_by_file_warn_like_the_random_fallback(tmp_path):
    root = _recordings(tmp_path / "data", {"dog": 3, "cat": 3})
    by_file = plan_folds(root, SplitOptions(folds=3), seed=0).split(1)
    assert by_file.headline == (
        "warning: split: fold 1 of 3 by file, stratified by label, seed 0; clips of one recording may "
        "straddle train and test: --group keeps each recording's clips in one fold"
    )
    grouped = plan_folds(root, SplitOptions(group=r"(rec\d+)", folds=3), seed=0).split(1)
    assert grouped.caveat is None


def test_a_run_folder_inside_the_dataset_is_refused(tmp_path):
    from coaudio.crossval import plan_cross_validation
    from coaudio.data.split_plan import check_out_outside
    from coaudio.data.tracks import list_labelled

    root = _recordings(tmp_path / "g2", {"dog": 1, "cat": 1}, clips=1)
    for out in (root / "myrun", root, root / "dog" / "x"):
        with pytest.raises(SplitUsageError) as caught:
            check_options(SplitOptions(), root, out)
        assert str(caught.value) == (
            f"--out {out} is inside the dataset folder {root}: its files would become a label; put runs "
            "elsewhere"
        )
    with pytest.raises(SplitUsageError, match="inside the dataset folder"):
        plan_cross_validation(root, SplitOptions(folds=2), 0, root / "cv", resume=False)
    check_out_outside(root, tmp_path / "g2x")  # a sibling that only shares the prefix
    check_options(SplitOptions(), root, tmp_path / "runs" / "x")
    (root / "myrun").mkdir()  # one made before this check: named, not "a label without audio"
    (root / "myrun" / "config.json").write_text("{}")
    with pytest.raises(DatasetError, match="myrun holds a training run, not audio"):
        list_labelled(root)
