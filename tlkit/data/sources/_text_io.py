"""Reading one text file as one example."""

from __future__ import annotations


def read_text(path: str, encoding: str, strip: bool) -> tuple[str, str | None]:
    """`(text, None)`, or `("", why the file cannot be used)`."""
    try:
        with open(path, encoding=encoding) as f:
            text = f.read()
    except UnicodeDecodeError as err:
        return "", f"not valid {encoding} (byte {err.start}); pass `encoding=`"
    except OSError as err:
        return "", f"{type(err).__name__}: {err}"
    if strip:
        text = text.strip()
    if not text:
        return "", "empty file"
    return text, None
