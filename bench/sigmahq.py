"""How tetrapipe's Sigma import does on SigmaHQ's Linux rules: converted, refused by reason, correct on labels.

Usage::

    git clone --depth 1 https://github.com/SigmaHQ/sigma /tmp/sigma
    python bench/sigmahq.py /tmp/sigma [--json]

The Linux rules are every rule file under ``rules/``, ``rules-emerging-threats/``
and ``rules-threat-hunting/`` whose log source says ``product: linux``. Each is
converted as ``tetrapipe rules import-sigma`` would; the report counts what was
converted and groups what was refused by reason. Then the labelled check: for
each rule in ``bench/sigmahq_labels.yaml`` (our own events, written from what
the rule says), the converted rule runs in the real engine (normalizer
included) on a firing and a quiet Tetragon event; a rule that is missing, not
converted, silent on its firing event or firing on its quiet one is a failure.
The SigmaHQ rules (DRL licence) stay out of this repository; tests do not need them.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path

import yaml

from tetrapipe.ruleset.sigma.check import Labelled, run_labelled
from tetrapipe.ruleset.sigma.convert import import_sigma
from tetrapipe.ruleset.sigma.events import tetragon_event

LABELS = Path(__file__).with_name("sigmahq_labels.yaml")
TREES = ("rules", "rules-emerging-threats", "rules-threat-hunting")
_LINUX = re.compile(r"^\s+product:\s*linux\s*$", re.M)


def linux_rules(checkout: Path) -> list[Path]:
    return sorted(
        p
        for tree in TREES
        for p in (checkout / tree).rglob("*.yml")
        if _LINUX.search(p.read_text(encoding="utf-8", errors="replace"))
    )


def reason_group(reason: str) -> str:
    """A refusal reason without the rule-specific values, so equal reasons count together."""
    if reason.startswith("logsource service"):
        return "log source is a service log: " + reason.split("'")[1]
    if reason.startswith("logsource names no category"):
        return "log source has no category (keyword rules over log files)"
    if reason.startswith("logsource category"):
        return "log source category Tetragon does not observe: " + reason.split("'")[1]
    if reason.startswith("field "):
        return reason.split(":")[0] if ":" in reason else reason.split(" has ")[0] + " has no counterpart"
    return re.sub(r"'[^']*'", "'...'", reason)


def measure(checkout: Path) -> dict:
    files = linux_rules(checkout)
    report = import_sigma(files)
    by_id = {c.document.get("sigma", {}).get("id"): c for c in report.converted}
    labels = yaml.safe_load(LABELS.read_text(encoding="utf-8"))
    items, missing = [], []
    for n, label in enumerate(labels):
        conv = by_id.get(label["id"])
        if conv is None:
            missing.append(label["id"])
            continue
        category = conv.document["sigma"]["category"]
        items.append(
            Labelled(
                conv,
                [tetragon_event(category, label["firing"], 2 * n + 1)],
                [tetragon_event(category, label["quiet"], 2 * n + 2)],
            )
        )
    results = run_labelled(items).results
    failed = [f"{r.rule_id}::{r.name}: {r.reason}" for r in results if r.status != "passed"]
    return {
        "linux_rules": len(files),
        "converted": len(report.converted),
        "with_generated_firing_test": sum(1 for c in report.converted if c.document["tests"]),
        "refused": len(report.refused),
        "other_platforms": sum(report.other_platforms.values()),
        "refused_by_reason": dict(Counter(reason_group(r) for _, r in report.refused).most_common()),
        "labelled_rules": len(labels),
        "labelled_checks_passed": sum(r.status == "passed" for r in results),
        "labelled_checks": len(results),
        "labelled_not_converted": missing,
        "labelled_failures": failed,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkout", type=Path, help="a SigmaHQ/sigma checkout")
    ap.add_argument("--json", action="store_true", help="print the measurement as JSON")
    args = ap.parse_args()
    result = measure(args.checkout)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"SigmaHQ Linux rules: {result['linux_rules']}")
        print(
            f"converted: {result['converted']} ({result['with_generated_firing_test']} with a generated firing "
            f"test), refused: {result['refused']}"
        )
        for reason, n in result["refused_by_reason"].items():
            print(f"  {n:4d}  {reason}")
        print(
            f"labelled check: {result['labelled_checks_passed']} of {result['labelled_checks']} passed "
            f"({result['labelled_rules']} rules, a firing and a quiet event each)"
        )
        for line in result["labelled_not_converted"]:
            print(f"  not converted: {line}")
        for line in result["labelled_failures"]:
            print(f"  FAILED {line}")
    ok = not result["labelled_failures"] and not result["labelled_not_converted"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
