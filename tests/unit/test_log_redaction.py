"""Kopf's messages that would print a DeepSeekDeployment (its spec may hold a token in
engine.env[].value) reach neither the operator's log nor Kopf's Events whole.

The messages are Kopf 1.45's own, formatted as it formats them (kopf/_core/reactor/
processing.py, kopf/_cogs/clients/patching.py, kopf/_core/actions/application.py); the e2e test
tests/e2e/test_chart.py::test_engine_pod_settings_and_secrets_under_the_chart_rbac runs the
real thing with --verbose.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from deepseek_operator.operator_main import REDACTED, _configure_logging, redact_kopf_message

TOKEN = "hf_kopfLoGsThEbOdYaTdEbUg"
ENV = [{"name": "HF_TOKEN", "value": TOKEN}]
BODY = {
    "apiVersion": "serving.deepseek.dev/v1alpha1",
    "kind": "DeepSeekDeployment",
    "metadata": {"name": "r1", "namespace": "llm"},
    "spec": {"model": {"checkpoint": "m"}, "engine": {"env": ENV}},
}
LAST_HANDLED = json.dumps({"spec": BODY["spec"]})

CASES = [
    # (case, Kopf's message, what is kept)
    ("creation body", f"Creation is in progress: {BODY!r}", "Creation is in progress: "),
    ("resume body", f"Resuming is in progress: {BODY!r}", "Resuming is in progress: "),
    (
        "update diff",
        f"Update diff: {(('change', ('spec', 'engine', 'env'), [], ENV),)!r}",
        "Update diff: ",
    ),
    (
        "its annotation patch",
        "Merge-patching the resource with: "
        f"{ {'metadata': {'annotations': {'x/last-handled-configuration': LAST_HANDLED}}}!r}",
        "Merge-patching the resource with: ",
    ),
    (
        "a warning quoting a patch (also posted as an Event)",
        "Merge-patching finished with inconsistencies: "
        f"(('change', ('metadata', 'annotations'), None, {LAST_HANDLED!r}),)",
        "Merge-patching finished with inconsistencies: ",
    ),
    ("any other message with a spec", f"Something odd: {BODY!r}", "Something odd: "),
]

KEPT = [
    "Handler '_changed' succeeded.",
    "Creation is processed: 1 succeeded; 0 failed.",
    "Merge-patching the status with: {'status': {'phase': 'Ready'}}",
    "Timer '_loop' is invoked.",
]


@pytest.mark.parametrize(("message", "kept"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_kopf_messages_with_the_object_lose_the_object(message: str, kept: str) -> None:
    assert TOKEN in message  # the case is meaningful
    assert redact_kopf_message(message) == f"{kept}{REDACTED}"


@pytest.mark.parametrize("message", KEPT)
def test_other_kopf_messages_are_kept(message: str) -> None:
    assert redact_kopf_message(message) == message


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def kopf_objects() -> Iterator[tuple[logging.Logger, _Collect, _Collect]]:
    """Kopf's per-object logger as the operator configures it, with a handler of its own (where
    Kopf's Event poster sits) and one on the root logger (the operator's log)."""
    _configure_logging(verbose=True)
    logger = logging.getLogger("kopf.objects")
    events, root = _Collect(), _Collect()
    logger.addHandler(events)
    logging.getLogger().addHandler(root)
    level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        yield logger, events, root
    finally:
        logger.removeHandler(events)
        logging.getLogger().removeHandler(root)
        logger.setLevel(level)


def test_the_operator_log_and_kopf_events_get_the_redacted_message(
    kopf_objects: tuple[logging.Logger, _Collect, _Collect],
) -> None:
    logger, events, root = kopf_objects
    logger.debug(f"Creation is in progress: {BODY!r}")
    logger.warning(f"Merge-patching finished with inconsistencies: (({LAST_HANDLED!r}),)")
    logger.info("Handler '_changed' succeeded.")
    for lines in (events.lines, root.lines):
        assert lines[-1] == "Handler '_changed' succeeded."
        assert all(TOKEN not in line for line in lines), lines
        assert f"Creation is in progress: {REDACTED}" in lines
    _configure_logging(verbose=True)  # configuring twice adds no second filter
    assert len(logger.filters) == 1
