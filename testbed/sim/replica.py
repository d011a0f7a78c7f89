"""One simulated vLLM replica: an OpenAI-compatible HTTP server driven by the engine model.

It listens on the pod's IP and port like `vllm serve` and answers:
- `POST /v1/completions`, `POST /v1/chat/completions`: non-streaming and streaming (SSE as
  vLLM sends it: `data: {json}` chunks, one per generated token, an optional usage chunk when
  `stream_options.include_usage` is set, then `data: [DONE]`);
- `GET /v1/models`, `GET /health`, `GET|POST /ping`;
- `GET /metrics`: vLLM 0.32's metric names, types, label names and histogram buckets
  (shared/reference/vllm-0.32-metrics.txt), with `engine="0"` and `model_name`, and the
  prometheus-fastapi-instrumentator series vLLM's API server adds (`http_requests_total{handler,
  method,status="2xx|4xx|5xx"}`, `http_request_duration_seconds`, ...; /metrics, /health,
  /ping are excluded from them, as in vLLM).

Token counts: the prompt's length is its number of token ids (`prompt: [ids]`, as a real vLLM
counts them) or, for text, its number of whitespace-separated words; chat messages count the
words of their contents. The output is always exactly `max_tokens` tokens (ignore_eos
semantics), so the load generator controls lengths; default `max_tokens` as vLLM: 16 for
completions, the rest of the context for chat.

Time is the wall clock (time.monotonic): a driver task advances the engine model to "now",
sleeps until its next event (at least `min_tick`), and hands each token to its request when
the event is due; the histograms use the engine's exact event times.

Fault hooks (faults.ReplicaFaults): slow (engine steps take longer), erroring (HTTP 500 for a
fraction of completion requests, counted as 5xx), crash (`crash()`: stop listening and drop
every connection at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Summary,
    generate_latest,
)

from .engine import EngineModel, SimRequest, TokenEvent
from .engine import RequestRecord as EngineRecord
from .faults import HEALTHY, ReplicaFaults

log = logging.getLogger("testbed.sim.replica")

CONTENT_TYPE_LATEST = "text/plain; version=0.0.4; charset=utf-8"
ENGINE_INDEX = "0"
# prometheus-fastapi-instrumentator handlers vLLM excludes from the http_* series.
EXCLUDED_HANDLERS = frozenset({"/metrics", "/health", "/load", "/ping", "/version", "/server_info"})
WORDS = ("the", "model", "answers", "with", "simulated", "tokens", "from", "a", "vLLM", "replica")

# Histogram buckets of vLLM 0.32 (vllm/v1/metrics/loggers.py), as in the reference exposition.
TTFT_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
    160.0,
    640.0,
    2560.0,
)
ITL_BUCKETS = (
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.4,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
)
LATENCY_BUCKETS = (
    0.3,
    0.5,
    0.8,
    1.0,
    1.5,
    2.0,
    2.5,
    5.0,
    10.0,
    15.0,
    20.0,
    30.0,
    40.0,
    50.0,
    60.0,
    120.0,
    240.0,
    480.0,
    960.0,
    1920.0,
    7680.0,
)
ITERATION_TOKEN_BUCKETS = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)
PREEMPTION_BUCKETS = (1, 2, 3, 4, 5, 10, 20)
N_BUCKETS = (1, 2, 5, 10, 20)
HTTP_BUCKETS = (0.1, 0.5, 1.0)
HTTP_HIGHR_BUCKETS = (
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    1.5,
    2.0,
    2.5,
    3.0,
    3.5,
    4.0,
    4.5,
    5.0,
    7.5,
    10.0,
    30.0,
    60.0,
)
FINISHED_REASONS = ("stop", "length", "abort", "error", "repetition")


def buckets_1_2_5(max_value: int) -> tuple[float, ...]:
    """1, 2, 5, 10, 20, 50, ... up to max_value (vLLM's build_1_2_5_buckets for token counts)."""
    out: list[float] = []
    exp = 0
    while True:
        for m in (1, 2, 5):
            v = m * 10**exp
            if v > max_value:
                return tuple(out)
            out.append(float(v))
        exp += 1


class VllmMetrics:
    """The metric families of one vLLM server, in one registry."""

    def __init__(self, model_name: str, max_model_len: int, cache_info: dict[str, str]) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.model_name = model_name
        lab = ["engine", "model_name"]
        self._lv = (ENGINE_INDEX, model_name)
        tok_buckets = buckets_1_2_5(max_model_len)

        def counter(name: str, doc: str, extra: Iterable[str] = ()) -> Counter:
            return Counter(name, doc, [*lab, *extra], registry=r)

        def gauge(name: str, doc: str, extra: Iterable[str] = ()) -> Gauge:
            return Gauge(name, doc, [*lab, *extra], registry=r)

        def hist(name: str, doc: str, buckets: Iterable[float]) -> Histogram:
            return Histogram(name, doc, lab, buckets=tuple(buckets), registry=r)

        doc_est = "(for Model Flops Utilization calculations)."
        self.flops = counter(
            "vllm:estimated_flops_per_gpu",
            f"Estimated number of floating point operations per GPU {doc_est}",
        )
        self.read_bytes = counter(
            "vllm:estimated_read_bytes_per_gpu",
            f"Estimated number of bytes read from memory per GPU {doc_est}",
        )
        self.write_bytes = counter(
            "vllm:estimated_write_bytes_per_gpu",
            f"Estimated number of bytes written to memory per GPU {doc_est}",
        )
        self.running = gauge(
            "vllm:num_requests_running", "Number of requests in model execution batches."
        )
        self.waiting = gauge(
            "vllm:num_requests_waiting", "Number of requests waiting to be processed."
        )
        self.waiting_by_reason = gauge(
            "vllm:num_requests_waiting_by_reason",
            "Number of waiting requests by reason. Reason labels: 'capacity' = waiting for "
            "scheduling capacity; 'deferred' = deferred by transient constraints (LoRA budget, "
            "KV transfer, blocked status). Sum of all reasons equals vllm:num_requests_waiting.",
            ["reason"],
        )
        self.sleep_state = gauge(
            "vllm:engine_sleep_state",
            "Engine sleep state; awake = 0 means engine is sleeping; awake = 1 means engine is "
            "awake; weights_offloaded = 1 means sleep level 1; discard_all = 1 means sleep "
            "level 2.",
            ["sleep_state"],
        )
        self.kv_usage = gauge(
            "vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage."
        )
        self.prefix_queries = counter(
            "vllm:prefix_cache_queries",
            "Prefix cache queries, in terms of number of queried tokens.",
        )
        self.prefix_hits = counter(
            "vllm:prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens."
        )
        self.ext_prefix_queries = counter(
            "vllm:external_prefix_cache_queries",
            "External prefix cache queries from KV connector cross-instance cache sharing, in "
            "terms of number of queried tokens.",
        )
        self.ext_prefix_hits = counter(
            "vllm:external_prefix_cache_hits",
            "External prefix cache hits from KV connector cross-instance cache sharing, in "
            "terms of number of cached tokens.",
        )
        self.mm_queries = counter(
            "vllm:mm_cache_queries",
            "Multi-modal cache queries, in terms of number of queried items.",
        )
        self.mm_hits = counter(
            "vllm:mm_cache_hits", "Multi-modal cache hits, in terms of number of cached items."
        )
        self.preemptions = counter(
            "vllm:num_preemptions", "Cumulative number of preemption from the engine."
        )
        self.prompt_tokens = counter("vllm:prompt_tokens", "Number of prefill tokens processed.")
        self.prompt_by_source = counter(
            "vllm:prompt_tokens_by_source", "Number of prompt tokens by source.", ["source"]
        )
        self.prompt_cached = counter(
            "vllm:prompt_tokens_cached", "Number of cached prompt tokens (local + external)."
        )
        self.prompt_cached_by_source = counter(
            "vllm:prompt_tokens_cached_by_source",
            "Prefix-cache hit tokens by the cache tier that supplied them: device (local HBM), "
            "host (offloaded to DRAM), disk, p2p (transferred from another vLLM instance) or "
            "external_unspecified. Counted at admission; sums to vllm:prefix_cache_hits + "
            "vllm:external_prefix_cache_hits.",
            ["source"],
        )
        self.generation_tokens = counter(
            "vllm:generation_tokens", "Number of generation tokens processed."
        )
        self.success = counter(
            "vllm:request_success",
            "Count of successfully processed requests.",
            ["finished_reason"],
        )
        self.admission_rejections = Counter(
            "vllm:admission_rejections",
            "Number of admission attempts rejected by a queue limit, by reason.",
            ["model_name", "reason"],
            registry=r,
        )
        self.req_prompt_tokens = hist(
            "vllm:request_prompt_tokens", "Number of prefill tokens processed.", tok_buckets
        )
        self.req_generation_tokens = hist(
            "vllm:request_generation_tokens", "Number of generation tokens processed.", tok_buckets
        )
        self.iteration_tokens = hist(
            "vllm:iteration_tokens_total",
            "Histogram of number of tokens per engine_step.",
            ITERATION_TOKEN_BUCKETS,
        )
        self.max_gen_tokens = hist(
            "vllm:request_max_num_generation_tokens",
            "Histogram of maximum number of requested generation tokens.",
            tok_buckets,
        )
        self.params_n = hist(
            "vllm:request_params_n", "Histogram of the n request parameter.", N_BUCKETS
        )
        self.params_max_tokens = hist(
            "vllm:request_params_max_tokens",
            "Histogram of the max_tokens request parameter.",
            tok_buckets,
        )
        self.ttft = hist(
            "vllm:time_to_first_token_seconds",
            "Histogram of time to first token in seconds.",
            TTFT_BUCKETS,
        )
        self.itl = hist(
            "vllm:inter_token_latency_seconds",
            "Histogram of inter-token latency in seconds.",
            ITL_BUCKETS,
        )
        self.tpot = hist(
            "vllm:request_time_per_output_token_seconds",
            "Histogram of time_per_output_token_seconds per request.",
            ITL_BUCKETS,
        )
        self.e2e = hist(
            "vllm:e2e_request_latency_seconds",
            "Histogram of e2e request latency in seconds.",
            LATENCY_BUCKETS,
        )
        self.queue_time = hist(
            "vllm:request_queue_time_seconds",
            "Histogram of time spent in WAITING phase for request.",
            LATENCY_BUCKETS,
        )
        self.inference_time = hist(
            "vllm:request_inference_time_seconds",
            "Histogram of time spent in RUNNING phase for request.",
            LATENCY_BUCKETS,
        )
        self.prefill_time = hist(
            "vllm:request_prefill_time_seconds",
            "Histogram of time spent in PREFILL phase for request.",
            LATENCY_BUCKETS,
        )
        self.decode_time = hist(
            "vllm:request_decode_time_seconds",
            "Histogram of time spent in DECODE phase for request.",
            LATENCY_BUCKETS,
        )
        self.req_preemptions = hist(
            "vllm:request_num_preemptions",
            "Histogram of the number of times a request was preempted.",
            PREEMPTION_BUCKETS,
        )
        self.prefill_kv_tokens = hist(
            "vllm:request_prefill_kv_computed_tokens",
            "Histogram of new KV tokens computed during prefill (excluding cached tokens).",
            tok_buckets,
        )
        cache_labels = sorted(cache_info)
        self.cache_config = Gauge(
            "vllm:cache_config_info",
            "Information of the LLMEngine CacheConfig",
            [*cache_labels, "engine"] if "engine" not in cache_labels else cache_labels,
            registry=r,
        )
        self.cache_config.labels(**{**cache_info, "engine": ENGINE_INDEX}).set(1)

        # prometheus-fastapi-instrumentator, as vLLM's API server registers it.
        self.http_requests = Counter(
            "http_requests",
            "Total number of requests by method, status and handler.",
            ["method", "status", "handler"],
            registry=r,
        )
        self.http_request_size = Summary(
            "http_request_size_bytes",
            "Content length of incoming requests by handler. Only value of header is "
            "respected. Otherwise ignored. No percentile calculated. ",
            ["handler"],
            registry=r,
        )
        self.http_response_size = Summary(
            "http_response_size_bytes",
            "Content length of outgoing responses by handler. Only value of header is "
            "respected. Otherwise ignored. No percentile calculated. ",
            ["handler"],
            registry=r,
        )
        self.http_highr = Histogram(
            "http_request_duration_highr_seconds",
            "Latency with many buckets but no API specific labels. Made for more accurate "
            "percentile calculations. ",
            buckets=HTTP_HIGHR_BUCKETS,
            registry=r,
        )
        self.http_duration = Histogram(
            "http_request_duration_seconds",
            "Latency with only few buckets by handler. Made to be only used if aggregation by "
            "handler is important. ",
            ["method", "handler"],
            buckets=HTTP_BUCKETS,
            registry=r,
        )

        # Series vLLM creates at start (zero until something happens).
        lv = self._lv
        for m in (
            self.flops,
            self.read_bytes,
            self.write_bytes,
            self.prefix_queries,
            self.prefix_hits,
            self.ext_prefix_queries,
            self.ext_prefix_hits,
            self.mm_queries,
            self.mm_hits,
            self.preemptions,
            self.prompt_tokens,
            self.prompt_cached,
            self.generation_tokens,
        ):
            m.labels(*lv)
        for g in (self.running, self.waiting, self.kv_usage):
            g.labels(*lv).set(0)
        for reason in ("capacity", "deferred"):
            self.waiting_by_reason.labels(*lv, reason).set(0)
        for state, v in (("awake", 1), ("weights_offloaded", 0), ("discard_all", 0)):
            self.sleep_state.labels(*lv, state).set(v)
        for src in ("local_compute", "local_cache_hit", "external_kv_transfer"):
            self.prompt_by_source.labels(*lv, src)
        for src in ("device", "host", "p2p", "disk", "external_unspecified"):
            self.prompt_cached_by_source.labels(*lv, src)
        for reason in FINISHED_REASONS:
            self.success.labels(*lv, reason)
        for reason in ("max_num_queued_reqs", "max_num_queued_tokens"):
            self.admission_rejections.labels(model_name, reason)
        for h in (
            self.req_prompt_tokens,
            self.req_generation_tokens,
            self.iteration_tokens,
            self.max_gen_tokens,
            self.params_n,
            self.params_max_tokens,
            self.ttft,
            self.itl,
            self.tpot,
            self.e2e,
            self.queue_time,
            self.inference_time,
            self.prefill_time,
            self.decode_time,
            self.req_preemptions,
            self.prefill_kv_tokens,
        ):
            h.labels(*lv)

    def lv(self) -> tuple[str, str]:
        return self._lv

    def render(self) -> bytes:
        return generate_latest(self.registry)


def cache_config_info(preset: Any, kv_cache_dtype: str = "auto") -> dict[str, str]:
    """Label values of vllm:cache_config_info for a preset (the reference's label set)."""
    blocks = int(getattr(preset, "num_gpu_blocks", 0) or 0)
    block = int(getattr(preset, "block_size", 16) or 16)
    util = getattr(preset, "gpu_memory_utilization", 0.92)
    kv_bytes = getattr(preset, "kv_cache_bytes_per_gpu", 0.0) or 0.0
    max_len = int(getattr(preset, "max_model_len", 0) or 0)
    conc = (blocks * block / max_len) if max_len else 0.0
    return {
        "_block_size_resolved": "True",
        "block_size": str(block),
        "cache_dtype": getattr(preset, "kv_cache_dtype", kv_cache_dtype) or "auto",
        "cache_hit_alignment_tokens": "None",
        "effective_attention_block_size": str(block),
        "enable_mamba_shared_prefix_checkpoint": "False",
        "enable_prefix_caching": "True",
        "gpu_memory_utilization": f"{util:g}",
        "hash_block_size": "None",
        "is_attention_free": "False",
        "kv_cache_dtype_skip_layers": "[]",
        "kv_cache_layout": "None",
        "kv_cache_max_concurrency": f"{conc:.1f}",
        "kv_cache_memory_bytes": str(int(max(kv_bytes, 0))),
        "kv_cache_size_tokens": str(blocks * block),
        "kv_offloading_backend": "native",
        "kv_offloading_size": "None",
        "kv_sharing_fast_prefill": "False",
        "mamba_block_size": "None",
        "mamba_cache_dtype": "auto",
        "mamba_cache_mode": "none",
        "mamba_page_size_padded": "None",
        "mamba_ssm_cache_dtype": "auto",
        "num_cpu_blocks": "None",
        "num_gpu_blocks": str(blocks),
        "num_gpu_blocks_override": "None",
        "prefix_cache_retention_interval": "0",
        "prefix_caching_hash_algo": "sha256",
        "prefix_match_unit": "None",
        "replayssm_buffer_len": "16",
        "skip_page_size_padded": "None",
        "sliding_window": "None",
        "swa_bounded_replay": "True",
        "use_kda_recoverssm": "False",
        "use_replayssm": "False",
        "user_specified_block_size": "False",
    }


# ---------------------------------------------------------------------------------------------
# Requests


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400, typ: str = "BadRequestError") -> None:
        super().__init__(message)
        self.status = status
        self.typ = typ


def error_body(message: str, typ: str, code: int) -> dict[str, Any]:
    """vLLM's ErrorResponse."""
    return {"error": {"message": message, "type": typ, "param": None, "code": code}}


def count_prompt_tokens(prompt: Any) -> int:
    """Tokens of a completions prompt: token ids count one each, text one per word."""
    if isinstance(prompt, list):
        if len(prompt) == 1 and isinstance(prompt[0], (list, str)):
            return count_prompt_tokens(prompt[0])
        if all(isinstance(t, int) for t in prompt):
            return len(prompt)
        raise BadRequest("batched prompts are not supported by the simulator; send one prompt")
    if isinstance(prompt, str):
        return max(1, len(prompt.split()))
    raise BadRequest("prompt must be a string or a list of token ids")


def count_chat_tokens(messages: Any) -> int:
    """Words of every message's text content (at least 1)."""
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages must be a non-empty list")
    words = 0
    for m in messages:
        if not isinstance(m, dict):
            raise BadRequest("each message must be an object")
        content = m.get("content")
        if isinstance(content, str):
            words += len(content.split())
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    words += len(part["text"].split())
    return max(1, words)


@dataclass
class ParsedRequest:
    chat: bool
    model: str
    prompt_tokens: int
    max_tokens: int
    stream: bool
    include_usage: bool
    priority: int = 0


# vLLM 0.32 reads a request's priority from this header when it holds an integer, else from the
# body's `priority` (vllm/entrypoints/generate/base/serving.py, _get_priority).
PRIORITY_HEADER = "X-Vllm-Priority"


def request_priority(body: dict[str, Any], header: str | None) -> int:
    """The request's priority as vLLM 0.32 reads it: the header's integer wins; the body's
    `priority` must be an integer (default 0)."""
    if header is not None:
        with contextlib.suppress(ValueError):
            return int(header)
    raw = body.get("priority")
    if raw is None:
        return 0
    if not isinstance(raw, int) or isinstance(raw, bool):
        raise BadRequest("priority must be an integer")
    return raw


def parse_request(
    body: Any,
    chat: bool,
    served_names: tuple[str, ...],
    max_model_len: int,
    priority_header: str | None = None,
) -> ParsedRequest:
    """Validate an OpenAI request as vLLM would and read what the simulation needs."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    model = body.get("model") or served_names[0]
    if model not in served_names:
        raise BadRequest(f"The model `{model}` does not exist.", 404, "NotFoundError")
    if chat:
        prompt_tokens = count_chat_tokens(body.get("messages"))
    else:
        if "prompt" not in body:
            raise BadRequest("prompt is required")
        prompt_tokens = count_prompt_tokens(body["prompt"])
    raw_max = body.get("max_completion_tokens") if chat else None
    raw_max = raw_max if raw_max is not None else body.get("max_tokens")
    if raw_max is None:
        max_tokens = max_model_len - prompt_tokens if chat else 16
    else:
        if not isinstance(raw_max, int) or isinstance(raw_max, bool) or raw_max < 1:
            raise BadRequest("max_tokens must be a positive integer")
        max_tokens = raw_max
    if body.get("n", 1) not in (1, None):
        raise BadRequest("n > 1 is not supported by the simulator")
    if prompt_tokens + max_tokens > max_model_len:
        raise BadRequest(
            f"This model's maximum context length is {max_model_len} tokens. However, you "
            f"requested {prompt_tokens + max_tokens} tokens ({prompt_tokens} in the messages, "
            f"{max_tokens} in the completion). Please reduce the length of the messages or "
            "completion."
        )
    priority = request_priority(body, priority_header)
    stream = bool(body.get("stream", False))
    opts = body.get("stream_options") or {}
    return ParsedRequest(
        chat=chat,
        model=model,
        prompt_tokens=prompt_tokens,
        max_tokens=max_tokens,
        stream=stream,
        include_usage=stream and bool(opts.get("include_usage", False)),
        priority=priority,
    )


# ---------------------------------------------------------------------------------------------
# The engine driver and the server


@dataclass
class _Pending:
    """A request inside the engine, as its HTTP handler waits for it."""

    id: str
    prompt_tokens: int
    max_tokens: int
    submitted: float
    buf: deque[Any] = field(default_factory=deque)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    done: bool = False

    def put(self, ev: Any) -> None:
        self.buf.append(ev)
        self.ready.set()

    async def take(self) -> list[Any]:
        """Wait for at least one event; return every event already due."""
        while not self.buf:
            self.ready.clear()
            await self.ready.wait()
        out = list(self.buf)
        self.buf.clear()
        return out


def _failure(ev: Any) -> tuple[int, str, str] | None:
    """(HTTP status, error type, message) when an engine event ends a request unsuccessfully."""
    kind = ev.kind
    reason = ev.finished_reason or ""
    if kind == "rejected":
        if reason == "length":
            return 400, "BadRequestError", "the prompt and max_tokens exceed the context length"
        return 500, "InternalServerError", "the engine is not running"
    if kind == "finished" and reason not in ("stop", "length"):
        return 500, "InternalServerError", f"EngineCore encountered an issue ({reason})."
    return None


class ReplicaServer:
    """A simulated vLLM server around one engine model instance (one container lifetime)."""

    def __init__(
        self,
        engine: EngineModel,
        *,
        host: str,
        port: int,
        served_names: Iterable[str],
        max_model_len: int | None = None,
        model_path: str = "",
        faults: ReplicaFaults = HEALTHY,
        clock: Callable[[], float] = time.monotonic,
        name: str = "",
        min_tick: float = 0.01,
    ) -> None:
        """`min_tick`: the driver sleeps at least this long between engine events (tokens due
        meanwhile go out together; their timestamps in the histograms stay exact), so a busy
        replica wakes the event loop ~100 times a second, not once per engine step."""
        preset = engine.preset
        self.engine = engine
        self.host = host
        self.port = port
        self.served_names = tuple(served_names) or ("model",)
        self.max_model_len = max_model_len or preset.max_model_len
        self.model_path = model_path or self.served_names[0]
        self.name = name or f"{host}:{port}"
        self.clock = clock
        self.min_tick = max(min_tick, 0.0)
        self._flops_per_token = preset.model.flops_per_token / preset.gpus
        self.metrics = VllmMetrics(
            self.served_names[0], self.max_model_len, cache_config_info(preset)
        )
        self._seen: dict[str, float] = {}
        self._pending: dict[str, _Pending] = {}
        self._wake = asyncio.Event()
        self._driver: asyncio.Task[None] | None = None
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._accepting = False
        self._closed = False
        self.created = int(time.time())
        self.in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._faults = HEALTHY
        self.apply_faults(faults)

    # -- faults ------------------------------------------------------------------------------

    @property
    def faults(self) -> ReplicaFaults:
        return self._faults

    def apply_faults(self, faults: ReplicaFaults) -> None:
        """Make the engine slow or erroring from now on (crash: see `crash()`)."""
        now = self.clock()
        self._advance(now)
        self.engine.set_slow_factor(faults.slow_factor, now)
        self.engine.set_error_rate(faults.error_rate, now)
        self._faults = faults
        self._wake.set()

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def listening(self) -> bool:
        return self._site is not None

    async def start(self) -> None:
        """Listen on host:port and start driving the engine."""
        app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[self._instrument])
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/health", self._health)
        app.router.add_get("/ping", self._health)
        app.router.add_post("/ping", self._health)
        app.router.add_get("/metrics", self._metrics)
        runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        self._site = site
        if self.port == 0:
            server = site._server
            sockets = getattr(server, "sockets", None) or []
            self.port = sockets[0].getsockname()[1]
        self._accepting = True
        self._driver = asyncio.create_task(self._drive(), name=f"engine-{self.name}")
        log.info(
            "event=replica_listening replica=%s url=%s model=%s",
            self.name,
            self.url,
            self.served_names[0],
        )

    async def drain(self, timeout: float) -> int:
        """Stop accepting connections (vLLM on SIGTERM), let in-flight requests finish for up to
        `timeout` seconds, then abort the rest. Returns how many were aborted."""
        self._accepting = False
        if self._runner is None:
            return 0
        log.info(
            "event=replica_draining replica=%s in_flight=%d timeout_s=%.1f",
            self.name,
            self.in_flight,
            timeout,
        )
        if self._site is not None:
            await self._site.stop()
            self._site = None
        # Idle keep-alive connections close now; busy ones after their response.
        server = self._runner.server
        if server is not None:
            for conn in server.connections:
                conn.close()
        if timeout > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), timeout)
        aborted = self.in_flight
        await self._shutdown()
        log.info("event=replica_drained replica=%s aborted=%d", self.name, aborted)
        return aborted

    async def crash(self, xid: int = 0) -> None:
        """Die at once: stop listening and reset every open connection."""
        self._accepting = False
        log.info("event=replica_crashed replica=%s in_flight=%d", self.name, self.in_flight)
        if self._site is not None:
            await self._site.stop()
            self._site = None
        if self._runner is not None and self._runner.server is not None:
            for conn in self._runner.server.connections:
                transport = conn.transport
                if transport is not None:
                    transport.abort()
        self.engine.crash(self.clock(), xid=xid)
        await self._shutdown()

    async def close(self) -> None:
        """Stop without draining (the pod vanished)."""
        self._accepting = False
        if self._site is not None:
            await self._site.stop()
            self._site = None
        await self._shutdown()

    async def _shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        now = self.clock()
        for p in list(self._pending.values()):
            if not p.done:
                self.engine.abort(p.id, now)
        self._advance(now)
        if self._driver is not None:
            self._driver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._driver
            self._driver = None
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    # -- engine driving -----------------------------------------------------------------------

    def _advance(self, now: float) -> None:
        events = self.engine.advance(now)
        if events:
            self._dispatch(events)
        steps = self.engine.drain_iteration_tokens()
        if steps:
            hist = self.metrics.iteration_tokens.labels(*self.metrics.lv())
            for tokens, count in steps:
                for _ in range(count):
                    hist.observe(tokens)
        records = self.engine.finished_requests()
        if records:
            self._observe_finished(records)

    async def _drive(self) -> None:
        engine = self.engine
        while True:
            self._advance(self.clock())
            nxt = engine.next_event_time()
            self._wake.clear()
            if nxt is None:
                await self._wake.wait()
                continue
            delay = max(nxt - self.clock(), self.min_tick)
            if delay <= 0:
                await asyncio.sleep(0)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    def _dispatch(self, events: Iterable[TokenEvent]) -> None:
        m = self.metrics
        lv = m.lv()
        for ev in events:
            p = self._pending.get(ev.request_id)
            if ev.kind == "first_token":
                if p is not None:
                    m.ttft.labels(*lv).observe(max(0.0, ev.time - p.submitted))
            elif ev.kind == "token":
                itl = m.itl.labels(*lv)
                for _ in range(ev.tokens):
                    itl.observe(ev.interval)
            if p is None or p.done:
                continue
            p.put(ev)
            if ev.kind in ("finished", "rejected"):
                p.done = True

    def _observe_finished(self, records: Iterable[EngineRecord]) -> None:
        m = self.metrics
        lv = m.lv()
        for r in records:
            if r.scheduled is None:
                continue  # never ran (error fault at admission): vLLM observes nothing
            m.e2e.labels(*lv).observe(r.e2e)
            m.queue_time.labels(*lv).observe(r.queue_time)
            m.prefill_time.labels(*lv).observe(r.prefill_time)
            m.decode_time.labels(*lv).observe(r.decode_time)
            m.inference_time.labels(*lv).observe(r.inference_time)
            m.req_prompt_tokens.labels(*lv).observe(r.prompt_tokens)
            m.req_generation_tokens.labels(*lv).observe(r.generation_tokens)
            m.max_gen_tokens.labels(*lv).observe(r.max_tokens)
            m.params_max_tokens.labels(*lv).observe(r.max_tokens)
            m.params_n.labels(*lv).observe(1)
            m.prefill_kv_tokens.labels(*lv).observe(r.prompt_tokens)
            m.req_preemptions.labels(*lv).observe(r.num_preemptions)
            if r.tpot is not None:
                m.tpot.labels(*lv).observe(r.tpot)

    def gpu_stats(self) -> list[Any]:
        """The engine's DCGM-style readings of its GPUs, brought up to now."""
        self._advance(self.clock())
        return self.engine.gpu_stats()

    def outstanding(self) -> int:
        """Requests inside the engine (running + waiting)."""
        return self.engine.outstanding()

    def _delta(self, key: str, total: float) -> float:
        d = total - self._seen.get(key, 0.0)
        self._seen[key] = total
        return max(d, 0.0)

    def refresh_metrics(self) -> None:
        """Bring gauges and counters up to the engine's state (called on every scrape)."""
        self._advance(self.clock())
        s = self.engine.stats()
        m = self.metrics
        lv = m.lv()
        m.running.labels(*lv).set(s.num_requests_running)
        m.waiting.labels(*lv).set(s.num_requests_waiting)
        m.waiting_by_reason.labels(*lv, "capacity").set(s.num_requests_waiting)
        m.kv_usage.labels(*lv).set(s.kv_cache_usage)
        m.preemptions.labels(*lv).inc(self._delta("preemptions", s.num_preemptions_total))
        dp = self._delta("prompt", s.prompt_tokens_total)
        dg = self._delta("generation", s.generation_tokens_total)
        m.prompt_tokens.labels(*lv).inc(dp)
        m.prompt_by_source.labels(*lv, "local_compute").inc(dp)
        m.prefix_queries.labels(*lv).inc(dp)
        m.generation_tokens.labels(*lv).inc(dg)
        m.flops.labels(*lv).inc(self._flops_per_token * (dp + dg))
        for reason, n in s.request_success_total.items():
            m.success.labels(*lv, reason).inc(self._delta(f"success/{reason}", n))

    def _submit(self, parsed: ParsedRequest) -> _Pending:
        now = self.clock()
        # Bring the engine up to now first: the request joins at the next step boundary.
        self._advance(now)
        rid = f"cmpl-{uuid.uuid4().hex}"
        p = _Pending(rid, parsed.prompt_tokens, parsed.max_tokens, now)
        self._pending[rid] = p
        self.engine.submit(
            SimRequest(rid, parsed.prompt_tokens, parsed.max_tokens, now, priority=parsed.priority),
            now,
        )
        self._advance(now)  # rejections and error faults are due at once
        self._wake.set()
        return p

    def _release(self, p: _Pending) -> None:
        if not p.done:
            # The client went away (or the handler failed): vLLM aborts the request.
            self.engine.abort(p.id, self.clock())
            p.done = True
            self._wake.set()
        self._pending.pop(p.id, None)

    # -- HTTP ---------------------------------------------------------------------------------

    @web.middleware
    async def _instrument(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        resource = request.match_info.route.resource
        path = resource.canonical if resource is not None else "none"
        tracked = path not in EXCLUDED_HANDLERS
        counted = path.startswith("/v1/") and request.method == "POST"
        if counted:
            self.in_flight += 1
            self._idle.clear()
        start = time.perf_counter()
        status = 500
        resp: web.StreamResponse | None = None
        try:
            resp = await handler(request)
            status = resp.status
            return resp
        except web.HTTPException as e:
            status = e.status
            raise
        finally:
            if counted:
                self.in_flight -= 1
                if self.in_flight == 0:
                    self._idle.set()
            if tracked:
                m = self.metrics
                dur = time.perf_counter() - start
                m.http_requests.labels(request.method, f"{status // 100}xx", path).inc()
                m.http_duration.labels(request.method, path).observe(dur)
                m.http_highr.observe(dur)
                m.http_request_size.labels(path).observe(request.content_length or 0)
                size = resp.content_length if resp is not None else None
                m.http_response_size.labels(path).observe(size or 0)

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def _models(self, request: web.Request) -> web.Response:
        data: list[dict[str, Any]] = [
            {
                "id": name,
                "object": "model",
                "created": self.created,
                "owned_by": "vllm",
                "root": self.model_path,
                "parent": None,
                "max_model_len": self.max_model_len,
                "permission": [],
            }
            for name in self.served_names
        ]
        return web.json_response({"object": "list", "data": data})

    async def _metrics(self, request: web.Request) -> web.Response:
        self.refresh_metrics()
        return web.Response(
            body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, chat=False)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, chat=True)

    async def _serve(self, request: web.Request, chat: bool) -> web.StreamResponse:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, "BadRequestError", "invalid JSON body")
        try:
            parsed = parse_request(
                body,
                chat,
                self.served_names,
                self.max_model_len,
                request.headers.get(PRIORITY_HEADER),
            )
        except BadRequest as e:
            return _error(e.status, e.typ, str(e))
        if not self._accepting:
            return _error(503, "ServiceUnavailableError", "the server is shutting down")
        p = self._submit(parsed)
        try:
            for ev in p.buf:
                fail = _failure(ev)
                if fail is not None:
                    return _error(*fail)
            if parsed.stream:
                return await self._stream(request, parsed, p)
            return await self._complete(request, parsed, p)
        finally:
            self._release(p)

    def _drop(self, request: web.Request) -> web.Response:
        """The server is going away mid-request: close the connection without an answer."""
        if request.transport is not None:
            request.transport.close()
        return web.Response(status=500)

    async def _complete(
        self, request: web.Request, parsed: ParsedRequest, p: _Pending
    ) -> web.Response:
        produced = 0
        while True:
            for ev in await p.take():
                if ev.kind in ("first_token", "token"):
                    produced += ev.tokens
                    continue
                if ev.kind == "finished" and ev.finished_reason == "abort":
                    return self._drop(request)
                fail = _failure(ev)
                if fail is not None:
                    return _error(*fail)
                if ev.kind == "finished":
                    return web.json_response(self._final_body(parsed, p, produced))

    def _final_body(self, parsed: ParsedRequest, p: _Pending, produced: int) -> dict[str, Any]:
        text = _words(0, produced)
        usage = {
            "prompt_tokens": parsed.prompt_tokens,
            "total_tokens": parsed.prompt_tokens + produced,
            "completion_tokens": produced,
            "prompt_tokens_details": None,
        }
        if parsed.chat:
            return {
                "id": f"chatcmpl-{p.id[5:]}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": parsed.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text, "tool_calls": []},
                        "logprobs": None,
                        "finish_reason": "length",
                        "stop_reason": None,
                    }
                ],
                "usage": usage,
            }
        return {
            "id": p.id,
            "object": "text_completion",
            "created": int(time.time()),
            "model": parsed.model,
            "choices": [
                {
                    "index": 0,
                    "text": text,
                    "logprobs": None,
                    "finish_reason": "length",
                    "stop_reason": None,
                    "prompt_logprobs": None,
                }
            ],
            "usage": usage,
        }

    async def _stream(
        self, request: web.Request, parsed: ParsedRequest, p: _Pending
    ) -> web.StreamResponse:
        resp = web.StreamResponse(
            status=200, headers={"Content-Type": "text/event-stream; charset=utf-8"}
        )
        await resp.prepare(request)
        sse = _SseWriter(parsed, p.id)
        out = bytearray()
        if parsed.chat:
            out += sse.role_chunk()
        produced = 0
        while True:
            finished = False
            for ev in await p.take():
                if ev.kind in ("first_token", "token"):
                    for _ in range(ev.tokens):
                        produced += 1
                        last = produced >= parsed.max_tokens
                        out += sse.token_chunk(_words(produced - 1, 1), "length" if last else None)
                    continue
                if ev.kind == "finished" and ev.finished_reason == "abort":
                    if out:
                        await resp.write(bytes(out))
                    self._drop(request)
                    return resp
                fail = _failure(ev)
                if fail is not None:
                    # vLLM reports an engine error inside the stream, then ends it.
                    out += sse.data(error_body(fail[2], fail[1], fail[0]))
                    out += b"data: [DONE]\n\n"
                    finished = True
                    break
                if ev.kind == "finished":
                    if parsed.include_usage:
                        out += sse.usage_chunk(produced)
                    out += b"data: [DONE]\n\n"
                    finished = True
            if out:
                await resp.write(bytes(out))
                out.clear()
            if finished:
                await resp.write_eof()
                return resp


class _SseWriter:
    """vLLM's streaming chunk formats for completions and chat completions."""

    def __init__(self, parsed: ParsedRequest, rid: str) -> None:
        self.parsed = parsed
        self.chat = parsed.chat
        self.id = f"chatcmpl-{rid[5:]}" if parsed.chat else rid
        self.object = "chat.completion.chunk" if parsed.chat else "text_completion"
        self.created = int(time.time())

    def data(self, obj: dict[str, Any]) -> bytes:
        return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"

    def _chunk(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        body = {
            "id": self.id,
            "object": self.object,
            "created": self.created,
            "model": self.parsed.model,
            "choices": choices,
            **extra,
        }
        return self.data(body)

    def role_chunk(self) -> bytes:
        return self._chunk(
            [
                {
                    "index": 0,
                    "delta": {"role": "assistant", "content": ""},
                    "logprobs": None,
                    "finish_reason": None,
                }
            ]
        )

    def token_chunk(self, text: str, finish: str | None) -> bytes:
        if self.chat:
            choice: dict[str, Any] = {
                "index": 0,
                "delta": {"content": text},
                "logprobs": None,
                "finish_reason": finish,
            }
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
        if finish is not None:
            choice["stop_reason"] = None
        return self._chunk([choice])

    def usage_chunk(self, produced: int) -> bytes:
        pt = self.parsed.prompt_tokens
        usage = {"prompt_tokens": pt, "total_tokens": pt + produced, "completion_tokens": produced}
        return self._chunk([], usage=usage)


def _words(start: int, n: int) -> str:
    return "".join(" " + WORDS[(start + i) % len(WORDS)] for i in range(n))


def _error(status: int, typ: str, message: str) -> web.Response:
    return web.json_response(error_body(message, typ, status), status=status)
