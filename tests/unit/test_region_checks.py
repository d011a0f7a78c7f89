"""A member region's health check when the Secret that reaches it cannot be read because this
cluster's own API server does not answer: no verdict on the region (it keeps its state), where
counting it as a failed check would fail over a region that serves."""

from __future__ import annotations

import pytest
from deepseek_operator import handlers
from deepseek_operator.adapters.events import EventRecorder
from deepseek_operator.adapters.kube import Kube
from deepseek_operator.adapters.prometheus import SignalPoller
from deepseek_operator.adapters.regions import HomeApiUnavailable, RegionReader
from deepseek_operator.api import DeepSeekDeployment
from deepseek_operator.api.status import DeepSeekDeploymentStatus, RegionStatus
from deepseek_operator.reconcile import Observed, Outcome
from deepseek_operator.rollout import Colour, ColourObservation, Event
from kubernetes import client


def _dsd() -> DeepSeekDeployment:
    return DeepSeekDeployment.from_k8s(
        {
            "metadata": {"name": "r1", "namespace": "ns", "uid": "u", "generation": 1},
            "spec": {
                "model": {"checkpoint": "m"},
                "regions": [
                    {"name": "us-east", "role": "primary", "weight": 100},
                    {
                        "name": "eu-west",
                        "role": "standby",
                        "weight": 0,
                        "kubeconfigSecretRef": {"name": "eu-west-kubeconfig", "key": "kubeconfig"},
                    },
                ],
                "failover": {"enabled": True, "failureThreshold": 2},
            },
        }
    )


def test_the_secret_unread_for_want_of_this_api_server_is_said_as_such(
    gone_api: client.ApiClient,
) -> None:
    reader = RegionReader(client.CoreV1Api(gone_api), SignalPoller())
    region = _dsd().spec.regions[1]
    with pytest.raises(HomeApiUnavailable) as e:
        reader.get_copy("ns", "r1", region)
    assert "cannot read Secret eu-west-kubeconfig" in str(e.value), e.value
    assert "this cluster's API server did not answer" in str(e.value), e.value


def test_a_region_whose_secret_cannot_be_read_keeps_its_state(
    gone_api: client.ApiClient,
) -> None:
    """eu-west had failed one check of two; the next cannot be made (this API server is gone):
    it stays Healthy and in rotation, its failures and last check as they were."""
    dsd = _dsd()
    last = [
        RegionStatus(name="us-east", state="Healthy", weight=100, last_check_time=90.0),
        RegionStatus(
            name="eu-west",
            state="Healthy",
            weight=0,
            consecutive_failures=1,
            last_check_time=90.0,
            message="region API unreachable: timed out",
        ),
    ]
    status = DeepSeekDeploymentStatus(regions=last)
    rt = handlers.Runtime(
        kube=Kube(gone_api),
        events=EventRecorder(gone_api),
        poller=SignalPoller(),
        prometheus_url=None,
        regions=RegionReader(client.CoreV1Api(gone_api), SignalPoller()),
    )
    observed = Observed(deployments={Colour.BLUE: ColourObservation(exists=True, ready=1)})
    outcome = Outcome(plan=None, targets=(), status=status, events=())
    said: list[Event] = []
    got = handlers._check_regions(rt, dsd, observed, None, None, outcome, 100.0, {}, said)
    assert said == []  # no transition, nothing to say
    by_name = {r.name: r for r in got.regions}
    assert by_name["eu-west"] == last[1]
    assert (by_name["us-east"].state, by_name["us-east"].last_check_time) == ("Healthy", 100.0)
    assert [(r.name, r.weight) for r in got.regions] == [("us-east", 100), ("eu-west", 0)]
