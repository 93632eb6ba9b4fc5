"""Carry a GPU run's validation and benchmark results home without the binaries.

  GPU machine:  python3 scripts/manifests.py export REGISTRY OUT.json
  here:         python scripts/manifests.py import REGISTRY OUT.json

The GPU machine writes results into each bundle's manifest; the bundles themselves (tens of MB)
need not travel back: the manifests do, and `import` writes them into the identical local bundles,
refusing any bundle whose kernels differ from the ones that were measured.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from qimeng_serve.build.bundle import read_manifest, write_manifest  # noqa: E402


def _bundles(registry: Path):
    return sorted(p for p in registry.glob("sm_*/*/*.safetensors"))


def _fingerprint(manifest: dict) -> dict:
    """What must match for results to belong to a bundle: each kernel's generated-source hash."""
    return {name: k["cuda_sha256"]
            for name, k in manifest["kernels"].items()}


def export(registry: Path, out: Path) -> None:
    data = {str(p.relative_to(registry)): read_manifest(p) for p in _bundles(registry)}
    out.write_text(json.dumps(data, indent=1, sort_keys=True))
    print(f"exported {len(data)} manifests to {out}")


def import_(registry: Path, src: Path) -> None:
    data = json.loads(src.read_text())
    for rel, manifest in sorted(data.items()):
        path = registry / rel
        if not path.exists():
            print(f"skip {rel}: not in {registry}")
            continue
        if _fingerprint(read_manifest(path)) != _fingerprint(manifest):
            print(f"REFUSED {rel}: its kernels differ from the ones measured (rebuilt since?)")
            continue
        write_manifest(path, manifest)
        print(f"updated {rel}")


if __name__ == "__main__":
    verb, reg, file = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    export(reg, file) if verb == "export" else import_(reg, file)
