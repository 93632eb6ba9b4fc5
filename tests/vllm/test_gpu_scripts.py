"""The GPU-side scripts (scripts/vllm_gpu) on the CPU: they import, answer --help, and the pieces they
judge the GPU by (the SDPA reference, paged-cache filling, the work formulas, the entry points) are right."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from importlib.metadata import distributions

import pytest
import torch

from tests.conftest import REPO
from tests.vllm.conftest import SKIP_REASON

vllm = pytest.importorskip("vllm", reason=SKIP_REASON)

SCRIPTS = REPO / "scripts" / "vllm_gpu"
NAMES = ("correctness", "graphs", "e2e", "bench", "make_tiny_llama", "entry_points", "summary", "registry_subset")


@pytest.fixture(scope="module")
def scripts():
    sys.path.insert(0, str(SCRIPTS))
    try:
        yield {name: importlib.import_module(name) for name in ("common", *NAMES)}
    finally:
        sys.path.remove(str(SCRIPTS))
        for name in ("common", *NAMES):  # top-level names like `common` must not leak into other tests
            sys.modules.pop(name, None)


@pytest.mark.parametrize("name", NAMES)
def test_each_script_imports_and_explains_itself(scripts, name, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [f"{name}.py", "--help"])
    with pytest.raises(SystemExit) as exc:
        scripts[name].main()
    assert exc.value.code == 0 and "usage:" in capsys.readouterr().out


def test_run_all_is_valid_bash():
    assert subprocess.run(["bash", "-n", str(SCRIPTS / "run_all.sh")], check=False).returncode == 0


def test_entry_points_folder_is_found_by_importlib(scripts, tmp_path):
    scripts["entry_points"].write_dist_info(tmp_path)
    (dist,) = [d for d in distributions(path=[str(tmp_path)])]
    eps = {(e.group, e.name): e.value for e in dist.entry_points}
    assert eps == {("vllm.general_plugins", "qimeng"): "qimeng_serve.vllm_plugin.registration:register",
                   ("vllm.platform_plugins", "qimeng_register"): "qimeng_serve.vllm_plugin.registration:platform_hook"}


def _naive(q, k, v, scale, window=0, softcap=0.0):
    lq, hq, _ = q.shape
    lk, hkv, _ = k.shape
    out = torch.zeros(lq, hq, q.shape[-1], dtype=torch.float64)
    for h in range(hq):
        kh = h // (hq // hkv)
        for i in range(lq):
            row = i + lk - lq
            keys = [j for j in range(lk) if j <= row and (not window or j > row - window)]
            s = torch.stack([(q[i, h].double() @ k[j, kh].double()) * scale for j in keys])
            if softcap:
                s = softcap * torch.tanh(s / softcap)
            p = torch.softmax(s, 0)
            out[i, h] = sum(p[n] * v[j, kh].double() for n, j in enumerate(keys))
    return out


@pytest.mark.parametrize("lq, lk, hq, hkv, window, softcap", [
    (1, 37, 4, 1, 0, 0.0), (5, 5, 2, 2, 0, 0.0), (6, 20, 8, 2, 7, 0.0), (3, 9, 4, 4, 0, 2.0)])
def test_sdpa_reference_is_causal_bottom_right_with_gqa_window_and_softcap(scripts, lq, lk, hq, hkv, window, softcap):
    gen = torch.Generator().manual_seed(lq * 100 + lk)
    q, k, v = (torch.randn(n, h, 16, generator=gen) for n, h in ((lq, hq), (lk, hkv), (lk, hkv)))
    got = scripts["common"].reference_attention(q, k, v, scale=0.25, window=window, softcap=softcap)
    assert torch.allclose(got.double(), _naive(q, k, v, 0.25, window, softcap), atol=1e-5)


def test_context_written_through_the_block_table_reads_back_and_nothing_else_changes(scripts, registered):
    from qimeng_serve.vllm_plugin.backend import QimengAttentionBackend
    from qimeng_serve.vllm_plugin.batch import BatchSpec, make_batch
    from qimeng_serve.vllm_plugin.harness import new_kv_cache

    common = scripts["common"]
    seqs, bs = (33, 5, 16), 16
    batch = make_batch(BatchSpec(seqs, (1, 5, 16)), bs, "cpu", seed=3)
    kv = new_kv_cache(QimengAttentionBackend, batch.num_blocks, bs, 2, 8, torch.float32, "cpu").fill_(float("nan"))
    k_cache, v_cache = common.split_kv(kv, 8)
    data = [(torch.randn(s, 2, 8), torch.randn(s, 2, 8)) for s in seqs]
    for i, (k, v) in enumerate(data):
        common.write_context(k_cache, v_cache, batch.metadata.block_table_tensor[i], k, v, bs, seqs[i])
    for i, (k, v) in enumerate(data):
        k_back, v_back = common.read_context(k_cache, v_cache, batch.metadata.block_table_tensor[i], seqs[i], bs)
        assert torch.equal(k_back, k) and torch.equal(v_back, v)
    assert int((~torch.isnan(kv)).sum()) == sum(seqs) * 2 * 2 * 8  # exactly the written K and V elements
    assert torch.isnan(kv[0]).all()  # vLLM's null block is never written
    # the slot mapping vLLM writes new tokens to agrees with the block table the kernels read
    slots = batch.metadata.slot_mapping
    table = batch.metadata.block_table_tensor
    assert int(slots[0]) == int(table[0, 32 // bs]) * bs + 32 % bs


def test_work_formulas(scripts):
    common = scripts["common"]
    brute = sum(1 for s, q in ((10, 3), (4, 4)) for i in range(q) for j in range(s) if j <= i + s - q)
    assert common.attention_pairs((10, 4), (3, 4)) == brute
    brute_w = sum(1 for i in range(3) for j in range(10) if 7 + i - 4 < j <= i + 7)
    assert common.attention_pairs((10,), (3,), window=4) == brute_w
    assert common.kv_bytes((10, 6), 2, 128, torch.float16) == 2 * 16 * 2 * 128 * 2


def test_summary_reads_every_step(scripts, tmp_path):
    (tmp_path / "vllm_correctness.json").write_text(json.dumps({"status": "passed", "checked": 9, "failed": 0}))
    (tmp_path / "vllm_e2e.json").write_text(json.dumps({"status": "failed", "comparisons": {"qimeng_eager": {"ok": False}},
                                                         "error": "x"}))
    summary = scripts["summary"].summarize(tmp_path)
    assert summary["vllm_correctness"]["cases"] == "9/9 passed"
    assert summary["vllm_e2e"]["runs"] == {"qimeng_eager": False} and summary["vllm_e2e"]["status"] == "failed"



def test_registry_subset_is_a_registry_the_plugin_serves_from(scripts, serving_registry, tmp_path, monkeypatch):
    from qimeng_serve.errors import QimengError
    from qimeng_serve.vllm_plugin import artifacts

    monkeypatch.setattr(sys, "argv", ["registry_subset.py", str(tmp_path / "sub"), "--from", str(serving_registry),
                                      "--bundle", "sm_90/f16", "--bundle", "sm_75/f16"])
    scripts["registry_subset"].main()
    index = json.loads((tmp_path / "sub" / "index.json").read_text())
    assert sorted(e["path"] for e in index["bundles"]) == ["sm_75/f16/qimeng-default-sm_75-f16.safetensors",
                                                          "sm_90/f16/qimeng-default-sm_90-f16.safetensors"]
    monkeypatch.setenv("QIMENG_REGISTRY", str(tmp_path / "sub"))
    artifacts.clear_cache()
    try:
        assert artifacts.serving_artifact((9, 0), "f16", 128).bundle_path.parent.parent.parent == tmp_path / "sub"
        with pytest.raises(QimengError, match="wrong dtype f16 \\(want bf16\\)"):
            artifacts.serving_artifact((9, 0), "bf16", 128)
    finally:
        artifacts.clear_cache()


def _slot_write(self, layer, key, value, kv_cache, slot_mapping):
    """What vLLM's cache-write kernel does (Triton, GPU only): token t -> slot slot_mapping[t], -1 skipped."""
    k_cache, v_cache = self._cache_views(kv_cache)
    real = slot_mapping >= 0
    k_cache.flatten(0, 1)[slot_mapping[real]] = key[real]
    v_cache.flatten(0, 1)[slot_mapping[real]] = value[real]


@pytest.mark.parametrize("case", [
    {"batch": "mixed", "heads": 8, "kv_heads": 2, "block_size": 16},
    {"batch": "decode", "heads": 32, "kv_heads": 1, "block_size": 32},
    {"batch": "graph_padded_decode", "heads": 8, "kv_heads": 2, "block_size": 16, "pad": 8,
     "seqs": (5, 77, 1025), "queries": (1, 1, 1)},
    {"batch": "mixed_window_softcap", "heads": 8, "kv_heads": 2, "block_size": 16, "window": 256, "softcap": 50.0},
])
def test_correctness_case_runs_on_the_cpu_with_emulated_kernels(scripts, plugin_env, registered, monkeypatch,
                                                                 tmp_path, case):
    """correctness.run_case as the GPU runs it (vLLM layers, builder, cache, do_kv_cache_update, forward,
    reference), with the two GPU-only pieces replaced: the cubins by the ABI emulator, vLLM's Triton
    cache write by the same slot-mapping write in torch."""
    from qimeng_serve.vllm_plugin.artifacts import ServingArtifact
    from qimeng_serve.vllm_plugin.impl import QimengAttentionImpl
    from tests.vllm.abi_emulator import EmulatedKernelSet

    monkeypatch.setenv("QIMENG_CAPABILITY", "9.0")
    monkeypatch.setattr(ServingArtifact, "kernels", lambda self: EmulatedKernelSet(self.plan))
    monkeypatch.setattr(QimengAttentionImpl, "do_kv_cache_update", _slot_write)
    correctness = scripts["correctness"]
    args = {"seqs": correctness.BATCHES["mixed"][0], "queries": correctness.BATCHES["mixed"][1]} | case
    if args["batch"] in correctness.BATCHES:
        args["seqs"], args["queries"] = correctness.BATCHES[args["batch"]]
    row = correctness.run_case(tmp_path / "m", dtype=torch.float16, head_dim=128, device="cpu", **args)
    assert row["ok"] and row["kv_write_ok"] and row["nan"] == 0, row
    assert row["bundle"] == ("qimeng-softcap50-sm_90-f16.safetensors" if case.get("softcap")
                             else "qimeng-default-sm_90-f16.safetensors")
