"""BatchNorm policy while unfreezing: moving statistics and gamma/beta per policy (keras#20285)."""

import keras
import numpy as np
import pytest

import tlkit
from tlkit.backbones import InputInfo, from_keras
from tlkit.testing import tiny_cnn
from tlkit.unfreeze import GradualUnfreezing, UnfreezeSchedule

STATS = ("moving_mean", "moving_variance")
AFFINE = ("gamma", "beta")


def _changed(bn_policy, backbone=None, schedule=None):
    keras.utils.set_random_seed(0)
    backbone = backbone or from_keras(tiny_cnn(), input_info=InputInfo(value_range=(-1, 1)))
    model = tlkit.build_model(
        backbone, num_classes=3, input_shape=(16, 16, 3), dropout=0.0, learning_rate=1e-2
    )
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (16, 16, 16, 3)).astype("float32")
    y = np.arange(16) % 3
    before = {v.path: v.numpy().copy() for v in model.weights}
    # The top backbone group is unfrozen for the whole run.
    model.fit(
        x,
        y,
        batch_size=8,
        epochs=1,
        verbose=0,
        callbacks=[
            GradualUnfreezing(
                schedule or UnfreezeSchedule.constant(1), bn_policy=bn_policy, verbose=0
            )
        ],
    )
    after = {v.path: v.numpy() for v in model.weights}
    return {p for p in before if not np.array_equal(before[p], after[p])}


@pytest.mark.slow  # over ~2 CPU-seconds (tests/test_durations.json; the fast tier < 3 min, #31)
def test_frozen_keeps_bn_in_inference_mode():
    changed = _changed("frozen")
    assert {"block3_conv/kernel", "block3_conv/bias"} <= changed
    # Statistics and affine parameters of the unfrozen group's BN stay bit-identical.
    assert not any("_bn/" in p for p in changed)
    assert not any(p.startswith(("block1", "block2")) for p in changed)


def test_update_trains_bn_of_unfrozen_groups():
    changed = _changed("update")
    for name in STATS + AFFINE:
        assert f"block3_bn/{name}" in changed
    # Frozen groups: BN in inference mode, nothing moves.
    assert not any(p.startswith(("block1", "block2")) for p in changed)


@pytest.mark.slow  # over ~2 CPU-seconds (tests/test_durations.json; the fast tier < 3 min, #31)
def test_train_affine_trains_gamma_beta_of_unfrozen_groups_but_not_statistics():
    changed = _changed("train_affine")
    for name in AFFINE:
        assert f"block3_bn/{name}" in changed
    for block in ("block1", "block2", "block3"):
        for name in STATS:
            assert f"{block}_bn/{name}" not in changed
    # Frozen groups never train, BatchNorm gamma/beta included (#28).
    assert not any(p.startswith(("block1", "block2")) for p in changed)
    assert "block3_conv/kernel" in changed


@pytest.mark.slow  # over ~2 CPU-seconds (tests/test_durations.json; the fast tier < 3 min, #31)
@pytest.mark.parametrize("bn_policy,stats_move", [("frozen", False), ("update", True)])
def test_savedmodel_backbone_statistics(image_savedmodel, bn_policy, stats_move):
    changed = _changed(
        bn_policy, backbone=image_savedmodel, schedule=UnfreezeSchedule.constant("all")
    )
    assert "block_1_conv_kernel" in changed
    assert any("moving_mean" in p for p in changed) == stats_move


@pytest.mark.slow  # over ~2 CPU-seconds (tests/test_durations.json; the fast tier < 3 min, #31)
@pytest.mark.parametrize(
    "bn_policy,affine_top,affine_bottom",
    [("frozen", False, False), ("train_affine", True, False), ("update", True, False)],
)
def test_savedmodel_bn_affine_follows_the_policy(image_savedmodel, bn_policy, affine_top, affine_bottom):
    # The SavedModel's groups: block_1, block_2, top. Only block_2 (and top) unfreeze.
    changed = _changed(bn_policy, backbone=image_savedmodel, schedule=UnfreezeSchedule.constant(2))
    assert "block_2_conv_kernel" in changed and "block_1_conv_kernel" not in changed
    assert {"block_2_bn_gamma", "block_2_bn_beta"} <= changed if affine_top else not (
        {"block_2_bn_gamma", "block_2_bn_beta"} & changed
    )
    assert {"block_1_bn_gamma", "block_1_bn_beta"} <= changed if affine_bottom else not (
        {"block_1_bn_gamma", "block_1_bn_beta"} & changed
    )
