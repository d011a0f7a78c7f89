"""Session fixtures of the e2e suites: the local GPU cluster (both regions), kubernetes clients,
a namespace per test, a Prometheus client per region.

The suites run on a cluster pair of their own, the `test` profile (.local/test-cluster, its own
ports and addresses), never on the demo's (.local/cluster): what `make demo` leaves behind is
not in the tests' cluster. A test cluster that is not running when the session starts is
started from empty state (an interrupted earlier run's objects are gone); a running one
(`make cluster CLUSTER_PROFILE=test`, or DEEPSEEK_KEEP_CLUSTER=1 last time) is reused, saving
its start-up time, after the namespaces an earlier run left behind are released. At the end
every e2e namespace is released and awaited: none is left Terminating. The cluster is then left
running if it was running before, or if DEEPSEEK_KEEP_CLUSTER=1; otherwise it is taken down.
Binaries come from `make tools` (scripts/build-tools.sh); without them the fixture fails and
says so.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes import client, config

from testbed.cluster import LocalCluster, RegionInfo, region_configs
from testbed.cluster.config import PROFILE_ENV

from .faults import DOC as RELIABILITY_DOC
from .faults import ROWS as FAULT_ROWS
from .faults import complete as fault_matrix_complete
from .faults import read_rows as read_fault_rows
from .faults import report as fault_report
from .operator_process import release_namespace
from .waiting import wait_for

PRIMARY = "us-east"
# Every process the suites start that finds a local region by name (the fleet's CLI, routers,
# load generators) finds the tests' cluster.
os.environ[PROFILE_ENV] = "test"
E2E_LABEL = "e2e=true"  # every namespace a test makes carries it


def e2e_cluster() -> LocalCluster:
    """The e2e suites' cluster pair (profile `test`), apart from the demo's."""
    return LocalCluster(region_configs(profile="test"))


def release_e2e_namespaces(
    api: client.ApiClient, timeout: float = 180.0, only: set[str] | None = None
) -> list[str]:
    """Release every namespace a test made (or those of them named in `only`): finalizers of
    DeepSeekDeployments dropped, namespace deleted; then wait until they are gone. Returns their
    names. Raises if one is still there after `timeout`, naming it: a namespace left
    Terminating is a bug to see, not to pile up."""
    core = client.CoreV1Api(api)

    def ours() -> list[str]:
        items = core.list_namespace(label_selector=E2E_LABEL).items
        return [n.metadata.name for n in items if only is None or n.metadata.name in only]

    names = ours()
    for name in names:
        release_namespace(api, name)
    wait_for(lambda: not ours(), timeout=timeout, what=f"e2e namespaces gone ({', '.join(names)})")
    return names


@pytest.fixture(scope="session")
def local_cluster() -> Iterator[LocalCluster]:
    cluster = e2e_cluster()
    was_running = cluster.healthy()
    if not was_running:
        cluster.down(purge=True)  # a fresh start: nothing of an interrupted run is left
    cluster.up()
    apis = _admin_clients(cluster)
    for api in apis:
        release_e2e_namespaces(api)
    yield cluster
    for api in apis:
        release_e2e_namespaces(api)
    if not (was_running or os.environ.get("DEEPSEEK_KEEP_CLUSTER") == "1"):
        cluster.down()


def _admin_clients(cluster: LocalCluster) -> list[client.ApiClient]:
    return [
        config.new_client_from_config(config_file=str(r.kubeconfig), context=r.context)
        for r in cluster.info().values()
    ]


@pytest.fixture(scope="session")
def regions(local_cluster: LocalCluster) -> dict[str, RegionInfo]:
    """Every region of the running cluster: name -> RegionInfo (kubeconfig, URLs, paths)."""
    return local_cluster.info()


@pytest.fixture(scope="session")
def region(regions: dict[str, RegionInfo]) -> RegionInfo:
    """The primary region (us-east)."""
    return regions[PRIMARY]


@pytest.fixture(scope="session")
def api_clients(regions: dict[str, RegionInfo]) -> dict[str, client.ApiClient]:
    """A kubernetes ApiClient per region (admin credentials from the region's kubeconfig)."""
    return {
        name: config.new_client_from_config(config_file=str(r.kubeconfig), context=r.context)
        for name, r in regions.items()
    }


@pytest.fixture(scope="session")
def core(api_clients: dict[str, client.ApiClient]) -> client.CoreV1Api:
    return client.CoreV1Api(api_clients[PRIMARY])


@pytest.fixture(scope="session")
def apps(api_clients: dict[str, client.ApiClient]) -> client.AppsV1Api:
    return client.AppsV1Api(api_clients[PRIMARY])


def _ns_name(test_name: str) -> str:
    base = re.sub(r"[^a-z0-9-]+", "-", test_name.lower()).strip("-")[:40].strip("-")
    return f"e2e-{base}-{secrets.token_hex(3)}"


@pytest.fixture
def namespace(
    request: pytest.FixtureRequest, api_clients: dict[str, client.ApiClient]
) -> Iterator[str]:
    """A fresh namespace, of the same name in every region, deleted after the test."""
    name = _ns_name(request.node.name)
    for api in api_clients.values():
        client.CoreV1Api(api).create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={"e2e": "true"}))
        )
    # Pods created directly are rejected until the namespace's default ServiceAccount exists.
    for api in api_clients.values():
        wait_for(
            lambda api=api: client.CoreV1Api(api).list_namespaced_service_account(name).items,
            timeout=120,
            what=f"the default ServiceAccount of {name}",
        )
    yield name
    for api in api_clients.values():
        release_namespace(api, name)


@dataclass(frozen=True)
class Prometheus:
    """A small client of a region's Prometheus HTTP API."""

    url: str

    def get(self, path: str, **params: str) -> Any:
        q = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}{path}{q}", timeout=10) as resp:
            body = json.loads(resp.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        """Instant query: the result vector (each item has `metric` and `value`)."""
        data = self.get("/api/v1/query", query=promql)
        assert data["resultType"] == "vector", data
        return list(data["result"])

    def query_range(self, promql: str, start: float, end: float, step: float) -> list[Any]:
        """Range query: the result matrix (each item has `metric` and `values`)."""
        data = self.get(
            "/api/v1/query_range", query=promql, start=f"{start}", end=f"{end}", step=f"{step}"
        )
        return list(data["result"])

    def active_targets(self, job: str | None = None) -> list[dict[str, Any]]:
        targets = self.get("/api/v1/targets", state="active")["activeTargets"]
        return [t for t in targets if job is None or t["labels"].get("job") == job]

    def reload(self) -> None:
        req = urllib.request.Request(f"{self.url}/-/reload", method="POST")
        urllib.request.urlopen(req, timeout=30).close()


@pytest.fixture(scope="session")
def prometheus(regions: dict[str, RegionInfo]) -> dict[str, Prometheus]:
    """A Prometheus client per region."""
    return {name: Prometheus(r.prometheus_url) for name, r in regions.items()}


# ---------------------------------------------------------------------------------------------
# The fault matrix's report (faults.py): rows recorded by the tests, written at the end


def pytest_sessionstart(session: pytest.Session) -> None:
    FAULT_ROWS.unlink(missing_ok=True)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    rows = read_fault_rows()
    if not rows:
        return
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    # the docs only from a run of every fault that passed; a partial run's report goes to logs
    target = RELIABILITY_DOC if fault_matrix_complete(rows) and exitstatus == 0 else None
    target = target or FAULT_ROWS.parent / "reliability.md"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(fault_report(rows, when))
