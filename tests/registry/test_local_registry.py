"""A local registry folder: index, card, verify, and resolve_artifact without any Hub."""

import json

import pytest

from qimeng_serve.build.bundle import read_blob, read_manifest
from qimeng_serve.registry.errors import (
    ChecksumMismatch,
    IndexInvalid,
    LockMismatch,
    NoMatchingArtifact,
)
from qimeng_serve.registry.index import read_index, update_index
from qimeng_serve.registry.lock import Lock, write_lock
from qimeng_serve.registry.resolve import resolve_artifact
from qimeng_serve.registry.verify import verify_registry
from tests.registry.bundles import make_bundle, make_registry


@pytest.fixture
def registry(tmp_path, monkeypatch):
    for var in ("QIMENG_REGISTRY", "QIMENG_REPO", "QIMENG_LOCK", "QIMENG_REVISION"):
        monkeypatch.delenv(var, raising=False)
    return make_registry(tmp_path / "reg")


def flip_byte(path, offset=-100):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_index_lists_every_bundle_with_targets_and_hashes(registry):
    index = read_index(registry / "index.json")
    paths = [e["path"] for e in index["bundles"]]
    assert paths == sorted(paths) and "sm_80/f16/qimeng-default-sm_80-f16.safetensors" in paths
    e = next(e for e in index["bundles"] if e["path"].startswith("sm_80/f16"))
    assert e["sass"] == ["sm_80"] and e["ptx"] == ["compute_80"] and e["head_dims"] == [64, 128]
    assert e["validation"]["status"] == "passed" and e["validation"]["devices"] == ["NVIDIA H100"]
    assert e["benchmark"]["status"] == "measured" and e["benchmark"]["prefill_tflops"] == 428.0
    assert len(e["sha256"]) == 64 and e["size"] == (registry / e["path"]).stat().st_size


def test_card_is_generated_from_the_index_but_never_over_a_handwritten_readme(registry):
    card = (registry / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: qimeng-serve")
    assert "| sm_80 | f16 | default | 64, 128 |" in card and "passed 8/8 on NVIDIA H100" in card
    assert "428 TFLOPS" in card and "not validated" not in card.split("| sm_75")[0]
    (registry / "README.md").write_text("# my notes\n")
    update_index(registry)
    assert (registry / "README.md").read_text() == "# my notes\n"


def test_resolve_from_a_local_registry_verifies_and_loads(registry, monkeypatch):
    monkeypatch.setenv("QIMENG_REGISTRY", str(registry))
    art = resolve_artifact((8, 6), "float16", 128, ["paged_prefill", "paged_decode"])
    assert art.bundle_path == registry / "sm_80/f16/qimeng-default-sm_80-f16.safetensors"
    assert art.selection.how == "sm_80 SASS" and art.source == f"local registry {registry}"
    manifest = read_manifest(art.bundle_path)
    name = next(n for n, k in manifest["kernels"].items() if k["family"] == "paged_decode")
    assert len(read_blob(art.bundle_path, manifest["kernels"][name]["tensors"]["cubin"])) == 3000


def test_tampered_local_bundle_is_refused(registry):
    path = registry / "sm_80/f16/qimeng-default-sm_80-f16.safetensors"
    flip_byte(path)
    with pytest.raises(ChecksumMismatch) as exc:
        resolve_artifact((8, 0), "f16", 64, ["dense_prefill"], registry=registry)
    assert "sha256" in exc.value.message and "sm_80/f16" in exc.value.message and "build" in exc.value.fix


def test_no_match_names_gpu_dtype_head_size_and_every_candidate(registry):
    with pytest.raises(NoMatchingArtifact) as exc:
        resolve_artifact((8, 6), "f16", 96, ["paged_decode"], registry=registry)
    msg = exc.value.message
    assert "sm_86" in msg and "8.6" in msg and "dtype f16" in msg and "head size 96" in msg
    for line in ("sm_75/f16/qimeng-default-sm_75-f16.safetensors: head size 96 missing",
                 "sm_80/bf16/qimeng-default-sm_80-bf16.safetensors: wrong dtype bf16",
                 ("sm_90/f16/qimeng-default-sm_90-f16.safetensors: head size 96 missing (has 64, 128); "
                 "SASS sm_90 is for another major")):
        assert line in msg
    assert "qimeng-serve build --arch sm_86" in exc.value.fix


def test_lock_pins_local_files_too(registry, tmp_path):
    index = read_index(registry / "index.json")
    files = {e["path"]: e["sha256"] for e in index["bundles"]}
    lock = write_lock(tmp_path / "qimeng.lock", Lock("org/kernels", "main", "a" * 40, files))
    art = resolve_artifact((9, 0), "f16", 64, ["dense_prefill"], registry=registry, lock=lock)
    assert art.entry["arch"] == "sm_90"
    files["sm_90/f16/qimeng-default-sm_90-f16.safetensors"] = "b" * 64
    write_lock(lock, Lock("org/kernels", "main", "a" * 40, files))
    with pytest.raises(ChecksumMismatch, match="the lock pins"):
        resolve_artifact((9, 0), "f16", 64, ["dense_prefill"], registry=registry, lock=lock)
    del files["sm_90/f16/qimeng-default-sm_90-f16.safetensors"]
    write_lock(lock, Lock("org/kernels", "main", "a" * 40, files))
    with pytest.raises(LockMismatch, match="has no sm_90/f16"):
        resolve_artifact((9, 0), "f16", 64, ["dense_prefill"], registry=registry, lock=lock)


def test_verify_catches_a_flipped_byte_and_reports_unlisted_bundles(registry):
    index = read_index(registry / "index.json")
    assert verify_registry(registry, index).ok
    flip_byte(registry / "sm_75/f16/qimeng-default-sm_75-f16.safetensors", offset=-7)
    make_bundle(registry, "sm_86", "f16")  # present on disk, not in the index
    report = verify_registry(registry, index)
    assert not report.ok
    [(path, problem)] = report.problems
    assert path == "sm_75/f16/qimeng-default-sm_75-f16.safetensors" and "sha256" in problem
    assert report.unlisted == ["sm_86/f16/qimeng-default-sm_86-f16.safetensors"]


def test_verify_catches_a_renamed_bundle(registry):
    index = read_index(registry / "index.json")
    a = registry / "sm_80/f16/qimeng-default-sm_80-f16.safetensors"
    b = registry / "sm_80/bf16/qimeng-default-sm_80-bf16.safetensors"
    a_bytes = a.read_bytes()
    a.write_bytes(b.read_bytes())
    entry = next(e for e in index["bundles"] if e["path"] == "sm_80/f16/qimeng-default-sm_80-f16.safetensors")
    entry["sha256"], entry["size"] = next((e["sha256"], e["size"]) for e in index["bundles"] if e["path"] == b.relative_to(registry).as_posix())
    report = verify_registry(registry, index)
    assert any("its manifest says sm_80/bf16/default" in p for _, p in report.problems)
    a.write_bytes(a_bytes)


@pytest.mark.parametrize("mutate, message", [
    (lambda i: i["bundles"][0].update(path="../../etc/passwd"), "does not follow qimeng-registry/1"),
    (lambda i: i["bundles"][0].update(sha256="xyz"), "does not follow qimeng-registry/1"),
    (lambda i: i["bundles"][0].update(arch="sm_86"), "does not match its arch/dtype/kernel_set"),
    (lambda i: i.update(schema="qimeng-registry/9"), "this qimeng-serve reads qimeng-registry/1"),
    (lambda i: i["bundles"].append(dict(i["bundles"][0])), "listed twice"),
])
def test_a_bad_index_is_refused_before_use(registry, mutate, message):
    path = registry / "index.json"
    index = json.loads(path.read_text())
    mutate(index)
    path.write_text(json.dumps(index))
    with pytest.raises(IndexInvalid, match=message.replace("(", r"\(")):
        read_index(path)


def test_a_missing_or_broken_index_says_how_to_make_one(tmp_path):
    with pytest.raises(IndexInvalid) as exc:
        resolve_artifact((8, 0), "f16", 64, [], registry=tmp_path)
    assert "has no index.json" in exc.value.message and "qimeng-serve pull" in exc.value.fix
    (tmp_path / "index.json").write_text("{not json")
    with pytest.raises(IndexInvalid, match="not valid JSON"):
        read_index(tmp_path / "index.json")
