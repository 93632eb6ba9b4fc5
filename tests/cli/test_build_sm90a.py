"""`build --arch sm_90` ships the Hopper (sm_90a) kernels in the sm_90 bundle, beside the portable
ones (real nvcc, no GPU). One Hopper kernel is compiled (bf16, D = 64) and reused: the module's
build cache makes every later build of it a hit. Copies of the program that tune their D = 64 params
to calls without a mask, or to long key sequences, add the second kernel each such program makes."""

import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from qimeng_serve.build import pipeline
from qimeng_serve.build.bundle import read_blob, read_manifest
from qimeng_serve.build.kernel_set import (
    LONG_KEYS,
    HopperPrograms,
    KernelJob,
    default_jobs,
    hopper_jobs,
    hopper_program_path,
    hopper_variant_program,
    length_specialised,
    long_generated,
    long_program,
    mask_specialised,
)
from qimeng_serve.cli import app
from qimeng_serve.errors import QimengError
from qimeng_serve.registry.index import read_index
from qimeng_serve.spec import AttentionSpec
from qimeng_serve.targets import get_target
from qimeng_serve.tl.interpreter import resolve_params
from qimeng_serve.tl.parser import parse_tl_file
from tests.conftest import GOLDEN_DIR, REPO

needs_nvcc = pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc on PATH")
ONE = {"dtypes": ["bf16"], "head_dims": [64], "families": ["dense_prefill"]}
CLI_ONE = ["--arch", "sm_90", "--family", "dense_prefill", "--dtype", "bf16", "--head-dim", "64"]
BUNDLE = Path("sm_90/bf16/qimeng-default-sm_90-bf16.safetensors")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        path = tmp_path_factory.mktemp("qimeng-cache")
        mp.setenv("QIMENG_CACHE_DIR", str(path))
        yield path


@pytest.fixture(scope="module")
def built(cache_dir, tmp_path_factory):
    """One sm_90 build of dense prefill bf16 D=64: the portable kernel and the Hopper one."""
    reg = tmp_path_factory.mktemp("reg")
    report = pipeline.build_arch("sm_90", reg, **ONE)
    return reg, report


def _sm90a(manifest):
    return {n: m for n, m in manifest["kernels"].items() if m.get("variant") == "sm90a"}


# ------------------------------------------------------------------ which jobs (no nvcc)
def test_hopper_jobs_follow_the_filters_and_the_arch():
    sm90 = get_target("sm_90")
    dense = default_jobs(sm90, ["f16", "bf16"], [64, 128], ["dense_prefill"])
    extra = hopper_jobs(sm90, dense)
    # D = 128 tunes its params to long key sequences (LONG = 1): a second job, with the causal spec, for calls with
    # at least LONG_KEYS keys. No program block tunes to the mask: one kernel serves both masks
    want = [[(j.spec, "sm90a", 0)] + ([(j.spec, "sm90a", LONG_KEYS)] if j.spec.head_dim == 128 else [])
            for j in dense]
    assert [(j.spec, j.variant, j.tuned_keys) for j in extra] == [x for group in want for x in group]
    assert all(j.generated is None and j.label.endswith(" sm90a long" if j.tuned_keys else " sm90a") for j in extra)
    assert hopper_jobs(sm90, default_jobs(sm90, ["f16"], [64], ["paged_decode"])) == []
    sm80 = get_target("sm_80")
    assert hopper_jobs(sm80, default_jobs(sm80, ["f16"], [64], ["dense_prefill"])) == []


def test_only_the_family_sm90_file_is_a_hopper_program(tmp_path):
    sm90 = get_target("sm_90")
    jobs = default_jobs(sm90, ["f16"], [64], ["dense_prefill", "paged_prefill"])
    for alt in ("dense_prefill_sm90_pingpong.tl", "dense_prefill_sm90_overlap.tl"):  # experiments, not shipped
        shutil.copy(GOLDEN_DIR / alt, tmp_path / alt)
    assert hopper_program_path("dense_prefill", tmp_path) is None and hopper_jobs(sm90, jobs, tmp_path) == []
    shutil.copy(GOLDEN_DIR / "dense_prefill_sm90.tl", tmp_path / "paged_prefill_sm90.tl")  # once it appears
    assert {j.spec.op for j in hopper_jobs(sm90, jobs, tmp_path)} == {"paged_prefill"}


def test_hopper_entries_get_a_name_of_their_own():
    """The planner names its sm_90 programs `<family>_sm90`, like the Hopper file: the bundle's entry
    names (qm_<program>_<kernel>_<dtype>_hd<D>) would collide without the rename."""
    program = parse_tl_file(GOLDEN_DIR / "dense_prefill_sm90.tl")
    assert program.name == "dense_prefill_sm90"
    assert hopper_variant_program(program).name == "dense_prefill_sm90a"
    generated = HopperPrograms().generate(AttentionSpec("dense_prefill", "bf16", 64), get_target("sm_90"))
    assert generated.record.generator == "golden" and generated.name == "dense_prefill_sm90.tl"
    assert generated.record.details == {"file": "dense_prefill_sm90.tl", "variant": "sm90a",
                                        "program": "dense_prefill_sm90", "tuned_mask": "causal"}
    full = HopperPrograms().generate(AttentionSpec("dense_prefill", "bf16", 64, causal=False), get_target("sm_90"))
    assert full.program.name == "dense_prefill_sm90a_full" and full.record.details["tuned_mask"] == "full"


# a copy of the Hopper program whose D = 64 params differ for calls without a causal mask
MASK_TUNED = "\nparams when D = 64 and CAUSAL = 0 {\n  BLOCK_N = 96\n  STAGES = 3\n}\n"


def _tuned_copy(tmp_path: Path, blocks: str) -> Path:
    """tmp_path holding a copy of the Hopper program with `blocks` put before its kernel."""
    text = (GOLDEN_DIR / "dense_prefill_sm90.tl").read_text()
    at = text.index("\nkernel ")
    (tmp_path / "dense_prefill_sm90.tl").write_text(text[:at] + blocks + text[at:])
    return tmp_path


@pytest.fixture
def mask_tuned_dir(tmp_path):
    return _tuned_copy(tmp_path, MASK_TUNED)


def test_a_program_tunes_to_the_mask_only_where_a_block_says_so(mask_tuned_dir):
    shipped = parse_tl_file(GOLDEN_DIR / "dense_prefill_sm90.tl")
    program = parse_tl_file(mask_tuned_dir / "dense_prefill_sm90.tl")
    d64, d128 = AttentionSpec("dense_prefill", "bf16", 64), AttentionSpec("dense_prefill", "bf16", 128)
    assert mask_specialised(program, d64) and not mask_specialised(program, d128)
    # the shipped program: one set of params per head size for both masks (D = 128's CARRY = 1 under a causal mask
    # gave way to O's bulk store, which serves both)
    assert not mask_specialised(shipped, d64) and not mask_specialised(shipped, d128)
    full = resolve_params(program, replace(d64, causal=False))
    assert full["BLOCK_N"] == 96 and resolve_params(program, d64)["BLOCK_N"] == 128
    sm90 = get_target("sm_90")
    jobs = hopper_jobs(sm90, default_jobs(sm90, ["bf16"], [64, 128], ["dense_prefill"]), mask_tuned_dir)
    assert [(j.spec.head_dim, j.spec.causal, j.tuned_keys) for j in jobs] == [
        (64, True, 0), (64, False, 0), (128, True, 0), (128, True, LONG_KEYS)]


# a copy of the Hopper program whose D = 64 params differ for long key sequences
LONG_TUNED = "\nparams when D = 64 and LONG = 1 {\n  BLOCK_N = 96\n  STAGES = 3\n}\n"


@pytest.fixture
def long_tuned_dir(tmp_path):
    return _tuned_copy(tmp_path, LONG_TUNED)


def test_long_sequence_params_apply_only_to_the_long_kernel(long_tuned_dir):
    shipped = parse_tl_file(GOLDEN_DIR / "dense_prefill_sm90.tl")
    program = parse_tl_file(long_tuned_dir / "dense_prefill_sm90.tl")
    d64, d128 = AttentionSpec("dense_prefill", "bf16", 64), AttentionSpec("dense_prefill", "bf16", 128)
    # LONG is no spec constant: the block is inert in the program itself and applies in long_program
    assert resolve_params(program, d64)["BLOCK_N"] == 128 and resolve_params(long_program(program), d64)["BLOCK_N"] == 96
    assert length_specialised(program, d64) and not length_specialised(shipped, d64)
    # the shipped one: 144-key tiles for long sequences at D = 128, the same under both masks (CARRY = 0)
    long128 = long_program(shipped)
    assert length_specialised(shipped, d128)
    assert resolve_params(long128, d128) == resolve_params(long128, replace(d128, causal=False))
    assert resolve_params(long128, d128)["BLOCK_N"] == 144 and resolve_params(shipped, d128)["BLOCK_N"] == 128
    generated = HopperPrograms(long_tuned_dir).generate(d64, get_target("sm_90"))
    built = long_generated(generated)
    assert built.program.name == "dense_prefill_sm90a_long" and "program dense_prefill_sm90a_long" in built.text
    assert built.record.details["tuned_mask"] == "any" and built.record.details["min_seqlen_k"] == LONG_KEYS
    assert long_generated(HopperPrograms().generate(d64, get_target("sm_90"))) is None  # nothing long at D = 64


def test_long_params_that_differ_by_mask_are_refused(tmp_path):
    """One long kernel serves both masks, so its params must not depend on the mask (here BLOCK_N does)."""
    folder = _tuned_copy(tmp_path, MASK_TUNED + "\nparams when D = 64 and LONG = 1 {\n  STAGES = 3\n}\n")
    with pytest.raises(QimengError, match="LONG = 1 params differ between the masks"):
        length_specialised(parse_tl_file(folder / "dense_prefill_sm90.tl"), AttentionSpec("dense_prefill", "bf16", 64))


def test_a_long_job_whose_program_has_no_long_params_is_dropped():
    """The Hopper planner's programs have no LONG = 1 block: the long job goes, and nothing failed."""
    sm90 = get_target("sm_90")
    job = KernelJob(AttentionSpec("dense_prefill", "bf16", 64), variant="sm90a", tuned_keys=LONG_KEYS)
    report = pipeline.BuildReport("sm_90")
    assert pipeline._generate([job], sm90, HopperPrograms(), report, None) == [] and not report.not_generated


def test_a_program_the_hopper_lowering_refuses_is_a_rejection_not_a_crash(tmp_path):
    program = hopper_variant_program(parse_tl_file(GOLDEN_DIR / "dense_prefill_sm90.tl"))
    generated = HopperPrograms().generate(AttentionSpec("dense_prefill", "f16", 64), get_target("sm_90"))
    job = KernelJob(AttentionSpec("paged_decode", "f16", 64, 16), generated, "sm90a")  # no Hopper decode
    assert job.program.name == program.name
    outcome = pipeline.compile_hopper_job(job, get_target("sm_90"), None, tmp_path)
    assert outcome.rejected.startswith("the sm90a lowering refused dense_prefill_sm90.tl")
    assert outcome.source.entries == [] and not outcome.spilled


# ------------------------------------------------------------------ the bundle (nvcc)
@needs_nvcc
def test_the_sm90_bundle_holds_the_hopper_kernel_beside_the_portable_one(built):
    reg, report = built
    assert not report.not_generated and not [o.rejected for o in report.outcomes if o.rejected]
    assert sorted(o.job.variant for o in report.outcomes) == ["", "sm90a"]
    manifest = read_manifest(reg / BUNDLE)
    (name, meta), = _sm90a(manifest).items()
    (portable,) = [n for n in manifest["kernels"] if n != name]
    assert name == "qm_dense_prefill_sm90a_attn_bf16_hd64" and portable != name
    assert meta["tuned_mask"] == "causal"
    assert set(manifest["kernels"][portable]["tensors"]) == {"cubin", "ptx", "cuda"}  # still ships compute_90 PTX
    assert meta["family"] == "dense_prefill" and meta["role"] == "attn" and meta["spec"]["head_dim"] == 64
    # D = 64 runs persistent: the kernel's third parameter is the tile counter the runtime zeroes
    assert meta["abi"] == "attn_params+tma_descs+tile_counter+retire" and meta["tma_layout"] == "dense"
    assert set(meta["tensor_maps"]) == {"q", "k", "v"} and all(isinstance(r, int) for r in meta["tensor_maps"].values())
    assert meta["tensors"] == {"cubin": f"{name}.cubin", "cuda": f"{name}.cu"}  # no PTX: compute_90a runs nowhere else
    assert "-gencode=arch=compute_90a,code=sm_90a" in meta["nvcc_flags"]
    assert meta["observed"]["ptx"] == []
    assert meta["tl"]["generator"] == "golden" and meta["tl"]["file"] == "dense_prefill_sm90.tl"
    assert "program dense_prefill_sm90a" in meta["tl"]["source"]
    assert meta["resources"]["spill_stores"] + meta["resources"]["spill_loads"] <= pipeline.SPILL_LIMIT_BYTES
    # every field a portable entry has, the sm90a entry has too
    assert set(manifest["kernels"][portable]) <= set(meta)
    assert meta["validation"] is None and meta["benchmark"] is None
    cubin = read_blob(reg / BUNDLE, meta["tensors"]["cubin"])
    assert cubin[:4] == b"\x7fELF" and read_blob(reg / BUNDLE, meta["tensors"]["cuda"]).startswith(b"// Generated")
    assert f"{name}(const qm::AttnParams p".encode() in read_blob(reg / BUNDLE, meta["tensors"]["cuda"])


@needs_nvcc
def test_a_mask_tuned_program_adds_a_kernel_the_runtime_prefers_without_a_mask(cache_dir, mask_tuned_dir, tmp_path):
    pipeline.build_arch("sm_90", tmp_path, **ONE, tl_dir=mask_tuned_dir)
    hopper = _sm90a(read_manifest(tmp_path / BUNDLE))
    name, full = "qm_dense_prefill_sm90a_attn_bf16_hd64", "qm_dense_prefill_sm90a_full_attn_bf16_hd64"
    assert set(hopper) == {name, full}
    assert hopper[name]["tuned_mask"] == "causal" and hopper[full]["tuned_mask"] == "full"
    assert hopper[full]["spec"]["causal"] is False and hopper[full]["abi"] == hopper[name]["abi"]
    assert hopper[full]["params"]["BLOCK_N"] == 96 and hopper[name]["params"]["BLOCK_N"] == 128
    assert "program dense_prefill_sm90a_full" in hopper[full]["tl"]["source"]
    assert hopper[full]["resources"]["spill_stores"] == 0
    # KernelSet.find (tests/unit/runtime/test_sm90a_selection.py) orders the two by this field
    from qimeng_serve.runtime.ops import tuned_for

    assert tuned_for(hopper[full], False) and not tuned_for(hopper[full], True) and tuned_for(hopper[name], True)


@needs_nvcc
def test_a_long_tuned_program_adds_a_kernel_the_runtime_prefers_for_long_calls(cache_dir, long_tuned_dir, tmp_path):
    report = pipeline.build_arch("sm_90", tmp_path, **ONE, tl_dir=long_tuned_dir)
    assert not [o.rejected for o in report.outcomes if o.rejected]
    hopper = _sm90a(read_manifest(tmp_path / BUNDLE))
    name, long = "qm_dense_prefill_sm90a_attn_bf16_hd64", "qm_dense_prefill_sm90a_long_attn_bf16_hd64"
    assert set(hopper) == {name, long}
    assert hopper[long]["tuned_mask"] == "any" and hopper[long]["min_seqlen_k"] == LONG_KEYS
    assert "min_seqlen_k" not in hopper[name] and hopper[long]["abi"] == hopper[name]["abi"]
    assert hopper[long]["params"]["BLOCK_N"] == 96 and hopper[name]["params"]["BLOCK_N"] == 128
    assert hopper[long]["tensor_maps"]["k"] == 96 and hopper[long]["spec"]["causal"] is True
    assert "program dense_prefill_sm90a_long" in hopper[long]["tl"]["source"]
    assert hopper[long]["tl"]["record"]["details"]["min_seqlen_k"] == LONG_KEYS
    # KernelSet.find (tests/unit/runtime/test_sm90a_selection.py) orders them by these fields
    from qimeng_serve.runtime.ops import preference

    for causal in (True, False):
        assert preference(hopper[long], causal, LONG_KEYS) < preference(hopper[name], causal, LONG_KEYS)
        assert preference(hopper[long], causal, LONG_KEYS - 1) > preference(hopper[name], causal, LONG_KEYS - 1)


@needs_nvcc
def test_the_hopper_sass_is_really_in_the_bundle(built):
    from qimeng_serve.build.toolchain import find_toolchain
    from qimeng_serve.lower.sm90_build import opcode_counts, sass_text

    toolchain = find_toolchain()
    if toolchain.cuobjdump is None:
        pytest.skip("cuobjdump is missing: pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm")
    reg, _ = built
    manifest = read_manifest(reg / BUNDLE)
    for meta in _sm90a(manifest).values():
        assert meta["observed"] == {"sass": ["sm_90a"], "ptx": []}
        counts = opcode_counts(sass_text(read_blob(reg / BUNDLE, meta["tensors"]["cubin"]), toolchain))
        assert counts["HGMMA"] > 0 and counts["UTMALDG"] > 0, counts


# the schedule of dense D 64's KV loop in the kernel timed in session 17 (idle=skip: runs 5-6 of
# docs/results/hopper-h100-v15; scripts/sass_kv_loop.py --record)
D64_KV_LOOP = REPO / "docs" / "results" / "hopper-h100-v15" / "dense-d64-kv-loop.txt"


@needs_nvcc
def test_dense_d64_keeps_the_kv_loop_schedule_that_was_timed(built):
    """Two builds of D 64's params whose KV loops held the same opcodes in another order timed 4-6%
    apart (docs/perf-notes.md "thirteenth run"): a change that reorders the loop must be timed before
    it ships. Re-record with `scripts/sass_kv_loop.py CUBIN --record` once the new loop is measured."""
    import importlib.util

    from qimeng_serve.build.toolchain import find_toolchain
    from qimeng_serve.lower.sm90_build import sass_text

    toolchain = find_toolchain()
    if toolchain.cuobjdump is None:
        pytest.skip("cuobjdump is missing: pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm")
    spec = importlib.util.spec_from_file_location("sass_kv_loop", REPO / "scripts" / "sass_kv_loop.py")
    kv = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(kv)
    reg, _ = built
    (meta,) = _sm90a(read_manifest(reg / BUNDLE)).values()
    body = kv.kv_loop(kv.parse(sass_text(read_blob(reg / BUNDLE, meta["tensors"]["cubin"]), toolchain)))
    diff = kv.schedule_diff(D64_KV_LOOP.read_text().splitlines(), body)
    assert not diff, "dense D 64's KV loop is scheduled differently from the timed one:\n" + "\n".join(diff[:60])


@needs_nvcc
def test_the_index_lists_sm90a_sass_and_passes_its_schema(built):
    reg, _ = built
    index = read_index(reg / "index.json")  # jsonschema-validated (registry/index.schema.json)
    (entry,) = index["bundles"]
    assert entry["path"] == BUNDLE.as_posix() and entry["ptx"] == ["compute_90"]
    from qimeng_serve.build.toolchain import find_toolchain

    assert "sm_90" in entry["sass"] or find_toolchain().cuobjdump is None
    assert "sm_90a" in entry["sass"] or find_toolchain().cuobjdump is None
    assert entry["validation"]["total"] == 2


@needs_nvcc
def test_a_rebuild_takes_the_hopper_kernel_from_the_cache(built, tmp_path):
    report = pipeline.build_arch("sm_90", tmp_path / "again", **ONE)
    assert [o.cached for o in report.outcomes if o.job.variant == "sm90a"] == [True]
    reg, _ = built
    assert (tmp_path / "again" / BUNDLE).read_bytes() == (reg / BUNDLE).read_bytes()


@needs_nvcc
def test_build_cli_shows_the_hopper_kernels_and_no_hopper_leaves_them_out(built, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["build", *CLI_ONE, "--registry", str(tmp_path / "with")])
    assert result.exit_code == 0, result.output
    assert "sm90a: 1 Hopper kernel(s)" in result.output and "sm_90a" in result.output
    assert len(_sm90a(read_manifest(tmp_path / "with" / BUNDLE))) == 1
    result = runner.invoke(app, ["build", *CLI_ONE, "--no-hopper", "--registry", str(tmp_path / "without")])
    assert result.exit_code == 0, result.output
    assert "sm90a" not in result.output
    kernels = read_manifest(tmp_path / "without" / BUNDLE)["kernels"]
    assert len(kernels) == 1 and not _sm90a({"kernels": kernels})
    # --no-hopper over a bundle that had them: the rebuilt family/head size has none left
    result = runner.invoke(app, ["build", *CLI_ONE, "--no-hopper", "--registry", str(tmp_path / "with")])
    assert result.exit_code == 0 and not _sm90a(read_manifest(tmp_path / "with" / BUNDLE))
