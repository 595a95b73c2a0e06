"""`from_csv`: a CSV of image paths or texts and their labels."""

from __future__ import annotations

import csv
import logging
import os

import numpy as np

from tlkit.config import TEST_FRACTION, VAL_FRACTION
from tlkit.data.sources import _assemble, _images, _labels
from tlkit.data.sources.labeled_data import LabeledData, Skipped

logger = logging.getLogger(__name__)

BAD_ROWS = ("error", "skip")
_MAX_LISTED = 10


def from_csv(
    path,
    x_col: str,
    y_col: str,
    kind: str = "image",
    base_dir=None,
    encoding: str = "utf-8",
    delimiter: str = ",",
    class_names=None,
    val_fraction: float = VAL_FRACTION,
    test_fraction: float = TEST_FRACTION,
    seed: int = 0,
    image_size=None,
    channels: int = 3,
    check: str | None = "decode",
    on_bad_rows: str = "error",
) -> LabeledData:
    """Loads a CSV with a header, one example per row: an image path or a text, and a label.

    Rows are the non-blank records after the header, numbered from 1; messages give the file
    line too. A row with a missing or extra field, an empty value, a label outside `class_names` or
    (images) a file that does not exist is a *bad row*: by default the loader raises, naming
    the rows; with `on_bad_rows="skip"` it leaves them out and lists them in
    `LabeledData.skipped`. Image files that exist but cannot be decoded are always skipped
    and listed, as in `from_image_folder`.

    Args:
        path: the CSV file.
        x_col: column with image paths (`kind="image"`) or texts (`kind="text"`).
        y_col: column with labels (class names or integers).
        kind: `"image"` or `"text"`.
        base_dir: folder that relative image paths start from (default: the CSV's folder).
        encoding: text encoding of the file (e.g. `"latin-1"`).
        delimiter: field separator.
        class_names: optional class list (label order); default: sorted distinct labels
            (numeric order when all labels are integers).
        val_fraction, test_fraction, seed: stratified, seeded split of the rows.
        image_size, channels, check: as in `from_image_folder` (images only).
        on_bad_rows: `"error"` or `"skip"`.

    Returns:
        A `LabeledData`; `metadata[split]["row"]` holds each example's row number (and
        `"path"` for images).

    Raises:
        FileNotFoundError: the CSV does not exist.
        ValueError: a column is missing (the message lists the columns present), bad rows,
            undecodable text (the message suggests an `encoding`), or fewer than 2 classes.

    Example:
    ```python
    data = tlkit.data.from_csv("labels.csv", x_col="file", y_col="label", base_dir="images/")
    ```
    """
    if kind not in ("image", "text"):
        raise ValueError(f"Expected `kind` 'image' or 'text'. Received: kind={kind!r}")
    if on_bad_rows not in BAD_ROWS:
        raise ValueError(f"Expected `on_bad_rows` in {BAD_ROWS}. Received: {on_bad_rows!r}")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"CSV file not found: {path!r}.")
    base_dir = os.fspath(base_dir) if base_dir is not None else os.path.dirname(path)
    rows = _read_rows(path, x_col, y_col, encoding, delimiter)

    given = [str(c) for c in class_names] if class_names is not None else None
    bad: list[tuple[str, str]] = []
    good: list[tuple[int, str, str]] = []
    for row_number, line, x, y, extra in rows:
        where = f"row {row_number} (line {line})"
        if x is None or y is None:
            bad.append((where, "has fewer fields than the header"))
        elif extra:
            bad.append((where, f"has {extra} more field(s) than the header (quote values "
                               "that contain the delimiter)"))
        elif not x.strip():
            bad.append((where, f"empty {x_col!r}"))
        elif not y.strip():
            bad.append((where, f"empty {y_col!r}"))
        elif given is not None and y.strip() not in given:
            bad.append((where, f"label {y.strip()!r} is not in class_names {given}"))
        elif kind == "image" and not os.path.isfile(os.path.join(base_dir, x.strip())):
            bad.append((where, f"image file not found: {os.path.join(base_dir, x.strip())!r}"))
        else:
            good.append((row_number, x if kind == "text" else x.strip(), y.strip()))
    skipped = [Skipped(f"{path}: {where}", reason) for where, reason in bad]
    if bad and on_bad_rows == "error":
        raise ValueError(
            f"{len(bad)} bad row(s) in {path!r}: {_listing(bad)}. Fix them, or pass "
            "on_bad_rows='skip' to leave them out."
        )
    if bad:
        logger.warning("%s: skipped %d bad row(s): %s", path, len(bad), _listing(bad))
    if not good:
        raise ValueError(f"No usable rows in {path!r} (columns {x_col!r}, {y_col!r}).")

    names = given if given is not None else _labels.infer_class_names(y for _, _, y in good)
    if len(names) < 2:
        raise ValueError(
            f"Column {y_col!r} of {path!r} has only 1 class ({names}); classification needs "
            "at least 2."
        )
    index = {c: i for i, c in enumerate(names)}
    row_numbers = np.asarray([r for r, _, _ in good], dtype="int64")
    y_all = np.asarray([index[y] for _, _, y in good], dtype="int64")
    metadata = {"row": row_numbers}
    if kind == "text":
        x_all = np.asarray([x for _, x, _ in good], dtype=object)
        map_fn = None
    else:
        x_all = np.asarray([os.path.join(base_dir, x) for _, x, _ in good], dtype=object)
        channels = _images.check_channels(channels)
        image_size = _images.check_image_size(image_size)
        unreadable, sizes = _images.find_unreadable(list(x_all), check, channels)
        _images.log_skipped(path, unreadable)
        skipped.extend(unreadable)
        unreadable_paths = {s.source for s in unreadable}
        keep = np.asarray([p not in unreadable_paths for p in x_all], dtype=bool)
        x_all, y_all, row_numbers = x_all[keep], y_all[keep], row_numbers[keep]
        if len(x_all) == 0:
            raise ValueError(f"None of the images listed in {path!r} could be decoded.")
        metadata = {"row": row_numbers, "path": x_all}
        shape = _images.common_size({p: sizes[p] for p in x_all if p in sizes})
        map_fn = _images.decode_fn(channels, image_size, shape if sizes else None)
    split_indices = _assemble.split_pool(y_all, val_fraction, test_fraction, seed)
    return _assemble.assemble(
        x_all,
        y_all,
        split_indices,
        names,
        kind,
        map_fn=map_fn,
        metadata=metadata,
        skipped=skipped,
        name=f"csv {os.path.abspath(path)}",
    )


def _read_rows(path, x_col, y_col, encoding, delimiter):
    """`(row number, line number, x, y, extra fields)` per data row; raises on missing columns / encoding."""
    try:
        with open(path, newline="", encoding=encoding) as f:
            reader = csv.reader(f, delimiter=delimiter)
            header = next(reader, None)
            if header is None:
                raise ValueError(f"CSV file {path!r} is empty; expected a header row.")
            header = [h.strip() for h in header]
            for col in (x_col, y_col):
                if col not in header:
                    raise ValueError(
                        f"Column {col!r} not found in {path!r}. Columns present: {header}. "
                        "Pass `x_col=` / `y_col=` naming one of them."
                    )
            xi, yi = header.index(x_col), header.index(y_col)
            rows = []
            row_number = 0
            for row in reader:
                if not row:  # blank line
                    continue
                row_number += 1
                x = row[xi] if xi < len(row) else None
                y = row[yi] if yi < len(row) else None
                rows.append((row_number, reader.line_num, x, y, max(0, len(row) - len(header))))
    except UnicodeDecodeError as err:
        raise ValueError(
            f"Could not read {path!r} as {encoding!r} (byte {err.start}: {err.reason}). "
            "Pass the file's encoding, e.g. encoding='latin-1'."
        ) from None
    except csv.Error as err:
        raise ValueError(f"Malformed CSV {path!r}: {err}") from None
    return rows


def _listing(bad) -> str:
    shown = "; ".join(f"{where}: {reason}" for where, reason in bad[:_MAX_LISTED])
    if len(bad) > _MAX_LISTED:
        shown += f"; ... and {len(bad) - _MAX_LISTED} more"
    return shown
