"""The engine entrypoint: settings -> `vllm serve` flags (a table per quantization mode, checked
against vLLM 0.32's own --help), the operator's container args accepted as they are, the model
cache check, and the drain's in-flight reading. The supervisor itself (start, health, SIGTERM
drain) runs against a real vLLM in tests/contract."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from deepseek_operator.api.spec import DeepSeekDeploymentSpec, QuantizationRung
from deepseek_operator.desired import quantization_args, vllm_args
from deepseek_serving import entrypoint as ep
from deepseek_serving.entrypoint import ConfigError, ExitCode

from testbed.ports import free_port

from .vllm_reference import FIXTURES, check_args, quantization_methods, serve_flags

BASE_ENV = {"DEEPSEEK_MODEL": "deepseek-ai/DeepSeek-R1", "HOME": "/nonexistent-home"}


def settings(**env: str) -> ep.Settings:
    return ep.load_settings({**BASE_ENV, **env})


def quant_part(args: list[str]) -> list[str]:
    """The quantization flags of an argument list, in order."""
    out = []
    for i, a in enumerate(args):
        if a in ("--dtype", "--quantization", "--kv-cache-dtype"):
            out += [a, args[i + 1]]
    return out


# (DEEPSEEK_* settings, the operator's rung for the same mode, expected quantization flags)
MODES: list[tuple[str, dict[str, str], dict[str, Any], list[str]]] = [
    ("none", {}, {}, []),
    ("bf16", {"DEEPSEEK_QUANT_WEIGHTS": "bf16"}, {"weights": "bf16"}, ["--dtype", "bfloat16"]),
    ("fp8", {"DEEPSEEK_QUANT_WEIGHTS": "fp8"}, {"weights": "fp8"}, ["--quantization", "fp8"]),
    (
        "fp8-block",
        {"DEEPSEEK_QUANT_WEIGHTS": "fp8", "DEEPSEEK_QUANT_METHOD": "fp8_per_block"},
        {"weights": "fp8", "method": "fp8_per_block"},
        ["--quantization", "fp8_per_block"],
    ),
    (
        "fp8-kv8",
        {"DEEPSEEK_QUANT_WEIGHTS": "fp8", "DEEPSEEK_KV_CACHE_DTYPE": "fp8"},
        {"weights": "fp8", "kvCacheDtype": "fp8"},
        ["--quantization", "fp8", "--kv-cache-dtype", "fp8"],
    ),
    (
        "bf16-kv-e4m3",
        {"DEEPSEEK_QUANT_WEIGHTS": "bf16", "DEEPSEEK_KV_CACHE_DTYPE": "fp8_e4m3"},
        {"weights": "bf16", "kvCacheDtype": "fp8_e4m3"},
        ["--dtype", "bfloat16", "--kv-cache-dtype", "fp8_e4m3"],
    ),
    (
        "int4-from-checkpoint",
        {"DEEPSEEK_QUANT_WEIGHTS": "int4"},
        {"weights": "int4", "checkpoint": "org/R1-AWQ"},
        [],
    ),
    (
        "int4-awq",
        {"DEEPSEEK_QUANT_WEIGHTS": "int4", "DEEPSEEK_QUANT_METHOD": "awq_marlin"},
        {"weights": "int4", "checkpoint": "org/R1-AWQ", "method": "awq_marlin"},
        ["--quantization", "awq_marlin"],
    ),
    (
        "int4-gptq-kv8",
        {
            "DEEPSEEK_QUANT_WEIGHTS": "int4",
            "DEEPSEEK_QUANT_METHOD": "gptq_marlin",
            "DEEPSEEK_KV_CACHE_DTYPE": "fp8_e5m2",
        },
        {
            "weights": "int4",
            "checkpoint": "org/R1-GPTQ",
            "method": "gptq_marlin",
            "kvCacheDtype": "fp8_e5m2",
        },
        ["--quantization", "gptq_marlin", "--kv-cache-dtype", "fp8_e5m2"],
    ),
    (
        "dtype-override",
        {"DEEPSEEK_QUANT_WEIGHTS": "bf16", "DEEPSEEK_DTYPE": "float16"},
        {"weights": "bf16"},
        ["--dtype", "float16"],
    ),
]


@pytest.mark.parametrize(("name", "env", "rung", "flags"), MODES, ids=[m[0] for m in MODES])
def test_quantization_mode_flags(
    name: str, env: dict[str, str], rung: dict[str, Any], flags: list[str]
) -> None:
    args = ep.build_vllm_args(settings(**env))
    assert quant_part(args) == flags
    assert check_args(args) == []  # every flag and value exists in vLLM 0.32's --help
    if rung and "DEEPSEEK_DTYPE" not in env:
        # The same rung rendered by the operator asks vLLM for the same thing.
        r = QuantizationRung.model_validate({"name": name, **rung})
        assert quantization_args(r) == flags


def test_entrypoint_knows_the_same_vllm_choices_as_the_reference() -> None:
    assert quantization_methods() == ep.VLLM_QUANTIZATION_METHODS
    assert serve_flags()["--kv-cache-dtype"] == ep.VLLM_KV_CACHE_DTYPES
    assert serve_flags()["--dtype"] == ep.VLLM_DTYPES


def test_all_settings_map_to_known_flags_in_order() -> None:
    s = settings(
        DEEPSEEK_SERVED_NAME="r1",
        DEEPSEEK_REVISION="main",
        DEEPSEEK_TP="4",
        DEEPSEEK_PP="2",
        DEEPSEEK_EXPERT_PARALLEL="true",
        DEEPSEEK_MAX_MODEL_LEN="32768",
        DEEPSEEK_GPU_MEM_UTIL="0.92",
        DEEPSEEK_DOWNLOAD_DIR="/models",
        DEEPSEEK_TRUST_REMOTE_CODE="yes",
        DEEPSEEK_PORT="8001",
        DEEPSEEK_QUANT_WEIGHTS="fp8",
        DEEPSEEK_EXTRA_ARGS='["--enable-prefix-caching", "--max-num-seqs", "64"]',
    )
    args = ep.build_vllm_args(s)
    assert args == [
        "--model", "deepseek-ai/DeepSeek-R1",
        "--revision", "main",
        "--served-model-name", "r1",
        "--host", "0.0.0.0", "--port", "8001",
        "--tensor-parallel-size", "4",
        "--pipeline-parallel-size", "2",
        "--enable-expert-parallel",
        "--gpu-memory-utilization", "0.92",
        "--max-model-len", "32768",
        "--download-dir", "/models",
        "--trust-remote-code",
        "--quantization", "fp8",
        "--shutdown-timeout", "300",
        "--enable-prefix-caching", "--max-num-seqs", "64",
    ]  # fmt: skip
    assert check_args(args) == []
    cmd = ep.vllm_command(s)
    assert cmd[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]


def test_extra_args_as_a_shell_string() -> None:
    s = settings(DEEPSEEK_EXTRA_ARGS="--max-num-seqs 8 --served-model-name 'a b'")
    assert s.extra_args == ("--max-num-seqs", "8", "--served-model-name", "a b")


def _operator_args(**engine: Any) -> list[str]:
    spec = DeepSeekDeploymentSpec.model_validate(
        {
            "model": {"checkpoint": "deepseek-ai/DeepSeek-R1", "cache": {"hostPath": "/m"}},
            "resources": {"gpusPerReplica": 8},
            "quantization": {"mode": "fp8"},
            "engine": {"drain": {"timeoutSeconds": 120}, **engine},
        }
    )
    return vllm_args("r1", spec)


def test_accepts_the_operators_container_args_unchanged() -> None:
    """The pod template gives the image's entrypoint `args: vllm_args(...)` and no DEEPSEEK_*
    variables: they pass through to vLLM verbatim, after the entrypoint's own defaults."""
    op_args = _operator_args(extraArgs=["--enable-prefix-caching"])
    cli = ep.parse_cli(op_args)
    assert cli.passthrough == op_args
    s = ep.load_settings({"HOME": "/h"}, cli.passthrough)
    args = ep.build_vllm_args(s)
    # Verbatim: the operator's args carry --host/--port, so none are added (vLLM would warn
    # about duplicate keys).
    assert args == op_args
    assert check_args(args) == []
    assert ep.effective(s, "--model") == "deepseek-ai/DeepSeek-R1"
    assert ep.effective(s, "--port") == "8000"
    assert ep.engine_url(s) == "http://127.0.0.1:8000"
    # The drain budget follows the operator's --shutdown-timeout (the pod's grace period is
    # sized from it), not the entrypoint's 300 s default.
    assert s.drain_timeout == 120
    assert ep.passthrough_model(cli.passthrough) == "deepseek-ai/DeepSeek-R1"


def test_drain_timeout_precedence() -> None:
    assert settings().drain_timeout == 300
    assert ep.load_settings(BASE_ENV, ["--shutdown-timeout", "0"]).drain_timeout == 300
    assert ep.load_settings(BASE_ENV, ["--shutdown-timeout=45"]).drain_timeout == 45
    env = {**BASE_ENV, "DEEPSEEK_DRAIN_TIMEOUT": "10"}
    assert ep.load_settings(env, ["--shutdown-timeout", "45"]).drain_timeout == 10
    with pytest.raises(ConfigError, match="shutdown-timeout"):
        ep.load_settings(BASE_ENV, ["--shutdown-timeout", "soon"])


def test_vllm_drains_on_sigterm_unless_told_otherwise() -> None:
    """vLLM's --shutdown-timeout defaults to 0 (abort in-flight requests on SIGTERM): the
    entrypoint always asks for a drain as long as its own budget, unless the args set one."""
    args = ep.build_vllm_args(settings(DEEPSEEK_DRAIN_TIMEOUT="44.5"))
    assert args[args.index("--shutdown-timeout") + 1] == "45"
    s = ep.load_settings(BASE_ENV, ["--shutdown-timeout", "0"])
    assert ep.effective(s, "--shutdown-timeout") == "0"  # an explicit abort is respected
    assert ep.build_vllm_args(s).count("--shutdown-timeout") == 1


def test_passthrough_wins_over_derived_flags() -> None:
    s = ep.load_settings(
        {**BASE_ENV, "DEEPSEEK_PORT": "8000"}, ["--port", "9000", "--host", "127.0.0.1"]
    )
    assert ep.effective(s, "--port") == "9000"
    assert ep.engine_url(s) == "http://127.0.0.1:9000"


def test_cli_flags() -> None:
    cli = ep.parse_cli(["--check", "--config", "/etc/x.json", "--", "--model", "m"])
    assert (cli.check_only, cli.config, cli.passthrough) == (True, "/etc/x.json", ["--model", "m"])
    assert ep.parse_cli(["--print-args", "--config=/c.yaml"]).config == "/c.yaml"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DEEPSEEK_MODEL": ""}, "DEEPSEEK_MODEL is required"),
        ({"DEEPSEEK_QUANT_WEIGHTS": "int8"}, "DEEPSEEK_QUANT_WEIGHTS='int8'"),
        ({"DEEPSEEK_QUANT_METHOD": "awq4"}, "not a vLLM 0.32 quantization method"),
        (
            {"DEEPSEEK_QUANT_WEIGHTS": "int4", "DEEPSEEK_QUANT_METHOD": "fp8"},
            "is an FP8 method; weights are int4",
        ),
        (
            {"DEEPSEEK_QUANT_WEIGHTS": "fp8", "DEEPSEEK_QUANT_METHOD": "gptq"},
            "is a 4-bit method; weights are fp8",
        ),
        ({"DEEPSEEK_KV_CACHE_DTYPE": "int8"}, "DEEPSEEK_KV_CACHE_DTYPE='int8'"),
        ({"DEEPSEEK_DTYPE": "bf16"}, "DEEPSEEK_DTYPE='bf16'"),
        ({"DEEPSEEK_TP": "0"}, "DEEPSEEK_TP=0: must be at least 1"),
        ({"DEEPSEEK_TP": "two"}, "DEEPSEEK_TP='two'"),
        ({"DEEPSEEK_GPU_MEM_UTIL": "1.5"}, "must be in \\(0, 1\\]"),
        ({"DEEPSEEK_PORT": "70000"}, "not a TCP port"),
        ({"DEEPSEEK_STATUS_PORT": "8000"}, "is the API port"),
        ({"DEEPSEEK_TRUST_REMOTE_CODE": "maybe"}, "expected true or false"),
        ({"DEEPSEEK_DRAIN_TIMEOUT": "-1"}, "must not be negative"),
        ({"DEEPSEEK_EXTRA_ARGS": "[1, 2]"}, "expected a list of strings"),
    ],
)
def test_invalid_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ep.load_settings({**BASE_ENV, **env})


def test_config_file_layered_under_environment(tmp_path: Path) -> None:
    f = tmp_path / "engine.yaml"
    f.write_text("model: org/m\nquant_weights: fp8\nkv_cache_dtype: fp8\ntensor_parallel: 8\n")
    s = ep.load_settings({"DEEPSEEK_TP": "4"}, (), ep.read_config_file(str(f)), str(f))
    assert (s.model, s.tensor_parallel) == ("org/m", 4)
    assert quant_part(ep.build_vllm_args(s)) == [
        "--quantization", "fp8", "--kv-cache-dtype", "fp8"
    ]  # fmt: skip
    j = tmp_path / "engine.json"
    j.write_text(json.dumps({"model": "org/m", "typo_key": 1}))
    with pytest.raises(ConfigError, match="unknown setting 'typo_key'"):
        ep.load_settings({}, (), ep.read_config_file(str(j)), str(j))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        ep.read_config_file(str(bad))


# --- the model cache check ---------------------------------------------------------------------


def checkpoint(path: Path, *, weights: bool = True, quantized: bool = False) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {"architectures": ["Qwen2ForCausalLM"]}
    if quantized:
        config["quantization_config"] = {"quant_method": "awq", "bits": 4}
    (path / "config.json").write_text(json.dumps(config))
    if weights:
        (path / "model.safetensors").write_bytes(b"\0")
    return path


def test_cache_local_checkpoint(tmp_path: Path) -> None:
    ok = checkpoint(tmp_path / "ok")
    check = ep.check_model_cache(settings(DEEPSEEK_MODEL=str(ok)), {})
    assert (check.ok, check.source) == (True, "local")

    missing = ep.check_model_cache(settings(DEEPSEEK_MODEL=str(tmp_path / "nope")), {})
    assert (missing.ok, missing.source) == (False, "missing")
    assert "does not exist" in missing.detail

    empty = checkpoint(tmp_path / "empty", weights=False)
    check = ep.check_model_cache(settings(DEEPSEEK_MODEL=str(empty)), {})
    assert (check.ok, check.source) == (False, "incomplete")
    assert "no weight files" in check.detail


def test_cache_sharded_checkpoint_needs_every_shard(tmp_path: Path) -> None:
    d = checkpoint(tmp_path / "sharded", weights=False)
    index = {
        "weight_map": {
            "a": "model-00001-of-00002.safetensors",
            "b": "model-00002-of-00002.safetensors",
        }
    }
    (d / "model.safetensors.index.json").write_text(json.dumps(index))
    (d / "model-00001-of-00002.safetensors").write_bytes(b"\0")
    check = ep.check_model_cache(settings(DEEPSEEK_MODEL=str(d)), {})
    assert not check.ok and "1 of 2 shards missing" in check.detail
    (d / "model-00002-of-00002.safetensors").write_bytes(b"\0")
    assert ep.check_model_cache(settings(DEEPSEEK_MODEL=str(d)), {}).ok


def test_cache_int4_rung_needs_a_prequantized_checkpoint(tmp_path: Path) -> None:
    plain = checkpoint(tmp_path / "plain")
    check = ep.check_model_cache(
        settings(DEEPSEEK_MODEL=str(plain), DEEPSEEK_QUANT_WEIGHTS="int4"), {}
    )
    assert (check.ok, check.source) == (False, "invalid")
    assert "quantization_config" in check.detail
    awq = checkpoint(tmp_path / "awq", quantized=True)
    assert ep.check_model_cache(
        settings(DEEPSEEK_MODEL=str(awq), DEEPSEEK_QUANT_WEIGHTS="int4"), {}
    ).ok


def test_cache_hugging_face_layout_under_the_download_dir(tmp_path: Path) -> None:
    snap = tmp_path / "models--deepseek-ai--DeepSeek-R1" / "snapshots" / "abc123"
    checkpoint(snap)
    (tmp_path / "models--deepseek-ai--DeepSeek-R1" / "refs").mkdir()
    (tmp_path / "models--deepseek-ai--DeepSeek-R1" / "refs" / "main").write_text("abc123")
    # The operator's args: --download-dir <cache mount>, HF_HOME=<cache mount>, no DEEPSEEK_*.
    args = ["--model", "deepseek-ai/DeepSeek-R1", "--download-dir", str(tmp_path)]
    s = ep.load_settings({"HOME": "/h"}, args)
    check = ep.check_model_cache(s, {"HOME": "/h"})
    assert (check.ok, check.source) == (True, "hf-cache")
    s = ep.load_settings({"HOME": "/h"}, [*args, "--revision", "main"])
    assert ep.check_model_cache(s, {"HOME": "/h"}).source == "hf-cache"
    s = ep.load_settings({"HOME": "/h"}, [*args, "--revision", "v2"])
    assert ep.check_model_cache(s, {"HOME": "/h"}).source == "hf-download"


def test_cache_miss_offline_is_a_clear_error_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {"HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    args = ["--check", "--", "--model", "deepseek-ai/DeepSeek-R1"]
    assert ep.main(args, env) == ExitCode.MODEL_CACHE
    out = capsys.readouterr().out
    assert "event=cache_checked" in out and "ok=False" in out
    assert "is not in the model cache" in out and "downloading is off" in out
    # Allowed to download: the check passes and says where it will go.
    assert ep.main(args, {"HOME": str(tmp_path)}) == ExitCode.OK


def test_main_print_args_and_config_errors(capsys: pytest.CaptureFixture[str]) -> None:
    env = {**BASE_ENV, "DEEPSEEK_QUANT_WEIGHTS": "fp8"}
    assert ep.main(["--print-args"], env) == ExitCode.OK
    cmd = json.loads(capsys.readouterr().out)
    assert cmd[3:5] == ["--model", "deepseek-ai/DeepSeek-R1"] and "fp8" in cmd
    assert ep.main([], {**BASE_ENV, "DEEPSEEK_TP": "x"}) == ExitCode.CONFIG
    assert "event=config_invalid" in capsys.readouterr().out


# --- what the drain reads ----------------------------------------------------------------------


def test_inflight_from_real_vllm_metrics() -> None:
    text = (FIXTURES / "vllm-0.32-metrics.txt").read_text()
    assert ep.inflight_from_metrics(text) == 0
    busy = text.replace(
        'vllm:num_requests_running{engine="0",model_name="tiny"} 0.0',
        'vllm:num_requests_running{engine="0",model_name="tiny"} 3.0',
    ).replace(
        'vllm:num_requests_waiting{engine="0",model_name="tiny"} 0.0',
        'vllm:num_requests_waiting{engine="0",model_name="tiny"} 2.0',
    )
    assert ep.inflight_from_metrics(busy) == 5
    assert ep.inflight_from_metrics("") is None
    # waiting_by_reason must not be counted twice
    assert "num_requests_waiting_by_reason" in text


def test_log_lines_are_key_value(capsys: pytest.CaptureFixture[str]) -> None:
    ep.log("engine_healthy", after_s="52.1", url="http://127.0.0.1:8000", note="two words")
    line = capsys.readouterr().out.strip()
    assert " level=info logger=entrypoint event=engine_healthy after_s=52.1 " in line
    assert line.endswith('note="two words"')


# --- the supervisor's stop paths, against a stand-in server --------------------------------------
# The real drain (vLLM finishing a request in flight) runs in tests/contract. What vLLM cannot be
# made to do on demand is ignore SIGTERM past the drain budget: a stand-in plays that fault.

STAND_IN = """
import http.server, os, signal, sys, threading, time
port = int(sys.argv[sys.argv.index("--port") + 1])
if os.environ["STAND_IN_MODE"] == "stuck":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
else:
    # Like vLLM: keep answering /metrics while draining, exit when drained.
    signal.signal(signal.SIGTERM, lambda *_: threading.Timer(0.3, os._exit, (0,)).start())
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"vllm:num_requests_running{engine=\\"0\\"} 1.0\\n"
        self.send_response(200); self.send_header("Content-Length", str(len(body)))
        self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
"""


@pytest.mark.parametrize(
    ("mode", "code"), [("drains", ExitCode.OK), ("stuck", ExitCode.DRAIN_TIMEOUT)]
)
def test_sigterm_stop_paths(
    tmp_path: Path, mode: str, code: ExitCode, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys
    import threading

    pkg = tmp_path / "vllm" / "entrypoints" / "openai"
    pkg.mkdir(parents=True)
    for d in (tmp_path / "vllm", tmp_path / "vllm" / "entrypoints", pkg):
        (d / "__init__.py").write_text("")
    (pkg / "api_server.py").write_text(STAND_IN)
    model = checkpoint(tmp_path / "model")
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(tmp_path),
        "STAND_IN_MODE": mode,
        "DEEPSEEK_MODEL": str(model),
        "DEEPSEEK_HOST": "127.0.0.1",
        "DEEPSEEK_PORT": str(free_port()),
        "DEEPSEEK_STATUS_PORT": "0",
        "DEEPSEEK_DRAIN_TIMEOUT": "1",
        "DEEPSEEK_STOP_TIMEOUT": "1",
        "DEEPSEEK_POLL_INTERVAL": "0.1",
        "DEEPSEEK_VLLM_PYTHON": sys.executable,
    }
    sup = ep.Supervisor(ep.load_settings(env), env)
    result: list[int] = []
    t = threading.Thread(target=lambda: result.append(sup.run()))
    t.start()
    try:
        deadline = time.monotonic() + 30
        while sup.phase is not ep.Phase.READY:
            assert time.monotonic() < deadline and t.is_alive(), capsys.readouterr().out
            time.sleep(0.05)
        sup._on_signal(signal.SIGTERM, None)
        t.join(30)
    finally:
        if sup.proc is not None and sup.proc.poll() is None:
            sup.proc.kill()
    assert result == [code]
    out = capsys.readouterr().out
    assert "event=drain_started" in out and "inflight=1" in out
    assert ("event=drain_timeout" in out) is (code is ExitCode.DRAIN_TIMEOUT)
    assert sup.proc is not None and sup.proc.poll() is not None  # nothing left running


# --- the admission limit file (the operator's learned limit) -------------------------------------


@pytest.mark.parametrize(
    ("content", "limit", "error"),
    [
        (None, None, None),  # no file: no limit learned yet
        ("", None, None),
        (" \n", None, None),
        ("  12\n", 12, None),
        ("1", 1, None),
        ("0", None, "'0' is not a whole number >= 1"),
        ("-3", None, "'-3' is not a whole number >= 1"),
        ("abc", None, "'abc' is not a whole number >= 1"),
        ("1.5", None, "'1.5' is not a whole number >= 1"),
        ("9" * 5000, None, "is not a whole number >= 1"),
    ],
)
def test_read_limit(tmp_path: Path, content: str | None, limit: int | None, error: str) -> None:
    f = tmp_path / "limit"
    if content is not None:
        f.write_text(content)
    got, why = ep.read_limit(str(f))
    assert got == limit
    if error is None:
        assert why is None
    else:
        assert why is not None and error in why


def test_read_limit_of_an_unreadable_file(tmp_path: Path) -> None:
    limit, why = ep.read_limit(str(tmp_path))  # a directory
    assert limit is None and why is not None and why.startswith("cannot read it")


def gated_supervisor(**env: str) -> ep.Supervisor:
    env = {
        **BASE_ENV,
        "DEEPSEEK_HOST": "127.0.0.1",
        "DEEPSEEK_PORT": str(free_port()),
        "DEEPSEEK_STATUS_PORT": "0",
        "DEEPSEEK_ADMISSION_ENGINE_PORT": str(free_port()),
        **env,
    }
    return ep.Supervisor(ep.load_settings(env), env)


def test_the_gate_follows_its_limit_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(ep, "LIMIT_POLL_S", 3600.0)  # the test calls the poll step itself
    f = tmp_path / "limit"
    f.write_text("3\n")
    sup = gated_supervisor(DEEPSEEK_ADMISSION_LIMIT_FILE=str(f))
    sup.start_gate()
    try:
        assert sup.gate is not None
        gate = sup.gate.gate
        assert gate.limit == 3
        out = capsys.readouterr().out
        assert "event=admission_gate_listening" in out and f"limit_file={f}" in out
        assert sup.status()["admission"]["limit"] == 3
        # a new limit: to the gate, one line
        f.write_text("5")
        sup.reload_limit()
        sup.reload_limit()
        assert gate.limit == 5
        lines = [x for x in capsys.readouterr().out.splitlines() if "admission_limit" in x]
        assert len(lines) == 1 and "event=admission_limit_changed from=3 to=5" in lines[0]
        assert f"file={f}" in lines[0]
        # an invalid content keeps the limit, and is logged once while it stays
        f.write_text("abc")
        sup.reload_limit()
        sup.reload_limit()
        assert gate.limit == 5
        lines = [x for x in capsys.readouterr().out.splitlines() if "admission_limit" in x]
        assert len(lines) == 1 and "level=warning" in lines[0]
        assert "event=admission_limit_invalid" in lines[0] and "kept_limit=5" in lines[0]
        f.write_text("-3")  # another invalid content: another line
        sup.reload_limit()
        assert "event=admission_limit_invalid" in capsys.readouterr().out
        assert gate.limit == 5
        # emptied, then gone: no limit
        f.write_text("")
        sup.reload_limit()
        assert gate.limit is None
        assert "event=admission_limit_changed from=5 to=None" in capsys.readouterr().out
        f.write_text("2")
        sup.reload_limit()
        f.unlink()
        sup.reload_limit()
        assert gate.limit is None and sup.status()["admission"]["limit"] is None
    finally:
        sup.close()


def test_the_limit_file_is_polled_until_the_supervisor_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ep, "LIMIT_POLL_S", 0.01)
    f = tmp_path / "limit"  # absent at the start: no limit yet
    sup = gated_supervisor(DEEPSEEK_ADMISSION_LIMIT_FILE=str(f))
    sup.start_gate()
    try:
        assert sup.gate is not None and sup.gate.gate.limit is None
        f.write_text("7")
        deadline = time.monotonic() + 5
        while sup.gate.gate.limit != 7:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        sup.close()
    assert sup._limit_poll is not None and not sup._limit_poll.is_alive()


def test_a_fixed_limit_wins_over_the_limit_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "limit"
    f.write_text("3")
    sup = gated_supervisor(DEEPSEEK_ADMISSION_LIMIT_FILE=str(f), DEEPSEEK_ADMISSION_MAX_RUNNING="9")
    sup.start_gate()
    try:
        assert sup.gate is not None and sup.gate.gate.limit == 9
        sup.reload_limit()
        assert sup.gate.gate.limit == 9 and sup._limit_poll is None
        assert "limit_file=None" in capsys.readouterr().out
    finally:
        sup.close()


def test_an_invalid_limit_file_at_the_start_means_no_limit_yet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "limit"
    f.write_text("zero")
    sup = gated_supervisor(DEEPSEEK_ADMISSION_LIMIT_FILE=str(f))
    sup.start_gate()
    try:
        assert sup.gate is not None and sup.gate.gate.limit is None
        out = capsys.readouterr().out
        assert "event=admission_limit_invalid" in out and "'zero'" in out
    finally:
        sup.close()
