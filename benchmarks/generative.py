"""Generative stacks against a back-prop VAE of the same size: Parzen-window
log-likelihood of the test set under 10 000 generated samples.

Every entry of ``generative.yaml`` is trained with ``targetprop train``
(features in [0, 1]); the VAE baseline (encoder 784-W1-...-Wk, latent of the
stacks' top width, mirrored decoder) is trained here by Adam on the negative
ELBO for the same number of epochs, and the checkpoint (every 5 epochs)
whose samples score best on validation is kept: its samples get worse as its
learned pixel variance shrinks, so this favours the baseline. Each model then generates the samples
(Algorithm 3's chain from noise for a denoising top, exact ancestral
sampling for the analytic tops, decoder means for the VAE); the Parzen
bandwidth is chosen on the validation split and the log-likelihood of every
test image is averaged (nats, ± standard error), the estimator of the GSN and
GAN papers. A 10×10 grid of each model's samples goes next to the table.

    python benchmarks/generative.py --data fashion-mnist --epochs 20 --jobs 2
    python benchmarks/generative.py --data mnist-5k --epochs 100 --jobs 2

Runs go to benchmarks/runs/generative/ and are reused when complete; results
are merged into benchmarks/results/<data>_generative.{json,md} (``--only``
and ``--no-vae`` run a subset).
"""
from __future__ import annotations

import argparse
import copy
import json
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
import yaml

from accuracy import HERE, run_name, train, write_results
from targetprop.running.data import load_dataset
from targetprop.plotting.images import save_image_rows
from targetprop.rules.generative.inference import generate
from targetprop.core.networks import parse_arch
from targetprop.autoencoders.parzen import parzen_log_likelihood, select_bandwidth
from targetprop.running.runs import load_run
from targetprop.rules.generative.vae import VAE, fit

BANDWIDTHS = [0.05, 0.08, 0.1, 0.13, 0.16, 0.2, 0.25, 0.3, 0.4]


def parzen(samples: torch.Tensor, val: torch.Tensor, test: torch.Tensor) -> dict:
    sigma, _ = select_bandwidth(val[:2000], samples, BANDWIDTHS)
    mean, error = parzen_log_likelihood(test, samples, sigma)
    return {"parzen_log_likelihood": mean, "standard_error": error, "bandwidth": sigma}


def grid(samples: torch.Tensor, shape, path: Path) -> None:
    save_image_rows([samples[i:i + 10] for i in range(0, 100, 10)], shape, path)


def plot_spectrum(spectrum: torch.Tensor, path: Path) -> None:
    """The learned top-level σ_j, sorted (Eq. 22): small σ are signal, σ ≈ 1 noise."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot(range(1, len(spectrum) + 1), spectrum.numpy(), marker=".", ms=3)
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("top-level unit j (sorted)")
    ax.set_ylabel("learned σ_j")
    ax.set_title(f"{int((spectrum < 0.5).sum())} of {len(spectrum)} units carry signal (σ_j < 0.5)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--chain-length", dest="chain_length", type=int, default=20)
    parser.add_argument("--only", help="comma-separated entries of generative.yaml")
    parser.add_argument("--no-vae", dest="no_vae", action="store_true", help="skip the VAE baseline")
    parser.add_argument("--vae-check-every", dest="vae_check_every", type=int, default=5,
                        help="epochs between the VAE's validation checkpoints")
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--runs", default=str(HERE / "runs" / "generative"))
    parser.add_argument("--results", default=str(HERE / "results"))
    args = parser.parse_args()

    spec = yaml.safe_load((HERE / "generative.yaml").read_text())
    common, entries = spec["common"], spec["entries"]
    if args.only:
        entries = {k: v for k, v in entries.items() if k in args.only.split(",")}
    runs = Path(args.runs) / args.data
    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(lambda item: train(item[1]["rule"], item[1].get("settings", {}), common,
                                         args.epochs, runs, args.threads, args.data),
                      entries.items()))

    torch.set_num_threads(args.threads * args.jobs)
    splits = load_dataset(args.data, seed=common.get("seed", 0), standardize=False)
    val, test = splits.val.tensors[0], splits.test.tensors[0]
    stem = args.data.replace("-", "_")
    results = Path(args.results)
    table = {}
    for name, entry in entries.items():
        settings = entry.get("settings", {})
        run = load_run(runs / run_name(entry["rule"], settings))
        generator = torch.Generator().manual_seed(0)
        samples = generate(run.net, run.splits.train.tensors[0], args.samples, args.chain_length,
                           "noise", generator)[-1]
        grid(samples, splits.image_shape, results / f"{stem}_samples_{name}.png")
        summary = json.loads((runs / run_name(entry["rule"], settings) / "summary.json").read_text())
        table[name] = parzen(samples, val, test) | {
            "rule": entry["rule"], "settings": settings, "what": entry["what"],
            "test_reconstruction": summary["test_reconstruction"]}
        if hasattr(run.net.top, "noise"):  # learned corruption: its spectrum is the dimensionality found
            spectrum = run.net.top.noise.spectrum()
            table[name]["top_sigma_spectrum"] = spectrum.tolist()
            table[name]["top_dimensions"] = int((spectrum < 0.5).sum())
            plot_spectrum(spectrum, results / f"{stem}_top_sigma_spectrum.png")
        print(name, table[name])

    if args.no_vae:
        finish(args, results, stem, table)
        return
    torch.manual_seed(0)
    widths = parse_arch(common["arch"]) + [int(common.get("top_width", 256))]
    vae = VAE(splits.num_features, widths, common.get("activation", "tanh"))
    best, curve = {"val": -math.inf}, {}

    def keep_best(epoch: int, model: VAE) -> None:
        """The VAE's samples get worse as its learned pixel variance shrinks:
        keep the epoch whose samples score best on validation."""
        if epoch % args.vae_check_every and epoch != args.epochs:
            return
        samples = model.eval().sample(args.samples, torch.Generator().manual_seed(0))
        score = max(select_bandwidth(val[:2000], samples, BANDWIDTHS)[1])
        model.train()
        print(f"vae epoch {epoch}: validation Parzen log-likelihood {score:.1f}", flush=True)
        curve[epoch] = score
        if score > best["val"]:
            best.update(val=score, epoch=epoch, state=copy.deepcopy(model.state_dict()))

    fit(vae, splits.train.tensors[0], args.epochs, after_epoch=keep_best)
    vae.load_state_dict(best["state"])
    vae.eval()
    samples = vae.sample(args.samples, torch.Generator().manual_seed(0))
    grid(samples, splits.image_shape, results / f"{stem}_samples_vae.png")
    reconstruction = vae.decoder(vae.encode(test)[0]).detach()
    table["vae"] = parzen(samples, val, test) | {
        "what": f"back-prop VAE, encoder {'-'.join(map(str, widths))}, mirrored decoder, "
                f"epoch {best['epoch']} of {args.epochs} (best on validation)",
        "epoch": best["epoch"], "validation_by_epoch": curve, "test_reconstruction": (reconstruction - test).pow(2).mean().item()}
    print("vae", table["vae"])
    finish(args, results, stem, table)


def finish(args, results: Path, stem: str, table: dict) -> None:
    """Merge ``table`` into the saved results and write them."""
    previous = results / f"{stem}_generative.json"  # entries not run keep their earlier rows
    if previous.is_file():
        table = json.loads(previous.read_text()) | table
    order = [*yaml.safe_load((HERE / "generative.yaml").read_text())["entries"], "vae"]
    table = {name: table[name] for name in sorted(table, key=lambda k: order.index(k) if k in order else len(order))}
    lines = [f"| model ({args.epochs} epochs, {args.samples} samples) | Parzen log-likelihood (nats) "
             "| bandwidth | test reconstruction MSE |", "|---|---|---|---|"]
    lines += [f"| `{name}`: {row['what']} | {row['parzen_log_likelihood']:.1f} ± {row['standard_error']:.1f} "
              f"| {row['bandwidth']} | {row['test_reconstruction']:.4f} |" for name, row in table.items()]
    write_results(results, f"{stem}_generative", table, lines)


if __name__ == "__main__":
    main()
