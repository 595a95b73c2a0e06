"""The documentation stays true: the benchmark pages and the README's headline table are what
benchmarks/render_pages.py renders from the results files, the README stays short, and the API
reference names every top-level `tlkit` name at the module that defines it."""

import importlib.util
import json
import os
import re

import pytest

ROOT = os.path.join(os.path.dirname(__file__), "..")


@pytest.fixture(scope="module")
def render_pages():
    spec = importlib.util.spec_from_file_location(
        "render_pages", os.path.join(ROOT, "benchmarks", "render_pages.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_pages_and_readme_block_are_current(render_pages):
    """Rendering the results files again gives the committed pages (text; plots not compared)."""
    pages = render_pages.render(plots=False)
    stale = render_pages.stale(pages)
    assert stale == [], f"not current (run python benchmarks/render_pages.py): {stale}"
    plots = [p for text in pages.values() for p in re.findall(r"\]\((img/[^)]+\.png)\)", text)]
    assert plots  # and each is there (rendered with the pages)
    for plot in plots:
        assert os.path.exists(os.path.join(render_pages.DOCS, plot)), plot


def test_every_results_file_is_rendered_on_a_page(render_pages):
    index = render_pages.page_index()
    names = [f[:-5] for f in os.listdir(render_pages.RESULTS) if f.endswith(".json")]
    assert names
    for name in names:
        assert f"`{name}.json`" in index
    assert "not on a page" not in index


def test_the_readme_headline_figures_come_from_the_results(render_pages):
    with open(render_pages.README, encoding="utf-8") as f:
        readme = f.read()
    block = readme.split(render_pages.BEGIN, 1)[1].split(render_pages.END, 1)[0]
    quickstart = render_pages.load("quickstart")
    assert f"test accuracy {quickstart['pretrained']['accuracy']:.3f}" in block
    assert block.count("docs/benchmarks/") >= 5  # each row links to its page


def test_provenance_says_not_recorded_instead_of_inventing(render_pages):
    text = render_pages.provenance("x", {"command": "benchmarks/x.py --n 3"})
    assert "- commit: not recorded" in text
    assert "- machine: not recorded" in text
    assert "`benchmarks/x.py --n 3`" in text
    text = render_pages.provenance("x", {"commit": "0123456789abcdef+dirty",
                                         "machine": {"cpus": 2, "gpus": []}})
    assert "`0123456789ab` (uncommitted changes)" in text and "no GPU" in text
    assert "- command: not recorded" in text
    assert "missing" in render_pages.provenance("x", None)


def test_a_rewritten_strategies_file_renders_without_edits(render_pages, tmp_path, monkeypatch):
    """strategies_budget*.json are being re-run: new budgets and methods, or no summary at all,
    render (or say so) rather than fail."""
    monkeypatch.setattr(render_pages, "RESULTS", str(tmp_path))
    summary = {"7": {"new_method": {"clean_accuracy": [0.5, 0.01], "seconds": 3.0}},
               "70": {"new_method": {"clean_accuracy": [0.75, 0.02]}, "auto": {}}}
    (tmp_path / "strategies_budget.json").write_text(json.dumps({"summary": summary}))
    (tmp_path / "strategies_budget_lora.json").write_text(json.dumps({"rows": []}))
    (tmp_path / "strategies_budget_defaults.json").write_text("{not json")
    text = render_pages.page_strategies(plots=False)
    assert "| `new_method` | 0.500 ± 0.010 | 0.750 ± 0.020 |" in text
    assert "*No summary in this results file.*" in text
    assert "strategies_budget_defaults.json` is missing" in text


def test_readme_is_short_and_links_resolve():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    assert len(readme.splitlines()) <= 250
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme):
        if "://" not in target:
            assert os.path.exists(os.path.join(ROOT, target)), f"README links to {target}"


def test_api_reference_covers_every_top_level_name_where_it_is_defined():
    import tlkit

    with open(os.path.join(ROOT, "docs", "api", "tlkit.md"), encoding="utf-8") as f:
        page = f.read()
    shown = {name: module for module, name in re.findall(r"^::: ([\w.]+)\.(\w+)$", page, re.M)}
    assert shown == tlkit._ATTRIBUTES
