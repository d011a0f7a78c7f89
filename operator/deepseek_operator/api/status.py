"""The `status` of a DeepSeekDeployment: what the operator observed and decided."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field

from .base import ApiModel


class Phase(StrEnum):
    """One word for `kubectl get dsd`. Conditions carry the detail."""

    PENDING = "Pending"  # accepted, nothing Ready yet
    PROGRESSING = "Progressing"  # replicas coming up, or a rollout under way
    READY = "Ready"  # all desired replicas of the active colour Ready
    DEGRADED = "Degraded"  # serving, but with fewer Ready replicas than desired
    FAILED = "Failed"  # cannot serve: invalid spec or nothing Ready for too long


class Colour(StrEnum):
    BLUE = "blue"
    GREEN = "green"

    def other(self) -> Colour:
        return Colour.GREEN if self is Colour.BLUE else Colour.BLUE


class ConditionType(StrEnum):
    READY = "Ready"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"
    SCALING_LIMITED = "ScalingLimited"
    INVALID_SPEC = "InvalidSpec"
    ROLLOUT = "RolloutHealthy"
    METRICS_AVAILABLE = "MetricsAvailable"
    REGIONS_HEALTHY = "RegionsHealthy"
    REGIONS_SYNCED = "RegionsSynced"
    DNS_PUBLISHED = "DNSPublished"
    ROUTER_READY = "RouterReady"  # only while spec.router.enabled
    BATCH_ROUTER_READY = "BatchRouterReady"  # only while spec.router.batch is in use
    SLO_MET = "SLOMet"  # once the autoscaler measured enough requests (status.scaling.sloBudget)


class Condition(ApiModel):
    """A Kubernetes-style condition."""

    type: str = Field(max_length=316, description="Condition type, e.g. Ready.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(max_length=1024, description="CamelCase reason for the last transition.")
    message: str = Field("", max_length=32768, description="What happened, for a person.")
    last_transition_time: str = Field(
        description="When status last changed (RFC 3339).",
        json_schema_extra={"format": "date-time"},
    )
    observed_generation: int | None = Field(
        None, ge=0, description="metadata.generation this condition was computed from."
    )


class ScalingDecisionStatus(ApiModel):
    """The last autoscaling decision, with what it saw."""

    time: str = Field(
        description="When it was made (RFC 3339).", json_schema_extra={"format": "date-time"}
    )
    from_replicas: int = Field(ge=0, description="Replicas before.")
    to_replicas: int = Field(ge=0, description="Replicas decided.")
    reason: str = Field(max_length=64, description="CamelCase reason, e.g. QueueDepthAboveTarget.")
    message: str = Field("", max_length=4096, description="The reasoning, in words.")
    signals: dict[str, float] = Field(
        default_factory=dict, description="Signal values the decision saw, by name."
    )


class Recommendation(ApiModel):
    """One replica count the autoscaler recommended, kept for its stabilization windows."""

    time: float = Field(description="Unix time of the recommendation.")
    replicas: int = Field(ge=0, description="Recommended replicas.")
    request_rate: float | None = Field(
        None, ge=0, description="Requests per second the serving colour finished at that time."
    )
    backlog: float | None = Field(
        None, ge=0, description="Requests running or waiting in the serving colour at that time."
    )
    breach: float | None = Field(
        None,
        ge=0,
        description="The worse of TTFT and TPOT p99 over its SLO at that time (above 1: breached).",
    )


class StepBin(ApiModel):
    """The mean TPOT observed at one band of running requests per replica."""

    band: int = Field(description="floor(log(n) / log(1.25)): the band's index.")
    running: float = Field(ge=0, description="Weighted mean running requests per replica (n).")
    step: float = Field(ge=0, description="Weighted mean of the mean TPOT in seconds (m).")
    weight: float = Field(ge=0, description="Sum of the decayed sample weights.")


class CapacityModel(ApiModel):
    """What one Ready replica of the serving colour and quantization mode can take, learned
    from steady periods (the Ready replicas unchanged for a whole rate window, no queue; while
    more pods start, only minutes within the TPOT aim): exponentially
    weighted moments of the request rate per replica (x) and of TPOT p99 (y), enough for the
    least-squares line y = a + b x, and the mean point of the samples near the aim with their
    p99 read off the buckets' tails (histogram_quantile reads it high inside a wide bucket)."""

    colour: str | None = Field(
        None,
        max_length=16,
        description="Serving colour the samples came from; a new one starts over.",
    )
    mode: str | None = Field(
        None,
        max_length=63,
        description="Quantization mode the samples came from; a new one starts over.",
    )
    samples: int = Field(0, ge=0, description="Steady observations taken.")
    weight: float = Field(0.0, ge=0, description="Sum of the decayed sample weights.")
    mean_rate: float = Field(0.0, ge=0, description="Weighted mean requests/s per Ready replica.")
    mean_tpot: float = Field(0.0, ge=0, description="Weighted mean TPOT p99 in seconds.")
    mean_rate_sq: float = Field(0.0, ge=0, description="Weighted mean of the squared rate.")
    mean_rate_tpot: float = Field(
        0.0, ge=0, description="Weighted mean of rate x TPOT p99 (for the line's slope)."
    )
    mean_kv: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Weighted mean KV-cache usage (0-1). By Little's law a replica's cache holds "
        "in-flight tokens in proportion to rate x TPOT: the cache bounds the capacity too.",
    )
    # The model on running requests per replica n (used where it can say; the moments above
    # stand in before): the mean TPOT m at each load (a decode step's time grows with its
    # batch), request time = tokens x m (Little's law: n = rate x request time), KV usage =
    # k x n, and the ratio of TPOT p99 to the mean.
    curve_samples: int = Field(
        0, ge=0, description="Steady observations with running requests and the mean TPOT."
    )
    step_curve: list[StepBin] = Field(
        default_factory=list,
        max_length=64,
        description="The mean TPOT by running requests per replica, one point per load band "
        "(each 25% above the last), lightest first.",
    )
    tokens_per_request: float = Field(
        0.0,
        ge=0,
        description="Weighted mean of n / (rate x m): a request's time in units of the mean TPOT "
        "(its output tokens, plus its wait and prefill).",
    )
    kv_per_running: float = Field(
        0.0, ge=0, description="Weighted mean KV-cache usage per running request (0: not known)."
    )
    tail_ratio: float = Field(
        0.0,
        ge=0,
        description="Weighted mean of TPOT p99 / mean TPOT over samples whose p99 reads in the "
        "histogram bucket of the aim (0: none yet): the reading the aim is checked against.",
    )
    tail_weight: float = Field(0.0, ge=0, description="Sum of those samples' decayed weights.")
    near_weight: float = Field(
        0.0,
        ge=0,
        description="Weight of the samples whose TPOT p99, read off the buckets with an "
        "exponential tail, lay near the aim (its bucket or the one above); decayed as the line's "
        "moments. From twice one sample's, they set the capacity's level, the line its slope.",
    )
    near_rate: float = Field(0.0, ge=0, description="Their weighted mean requests/s per replica.")
    near_tpot: float = Field(
        0.0, ge=0, description="Their weighted mean TPOT p99 so read, in seconds."
    )
    tail_bound: float = Field(
        0.0,
        ge=0,
        description="Lowest TPOT p99 / mean TPOT over samples whose p99 reads at the top of a "
        "lower bucket (an upper bound of the ratio; 0: none yet).",
    )


class RatePoint(ApiModel):
    """The arriving request rate at one time, with the rate the planner sized for then."""

    time: float = Field(description="Unix time.")
    rate: float = Field(ge=0, description="Requests per second arriving.")
    base: float = Field(ge=0, description="Requests per second forecast for the horizon then.")
    seasonal: bool = Field(
        False, description="The forecast then came from the period's profile (not a trend)."
    )
    trend: float | None = Field(
        None,
        ge=0,
        description="Requests per second a sustained trend forecast for the horizon then, used "
        "or not; null: no trend.",
    )


class SeasonProfile(ApiModel):
    """The arriving request rate over one period, in equal bins (a moving average per bin)."""

    period: float = Field(gt=0, description="Seconds of one period.")
    since: float = Field(
        description="Unix time the profile began (a whole period after it, the profile is used)."
    )
    bins: list[float | None] = Field(
        default_factory=list, max_length=48, description="Requests/s per bin; null: unseen."
    )


class LoadMemory(ApiModel):
    """What the planner remembers of the load (bounded): recent rate points over one horizon,
    and how far the rate rose above its forecast within each completed horizon window."""

    points: list[RatePoint] = Field(
        default_factory=list, max_length=40, description="Recent rate points, oldest first."
    )
    rises: list[float] = Field(
        default_factory=list,
        max_length=128,
        description="Completed windows: the highest rate within one horizon over the rate "
        "forecast at its start, minus 1 (0.5: it rose 50% above the forecast).",
    )
    tops: list[float] = Field(
        default_factory=list,
        max_length=128,
        description="Completed windows: the highest rate within each (requests/s).",
    )
    seasonal_rises: list[float] = Field(
        default_factory=list,
        max_length=128,
        description="The rises of the completed windows whose forecast came from the period's "
        "profile: once there are enough, the headroom is sized from these alone.",
    )
    trend_error: float = Field(
        0.0,
        ge=0,
        description="Completed windows that began with a trend: how far the trend's forecast "
        "was from the rate one horizon later (requests/s, a decayed sum).",
    )
    flat_error: float = Field(
        0.0,
        ge=0,
        description="The same windows: how far the rate at their start was from the rate one "
        "horizon later. The trend is used while its error is no larger than this.",
    )
    season: SeasonProfile | None = Field(
        None, description="The rate's profile over its period (spec.scaling.seasonalPeriodSeconds)."
    )


class SloBudget(ApiModel):
    """Requests served and missed (over an SLO or failed), exponentially weighted over
    slo.windowSeconds: the measured attainment the autoscaler's headroom answers to."""

    requests: float = Field(0.0, ge=0, description="Weighted requests finished.")
    missed: float = Field(
        0.0, ge=0, description="Weighted requests over the TTFT or TPOT SLO, or failed."
    )
    time: float = Field(description="Unix time of the last update.")
    attainment: float | None = Field(
        None, ge=0, le=1, description="1 - missed / requests; absent until requests were seen."
    )


class ScalingState(ApiModel):
    """What the autoscaler remembers between decisions (so a restart does not reset its
    stabilization windows)."""

    recommendations: list[Recommendation] = Field(
        default_factory=list, max_length=256, description="Recent recommendations, oldest first."
    )
    panic_until: float | None = Field(
        None, description="Unix time until which panic mode (no scale-down) lasts."
    )
    last_decision_time: float | None = Field(None, description="Unix time of the last decision.")
    scale_up_since: float | None = Field(
        None,
        description="Unix time of the scale-up whose start is being observed (its pods are not "
        "all Ready yet).",
    )
    scale_up_target: int | None = Field(
        None,
        ge=0,
        description="Replicas that observed scale-up asked for: its start time is learned once "
        "this many are Ready.",
    )
    start_seconds: float | None = Field(
        None,
        ge=0,
        description="Learned seconds from a scale-up to its pods being Ready (model loading "
        "included): how far ahead a rising load is projected.",
    )
    ready_since: float | None = Field(
        None, description="Unix time since when readyCount replicas have been Ready."
    )
    ready_count: int | None = Field(None, ge=0, description="Ready replicas at the last decision.")
    capacity: CapacityModel | None = Field(
        None, description="Learned capacity of one replica of the serving colour."
    )
    load: LoadMemory | None = Field(
        None, description="The planner's memory of the load: its volatility over the horizon."
    )
    slo_budget: SloBudget | None = Field(
        None, description="SLO attainment measured over slo.windowSeconds (the error budget)."
    )
    schedule_opens: float | None = Field(
        None,
        description="Unix time the scaling.schedules window whose replicas were ordered opens: "
        "until then they stay ordered, even where a shorter start time was learned meanwhile.",
    )
    admission_limit: int | None = Field(
        None,
        ge=1,
        description="The learned limit of the engine pods' admission gate "
        "(spec.engine.admission without maxRunning) last published in the ConfigMap "
        "<name>-admission: generation requests per pod in vLLM at once.",
    )
    admission_limit_source: str | None = Field(
        None, max_length=512, description="Where admissionLimit comes from, in words."
    )


class AnalysisResult(ApiModel):
    """One check of a rollout analysis."""

    metric: str = Field(max_length=64, description="What was measured, e.g. errorRate.")
    value: float | None = Field(None, description="Measured value; absent when no data.")
    limit: float = Field(description="Highest value that passes.")
    passed: bool | None = Field(None, description="Whether it passed; absent when no data.")


class RolloutStatus(ApiModel):
    """State of the current or last blue-green rollout."""

    phase: str = Field(
        max_length=32,
        description="Idle, Progressing, Analyzing, Paused, ScalingDown, Completed, RollingBack, "
        "RolledBack or Aborted.",
    )
    active_colour: Colour = Field(description="Colour serving traffic.")
    preview_colour: Colour | None = Field(None, description="Colour being rolled out.")
    preview_template_hash: str | None = Field(
        None, max_length=64, description="Pod template hash of the preview."
    )
    failed_template_hash: str | None = Field(
        None,
        max_length=64,
        description="Template hash of the last version that was rolled back or aborted; it is "
        "not retried until the spec changes again.",
    )
    requests_baseline: float | None = Field(
        None, description="Preview's request counter when analysis began."
    )
    errors_baseline: float | None = Field(
        None, description="Preview's 5xx counter when analysis began."
    )
    phase_since: str | None = Field(None, description="When the current phase began (RFC 3339).")
    started_at: str | None = Field(None, description="When the rollout began (RFC 3339).")
    message: str = Field(
        "", max_length=4096, description="What the rollout is doing or why it ended."
    )
    analysis: list[AnalysisResult] = Field(
        default_factory=list, max_length=16, description="Last analysis checks."
    )
    stepped: bool = Field(
        False,
        description="The transition moves GPUs from the old colour to the new in steps (free "
        "GPUs cannot hold a whole preview, or maxSurge asks for it).",
    )
    stable_replicas: int | None = Field(
        None, ge=0, description="Stepped: replicas the old colour keeps in this step."
    )
    stable_base: int | None = Field(
        None,
        ge=0,
        description="Stepped: the old colour's Ready pods when stepping began (what moves).",
    )
    first_pods_passed: bool = Field(
        False, description="Stepped: the first new pods passed analysis; the rest follow."
    )
    short_of_gpus_since: str | None = Field(
        None, description="Since when preview pods wait for GPUs (RFC 3339)."
    )
    step_since: str | None = Field(
        None, description="Stepped: when the new colour's Ready count last changed (RFC 3339)."
    )
    preview_ready: int = Field(0, ge=0, description="Stepped: new pods Ready at the last step.")
    rollback_unmixed: bool = Field(
        False,
        description="Rolling back in steps after an error-rate failure: the stable Service "
        "selects the old colour only.",
    )
    end_phase: str | None = Field(
        None,
        max_length=32,
        description="Rolling back in steps: the phase it ends in (RolledBack, Aborted, Idle).",
    )


class RegionStatus(ApiModel):
    """What the operator sees of one member region."""

    name: str = Field(max_length=63, description="Region name.")
    state: Literal["Pending", "Healthy", "Unhealthy", "Recovering"] = Field(
        "Pending",
        description="Pending: no passed health check yet, out of rotation. Healthy: in "
        "rotation. Unhealthy: failed failover.failureThreshold checks "
        "in a row, out of rotation. Recovering: passes its checks again and returns to "
        "rotation after failover.failbackDelaySeconds of uninterrupted health.",
    )
    since: float | None = Field(None, description="Unix time the region entered its state.")
    healthy: bool | None = Field(
        None, description="Last health verdict; absent before the first check."
    )
    weight: int = Field(0, ge=0, le=100, description="Traffic weight now applied.")
    ready_replicas: int = Field(0, ge=0, description="Ready engine pods in the region.")
    consecutive_failures: int = Field(0, ge=0, description="Failed health checks in a row.")
    last_check_time: float | None = Field(None, description="Unix time of the last check.")
    message: str = Field("", max_length=1024, description="Last health check result.")
    carrying_replicas: int | None = Field(
        None,
        ge=0,
        description="Desired replicas of the region at its last passed check in rotation: what "
        "it ran to carry its traffic, and what the regions taking over its share are raised to "
        "when it fails.",
    )
    min_replicas_floor: int | None = Field(
        None,
        ge=0,
        description="scaling.minReplicas written to this region's copy while it takes over the "
        "traffic of a failed region; absent when no floor is raised.",
    )
    copy_state: (
        Literal["Created", "Updated", "InSync", "Conflict", "Invalid", "Unreachable"] | None
    ) = Field(
        None,
        description="This resource's copy in the region (regions with kubeconfigSecretRef): "
        "Created, Updated or InSync; Conflict: an object of that name the operator did not "
        "create is there and left alone; Invalid: the region's overrides make the copy invalid; "
        "Unreachable: the region's API or kubeconfig Secret could not be used. Absent for the "
        "operator's own cluster.",
    )
    synced_generation: int | None = Field(
        None, description="metadata.generation of this resource the copy last matched."
    )
    sync_lag_seconds: float | None = Field(
        None,
        description="Seconds from the operator seeing the last spec change to the copy "
        "holding it (the configuration's recovery point between regions).",
    )
    copy_message: str = Field("", max_length=1024, description="Last copy sync result.")


class QuantizationSwitch(ApiModel):
    """One switch of the served quantization rung, decided by the automatic policy."""

    at: str = Field(
        description="When it was decided (RFC 3339).", json_schema_extra={"format": "date-time"}
    )
    from_: str = Field(alias="from", max_length=63, description="Rung before.")
    to: str = Field(max_length=63, description="Rung after.")
    reason: str = Field(max_length=64, description="CamelCase reason, e.g. StepDown.")


class LoadSample(ApiModel):
    """The arriving request rate at one time."""

    time: float = Field(description="Unix time.")
    rate: float = Field(ge=0, description="Requests per second arriving.")


class QuantizationStatus(ApiModel):
    """What the quantization policy decided and remembers (so a restart keeps its timers)."""

    automatic: bool = Field(False, description="Whether quantization.policy.automatic was on.")
    served: str | None = Field(None, max_length=63, description="Rung the active colour serves.")
    target: str | None = Field(
        None,
        max_length=63,
        description="Rung the policy wants served; differs from served while a switch rolls out.",
    )
    reason: str = Field("", max_length=64, description="CamelCase reason of the last decision.")
    message: str = Field(
        "", max_length=4096, description="The last decision's reasoning, with its numbers."
    )
    since: str | None = Field(
        None,
        description="When the target last changed (RFC 3339).",
        json_schema_extra={"format": "date-time"},
    )
    pressure_since: str | None = Field(
        None,
        description="Since when the SLO has been breached or the arriving load above what the "
        "Ready replicas carry (RFC 3339); absent while it is not.",
        json_schema_extra={"format": "date-time"},
    )
    relief_since: str | None = Field(
        None,
        description="Since when the higher-precision rung would have carried the load with "
        "headroom (RFC 3339); absent while it would not.",
        json_schema_extra={"format": "date-time"},
    )
    switches: list[QuantizationSwitch] = Field(
        default_factory=list, max_length=20, description="The last switches, oldest first."
    )
    capacity: dict[str, float] = Field(
        default_factory=dict,
        max_length=8,
        description="Learned requests/s one replica of each rung serves within the SLO, by "
        "rung name.",
    )
    replicas: int | None = Field(
        None,
        ge=0,
        description="Replicas the last switch below the first rung counted on (all that fit on "
        "the GPUs, at most maxReplicas); the autoscaler keeps at least these while the policy "
        "serves below the first rung.",
    )
    load: list[LoadSample] = Field(
        default_factory=list,
        max_length=64,
        description="The arriving request rate, a point a minute for the last hour: the trend "
        "a switch is planned on (a switch under a GPU cap runs for tens of minutes).",
    )


class OwnRecordStatus(ApiModel):
    """A member region's own DNS record (spec.regionRecord), as its own operator keeps it."""

    published: bool = Field(
        False, description="The record is in this cluster's DNSEndpoint (not withdrawn)."
    )
    weight: int = Field(0, ge=0, le=100, description="The weight published.")
    reason: str = Field("", max_length=63, description="Published, WithdrawnByHome, SelfFenced.")
    consecutive_failures: int = Field(
        0, ge=0, description="Failed checks of this region's own engines in a row."
    )
    last_check_time: float | None = Field(None, description="Unix time of the last own check.")
    message: str = Field("", max_length=1024, description="What was published and why.")


class DeepSeekDeploymentStatus(ApiModel):
    """Observed state, written by the operator only."""

    observed_generation: int | None = Field(
        None, ge=0, description="Last metadata.generation acted on."
    )
    phase: Phase | None = Field(
        None, description="Pending, Progressing, Ready, Degraded or Failed."
    )
    conditions: list[Condition] = Field(
        default_factory=list, max_length=32, description="Conditions."
    )
    replicas: int = Field(
        0, ge=0, description="Pods of the active colour (the scale subresource's status)."
    )
    ready_replicas: int = Field(0, ge=0, description="Ready pods of the active colour.")
    desired_replicas: int = Field(0, ge=0, description="Replicas the operator is converging to.")
    selector: str = Field(
        "", max_length=1024, description="Label selector of the active colour's pods."
    )
    active_colour: Colour | None = Field(None, description="Colour the stable Service selects.")
    preview_colour: Colour | None = Field(None, description="Colour under rollout, if any.")
    template_hash: str | None = Field(
        None, max_length=64, description="Pod template hash of the active colour."
    )
    mode: str | None = Field(
        None, max_length=63, description="Quantization mode served by the active colour."
    )
    scaling: ScalingState | None = Field(None, description="Autoscaler memory.")
    last_scaling_decision: ScalingDecisionStatus | None = Field(
        None, description="Last autoscaling decision."
    )
    rollout: RolloutStatus | None = Field(None, description="Current or last rollout.")
    quantization: QuantizationStatus | None = Field(
        None, description="The quantization policy's decision and memory."
    )
    regions: list[RegionStatus] = Field(
        default_factory=list, max_length=8, description="Member regions."
    )
    own_record: OwnRecordStatus | None = Field(
        None,
        description="With spec.regionRecord (a member region's copy under failover.dns."
        "selfFencing): this region's own DNS record and its own engine checks.",
    )
