"""`qimeng-serve publish | pull | list | verify` against the local Hub server, and a pull with the network off."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from qimeng_serve.build.bundle import read_blob, read_manifest
from qimeng_serve.cli import app
from qimeng_serve.registry.lock import read_lock
from tests.registry.hub_server import FakeHub

runner = CliRunner()
REPO = "org/kernels"
SM80_F16 = "sm_80/f16/qimeng-default-sm_80-f16.safetensors"
CLI = str(Path(sys.executable).with_name("qimeng-serve"))


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def flat(text: str) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(text.split())


def published_repo(hub, local_registry):
    r = invoke("publish", "--registry", local_registry, "--repo", REPO, "--endpoint", hub.url, "--tag", "v1")
    assert r.exit_code == 0, r.output
    return r


def test_publish_list_pull_verify(hub, local_registry, tmp_path, monkeypatch):
    r = published_repo(hub, local_registry)
    head = hub.state.head(REPO)
    assert f"published 4 bundle(s) from {local_registry} to {REPO}@main: commit {head}" in flat(r.output)
    assert "tagged" in r.output and "qimeng-serve pull --repo org/kernels" in flat(r.output)

    r = invoke("list", "--registry", local_registry)
    assert r.exit_code == 0 and "sm_80" in r.output and "4 bundle(s)" in r.output
    r = invoke("list", "--repo", REPO, "--endpoint", hub.url, "--revision", "v1")
    assert r.exit_code == 0 and f"hub {REPO}@{head}" in r.output.replace("\n", "")  # the table title wraps mid-word
    assert not [p for p in hub.state.downloads() if p.startswith("/lfs-cdn/")]  # listing fetched no bundle
    r = invoke("list", "--repo", REPO, "--endpoint", hub.url, "--json")
    assert [e["arch"] for e in json.loads(r.output)["bundles"]] == ["sm_75", "sm_80", "sm_80", "sm_90"]

    monkeypatch.setenv("QIMENG_ALLOWED_REPOS", REPO)
    dest, lock = tmp_path / "serving", tmp_path / "qimeng.lock"
    r = invoke("pull", "--repo", REPO, "--arch", "sm_86", "--registry", dest, "--endpoint", hub.url, "--write-lock", lock)
    assert r.exit_code == 0, r.output
    assert "sm_80 SASS" in r.output and f"2 bundle(s) verified in {dest}" in flat(r.output)
    assert read_lock(lock).commit == head

    r = invoke("verify", "--registry", dest, "--lock", lock)
    assert r.exit_code == 0 and "2 bundle(s) match index.json and the lock" in flat(r.output)
    data = bytearray((dest / SM80_F16).read_bytes())
    data[-3] ^= 0x10
    (dest / SM80_F16).write_bytes(bytes(data))
    r = invoke("verify", "--registry", dest)
    assert r.exit_code == 1 and "sha256" in r.output and "1 of 2 bundle(s) do not match" in flat(r.output)


def test_errors_are_one_error_and_one_fix_line(hub, local_registry, tmp_path):
    published_repo(hub, local_registry)
    r = invoke("pull", "--repo", REPO, "--arch", "sm_80", "--registry", tmp_path / "x", "--endpoint", hub.url)
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert "error: org/kernels is not in the allow-list" in flat(r.output) and "fix: " in r.output
    r = invoke("pull", "--repo", REPO, "--arch", "sm_61x", "--registry", tmp_path / "x", "--endpoint", hub.url,
               "--allow-untrusted")
    assert r.exit_code == 2 and "is not a GPU architecture" in flat(r.output)
    r = invoke("list", "--registry", tmp_path / "empty")
    assert r.exit_code == 2 and "has no index.json" in flat(r.output) and "fix: " in r.output


def test_publish_refusal_exits_2_and_uploads_nothing(hub, tmp_path):
    from tests.registry.bundles import make_registry

    reg = make_registry(tmp_path / "r", [{"arch": "sm_80", "dtype": "f16", "validation": None}])
    r = invoke("publish", "--registry", reg, "--repo", REPO, "--endpoint", hub.url)
    assert r.exit_code == 2 and "not validated on a GPU" in flat(r.output) and REPO not in hub.state.repos


def test_help_explains_the_commands():
    for command, words in (("publish", ("ONE commit", "--tag", "--allow-unvalidated")),
                           ("pull", ("--write-lock", "--lock", "QIMENG_ALLOWED_REPOS", "--allow-untrusted")),
                           ("verify", ("index.json", "--lock")), ("list", ("--repo", "--json"))):
        r = invoke(command, "--help")
        assert r.exit_code == 0 and all(w in flat(r.output) for w in words), (command, r.output)


@pytest.fixture
def filled_cache(hf_env, local_registry, monkeypatch):
    """A repo published and pulled once (the HF cache holds it), then the server gone."""
    monkeypatch.setenv("QIMENG_ALLOWED_REPOS", REPO)
    server = FakeHub()
    assert invoke("publish", "--registry", local_registry, "--repo", REPO, "--endpoint", server.url).exit_code == 0
    r = invoke("pull", "--repo", REPO, "--arch", "sm_80", "--registry", hf_env.parent / "first", "--endpoint", server.url)
    assert r.exit_code == 0, r.output
    server.stop()
    return server.url


@pytest.mark.parametrize("offline", ["HF_HUB_OFFLINE=1", "dead port"])
def test_pull_then_load_with_the_network_off(filled_cache, hf_env, local_registry, tmp_path, offline):
    env = {k: v for k, v in os.environ.items() if not k.startswith("QIMENG_")}
    env.update(HF_HOME=str(hf_env.parent), HF_HUB_CACHE=str(hf_env), QIMENG_ALLOWED_REPOS=REPO, HF_HUB_DISABLE_XET="1")
    if offline == "HF_HUB_OFFLINE=1":
        env["HF_HUB_OFFLINE"] = "1"
    env["HF_ENDPOINT"] = filled_cache  # the Hub the cache came from; its port is dead now
    dest = tmp_path / "offline-registry"
    proc = subprocess.run([CLI, "pull", "--repo", REPO, "--arch", "sm_80", "--dtype", "f16", "--registry", str(dest)],
                          check=False, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    if offline == "dead port":
        assert "warning: the Hub at" in flat(proc.stderr) and "cannot be reached" in flat(proc.stderr)
    manifest = read_manifest(dest / SM80_F16)  # load it back: manifest and every blob
    for meta in manifest["kernels"].values():
        assert read_blob(dest / SM80_F16, meta["tensors"]["cubin"]) == read_blob(local_registry / SM80_F16, meta["tensors"]["cubin"])
    verify = subprocess.run([CLI, "verify", "--registry", str(dest)], check=False, env=env, capture_output=True, text=True, timeout=120)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_offline_with_nothing_cached_says_what_is_missing(hf_env, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("QIMENG_")}
    env.update(HF_HOME=str(hf_env.parent), HF_HUB_CACHE=str(hf_env), HF_HUB_OFFLINE="1", QIMENG_ALLOWED_REPOS=REPO)
    proc = subprocess.run([CLI, "pull", "--repo", REPO, "--arch", "sm_80", "--registry", str(tmp_path / "r")],
                          check=False, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "error: cannot reach the Hub for org/kernels@main (HF_HUB_OFFLINE=1)" in flat(proc.stderr)
    assert "fix: on a machine that reaches the Hub run `qimeng-serve pull --repo org/kernels" in flat(proc.stderr)


def test_index_rewrites_an_old_index_from_the_bundles(local_registry):
    old = json.loads((local_registry / "index.json").read_text())
    for e in old["bundles"]:
        e["validation"] = "8/8 passed"  # the string summary an older qimeng-serve wrote
    (local_registry / "index.json").write_text(json.dumps(old))
    r = invoke("list", "--registry", local_registry)
    assert r.exit_code == 2 and "qimeng-serve index --registry DIR" in flat(r.output)
    r = invoke("index", "--registry", local_registry)
    assert r.exit_code == 0 and "4 bundle(s)" in r.output
    assert invoke("verify", "--registry", local_registry).exit_code == 0
