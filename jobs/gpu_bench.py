"""Model-only images/s per GPU for each engine (transformers; vLLM where importable) at 224 and 448 px.

Needs torch, transformers, pydantic and pycocotools (no Ray), so it runs on a bare GPU machine: `python
jobs/gpu_bench.py --output gpu.json`. Prints one JSON line per measurement as it ends and writes them all to --output
(docs/performance.md, "On a GPU").
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from pipelines.devtools.gpu_bench import run_gpu_bench  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True, help="JSON file for the results.")
    parser.add_argument("--model", default="paligemma2-3b", choices=["paligemma2-3b", "cpu-mid", "tiny"],
                        help="Random-weight architecture (default: paligemma2-3b).")
    parser.add_argument("--sizes", default="224,448", help="Comma-separated resolutions (default: 224,448).")
    parser.add_argument("--images", type=int, default=64, help="Images per measurement (default: 64).")
    parser.add_argument("--batch-size", default="32",
                        help="transformers: requests per generate call, comma-separated for several (default: 32).")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="Where the model runs.")
    parser.add_argument("--quantization", default="none",
                        help="Comma-separated: the transformers engine at each of none, 8bit, 4bit (default: none).")
    parser.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float32"],
                        help="The model's dtype (auto: bfloat16 on CUDA, float32 on CPU).")
    parser.add_argument("--peak-tflops", type=float, default=989.0,
                        help="The accelerator's dense bf16 peak, for the roofline fraction (default: H100/H200 989).")
    args = parser.parse_args(argv)
    results = run_gpu_bench(args.model, tuple(int(s) for s in args.sizes.split(",")), args.images,
                            tuple(int(b) for b in args.batch_size.split(",")), args.device, args.peak_tflops,
                            quantizations=tuple(q.strip() for q in args.quantization.split(",") if q.strip()),
                            dtype=args.dtype, report=lambda row: print(json.dumps(row), flush=True))
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
