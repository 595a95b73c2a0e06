"""`AuditReport`: what `tlkit.data.audit` found, as text or JSON; `check_no_leakage`."""

from __future__ import annotations

import dataclasses
import json
import logging
import os

logger = logging.getLogger(__name__)

_SHOWN = 20


class DataLeakageError(ValueError):
    """The same (or nearly the same) example is in more than one split."""


IMBALANCE_SUGGESTION_RATIO = 3.0
"""Largest / smallest class count of the training split from which the audit suggests class
weights or focal loss (a rule of thumb; nothing in this repository measured the threshold)."""


@dataclasses.dataclass
class AuditReport:
    """Findings of a data audit. Every finding names its split and its file (or index).

    Attributes:
        source: what was audited.
        splits: split names, e.g. `["train", "val", "test"]` (`["all"]` for a single folder).
        class_names: the class list labels are checked against.
        class_counts: split → class → examples.
        imbalance_ratio: split → largest / smallest class count (`None` when a class is empty).
        num_examples: split → examples audited.
        unreadable: `{"split", "item", "reason"}` for files that cannot be decoded.
        unexpected: `{"split", "item", "issue", "size", "mode"}` for images whose size or mode
            differs from most (`size` is `[height, width]`).
        exact_duplicates: groups `{"items": [{"split", "item", "label"}, ...], "cross_split":
            bool, "label_conflict": bool}` of identical content (hash of the decoded pixels, or
            of the text / array); `label_conflict`: the copies carry different labels;
            `cross_split`: the copies leak across train / val / test (the unlabelled pool,
            split `"unlabeled"` with label `None`, counts as train).
        near_duplicates: `{"a", "b", "similarity", "cross_split"}` pairs whose embeddings'
            cosine similarity is at least `near_dup_threshold` (not already exact duplicates).
        unknown_labels: `{"split", "item", "label"}` for labels outside `class_names`.
        dominant_size, dominant_mode: the most common image size `[h, w]` and mode.
        size_range: when no size is shared by half the images, `{"distinct": n, "height":
            [min, max], "width": [min, max]}` (pixels), else `None`.
        notes: anything else worth knowing (sampling, ignored files, ...).

    Example:
    ```python
    report = tlkit.data.audit("data/")
    print(report.to_text())
    report.save("runs/audit.json")
    if report.has_leakage:
        print(report.leaks)
    ```
    """

    source: str
    splits: list[str]
    class_names: list[str]
    class_counts: dict[str, dict[str, int]]
    imbalance_ratio: dict[str, float | None]
    num_examples: dict[str, int]
    unreadable: list[dict] = dataclasses.field(default_factory=list)
    unexpected: list[dict] = dataclasses.field(default_factory=list)
    exact_duplicates: list[dict] = dataclasses.field(default_factory=list)
    near_duplicates: list[dict] = dataclasses.field(default_factory=list)
    unknown_labels: list[dict] = dataclasses.field(default_factory=list)
    dominant_size: list[int] | None = None
    dominant_mode: str | None = None
    size_range: dict | None = None
    near_dup_threshold: float | None = None
    notes: list[str] = dataclasses.field(default_factory=list)

    # -- imbalance -----------------------------------------------------------------------------
    @property
    def imbalance_suggestion(self) -> str | None:
        """One line suggesting class weights or focal loss (naming their recipe keys) when the
        training split's imbalance ratio is at least `IMBALANCE_SUGGESTION_RATIO`, else `None`."""
        from tlkit.config import FIELDS

        split = "train" if "train" in self.splits else (self.splits[0] if self.splits else None)
        ratio = self.imbalance_ratio.get(split) if split else None
        if ratio is None or ratio < IMBALANCE_SUGGESTION_RATIO:
            return None
        weights, loss = FIELDS["class_weight"].metadata["yaml"], FIELDS["loss_type"].metadata["yaml"]
        return (f"class imbalance: {split} ratio {ratio:.1f} (>= {IMBALANCE_SUGGESTION_RATIO:g}); "
                f"consider {weights}: balanced or {loss}: focal in the recipe "
                "(FineTuneConfig.class_weight / loss_type in Python)")

    # -- leakage -------------------------------------------------------------------------------
    @property
    def leaks(self) -> list[dict]:
        """Duplicates spanning splits: `{"kind": "exact"|"near", "items": [...], ...}`."""
        out = [
            {"kind": "exact", "items": g["items"]}
            for g in self.exact_duplicates
            if g["cross_split"]
        ]
        out += [
            {"kind": "near", "items": [p["a"], p["b"]], "similarity": p["similarity"]}
            for p in self.near_duplicates
            if p["cross_split"]
        ]
        return out

    @property
    def label_conflicts(self) -> list[dict]:
        """Exact duplicates filed under different classes (`exact_duplicates` groups)."""
        return [g for g in self.exact_duplicates if g.get("label_conflict")]

    @property
    def has_leakage(self) -> bool:
        """True when an exact or near duplicate appears in more than one split."""
        return bool(self.leaks)

    @property
    def has_issues(self) -> bool:
        return bool(
            self.unreadable
            or self.unexpected
            or self.exact_duplicates
            or self.near_duplicates
            or self.unknown_labels
        )

    # -- output --------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["has_leakage"] = self.has_leakage
        out["leaks"] = self.leaks
        out["label_conflicts"] = self.label_conflicts
        return out

    def to_json(self, indent: int = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, default=str)

    def save(self, path) -> str:
        """Writes JSON (or text, for a `.txt` / `.md` path); returns the path."""
        path = os.fspath(path)
        text = self.to_text() if path.endswith((".txt", ".md")) else self.to_json()
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        tmp = f"{path}.tmp-{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
        return path

    def to_text(self) -> str:
        """A readable report, one section per finding."""
        lines = [f"Data audit: {self.source}"]
        for split in self.splits:
            if split not in self.class_counts:  # the unlabelled pool: no classes
                lines.append(f"  {split}: {self.num_examples.get(split, 0)} examples (no labels)")
                continue
            counts = self.class_counts.get(split, {})
            ratio = self.imbalance_ratio.get(split)
            ratio_text = f"{ratio:.2f}" if ratio is not None else "n/a (a class has no examples)"
            lines.append(
                f"  {split}: {self.num_examples.get(split, 0)} examples, imbalance ratio "
                f"{ratio_text}"
            )
            lines.append("    " + ", ".join(f"{c}={n}" for c, n in counts.items()))
        if self.size_range is not None:
            r = self.size_range
            lines.append(
                f"  image sizes: {r['distinct']} distinct, height {r['height'][0]}-"
                f"{r['height'][1]} px, width {r['width'][0]}-{r['width'][1]} px; most are "
                f"{self.dominant_mode}"
            )
        elif self.dominant_size is not None:
            lines.append(
                f"  most images: {self.dominant_size[0]}x{self.dominant_size[1]} "
                f"{self.dominant_mode}"
            )
        if self.imbalance_suggestion:
            lines.append(f"  {self.imbalance_suggestion}")
        lines.append(f"  leakage across splits: {'YES' if self.has_leakage else 'no'}")
        sections = [
            ("Unreadable / corrupt files", self.unreadable, _fmt_unreadable),
            ("Unexpected size or mode", self.unexpected, _fmt_unexpected),
            ("Label conflicts (same content, different classes)", self.label_conflicts,
             lambda g: _fmt_conflict(g, self.class_names)),
            ("Exact duplicates", [g for g in self.exact_duplicates if not g.get("label_conflict")],
             _fmt_group),
            (
                f"Near duplicates (cosine >= {self.near_dup_threshold})",
                self.near_duplicates,
                _fmt_pair,
            ),
            ("Labels outside the class list", self.unknown_labels, _fmt_label),
        ]
        for title, findings, fmt in sections:
            if title.startswith("Near") and self.near_dup_threshold is None:
                lines.append(
                    "Near duplicates: not searched (needs a feature model: in Python, "
                    "tlkit.data.audit(data, backbone_model=feature_model))"
                )
                continue
            lines.append(f"{title}: {len(findings)}")
            for finding in findings[:_SHOWN]:
                lines.append("  - " + fmt(finding))
            if len(findings) > _SHOWN:
                lines.append(f"  ... and {len(findings) - _SHOWN} more (see to_json())")
        for note in self.notes:
            lines.append(f"Note: {note}")
        return "\n".join(lines)


def _ref(entry: dict) -> str:
    return f"{entry['split']}:{entry['item']}"


def _fmt_unreadable(f):
    return f"{_ref(f)} ({f['reason']})"


def _fmt_unexpected(f):
    size = f"{f['size'][0]}x{f['size'][1]}" if f.get("size") else "?"
    return f"{_ref(f)}: {f['issue']} (size {size}, mode {f.get('mode')})"


def _fmt_group(g):
    tag = " [ACROSS SPLITS]" if g["cross_split"] else ""
    return " == ".join(_ref(i) for i in g["items"]) + tag


def _fmt_conflict(g, class_names):
    def name(label):
        if isinstance(label, int) and 0 <= label < len(class_names):
            return class_names[label]
        return str(label)

    return " vs ".join(f"{_ref(i)} labelled {name(i.get('label'))!r}" for i in g["items"]) + (
        " [ACROSS SPLITS]" if g["cross_split"] else ""
    )


def _fmt_pair(p):
    tag = " [ACROSS SPLITS]" if p["cross_split"] else ""
    return f"{_ref(p['a'])} ~ {_ref(p['b'])} (cosine {p['similarity']:.3f}){tag}"


def _fmt_label(f):
    return f"{_ref(f)}: label {f['label']!r}"


def check_no_leakage(
    report: AuditReport, allow: bool = False, allow_hint: str = "pass allow=True"
) -> list[dict]:
    """Raises `DataLeakageError` when the same example is in several splits, unless `allow`.

    Args:
        report: an `AuditReport` from `tlkit.data.audit`.
        allow: only log a warning instead of raising.
        allow_hint: how the caller's user turns `allow` on, for the message (default
            `"pass allow=True"`; the recipe runner names its recipe key).

    Returns:
        The leaks (empty when there are none).

    Raises:
        DataLeakageError: (a `ValueError`) listing the leaked files.

    Example:
    ```python
    tlkit.data.check_no_leakage(tlkit.data.audit("data/"))
    ```
    """
    leaks = report.leaks
    if not leaks:
        return leaks
    listed = "; ".join(
        " == ".join(_ref(i) for i in leak["items"])
        + (f" (cosine {leak['similarity']:.3f})" if leak["kind"] == "near" else "")
        for leak in leaks[:_SHOWN]
    )
    more = f"; ... and {len(leaks) - _SHOWN} more" if len(leaks) > _SHOWN else ""
    message = (
        f"{len(leaks)} example(s) appear in more than one split of {report.source} "
        f"(validation/test scores would be inflated): {listed}{more}. Remove each from all but "
        f"one split, or {allow_hint} to proceed anyway."
    )
    if allow:
        logger.warning(message)
        return leaks
    raise DataLeakageError(message)
