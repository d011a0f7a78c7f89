"""Contract: the engine pod's admission gate (serving/deepseek_serving/admission.py) in front of
the real vLLM (CPU build), with the variables the operator renders for
`spec.engine.admission: {maxRunning: 1, maxWaitSeconds: 0}`.

A wait of 0 makes the checks independent of how fast this machine is: once a stream's first
event has reached its client, the stream holds the only place until vLLM has sent its last
token (seconds here), and a request arriving then is refused at once. Deadlines that fire after
a wait are covered by the unit tests over real sockets (tests/unit/test_admission.py): on the
2-core CPU build vLLM's workers can keep the gate's threads off the cores for a second or more,
so a wall-clock check of a 2 s wait would test the machine's load, not the gate.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from deepseek_operator.api.spec import AdmissionSpec
from deepseek_operator.desired import admission_env

from .conftest import DSD, Engine, http, start_engine, stop

pytestmark = [pytest.mark.contract, pytest.mark.slow]

HOLD_TOKENS = 1500  # per choice; 4 choices: seconds of decoding on 2 cores, within 2048


@pytest.fixture(scope="module")
def gated_engine(
    vllm_python: Path, tiny_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    spec = AdmissionSpec.model_validate({"maxRunning": 1, "maxWaitSeconds": 0})
    env = {e["name"]: e["value"] for e in admission_env(spec, ttft_slo_seconds=2.0)}
    log = tmp_path_factory.mktemp("gated") / "engine.log"
    eng = start_engine(vllm_python, tiny_model, log, extra_env=env)
    try:
        yield eng
    finally:
        stop(eng.proc)


def gate_status(engine: Engine) -> dict[str, object]:
    code, body = http(engine.status + "/status", timeout=10)
    assert code == 200
    out = json.loads(body)["admission"]
    assert isinstance(out, dict)
    return out


def test_the_gate_takes_the_api_port_and_vllm_moves_behind_it(gated_engine: Engine) -> None:
    listening = [
        ln for ln in gated_engine.log_text().splitlines() if "event=admission_gate_listening" in ln
    ]
    assert len(listening) == 1
    assert f"port={gated_engine.port} " in listening[0] and "engine_port=8100" in listening[0]
    assert "max_running=1 " in listening[0] and "max_wait_s=0.0" in listening[0]
    code, body = http(gated_engine.base + "/v1/models")
    assert code == 200 and json.loads(body)["data"][0]["id"] == DSD  # passes straight through
    st = gate_status(gated_engine)
    assert (st["limit"], st["running"], st["admitted_total"]) == (1, 0, 0)


def test_a_full_engine_refuses_at_once_and_the_stream_in_it_is_whole(
    gated_engine: Engine,
) -> None:
    base = gated_engine.base
    req = urllib.request.Request(
        base + "/v1/completions",
        data=json.dumps(
            {
                "model": DSD,
                "prompt": "Hold the only place",
                "max_tokens": HOLD_TOKENS,
                "ignore_eos": True,
                "n": 4,
                "temperature": 1.0,
                "stream": True,
                "stream_options": {"include_usage": True},
            }
        ).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=300) as holder:
        assert holder.status == 200
        first = holder.readline()
        assert first.startswith(b"data: ")  # in vLLM, and its client has its first token
        # 1. the only place is taken: a request now is answered 503 at once, not queued
        t0 = time.monotonic()
        probe = urllib.request.Request(
            base + "/v1/completions",
            data=json.dumps({"model": DSD, "prompt": "probe", "max_tokens": 4}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(probe, timeout=60)
        took = time.monotonic() - t0
        err = refused.value
        assert err.code == 503 and err.headers["Retry-After"] == "1"
        body = json.loads(err.read())["error"]
        assert body["code"] == 503 and "1 of 1 places taken" in body["message"]
        # 2. /metrics passes through while full, vLLM's series with the gate's
        code, metrics = http(base + "/metrics")
        text = metrics.decode()
        assert code == 200 and "vllm:num_requests_running" in text
        assert "deepseek_admission_refused_total 1" in text
        assert "deepseek_admission_running 1" in text
        # 3. the stream runs to its end, every token relayed
        rest = holder.read().decode()
    events = [ln[len("data: ") :] for ln in (first.decode() + rest).splitlines() if ln]
    assert events[-1] == "[DONE]"
    usage = [json.loads(e)["usage"] for e in events[:-1] if json.loads(e).get("usage")]
    assert usage and usage[-1]["completion_tokens"] == 4 * HOLD_TOKENS
    assert took < 30, f"the refusal took {took:.1f}s"
    # 4. its place is free again: the next request is served
    deadline = time.monotonic() + 30
    while gate_status(gated_engine)["running"] and time.monotonic() < deadline:
        time.sleep(0.1)
    code, body = http(
        base + "/v1/completions", {"model": DSD, "prompt": "now", "max_tokens": 4}, timeout=120
    )
    assert code == 200 and json.loads(body)["usage"]["completion_tokens"] == 4
    st = gate_status(gated_engine)
    assert (st["running"], st["waiting"]) == (0, 0)
    assert (st["admitted_total"], st["refused_total"], st["aborted_total"]) == (2, 1, 0)
