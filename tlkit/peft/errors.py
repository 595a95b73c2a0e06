"""Named exceptions of `tlkit.peft`: each says what was expected, what was received, the fix."""

from __future__ import annotations


class PeftError(ValueError):
    """Base class of the errors raised by `tlkit.peft` (a `ValueError`)."""


class InvalidRankError(PeftError):
    """A LoRA rank <= 0, or larger than the dimension of a layer it targets."""


class TargetsNotFoundError(PeftError):
    """LoRA targets that match no layer; the message lists the groups and layer names."""


class AdapterMismatchError(PeftError):
    """An adapter file saved on a different base model than the one it is loaded onto."""


class UnsupportedLayersError(PeftError):
    """Quantization requested for layers Keras cannot quantize; the message lists them."""
