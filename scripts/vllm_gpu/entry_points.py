"""Make the plugin's entry points visible without installing the package: write a minimal
`*.dist-info` (METADATA + entry_points.txt, from pyproject.toml) into a folder to put on PYTHONPATH.

vLLM finds plugins through entry points in every process it starts (engine core, workers), so on a
machine where qimeng-serve is only on PYTHONPATH this folder must be there too.

    python3 scripts/vllm_gpu/entry_points.py FOLDER
"""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GROUPS = ("vllm.general_plugins", "vllm.platform_plugins")


def write_dist_info(folder: Path) -> Path:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    info = folder / f"qimeng_serve-{project['version']}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: qimeng-serve\nVersion: {project['version']}\n")
    lines = []
    for group in GROUPS:
        lines.append(f"[{group}]")
        lines += [f"{name} = {target}" for name, target in project["entry-points"][group].items()]
        lines.append("")
    (info / "entry_points.txt").write_text("\n".join(lines))
    return info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path)
    print(write_dist_info(ap.parse_args().folder))


if __name__ == "__main__":
    main()
