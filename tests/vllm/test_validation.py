"""validate_configuration as vLLM's selector calls it, for combinations the plugin serves and refuses."""

from __future__ import annotations

import pytest
import torch

from tests.vllm.conftest import SKIP_REASON

vllm = pytest.importorskip("vllm", reason=SKIP_REASON)


def _reasons(capability=(9, 0), **overrides) -> list[str]:
    """The reasons vLLM would print for `--attention-backend qimeng` on a GPU of `capability`."""
    from vllm.platforms.interface import DeviceCapability
    from vllm.v1.attention.selector import AttentionSelectorConfig

    from qimeng_serve.vllm_plugin.backend import QimengAttentionBackend

    config = {"head_size": 128, "dtype": torch.float16, "kv_cache_dtype": "auto", "block_size": 16} | overrides
    return QimengAttentionBackend.validate_configuration(device_capability=DeviceCapability(*capability),
                                                        **AttentionSelectorConfig(**config)._asdict())


@pytest.mark.parametrize("capability, dtype, head_size", [
    ((7, 5), torch.float16, 64), ((7, 5), torch.float16, 128), ((7, 5), torch.float16, 256),
    ((8, 0), torch.bfloat16, 128), ((8, 6), torch.float16, 64),  # sm_86 runs the sm_80 SASS
    ((8, 9), torch.bfloat16, 64), ((9, 0), torch.bfloat16, 256), ((12, 0), torch.float16, 128),  # PTX JIT
])
def test_served_combinations_have_no_reasons(plugin_env, registered, capability, dtype, head_size):
    assert _reasons(capability, dtype=dtype, head_size=head_size) == []


@pytest.mark.parametrize("extra", [
    {"block_size": 32}, {"block_size": 1056}, {"block_size": None}, {"has_sliding_window": True},
    {"kv_cache_dtype": "float16"}, {"use_kv_connector": True},
])
def test_runtime_arguments_of_the_kernels_are_accepted(plugin_env, registered, extra):
    assert _reasons(**extra) == []


def test_bf16_on_turing_is_refused_with_the_fix(plugin_env, registered):
    (reason,) = _reasons((7, 5), dtype=torch.bfloat16)
    assert "bf16 needs compute capability 8.0" in reason and "--dtype float16" in reason


def test_a_head_size_the_registry_lacks_is_refused_with_the_candidates(plugin_env, registered):
    # the sm_80 bf16 bundle is built for 64 and 128 only, and sm_86 cannot run the sm_90 one
    (reason,) = _reasons((8, 6), dtype=torch.bfloat16, head_size=256)
    assert "sm_86" in reason and "head size 256 missing (has 64, 128)" in reason
    assert "sm_90/bf16/qimeng-default-sm_90-bf16.safetensors" in reason  # every candidate named, with why not
    assert "fix:" in reason and "qimeng-serve build" in reason


def test_a_head_size_qimeng_never_builds_is_refused_by_the_class(plugin_env, registered):
    assert _reasons(head_size=96) == ["head_size not supported"]


@pytest.mark.parametrize("overrides, expected", [
    ({"kv_cache_dtype": "fp8"}, "kv_cache_dtype not supported"),
    ({"has_sink": True}, "attention sinks not supported"),
    ({"use_mla": True}, "MLA not supported"),
    ({"attn_type": "encoder_only"}, "attention type encoder_only not supported"),
    ({"use_non_causal": True}, "non-causal attention not supported"),
    ({"dtype": torch.float32}, "dtype not supported"),
])
def test_features_the_kernels_lack_are_refused(plugin_env, registered, overrides, expected):
    assert expected in _reasons(**overrides)


def test_a_kv_cache_dtype_other_than_the_models_is_refused(plugin_env, registered):
    (reason,) = _reasons(dtype=torch.float16, kv_cache_dtype="bfloat16")
    assert "model dtype" in reason and "--kv-cache-dtype" in reason


def test_pre_turing_gpus_are_refused(plugin_env, registered):
    assert "compute capability not supported" in _reasons((7, 0))


def test_an_empty_registry_is_explained(plugin_env, registered, tmp_path, monkeypatch):
    monkeypatch.setenv("QIMENG_REGISTRY", str(tmp_path / "nothing"))
    (reason,) = _reasons()
    assert str(tmp_path / "nothing") in reason and "fix:" in reason


def test_qimeng_capability_overrides_the_reported_gpu(plugin_env, registered, monkeypatch):
    monkeypatch.setenv("QIMENG_CAPABILITY", "7.5")  # serve Turing's kernels on a newer GPU (their PTX)
    assert _reasons((9, 0), dtype=torch.bfloat16) != []
    assert _reasons((9, 0), dtype=torch.float16) == []


def test_the_v026_cache_shape_api_is_the_standard_layout(registered):
    from qimeng_serve.vllm_plugin.backend import QimengAttentionBackend as B

    assert B.get_kv_cache_shape(100, 16, 2, 128) == (100, 2, 16, 256)
    assert B.get_kv_cache_stride_order() == (0, 2, 1, 3)  # NHD: [blocks, page, heads, 2D] in memory
    assert B.get_kv_cache_stride_order(include_num_layers_dimension=True) == (1, 0, 3, 2, 4)
    assert B.forward_includes_kv_cache_update is False
    assert B.get_supported_head_sizes() == [64, 128, 256]
