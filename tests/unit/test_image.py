"""The operator image definition (root Dockerfile) against what uses it.

No container engine runs here, so the image is not built in tests; these checks tie the
Dockerfile to the code and the chart instead: the entrypoint is a console script of the
package, the default command and every argument list the chart renders are accepted by the
real CLI parser, the user is the numeric non-root one the chart's securityContext expects, and
every Python module of the source tree is inside a package the build picks up.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path

import pytest
from deepseek_operator.cli import build_parser

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
