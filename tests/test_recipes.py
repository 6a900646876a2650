"""Shipped recipes: found by name from any folder, loaded strictly, listed and printed."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest
import typer

from coaudio import recipes
from coaudio.config import ConfigError, load
from coaudio.train.config import Recipe
from coaudio_cli.train import _recipe

REPO_RECIPES = Path(__file__).resolve().parents[1] / "recipes"

# `coaudio recipes` and `coaudio train` mounted the way cli/main.py mounts them, so these tests
# depend neither on the registration there nor on the other commands' modules importing
# (`python -m coaudio recipes ...` runs the same code).
APP = """
import sys, typer
from coaudio_cli import recipes, train
app = typer.Typer(pretty_exceptions_enable=False)
app.add_typer(recipes.app, name="recipes")
app.add_typer(train.app, name="train")
app(sys.argv[1:], prog_name="coaudio")
"""


def _coaudio(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", APP, *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def _coaudio_recipes(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return _coaudio(cwd, "recipes", *args)


def test_the_recipes_are_shipped_and_load_strictly():
    assert recipes.names() == ["gtzan", "gtzan-melstats", "gtzan-musicnn", "gtzan-vggish", "synth"]
    for name in ("gtzan", "synth", "synth.toml", "gtzan-musicnn", "gtzan-vggish"):
        with recipes.locate(name) as path:
            cfg = load(Recipe, path)
        stem = name.removesuffix(".toml")
        assert cfg == load(Recipe, REPO_RECIPES / f"{stem}.toml")  # the repository's file, not a copy
        assert tomllib.loads(recipes.text(name)) == tomllib.loads((REPO_RECIPES / f"{stem}.toml").read_text())
    assert recipes.text("gtzan") != recipes.text("synth")


def test_descriptions_are_the_leading_comment():
    listed = {r.name: r for r in recipes.shipped()}
    assert listed["synth"].description.startswith("The built-in synthetic genres")
    assert listed["gtzan"].description.startswith("GTZAN, fault-filtered split")
    assert Path(listed["synth"].location).read_text() == recipes.text("synth")
    assert recipes.description("\n# first\n# second\n[a]\n") == "first"
    assert recipes.description("[a]\nx = 1  # a setting\n# later\n") == ""


@pytest.mark.parametrize("spec", ["nope", "recipes/nope.toml", "missing/synth.toml"])
def test_unknown_names_list_the_shipped_ones(spec, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        recipes.RecipeNotFound,
        match=r"\(shipped: gtzan, gtzan-melstats, gtzan-musicnn, gtzan-vggish, synth; see coaudio recipes\)",
    ) as info:
        with recipes.locate(spec):
            pass
    assert isinstance(info.value, ConfigError) and "\n" not in str(info.value)
    with pytest.raises(
        recipes.RecipeNotFound, match="shipped: gtzan, gtzan-melstats, gtzan-musicnn, gtzan-vggish, synth"
    ):
        recipes.text("nope")


def test_train_resolves_names_from_another_folder_and_a_file_wins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shipped = load(Recipe, REPO_RECIPES / "synth.toml")
    assert _recipe("synth", [], threads=1) == replace(shipped, train=replace(shipped.train, threads=1))
    assert _recipe("gtzan.toml", ["train.epochs=3"]).train.epochs == 3
    (tmp_path / "synth").write_text("[train]\nepochs = 7\n")  # an existing file path wins over a name
    assert _recipe("synth", []).train.epochs == 7
    assert _recipe(str(tmp_path / "synth"), []).train.epochs == 7
    for spec in ("nope", str(tmp_path)):  # unknown name; a folder
        with pytest.raises(typer.Exit) as info:
            _recipe(spec, [])
        assert info.value.exit_code == 1


def test_train_cli_takes_a_recipe_name_outside_the_clone(tmp_path):
    data = tmp_path / "data"
    for label in ("a", "b"):  # list_labelled only looks at names: empty files are enough
        (data / label).mkdir(parents=True)
        (data / label / "x.wav").write_bytes(b"")

    def train(*args: str) -> subprocess.CompletedProcess:
        return _coaudio(tmp_path, "train", "folder", str(data), "--out", str(tmp_path / "run"), *args)

    # The recipe is found and loaded strictly; the bogus override then stops the run before any work.
    found = train("--recipe", "synth", "--set", "train.bogus=1")
    assert found.returncode == 1 and found.stderr.strip().splitlines() == [
        "error: train.bogus: unknown key (known: augment, batch_size, epochs, grad_clip, label_smoothing, "
        "lr, patience, seed, select, threads, warmup_epochs, weight_decay)"
    ]
    unknown = train("--recipe", "recipes/synth.toml")  # a clone's path, but this is not a clone
    assert unknown.returncode == 1 and unknown.stderr.strip().splitlines() == [
        "error: recipe 'recipes/synth.toml': no such file "
        "(shipped: gtzan, gtzan-melstats, gtzan-musicnn, gtzan-vggish, synth; see coaudio recipes)"
    ]
    assert not (tmp_path / "run").exists()


def test_recipes_command_lists_and_shows(tmp_path):
    listed = _coaudio_recipes(tmp_path, "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [r["name"] for r in rows] == ["gtzan", "gtzan-melstats", "gtzan-musicnn", "gtzan-vggish", "synth"]
    assert all(r["description"] and Path(r["location"]).is_file() for r in rows)

    table = _coaudio_recipes(tmp_path)
    assert table.returncode == 0 and "synth" in table.stdout and "gtzan" in table.stdout

    shown = _coaudio_recipes(tmp_path, "show", "synth")
    assert shown.returncode == 0 and shown.stdout == recipes.text("synth")
    (tmp_path / "mine.toml").write_text(shown.stdout)  # the copy-and-edit workflow
    assert load(Recipe, tmp_path / "mine.toml") == load(Recipe, REPO_RECIPES / "synth.toml")

    missing = _coaudio_recipes(tmp_path, "show", "nope")
    assert missing.returncode == 1 and missing.stdout == ""
    assert missing.stderr.strip().splitlines() == [
        "error: recipe 'nope': no shipped recipe of that name "
        "(shipped: gtzan, gtzan-melstats, gtzan-musicnn, gtzan-vggish, synth; see coaudio recipes)"
    ]


def test_the_recipes_modules_leave_torch_alone():
    """CLI start-up stays fast: listing recipes never imports torch."""
    code = (
        "import sys; import coaudio.recipes, coaudio_cli.recipes, coaudio.config; "
        "coaudio.recipes.shipped(); assert 'torch' not in sys.modules, 'torch imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_a_folder_named_like_a_shipped_recipe_does_not_hide_it(tmp_path, monkeypatch):
    """`coaudio train gtzan gtzan --recipe gtzan`, run beside the dataset folder gtzan."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gtzan").mkdir()
    (tmp_path / "notes").mkdir()
    with recipes.locate("gtzan") as found:
        assert found.read_text() == recipes.text("gtzan")
    with pytest.raises(recipes.RecipeNotFound, match="'notes': not a file"):
        with recipes.locate("notes"):
            pass
