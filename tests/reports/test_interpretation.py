"""Interpretation: most-confused pairs, balanced accuracy, slice gaps, calibration and
temperature scaling, top losses with audit cross-links, and the self-contained report page."""

import json
import os
import re

import keras
import numpy as np
import pytest

from tlkit import reports
from tlkit.reports import (
    apply_temperature,
    calibration_summary,
    classification_metrics,
    expected_calibration_error,
    fit_temperature,
    most_confused,
    render_html_report,
    sliced_metrics,
    top_losses_from_predictions,
    write_html_report,
)
from tlkit.temperature import TemperatureScaling, with_temperature

Y = np.array([0, 0, 1, 1, 2, 2])
PROBS = np.eye(3)[[0, 1, 1, 1, 2, 0]]  # predictions 0 1 1 1 2 0


def test_most_confused_orders_off_diagonal_cells_by_count():
    matrix = [[5, 3, 1], [0, 4, 0], [2, 3, 1]]
    pairs = most_confused(matrix, ["a", "b", "c"])
    assert [(p["true"], p["predicted"], p["count"]) for p in pairs] == [
        ("a", "b", 3), ("c", "b", 3), ("c", "a", 2), ("a", "c", 1)
    ]
    assert pairs[0]["share"] == pytest.approx(3 / 9)
    assert most_confused(matrix, ["a", "b", "c"], min_count=3, top=1) == pairs[:1]
    with pytest.raises(ValueError, match=r"Expected a \(2, 2\) confusion matrix"):
        most_confused(matrix, ["a", "b"])


def test_metrics_have_balanced_accuracy_and_confusions():
    m = classification_metrics(Y, PROBS, ["a", "b", "c"])
    assert m["balanced_accuracy"] == pytest.approx((0.5 + 1.0 + 0.5) / 3)  # mean recall
    assert {(p["true"], p["predicted"]) for p in m["most_confused"]} == {("a", "b"), ("c", "a")}
    json.dumps(m)
    assert "balanced accuracy 0.6667" in reports.format_report(m)


def test_slices_report_their_gap_and_warn_when_much_worse():
    y = np.zeros(40, dtype=int)
    probs = np.tile([[0.9, 0.1]], (40, 1))
    probs[:8] = [0.1, 0.9]  # 8 of the 20 "cam2" examples wrong
    groups = np.array(["cam2"] * 20 + ["cam1"] * 20)
    s = sliced_metrics(y, probs, groups, name="camera")
    assert s["overall"] == pytest.approx(0.8)
    assert s["slices"]["cam2"]["gap"] == pytest.approx(0.6 - 0.8)
    assert s["slices"]["cam1"]["gap"] == pytest.approx(0.2)
    assert len(s["warnings"]) == 1 and "camera='cam2'" in s["warnings"][0]
    # the same gap on a slice of 5 examples is noise: no warning
    small = sliced_metrics(y[:25], probs[:25] * 0 + [0.9, 0.1], np.array(["a"] * 20 + ["b"] * 5))
    assert small["warnings"] == []


def test_ece_by_hand_and_reliability_bins():
    # two examples at confidence 0.9, one right: |0.5 - 0.9| = 0.4
    assert expected_calibration_error([0, 1], [[0.9, 0.1], [0.9, 0.1]]) == pytest.approx(0.4)
    # perfectly calibrated: confidence 1 and always right
    assert expected_calibration_error(Y, np.eye(3)[Y]) == pytest.approx(0.0)
    s = calibration_summary([0, 1], [[0.9, 0.1], [0.9, 0.1]], bins=10)
    assert s["curve"]["count"][8] == 2 and sum(s["curve"]["count"]) == 2
    assert s["temperature"] is None and s["ece_scaled"] is None
    with pytest.raises(ValueError, match="at least one example"):
        expected_calibration_error([], np.zeros((0, 2)))


def test_temperature_scaling_recovers_an_overconfident_models_temperature():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4000, 5)) * 2.0
    true_p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = np.array([rng.choice(5, p=p) for p in true_p])
    overconfident = apply_temperature(true_p, 1 / 2.5)  # logits x 2.5
    t = fit_temperature(y, overconfident)
    assert t == pytest.approx(2.5, rel=0.1)
    scaled = apply_temperature(overconfident, t)
    assert (scaled.argmax(1) == overconfident.argmax(1)).all()
    assert expected_calibration_error(y, scaled) < expected_calibration_error(y, overconfident) / 3


@pytest.mark.slow  # over ~2 CPU-seconds (tests/test_durations.json; the fast tier < 3 min, #31)
def test_temperature_layer_saves_reloads_and_matches_numpy(tmp_path):
    from tlkit.testing import tiny_model

    model = tiny_model(num_classes=3, compile=False)
    x = np.random.default_rng(0).uniform(0, 255, (5, 16, 16, 3)).astype("float32")
    raw = model.predict(x, verbose=0)
    calibrated = with_temperature(model, 2.0)
    out = calibrated.predict(x, verbose=0)
    np.testing.assert_allclose(out, apply_temperature(raw, 2.0), atol=1e-5)
    assert (out.argmax(1) == raw.argmax(1)).all()
    path = str(tmp_path / "m.keras")
    calibrated.save(path)
    reloaded = keras.models.load_model(path, safe_mode=True, compile=False)
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), out, atol=1e-6)
    assert reloaded.get_layer("temperature_scaling").temperature == 2.0
    with pytest.raises(ValueError, match="temperature` > 0"):
        TemperatureScaling(0.0)


def test_top_losses_order_notes_and_audit_cross_links():
    y = np.array([0, 1, 0, 1])
    probs = np.array([[0.95, 0.05], [0.02, 0.98], [0.3, 0.7], [0.97, 0.03]])
    audit = {
        "exact_duplicates": [
            {"items": [{"split": "test", "item": "#3"}, {"split": "train", "item": "a.png"}],
             "cross_split": True}
        ],
        "near_duplicates": [],
    }
    votes = np.array([[5, 0], [0, 5], [0, 5], [5, 0]])  # the neighbours carry the prediction
    t = top_losses_from_predictions(y, probs, ["cat", "dog"], n=2, audit=audit,
                                    neighbour_votes=votes)
    assert list(t.index) == [3, 2]
    assert t.true == ["dog", "cat"] and t.predicted == ["cat", "dog"]
    assert t.loss[0] == pytest.approx(-np.log(0.03))
    assert "exact duplicate of train item a.png" in t.notes[0]
    assert ("suspected wrong label: predicted cat with probability 0.97, and 5 of its 5 "
            "nearest training examples are cat") in t.notes[0]
    assert t.notes[1] == []  # dog at 0.7: not confident enough to suspect the label
    assert t.to_records()[0]["ref"] == "#3" and t[1]["index"] == 2
    try:
        import pandas  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install pandas"):
            t.to_pandas()
    else:
        assert list(t.to_pandas()["index"]) == [3, 2]
    with pytest.raises(ValueError, match="test split has no examples"):
        top_losses_from_predictions([], np.zeros((0, 2)), ["cat", "dog"])


def test_wrong_label_is_suspected_only_when_the_neighbours_carry_the_prediction():
    y = np.array([1, 1, 0])
    probs = np.array([[0.97, 0.03], [0.95, 0.05], [0.9, 0.1]])  # all three: confident, wrong
    agree = np.array([[1, 4], [4, 1], [4, 1]])  # 0: its neighbours say its label; 1: cat
    flagged = top_losses_from_predictions(y, probs, ["cat", "dog"], n=2, neighbour_votes=agree)
    assert list(flagged.index) == [0, 1]
    assert flagged.notes[0] == []  # 4 of 5 neighbours are dog, like its label
    assert flagged.notes[1] == [
        "suspected wrong label: predicted cat with probability 0.95, and 4 of its 5 nearest "
        "training examples are cat"
    ]
    split = np.array([[2, 3], [3, 2], [5, 0]])  # 3 of 5 for cat: below NEIGHBOUR_AGREEMENT (0.8)
    assert top_losses_from_predictions(y, probs, ["cat", "dog"], n=2,
                                       neighbour_votes=split).notes == [[], []]
    # Confidence alone is no evidence.
    assert top_losses_from_predictions(y, probs, ["cat", "dog"], n=2).notes == [[], []]
    # A function of the top indices: only those are asked for.
    asked = []

    def votes_of(indices):
        asked.append(list(indices))
        return agree[indices]

    lazy = top_losses_from_predictions(y, probs, ["cat", "dog"], n=2, neighbour_votes=votes_of)
    assert asked == [[0, 1]] and lazy.notes == flagged.notes
    assert top_losses_from_predictions(y, probs, ["cat", "dog"], n=2,
                                       neighbour_votes=lambda i: None).notes == [[], []]
    with pytest.raises(ValueError, match=r"neighbour_votes of shape \(examples, classes\)"):
        top_losses_from_predictions(y, probs, ["cat", "dog"], neighbour_votes=agree[:2])


def test_neighbour_votes_count_the_labels_of_the_nearest_training_points():
    from tlkit.reports.neighbours import neighbour_votes

    # Two clusters by direction (cosine): class 0 along x, class 1 along y, one stray 1 on x.
    train = np.array([[1, 0.0], [1, 0.1], [1, -0.1], [1, 0.05], [0, 1], [0.1, 1], [-0.1, 1],
                      [1, 0.02]])
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    queries = np.array([[5, 0.1], [0.05, 3], [1, 1]])
    votes = neighbour_votes(train, labels, queries, num_classes=3, k=5)
    assert votes.shape == (3, 3) and (votes.sum(axis=1) == 5).all()
    assert list(votes[0]) == [4, 1, 0]  # 4 class-0 points and the stray 1 along x
    assert list(votes[1]) == [2, 3, 0] and votes[2, 2] == 0  # 3 along y, then the nearest x
    assert list(neighbour_votes(train, labels, queries[:1], k=20)[0]) == [4, 4]  # k capped
    capped = neighbour_votes(train, labels, queries, k=2, max_train=3, seed=0)
    assert (capped.sum(axis=1) == 2).all()
    with pytest.raises(ValueError, match="one label per training example"):
        neighbour_votes(train, labels[:3], queries)


def test_top_losses_from_a_model_returns_the_examples_and_plots():
    import tlkit.data as tdata
    from tlkit.testing import tiny_model

    rng = np.random.default_rng(1)
    x = rng.uniform(0, 255, (30, 16, 16, 3)).astype("float32")
    y = rng.integers(0, 3, 30)
    data = tdata.from_numpy(x, y, class_names=["a", "b", "c"], val_fraction=0.0,
                            test_fraction=0.5, seed=0)
    model = tiny_model(num_classes=3, compile=False)
    t = reports.top_losses(model, data, "test", n=4)
    test_x = np.stack([xi for xi, _ in data.test.as_numpy_iterator()])
    np.testing.assert_array_equal(t.inputs, test_x[t.index])
    probs = model.predict(test_x, verbose=0)
    losses = -np.log(probs[np.arange(len(test_x)), data.split_labels("test")])
    np.testing.assert_allclose(t.loss, np.sort(losses)[::-1][:4], rtol=1e-5)
    fig = t.plot()
    assert len([a for a in fig.axes if a.images]) == 4


def test_model_neighbour_votes_embed_the_right_examples():
    import tlkit.data as tdata
    from tlkit.reports.neighbours import model_neighbour_votes
    from tlkit.testing import tiny_model

    # 12 distinct images, each twice: a test image whose copy is in train has that copy as
    # its nearest neighbour (distance 0) in any feature space.
    rng = np.random.default_rng(2)
    distinct = rng.uniform(0, 255, (12, 16, 16, 3)).astype("float32")
    x, y = np.concatenate([distinct, distinct]), np.tile(np.arange(12) % 3, 2)
    data = tdata.from_numpy(x, y, class_names=["a", "b", "c"], val_fraction=0.0,
                            test_fraction=0.5, seed=0)
    train_x = np.stack([xi for xi, _ in data.train.as_numpy_iterator()])
    test_x = np.stack([xi for xi, _ in data.test.as_numpy_iterator()])
    copies = {i: j for i in range(len(test_x)) for j in range(len(train_x))
              if np.array_equal(test_x[i], train_x[j])}
    assert copies
    queried = np.array(sorted(copies, reverse=True))  # not in dataset order
    model = tiny_model(num_classes=3, compile=False)
    votes = model_neighbour_votes(model, data, "test", queried, k=1)
    train_y = data.split_labels("train")
    np.testing.assert_array_equal(votes.argmax(axis=1), [train_y[copies[i]] for i in queried])
    assert (votes.sum(axis=1) == 1).all()
    # On the train split an example does not vote for itself.
    own = model_neighbour_votes(model, data, "train", np.arange(len(train_x)), k=1)
    assert own is None  # every train example queried: no bank left
    assert model_neighbour_votes(keras.Sequential([keras.layers.Dense(3)]), data, "test",
                                 queried) is None  # no tlkit head: no evidence


def _report_kwargs(tmp_path, images=True):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 50)
    probs = rng.dirichlet([1, 1, 1], 50)
    metrics = classification_metrics(y, probs, ["a", "b", "c"])
    metrics["warnings"] = ["possible overfitting: a test warning"]
    losses = top_losses_from_predictions(y, probs, ["a", "b", "c"], n=6)
    losses.inputs = rng.uniform(0, 255, (6, 8, 8, 1)) if images else ["some <b>text</b>"] * 6
    history = [{"epoch": i, "stage": "all", "loss": 1.0 / (i + 1), "val_loss": 1.1 / (i + 1)}
               for i in range(4)]
    return dict(
        title="tlkit report: test",
        summary={"run": str(tmp_path), "test accuracy": f"{metrics['accuracy']:.4f}"},
        metrics=metrics,
        class_names=["a", "b", "c"],
        history=history,
        top_losses=losses,
        calibration=calibration_summary(y, probs, 1.5),
        slices=sliced_metrics(y, probs, np.array(["x", "y"] * 25), name="source"),
        audit_text="Data audit: <none>",
        model_card="# Model card: test",
        files={"keras": "model.keras", "tflite-dynamic": "export/model.tflite"},
    )


def _no_network_resources(page):
    """Every src is a data: URI, links are in-page or relative, no scripts / styles / fonts
    fetched from elsewhere."""
    assert not re.search(r"<script|<link|@import|url\(", page, re.I)
    for src in re.findall(r'src="([^"]*)"', page):
        assert src.startswith("data:image/png;base64,"), src[:60]
    for href in re.findall(r'href="([^"]*)"', page):
        assert not re.match(r"[a-z]+:", href, re.I), href  # no http:, https:, file:, //
        assert not href.startswith("//")


def test_html_report_is_self_contained_with_every_section(tmp_path):
    path = write_html_report(tmp_path / "report.html", **_report_kwargs(tmp_path))
    page = open(path, encoding="utf-8").read()
    for key, _ in reports.html_report.SECTIONS:
        assert f'id="{key}"' in page
    assert page.count('<div class="tile"') == 6
    assert "possible overfitting: a test warning" in page
    assert "Data audit: &lt;none&gt;" in page  # escaped
    assert 'href="export/model.tflite"' in page
    _no_network_resources(page)
    assert os.listdir(tmp_path) == ["report.html"]  # no temporary file left
    text = write_html_report(tmp_path / "t.html", **_report_kwargs(tmp_path, images=False))
    assert "some &lt;b&gt;text&lt;/b&gt;" in open(text, encoding="utf-8").read()


def test_report_gallery_caption_and_model_card_read_well(tmp_path):
    """Tiles name the file (the full path in the tooltip); the curves' caption says what the
    dotted lines are for the strategy that ran; the model card is rendered Markdown."""
    kwargs = _report_kwargs(tmp_path)
    refs = [f"/data/photos/{c}/IMG_{i:04d}.jpg" for i, c in enumerate("abcabc")]
    kwargs["top_losses"].refs = refs
    kwargs["model_card"] = "# Model card: test\n\n| metric | value |\n|---|---|\n| acc | 0.9 |\n"
    lp_ft = [{"name": "s0", "label": "linear probe (converged)", "short": "probe", "start": 0,
              "end": 0},
             {"name": "s1", "label": "all groups + head", "short": "all", "start": 0, "end": 4}]
    page = render_html_report(**kwargs, stages=lp_ft)
    for ref in refs:
        name = os.path.basename(ref)
        assert f'title="{ref}"' in page and f"&middot; {name}</div>" in page
        assert f"&middot; {ref}" not in page
    assert "unfreezing steps" not in page and "The linear probe set the head" in page
    assert "<h1>Model card: test</h1>" in page and "<td>0.9</td>" in page
    gradual = [{"name": "s0", "label": "head only", "short": "head", "start": 0, "end": 1},
               {"name": "s1", "label": "top 1 group + head", "short": "top 1", "start": 1,
                "end": 2},
               {"name": "s2", "label": "all groups + head", "short": "all", "start": 2,
                "end": 4}]
    caption = reports.html_report.curves_caption(gradual)
    assert "epoch 2: top 1 group + head" in caption and "epoch 3: all groups" in caption
    assert "no dotted lines" in reports.html_report.curves_caption(gradual[2:])


def test_a_failed_report_keeps_the_previous_page(tmp_path):
    target = tmp_path / "report.html"
    target.write_text("previous")
    kwargs = _report_kwargs(tmp_path)
    del kwargs["metrics"]["per_class"]
    with pytest.raises(KeyError):
        write_html_report(target, **kwargs)
    assert target.read_text() == "previous"
    assert os.listdir(tmp_path) == ["report.html"]


CHROMIUM = "/usr/bin/chromium"


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium package")
def test_report_renders_in_headless_chromium_without_network(tmp_path):
    import subprocess

    from PIL import Image

    path = write_html_report(tmp_path / "report.html", **_report_kwargs(tmp_path))
    _no_network_resources(open(path, encoding="utf-8").read())
    flags = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
        # any host lookup fails, so a page that needed the network would show it
        "--host-resolver-rules=MAP * ~NOTFOUND", "--window-size=1200,2400",
    ]
    shot = tmp_path / "shot.png"
    url = f"file://{path}"
    subprocess.run(flags + [f"--screenshot={shot}", url], check=True, timeout=120,
                   capture_output=True)
    image = Image.open(shot)
    assert image.size == (1200, 2400)
    assert len(set(image.convert("L").getdata())) > 20  # something was drawn, not a blank page
    dom = subprocess.run(flags + ["--dump-dom", url], check=True, timeout=120,
                         capture_output=True, text=True).stdout
    for key in ("summary", "curves", "metrics", "confusion", "top-losses", "calibration",
                "slices", "audit", "card", "files"):
        assert f'id="{key}"' in dom
    assert dom.count('class="tile"') == 6
    _no_network_resources(dom)
