"""Leftovers against the real control plane. `make demo`'s namespace handling: a namespace an
earlier run left Terminating (its DeepSeekDeployment kept the finalizer of an operator that was
gone) is released and made again, so a second `make demo` has somewhere to run; `make
demo-down` deletes the demo's namespace and waits for it. And the e2e session's own sweep: what
an interrupted test run left in the tests' cluster is released before the suites run, and
nothing is left Terminating."""

from __future__ import annotations

import secrets

import pytest
from deepseek_operator.api.base import GROUP, PLURAL, VERSION
from kubernetes import client

from testbed.cluster import LocalCluster, RegionInfo
from testbed.cluster.config import PROFILES
from testbed.demo import ensure_namespace
from testbed.demo import release_namespace as demo_release_namespace

from .conftest import release_e2e_namespaces
from .operator_process import install_crds, release_namespace
from .waiting import wait_for

FINALIZER = "serving.deepseek.dev/finalizer"


def left_behind(custom: client.CustomObjectsApi, ns: str, name: str = "left") -> None:
    """A DeepSeekDeployment as an operator stopped before its deletion leaves it: with the
    operator's finalizer, which nobody is left to remove."""
    custom.create_namespaced_custom_object(
        GROUP,
        VERSION,
        ns,
        PLURAL,
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "DeepSeekDeployment",
            "metadata": {"name": name, "finalizers": [FINALIZER]},
            "spec": {"model": {"checkpoint": "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"}},
        },
    )


def test_the_suites_run_on_a_cluster_apart_from_the_demos(local_cluster: LocalCluster) -> None:
    """Whatever `make demo` left in its clusters cannot reach a test: the session's cluster
    keeps its state, ports and addresses apart from the demo's."""
    demo_root = PROFILES["demo"].state_root
    assert all(
        c.state_dir.parent.name == PROFILES["test"].state_root for c in local_cluster.configs
    )
    assert all(c.state_dir.parent.name != demo_root for c in local_cluster.configs)
    demo_ports = {b for b, _ in PROFILES["demo"].regions.values()}
    demo_octets = {o for _, o in PROFILES["demo"].regions.values()}
    assert not {c.port_base for c in local_cluster.configs} & demo_ports
    assert not {c.octet for c in local_cluster.configs} & demo_octets


def test_an_interrupted_runs_namespaces_are_released_by_the_session_sweep(
    region: RegionInfo, api_clients: dict[str, client.ApiClient]
) -> None:
    api = api_clients[region.name]
    install_crds(api)
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    stuck, kept = f"e2e-left-{secrets.token_hex(3)}", f"e2e-left-{secrets.token_hex(3)}"
    for ns in (stuck, kept):
        core.create_namespace({"metadata": {"name": ns, "labels": {"e2e": "true"}}})
        left_behind(custom, ns)
    # one already Terminating (deleted after its operator stopped), one still Active
    core.delete_namespace(stuck)
    wait_for(
        lambda: core.read_namespace(stuck).status.phase == "Terminating",
        timeout=30,
        what=f"{stuck} Terminating",
    )

    released = release_e2e_namespaces(api, timeout=120, only={stuck, kept})

    assert {stuck, kept} <= set(released)
    left = {n.metadata.name for n in core.list_namespace(label_selector="e2e=true").items}
    assert not left & {stuck, kept}


def test_demo_down_deletes_the_demos_namespace_even_with_no_operator(
    local_cluster: LocalCluster, region: RegionInfo, api_clients: dict[str, client.ApiClient]
) -> None:
    api = api_clients[region.name]
    install_crds(api)
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    ns = f"e2e-demo-{secrets.token_hex(3)}"
    core.create_namespace({"metadata": {"name": ns, "labels": {"e2e": "true"}}})
    try:
        left_behind(custom, ns)

        demo_release_namespace(region, local_cluster.bindir, ns, operator_running=False)

        names = {n.metadata.name for n in core.list_namespace().items}
        assert ns not in names  # gone, not Terminating
        # and a namespace that is not there is no error
        demo_release_namespace(region, local_cluster.bindir, ns, operator_running=False)
    finally:
        release_namespace(api, ns)


pytestmark = pytest.mark.e2e


def test_a_namespace_left_terminating_is_released_and_made_again(
    local_cluster: LocalCluster, region: RegionInfo, api_clients: dict[str, client.ApiClient]
) -> None:
    api = api_clients[region.name]
    install_crds(api)
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    ns = f"e2e-demo-{secrets.token_hex(3)}"
    core.create_namespace({"metadata": {"name": ns, "labels": {"e2e": "true"}}})
    try:
        left_behind(custom, ns)
        core.delete_namespace(ns)
        wait_for(
            lambda: core.read_namespace(ns).status.phase == "Terminating",
            timeout=30,
            what=f"{ns} Terminating",
        )

        ensure_namespace(region, local_cluster.bindir, ns)

        fresh = core.read_namespace(ns)
        assert fresh.status.phase == "Active"
        assert fresh.metadata.deletion_timestamp is None
        assert custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)["items"] == []
        # and an existing, Active namespace is left as it is
        ensure_namespace(region, local_cluster.bindir, ns)
        assert core.read_namespace(ns).metadata.uid == fresh.metadata.uid
    finally:
        release_namespace(api, ns)
