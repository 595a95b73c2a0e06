"""tlkit as an installed distribution: `--version`, the shipped recipes and `tlkit init`, what the
wheel carries, and `tlkit bench` outside a checkout."""

import glob
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib import metadata

import pytest

import tlkit
from tlkit import cli
from tlkit.recipes import load_recipe
from tlkit.recipes.shipped import shipped_recipes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _pyproject():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def _error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_version_flag_prints_the_distribution_version(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == f"tlkit {metadata.version('tlkit')}\n"
    assert tlkit.__version__ == metadata.version("tlkit")


def test_version_is_written_once_in_pyproject(monkeypatch):
    with open(tlkit.__file__, encoding="utf-8") as f:
        assert not re.search(r"__version__\s*=\s*['\"]", f.read())

    def not_installed(name):
        raise metadata.PackageNotFoundError(name)

    # A source tree that was never installed reads pyproject.toml.
    monkeypatch.setattr(metadata, "version", not_installed)
    assert tlkit._version() == _pyproject()["project"]["version"]


def test_shipped_recipes_are_the_checkouts_recipes():
    on_disk = sorted(os.path.basename(p)[:-5] for p in glob.glob(os.path.join(ROOT, "recipes", "*.yaml")))
    assert sorted(shipped_recipes()) == on_disk and "smoke" in on_disk


def test_init_writes_a_starter_recipe_the_loader_accepts(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["init"]) == 0
    out = capsys.readouterr().out
    assert "wrote smoke.yaml" in out and "tlkit train smoke.yaml" in out and "quickstart" in out
    recipe = load_recipe("smoke.yaml")
    assert recipe.name == "smoke" and recipe.backbone.name == "tiny"

    (tmp_path / "smoke.yaml").write_text("name: mine\n")  # an edited recipe is never replaced
    assert cli.main(["init"]) == 1
    assert "smoke.yaml exists; pass --force" in _error_line(capsys)
    assert (tmp_path / "smoke.yaml").read_text() == "name: mine\n"

    assert cli.main(["init", "quickstart", "--output", "mine/flowers.yaml"]) == 0
    recipe = load_recipe("mine/flowers.yaml")
    assert recipe.name == "flowers"  # runs/flowers, not runs/quickstart
    assert recipe.backbone.name == "efficientnet_lite0"


def test_init_lists_the_shipped_recipes_and_rejects_unknown_names(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["init", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == list(shipped_recipes())
    assert any(line.startswith("smoke: Tiny SavedModel backbone on digits") for line in lines)
    assert os.listdir(tmp_path) == []
    assert cli.main(["init", "smok"]) == 1
    line = _error_line(capsys)
    assert "no shipped recipe 'smok'" in line and "smoke" in line


def test_bench_outside_a_checkout_says_it_needs_one(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no ./benchmarks
    site = tmp_path / "site-packages"  # where a wheel's tlkit sits: no benchmarks/ beside it
    monkeypatch.setattr(cli, "_default_benchmarks", lambda: str(site / "benchmarks"))
    assert cli.main(["bench", "--list"]) == 1
    line = _error_line(capsys)
    assert "source checkout" in line and "--dir" in line


@pytest.mark.slow
def test_the_wheel_carries_license_typing_marker_and_recipes(tmp_path):
    """Builds the wheel (`pip wheel`, seconds) from a copy of the source (setuptools' build/
    folder keeps stale files between builds) and reads what it holds."""
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "runs", "build", "dist", "*.egg-info", "__pycache__", ".*cache*"))
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(source)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = glob.glob(str(tmp_path / "tlkit-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "tlkit/py.typed" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    shipped = {n.rsplit("/", 1)[1][:-5] for n in names if n.startswith("tlkit/recipes/starters/")}
    assert shipped == set(shipped_recipes())
    assert not any(n.startswith(("benchmarks/", "tests/", "recipes/", "tlkit/testing/"))
                   for n in names)
    meta = zipfile.ZipFile(wheel).read(
        next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: Apache-2.0" in meta and "Classifier: Typing :: Typed" in meta


def test_extras_are_declared_listed_and_in_all():
    from tlkit import _extras

    extras = _pyproject()["project"]["optional-dependencies"]
    # Every extra a missing-package message names exists in pyproject.toml.
    assert {extra for _, extra in _extras.OPTIONAL.values()} <= set(extras)
    # `all` is every feature extra (not `dev`).
    (all_req,) = extras["all"]
    assert set(re.search(r"\[(.*)\]", all_req)[1].split(",")) == set(extras) - {"all", "dev", "docs"}  # docs: a dev tool, in dev
    # docs/install.md's table has a row per extra.
    with open(os.path.join(ROOT, "docs", "install.md"), encoding="utf-8") as f:
        rows = set(re.findall(r"^\| `([a-z-]+)` \|", f.read(), flags=re.M))
    assert rows == set(extras)
