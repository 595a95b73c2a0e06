"""Fine-tune a pretrained image backbone on your own photo folder.

    python examples/own_image_folder.py photos/            # photos/<class>/*.jpg
    python examples/own_image_folder.py --tiny             # seconds: synthetic images, tiny backbone

`photos/` holds one sub-folder per class. tlkit holds out 10% per class for validation and 10%
for test, picks a fine-tuning strategy (`auto`), and saves the model next to a prediction.
"""

import argparse
import os
import tempfile

import tlkit


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", help="image folder, one sub-folder per class")
    parser.add_argument("--out", default="runs/own_images", help="where the model is saved")
    parser.add_argument("--tiny", action="store_true",
                        help="synthetic 16 px images and the random `tiny` backbone (a smoke run)")
    args = parser.parse_args(argv)

    if args.tiny:  # a folder of generated shapes stands in for your photos
        args.folder = os.path.join(tempfile.mkdtemp(), "photos")
        tlkit.data.make_image_folder(args.folder, class_names=("circle", "square"), per_class=10)
        data = tlkit.data.from_image_folder(args.folder, image_size=16)
        backbone, epochs = "tiny", (1, 1)
    elif args.folder:
        data = tlkit.data.from_image_folder(args.folder)
        backbone, epochs = "efficientnet_lite0", None  # offline ImageNet weights
    else:
        parser.error("give an image folder, or --tiny")

    model = tlkit.build_model(backbone, data)  # classes and input shape from the data
    kwargs = {"epochs": epochs} if epochs else {}
    result = tlkit.fine_tune(model, data, **kwargs)  # logs the strategy and the test metrics
    print(tlkit.format_summary(model))

    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "model.keras")
    model.save(path)
    some_image = next(os.path.join(r, f) for r, _, fs in os.walk(args.folder) for f in sorted(fs))
    prediction = tlkit.predict(tlkit.load(path), some_image)[0]
    print(f"saved {path}; {some_image}: {prediction['class']} ({prediction['probability']:.2f})")
    return result


if __name__ == "__main__":
    main()
