"""Write a tiny random PaliGemma checkpoint (safetensors + processor) for offline tests and demos."""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from pipelines.devtools.tiny_model import save_tiny_paligemma  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", required=True, help="Directory to write the checkpoint to.")
    parser.add_argument("--image-size", type=int, default=32, help="Input resolution in pixels (default: 32).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the random weights (default: 0).")
    args = parser.parse_args()
    print(save_tiny_paligemma(args.output, image_size=args.image_size, seed=args.seed))


if __name__ == "__main__":
    main()
