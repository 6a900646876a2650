"""``--cache PATH`` that cannot be a folder: one error line before any work."""

from __future__ import annotations

import pytest

from coaudio_cli.main import run


@pytest.mark.parametrize("under", [False, True])
def test_evaluate_features_and_folds_refuse_a_cache_that_is_not_a_folder(tmp_path, capsys, under):
    (tmp_path / "data").mkdir()
    afile = tmp_path / "afile"
    afile.write_text("x")
    bad = afile / "sub" if under else afile
    why = "cannot create it" if under else "not a folder"
    for argv in (
        ["evaluate", str(tmp_path / "no-run"), "--cache", str(bad)],  # checked before the run is read
        ["features", str(tmp_path), "--cache", str(bad)],
        [
            "train",
            "folder",
            str(tmp_path / "data"),
            "--out",
            str(tmp_path / "cv"),
            "--folds",
            "2",
            "--cache",
            str(bad),
        ],
    ):
        status = run(argv)
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.strip()]
        assert status in (1, 2) and len(lines) == 1 and lines[0].startswith("error: "), err
        assert f"--cache {bad}: {why}" in lines[0], err


def test_the_cli_check_passes_the_default_and_a_new_folder(tmp_path):
    from coaudio_cli.cache_option import check_cache_option

    check_cache_option(None)
    check_cache_option(tmp_path / "new" / "cache")
