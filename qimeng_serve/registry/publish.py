"""`qimeng-serve publish`: a local registry becomes ONE commit on a branch of a Hub repo.

Before anything is uploaded every bundle is checked against index.json (size, sha256, manifest) and
its validation: a bundle that failed validation is never published, one never validated only with
--allow-unvalidated. The commit names its parent (`parent_commit`): if anyone else published to the
branch since we read its head, the Hub refuses the commit and nothing changes (PublishConflict).
Bundles the branch has but the index no longer lists are deleted in the same commit; files outside
the registry layout are left alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from qimeng_serve.registry.card import render_card, validation_text
from qimeng_serve.registry.errors import (
    HubUnavailable,
    PublishConflict,
    PublishRefused,
    RegistryError,
)
from qimeng_serve.registry.hub import REPO_TYPE, is_commit
from qimeng_serve.registry.index import read_index
from qimeng_serve.registry.layout import CARD_FILE, INDEX_FILE, parse_bundle_path
from qimeng_serve.registry.verify import verify_registry


@dataclass
class PublishPlan:
    repo: str
    branch: str
    tag: str | None
    registry: Path
    index: dict
    parent_commit: str  # the branch head the commit builds on
    deletions: list[str]
    card: str
    api: object
    warnings: list[str] = field(default_factory=list)


@dataclass
class PublishResult:
    repo: str
    branch: str
    commit: str
    tag: str | None
    uploaded: list[str]
    deleted: list[str]
    unchanged: bool  # every file was already there: no new commit
    commit_url: str


def check_local(registry: Path, allow_unvalidated: bool = False) -> tuple[dict, list[str]]:
    """The index of a registry fit to publish, and warnings; raises PublishRefused otherwise."""
    index = read_index(registry / INDEX_FILE, source=f"local registry {registry}")
    if not index["bundles"]:
        raise PublishRefused(f"nothing to publish: {registry}/index.json lists no bundles",
                             fix="build some first: `qimeng-serve build --arch sm_XX`")
    report = verify_registry(registry, index)
    if report.problems:
        lines = "\n".join(f"  {p}: {why}" for p, why in report.problems)
        raise PublishRefused(f"{len(report.problems)} bundle(s) in {registry} do not match index.json:\n{lines}",
                             fix="rebuild them (`qimeng-serve build`) or re-run `qimeng-serve validate`, which rewrites "
                                 "the index; `qimeng-serve verify` lists the same problems")
    warnings = [f"{p} is in the folder but not in index.json: not published" for p in report.unlisted]
    failed = [e for e in index["bundles"] if e["validation"]["status"] == "failed"]
    if failed:
        lines = "\n".join(f"  {e['path']}: {validation_text(e['validation'])}" for e in failed)
        raise PublishRefused(f"{len(failed)} bundle(s) failed validation and are never published:\n{lines}",
                             fix="fix or rebuild those kernels, re-run `qimeng-serve validate`, or remove the bundles")
    unvalidated = [e for e in index["bundles"] if e["validation"]["status"] != "passed"]
    if unvalidated and not allow_unvalidated:
        lines = "\n".join(f"  {e['path']}: {validation_text(e['validation'])}" for e in unvalidated)
        raise PublishRefused(f"{len(unvalidated)} bundle(s) are not validated on a GPU:\n{lines}",
                             fix="run `qimeng-serve validate` on a GPU first, or pass --allow-unvalidated to publish "
                                 "them marked 'not validated' in the card")
    warnings += [f"{e['path']} is published without validation" for e in unvalidated]
    return index, warnings


def plan_publish(registry: Path, repo: str, *, revision: str = "main", tag: str | None = None,
                 endpoint: str | None = None, token: str | None = None, allow_unvalidated: bool = False) -> PublishPlan:
    """Check the local registry, make sure repo and branch exist, and read the branch head to build on."""
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile

    index, warnings = check_local(registry, allow_unvalidated)
    api = HfApi(endpoint=endpoint, token=token)
    with _hub_errors(api, repo, "prepare the publish"):
        api.create_repo(repo, repo_type=REPO_TYPE, exist_ok=True)
        refs = api.list_repo_refs(repo, repo_type=REPO_TYPE)
        tags = {t.name: t.target_commit for t in refs.tags}
        branches = {b.name: b.target_commit for b in refs.branches}
        if tag and tag in tags:
            raise PublishRefused(f"tag {tag} already exists on {repo} (commit {tags[tag][:12]})",
                                 fix="a tag names one published state for good: choose a new tag")
        if is_commit(revision) or (revision in tags and revision not in branches):
            raise PublishRefused(f"publish commits to a branch; '{revision}' is a {'commit' if is_commit(revision) else 'tag'}",
                                 fix="pass --revision BRANCH (a new branch is created from main)")
        if revision not in branches:
            api.create_branch(repo, branch=revision, revision=branches.get("main"), repo_type=REPO_TYPE, exist_ok=True)
            parent = api.repo_info(repo, revision=revision, repo_type=REPO_TYPE).sha
        else:
            parent = branches[revision]
        remote = [f.path for f in api.list_repo_tree(repo, recursive=True, revision=parent, repo_type=REPO_TYPE)
                  if isinstance(f, RepoFile)]
    local = {e["path"] for e in index["bundles"]}
    deletions = sorted(p for p in remote if parse_bundle_path(p) is not None and p not in local)
    card = render_card(index, title=f"{repo}: qimeng-serve attention kernels", repo=repo)
    return PublishPlan(repo, revision, tag, registry, index, parent, deletions, card, api, warnings)


def execute_publish(plan: PublishPlan, on_step: Callable[[str], None] | None = None) -> PublishResult:
    """Upload and commit the plan in one commit on top of `plan.parent_commit`; then tag it."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete
    from huggingface_hub.errors import HfHubHTTPError

    step = on_step or (lambda _msg: None)
    api, repo = plan.api, plan.repo
    ops = []
    for e in plan.index["bundles"]:
        op = CommitOperationAdd(e["path"], str(plan.registry / e["path"]))  # hashes the file as it will be sent
        if op.upload_info.sha256.hex() != e["sha256"]:
            raise PublishRefused(f"{e['path']} changed after it was verified", fix="run publish again")
        ops.append(op)
    ops.append(CommitOperationAdd(INDEX_FILE, str(plan.registry / INDEX_FILE)))
    ops.append(CommitOperationAdd(CARD_FILE, plan.card.encode()))
    ops += [CommitOperationDelete(p) for p in plan.deletions]
    archs = sorted({e["arch"] for e in plan.index["bundles"]})
    message = f"qimeng-serve publish: {len(plan.index['bundles'])} bundle(s) for {', '.join(archs)}"
    description = "\n".join(f"- {e['path']} sha256 {e['sha256']} ({validation_text(e['validation'])})"
                            for e in plan.index["bundles"])
    step(f"uploading {len(plan.index['bundles'])} bundle(s) to {repo}@{plan.branch} on top of {plan.parent_commit[:12]}")
    with _hub_errors(api, repo, "commit"):
        info = api.create_commit(repo, ops, commit_message=message, commit_description=description,
                                 revision=plan.branch, parent_commit=plan.parent_commit, repo_type=REPO_TYPE)
    tagged = None
    if plan.tag:
        step(f"tagging {info.oid[:12]} as {plan.tag}")
        try:
            api.create_tag(repo, tag=plan.tag, revision=info.oid, tag_message=message, repo_type=REPO_TYPE)
        except HfHubHTTPError as exc:
            code = exc.response.status_code if exc.response is not None else None
            if code == 409:
                raise PublishConflict(f"committed {info.oid[:12]} to {repo}@{plan.branch}, but tag {plan.tag} was "
                                      "created by someone else meanwhile", fix="choose another tag for this commit") from None
            raise RegistryError(f"committed {info.oid[:12]}, but tagging it failed: {exc}",
                                fix=f"tag it by hand: `hf repo tag create {repo} {plan.tag} --revision {info.oid}`") from None
        tagged = plan.tag
    return PublishResult(repo, plan.branch, info.oid, tagged, [e["path"] for e in plan.index["bundles"]],
                         plan.deletions, info.oid == plan.parent_commit, info.commit_url)


def publish(registry: Path, repo: str, *, revision: str = "main", tag: str | None = None, endpoint: str | None = None,
            token: str | None = None, allow_unvalidated: bool = False,
            on_step: Callable[[str], None] | None = None) -> tuple[PublishResult, list[str]]:
    plan = plan_publish(registry, repo, revision=revision, tag=tag, endpoint=endpoint, token=token,
                        allow_unvalidated=allow_unvalidated)
    return execute_publish(plan, on_step), plan.warnings


class _hub_errors:
    """Turn the Hub client's exceptions into errors that say what to do (a context manager)."""

    def __init__(self, api, repo: str, doing: str) -> None:
        self.api, self.repo, self.doing = api, repo, doing

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        import httpx2
        from huggingface_hub.errors import HfHubHTTPError

        if exc is None or isinstance(exc, RegistryError):
            return False
        where = self.api.endpoint
        if isinstance(exc, httpx2.TransportError):
            raise HubUnavailable(f"cannot reach the Hub at {where} to {self.doing} ({type(exc).__name__}: {exc})",
                                 fix="check the network and --endpoint / HF_ENDPOINT, then publish again") from None
        if isinstance(exc, HfHubHTTPError):
            status = exc.response.status_code if exc.response is not None else None
            if status in (409, 412) and self.doing == "commit":
                raise PublishConflict(
                    f"{self.repo} moved while publishing: its branch head is no longer the commit this publish "
                    "started from (someone else published); nothing was committed",
                    fix=f"see what landed (`qimeng-serve list --repo {self.repo}`), then publish again") from None
            if status in (401, 403):
                raise RegistryError(f"the Hub at {where} refused to let this token {self.doing} on {self.repo} ({status})",
                                    fix="log in with a token that can write there: `hf auth login` or HF_TOKEN") from None
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RegistryError(f"the Hub at {where} failed to {self.doing} on {self.repo}: {first}",
                                fix="try again; if it repeats, check the Hub's status page") from None
        return False
