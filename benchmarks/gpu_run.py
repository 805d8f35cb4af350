"""The GPU measurements recorded in benchmarks/RESULTS.md, in one process (imports paid once).

    python3 benchmarks/gpu_run.py RESULTS.jsonl      # on a CUDA machine with diffusers installed

Full-size SD1.5-shaped networks with random weights are built directly on the GPU (--random-in-memory); the
default placement (only one phase's large networks on the GPU at a time) is used unless a line says otherwise.
"""

import sys
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the benchmark's modules sit beside this script

import bench  # noqa: E402

RUNS = [
    ["--precision", "fp16", "--size", "512", "--steps", "50", "--note", "fp16 512 50 steps"],
    ["--precision", "fp16", "--size", "768", "--steps", "50", "--note", "fp16 768 50 steps"],
    ["--precision", "fp16", "--size", "512", "--steps", "50", "--low-memory", "--note", "fp16 512 sequential rows"],
    ["--precision", "bf16", "--size", "512", "--steps", "50", "--note", "bf16 512 50 steps"],
    ["--precision", "fp32", "--size", "512", "--steps", "50", "--note", "fp32 512 50 steps"],
    ["--precision", "fp16", "--size", "512", "--steps", "50", "--offload", "off", "--note", "fp16 512 no offload"],
]


def main() -> int:
    results = sys.argv[1] if len(sys.argv) > 1 else str(HERE / "results.jsonl")
    extra = sys.argv[2:]
    failed = 0
    for argv in RUNS:
        try:
            bench.main(["--random-in-memory", "--device", "cuda", "--warmup", "--results", results, *argv, *extra])
        except Exception:  # keep going: later runs still tell something
            traceback.print_exc()
            failed += 1
        import gc

        import torch

        gc.collect()
        torch.cuda.empty_cache()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
