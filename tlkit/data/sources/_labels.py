"""Class lists from label values (strings or integers)."""

from __future__ import annotations


def infer_class_names(values) -> list[str]:
    """Sorted distinct labels; numerically when every label is an integer (`"2"` < `"10"`)."""
    distinct = {str(v).strip() for v in values}
    if distinct and all(_is_int(v) for v in distinct):
        return [str(v) for v in sorted(distinct, key=int)]
    return sorted(distinct)


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True
