"""Programs the plugin tests run in a fresh interpreter (`python -m tests.vllm.drivers NAME ARGS`), each
printing one JSON line: what vLLM resolved, in a process whose vLLM state no other test touched."""

from __future__ import annotations

import json
import sys

GPU_ABSENT = {"lark", "typer", "rich", "anthropic", "nvidia"}  # build toolchain and CLI: not on GPU machines


class BlockForQimeng:
    """Refuses GPU_ABSENT modules to qimeng_serve code only (vLLM and transformers may probe for them)."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] not in GPU_ABSENT:
            return
        frame = sys._getframe(1)
        while frame and frame.f_globals.get("__name__", "").startswith(("importlib", "_frozen_importlib")):
            frame = frame.f_back
        if frame and frame.f_globals.get("__name__", "").startswith("qimeng_serve"):
            raise ImportError(f"{frame.f_globals['__name__']} imports {name}, which the GPU machines lack")
        return


def engine_config(model_dir: str) -> dict:
    """`--attention-backend qimeng` through vLLM's CLI parser and EngineArgs.create_engine_config; with
    the serving path (registration, backend, artifact resolution) denied what GPU machines lack."""
    sys.meta_path.insert(0, BlockForQimeng())
    from vllm.engine.arg_utils import EngineArgs
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = EngineArgs.add_cli_args(FlexibleArgumentParser())  # loads the general plugins first
    args = parser.parse_args(["--model", model_dir, "--attention-backend", "qimeng", "--max-model-len", "4096",
                              "--dtype", "float16", "--skip-tokenizer-init"])
    config = EngineArgs.from_cli_args(args).create_engine_config()
    backend = config.attention_config.backend
    from qimeng_serve.vllm_plugin import artifacts, batch, harness, impl, metadata  # noqa: F401

    art = artifacts.serving_artifact((9, 0), "f16", 128)
    return {"member": backend.name, "class": f"{backend.get_class().__module__}.{backend.get_class().__name__}",
            "served": [art.bundle_path.name, art.plan.decode_split]}


def spawn() -> dict:
    """Spawned children unpickle an AttentionConfig holding the QIMENG member, as vLLM's workers do: one
    with every plugin, one allowed only the general plugin (VLLM_PLUGINS=qimeng, no platform hook)."""
    import multiprocessing
    import os

    from vllm.config import AttentionConfig
    from vllm.plugins import load_general_plugins

    from tests.vllm import spawn_child

    load_general_plugins()
    config = AttentionConfig(backend="qimeng")
    ctx = multiprocessing.get_context("spawn")
    children = {}
    for label, allowed in (("with_hook", None), ("general_only", "qimeng")):
        if allowed:
            os.environ["VLLM_PLUGINS"] = allowed  # the child reads it when it resolves its platform
        queue = ctx.SimpleQueue()
        child = ctx.Process(target=spawn_child.report, args=(config, queue))
        child.start()
        children[label] = (child, queue)
    result = {"parent": config.backend.name}
    for label, (child, queue) in children.items():
        child.join(300)
        result[label] = {"exitcode": child.exitcode, "member": queue.get() if child.exitcode == 0 else None}
    return result


def compat_v026(model_dir: str) -> dict:
    """The plugin against vLLM 0.26 (PYTHONPATH = its unpacked wheel): the CUSTOM slot end to end on the CPU."""
    import os

    import torch
    import vllm
    import vllm.v1.engine.core
    from vllm.config import AttentionConfig
    from vllm.platforms.interface import DeviceCapability
    from vllm.plugins import load_general_plugins
    from vllm.v1.attention.backend import AttentionBackend
    from vllm.v1.attention.backends.registry import AttentionBackendEnum
    from vllm.v1.attention.selector import AttentionSelectorConfig

    from qimeng_serve.vllm_plugin import registration
    from qimeng_serve.vllm_plugin.backend import QimengAttentionBackend
    from qimeng_serve.vllm_plugin.batch import BatchSpec, make_batch
    from qimeng_serve.vllm_plugin.harness import (
        build_layers,
        kv_cache_spec,
        new_vllm_config,
    )
    from qimeng_serve.vllm_plugin.impl import QimengAttentionImpl
    from qimeng_serve.vllm_plugin.metadata import QimengMetadataBuilder

    # importing vllm.v1.engine.core (above) resolved the platform, which ran the platform hooks;
    # general plugins are not loaded yet, so a registration here is the hook's
    hook_registered = AttentionBackendEnum.CUSTOM.is_overridden()
    load_general_plugins()
    abstract = QimengAttentionBackend.__abstractmethods__ | QimengAttentionImpl.__abstractmethods__ \
        | QimengMetadataBuilder.__abstractmethods__
    out = {"version": vllm.__version__, "vllm_file": vllm.__file__, "hook_registered": hook_registered,
           "named_backends": registration.supports_named_backends(), "get_name": QimengAttentionBackend.get_name(),
           "custom_class": AttentionBackendEnum.CUSTOM.get_class().__name__,
           "lookup_is_custom": AttentionBackendEnum[QimengAttentionBackend.get_name()] is AttentionBackendEnum.CUSTOM,
           "config_custom": AttentionConfig(backend="CUSTOM").backend.name,
           "abstract_left": sorted(abstract),
           # 0.26 declares get_kv_cache_shape abstract: the backend must implement it to be instantiable
           "kv_shape_abstract_in_base": getattr(getattr(AttentionBackend, "get_kv_cache_shape", None),
                                                "__isabstractmethod__", False)}
    try:
        AttentionConfig(backend="qimeng")
        out["qimeng_name"] = "accepted"
    except ValueError as exc:
        out["qimeng_name"] = f"refused: {exc}"
    sel = AttentionSelectorConfig(head_size=128, dtype=torch.float16, kv_cache_dtype="auto", block_size=16)
    out["reasons_fp16"] = QimengAttentionBackend.validate_configuration(
        device_capability=DeviceCapability(9, 0), **sel._asdict())
    out["reasons_bf16_turing"] = QimengAttentionBackend.validate_configuration(
        device_capability=DeviceCapability(7, 5), **sel._replace(dtype=torch.bfloat16)._asdict())
    os.environ["QIMENG_CAPABILITY"] = "9.0"  # no GPU here: build the layers as for an sm_90
    config = new_vllm_config(model_dir, device="cpu")
    layers = build_layers(config)
    builder = QimengMetadataBuilder(kv_cache_spec(config), [layer.layer_name for layer in layers], config,
                                    torch.device("cpu"))
    cam = make_batch(BatchSpec((1000, 33, 300), (1, 1, 45)), 16, "cpu").metadata
    md = builder.build(0, cam)
    out["split"] = [md.decode.num_reqs, md.prefill.num_reqs, md.prefill.cu_seqlens_q.tolist()]
    out["layer_backend"] = layers[0].backend.name
    # the whole forward path on 0.26's objects, kernels emulated (abi_emulator.py), against SDPA
    from tests.vllm.abi_emulator import emulated_forward

    mixed, calls, _ = emulated_forward(new_vllm_config(model_dir, device="cpu"), (1000, 33, 17, 300, 600),
                                       (1, 1, 17, 45, 513), window=64)
    padded, _, untouched = emulated_forward(new_vllm_config(model_dir, device="cpu"), (5, 77, 1025), (1, 1, 1), pad=8)
    out["emulated"] = {"mixed_ok": mixed["ok"], "padded_ok": padded["ok"], "calls": [c["op"] for c in calls],
                       "padding_untouched": bool(torch.isnan(untouched).all())}
    # the GPU correctness script's own case runner on 0.26's objects (kernels emulated, cache write in torch)
    import tempfile
    from pathlib import Path
    from unittest import mock

    from qimeng_serve.vllm_plugin.artifacts import ServingArtifact
    from tests.vllm.abi_emulator import EmulatedKernelSet
    from tests.vllm.test_gpu_scripts import SCRIPTS, _slot_write

    sys.path.insert(0, str(SCRIPTS))
    import correctness

    with mock.patch.object(ServingArtifact, "kernels", lambda self: EmulatedKernelSet(self.plan)), \
            mock.patch.object(QimengAttentionImpl, "do_kv_cache_update", _slot_write), \
            tempfile.TemporaryDirectory() as tmp:
        seqs, queries = correctness.BATCHES["mixed"]
        row = correctness.run_case(Path(tmp), dtype=torch.float16, head_dim=128, heads=8, kv_heads=2, block_size=16,
                                   batch="mixed", seqs=seqs, queries=queries, window=256, device="cpu")
    out["script_case_ok"] = bool(row["ok"] and row["kv_write_ok"])
    # another plugin's CUSTOM is left alone (with a warning), not overwritten
    from vllm.v1.attention.backends import registry

    registry._ATTN_OVERRIDES[AttentionBackendEnum.CUSTOM] = "another.plugin.Backend"
    registration.register()
    out["custom_left_to_other"] = AttentionBackendEnum.CUSTOM.get_path() == "another.plugin.Backend"
    return out


if __name__ == "__main__":
    name, *rest = sys.argv[1:]
    print("RESULT " + json.dumps(globals()[name](*rest)), flush=True)
