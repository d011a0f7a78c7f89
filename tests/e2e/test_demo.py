"""`make demo`'s namespace handling against the real control plane: a namespace an earlier run
left Terminating (its DeepSeekDeployment kept the finalizer of an operator that was gone) is
released and made again, so a second `make demo` has somewhere to run."""

from __future__ import annotations

import secrets

import pytest
from deepseek_operator.api.base import GROUP, PLURAL, VERSION
from deepseek_operator.localcluster import LocalCluster, RegionInfo
from deepseek_operator.localcluster.demo import ensure_namespace
from kubernetes import client

from .operator_process import install_crds, release_namespace
from .waiting import wait_for

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
        # what an operator leaves behind when it is stopped before its resource is deleted
        custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            ns,
            PLURAL,
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "DeepSeekDeployment",
                "metadata": {"name": "left", "finalizers": ["serving.deepseek.dev/finalizer"]},
                "spec": {"model": {"checkpoint": "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"}},
            },
        )
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
