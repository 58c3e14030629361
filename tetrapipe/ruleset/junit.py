"""JUnit XML for rule tests, the format every CI system (GitLab, Jenkins, GitHub
actions' test reporters) renders: one testsuite, one testcase per rule test,
``<failure>`` with the expected-vs-actual diff, ``<error>`` for rules that did
not load or tests that could not run.
"""

from __future__ import annotations

import re
import socket
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

from tetrapipe.ruleset.testing import TestReport
from tetrapipe.textsafe import visible

#: what XML 1.0 cannot hold at all, even escaped (U+FFFE, U+FFFF; the controls and surrogates visible() takes)
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _text(value: str) -> str:
    """A test's name, reason or diff as the report holds it: the events' control characters shown as escapes.

    The diff quotes alert messages, which quote event data (a pod name with
    an escape sequence): raw, they made the file invalid XML (expat refuses a
    control character) and reached a terminal that printed it.
    """
    shown = visible(value, newlines=True)
    return _NOT_XML.sub(lambda m: f"\\u{ord(m.group()):04x}", shown)


def to_junit(report: TestReport, suite_name: str = "tetrapipe-rules") -> str:
    failures = report.count("failed")
    errors = report.count("error")
    suites = ET.Element(
        "testsuites",
        name=suite_name,
        tests=str(len(report.results)),
        failures=str(failures),
        errors=str(errors),
        time=f"{report.seconds:.3f}",
    )
    suite = ET.SubElement(
        suites,
        "testsuite",
        name=suite_name,
        tests=str(len(report.results)),
        failures=str(failures),
        errors=str(errors),
        skipped="0",
        time=f"{report.seconds:.3f}",
        timestamp=datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="seconds"),
        hostname=socket.gethostname(),
    )
    for r in report.results:
        attrs = {"classname": _text(f"rules.{r.rule_id}"), "name": _text(r.name), "time": f"{r.seconds:.3f}"}
        if r.path is not None:
            attrs["file"] = _text(str(r.path))
        if r.line:
            attrs["line"] = str(r.line)
        case = ET.SubElement(suite, "testcase", attrs)
        if r.status == "failed":
            el = ET.SubElement(case, "failure", message=_text(r.reason), type="AlertMismatch")
            el.text = _text("\n".join(r.diff))
        elif r.status == "error":
            el = ET.SubElement(case, "error", message=_text(r.reason), type="RuleError")
            where = f"{r.path}:{r.line}" if r.line else str(r.path)
            el.text = _text(f"{where}: {r.reason}")
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
