"""A recipe's model: its backbone and head, built as `tlkit.build_model` builds one (backbone
frozen, not compiled), and the optimizer and augmentation its stages use.

Every verb that builds a model from a recipe (`train`, `lr-find`, `tune`, the from-scratch
baseline) builds it here.
"""

from __future__ import annotations

import logging

import keras

import tlkit.data as tdata
from tlkit import backbones, peft, registry
from tlkit import optimizers as optimizers_lib
from tlkit.backbones.resolve import BackboneOptionError
from tlkit.model import build_model
from tlkit.recipes import Recipe, RecipeError
from tlkit.runner.rundir import RunDir

logger = logging.getLogger("tlkit")


def writes_folder(name: str) -> bool:
    """Whether the registered backbone `name` is written into a folder it is given (its
    registry `needs` holds `"folder"`: the tiny SavedModels) instead of loading weights.

    Example: `writes_folder("tiny")` is True, `writes_folder("efficientnet_lite0")` False."""
    return name in registry.BACKBONES and "folder" in registry.BACKBONES.get(name).needs


def make_backbone(recipe: Recipe, run: RunDir):
    """The recipe's backbone (`tlkit.backbones.get`); a registered backbone that needs a folder
    (`tiny` / `tiny_text`: tiny SavedModels) writes into the run's `backbone/<name>`."""
    cfg = recipe.backbone
    kwargs = dict(cfg.options)
    if cfg.input_info is not None:
        kwargs["input_info"] = backbones.InputInfo.from_config(cfg.input_info)
    if writes_folder(cfg.name):
        kwargs.setdefault("folder", run.file("backbone", cfg.name))
        kwargs.setdefault("seed", recipe.seed)
    try:
        return backbones.get(cfg.spec, **kwargs)
    except BackboneOptionError as err:
        raise RecipeError(f"backbone.options: {err}") from None


def build(recipe: Recipe, data, run: RunDir) -> keras.Model:
    """`tlkit.build_model` from the recipe: backbone frozen, not compiled yet."""
    backbone = make_backbone(recipe, run)
    head = recipe.head
    augmentation = None
    if data.kind == "image":
        augmentation = make_augmentation(recipe)
    model = build_model(
        backbone,
        head=head.kind,
        class_names=data.class_names,
        input_shape=None if data.kind == "text" else data.input_shape,
        dropout=head.dropout,
        hidden_units=tuple(head.hidden_units),
        pooling=head.pooling,
        augmentation=augmentation,
        freeze_backbone=True,
        bn_policy=recipe.phases.bn_policy,
        compile=False,
        name=recipe.name.replace("-", "_").replace(".", "_"),
    )
    if recipe.peft is not None:
        report = peft.apply(model, recipe.peft.lora_config())
        logger.info("peft: %s", report)
    return model


def make_augmentation(recipe):
    """The recipe's `data.augmentation` layers, or `None` for an empty spec."""
    spec = recipe.data.augmentation
    return tdata.augmentation(spec, seed=recipe.seed) if spec else None


def make_optimizer(recipe, learning_rate):
    """An unbuilt optimizer of the recipe's `optimizer.name` / `weight_decay` at `learning_rate`."""
    return optimizers_lib.from_config(recipe.fine_tune_config(), learning_rate)
