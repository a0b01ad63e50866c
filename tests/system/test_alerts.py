"""Every error an operator must act on reaches an alert, or says in writing why it need not.

The code's log lines carry their kind in ``extra={"event": ...}`` (sync/core/logs.py puts it in
``jsonPayload.event``). The scan below reads sync/ and main.py with ``ast`` and finds every call that
logs at ERROR or CRITICAL, with the event it carries; a call whose event it cannot tell fails the test,
so a new ERROR line cannot hide behind a variable. Each (event, level) must then be counted by a
log-based metric that an alert policy in terraform/monitoring.tf watches, or have a reason in
:data:`NO_ALERT` below.

Adding an ERROR event is one line: an entry in monitoring.tf's ``local.error_event_alerts`` (an alert
of its own) or in :data:`NO_ALERT` (why none).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hcl2
import pytest
from hcl2.utils import SerializationOptions

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "terraform" / "monitoring.tf"

#: Events logged at ERROR or CRITICAL that open no alert of their own, and why none is needed.
NO_ALERT: dict[str, str] = {
    "row_skipped": "one line per source row the sync cannot store; the run counts them in run_finished.rows_skipped"
    " and the rejected-row rate alert fires on their share of the rows read, where one alert per row would page"
    " once for every bad row in the source",
}

_LEVEL_METHODS = {"error": "ERROR", "exception": "ERROR", "critical": "CRITICAL"}
_LEVELS = {"ERROR", "CRITICAL", "WARNING", "INFO", "DEBUG"}


@dataclass(frozen=True)
class Logged:
    """One logging call at ERROR or CRITICAL: the event it carries (None: not statically known)."""

    event: str | None
    level: str
    where: str


def _levels(call: ast.Call) -> set[str]:
    """The levels a logging call can log at: its method's, or every level named in ``log(level, ...)``."""
    func = call.func
    assert isinstance(func, ast.Attribute)
    if func.attr in _LEVEL_METHODS:
        return {_LEVEL_METHODS[func.attr]}
    named = {n.attr for n in ast.walk(call.args[0]) if isinstance(n, ast.Attribute) and n.attr in _LEVELS} if call.args else set()
    # A level computed some other way could be anything: count it as an error so it must be explained.
    return named or {"ERROR"}


def _event_of(extra: ast.expr | None, scope: ast.AST) -> str | None:
    """The constant ``event`` in ``extra=``: a dict literal, or a name bound to one in the same function."""
    if isinstance(extra, ast.Name):
        bound = [
            n.value
            for n in ast.walk(scope)
            if isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == extra.id for t in n.targets)
        ]
        extra = bound[0] if len(bound) == 1 else None
    if not isinstance(extra, ast.Dict):
        return None
    for key, value in zip(extra.keys, extra.values, strict=True):
        if isinstance(key, ast.Constant) and key.value == "event":
            return value.value if isinstance(value, ast.Constant) and isinstance(value.value, str) else None
    return None


def scan(source: str, name: str) -> list[Logged]:
    """Every call in ``source`` that logs at ERROR or CRITICAL."""
    tree = ast.parse(source)
    found: list[Logged] = []
    scopes = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr not in {*_LEVEL_METHODS, "log"} or not _is_logger(node.func.value):
            continue
        levels = _levels(node) & {"ERROR", "CRITICAL"}
        if not levels:
            continue
        scope = next((s for s in scopes if s.lineno <= node.lineno <= (s.end_lineno or s.lineno)), tree)
        extra = next((k.value for k in node.keywords if k.arg == "extra"), None)
        event = _event_of(extra, scope)
        found.extend(Logged(event, level, f"{name}:{node.lineno}") for level in sorted(levels))
    return found


def _is_logger(receiver: ast.expr) -> bool:
    # The package logs through module-level `log = logging.getLogger(__name__)`; `logging.error`
    # (the root logger) counts as well.
    return isinstance(receiver, ast.Name) and receiver.id in {"log", "logger", "logging", "LOG"}


def logged_errors() -> list[Logged]:
    paths = [*sorted((ROOT / "sync").rglob("*.py")), ROOT / "main.py"]
    return [entry for path in paths for entry in scan(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))]


# --- what monitoring.tf watches -------------------------------------------------------------------


def _monitoring() -> dict[str, Any]:
    options = SerializationOptions(with_comments=False, explicit_blocks=False, strip_string_quotes=True, preserve_heredocs=False)
    with MONITORING.open(encoding="utf-8") as fh:
        doc = hcl2.load(fh, serialization_options=options)
    resources: dict[str, dict[str, Any]] = {}
    for block in doc.get("resource", []):
        for rtype, by_name in block.items():
            resources.setdefault(rtype, {}).update(by_name)
    local_values = {k: v for block in doc.get("locals", []) for k, v in block.items()}
    return {"resources": resources, "locals": local_values}


def _resolved(text: str, local_values: dict[str, Any], depth: int = 0) -> str:
    """A filter with its ``${local.x}`` parts written out (string locals only)."""
    if depth > 5:
        return text
    return re.sub(
        r"\$\{local\.(\w+)\}",
        lambda m: _resolved(str(local_values.get(m.group(1), m.group(0))), local_values, depth + 1),
        text,
    ).replace('\\"', '"')


def alerted() -> set[tuple[str, str]]:
    """(event, level) pairs some alert policy watches through a log-based metric; ``*`` is any event."""
    tf = _monitoring()
    metrics = {name: _resolved(body["filter"], tf["locals"]) for name, body in tf["resources"]["google_logging_metric"].items()}
    watched: set[tuple[str, str]] = set()
    for name, policy in tf["resources"]["google_monitoring_alert_policy"].items():
        text = re.sub(r'\\+"', '"', str(policy["conditions"]))  # however deeply the quotes were escaped
        for metric in set(re.findall(r"google_logging_metric\.(\w+)\.name", text)):
            selector = metrics[metric]
            events = re.findall(r'jsonPayload\.event="(\w+)"', selector)
            levels = re.findall(r"severity=(\w+)", selector) or ["ERROR", "CRITICAL"]
            if policy.get("for_each") == "${local.error_event_alerts}":
                # One policy per entry, each selecting its own event by the metric's label.
                assert 'metric.label.event="${each.key}"' in text, name
                events = list(tf["locals"]["error_event_alerts"])
            watched |= {(event, level) for event in events or ["*"] for level in levels}
    return watched


# --- the tests ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        # the common shape: a dict literal in extra=
        ('log.error("x", extra={"event": "a", "run_id": 1})', [("a", "ERROR")]),
        # main.py's shape: the fields built first, then passed by name
        ('def f():\n    fields = {"event": "b", **x}\n    log.critical("%s", e, extra=fields)', [("b", "CRITICAL")]),
        # a level chosen at run time: every level it names counts
        ('log.log(logging.ERROR if bad else logging.INFO, "x", extra={"event": "c"})', [("c", "ERROR")]),
        ('log.log(logging.WARNING if bad else logging.INFO, "x", extra={"event": "d"})', []),  # never an error
        ('log.exception("x", extra={"event": "e"})', [("e", "ERROR")]),
        # an event the scan cannot read is reported as unknown (None), never skipped
        ('log.error("x", extra={"event": kind})', [(None, "ERROR")]),
        ('log.error("x")', [(None, "ERROR")]),
        ('log.log(level, "x", extra={"event": "f"})', [("f", "ERROR")]),
        ('log.info("x", extra={"event": "g"})', []),
    ],
)
def test_the_scan_finds_every_error_line_and_its_event(source, expected):
    assert [(e.event, e.level) for e in scan(source, "t.py")] == expected


def test_every_error_line_names_its_event():
    unknown = [e.where for e in logged_errors() if e.event is None]
    assert unknown == [], f"log these at ERROR/CRITICAL with extra={{'event': '...'}} (a constant): {unknown}"


def test_every_error_event_has_an_alert_or_a_reason_why_not():
    watched = alerted()
    missing = sorted(
        {
            f"{e.event} at {e.level} ({e.where})"
            for e in logged_errors()
            if e.event is not None and e.event not in NO_ALERT and not {(e.event, e.level), ("*", e.level)} & watched
        }
    )
    assert missing == [], (
        "add each to local.error_event_alerts in terraform/monitoring.tf, or to NO_ALERT here with a reason: "
        + "; ".join(missing)
    )


def test_no_alert_or_reason_outlives_its_event():
    logged = {(e.event, e.level) for e in logged_errors()}
    events = {event for event, _ in logged}
    stale_reasons = sorted(set(NO_ALERT) - events)
    assert stale_reasons == [], f"NO_ALERT explains events the code no longer logs at ERROR: {stale_reasons}"
    alerts = _monitoring()["locals"]["error_event_alerts"]
    stale_alerts = sorted(e for e in alerts if (e, "ERROR") not in logged)
    assert stale_alerts == [], f"error_event_alerts watches events nothing logs at ERROR: {stale_alerts}"
    assert all(reason.strip() for reason in NO_ALERT.values())


def test_the_scan_sees_the_lines_the_alerts_were_built_for():
    # Guards the scan itself: these are logged today at the levels the alerts expect.
    logged = {(e.event, e.level) for e in logged_errors()}
    assert {("run_finished", "ERROR"), ("page_failed", "CRITICAL"), ("page_failed", "ERROR"), ("row_skipped", "ERROR")} <= logged
