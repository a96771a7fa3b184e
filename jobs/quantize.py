"""Quantize a PaliGemma checkpoint once (8-bit or 4-bit, bitsandbytes) and save it for jobs/annotate.py.

Model actors then load the saved weights as they are (`--model DIR --quantization 8bit`) instead of
quantizing on every start.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from pipelines.model.checkpoint import ModelLoadError  # noqa: E402
from pipelines.model.quantization import save_quantized  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="Hub id or local directory of the unquantized checkpoint.")
    parser.add_argument("--revision", default=None, help="Hub revision (branch, tag or commit).")
    parser.add_argument("--quantization", required=True, choices=["8bit", "4bit"])
    parser.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float32"],
                        help="The unquantized parts' dtype, and 4-bit's compute dtype (auto: as --device gives).")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="Where to quantize.")
    parser.add_argument("--output", required=True, help="A new local directory for the quantized checkpoint.")
    args = parser.parse_args(argv)
    try:
        print(json.dumps(save_quantized(args.model, args.revision, args.quantization, args.dtype, args.output,
                                        args.device)))
    except (ValueError, ModelLoadError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
