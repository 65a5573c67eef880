"""A strategy of your own, in a few lines: the classifier head alone, trained with AdamW.

python examples/custom_strategy.py path/to/images
python examples/custom_strategy.py                  # a small generated folder

A strategy names itself, declares its Optuna search space and its first configuration,
and trains through autotransfer's one training loop; a plugin registers it. Here the
plugin is this script, registered in code; to ship one, see plugins/autotransfer-lpft.
"""

import argparse
import sys
import tempfile
from pathlib import Path

import autotransfer
from autotransfer import plugins
from autotransfer.strategies import loop
from autotransfer.strategies.models import new_classifier, preprocessing


class HeadOnlyAdamW:
    name = "head_only_adamw"
    description = "frozen backbone; the new head trained with AdamW on augmented images"
    relative_cost = 0.3

    def suggest(self, space, *, search):
        return {
            "lr": space.suggest_float("lr", 1e-4, 1e-1, log=True),
            "epochs": space.suggest_int("epochs", 2, 20),
        }

    def defaults(self, *, search):
        return {"lr": 1e-2, "epochs": 10}

    def train(self, ctx):
        def build():
            model = new_classifier(ctx).requires_grad_(False)
            head = model.get_classifier().requires_grad_(True)
            # frozen: the whole backbone stays in eval mode (BatchNorm statistics kept)
            groups = [{"params": list(head.parameters()), "lr": ctx.params["lr"]}]
            return loop.Trainable(model, groups, frozen=[model])

        schedule = loop.Schedule(epochs=ctx.params["epochs"], optimizer="adamw", decay="cosine")
        return loop.train(ctx, build, schedule, preprocessing(ctx))


@autotransfer.hookimpl
def autotransfer_register_strategies():
    return [HeadOnlyAdamW()]


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("folder", nargs="?", help="image folder (default: a generated one)")
    parser.add_argument("--backbones", default=None, help="comma-separated (default: offline)")
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--resolution", type=int, default=None)
    parser.add_argument("--run-dir", default=None)
    args = parser.parse_args()

    if args.folder:
        folder = Path(args.folder)
    else:
        from autotransfer.testing.images import make_image_folder

        folder = make_image_folder(
            Path(tempfile.gettempdir()) / "autotransfer-custom", classes=("a", "b", "c")
        )

    plugins.register_plugin(sys.modules[__name__], name="custom_strategy_example")
    result = autotransfer.fit(
        folder,
        strategies=("head_only_adamw", "feature_extraction"),
        n_trials=args.trials,
        time_budget=None,
        backbones=args.backbones.split(",") if args.backbones else None,
        resolution=args.resolution,
        run_dir=args.run_dir,
        trackers=(),
    )
    print(result.leaderboard_table())
    print("picked:", result.best.strategy, "on", result.best.backbone)
