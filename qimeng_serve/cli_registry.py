"""`qimeng-serve publish | pull | list | verify`: the kernel registry from the command line.

Registered on `qimeng_serve.cli.app` by an import at the end of cli.py. Library work lives in
`qimeng_serve.registry`; this module only parses options and prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from qimeng_serve.cli import app, err, out, user_errors
from qimeng_serve.errors import QimengError

RegistryOpt = Annotated[Path | None, typer.Option(
    "--registry", help="Local registry folder (default: QIMENG_REGISTRY, else the checkout's registry/).")]
RevisionOpt = Annotated[str | None, typer.Option(
    "--revision", help="Branch, tag or commit sha (default: main).")]
EndpointOpt = Annotated[str | None, typer.Option(
    "--endpoint", help="Hub URL (default: HF_ENDPOINT, else https://huggingface.co).")]

# Help texts: one string per paragraph, so the terminal rewraps them.
PUBLISH_HELP = (
    "Publish a local registry to a Hugging Face Hub repo as ONE commit.\n\n"
    "Every bundle is checked against index.json first (size, sha256, manifest); a bundle that failed validation "
    "is never published, one not validated only with --allow-unvalidated. The commit holds the bundles, index.json "
    "and a README.md card generated from the index, and deletes bundles the index no longer lists. It names the "
    "branch head it builds on, so a publish that raced another one is refused and changes nothing. "
    "Needs a write token (`hf auth login` or HF_TOKEN)."
)
PULL_HELP = (
    "Download the bundles a GPU architecture runs best into a local registry.\n\n"
    "Per dtype and kernel set, the one bundle the GPU runs best (its own SASS, an older same-major SASS, else PTX) "
    "is fetched with the index at one commit through the HF cache, checked against the index's sha256 (and the "
    "lock's), and only then written into the registry folder, where `KernelSet` and the vLLM plugin "
    "(QIMENG_REGISTRY=DIR) load it.\n\n"
    "Repos are trusted when QIMENG_ALLOWED_REPOS lists them (`org/name` or `org/*`, comma-separated) or a --lock "
    "names them; others need --allow-untrusted. Without network (or with HF_HUB_OFFLINE=1) it uses what the HF "
    "cache holds, with a warning."
)
LIST_HELP = (
    "List the bundles of a local registry, or of a Hub repo with --repo.\n\n"
    "Shows arch, dtype, head sizes, ops, SASS/PTX targets, validation, speed, size and sha256 of each bundle. "
    "Listing a repo reads its index.json only: no kernel code is downloaded."
)
VERIFY_HELP = (
    "Check every bundle of a local registry against index.json; exit 1 on any mismatch.\n\n"
    "Each bundle must be present, with the size and sha256 the index records and a manifest that agrees with its "
    "entry; with --lock, its sha256 must also be the one the lock pins."
)
INDEX_HELP = (
    "Rewrite a local registry's index.json (and generated card) from the bundles in it.\n\n"
    "`build`, `validate`, `bench` and `pull` keep the index current; this is for bundles copied in by hand or an "
    "index from an older qimeng-serve. The new index records the files as they are now, so run it only on bundles "
    "you built or pulled yourself."
)


def _registry(registry: Path | None) -> Path:
    from qimeng_serve.env import default_registry

    return registry or default_registry()


def _warn(lines: list[str]) -> None:
    for line in lines:
        err.print(f"warning: {line}", markup=False, highlight=False)


def _step(message: str) -> None:
    err.print(message, markup=False, highlight=False)


def _bundle_table(title: str, entries: list[dict]) -> Table:
    from qimeng_serve.registry.card import size_text, speed_text, validation_text

    table = Table(title=title)
    for col in ("arch", "dtype", "kernel set", "head sizes", "ops", "SASS / PTX", "validation", "speed", "size", "sha256"):
        table.add_column(col)
    for e in entries:
        table.add_row(e["arch"], e["dtype"], e["kernel_set"], ", ".join(map(str, e["head_dims"])), "\n".join(e["ops"]),
                      " ".join(e["sass"]) + " / " + " ".join(e["ptx"]), validation_text(e["validation"]),
                      speed_text(e["benchmark"]), size_text(e["size"]), e["sha256"][:12])
    return table


# ------------------------------------------------------------------ publish
@app.command(help=PUBLISH_HELP)
@user_errors
def publish(
    repo: Annotated[str, typer.Option("--repo", help="Hub repo ORG/NAME (created if missing).")],
    registry: RegistryOpt = None,
    revision: Annotated[str, typer.Option("--revision", help="Branch to commit to (created from main if new).")] = "main",
    tag: Annotated[str | None, typer.Option("--tag", help="Also tag the commit (e.g. v1.2); refused if the tag exists.")] = None,
    endpoint: EndpointOpt = None,
    allow_unvalidated: Annotated[bool, typer.Option(
        "--allow-unvalidated", help="Publish bundles never validated on a GPU (marked so in the card).")] = False,
) -> None:
    from qimeng_serve.registry.publish import publish as publish_registry

    reg = _registry(registry)
    result, warnings = publish_registry(reg, repo, revision=revision, tag=tag, endpoint=endpoint,
                                        allow_unvalidated=allow_unvalidated, on_step=_step)
    _warn(warnings)
    if result.unchanged:
        out.print(f"{repo}@{result.branch} already holds these {len(result.uploaded)} bundle(s): no new commit "
                  f"(head {result.commit})")
    else:
        out.print(f"published {len(result.uploaded)} bundle(s) from {reg} to {repo}@{result.branch}: commit {result.commit}")
    for path in result.deleted:
        out.print(f"removed stale bundle {path}")
    if result.tag:
        out.print(f"tagged {result.commit[:12]} as {result.tag}")
    out.print(f"next, on a serving machine: qimeng-serve pull --repo {repo} --arch sm_XX --write-lock qimeng.lock",
              markup=False, highlight=False)


# ------------------------------------------------------------------ pull
@app.command(help=PULL_HELP)
@user_errors
def pull(
    repo: Annotated[str | None, typer.Option("--repo", help="Hub repo ORG/NAME (default: the lock's repo).")] = None,
    arch: Annotated[list[str] | None, typer.Option(
        "--arch", help="GPU architecture(s) to pull for, e.g. sm_86 (repeat). Default: this machine's GPU.")] = None,
    revision: RevisionOpt = None,
    registry: RegistryOpt = None,
    lock: Annotated[Path | None, typer.Option(
        "--lock", help="Pull exactly the commit and files this lock pins (its repo counts as trusted).")] = None,
    write_lock: Annotated[Path | None, typer.Option(
        "--write-lock", help="Write a lock (commit sha + every file's sha256) for reproducible deployments.")] = None,
    dtype: Annotated[list[str] | None, typer.Option("--dtype", help="Only these dtypes (f16, bf16).")] = None,
    kernel_set: Annotated[list[str] | None, typer.Option(
        "--kernel-set", help="Only these kernel sets (default, softcap50, ...).")] = None,
    endpoint: EndpointOpt = None,
    allow_untrusted: Annotated[bool, typer.Option(
        "--allow-untrusted", help="Pull from a repo outside QIMENG_ALLOWED_REPOS and the lock.")] = False,
) -> None:
    from qimeng_serve.registry.card import size_text
    from qimeng_serve.registry.pull import pull as pull_registry

    reg = _registry(registry)
    archs = arch or [_this_gpu_arch()]
    result = pull_registry(repo, archs, registry=reg, revision=revision, lock=lock, write_lock_to=write_lock,
                           dtypes=dtype, kernel_sets=kernel_set, endpoint=endpoint, allow_untrusted=allow_untrusted,
                           on_step=_step)
    _warn(result.warnings)
    table = Table(title=f"pulled from {result.repo}@{result.commit[:12]}" + (" (HF cache)" if result.from_cache else ""))
    for col in ("bundle", f"runs on {', '.join(archs)} as", "size", "sha256", "result"):
        table.add_column(col)
    for b in result.bundles:
        table.add_row(b.entry["path"], b.how, size_text(b.entry["size"]), b.entry["sha256"][:12],
                      "already there" if b.already_there else "[green]written[/]")
    out.print(table)
    out.print(f"{len(result.bundles)} bundle(s) verified in {reg} (commit {result.commit})")
    if result.lock_path:
        out.print(f"wrote {result.lock_path}: commit {result.commit[:12]}, every file's sha256")
    out.print(f"serve them: QIMENG_REGISTRY={reg} vllm serve MODEL --attention-backend qimeng", markup=False, highlight=False)


def _this_gpu_arch() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability()
            return f"sm_{major}{minor}"
    except ImportError:
        pass
    raise QimengError("no --arch given and no CUDA GPU visible to detect one",
                      fix="pass the serving GPU's architecture, e.g. --arch sm_86 (see `qimeng-serve targets`)")


# ------------------------------------------------------------------ list
@app.command("list", help=LIST_HELP)
@user_errors
def list_bundles(
    registry: RegistryOpt = None,
    repo: Annotated[str | None, typer.Option("--repo", help="List a Hub repo instead (reads its index.json only).")] = None,
    revision: RevisionOpt = None,
    endpoint: EndpointOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the index as JSON.")] = False,
) -> None:
    import json

    from qimeng_serve.registry.hub import HubReader
    from qimeng_serve.registry.index import read_index
    from qimeng_serve.registry.layout import INDEX_FILE

    if repo:
        reader = HubReader(repo, endpoint=endpoint)
        commit = reader.resolve(revision)
        source = f"hub {repo}@{commit}"
        index = read_index(reader.fetch(INDEX_FILE, commit), source=source)
        _warn(reader.warnings)
    else:
        reg = _registry(registry)
        source = f"local registry {reg}"
        index = read_index(reg / INDEX_FILE, source=source)
    if as_json:
        typer.echo(json.dumps(index, indent=2))
        return
    out.print(_bundle_table(source, index["bundles"]))
    out.print(f"{len(index['bundles'])} bundle(s)")


# ------------------------------------------------------------------ verify
@app.command(help=VERIFY_HELP)
@user_errors
def verify(
    registry: RegistryOpt = None,
    lock: Annotated[Path | None, typer.Option("--lock", help="Also check every bundle against this lock file.")] = None,
) -> None:
    from qimeng_serve.registry.index import read_index
    from qimeng_serve.registry.layout import INDEX_FILE
    from qimeng_serve.registry.lock import read_lock
    from qimeng_serve.registry.verify import verify_registry

    reg = _registry(registry)
    index = read_index(reg / INDEX_FILE, source=f"local registry {reg}")
    lock_files = read_lock(lock).files if lock else None
    report = verify_registry(reg, index, lock_files)
    problems = dict(report.problems)
    table = Table(title=f"verify {reg}" + (f" against {lock}" if lock else ""))
    table.add_column("bundle")
    table.add_column("result")
    for path in report.checked:
        table.add_row(path, f"[red]{escape(problems[path])}[/]" if path in problems else "[green]ok[/]")
    out.print(table)
    _warn([f"{p} is in the folder but not in index.json" for p in report.unlisted])
    if problems:
        err.print(f"{len(problems)} of {len(report.checked)} bundle(s) do not match; they will not be loaded or published",
                  markup=False)
        err.print("fix: rebuild them (`qimeng-serve build`) or pull them again (`qimeng-serve pull`)", markup=False)
        raise typer.Exit(1)
    out.print(f"{len(report.checked)} bundle(s) match index.json" + (" and the lock" if lock else ""))


# ------------------------------------------------------------------ index
@app.command("index", help=INDEX_HELP)
@user_errors
def reindex(registry: RegistryOpt = None) -> None:
    from qimeng_serve.registry.index import read_index, update_index

    reg = _registry(registry)
    path = update_index(reg)
    index = read_index(path)
    out.print(_bundle_table(f"wrote {path}", index["bundles"]))
    out.print(f"{len(index['bundles'])} bundle(s)")
