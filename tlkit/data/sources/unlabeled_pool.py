"""The unlabelled pool of a folder loader: every file of a folder, checked against the labelled one.

`from_image_folder(path, unlabeled=DIR)` and `from_text_files(path, unlabeled=DIR)` read the
pool with `find_files`: every file with a wanted extension under `DIR`, at any depth (class
folders, if any, are ignored: the pool has no labels). A pool that is the labelled folder, or
lies inside it (or holds it), is refused: its files would be labelled and unlabelled at once.
"""

from __future__ import annotations

import os


def find_files(path, labelled_root, extensions, what: str = "image",
               key: str = "unlabeled") -> list[str]:
    """Sorted paths of the files with a wanted extension under `path` (hidden entries skipped).

    Args:
        path: the unlabelled folder (`unlabeled=`).
        labelled_root: the labelled folder the loader reads, to refuse overlap (`None`: the
            labelled data are not files, nothing to compare).
        extensions: lower-case extensions with the dot, e.g. `(".png", ".jpg")`.
        what: `"image"` or `"text"`, for messages.
        key: the argument that named the folder, for messages (`"unlabeled"`, `"--pool"`).

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: `path` is a file, is (inside) the labelled folder or holds it, or has no
            file with a wanted extension.

    Example:
    ```python
    files = find_files("photos/unlabelled", "photos/labelled", (".jpg",))
    ```
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{key}: folder not found: {path!r}. Pass an existing folder of unlabelled "
            f"{what} files."
        )
    if not os.path.isdir(path):
        raise ValueError(f"{key}: expected a folder of {what} files. Received a file: {path!r}")
    pool = os.path.realpath(path)
    labelled = os.path.realpath(os.fspath(labelled_root)) if labelled_root is not None else None
    if labelled is not None and (pool == labelled or _inside(pool, labelled) or _inside(labelled, pool)):
        relation = ("is the labelled folder" if pool == labelled else
                    "is inside the labelled folder" if _inside(pool, labelled) else
                    "holds the labelled folder")
        raise ValueError(
            f"{key}: {path!r} {relation} {os.fspath(labelled_root)!r}; its files would be "
            "both labelled and unlabelled. Pass a separate folder of unlabelled files."
        )
    extensions = tuple(e.lower() for e in extensions)
    files, others = [], 0
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            if os.path.splitext(name)[1].lower() in extensions:
                files.append(os.path.join(dirpath, name))
            else:
                others += 1
    if not files:
        raise ValueError(
            f"{key}: no {what} files ({', '.join(extensions)}) in {path!r} "
            f"({'empty' if not others else f'{others} other file(s)'}). Put the unlabelled "
            f"{what} files there, or leave `{key}` out."
        )
    return files


def _inside(child: str, parent: str) -> bool:
    return os.path.commonpath([child, parent]) == parent and child != parent


def readable_images(files, where, channels: int = 3, check: str | None = "decode",
                    cache: bool = True, key: str = "unlabeled"):
    """The image files of a pool that decode: `(good paths, skipped, sizes)`.

    Unreadable files are skipped and logged (as the loaders do); all of them unreadable is an
    error naming the first one.

    Args:
        files: the pool's image paths (`find_files`).
        where: the pool's folder, for messages.
        channels, check, cache: as `from_image_folder`'s `channels`, `check`, `check_cache`.
    """
    from tlkit.data.sources import _images

    skipped, sizes = _images.find_unreadable(files, check, channels, cache=cache)
    bad = {s.source for s in skipped}
    good = [p for p in files if p not in bad]
    if not good:
        first = skipped[0]
        raise ValueError(
            f"{key}: none of the {len(files)} image files in {os.fspath(where)!r} could "
            f"be decoded (first: {_images.printable(first.source)}: {first.reason}); fix or "
            f"replace them, or leave `{key}` out."
        )
    _images.log_skipped(os.fspath(where), skipped)
    return good, skipped, sizes


def readable_texts(files, where, encoding: str = "utf-8", strip: bool = True,
                   key: str = "unlabeled"):
    """The texts of a pool's files that read: `(texts, their paths, skipped)`; all of them
    unreadable (or empty) is an error naming the first one."""
    from tlkit.data.sources._text_io import read_text
    from tlkit.data.sources.labeled_data import Skipped

    texts, paths, skipped = [], [], []
    for path in files:
        text, problem = read_text(path, encoding, strip)
        if problem:
            skipped.append(Skipped(path, problem))
        else:
            texts.append(text)
            paths.append(path)
    if not texts:
        first = skipped[0]
        raise ValueError(
            f"{key}: none of the {len(files)} text files in {os.fspath(where)!r} is "
            f"readable (first: {first.source}: {first.reason}); fix them, or leave "
            f"`{key}` out."
        )
    return texts, paths, skipped
