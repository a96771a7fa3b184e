"""Regenerate big_vision_mask_decoder.npz with big_vision's own mask decoder (not run in CI).

    git clone https://github.com/google-research/big_vision /tmp/big_vision
    pip install -e . "jax[cpu]" flax              # in a scratch environment
    python tests/data/make_big_vision_golden.py --big-vision /tmp/big_vision

The evaluator module is imported as it is in the checkout; only the imports it needs for its
evaluation loop (big_vision's data pipeline, tokenizer and TensorFlow) are replaced by empty
modules, since decoding masks does not touch them. Weights come from
`pipelines.devtools.tiny_model.random_vae_arrays`, so the test rebuilds the same file without this script.
"""

import argparse
import importlib.util
import sys
import tempfile
import types
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from pipelines.devtools.tiny_model import random_vae_arrays  # noqa: E402

EVALUATOR = "big_vision/evaluators/proj/paligemma/transfers/segmentation.py"
UNUSED_IMPORTS = ("big_vision", "big_vision.evaluators", "big_vision.evaluators.common", "big_vision.pp",
                  "big_vision.pp.tokenizer", "big_vision.utils", "tensorflow", "tensorflow.io")


def load_evaluator(checkout: Path) -> types.ModuleType:
    for name in UNUSED_IMPORTS:
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["tensorflow.io"].gfile = types.SimpleNamespace(GFile=open)
    spec = importlib.util.spec_from_file_location("big_vision_segmentation", checkout / EVALUATOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big-vision", type=Path, required=True, help="A checkout of google-research/big_vision.")
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("big_vision_mask_decoder.npz"))
    args = parser.parse_args()

    width, seed = 8, 0
    codes = np.random.default_rng(2024).integers(0, 128, (4, 16)).astype(np.int32)
    codes[3] = np.arange(16)
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "vae.npz"
        np.savez(weights, **random_vae_arrays(width, seed))
        # The evaluator's own loader: _get_params, the codebook lookup and Decoder, jitted on CPU.
        reconstruct_masks = load_evaluator(args.big_vision).get_reconstruct_masks(str(weights))
        logits = np.asarray(reconstruct_masks(codes))[..., 0]
    np.savez_compressed(args.output, width=np.int64(width), seed=np.int64(seed), codes=codes.astype(np.int64),
                        logits=logits.astype(np.float32))
    print(f"{args.output}: logits {logits.shape}, range [{logits.min():.3f}, {logits.max():.3f}], "
          f"{(logits > 0).mean():.1%} positive")


if __name__ == "__main__":
    main()
