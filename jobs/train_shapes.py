"""Train the small shapes PaliGemma (detect, segment, caption) and its mask VQ-VAE on CPU."""

import argparse
import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from pipelines.devtools.train_shapes import TrainConfig, train_shapes  # noqa: E402

DEFAULTS = TrainConfig()
# The TrainConfig fields a user may set, with their help; each becomes --field-name with the config's default.
FLAG_HELP = {
    "images": "Training scenes",
    "steps": "PaliGemma optimiser steps",
    "vae_steps": "Mask VQ-VAE optimiser steps",
    "vae_images": "Train the mask VQ-VAE on the first N scenes only (a warm start adding scenes: the first run's "
                  "--images); 0: all",
    "batch_size": "Sequences per step",
    "learning_rate": "Peak learning rate",
    "warmup_steps": "Linear warm-up steps before the cosine decay",
    "seed": "Seed of the scenes and the weights (evaluate on another)",
    "threads": "torch CPU threads",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", required=True, help="Directory for the checkpoint (safetensors, processor "
                        "files, vae-oid.npz, training.json).")
    for name, text in FLAG_HELP.items():
        default = getattr(DEFAULTS, name)
        parser.add_argument("--" + name.replace("_", "-"), type=type(default), default=default,
                            help=f"{text} (default: {default}).")
    parser.add_argument("--init-from", help="A checkpoint this command wrote: train on from its weights instead of "
                        "from scratch (same --seed and --vae-steps, and its --images as --images or --vae-images, "
                        "so its mask codewords are reproduced).")
    args = parser.parse_args()
    output = Path(args.output)
    if output.exists() and any(output.iterdir()):
        parser.error(f"{output} exists and is not empty; pick a new directory")
    cfg = dataclasses.replace(DEFAULTS, init_from=args.init_from, **{name: getattr(args, name) for name in FLAG_HELP})
    summary = train_shapes(output, cfg)
    print(json.dumps({k: v for k, v in summary.items() if k != "config"}))
    print(f"wrote {output} in {summary['total_seconds']:.0f} s")


if __name__ == "__main__":
    main()
