"""One worker of a MultiWorkerMirroredStrategy job on localhost that extracts sharded features.

    python -m tlkit.testing.shard_extraction_job --ports 23456,23457 --index 0 --cache DIR --out F

Each worker takes its index and the number of workers from the strategy's cluster resolver,
extracts its part of a small fixed dataset with `extract_feature_shards(worker=...)`, and writes
the whole cache it then sees (features, labels, the shard files per worker) to `--out` (`.npz`).
"""


def main(argv=None):
    from tlkit.testing.localhost_cluster import cache_job_worker

    args, worker = cache_job_worker(argv)
    import numpy as np
    import tensorflow as tf

    import tlkit

    x = np.arange(45 * 2, dtype="float32").reshape(45, 2)
    ds = tf.data.Dataset.from_tensor_slices((x, np.arange(45)))
    shards = tlkit.data.extract_feature_shards(
        lambda batch: np.asarray(batch) * 10.0,
        ds,
        args.cache,
        describe={"job": "test"},
        shard_size=8,
        batch_size=4,
        worker=worker,
        wait_seconds=120,
    )
    features, labels = shards.arrays()
    np.savez(
        args.out,
        features=features,
        labels=labels,
        files=np.asarray([s["x"] for s in shards.manifest["shards"]]),
    )


if __name__ == "__main__":
    main()
