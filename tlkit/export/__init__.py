"""Exporting a trained tlkit model (see `formats` for each format, `int8` for the integer ones).

`export_model(model, folder, formats)` writes several formats at once and merges their records
into `folder/export.json`; `onnx_export` writes ONNX through Keras's exporter.
"""

from tlkit.export.folder import FORMATS, export_model
from tlkit.export.formats import (
    HUB_INFO_FILE,
    export_hub,
    export_keras,
    export_savedmodel,
    export_tflite,
    tflite_parity,
    tflite_predict,
)
from tlkit.export.int8 import export_savedmodel_int8, export_tflite_int8
from tlkit.export.onnx_export import export_onnx, onnx_parity, onnx_predict

__all__ = [
    "FORMATS",
    "HUB_INFO_FILE",
    "export_hub",
    "export_keras",
    "export_model",
    "export_onnx",
    "export_savedmodel",
    "export_savedmodel_int8",
    "export_tflite",
    "export_tflite_int8",
    "onnx_parity",
    "onnx_predict",
    "tflite_parity",
    "tflite_predict",
]
