"""Train the small shapes PaliGemma (detect, segment, caption) and its mask VQ-VAE on CPU."""

import argparse
import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from pipelines.train_shapes import TrainConfig, train_shapes  # noqa: E402

DEFAULTS = TrainConfig()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", required=True, help="Directory for the checkpoint (safetensors, processor "
                        "files, vae-oid.npz, training.json).")
    parser.add_argument("--images", type=int, default=DEFAULTS.images,
                        help=f"Training scenes (default: {DEFAULTS.images}).")
    parser.add_argument("--steps", type=int, default=DEFAULTS.steps,
                        help=f"PaliGemma optimiser steps (default: {DEFAULTS.steps}).")
    parser.add_argument("--vae-steps", type=int, default=DEFAULTS.vae_steps,
                        help=f"Mask VQ-VAE optimiser steps (default: {DEFAULTS.vae_steps}).")
    parser.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size,
                        help=f"Sequences per step (default: {DEFAULTS.batch_size}).")
    parser.add_argument("--seed", type=int, default=DEFAULTS.seed,
                        help=f"Seed of the scenes and the weights (default: {DEFAULTS.seed}); evaluate on another.")
    parser.add_argument("--threads", type=int, default=DEFAULTS.threads,
                        help=f"torch CPU threads (default: {DEFAULTS.threads}).")
    args = parser.parse_args()
    output = Path(args.output)
    if output.exists() and any(output.iterdir()):
        parser.error(f"{output} exists and is not empty; pick a new directory")
    cfg = dataclasses.replace(DEFAULTS, images=args.images, steps=args.steps, vae_steps=args.vae_steps,
                              batch_size=args.batch_size, seed=args.seed, threads=args.threads)
    summary = train_shapes(output, cfg)
    print(json.dumps({k: v for k, v in summary.items() if k != "config"}))
    print(f"wrote {output} in {summary['total_seconds']:.0f} s")


if __name__ == "__main__":
    main()
