"""Square brackets in a path, a name or an error are text, never console markup: ``x [bold]y.wav``
is printed as it is (not as ``x y.wav`` in bold), ``br-[red]out.csv`` keeps its ``[red]``, and a
``[/]`` (a closing tag with nothing to close) does not end the command in an internal error after
its output was written. Through the command line, in process (``cli``, tests/conftest.py)."""

from __future__ import annotations

import csv

import pytest
import soundfile

from tests.online.helpers import make_checkpoint, tone_mix

GOOD = ["x [bold]y.wav", "a[red]c.wav"]
BAD = ["bad [bold]y.wav", "a[/]b.wav"]  # the second: the file ']b.wav' in the folder 'a['


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    root = tmp_path_factory.mktemp("brackets")
    make_checkpoint(root / "model.safetensors", hop_frames=20, window=6)
    music = root / "music"
    (music / "a[").mkdir(parents=True)
    for i, name in enumerate(GOOD):
        soundfile.write(music / name, tone_mix(2.0, 16_000, seed=i), 16_000)
    (music / BAD[0]).write_bytes(b"")
    (music / BAD[1]).write_bytes(b"not riff at all" * 50)
    (root / "o[").mkdir()
    return root


def _classify(cli, library, *args):
    return cli(
        "classify", library / "model.safetensors", library / "music", "--jobs", 1, "-q",
        "--journal", library / "journal", *args,
    )  # fmt: skip


def _failures(err: str) -> dict[str, str]:
    """{path: error} of the 'failed PATH: ERROR' lines."""
    found = {}
    for line in err.splitlines():
        if line.startswith("failed "):
            path, _, error = line.removeprefix("failed ").partition(".wav: ")
            found[path + ".wav"] = error
    return found


@pytest.mark.parametrize("out_name", ["br-[red]out.csv", "o[/]x.csv", "[bold]plain.csv"])
def test_classify_names_every_file_and_the_output_as_they_are(cli, library, out_name):
    out = library / out_name
    done = _classify(cli, library, "-o", out)
    assert done.status == 1, done.err  # two files fail: status 1, not an internal error
    assert "internal error" not in done.err and "MarkupError" not in done.err
    music = library / "music"
    failures = _failures(done.err)
    assert sorted(failures) == sorted(str(music / name) for name in BAD), done.err
    assert failures[str(music / BAD[0])] == "empty file (0 bytes)"
    assert str(music / BAD[1]) in failures[str(music / BAD[1])]  # the decoder's message names it
    assert done.err.splitlines()[-1] == (
        f"2 of 4 files classified (0.00 h of audio), 2 failed; wrote {out}"
    ), done.err
    rows = list(csv.DictReader(out.open()))
    assert {r["path"]: r["status"] for r in rows} == {
        **{str(music / name): "ok" for name in GOOD},
        **{str(music / name): "failed" for name in BAD},
    }


def test_a_classify_table_shows_the_names_as_they_are(cli, library):
    out = library / "t[bold].txt"
    done = _classify(cli, library, "-o", out, "--format", "table")
    assert done.status == 1 and "internal error" not in done.err, done.err
    text = out.read_text()
    for name in GOOD + BAD:
        assert str(library / "music" / name) in text, text
    assert f"wrote {out}" in done.err


def test_features_names_a_failing_file_as_it_is(cli, library, tmp_path):
    done = cli("features", library / "music", "--cache", tmp_path / "c[/]ache", "--jobs", 1)
    assert done.status == 1 and "internal error" not in done.err, done.err
    failures = _failures(done.err)
    assert sorted(failures) == sorted(str(library / "music" / name) for name in BAD), done.err
    assert "2 extracted, 0 cached, 2 failed" in done.out


def test_models_list_names_its_folder_as_it_is(cli, tmp_path):
    folder = tmp_path / "m[/]odels [bold]x"
    done = cli("models", "list", "--dir", folder)
    assert done.status == 0, done.err
    assert f"models in {folder}" in done.out


def test_an_error_message_keeps_its_brackets(cli, tmp_path):
    missing = tmp_path / "no [bold]such[/].safetensors"
    done = cli("classify", missing, tmp_path)
    assert done.status == 1 and done.err == f"error: {missing}: no such checkpoint\n"


def test_the_consoles_print_markup_as_text(capsys):
    from coaudio_cli.console import err_console, out_console

    err_console().print("a [bold]b[/] c[/]", highlight=False)
    out_console().print("d [red]e", highlight=False)
    captured = capsys.readouterr()
    assert captured.err == "a [bold]b[/] c[/]\n" and captured.out == "d [red]e\n"
