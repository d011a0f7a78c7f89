"""Presets: memory arithmetic (weights, KV cache, what loads where) and name resolution."""

from __future__ import annotations

import pytest

from testbed.sim.presets import (
    DISTILL_7B_1XH100,
    GIB,
    H100_SXM,
    H200_SXM,
    PRESETS,
    R1_FP8_8XH100,
    R1_FP8_8XH200,
    R1_FP8_KV8_8XH200,
    R1_INT4_8XH100,
    R1_INT4_8XH200,
    gpu_for_product,
    make_preset,
    model_for_checkpoint,
    preset,
)


def test_the_presets_the_issue_asks_for_exist_and_load() -> None:
    for name in ("r1-fp8-8xh200", "r1-int4-8xh100", "distill-7b-bf16-1xh100"):
        p = preset(name)
        assert p.can_load, p.cannot_load_reason
        assert p.kv_capacity_tokens >= p.max_model_len
    assert R1_FP8_8XH200.gpus == 8 and R1_FP8_8XH200.gpu is H200_SXM
    assert R1_INT4_8XH100.gpus == 8 and R1_INT4_8XH100.gpu is H100_SXM
    assert DISTILL_7B_1XH100.gpus == 1


def test_r1_fp8_does_not_fit_on_8xh100_but_int4_does() -> None:
    # 671B parameters at ~1 byte = ~673 GB: 78 GiB per GPU, more than 0.92 x 80 GB
    assert R1_FP8_8XH200.weight_bytes / 1e9 == pytest.approx(673, rel=0.02)
    assert not R1_FP8_8XH100.can_load
    assert "weights need" in (R1_FP8_8XH100.cannot_load_reason or "")
    assert R1_FP8_8XH100.num_gpu_blocks == 0
    # INT4 (AWQ) weights: ~370 GB, i.e. ~43-50 GB per GPU ([DZHSURF] reports ~50 GB)
    assert 40 * GIB < R1_INT4_8XH100.weight_bytes_per_gpu < 50 * GIB


@pytest.mark.parametrize(
    ("less", "more"),
    [
        (R1_FP8_8XH200, R1_FP8_KV8_8XH200),  # fp8 KV cache halves bytes per token
        (R1_FP8_8XH200, R1_INT4_8XH200),  # int4 weights leave more memory for KV
        (DISTILL_7B_1XH100, DISTILL_7B_1XH100.with_(weights="fp8")),
        (DISTILL_7B_1XH100, DISTILL_7B_1XH100.with_(kv_cache_dtype="fp8")),
        (R1_INT4_8XH100, R1_INT4_8XH200),  # more HBM
    ],
)
def test_more_compression_or_memory_means_more_kv_capacity(less: object, more: object) -> None:
    assert more.kv_capacity_tokens > less.kv_capacity_tokens  # type: ignore[attr-defined]


def test_kv_cache_dtype_fp8_exactly_doubles_tokens_per_byte() -> None:
    a, b = R1_FP8_8XH200, R1_FP8_KV8_8XH200
    assert b.kv_bytes_per_token_per_gpu * 2 == a.kv_bytes_per_token_per_gpu
    assert b.num_gpu_blocks == pytest.approx(2 * a.num_gpu_blocks, abs=2)


def test_mla_cache_is_replicated_and_gqa_cache_is_sharded() -> None:
    # MLA: 576 latent elements x 61 layers x 2 bytes, on every GPU of the replica
    assert R1_FP8_8XH200.kv_bytes_per_token_per_gpu == 576 * 61 * 2
    two = make_preset("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", "NVIDIA-H100-80GB-HBM3", 2)
    assert two.kv_bytes_per_token_per_gpu * 2 == DISTILL_7B_1XH100.kv_bytes_per_token_per_gpu


def test_step_time_grows_with_batch_and_context() -> None:
    p = R1_FP8_8XH200
    assert p.step_time(1) < p.step_time(64) < p.step_time(512) < p.step_time(4096)
    assert p.step_time(64, decode_ctx_tokens=64 * 4000) > p.step_time(64)
    assert p.step_time(0) == 0.0


def test_load_time_depends_on_where_weights_come_from() -> None:
    nvme = R1_FP8_8XH200.load_time_s
    pvc = R1_FP8_8XH200.with_(load_source="pvc").load_time_s
    hub = R1_FP8_8XH200.with_(load_source="hub").load_time_s
    assert nvme < pvc < hub
    assert DISTILL_7B_1XH100.load_time_s < nvme


def test_names_resolve_as_they_appear_in_a_deepseekdeployment() -> None:
    assert gpu_for_product("NVIDIA-H100-80GB-HBM3") is H100_SXM
    assert gpu_for_product("NVIDIA-H200") is H200_SXM
    assert gpu_for_product("nvidia-h200-nvl") is H200_SXM
    with pytest.raises(KeyError):
        gpu_for_product("A100")
    assert model_for_checkpoint("deepseek-ai/DeepSeek-R1-0528").name == "DeepSeek-R1-671B"
    assert model_for_checkpoint("/models/deepseek-r1-distill-qwen-7b").name.endswith("7B")
    p = make_preset("deepseek-ai/DeepSeek-R1", "NVIDIA-H200", 8, "fp8", "fp8")
    assert p.kv_capacity_tokens == R1_FP8_KV8_8XH200.kv_capacity_tokens
    with pytest.raises(KeyError):
        preset("nope")
    assert all(PRESETS[n].name == n for n in PRESETS)
    d = R1_FP8_8XH200.describe()
    assert d["kv_capacity_tokens"] == R1_FP8_8XH200.kv_capacity_tokens
