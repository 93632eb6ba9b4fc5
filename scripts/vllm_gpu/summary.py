"""Collect the step results in OUT (vllm_*.json) into vllm_summary.json and print one line per step.

    python3 scripts/vllm_gpu/summary.py OUT
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

STEPS = ("vllm_correctness", "vllm_correctness_sm75", "vllm_cudagraph", "vllm_e2e", "vllm_bench")


def summarize(out: Path) -> dict:
    summary = {}
    for step in STEPS:
        path = out / f"{step}.json"
        if not path.is_file():
            continue
        data = json.loads(path.read_text())
        line = {"status": data.get("status"), "seconds": data.get("seconds"), "device": data.get("device"),
                "vllm": data.get("vllm")}
        if "checked" in data:
            line["cases"] = f"{data['checked'] - data.get('failed', 0)}/{data['checked']} passed"
        if "replays" in data:
            line["replays"] = f"{sum(r['ok'] for r in data['replays'])}/{len(data['replays'])} passed"
        if "comparisons" in data:
            line["runs"] = {k: v["ok"] for k, v in data["comparisons"].items()}
        if data.get("error"):
            line["error"] = data["error"]
        summary[step] = line
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    out = ap.parse_args().out
    summary = summarize(out)
    (out / "vllm_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    for step, line in summary.items():
        print(f"{step:<24} {line['status']:<8} " + json.dumps({k: v for k, v in line.items() if k != "status"}))
    sys.exit(0 if summary and all(v["status"] in ("passed", "skipped") for v in summary.values()) else 1)


if __name__ == "__main__":
    main()
