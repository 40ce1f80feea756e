"""A generative stack of denoising auto-encoders (Bengio 2014), trained
without labels on the upper and lower halves of each image as two
modalities: draw samples with `targetprop sample` (Algorithm 3), then hide
the lower half of test images and complete it from the upper one with the
Python functions behind `targetprop complete` (Algorithm 6).

    python examples/generative.py --data fashion-mnist --arch mlp:512-256 --epochs 20 --out runs/generative
"""
import argparse
import subprocess
import sys
from pathlib import Path

import matplotlib
matplotlib.use("Agg")  # write PNGs without a display
import matplotlib.pyplot as plt  # noqa: E402

from targetprop.rules.generative.inference import complete, completion_error, part_features
from targetprop.running.runs import load_run


def targetprop(*args):
    # the CLI of the targetprop installed for this Python, whether or not it is on PATH
    subprocess.run([sys.executable, "-m", "targetprop.cli", *map(str, args)], check=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--arch", default="mlp:512-256", help="the stack's widths x -> h_1 -> ...")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--limit", type=int, default=None, help="training images kept (quick runs)")
    parser.add_argument("--n", type=int, default=10, help="test images completed")
    parser.add_argument("--out", default="runs/generative")
    args = parser.parse_args()
    out = Path(args.out)
    limit = ["--set", f"limit={args.limit}"] if args.limit else []

    # a stack is built from an --arch spec, which targetprop.fit does not take: train it from the CLI
    targetprop("train", "--data", args.data, "--rule", "generative", "--arch", args.arch, "--epochs", args.epochs,
               "--set", "modalities=halves", *limit, "--out", out / "run")
    targetprop("sample", out / "run", "--n", 36, "--out", out / "samples.png")  # a 6x6 grid

    run = load_run(out / "run")  # the trained stack, and its data scaled as in training
    x = run.splits.test.tensors[0][:args.n]
    completed = complete(run.net, x, "lower", steps=10)  # the upper half stays exactly as given
    error, mean_fill = completion_error(run.net, run.splits.test.tensors[0], "lower",
                                        fill=run.splits.train.tensors[0].mean(0))

    to_image = run.info.to_unit_range  # from the data's scaling back to pixels in [0, 1]
    hidden = to_image(x).clone()
    hidden[:, part_features(run.net, "lower")] = 0.5  # grey: what the stack did not see
    rows = {"input": hidden, "completed": to_image(completed), "truth": to_image(x)}
    fig, axes = plt.subplots(3, args.n, figsize=(args.n, 3), squeeze=False)
    for i, (name, images) in enumerate(rows.items()):
        axes[i][0].set_title(name, loc="left", fontsize=8)
        for ax, image in zip(axes[i], images):
            ax.imshow(image.reshape(run.info.image_shape).clamp(0, 1), cmap="gray", vmin=0, vmax=1)
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(out / "completion.png", dpi=100)
    print(f"lower half, test mean squared error: completion {error:.4f}, training-mean fill {mean_fill:.4f}")
    print(f"-> {out / 'samples.png'}, {out / 'completion.png'}")


if __name__ == "__main__":
    main()
