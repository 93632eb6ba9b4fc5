"""TL -> CUDA -> nvcc -> bundle for every primary arch (needs nvcc, no GPU)."""

import shutil

import pytest
from typer.testing import CliRunner

from qimeng_serve.build.bundle import read_blob, read_manifest
from qimeng_serve.build.pipeline import SPILL_LIMIT_BYTES, build_arch
from qimeng_serve.cli import app
from qimeng_serve.targets import PRIMARY_ARCHS

pytestmark = pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc on PATH")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("QIMENG_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.parametrize("arch", PRIMARY_ARCHS)
def test_one_kernel_per_arch_compiles_to_its_sass_and_ptx(arch, tmp_path, cache):
    # the portable kernel (sm_90's Hopper paged kernel, sm_90a SASS only, is tests/cli/test_build_sm90a.py's)
    report = build_arch(arch, tmp_path / "reg", dtypes=["f16"], head_dims=[64], families=["paged_prefill"], jobs_limit=1,
                        hopper=False)
    (outcome,) = report.outcomes
    assert not outcome.rejected, outcome.rejected
    assert outcome.observed == {"sass": [arch], "ptx": [arch.replace("sm_", "compute_")]}
    (bundle,) = report.bundles
    manifest = read_manifest(bundle)
    (name,) = manifest["kernels"]
    k = manifest["kernels"][name]
    assert manifest["arch"] == arch and manifest["dtype"] == "f16"
    spilled = k["resources"]["spill_stores"] + k["resources"]["spill_loads"]
    assert spilled <= SPILL_LIMIT_BYTES and k["resources"]["registers"] <= 255
    assert k["tl"]["source"].startswith("#") and len(k["tl"]["sha256"]) == 64
    assert k["validation"] is None  # filled in on a GPU by `qimeng-serve validate`
    assert read_blob(bundle, k["tensors"]["cubin"])[:4] == b"\x7fELF"
    assert b".target " + arch.encode() in read_blob(bundle, k["tensors"]["ptx"])
    assert (tmp_path / "reg" / "index.json").is_file()


def test_rebuild_hits_the_cache_and_bundles_are_byte_identical(tmp_path, cache):
    args = dict(dtypes=["f16"], head_dims=[64], families=["paged_prefill"], jobs_limit=1)
    first = build_arch("sm_75", tmp_path / "a", **args)
    second = build_arch("sm_75", tmp_path / "b", **args)
    assert [o.cached for o in first.outcomes] == [False] and [o.cached for o in second.outcomes] == [True]
    assert first.bundles[0].read_bytes() == second.bundles[0].read_bytes()


def test_build_cli_unknown_arch_and_bf16_on_turing(tmp_path, cache):
    runner = CliRunner()
    bad = runner.invoke(app, ["build", "--arch", "sm_61", "--registry", str(tmp_path)])
    assert bad.exit_code == 2 and "unknown GPU architecture 'sm_61'" in bad.output and "fix:" in bad.output
    bf16 = runner.invoke(app, ["build", "--arch", "sm_75", "--dtype", "bf16", "--registry", str(tmp_path)])
    assert bf16.exit_code == 2 and "sm_75 has no bf16 tensor cores" in bf16.output


def test_missing_nvcc_is_a_clear_error(tmp_path, cache, monkeypatch):
    from qimeng_serve.build import toolchain

    toolchain.find_toolchain.cache_clear()
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setenv("QIMENG_NVCC", "/nonexistent/nvcc")
    monkeypatch.setattr(toolchain.Path, "is_file", lambda self: False)
    result = CliRunner().invoke(app, ["build", "--arch", "sm_75", "--registry", str(tmp_path)])
    toolchain.find_toolchain.cache_clear()
    assert result.exit_code == 2 and "nvcc not found" in result.output and "fix:" in result.output


def test_a_partial_build_keeps_the_bundles_other_kernels(tmp_path, cache):
    reg = tmp_path / "reg"
    build_arch("sm_75", reg, dtypes=["f16"], head_dims=[64], families=["paged_prefill"], jobs_limit=1)
    report = build_arch("sm_75", reg, dtypes=["f16"], head_dims=[64], families=["dense_prefill"], jobs_limit=1)
    kernels = read_manifest(report.bundles[0])["kernels"]
    assert sorted(k["family"] for k in kernels.values()) == ["dense_prefill", "paged_prefill"]
    for meta in kernels.values():
        assert read_blob(report.bundles[0], meta["tensors"]["cubin"])[:4] == b"\x7fELF"


def test_softcap_kernels_are_their_own_kernel_set(tmp_path, cache):
    report = build_arch("sm_75", tmp_path / "reg", dtypes=["f16"], head_dims=[64], families=["paged_prefill"],
                        softcap=30.0, jobs_limit=1)
    (bundle,) = report.bundles
    assert bundle.name == "qimeng-softcap30-sm_75-f16.safetensors"
    manifest = read_manifest(bundle)
    (k,) = manifest["kernels"].values()
    assert manifest["kernel_set"] == "softcap30" and k["spec"]["softcap"] == 30.0
    assert b"qm::apply_softcap<KT>(S, mask);" in read_blob(bundle, k["tensors"]["cuda"])
