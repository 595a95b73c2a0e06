"""One worker of a MultiWorkerMirroredStrategy job on localhost that audits with shared embeddings.

    python -m tlkit.testing.audit_embedding_job --ports 23456,23457 --index 0 --cache DIR --out F

Each worker audits the same small array data set (`planted_arrays`) with
`tlkit.data.audit(worker=..., embedding_cache_dir=...)` and writes the near-duplicate pairs it
reports and how many examples its own embedding model saw to `--out` (JSON).
"""

import json


def planted_arrays():
    """`{"train": (x, y), "test": (x, y)}`: 8-d rows, with near copies across and within splits."""
    import numpy as np

    rng = np.random.default_rng(0)
    train = rng.standard_normal((120, 8)).astype("float32")
    test = rng.standard_normal((40, 8)).astype("float32")
    for i, j in ((0, 0), (57, 13), (119, 39)):  # leaks from train row i into test row j
        test[j] = train[i] + 0.01 * rng.standard_normal(8).astype("float32")
    train[80] = train[3] + 0.01 * rng.standard_normal(8).astype("float32")  # within train
    labels = {"train": np.arange(120) % 2, "test": np.arange(40) % 2}
    return {"train": (train, labels["train"]), "test": (test, labels["test"])}


def main(argv=None):
    from tlkit.testing.localhost_cluster import cache_job_worker

    args, worker = cache_job_worker(argv)
    import numpy as np

    import tlkit

    seen = {"rows": 0}

    def embed(batch):
        seen["rows"] += int(batch.shape[0])
        return np.asarray(batch)

    report = tlkit.data.audit(
        planted_arrays(),
        backbone_model=embed,
        batch_size=16,
        embedding_cache_dir=args.cache,
        worker=worker,
    )
    pairs = sorted(
        sorted([f"{p['a']['split']}{p['a']['item']}", f"{p['b']['split']}{p['b']['item']}"])
        for p in report.near_duplicates
    )
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump({"pairs": pairs, "embedded": seen["rows"]}, f)


if __name__ == "__main__":
    main()
