"""The operator image definition (root Dockerfile) against what uses it.

No container engine runs here, so the image is not built in tests; these checks tie the
Dockerfile to the code and the chart instead: the entrypoint is a console script of the
package, the default command and every argument list the chart renders are accepted by the
real CLI parser, the user is the numeric non-root one the chart's securityContext expects, and
every Python module of the source tree is inside a package the build picks up. The wheel the
image installs is built for real and holds no test bed code.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import shlex
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from deepseek_operator.api import Colour, DeepSeekDeployment
from deepseek_operator.api.spec import DEFAULT_IMAGE, DEFAULT_ROUTER_IMAGE, ROUTER_VERSION
from deepseek_operator.cli import build_parser
from deepseek_operator.desired import ROUTER_UID, Plan, pod_template, router_pod_template
from deepseek_serving.entrypoint import parse_cli

from .test_chart import VALUES_SETS, by_kind, render

REPO = Path(__file__).resolve().parents[2]


def final_stage() -> dict[str, str]:
    """Instruction -> argument of the Dockerfile's last stage (last one wins)."""
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    stages = re.split(r"^FROM\s", text, flags=re.M)
    out: dict[str, str] = {}
    for line in stages[-1].splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            out[word.upper()] = rest.strip()
    return out


def exec_form(arg: str) -> list[str]:
    value = json.loads(arg)
    assert isinstance(value, list), f"not exec form: {arg}"
    return [str(v) for v in value]


def test_entrypoint_is_the_packaged_console_script() -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert exec_form(final_stage()["ENTRYPOINT"]) == ["deepseek-operator"]
    assert scripts["deepseek-operator"] == "deepseek_operator.cli:main"


def test_default_command_is_accepted_by_the_cli() -> None:
    args = build_parser().parse_args(exec_form(final_stage()["CMD"]))
    assert args.command == "run" and args.all_namespaces


def test_user_is_numeric_non_root_and_matches_the_chart(tmp_path: Path) -> None:
    user = final_stage()["USER"]
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0, user
    pod = by_kind(render({}, tmp_path), "Deployment")[0]["spec"]["template"]["spec"]
    sc = pod["securityContext"]
    assert (sc["runAsNonRoot"], sc["runAsUser"], sc["runAsGroup"]) == (True, int(uid), int(gid))


@pytest.mark.parametrize("name", VALUES_SETS)
def test_every_rendered_operator_command_is_accepted_by_the_cli(name: str, tmp_path: Path) -> None:
    for dep in by_kind(render(VALUES_SETS[name], tmp_path), "Deployment"):
        for c in dep["spec"]["template"]["spec"]["containers"]:
            if c["name"] != "operator":
                continue
            argv = [*c.get("command", []), *c["args"]]
            try:
                build_parser().parse_args(argv)
            except SystemExit:
                pytest.fail(f"{name}: the CLI rejects {shlex.join(argv)}")


def test_every_module_is_in_a_package_the_build_finds() -> None:
    """setuptools' packages.find only picks up directories with __init__.py: a module outside
    them would be missing from the image."""
    found = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    roots = found["packages"]["find"]["where"]
    missing = []
    for root in roots:
        for py in (REPO / root).rglob("*.py"):
            if "__pycache__" in py.parts:
                continue
            for parent in py.relative_to(REPO / root).parents[:-1]:
                if not (REPO / root / parent / "__init__.py").exists():
                    missing.append(str(py.relative_to(REPO)))
                    break
    assert not missing, missing
    # Non-Python files inside the packages are covered by package-data.
    patterns = found["package-data"]["*"]
    for root in roots:
        for f in (REPO / root).rglob("*"):
            in_package = (f.parent / "__init__.py").exists()
            if in_package and f.is_file() and f.suffix not in (".py", ".pyc"):
                assert any(f.match(p) for p in patterns), f"{f} is not in package-data"


TESTBED_DEPENDENCIES = {"aiohttp", "cryptography"}


def test_the_operator_wheel_and_image_carry_no_test_bed(tmp_path: Path) -> None:
    """The image installs the wheel built from its build context: neither holds test bed code,
    and installing it pulls none of the test bed's dependencies (they are the `testbed` extra)."""
    # The build context the Dockerfile sees: an allowlist without the test bed.
    allowed = [
        line[1:].strip("/")
        for line in (REPO / "Dockerfile.dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    assert "testbed" not in allowed and all((REPO / a).exists() for a in allowed), allowed
    roots = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "testbed" not in roots["packages"]["find"]["where"]
    # The wheel itself (what `pip install .` and the image install).
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(REPO)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("deepseek_operator-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        metadata = next(z.read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"deepseek_operator", "deepseek_serving"}, tops
    assert not [n for n in names if re.search(r"testbed|localcluster|/sim/", n)]
    required = {
        re.split(r"[<>=!; \[]", line.removeprefix("Requires-Dist: "))[0].lower()
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist: ") and "extra ==" not in line
    }
    assert "kopf" in required
    assert not required & TESTBED_DEPENDENCIES, required


ENGINE_DOCKERFILE = REPO / "serving" / "engine" / "Dockerfile"


def test_the_default_engine_image_is_the_engine_dockerfile_at_its_vllm_tag() -> None:
    """spec.engine.image defaults to serving/engine/Dockerfile's image, tagged with the vLLM
    release it is built on; the engine container the operator renders (no command, vLLM's flags
    as args) reaches vLLM through that image's entrypoint unchanged."""
    text = ENGINE_DOCKERFILE.read_text()
    base = re.search(r"^ARG VLLM_IMAGE=(\S+)$", text, re.M)
    assert base is not None
    repo, tag = DEFAULT_IMAGE.rsplit(":", 1)
    assert repo == "ghcr.io/deepseek-operator/deepseek-engine"
    assert base[1] == f"vllm/vllm-openai:{tag}"
    assert DEFAULT_IMAGE in text  # the header says how to build and tag it
    entrypoint = re.search(r"^ENTRYPOINT (.+)$", text, re.M)
    assert entrypoint is not None
    assert exec_form(entrypoint[1]) == ["python3", "-m", "deepseek_serving.entrypoint"]

    dsd = DeepSeekDeployment.from_k8s(
        {"metadata": {"name": "r1"}, "spec": {"model": {"checkpoint": "m"}}}
    )
    (c,) = pod_template(dsd.name, Colour.BLUE, dsd.spec)["spec"]["containers"]
    assert c["image"] == DEFAULT_IMAGE and "command" not in c
    cli = parse_cli(c["args"])
    assert cli.passthrough == c["args"] and not (cli.check_only or cli.print_args)


def test_the_image_can_label_gpu_series_with_pods() -> None:
    """The chart's NVML exporter runs from this image; without grpcio it cannot ask the
    kubelet's pod-resources API which pod holds a GPU, and the operator's GPU signals (joined
    on namespace/pod) stay empty. The image installs the `exporter` extra, which has it."""
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert any(re.match(r"grpcio\b", d) for d in extras["exporter"]), extras["exporter"]
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    assert '"deepseek-operator[exporter]"' in final_stage()["RUN"]
    assert re.search(r'pip wheel .*"\.\[exporter\]"', text)
    source = (REPO / "serving" / "deepseek_serving" / "nvml_exporter.py").read_text()
    assert "import grpc" in source  # what the extra is for


ROUTER_DOCKERFILE = REPO / "serving" / "router" / "Dockerfile"


def test_the_default_router_image_is_the_router_dockerfile_at_its_vllm_router_version() -> None:
    """spec.router.image defaults to serving/router/Dockerfile's image, tagged with the
    vllm-router release it installs; the dev extra pins the same release (whose parser the unit
    tests give the rendered flags); the router container's command is the image's entrypoint
    and its user the image's."""
    text = ROUTER_DOCKERFILE.read_text()
    pin = re.search(r"^ARG VLLM_ROUTER_VERSION=(\S+)$", text, re.M)
    assert pin is not None
    repo, tag = DEFAULT_ROUTER_IMAGE.rsplit(":", 1)
    assert repo == "ghcr.io/deepseek-operator/deepseek-router"
    assert pin[1] == tag == ROUTER_VERSION
    assert DEFAULT_ROUTER_IMAGE in text  # the header says how to build and tag it
    dev = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"][
        "dev"
    ]
    assert f"vllm-router=={tag}" in dev
    assert importlib.metadata.version("vllm-router") == tag  # the parser the tests use

    dsd = DeepSeekDeployment.from_k8s(
        {
            "metadata": {"name": "r1", "namespace": "llm"},
            "spec": {"model": {"checkpoint": "m"}, "router": {"enabled": True}},
        }
    )
    (c,) = router_pod_template(dsd, Plan(Colour.BLUE))["spec"]["containers"]
    entrypoint = re.search(r"^ENTRYPOINT (.+)$", text, re.M)
    assert entrypoint is not None
    assert c["image"] == DEFAULT_ROUTER_IMAGE and c["command"] == exec_form(entrypoint[1])
    user = re.search(r"^USER (\d+):(\d+)$", text, re.M)
    assert user is not None and int(user[1]) == ROUTER_UID != 0
    sc = c["securityContext"]
    assert (sc["runAsUser"], sc["runAsGroup"]) == (int(user[1]), int(user[2]))
