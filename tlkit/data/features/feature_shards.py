"""Feature caches on disk as fixed-size shards with a manifest: streamed, verified, resumable.

`extract_feature_shards` runs a feature model over a dataset once and writes the features in
shards of `shard_size` examples (`shard-<key>-<k>.x.npy` / `.y.npy`, each written to a temporary
name, flushed, then renamed) plus a manifest `manifest-<key>.json` (rewritten atomically after
every shard) that records what the features were made from and each shard's SHA-256.

- Reuse: a cache is used only when its key matches: the `describe` dict (backbone name,
  input size, preprocessing, ...), the feature model's weights fingerprint and the data
  fingerprint. A cache made from anything else is never reused: a warning names what differs,
  and the features are extracted again (the old cache is deleted only once the new one is
  complete).
- Resume: a run killed mid-way leaves its finished shards listed in the manifest; the next call
  checks them and extracts only the remaining examples (`ds.skip`).
- Corruption: every shard's checksum is verified when the cache is opened; from the first bad
  shard on, the features are extracted again.
- Out of disk: a shard that fails to write is removed, the manifest still lists only complete
  shards, and the error propagates: nothing already cached is lost.

`ShardedFeatures.dataset()` streams the shards through tf.data, one shard at a time (memory
bounded by the shard size, not N; memory-mapped when local); `.arrays()` loads everything when
it fits. `folder` may be a non-local path such as `gs://bucket/cache`: all I/O then goes through
`tf.io.gfile` (`_gfile_io`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import os
import time

import numpy as np
import tensorflow as tf

from tlkit._progress import progbar
from tlkit.data.features._feature_model import call_feature_model
from tlkit.data.features._gfile_io import atomic_write as _atomic_write
from tlkit.data.features._gfile_io import basename, join, load_npy, open_binary, open_text
from tlkit.data.features.feature_cache import weights_fingerprint

logger = logging.getLogger(__name__)

_FORMAT = 1


@dataclasses.dataclass
class ShardedFeatures:
    """A complete sharded feature cache: `folder`, its `manifest` and its shard files."""

    folder: str
    manifest: dict

    @property
    def num_examples(self) -> int:
        return int(sum(s["count"] for s in self.manifest["shards"]))

    @property
    def feature_shape(self) -> tuple:
        return tuple(self.manifest["feature_shape"])

    @property
    def nbytes(self) -> int:
        """Bytes of the features when loaded into memory."""
        return int(self.num_examples * np.prod(self.feature_shape) * 4)

    def _paths(self, kind):
        return [join(self.folder, s[kind]) for s in self.manifest["shards"]]

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """All `(features, labels)` in memory (for a cache that fits)."""
        xs = [load_npy(p) for p in self._paths("x")]
        ys = [load_npy(p) for p in self._paths("y")]
        return np.concatenate(xs), np.concatenate(ys)

    def dataset(self, shuffle: bool = False, seed: int = 0) -> tf.data.Dataset:
        """Unbatched `(features, y)`, read one memory-mapped shard at a time.

        Args:
            shuffle: shuffle the shard order and, within a buffer of one shard, the examples
                (reshuffled each epoch, seeded).
            seed: seed of the shuffle.
        """
        files = list(zip(self._paths("x"), self._paths("y")))
        y_first = load_npy(files[0][1], mmap=True)

        def shards():
            order = np.arange(len(files))
            if shuffle:
                order = np.random.default_rng([seed, shards.epoch]).permutation(len(files))
                shards.epoch += 1
            for k in order:
                x = load_npy(files[k][0], mmap=True)
                y = load_npy(files[k][1], mmap=True)
                yield np.asarray(x), np.asarray(y)

        shards.epoch = 0
        y_dtype, y_shape = y_first.dtype, tuple(y_first.shape[1:])
        ds = tf.data.Dataset.from_generator(
            shards,
            output_signature=(
                tf.TensorSpec((None, *self.feature_shape), tf.float32),
                tf.TensorSpec((None, *y_shape), tf.as_dtype(y_dtype)),
            ),
        ).unbatch()
        if shuffle:
            size = int(self.manifest["shard_size"])
            ds = ds.shuffle(size, seed=seed, reshuffle_each_iteration=True)
        return ds.apply(tf.data.experimental.assert_cardinality(self.num_examples))


def extract_feature_shards(
    feature_model,
    ds: tf.data.Dataset,
    folder,
    describe: dict | None = None,
    data_fingerprint: str | None = None,
    shard_size: int = 4096,
    batch_size: int = 256,
    progress: bool = False,
    worker: tuple[int, int] | None = None,
    wait_seconds: float = 3600.0,
) -> ShardedFeatures:
    """Extracts (or reuses, or resumes) a sharded feature cache of `ds` in `folder`.

    Args:
        feature_model: a callable mapping a batch of `x` to a batch of features.
        ds: unbatched `(x, y)` dataset in a fixed order.
        folder: the cache folder (created).
        describe: what the features depend on besides the weights, e.g.
            `{"backbone": "efficientnet_lite0", "input_size": [224, 224], "preprocessing": ...}`;
            a cache whose `describe` differs is not reused.
        data_fingerprint: identifies the data (e.g. a hash of the file list); default: the
            number of examples and a hash of the first batch of inputs.
        shard_size: examples per shard (memory of streaming is about one shard).
        batch_size: batch size of the feature model.
        progress: show a `keras.utils.Progbar`.
        worker: `(index, count)` of this process among the workers of a multi-worker job
            (e.g. `(strategy.cluster_resolver.task_id, number of workers)` of a
            `MultiWorkerMirroredStrategy`; `folder` on storage they all see, such as a `gs://`
            path's mount). Worker `index` extracts every `count`-th example
            (`ds.shard(count, index)`) into its own shards and part manifest (resumable on
            its own); worker 0, the chief, waits for every part and writes the manifest of the
            whole cache; the others wait for that. Default `None`: one process does it all.
        wait_seconds: how long a worker waits for the others' parts. Default 3600.

    Returns:
        The complete `ShardedFeatures`.

    Example:
    ```python
    shards = tlkit.data.extract_feature_shards(
        extractor, data.train, "runs/cache/train", describe={"backbone": "efficientnet_lite0"})
    head.fit(shards.dataset(shuffle=True).batch(64), epochs=10)
    ```
    """
    if int(shard_size) < 1 or int(batch_size) < 1:
        raise ValueError(
            f"Expected `shard_size` and `batch_size` >= 1. Received: shard_size={shard_size}, "
            f"batch_size={batch_size}"
        )
    folder = os.fspath(folder)
    tf.io.gfile.makedirs(folder)
    key = {
        "format": _FORMAT,
        "describe": _plain(describe or {}),
        "weights": weights_fingerprint(feature_model),
        "data": data_fingerprint or _data_fingerprint(ds, batch_size),
        "shard_size": int(shard_size),
    }
    key_id = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    manifest_path = join(folder, f"manifest-{key_id}.json")
    _warn_about_other_caches(folder, key_id, key)
    whole = _valid_prefix(folder, manifest_path, key)
    if whole["complete"]:
        logger.info("Reusing %d cached feature vectors in %s", _count(whole), folder)
        return ShardedFeatures(folder, whole)
    index, count = (0, 1) if worker is None else (int(worker[0]), int(worker[1]))
    if not 0 <= index < count:
        raise ValueError(
            f"Expected `worker` as (index, count), 0 <= index < count. Received: {worker}"
        )
    if count == 1:
        manifest = _extract_part(
            feature_model,
            ds,
            folder,
            key_id,
            manifest_path,
            whole,
            shard_size,
            batch_size,
            progress,
        )
    else:
        part_id = f"{key_id}-w{index}of{count}"
        part_path = join(folder, f"manifest-{part_id}.json")
        part = _valid_prefix(folder, part_path, key)
        if not part["complete"]:
            _extract_part(
                feature_model,
                ds.shard(count, index),
                folder,
                part_id,
                part_path,
                part,
                shard_size,
                batch_size,
                progress,
            )
        if index != 0:
            return ShardedFeatures(folder, _wait_for(manifest_path, key, wait_seconds))
        manifest = {**whole, "shards": [], "complete": True}
        for k in range(count):
            path = join(folder, f"manifest-{key_id}-w{k}of{count}.json")
            done = _wait_for(path, key, wait_seconds)
            manifest["shards"].extend(done["shards"])
            manifest["feature_shape"] = done["feature_shape"]
        _write_json(manifest_path, manifest)
    _remove_other_caches(folder, key_id)
    logger.info(
        "Cached %d feature vectors in %d shard(s) in %s",
        _count(manifest),
        len(manifest["shards"]),
        folder,
    )
    return ShardedFeatures(folder, manifest)


def _count(manifest) -> int:
    return sum(s["count"] for s in manifest["shards"])


def _extract_part(
    feature_model, ds, folder, part_id, manifest_path, manifest, shard_size, batch_size, progress
) -> dict:
    """Extracts the examples of `ds` the manifest does not list yet; marks it complete."""
    done = _count(manifest)
    if done:
        logger.info("Resuming feature extraction in %s after %d examples", folder, done)
    card = int(ds.cardinality())
    bar = progbar(card if card >= 0 else None, progress)
    pending_x, pending_y, seen = [], [], done
    for x, y in ds.skip(done).batch(int(batch_size)).prefetch(tf.data.AUTOTUNE):
        out = call_feature_model(feature_model, x).astype("float32", copy=False)
        pending_x.append(out)
        pending_y.append(np.asarray(y))
        seen += len(out)
        bar.update(seen)
        while sum(len(p) for p in pending_x) >= shard_size:
            pending_x, pending_y = _flush(
                folder, part_id, manifest, manifest_path, pending_x, pending_y, shard_size
            )
    if pending_x:
        _flush(folder, part_id, manifest, manifest_path, pending_x, pending_y, None)
    if not manifest["shards"]:
        raise ValueError("extract_feature_shards got an empty dataset.")
    manifest["complete"] = True
    _write_json(manifest_path, manifest)
    return manifest


def _wait_for(path, key, wait_seconds) -> dict:
    """The complete manifest at `path` once another worker has written it."""
    deadline = time.monotonic() + float(wait_seconds)
    while True:
        if tf.io.gfile.exists(path):
            manifest = _read_json(path)
            if manifest is not None and manifest.get("key") == key and manifest["complete"]:
                return manifest
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"Waited {wait_seconds:.0f} s for {path}, the feature cache of another worker. "
                "Check that every worker runs, with the same data, model and cache folder, or "
                "raise `wait_seconds`."
            )
        time.sleep(0.2)


# -- manifest ----------------------------------------------------------------------------------
def _plain(value):
    return json.loads(json.dumps(value, default=str))


def _data_fingerprint(ds, batch_size) -> str:
    digest = hashlib.sha1(f"n={int(ds.cardinality())}".encode())
    for x, y in ds.batch(int(batch_size)).take(1):
        digest.update(np.ascontiguousarray(np.asarray(x)).tobytes())
        digest.update(np.ascontiguousarray(np.asarray(y)).tobytes())
    return digest.hexdigest()


def _read_json(path):
    """A manifest, or `None` (with a warning; the cache is rebuilt) when it is unreadable, not
    JSON or not a JSON object with a `shards` list."""
    try:
        with open_text(path) as f:
            data = json.load(f)
    except (OSError, tf.errors.OpError, ValueError, RecursionError) as err:
        logger.warning("Ignoring unreadable feature-cache manifest %s (%s)", path, err)
        return None
    if not isinstance(data, dict) or not isinstance(data.get("shards", []), list) or (
            not isinstance(data.get("key", {}), dict)):
        logger.warning("Ignoring feature-cache manifest %s: not a manifest (a JSON object with "
                       "'key' and 'shards'); the cache is rebuilt", path)
        return None
    return data


def _warn_about_other_caches(folder, key_id, key) -> None:
    for other in sorted(tf.io.gfile.glob(join(folder, "manifest-*.json"))):
        if basename(other).startswith(f"manifest-{key_id}"):
            continue  # this cache, or one worker's part of it
        old = _read_json(other)
        if old is None:
            continue
        differs = [
            f"{name}: cached {old['key'].get(name)!r}, now {key[name]!r}"
            for name in ("describe", "weights", "data", "shard_size", "format")
            if old.get("key", {}).get(name) != key[name]
        ]
        logger.warning(
            "Feature cache %s was made from other inputs and is not reused (%s); extracting "
            "again (the old cache is removed once the new one is complete).",
            other,
            "; ".join(differs) or "unknown",
        )


def _valid_prefix(folder, manifest_path, key) -> dict:
    """The manifest cut at its first missing or corrupt shard (new when there is none)."""
    fresh = {
        "key": key,
        "complete": False,
        "shards": [],
        "feature_shape": None,
        "shard_size": key["shard_size"],
    }
    if not tf.io.gfile.exists(manifest_path):
        return fresh
    manifest = _read_json(manifest_path)
    if manifest is None or manifest.get("key") != key:
        return fresh
    for k, shard in enumerate(manifest["shards"]):
        bad = [
            name
            for name in ("x", "y")
            if _sha256(join(folder, shard[name])) != shard[f"{name}_sha256"]
        ]
        if bad:
            logger.warning(
                "Feature-cache shard %s is missing or corrupt (checksum mismatch); extracting "
                "again from example %d.",
                shard["x"],
                sum(s["count"] for s in manifest["shards"][:k]),
            )
            manifest["shards"] = manifest["shards"][:k]
            manifest["complete"] = False
            break
    return manifest


def _sha256(path) -> str | None:
    digest = hashlib.sha256()
    try:
        with open_binary(path) as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except (OSError, tf.errors.OpError):
        return None
    return digest.hexdigest()


def _flush(folder, key_id, manifest, manifest_path, pending_x, pending_y, shard_size):
    x, y = np.concatenate(pending_x), np.concatenate(pending_y)
    cut = len(x) if shard_size is None else int(shard_size)
    k = len(manifest["shards"])
    names = {"x": f"shard-{key_id}-{k:05d}.x.npy", "y": f"shard-{key_id}-{k:05d}.y.npy"}
    entry = {"count": int(cut)}
    for name, array in (("x", x[:cut]), ("y", y[:cut])):
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(array))
        data = buffer.getvalue()
        _atomic_write(join(folder, names[name]), lambda f, data=data: f.write(data))
        entry[name] = names[name]
        entry[f"{name}_sha256"] = hashlib.sha256(data).hexdigest()
    manifest["shards"].append(entry)
    manifest["feature_shape"] = list(x.shape[1:])
    _write_json(manifest_path, manifest)  # after the shard: lists only complete shards
    rest_x, rest_y = x[cut:], y[cut:]
    return ([rest_x] if len(rest_x) else []), ([rest_y] if len(rest_y) else [])


def _remove_other_caches(folder, key_id) -> None:
    for other in tf.io.gfile.glob(join(folder, "manifest-*.json")):
        if not basename(other).startswith(f"manifest-{key_id}"):
            tf.io.gfile.remove(other)
    for shard in tf.io.gfile.glob(join(folder, "shard-*.npy")):
        if not basename(shard).startswith(f"shard-{key_id}-"):
            tf.io.gfile.remove(shard)


def _write_json(path, payload) -> None:
    data = json.dumps(payload, indent=2).encode()
    _atomic_write(path, lambda f: f.write(data))
