"""A recipe end to end: search its learning rate and dropout, then train the best one.

    python examples/recipe_with_tuning.py recipes/quickstart.yaml   # a recipe with a `tune:` section
    python examples/recipe_with_tuning.py --tiny                    # seconds: the smoke recipe

The same two steps from a shell:

    tlkit tune RECIPE --output runs/search       # writes runs/search/.../best_recipe.yaml
    tlkit train runs/search/.../best_recipe.yaml # the best trial's settings, trained and reported

A recipe's `tune:` section names the search (`algorithm`, `max_trials`, `objective`) and its
`space` (recipe keys such as `optimizer.lr`); see recipes/README.md.
"""

import argparse
import glob
import json
import os

from tlkit import cli

HERE = os.path.dirname(os.path.abspath(__file__))
SMOKE = os.path.join(HERE, "..", "recipes", "smoke.yaml")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recipe", nargs="?", help="a recipe YAML with a tune: section")
    parser.add_argument("--out", default="runs/recipe_with_tuning", help="output folder")
    parser.add_argument("--tiny", action="store_true",
                        help="the smoke recipe (tiny backbone, 100 digits), 2 trials of 1 + 1 epochs")
    args = parser.parse_args(argv)
    if not (args.recipe or args.tiny):
        parser.error("give a recipe, or --tiny")

    recipe = args.recipe or SMOKE
    small = ["--set", "tune.max_trials=2", "--set", "phases.head_epochs=1",
             "--set", "phases.fine_epochs=1", "--set", "phases.min_steps_per_epoch=1",
             "--set", "data.per_class.train=10", "--set", "output.tensorboard=false"
             ] if args.tiny else []
    search = os.path.join(args.out, "search")
    if cli.main(["tune", recipe, "--output", search, *small]) != 0:
        raise SystemExit("the search failed (its error is printed above)")

    best = glob.glob(os.path.join(search, "**", "best_recipe.yaml"), recursive=True)[0]
    with open(best, encoding="utf-8") as f:
        print(f"best recipe ({best}):\n{f.read()}")
    run = os.path.join(args.out, "run")
    if cli.main(["train", best, "--output", run, "--force", *small[2:]]) != 0:
        raise SystemExit("training failed (its error is printed above)")
    with open(os.path.join(run, "metrics.json"), encoding="utf-8") as f:
        return json.load(f)


if __name__ == "__main__":
    main()
