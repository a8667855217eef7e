"""Re-predict every row of a ``benchmarks/memory_gpu.py`` JSON with the current model.

Prints a Markdown table: the prediction stored in the JSON (made on the GPU host), the
prediction of this checkout (``predict_step``; fake tensors, runs on any CPU), and the
measured ``torch.cuda.max_memory_allocated`` (GB = 1e9 B). Usage::

    .venv/bin/python benchmarks/memory_gpu_repredict.py memory_gpu.json
"""

from __future__ import annotations

import argparse
import json

from kneescope.memory import StepConfig, predict_step
from kneescope.models import NetworkConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("gpu_json", help="output of benchmarks/memory_gpu.py")
    args = parser.parse_args()
    with open(args.gpu_json, encoding="utf-8") as fh:
        info = json.load(fh)
    print(f"device {info['device']}, torch {info['torch']} (measured and 'old' predictions)")
    print("| case | predicted old GB | predicted new GB | measured GB | old / measured |"
          " new / measured |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|")
    for row in info["rows"]:
        measured = row.get("max_memory_allocated")
        network = NetworkConfig.model_validate(row["network"])
        new = predict_step(network, StepConfig.model_validate(row["step"])).peak_bytes
        old = row["predicted_peak_bytes"]
        if not measured:
            print(f"| {row['case']} | {old / 1e9:.2f} | {new / 1e9:.2f} | – | – | – |")
            continue
        print(
            f"| {row['case']} | {old / 1e9:.2f} | {new / 1e9:.2f} | {measured / 1e9:.2f} | "
            f"{old / measured:.3f} | {new / measured:.3f} |"
        )


if __name__ == "__main__":
    main()
