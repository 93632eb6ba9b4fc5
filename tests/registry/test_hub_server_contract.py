"""The test Hub answers the real huggingface_hub client as the Hub does (status codes, headers, errors).

If a huggingface_hub upgrade changes the endpoints it calls, these fail first and say which."""

from pathlib import Path

import httpx2
import pytest
from huggingface_hub import (
    CommitOperationAdd,
    HfApi,
    hf_hub_download,
    snapshot_download,
)
from huggingface_hub.errors import (
    HfHubHTTPError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

REPO = "org/contract"


@pytest.fixture
def api(hub):
    api = HfApi(endpoint=hub.url)
    api.create_repo(REPO)
    return api


def test_create_repo_exists_ok_and_initial_commit(hub, api):
    assert api.create_repo(REPO, exist_ok=True) == f"{hub.url}/{REPO}"
    with pytest.raises(HfHubHTTPError) as exc:
        api.create_repo(REPO)
    assert exc.value.response.status_code == 409
    info = api.repo_info(REPO)
    assert len(info.sha) == 40 and [s.rfilename for s in info.siblings] == [".gitattributes"]


def test_commit_refs_tree_and_resolve_headers(hub, api):
    ops = [CommitOperationAdd("a/b/weights.safetensors", b"\0" * 4096), CommitOperationAdd("a/notes.txt", b"hello")]
    info = api.create_commit(REPO, ops, commit_message="add", parent_commit=api.repo_info(REPO).sha)
    api.create_tag(REPO, tag="t1", revision=info.oid)
    api.create_branch(REPO, branch="b1", revision=info.oid)
    refs = api.list_repo_refs(REPO)
    assert {r.name: r.target_commit for r in refs.tags} == {"t1": info.oid}
    assert {r.name for r in refs.branches} == {"main", "b1"}
    tree = {f.path: f for f in api.list_repo_tree(REPO, recursive=True, revision="t1")}
    assert set(tree) == {".gitattributes", "a", "a/b", "a/b/weights.safetensors", "a/notes.txt"}
    lfs = tree["a/b/weights.safetensors"].lfs
    assert lfs.size == 4096 and len(lfs.sha256) == 64
    assert [f.path for f in api.list_repo_tree(REPO, path_in_repo="a", revision="b1")] == ["a/b", "a/notes.txt"]

    head = httpx2.head(f"{hub.url}/{REPO}/resolve/t1/a/b/weights.safetensors")
    assert head.status_code == 302 and head.headers["X-Repo-Commit"] == info.oid
    assert head.headers["X-Linked-Etag"] == f'"{lfs.sha256}"' and head.headers["X-Linked-Size"] == "4096"
    assert head.headers["Location"].startswith(hub.cdn_url)  # another origin: the client drops its token
    regular = httpx2.head(f"{hub.url}/{REPO}/resolve/main/a/notes.txt")
    assert regular.status_code == 200 and regular.headers["ETag"] == f'"{tree["a/notes.txt"].blob_id}"'
    assert httpx2.get(head.headers["Location"], headers={"Authorization": "Bearer hf_x"}).status_code == 400

    path = snapshot_download(REPO, revision="t1", allow_patterns=["a/b/*"], endpoint=hub.url)
    assert sorted(p.name for p in Path(path).rglob("*") if p.is_file()) == ["weights.safetensors"]


def test_errors_map_to_the_client_exceptions(hub, api):
    with pytest.raises(RepositoryNotFoundError):
        api.repo_info("org/missing")
    with pytest.raises(RevisionNotFoundError):
        api.repo_info(REPO, revision="nope")
    with pytest.raises(RemoteEntryNotFoundError):
        hf_hub_download(REPO, "missing.json", endpoint=hub.url)
    with pytest.raises(HfHubHTTPError) as exc:
        api.create_commit(REPO, [CommitOperationAdd("x.txt", b"x")], commit_message="stale", parent_commit="0" * 40)
    assert exc.value.response.status_code == 412
    with pytest.raises(HfHubHTTPError) as exc:
        api.create_tag(REPO, tag="t", revision="main")
        api.create_tag(REPO, tag="t", revision="main")
    assert exc.value.response.status_code == 409
