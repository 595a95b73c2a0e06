"""Folder layouts with one subfolder per class, optionally under `train/`, `val/`, `test/`."""

from __future__ import annotations

import dataclasses
import logging
import os

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
TEXT_EXTENSIONS = (".txt",)
SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}
SINGLE = "all"
TRAINING_SPLITS = ("train", SINGLE)
"""Splits whose classes must each have files (the model trains on them)."""


@dataclasses.dataclass
class FolderLayout:
    """What `scan` found.

    Attributes:
        root: the folder scanned.
        split_dirs: split name → folder of class folders; `{"all": root}` for a single folder.
        class_names: the class list (given, else train's class folders, else all of them).
        files: split → sorted `(path, class name)` of files with a wanted extension.
        extra_classes: split → class folders that are not in `class_names`.
        empty_classes: split → classes of `class_names` with no file.
        other_files: files ignored (other extensions, or not inside a class folder).
    """

    root: str
    split_dirs: dict[str, str]
    class_names: list[str]
    files: dict[str, list[tuple[str, str]]]
    extra_classes: dict[str, list[str]]
    empty_classes: dict[str, list[str]]
    other_files: list[str]

    @property
    def has_splits(self) -> bool:
        return SINGLE not in self.split_dirs


def _subdirs(folder: str) -> list[str]:
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))


def _loose_files(folder: str) -> list[str]:
    return sorted(
        os.path.join(folder, e.name)
        for e in os.scandir(folder)
        if e.is_file() and not e.name.startswith(".")
    )


def check_folder(path) -> str:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"Folder not found: {path!r}. Pass an existing folder with one subfolder per class."
        )
    if not os.path.isdir(path):
        raise ValueError(
            f"Expected a folder with one subfolder per class. Received a file: {path!r}"
        )
    return path


def scan(path, extensions, class_names=None, splits=None) -> FolderLayout:
    """Finds split folders, class folders and files under `path` (hidden entries skipped).

    `path` has split layout when every subfolder is a split name (`train`, `val`/`validation`,
    `test`, ...); otherwise its subfolders are the classes.

    Args:
        path: root folder.
        extensions: lower-case file extensions to keep, with the dot.
        class_names: optional fixed class list (order = label index).
        splits: optional split names to keep (split layout only).
    """
    root = check_folder(path)
    extensions = tuple(e.lower() for e in extensions)
    top = _subdirs(root)
    is_split_layout = bool(top) and all(d.lower() in SPLIT_ALIASES for d in top)
    if is_split_layout:
        split_dirs = {SPLIT_ALIASES[d.lower()]: os.path.join(root, d) for d in top}
        if splits is not None:
            unknown = [s for s in splits if s not in split_dirs]
            if unknown:
                raise ValueError(
                    f"Split folder(s) {unknown} not found in {root!r}. Present: {list(split_dirs)}"
                )
            split_dirs = {s: d for s, d in split_dirs.items() if s in splits}
    else:
        if splits is not None and list(splits) != [SINGLE]:
            raise ValueError(
                f"{root!r} has no split folders (train/, val/, test/), so `splits={splits}` "
                f"cannot be used. Its subfolders are read as classes: {top[:10]}"
            )
        split_dirs = {SINGLE: root}

    found = {s: _subdirs(d) for s, d in split_dirs.items()}
    if class_names is not None:
        classes = [str(c) for c in class_names]
    elif "train" in found:
        classes = list(found["train"])
    else:
        classes = sorted({c for names in found.values() for c in names})

    files: dict[str, list[tuple[str, str]]] = {}
    extra: dict[str, list[str]] = {}
    empty: dict[str, list[str]] = {}
    other: list[str] = []
    for split, split_dir in split_dirs.items():
        other.extend(_loose_files(split_dir))
        files[split] = []
        extra[split] = [c for c in found[split] if c not in classes]
        for class_name in found[split]:
            for dirpath, dirnames, filenames in os.walk(os.path.join(split_dir, class_name)):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for fname in sorted(filenames):
                    if fname.startswith("."):
                        continue
                    full = os.path.join(dirpath, fname)
                    if os.path.splitext(fname)[1].lower() in extensions:
                        files[split].append((full, class_name))
                    else:
                        other.append(full)
        present = {c for _, c in files[split]}
        empty[split] = [c for c in classes if c not in present]
    return FolderLayout(root, split_dirs, classes, files, extra, empty, sorted(other))


def require_classes(layout: FolderLayout, extensions, what: str = "image") -> None:
    """Raises when a loader cannot use `layout`: no classes, one class, no files, unknown
    class folders in val/test, or a class with no files in the training split (one line naming
    it; a class empty only in val / test is a warning)."""
    root = layout.root
    example = os.path.join(root, "<class name>", f"example{extensions[0]}")
    if layout.has_splits:
        example = os.path.join(root, "train", "<class name>", f"example{extensions[0]}")
    if not layout.class_names:
        seen = [os.path.relpath(p, root) for p in layout.other_files[:5]]
        raise ValueError(
            f"No class subfolders found in {root!r}. Expected one subfolder per class, e.g. "
            f"{example!r}, optionally under train/, val/, test/. Files found at the top: {seen}"
        )
    if len(layout.class_names) < 2:
        raise ValueError(
            f"Found only 1 class ({layout.class_names[0]!r}) in {root!r}. Classification needs "
            "at least 2 classes: add a subfolder per class."
        )
    total = sum(len(f) for f in layout.files.values())
    if total == 0:
        seen = [os.path.relpath(p, root) for p in layout.other_files[:5]]
        raise ValueError(
            f"No {what} files ({', '.join(extensions)}) found in the class folders of {root!r} "
            f"(the folder is empty or holds other files: {seen}). Expected e.g. {example!r}."
        )
    for split, names in layout.extra_classes.items():
        if names:
            raise ValueError(
                f"Split {split!r} of {root!r} has class folder(s) {names} that are not in the "
                f"class list {layout.class_names}. Rename or remove them, or pass `class_names`."
            )
    for split, names in layout.empty_classes.items():
        if names and split in TRAINING_SPLITS:
            # A class without training examples would sit in the head with 0 examples.
            where = os.path.join(root, split) if layout.has_splits else root
            raise ValueError(
                f"class folder(s) {names} in {where!r} hold no {what} files "
                f"({', '.join(extensions)}): every class needs training examples; add files, "
                "or remove the folder (or leave the class out of `class_names`)")
        if names:
            logger.warning("%s: no %s files for class(es) %s in split %r", root, what, names, split)


def require_readable(layout: FolderLayout, skipped, what: str = "image") -> None:
    """Raises when every file of a class in the training split was skipped as unreadable
    (`skipped`: `Skipped` entries), naming the class and the first file's problem."""
    bad = {s.source: s.reason for s in skipped}
    for split, files in layout.files.items():
        if split not in TRAINING_SPLITS:
            continue
        for class_name in layout.class_names:
            mine = [p for p, c in files if c == class_name]
            if mine and all(p in bad for p in mine):
                first = mine[0]
                shown = first if _utf8(first) else os.fsencode(first).decode("utf-8",
                                                                           "backslashreplace")
                raise ValueError(
                    f"class {class_name!r}: all {len(mine)} {what} file(s) in split {split!r} "
                    f"are unreadable (first: {shown}: {bad[first]}); fix or replace them, or "
                    "remove the class folder")


def _utf8(path) -> bool:
    try:
        path.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False
