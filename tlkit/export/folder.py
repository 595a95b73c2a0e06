"""`export_model`: several export formats of one model into one folder, with one merged record."""

from __future__ import annotations

import json
import logging
import os

from tlkit._progress import progbar
from tlkit.config import EXPORT_FORMATS as FORMATS
from tlkit.export.formats import (
    _is_text,
    export_hub,
    export_keras,
    export_savedmodel,
    export_tflite,
)

logger = logging.getLogger("tlkit")

PARITY_MIN_AGREEMENT = 0.98
"""Top-1 agreement with the Keras model below which an export's parity check warns."""
SAFER_FORMAT = {"tflite-int8": "tflite-dynamic", "tflite-dynamic": "tflite",
                "tflite": "savedmodel", "savedmodel-int8": "savedmodel", "onnx": "savedmodel"}
"""The format to ship instead of one whose predictions drift: the next step towards float."""


def parity_warning(fmt: str, parity: dict | None) -> str | None:
    """One line when `fmt`'s parity check agreed with the Keras model on fewer than
    `PARITY_MIN_AGREEMENT` of the top-1 predictions, naming the format to ship instead."""
    if not parity or parity.get("top1_agreement", 1.0) >= PARITY_MIN_AGREEMENT:
        return None
    return (f"export {fmt}: top-1 agreement with the Keras model {parity['top1_agreement']:.3f} "
            f"on {parity['num_examples']} inputs (< {PARITY_MIN_AGREEMENT}; max |diff| "
            f"{parity['max_abs_diff']:.3g}): ship {SAFER_FORMAT.get(fmt, 'keras')!r} instead, "
            "or check the export on your own data")


def _float_tflite_size(model) -> int:
    """Size of `model` as float32 TFLite (converted to a temporary file), for the int8 formats'
    size ratio when the call exports no `tflite` of its own."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return export_tflite(model, os.path.join(tmp, "float.tflite"))["size_bytes"]


# -- everything at once ------------------------------------------------------------------------------
def export_model(model, folder, formats=("keras",), sample_inputs=None, class_names=None,
                 representative_inputs=None) -> dict:
    """Exports `model` into `folder` in each of `formats` (see `FORMATS`).

    Files: `model.keras`, `savedmodel/`, `model.tflite`, `model_dynamic.tflite`, `hub/`,
    `savedmodel_int8/`, `model_int8.tflite`, `model.onnx` (see `tlkit.export.onnx_export`; needs
    the `onnx` extra; see `tlkit.export.int8`; `"tflite-int8"` needs
    `representative_inputs`, raw training inputs to calibrate on);
    `export.json` lists them with the TFLite parity figures, merged with the records of earlier
    exports into the same folder. A format whose outputs agree with the Keras model's top-1
    prediction on fewer than `PARITY_MIN_AGREEMENT` of `sample_inputs` gets a `"warning"` in
    its record (also logged) naming the format to ship instead (`SAFER_FORMAT`).

    Returns:
        `{format: {"path": ..., ...}}` of this call's formats; a format that does not apply to the model (TFLite for a
        text model) is `{"skipped": reason}` and logged.
    """
    from tlkit._io import RecordError, atomic_write_json, read_json, remove_stale_temporaries

    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"Unknown export format {unknown[0]!r}. Expected one of {FORMATS}.")
    if "onnx" in formats and not _is_text(model):  # a missing extra stops before any work
        from tlkit.export.onnx_export import _require_onnx

        _require_onnx()
    os.makedirs(folder, exist_ok=True)
    for stale in remove_stale_temporaries(folder):  # of an export killed part-way
        logger.info("removed %s, left by an export that was stopped", stale)
    results = {}
    float_sizes = []  # the float32 TFLite size, found once

    def float_tflite_size():
        if not float_sizes:
            float_sizes.append(results["tflite"]["size_bytes"] if "tflite" in results
                               else _float_tflite_size(model))
        return float_sizes[0]

    bar = progbar(len(formats), unit_name="format") if len(formats) > 1 else None
    for fmt in formats:
        if bar is not None:
            bar.add(0)  # shows the bar before the (slow) first conversion
        if fmt == "keras":
            results[fmt] = {"path": export_keras(model, os.path.join(folder, "model.keras"))}
        elif fmt == "savedmodel":
            results[fmt] = {
                "path": export_savedmodel(model, os.path.join(folder, "savedmodel"), class_names)
            }
        elif (fmt.startswith("tflite") or fmt == "onnx") and _is_text(model):
            reason = f"{'ONNX' if fmt == 'onnx' else 'TFLite'} export supports image models only"
            logger.warning("export %s skipped: %s", fmt, reason)
            results[fmt] = {"skipped": reason}
            continue
        elif fmt in ("tflite", "tflite-dynamic"):
            name = "model.tflite" if fmt == "tflite" else "model_dynamic.tflite"
            results[fmt] = export_tflite(
                model,
                os.path.join(folder, name),
                quantize="dynamic" if fmt == "tflite-dynamic" else None,
                sample_inputs=sample_inputs,
            )
            if fmt == "tflite-dynamic":  # int8 weights: its size next to float32's
                float_size = float_tflite_size()
                results[fmt].update(float_size_bytes=float_size,
                                    size_ratio=float_size / results[fmt]["size_bytes"])
        elif fmt == "savedmodel-int8":
            from tlkit.export.int8 import export_savedmodel_int8

            results[fmt] = export_savedmodel_int8(
                model, os.path.join(folder, "savedmodel_int8"), sample_inputs=sample_inputs
            )
        elif fmt == "tflite-int8":
            from tlkit.export.int8 import export_tflite_int8

            if representative_inputs is None:
                raise ValueError(
                    "Format 'tflite-int8' calibrates on training inputs: pass "
                    "`representative_inputs=` (e.g. 100 raw training images)."
                )
            results[fmt] = export_tflite_int8(
                model, os.path.join(folder, "model_int8.tflite"), representative_inputs,
                sample_inputs=sample_inputs,
                float_size_bytes=float_tflite_size(),
            )
        elif fmt == "onnx":
            from tlkit.export.onnx_export import export_onnx

            results[fmt] = export_onnx(model, os.path.join(folder, "model.onnx"),
                                       sample_inputs=sample_inputs)
        else:
            results[fmt] = {"path": export_hub(model, os.path.join(folder, "hub"))}
        warning = parity_warning(fmt, results[fmt].get("parity"))
        if warning is not None:
            results[fmt]["warning"] = warning
            logger.warning("%s", warning)
        logger.info("exported %s: %s", fmt, json.dumps(results[fmt]))
        if bar is not None:
            bar.add(1)
    # Earlier exports into this folder keep their records (and parity figures): merged, not
    # replaced; a format exported again gets its new record.
    record = os.path.join(folder, "export.json")
    try:
        previous = read_json(record, {}, expect=lambda d: None if isinstance(d, dict) and all(
            isinstance(v, dict) for v in d.values()) else "a JSON object {format: {path: ...}}")
    except RecordError as err:  # a listing of this folder's exports: rebuilt, not fatal
        logger.warning("%s; replaced by this export's records", str(err).split("; ")[0])
        previous = {}
    atomic_write_json(record, {**previous, **results})
    return results
