"""pull and resolve_artifact against the local Hub server: only the matching bundle, sha256-checked,
revisions, the lock, the allow-list, tampering, and the Hub failing or gone (HF cache fallback)."""

import hashlib

import pytest

from qimeng_serve.build.bundle import read_blob, read_manifest
from qimeng_serve.registry.errors import (
    ChecksumMismatch,
    HubUnavailable,
    LockMismatch,
    NoMatchingArtifact,
    RegistryError,
    UntrustedRepo,
)
from qimeng_serve.registry.index import read_index, update_index
from qimeng_serve.registry.lock import read_lock
from qimeng_serve.registry.publish import publish
from qimeng_serve.registry.pull import pull
from qimeng_serve.registry.resolve import resolve_artifact
from qimeng_serve.registry.verify import verify_registry
from tests.registry.bundles import make_bundle, make_registry
from tests.registry.hub_server import FakeHub

REPO = "org/kernels"
SM80_F16 = "sm_80/f16/qimeng-default-sm_80-f16.safetensors"
SM80_BF16 = "sm_80/bf16/qimeng-default-sm_80-bf16.safetensors"


@pytest.fixture
def published(hub, local_registry, monkeypatch):
    monkeypatch.setenv("QIMENG_ALLOWED_REPOS", REPO)
    result, _ = publish(local_registry, REPO, endpoint=hub.url, tag="v1")
    hub.state.clear_log()
    return result


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def lfs_gets(hub):
    return [p.split("/")[-1] for p in hub.state.downloads() if p.startswith("/lfs-cdn/")]


def test_publish_pull_load_round_trip_downloads_only_the_matching_bundles(hub, published, local_registry, tmp_path):
    dest = tmp_path / "serving"
    result = pull(REPO, ["sm_86"], registry=dest, endpoint=hub.url)
    assert result.commit == published.commit and not result.from_cache and result.warnings == []
    assert sorted((b.entry["path"], b.how) for b in result.bundles) == [(SM80_BF16, "sm_80 SASS"),
                                                                       (SM80_F16, "sm_80 SASS")]
    # the index and the two sm_80 bundles went over the wire; sm_75 and sm_90 did not
    assert sorted(lfs_gets(hub)) == sorted(sha(local_registry / p) for p in (SM80_BF16, SM80_F16))
    assert [p for p in hub.state.downloads() if "/resolve/" in p] == [f"/org/kernels/resolve/{result.commit}/index.json"]
    for path in (SM80_F16, SM80_BF16):
        assert (dest / path).read_bytes() == (local_registry / path).read_bytes()
    index = read_index(dest / "index.json")
    assert [e["path"] for e in index["bundles"]] == [SM80_BF16, SM80_F16]
    assert verify_registry(dest, index).ok and (dest / "README.md").is_file()
    # load: manifest and every blob read back through the bundle reader
    manifest = read_manifest(dest / SM80_F16)
    for meta in manifest["kernels"].values():
        for tensor in meta["tensors"].values():
            assert read_blob(dest / SM80_F16, tensor) == read_blob(local_registry / SM80_F16, tensor)
    # and the serving call finds it there, no Hub involved
    art = resolve_artifact((8, 6), "bf16", 128, ["paged_decode"], registry=dest)
    assert art.bundle_path == dest / SM80_BF16 and art.source == f"local registry {dest}"


def test_resolve_from_the_hub_fetches_index_and_one_bundle(hub, published, local_registry):
    art = resolve_artifact((9, 0), "f16", 64, ["dense_prefill"], repo=REPO, endpoint=hub.url)
    assert art.source == f"hub {REPO}@{published.commit}" and art.selection.how == "sm_90 SASS"
    assert art.bundle_path.read_bytes() == (local_registry / "sm_90/f16/qimeng-default-sm_90-f16.safetensors").read_bytes()
    assert lfs_gets(hub) == [art.entry["sha256"]]
    hub.state.clear_log()
    again = resolve_artifact((9, 0), "f16", 64, ["dense_prefill"], repo=REPO, endpoint=hub.url)
    assert again.bundle_path == art.bundle_path
    assert hub.state.downloads() == []  # the commit is cached: only the revision was asked


def test_tag_branch_and_pinned_commit_pulls(hub, published, local_registry, tmp_path):
    v1_sha = sha(local_registry / SM80_F16)
    make_bundle(local_registry, "sm_80", "f16", salt="rebuilt")  # new bytes, same path
    update_index(local_registry)
    main2, _ = publish(local_registry, REPO, endpoint=hub.url)
    make_bundle(local_registry, "sm_80", "f16", salt="experimental")
    update_index(local_registry)
    dev, _ = publish(local_registry, REPO, endpoint=hub.url, revision="dev")
    dev_sha = sha(local_registry / SM80_F16)

    def pulled_sha(revision):
        dest = tmp_path / f"pull-{revision}"
        r = pull(REPO, ["sm_80"], registry=dest, revision=revision, dtypes=["f16"], endpoint=hub.url)
        return r.commit, sha(dest / SM80_F16)

    assert pulled_sha("v1") == (published.commit, v1_sha)
    assert pulled_sha(published.commit) == (published.commit, v1_sha)
    commit, main_sha = pulled_sha("main")
    assert commit == main2.commit and main_sha not in (v1_sha, dev_sha)
    assert pulled_sha("dev") == (dev.commit, dev_sha)
    with pytest.raises(RegistryError, match="has no branch or tag 'v9'"):
        pull(REPO, ["sm_80"], registry=tmp_path / "x", revision="v9", endpoint=hub.url)


def test_a_tampered_file_is_refused_and_left_nowhere(hub, published, tmp_path):
    hub.state.tamper(REPO, SM80_F16)
    dest = tmp_path / "serving"
    with pytest.raises(ChecksumMismatch) as exc:
        pull(REPO, ["sm_80"], registry=dest, dtypes=["f16"], endpoint=hub.url)
    assert "sha256" in exc.value.message and SM80_F16 in exc.value.message and "deleted from the HF cache" in exc.value.message
    assert not (dest / SM80_F16).exists() and not list(dest.rglob("*.part"))
    assert not (dest / "index.json").exists()  # nothing was added to the registry
    snapshots = list(hub_cache_files(tmp_path))
    assert not any(p.name.endswith(".safetensors") for p in snapshots)  # evicted from the HF cache too
    with pytest.raises(ChecksumMismatch):
        resolve_artifact((8, 0), "f16", 64, ["dense_prefill"], repo=REPO, endpoint=hub.url)


def hub_cache_files(tmp_path):
    return [p for p in (tmp_path / "hf-home" / "hub").rglob("*") if p.is_file() or p.is_symlink()]


def test_a_missing_variant_lists_every_candidate_with_its_reason(hub, published, tmp_path):
    with pytest.raises(NoMatchingArtifact) as exc:
        pull(REPO, ["sm_70"], registry=tmp_path / "r", endpoint=hub.url)
    msg = exc.value.message
    assert "has no bundle an sm_70 GPU runs" in msg
    assert "sm_75/f16/qimeng-default-sm_75-f16.safetensors: SASS sm_75 needs minor >= 5" in msg
    assert "PTX compute_90 is newer than the GPU (sm_70)" in msg
    with pytest.raises(NoMatchingArtifact) as exc:
        resolve_artifact((8, 9), "f16", 256, ["paged_prefill"], repo=REPO, endpoint=hub.url)
    msg = exc.value.message
    assert f"hub {REPO}@{published.commit}" in msg and "sm_89" in msg and "head size 256" in msg
    assert "sm_80/f16/qimeng-default-sm_80-f16.safetensors: head size 256 missing (has 64, 128)" in msg


def test_server_errors_fall_back_to_the_cache_with_a_warning(hub, published):
    first = resolve_artifact((8, 0), "f16", 64, ["dense_prefill"], repo=REPO, endpoint=hub.url)
    hub.state.fail(500)
    art = resolve_artifact((8, 0), "f16", 64, ["dense_prefill"], repo=REPO, endpoint=hub.url)
    assert art.bundle_path == first.bundle_path and "(from the HF cache)" in art.source
    assert len(art.warnings) == 1 and "cannot be reached" in art.warnings[0] and "500" in art.warnings[0]
    # what the cache never held is a clear error, not a traceback or a retry storm
    with pytest.raises(HubUnavailable) as exc:
        resolve_artifact((7, 5), "f16", 64, ["dense_prefill"], repo=REPO, endpoint=hub.url)
    assert "sm_75/f16/qimeng-default-sm_75-f16.safetensors is not in the HF cache" in exc.value.message
    assert "qimeng-serve pull --repo org/kernels" in exc.value.fix and "QIMENG_REGISTRY" in exc.value.fix


def test_time_outs_fall_back_to_the_cache_with_a_warning(hub, published, caplog):
    first = resolve_artifact((8, 0), "bf16", 64, ["dense_prefill"], repo=REPO, endpoint=hub.url)
    hub.state.hang(5)
    with caplog.at_level("WARNING", logger="qimeng_serve.registry"):
        art = resolve_artifact((8, 0), "bf16", 64, ["dense_prefill"], repo=REPO, endpoint=hub.url, timeout=0.3)
    assert art.bundle_path == first.bundle_path
    assert "Timeout" in art.warnings[0] and any("cannot be reached" in r.message for r in caplog.records)


def test_start_up_from_a_filled_cache_with_no_server_at_all(hf_env, local_registry, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setenv("QIMENG_ALLOWED_REPOS", REPO)
    server = FakeHub()
    publish(local_registry, REPO, endpoint=server.url)
    online = resolve_artifact((8, 6), "f16", 128, ["paged_decode"], repo=REPO, endpoint=server.url)
    server.stop()  # the port is dead now
    dead = resolve_artifact((8, 6), "f16", 128, ["paged_decode"], repo=REPO, endpoint=server.url)
    assert dead.bundle_path == online.bundle_path and dead.warnings and "ConnectError" in dead.warnings[0]
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    offline = resolve_artifact((8, 6), "f16", 128, ["paged_decode"], repo=REPO, endpoint=server.url)
    assert offline.bundle_path == online.bundle_path and "(from the HF cache)" in offline.source
    assert offline.warnings == []  # offline by choice is not a warning
    with pytest.raises(HubUnavailable) as exc:
        resolve_artifact((8, 6), "f16", 128, ["paged_decode"], repo="org/never-pulled", endpoint=server.url,
                         allow_untrusted=True)
    assert "HF_HUB_OFFLINE=1" in exc.value.message and "never seen that revision" in exc.value.message


def test_lock_pins_the_commit_after_the_branch_moved(hub, published, local_registry, tmp_path):
    lock = tmp_path / "qimeng.lock"
    first = pull(REPO, ["sm_80"], registry=tmp_path / "a", write_lock_to=lock, endpoint=hub.url)
    pinned = read_lock(lock)
    assert pinned.repo == REPO and pinned.commit == published.commit and pinned.revision == "main"
    assert set(pinned.files) == {"index.json", SM80_F16, SM80_BF16, "sm_75/f16/qimeng-default-sm_75-f16.safetensors",
                                 "sm_90/f16/qimeng-default-sm_90-f16.safetensors"}
    old = sha(tmp_path / "a" / SM80_F16)
    make_bundle(local_registry, "sm_80", "f16", salt="moved")
    update_index(local_registry)
    moved, _ = publish(local_registry, REPO, endpoint=hub.url)
    assert moved.commit != published.commit

    again = pull(None, ["sm_80"], registry=tmp_path / "b", lock=lock, endpoint=hub.url)
    assert again.commit == first.commit and sha(tmp_path / "b" / SM80_F16) == old
    art = resolve_artifact((8, 0), "f16", 64, ["dense_prefill"], lock=lock, endpoint=hub.url)
    assert art.source == f"hub {REPO}@{published.commit}" and sha(art.bundle_path) == old
    latest = resolve_artifact((8, 0), "f16", 64, ["dense_prefill"], repo=REPO, endpoint=hub.url)
    assert sha(latest.bundle_path) != old

    with pytest.raises(LockMismatch, match="pins org/kernels, not org/other"):
        pull("org/other", ["sm_80"], registry=tmp_path / "c", lock=lock, endpoint=hub.url)
    with pytest.raises(LockMismatch, match="not revision dev"):
        pull(REPO, ["sm_80"], registry=tmp_path / "c", lock=lock, revision="dev", endpoint=hub.url)


def test_a_lock_whose_hash_differs_refuses_the_file(hub, published, tmp_path):
    import json

    lock = tmp_path / "qimeng.lock"
    pull(REPO, ["sm_80"], registry=tmp_path / "a", write_lock_to=lock, endpoint=hub.url)
    data = json.loads(lock.read_text())
    data["files"]["index.json"] = "0" * 64
    lock.write_text(json.dumps(data))
    with pytest.raises(ChecksumMismatch, match="index.json"):
        pull(None, ["sm_80"], registry=tmp_path / "b", lock=lock, endpoint=hub.url)


def test_allow_list(hub, local_registry, tmp_path, monkeypatch):
    publish(local_registry, REPO, endpoint=hub.url)
    hub.state.clear_log()
    with pytest.raises(UntrustedRepo) as exc:
        pull(REPO, ["sm_80"], registry=tmp_path / "a", endpoint=hub.url)
    assert "QIMENG_ALLOWED_REPOS=(empty)" in exc.value.message and "--allow-untrusted" in exc.value.fix
    assert hub.state.requests == [] and not (tmp_path / "a").exists()  # refused before any request
    with pytest.raises(UntrustedRepo):
        resolve_artifact((8, 0), "f16", 64, [], repo=REPO, endpoint=hub.url)

    r = pull(REPO, ["sm_80"], registry=tmp_path / "a", endpoint=hub.url, allow_untrusted=True,
             write_lock_to=tmp_path / "qimeng.lock")
    assert any("--allow-untrusted" in w for w in r.warnings)
    pull(None, ["sm_80"], registry=tmp_path / "b", lock=tmp_path / "qimeng.lock", endpoint=hub.url)  # the lock trusts it
    monkeypatch.setenv("QIMENG_ALLOWED_REPOS", "someone/else, org/*")
    assert resolve_artifact((8, 0), "f16", 64, [], repo=REPO, endpoint=hub.url).entry["arch"] == "sm_80"
    monkeypatch.setenv("QIMENG_ALLOWED_REPOS", "org/kernels-fork")
    with pytest.raises(UntrustedRepo):
        resolve_artifact((8, 0), "f16", 64, [], repo=REPO, endpoint=hub.url)
    monkeypatch.setenv("QIMENG_ALLOW_UNTRUSTED", "1")
    art = resolve_artifact((8, 0), "f16", 64, [], repo=REPO, endpoint=hub.url)
    assert any("not in QIMENG_ALLOWED_REPOS" in w for w in art.warnings)


def test_environment_selects_repo_revision_and_lock(hub, published, tmp_path, monkeypatch):
    monkeypatch.setenv("QIMENG_REPO", REPO)
    monkeypatch.setenv("QIMENG_REVISION", "v1")
    art = resolve_artifact((8, 0), "f16", 64, ["dense_prefill"], endpoint=hub.url)
    assert art.source == f"hub {REPO}@{published.commit}"
    monkeypatch.delenv("QIMENG_REPO")
    monkeypatch.delenv("QIMENG_REVISION")
    lock = tmp_path / "qimeng.lock"
    pull(REPO, ["sm_80"], registry=tmp_path / "a", write_lock_to=lock, endpoint=hub.url)
    monkeypatch.setenv("QIMENG_LOCK", str(lock))
    assert resolve_artifact((8, 0), "f16", 64, [], endpoint=hub.url).source == f"hub {REPO}@{published.commit}"
    monkeypatch.setenv("QIMENG_REGISTRY", str(tmp_path / "a"))  # a local registry named too: served from it
    art = resolve_artifact((8, 0), "f16", 64, [], endpoint=hub.url)
    assert art.source == f"local registry {tmp_path / 'a'}"


def test_unknown_repo_is_a_clear_error(hub, tmp_path):
    with pytest.raises(RegistryError, match="no Hub repo org/nothing"):
        pull("org/nothing", ["sm_80"], registry=tmp_path / "a", endpoint=hub.url, allow_untrusted=True)


def test_pull_into_a_registry_that_already_has_bundles_keeps_them(hub, published, tmp_path):
    dest = make_registry(tmp_path / "mine", [{"arch": "sm_89", "dtype": "f16"}])
    r = pull(REPO, ["sm_80"], registry=dest, dtypes=["f16"], endpoint=hub.url)
    index = read_index(dest / "index.json")
    assert [e["path"] for e in index["bundles"]] == [SM80_F16, "sm_89/f16/qimeng-default-sm_89-f16.safetensors"]
    assert verify_registry(dest, index).ok and not r.bundles[0].already_there
    again = pull(REPO, ["sm_80"], registry=dest, dtypes=["f16"], endpoint=hub.url)
    assert again.bundles[0].already_there
