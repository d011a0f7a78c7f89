"""Live load generator: replays a request trace against an OpenAI-compatible URL and records
what each client saw.

Each trace entry (arrival time, prompt tokens, output tokens) becomes one request sent at
`(arrival - first arrival) / speedup` seconds after the start. Requests are OpenAI requests a
real vLLM accepts too:
- `/v1/completions` (default): `prompt` is a list of N token ids, so a real server sees exactly
  N prompt tokens; the simulated replica counts them the same way.
- `/v1/chat/completions`: one user message of N words (a real tokenizer makes roughly N
  tokens of it; the simulated replica counts words).
The output length is forced with `max_tokens` = `min_tokens` = N and `ignore_eos: true` (vLLM's
sampling extensions; the simulator always generates exactly `max_tokens`).

Per request it records the HTTP status, time to first token (first streamed text), mean time
per output token after the first (TPOT = (e2e - TTFT) / (tokens - 1), as vLLM's benchmark
defines it), end-to-end latency and any error. A streamed request is ok only if it ended with
`data: [DONE]`; a broken or cut stream is a failure even after a 200.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiohttp

log = logging.getLogger("testbed.sim.loadgen")


class TraceRequest(Protocol):
    """What the load generator needs of a trace entry (traces.SimRequest has it)."""

    @property
    def id(self) -> str: ...
    @property
    def prompt_tokens(self) -> int: ...
    @property
    def max_tokens(self) -> int: ...
    @property
    def arrival(self) -> float: ...


@dataclass(frozen=True)
class LoadRequest:
    """A trace entry made by the generators below (same fields as traces.SimRequest)."""

    id: str
    prompt_tokens: int
    max_tokens: int
    arrival: float


def constant_rate(
    rate: float, count: int, prompt_tokens: int = 128, max_tokens: int = 32
) -> list[LoadRequest]:
    """`count` identical requests, evenly spaced at `rate` per second."""
    return [LoadRequest(f"req-{i}", prompt_tokens, max_tokens, i / rate) for i in range(count)]


def poisson(
    rate: float,
    count: int,
    prompt_tokens: tuple[int, int] = (64, 512),
    max_tokens: tuple[int, int] = (16, 128),
    seed: int = 0,
) -> list[LoadRequest]:
    """`count` requests with exponential inter-arrival times (mean 1/rate) and lengths drawn
    uniformly from the given inclusive ranges."""
    rng = random.Random(seed)
    t = 0.0
    out = []
    for i in range(count):
        out.append(
            LoadRequest(
                f"req-{i}",
                rng.randint(*prompt_tokens),
                rng.randint(*max_tokens),
                t,
            )
        )
        t += rng.expovariate(rate)
    return out


@dataclass
class RequestRecord:
    """What one client request saw. Times in seconds; `start` is relative to the run start."""

    id: str
    scheduled: float
    start: float
    prompt_tokens: int
    max_tokens: int
    status: int | None = None
    ok: bool = False
    error: str = ""
    ttft: float | None = None
    tpot: float | None = None
    e2e: float | None = None
    output_tokens: int = 0


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0..100) of values; None when empty."""
    if not values:
        return None
    s = sorted(values)
    pos = (len(s) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def _dist(values: Sequence[float]) -> dict[str, float | None]:
    return {
        "mean": (sum(values) / len(values)) if values else None,
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": max(values) if values else None,
    }


@dataclass
class LoadSummary:
    """Counts and latency distributions of a run."""

    url: str
    planned: int
    sent: int
    ok: int
    failed: int
    not_sent: int
    duration_s: float
    by_status: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    ttft_s: dict[str, float | None] = field(default_factory=dict)
    tpot_s: dict[str, float | None] = field(default_factory=dict)
    e2e_s: dict[str, float | None] = field(default_factory=dict)
    prompt_tokens: int = 0
    output_tokens: int = 0
    requests_per_s: float = 0.0
    output_tokens_per_s: float = 0.0
    trace: str = ""
    attribution: str = ""  # the trace's licence attribution (CC BY 4.0 traces require it)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def summarize(
    url: str,
    records: Sequence[RequestRecord],
    planned: int,
    duration_s: float,
    *,
    trace: str = "",
    attribution: str = "",
) -> LoadSummary:
    ok = [r for r in records if r.ok]
    statuses = Counter("none" if r.status is None else str(r.status) for r in records)
    errors = Counter(r.error.split(":", 1)[0] for r in records if not r.ok and r.error)
    out_tokens = sum(r.output_tokens for r in ok)
    return LoadSummary(
        url=url,
        planned=planned,
        sent=len(records),
        ok=len(ok),
        failed=len(records) - len(ok),
        not_sent=planned - len(records),
        duration_s=round(duration_s, 6),
        by_status=dict(sorted(statuses.items())),
        errors=dict(sorted(errors.items())),
        ttft_s=_dist([r.ttft for r in ok if r.ttft is not None]),
        tpot_s=_dist([r.tpot for r in ok if r.tpot is not None]),
        e2e_s=_dist([r.e2e for r in ok if r.e2e is not None]),
        prompt_tokens=sum(r.prompt_tokens for r in ok),
        output_tokens=out_tokens,
        requests_per_s=len(ok) / duration_s if duration_s > 0 else 0.0,
        output_tokens_per_s=out_tokens / duration_s if duration_s > 0 else 0.0,
        trace=trace,
        attribution=attribution,
    )


@dataclass
class LoadResult:
    summary: LoadSummary
    records: list[RequestRecord]

    def write(self, summary_path: Path | None, records_path: Path | None = None) -> None:
        if summary_path is not None:
            summary_path.write_text(self.summary.to_json() + "\n")
        if records_path is not None:
            with records_path.open("w") as f:
                for r in self.records:
                    f.write(json.dumps(asdict(r)) + "\n")


def prompt_token_ids(n: int) -> list[int]:
    """N token ids that any tokenizer with a few hundred tokens accepts."""
    return [100 + (i % 200) for i in range(n)]


def request_body(
    api: str, model: str, prompt_tokens: int, max_tokens: int, stream: bool
) -> dict[str, Any]:
    """The OpenAI request for one trace entry."""
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": max_tokens,
        "min_tokens": max_tokens,
        "ignore_eos": True,
        "temperature": 0.0,
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    if api == "chat":
        body["messages"] = [{"role": "user", "content": " ".join(["hi"] * max(prompt_tokens, 1))}]
    else:
        body["prompt"] = prompt_token_ids(max(prompt_tokens, 1))
    return body


class LoadGenerator:
    """Replays trace requests against `url` (e.g. the router's `http://127.0.0.1:8000` or
    `http://127.0.0.1:8000/prefix`).

    Bounded: at most `max_requests` requests, none sent after `max_duration` seconds; requests
    still running `drain_timeout` seconds after the last one was sent are cancelled and count
    as failed ("timeout").
    """

    def __init__(
        self,
        url: str,
        *,
        model: str | None = None,
        api: str = "completions",
        stream: bool = True,
        speedup: float = 1.0,
        max_requests: int | None = None,
        max_duration: float | None = None,
        request_timeout: float = 600.0,
        drain_timeout: float = 600.0,
        headers: dict[str, str] | None = None,
    ) -> None:
        if api not in ("completions", "chat"):
            raise ValueError("api must be 'completions' or 'chat'")
        if speedup <= 0:
            raise ValueError("speedup must be > 0")
        self.url = url.rstrip("/")
        self.model = model
        self.api = api
        self.stream = stream
        self.speedup = speedup
        self.max_requests = max_requests
        self.max_duration = max_duration
        self.request_timeout = request_timeout
        self.drain_timeout = drain_timeout
        self.headers = headers or {}

    @property
    def endpoint(self) -> str:
        return self.url + ("/v1/chat/completions" if self.api == "chat" else "/v1/completions")

    async def discover_model(self, session: aiohttp.ClientSession) -> str:
        async with session.get(self.url + "/v1/models") as resp:
            resp.raise_for_status()
            data = await resp.json()
        return str(data["data"][0]["id"])

    async def run(
        self, requests: Iterable[TraceRequest], *, trace: str = "", attribution: str = ""
    ) -> LoadResult:
        """Send every request at its (scaled) time; `trace`/`attribution` are copied into the
        summary (a replay of a CC BY trace must carry its attribution)."""
        reqs = sorted(requests, key=lambda r: r.arrival)
        if self.max_requests is not None:
            reqs = reqs[: self.max_requests]
        records: list[RequestRecord] = []
        connector = aiohttp.TCPConnector(limit=0, force_close=False)
        timeout = aiohttp.ClientTimeout(total=self.request_timeout, sock_connect=10)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            model = self.model or await self.discover_model(session)
            t0 = time.monotonic()
            first = reqs[0].arrival if reqs else 0.0
            tasks: list[asyncio.Task[None]] = []
            for r in reqs:
                at = (r.arrival - first) / self.speedup
                if self.max_duration is not None and at > self.max_duration:
                    break
                delay = t0 + at - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                rec = RequestRecord(
                    id=r.id,
                    scheduled=at,
                    start=time.monotonic() - t0,
                    prompt_tokens=r.prompt_tokens,
                    max_tokens=r.max_tokens,
                )
                records.append(rec)
                tasks.append(asyncio.create_task(self._one(session, model, rec)))
            if tasks:
                _done, pending = await asyncio.wait(tasks, timeout=self.drain_timeout)
                for t in pending:
                    t.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
            duration = time.monotonic() - t0
        summary = summarize(
            self.url, records, len(reqs), duration, trace=trace, attribution=attribution
        )
        log.info(
            "event=load_done url=%s planned=%d sent=%d ok=%d failed=%d duration_s=%.1f",
            self.url,
            summary.planned,
            summary.sent,
            summary.ok,
            summary.failed,
            duration,
        )
        return LoadResult(summary, records)

    async def _one(self, session: aiohttp.ClientSession, model: str, rec: RequestRecord) -> None:
        body = request_body(self.api, model, rec.prompt_tokens, rec.max_tokens, self.stream)
        start = time.monotonic()
        try:
            async with session.post(self.endpoint, json=body, headers=self.headers) as resp:
                rec.status = resp.status
                if resp.status != 200:
                    text = (await resp.text())[:200]
                    rec.error = f"http_{resp.status}: {text}"
                    rec.e2e = time.monotonic() - start
                    return
                if self.stream:
                    await self._read_stream(resp, rec, start)
                else:
                    data = await resp.json()
                    rec.e2e = time.monotonic() - start
                    rec.output_tokens = int((data.get("usage") or {}).get("completion_tokens", 0))
                    rec.ok = True
        except asyncio.CancelledError:
            rec.error = "timeout: still running at the end of the run"
            raise
        except TimeoutError:
            rec.error = "timeout: request timed out"
        except aiohttp.ClientError as e:
            rec.error = f"{type(e).__name__}: {e}"
        finally:
            if not rec.ok and rec.e2e is None:
                rec.e2e = time.monotonic() - start

    async def _read_stream(
        self, resp: aiohttp.ClientResponse, rec: RequestRecord, start: float
    ) -> None:
        chunks_with_text = 0
        usage_tokens: int | None = None
        first: float | None = None
        done = False
        async for raw in resp.content:
            line = raw.strip()
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                done = True
                continue  # read to the end, so the connection can be reused
            event = json.loads(payload)
            if "error" in event:
                rec.error = f"stream_error: {event['error']}"
                return
            for choice in event.get("choices") or []:
                text = choice.get("text")
                if text is None:
                    text = (choice.get("delta") or {}).get("content")
                if text:
                    chunks_with_text += 1
                    if first is None:
                        first = time.monotonic()
            usage = event.get("usage")
            if usage and usage.get("completion_tokens") is not None:
                usage_tokens = int(usage["completion_tokens"])
        end = time.monotonic()
        if not done:
            rec.error = "broken_stream: the stream ended without [DONE]"
            return
        n = usage_tokens if usage_tokens is not None else chunks_with_text
        rec.output_tokens = n
        rec.e2e = end - start
        if first is not None:
            rec.ttft = first - start
            if n > 1:
                rec.tpot = (rec.e2e - rec.ttft) / (n - 1)
        rec.ok = True
