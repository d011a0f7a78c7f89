"""When a DeepSeekDeployment's loop reconciles next: the autoscaling part of the schedule."""

from __future__ import annotations

from deepseek_operator.api import DeepSeekDeployment
from deepseek_operator.api.status import DeepSeekDeploymentStatus, ScalingState
from deepseek_operator.handlers import _autoscale_due, _next_autoscale_in


def _dsd(last: float | None, **scaling: object) -> DeepSeekDeployment:
    d = DeepSeekDeployment.from_k8s(
        {
            "metadata": {"name": "r1", "namespace": "ns", "uid": "u", "generation": 1},
            "spec": {"model": {"checkpoint": "m"}, "scaling": {"intervalSeconds": 15, **scaling}},
        }
    )
    status = DeepSeekDeploymentStatus(scaling=ScalingState(last_decision_time=last))
    return d.model_copy(update={"status": status})


def test_the_first_decision_is_due_at_once_then_one_interval_later() -> None:
    assert _next_autoscale_in(_dsd(None), 100.0) == 0.0
    assert _autoscale_due(_dsd(None), 100.0)
    assert _next_autoscale_in(_dsd(100.0), 104.0) == 11.0
    assert not _autoscale_due(_dsd(100.0), 104.0)
    assert _next_autoscale_in(_dsd(80.0), 100.0) == 0.0  # overdue: now


def test_after_a_decision_the_next_is_counted_from_the_status_being_written() -> None:
    """The observed status still holds the previous decision's time; counted from it, the next
    decision would be due at once and every decision would cost a second reconcile."""
    observed = _dsd(85.0)
    written = DeepSeekDeploymentStatus(scaling=ScalingState(last_decision_time=100.0))
    assert _next_autoscale_in(observed, 100.0) == 0.0
    assert _next_autoscale_in(observed, 100.0, written) == 15.0


def test_no_schedule_without_autoscaling() -> None:
    assert _next_autoscale_in(_dsd(None, enabled=False), 100.0) is None
    assert not _autoscale_due(_dsd(None, enabled=False), 100.0)
