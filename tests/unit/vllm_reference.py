"""Facts from a real vLLM 0.32 server (tests/fixtures/vllm-0.32), for tests that check the
flags the operator and the entrypoint produce."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "vllm-0.32"


def _ref(name: str) -> Path:
    return FIXTURES / name


@cache
def serve_flags() -> dict[str, set[str] | None]:
    """Every long flag of `vllm serve --help=all`, with its {choices} when it has any."""
    flags: dict[str, set[str] | None] = {}
    for line in _ref("vllm-0.32-serve-help.txt").read_text().splitlines():
        for m in re.finditer(r"(--[a-z0-9][a-z0-9-]*)(?: \{([^}]*)\})?", line):
            flag, choices = m.group(1), m.group(2)
            if choices:
                flags[flag] = set(choices.split(","))
            else:
                flags.setdefault(flag, None)
    return flags


@cache
def quantization_methods() -> set[str]:
    return set(ast.literal_eval(_ref("vllm-0.32-quantization-methods.txt").read_text().strip()))


def check_args(args: list[str]) -> list[str]:
    """Problems with a vLLM argument list: unknown flags or values outside a flag's choices."""
    known = serve_flags()
    problems = []
    for i, a in enumerate(args):
        if not a.startswith("--"):
            continue
        if a not in known:
            problems.append(f"unknown flag {a}")
            continue
        value = args[i + 1] if i + 1 < len(args) and not args[i + 1].startswith("--") else None
        choices = known[a]
        if a == "--quantization" and value not in quantization_methods():
            problems.append(f"{a} {value}: not a vLLM 0.32 quantization method")
        elif choices is not None and value is not None and value not in choices:
            problems.append(f"{a} {value}: not one of {sorted(choices)}")
    return problems
