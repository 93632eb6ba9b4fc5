"""select_bundle: CUDA's SASS/PTX compatibility rules, preference order and rejection reasons (pure, no I/O)."""

import pytest

from qimeng_serve.registry.select import build_hint, select_bundle, select_for_gpu

ALL_OPS = ["dense_prefill", "paged_decode", "paged_prefill"]


def entry(arch, sass=None, ptx=None, dtype="f16", head_dims=(64, 128, 256), ops=ALL_OPS, kernel_set="default",
          validation="passed"):
    sass = [arch] if sass is None else sass
    ptx = [arch.replace("sm_", "compute_")] if ptx is None else ptx
    return {"path": f"{arch}/{dtype}/qimeng-{kernel_set}-{arch}-{dtype}.safetensors", "arch": arch, "dtype": dtype,
            "kernel_set": kernel_set, "head_dims": list(head_dims), "ops": list(ops), "sass": sass, "ptx": ptx,
            "size": 1, "sha256": "0" * 64, "validation": {"status": validation, "passed": 1, "total": 1},
            "benchmark": {"status": "not run"}}


# (GPU capability, bundles in the index as (arch, sass, ptx), expected pick path arch or None, expected how)
CASES = [
    # same-major SASS: sm_86 runs sm_80 SASS, prefers it to sm_75 PTX
    ((8, 6), [("sm_80", None, None), ("sm_75", None, None)], "sm_80", "sm_80 SASS"),
    # exact SASS beats an older same-major SASS (closest arch)
    ((8, 6), [("sm_80", None, None), ("sm_86", None, None)], "sm_86", "sm_86 SASS"),
    # never a higher minor: sm_89 SASS does not run on sm_86; sm_80 SASS does
    ((8, 6), [("sm_89", None, []), ("sm_80", None, [])], "sm_80", "sm_80 SASS"),
    # SASS of another major never runs: sm_90 GPU with only sm_80 bundle -> compute_80 PTX JIT
    ((9, 0), [("sm_80", None, None)], "sm_80", "compute_80 PTX JIT"),
    # SASS beats PTX even when the PTX is from a closer arch
    ((9, 0), [("sm_90", ["sm_90a"], []), ("sm_89", [], ["compute_89"])], "sm_90", "sm_90a SASS"),
    # sm_90a SASS runs on exactly sm_90 only: not on a (hypothetical) sm_91
    ((9, 1), [("sm_90", ["sm_90a"], ["compute_90"])], "sm_90", "compute_90 PTX JIT"),
    # compute_90a PTX is arch-specific: it does not JIT on Blackwell
    ((10, 0), [("sm_90", ["sm_90a"], ["compute_90a"])], None, ""),
    # plain compute_90 PTX JITs on sm_100 and sm_120
    ((10, 0), [("sm_90", None, None)], "sm_90", "compute_90 PTX JIT"),
    ((12, 0), [("sm_90", None, None), ("sm_80", None, None)], "sm_90", "compute_90 PTX JIT"),
    # sm_100f family SASS: same major, minor >= 0
    ((10, 3), [("sm_100", ["sm_100f"], [])], "sm_100", "sm_100f SASS"),
    # PTX newer than the GPU never runs
    ((7, 5), [("sm_80", None, None)], None, ""),
    # Turing picks its own SASS
    ((7, 5), [("sm_75", None, None), ("sm_80", None, None)], "sm_75", "sm_75 SASS"),
]


@pytest.mark.parametrize("capability, bundles, want_arch, want_how", CASES)
def test_sass_ptx_rules(capability, bundles, want_arch, want_how):
    index = {"bundles": [entry(a, s, p) for a, s, p in bundles]}
    sel = select_bundle(index, capability, "f16", 128, ["paged_prefill", "paged_decode"])
    if want_arch is None:
        assert sel.entry is None and not sel
        assert len(sel.rejections) == len(bundles)
    else:
        assert sel.entry["arch"] == want_arch, sel.explain()
        assert sel.how == want_how
        assert len(sel.rejections) == len(bundles) - 1  # every other candidate says why it lost


REJECTION_CASES = [
    (entry("sm_80", dtype="bf16"), "wrong dtype bf16 (want f16)"),
    (entry("sm_80", head_dims=(64, 256)), "head size 128 missing (has 64, 256)"),
    (entry("sm_80", ops=["dense_prefill", "paged_prefill"]), "op paged_decode missing (has dense_prefill, paged_prefill)"),
    (entry("sm_90", ptx=[]), "SASS sm_90 is for another major (the GPU is sm_86)"),
    (entry("sm_89"), "SASS sm_89 needs minor >= 9 (the GPU is sm_86)"),
    (entry("sm_89"), "PTX compute_89 is newer than the GPU (sm_86)"),
    (entry("sm_90", sass=["sm_90a"], ptx=["compute_90a"]), "PTX compute_90a JIT-compiles only for exactly sm_90"),
    (entry("sm_80", kernel_set="softcap50"), "kernel set softcap50 (want default)"),
    (entry("sm_80", validation="failed"), "validation failed"),
    (entry("sm_80", sass=[], ptx=[]), "no SASS or PTX targets recorded"),
]


@pytest.mark.parametrize("candidate, reason", REJECTION_CASES)
def test_every_rejection_has_its_reason(candidate, reason):
    sel = select_bundle({"bundles": [candidate]}, (8, 6), "f16", 128, ["paged_prefill", "paged_decode"])
    assert sel.entry is None
    [(rejected, why)] = sel.rejections
    assert rejected is candidate
    assert reason in why, why
    text = sel.explain()
    assert "sm_86" in text and "head size 128" in text and candidate["path"] in text and reason in text


def test_all_reasons_of_one_candidate_are_listed():
    bad = entry("sm_90", dtype="bf16", head_dims=(64,))
    sel = select_bundle({"bundles": [bad]}, (8, 6), "f16", 128, ["paged_decode"])
    why = sel.rejections[0][1]
    assert "wrong dtype" in why and "head size 128 missing" in why and "another major" in why


def test_dtype_aliases_and_validated_first():
    unvalidated = entry("sm_80", validation="not run")
    validated = dict(entry("sm_80"), path="sm_80/f16/qimeng-default-sm_80-f16-b.safetensors")
    sel = select_bundle({"bundles": [unvalidated, validated]}, (8, 0), "torch.float16", 64, ["dense_prefill"])
    assert sel.entry is validated and sel.how == "sm_80 SASS"
    assert select_bundle({"bundles": [entry("sm_80", dtype="bf16")]}, (8, 0), "bfloat16", 64, []).entry is not None


def test_empty_index_explains_itself():
    sel = select_bundle({"bundles": []}, (8, 0), "f16", 64, ["dense_prefill"])
    assert sel.entry is None and "no bundles" in sel.explain()


def test_select_for_gpu_picks_one_per_dtype_and_kernel_set():
    index = {"bundles": [entry("sm_75"), entry("sm_80"), entry("sm_80", dtype="bf16"), entry("sm_90"),
                         entry("sm_80", kernel_set="softcap50")]}
    chosen, rejected = select_for_gpu(index, (8, 6))
    assert sorted((e["dtype"], e["kernel_set"], e["arch"], how) for e, how in chosen) == [
        ("bf16", "default", "sm_80", "sm_80 SASS"), ("f16", "default", "sm_80", "sm_80 SASS"),
        ("f16", "softcap50", "sm_80", "sm_80 SASS")]
    assert {e["arch"] for e, _ in rejected} == {"sm_75", "sm_90"}
    only_bf16, _ = select_for_gpu(index, (8, 6), dtypes=["bf16"], kernel_sets=["default"])
    assert [e["dtype"] for e, _ in only_bf16] == ["bf16"]


@pytest.mark.parametrize("capability, hint", [
    ((8, 6), "`qimeng-serve build --arch sm_86`"),
    ((8, 7), "`qimeng-serve build --arch sm_86` (sm_87 runs its SASS)"),
    ((10, 0), "`qimeng-serve build --arch sm_90` (its PTX JIT-compiles on sm_100)"),
    ((7, 0), "nothing: qimeng-serve supports sm_75 and newer GPUs"),
])
def test_build_hint_names_an_arch_the_gpu_runs(capability, hint):
    assert build_hint(capability).startswith(hint)
