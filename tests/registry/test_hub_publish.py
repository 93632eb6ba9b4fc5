"""publish against the local Hub server with the real huggingface_hub client: one commit, checks first,
tags and branches, stale bundles removed, and a racing publisher refused."""

import threading

import pytest

from qimeng_serve.registry.errors import PublishConflict, PublishRefused, RegistryError
from qimeng_serve.registry.publish import execute_publish, plan_publish, publish
from tests.registry.bundles import make_bundle, make_registry

REPO = "org/kernels"


def test_publish_is_one_commit_with_index_card_and_bundles(hub, local_registry):
    result, warnings = publish(local_registry, REPO, endpoint=hub.url, tag="v1")
    assert warnings == [] and not result.unchanged and result.tag == "v1"
    repo = hub.state.repos[REPO]
    head = repo.commits[repo.branches["main"]]
    assert head.parent is not None and repo.commits[head.parent].parent is None  # initial commit + ours
    assert repo.tags["v1"] == head.sha == result.commit
    assert sorted(head.files) == [".gitattributes", "README.md", "index.json",
                                  "sm_75/f16/qimeng-default-sm_75-f16.safetensors",
                                  "sm_80/bf16/qimeng-default-sm_80-bf16.safetensors",
                                  "sm_80/f16/qimeng-default-sm_80-f16.safetensors",
                                  "sm_90/f16/qimeng-default-sm_90-f16.safetensors"]
    assert all(f.lfs for p, f in head.files.items() if p.endswith(".safetensors"))  # went through LFS batch + PUT
    for path, f in head.files.items():
        if path.endswith(".safetensors"):
            assert hub.state.objects[f.content_sha256] == (local_registry / path).read_bytes()
    index = hub.state.objects[head.files["index.json"].content_sha256]
    assert index == (local_registry / "index.json").read_bytes()
    card = hub.state.objects[head.files["README.md"].content_sha256].decode()
    assert card.startswith("---\nlibrary_name: qimeng-serve") and f"# {REPO}: qimeng-serve" in card
    assert "| sm_80 | f16 | default | 64, 128 |" in card and f"--repo {REPO}" in card
    assert ("hub", "POST", "/api/validate-yaml") in hub.state.requests


def test_unchanged_publish_makes_no_commit_and_a_removed_bundle_is_deleted(hub, local_registry):
    first, _ = publish(local_registry, REPO, endpoint=hub.url)
    again, _ = publish(local_registry, REPO, endpoint=hub.url)
    assert again.unchanged and again.commit == first.commit
    (local_registry / "sm_75/f16/qimeng-default-sm_75-f16.safetensors").unlink()
    from qimeng_serve.registry.index import update_index

    update_index(local_registry)
    hub.state.repos[REPO].commits[first.commit].files["notes.txt"] = hub.state.store_regular(b"keep me")
    third, _ = publish(local_registry, REPO, endpoint=hub.url)
    assert third.deleted == ["sm_75/f16/qimeng-default-sm_75-f16.safetensors"]
    files = hub.state.files_at(REPO)
    assert "sm_75/f16/qimeng-default-sm_75-f16.safetensors" not in files
    assert "notes.txt" in files  # outside the registry layout: left alone


def test_publish_to_a_new_branch(hub, local_registry):
    result, _ = publish(local_registry, REPO, endpoint=hub.url, revision="v2")
    repo = hub.state.repos[REPO]
    assert repo.branches["v2"] == result.commit and "index.json" not in hub.state.files_at(REPO, "main")


def test_unvalidated_failed_or_mismatching_bundles_are_refused_before_any_upload(hub, tmp_path):
    reg = make_registry(tmp_path / "r", [{"arch": "sm_80", "dtype": "f16"},
                                         {"arch": "sm_90", "dtype": "f16", "validation": None}])
    with pytest.raises(PublishRefused) as exc:
        publish(reg, REPO, endpoint=hub.url)
    assert "not validated" in exc.value.message and "sm_90/f16" in exc.value.message
    assert "--allow-unvalidated" in exc.value.fix
    assert REPO not in hub.state.repos and hub.state.requests == []  # refused before touching the Hub

    result, warnings = publish(reg, REPO, endpoint=hub.url, allow_unvalidated=True)
    assert warnings == ["sm_90/f16/qimeng-default-sm_90-f16.safetensors is published without validation"]
    card = hub.state.objects[hub.state.files_at(REPO)["README.md"].content_sha256].decode()
    assert "| sm_90 | f16 | default | 64, 128 | dense_prefill, paged_decode, paged_prefill | sm_90 / compute_90 | not validated" in card

    make_bundle(reg, "sm_86", "f16", validation="failed")
    from qimeng_serve.registry.index import update_index

    update_index(reg)
    with pytest.raises(PublishRefused, match="failed validation and are never published"):
        publish(reg, REPO, endpoint=hub.url, allow_unvalidated=True)

    (reg / "sm_86/f16/qimeng-default-sm_86-f16.safetensors").unlink()
    update_index(reg)
    path = reg / "sm_80/f16/qimeng-default-sm_80-f16.safetensors"
    data = bytearray(path.read_bytes())
    data[-5] ^= 1
    path.write_bytes(bytes(data))
    head = hub.state.head(REPO)
    with pytest.raises(PublishRefused) as exc:
        publish(reg, REPO, endpoint=hub.url, allow_unvalidated=True)
    assert "do not match index.json" in exc.value.message and "sm_80/f16" in exc.value.message
    assert hub.state.head(REPO) == head == result.commit


def test_an_existing_tag_is_refused_before_committing(hub, local_registry):
    publish(local_registry, REPO, endpoint=hub.url, tag="v1")
    head = hub.state.head(REPO)
    make_bundle(local_registry, "sm_86", "f16")
    from qimeng_serve.registry.index import update_index

    update_index(local_registry)
    with pytest.raises(PublishRefused, match="tag v1 already exists"):
        publish(local_registry, REPO, endpoint=hub.url, tag="v1")
    assert hub.state.head(REPO) == head


def test_the_second_of_two_racing_publishers_is_refused(hub, local_registry, tmp_path):
    other = make_registry(tmp_path / "other", [{"arch": "sm_86", "dtype": "f16"}])
    publish(local_registry, REPO, endpoint=hub.url)
    start = hub.state.head(REPO)
    plan_b = plan_publish(other, REPO, endpoint=hub.url)  # B reads the branch head ...
    assert plan_b.parent_commit == start
    make_bundle(local_registry, "sm_89", "f16")
    from qimeng_serve.registry.index import update_index

    update_index(local_registry)
    a, _ = publish(local_registry, REPO, endpoint=hub.url)  # ... A publishes meanwhile ...
    assert a.commit != start
    with pytest.raises(PublishConflict) as exc:  # ... and B's commit, built on the old head, is refused
        execute_publish(plan_b)
    assert "moved while publishing" in exc.value.message and "nothing was committed" in exc.value.message
    assert "publish again" in exc.value.fix
    files = hub.state.files_at(REPO)
    assert hub.state.head(REPO) == a.commit and "sm_89/f16/qimeng-default-sm_89-f16.safetensors" in files
    assert "sm_86/f16/qimeng-default-sm_86-f16.safetensors" not in files  # B's bundle never landed


def test_two_concurrent_publishes_one_wins_one_is_refused(hub, local_registry, tmp_path):
    other = make_registry(tmp_path / "other", [{"arch": "sm_86", "dtype": "f16"}])
    publish(local_registry, REPO, endpoint=hub.url)
    make_bundle(local_registry, "sm_89", "f16")
    from qimeng_serve.registry.index import update_index

    update_index(local_registry)
    hub.state.hang(0.6, match=r"/commit/")  # both read the head before either commit is processed
    outcomes = {}

    def run(name, reg):
        try:
            outcomes[name] = publish(reg, REPO, endpoint=hub.url)[0].commit
        except PublishConflict as exc:
            outcomes[name] = exc

    threads = [threading.Thread(target=run, args=(n, r)) for n, r in (("a", local_registry), ("b", other))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    winners = [v for v in outcomes.values() if isinstance(v, str)]
    losers = [v for v in outcomes.values() if isinstance(v, PublishConflict)]
    assert len(winners) == 1 and len(losers) == 1, outcomes
    assert hub.state.head(REPO) == winners[0]


def test_a_bad_token_is_a_clear_error(hub, local_registry, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "not-a-token")
    with pytest.raises(RegistryError) as exc:
        publish(local_registry, REPO, endpoint=hub.url)
    assert "refused to let this token" in exc.value.message and "hf auth login" in exc.value.fix


def test_publishing_to_a_dead_endpoint_says_so(hf_env, local_registry):
    from tests.registry.hub_server import FakeHub

    dead = FakeHub()
    dead.stop()
    with pytest.raises(RegistryError) as exc:
        publish(local_registry, REPO, endpoint=dead.url)
    assert "cannot reach the Hub" in exc.value.message and dead.url in exc.value.message
