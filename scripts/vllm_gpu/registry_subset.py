"""Copy some bundles of a registry into a new, smaller registry with its own index, to carry to a GPU
machine under the carry-size limit (the vLLM payload alone is about 45 MiB of the 64 MiB).

    python3 scripts/vllm_gpu/registry_subset.py OUT_DIR [--from registry] [--bundle sm_90/f16] ...
    e.g. --bundle sm_90/f16 --bundle sm_75/f16   (each also matches its soft-capped kernel sets unless
    --kernel-set narrows them; the default keeps only the `default` set)
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--from", dest="source", type=Path, default=REPO / "registry")
    ap.add_argument("--bundle", action="append", default=[], help="ARCH/DTYPE, e.g. sm_90/f16 (repeatable)")
    ap.add_argument("--kernel-set", action="append", default=None, help="kernel sets to keep (default: default)")
    args = ap.parse_args()

    from qimeng_serve.registry.index import read_index, update_index

    index = read_index(args.source / "index.json")
    sets = set(args.kernel_set or ["default"])
    wanted = {tuple(b.split("/")) for b in args.bundle}
    chosen = [e for e in index["bundles"] if (e["arch"], e["dtype"]) in wanted and e["kernel_set"] in sets]
    if not chosen:
        sys.exit(f"error: no bundle of {args.source} matches {sorted(wanted)} in kernel sets {sorted(sets)}")
    for e in chosen:
        dst = args.out / e["path"]
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(args.source / e["path"], dst)
    update_index(args.out)  # re-reads the copied bundles: sizes and sha256 from the files themselves
    total = sum((args.out / e["path"]).stat().st_size for e in chosen)
    print(f"{args.out}: {len(chosen)} bundles, {total / 2**20:.1f} MiB: " + ", ".join(e["path"] for e in chosen))


if __name__ == "__main__":
    main()
