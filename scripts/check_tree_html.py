#!/usr/bin/env python3
"""Check the ``tetrapipe tree --html`` page in a real headless Chromium, and take its screenshot.

    python scripts/check_tree_html.py                       # the scenario (or the built-in demo)
    python scripts/check_tree_html.py --log samples/scenario/tenant-jobs.log --pod crawler
    python scripts/check_tree_html.py --lake ./tetrapipe-lake --pod crawler --out /tmp/tree.png

It ingests the log (with the ancestry transform) into a temporary lake, or
uses ``--lake``, writes the tree's HTML, lets Chromium run the page
(``--dump-dom``) with the first late shell selected, checks that every
process is in the DOM, that the late shell is marked and that the side panel
shows it, then saves a 1400x900 screenshot (default: docs/tree-screenshot.png).

Needs Chromium: ``apt-get install -y chromium`` (Debian). The page must not
need the network: Chromium runs with networking features off, and the page's
own Content-Security-Policy forbids any fetch.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import quote

REPO = Path(__file__).resolve().parents[1]

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
         "--hide-scrollbars", "--force-device-scale-factor=1"]


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _url(page: Path, select: str | None) -> str:
    url = page.resolve().as_uri()
    return url + (f"#select={quote(select, safe='')}" if select else "")


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    exe = find_chromium()
    if exe is None:
        raise RuntimeError("Chromium not found: apt-get install -y chromium")
    return subprocess.run([exe, *FLAGS, *args], capture_output=True, text=True, timeout=timeout, check=False)


def chromium_dump_dom(page: Path, select: str | None = None, profile: Path | None = None,
                      timeout: float = 90) -> str:
    """The DOM after the page's scripts ran (Chromium's ``--dump-dom``)."""
    with tempfile.TemporaryDirectory() as tmp:
        prof = profile or Path(tmp) / "profile"
        res = _run([f"--user-data-dir={prof}", "--dump-dom", _url(page, select)], timeout)
    if res.returncode != 0 or "<html" not in res.stdout:
        raise RuntimeError(f"chromium --dump-dom failed ({res.returncode}): {res.stderr[-2000:]}")
    return res.stdout


def chromium_screenshot(page: Path, png: Path, select: str | None = None, profile: Path | None = None,
                        size: tuple[int, int] = (1400, 900), timeout: float = 90) -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        prof = profile or Path(tmp) / "profile"
        png.parent.mkdir(parents=True, exist_ok=True)
        res = _run([f"--user-data-dir={prof}", f"--screenshot={png.resolve()}", f"--window-size={size[0]},{size[1]}",
                    _url(page, select)], timeout)
    if res.returncode != 0 or not png.exists():
        raise RuntimeError(f"chromium --screenshot failed ({res.returncode}): {res.stderr[-2000:]}")
    return png


def check_dom(dom: str, expected_ids: list[str], late_ids: list[str], selected: str | None) -> list[str]:
    """Problems found in the rendered DOM (empty: all good)."""
    problems = []
    if 'data-ready="1"' not in dom:
        problems.append("the page's script did not run to its end")
    shown = set(re.findall(r'<li class="proc[^"]*" data-exec-id="([^"]+)"', dom))
    missing = [i for i in expected_ids if i not in shown]
    if missing:
        problems.append(f"{len(missing)} process(es) not in the DOM, e.g. {missing[:3]}")
    marked = set(re.findall(r'<li class="proc late[^"]*" data-exec-id="([^"]+)"', dom))
    if set(late_ids) - marked:
        problems.append(f"late shell(s) not marked: {sorted(set(late_ids) - marked)}")
    if selected:
        panel = re.search(r'<aside id="panel"[^>]*>(.*?)</aside>', dom, re.S)
        if panel is None or selected not in panel.group(1):
            problems.append("the side panel does not show the selected process")
    return problems


def _demo_log(path: Path) -> None:
    """The built-in story (the test suite's world): crawler pod, a kubectl-exec bash 6m40s in."""
    sys.path.insert(0, str(REPO / "tests"))
    from test_ancestry_world import World, host_and_pod, scenario_lines

    w = World()
    p = host_and_pod(w)
    path.write_text("\n".join(scenario_lines(w, p)) + "\n")


def _transforms(ancestry: type) -> list:
    """The pipeline's transforms (rules too, so alerts show), with the ancestry step in any case."""
    try:
        from tetrapipe.transforms import pipeline

        transforms = list(pipeline.default_transforms(None)[0])
    except Exception:  # noqa: BLE001 - no rules engine in this build: ancestry alone
        transforms = []
    if not any(isinstance(t, ancestry) for t in transforms):
        transforms.insert(0, ancestry())
    return transforms


def main() -> int:
    sys.path.insert(0, str(REPO))
    from tetrapipe.tree import Selection, build_tree, render_html

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--log", type=Path, help="Tetragon export log to ingest (default: the scenario sample, "
                                             "else the built-in demo story).")
    ap.add_argument("--lake", type=Path, help="Use this lake instead of ingesting a log.")
    ap.add_argument("--pod", default="crawler", help="Pod (name or unique prefix).")
    ap.add_argument("--namespace", default=None)
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "tree-screenshot.png", help="Screenshot path.")
    ap.add_argument("--html", type=Path, default=None, help="Also keep the HTML here.")
    args = ap.parse_args()
    if find_chromium() is None:
        print("Chromium not found: apt-get install -y chromium", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        tmpd = Path(tmp)
        lake_dir = args.lake
        if lake_dir is None:
            from tetrapipe.ingest import ingest
            from tetrapipe.sinks.lake import Lake
            from tetrapipe.sources.files import expand_inputs
            from tetrapipe.transforms.ancestry import AncestryTransform

            log = args.log
            scenario = REPO / "samples" / "scenario" / "tenant-jobs.log"
            if log is None and scenario.exists():
                log = scenario
            if log is None:
                log = tmpd / "demo.log"
                _demo_log(log)
            lake_dir = tmpd / "lake"
            ingest(expand_inputs([str(log)]), Lake(lake_dir), transforms=_transforms(AncestryTransform))
            print(f"ingested {log}")
        view = build_tree(str(lake_dir), Selection(pod=args.pod, namespace=args.namespace))
        page = args.html or tmpd / "tree.html"
        page.write_text(render_html(view), encoding="utf-8")
        late = [n.exec_id for n in view.late_shells]
        select = late[0] if late else None
        shown = []
        for g in view.groups:
            for e in g.entries:
                stack = list(e.roots)
                while stack:
                    s = stack.pop()
                    shown.append(s.node.exec_id)
                    stack.extend(s.children)
        dom = chromium_dump_dom(page, select=select, profile=tmpd / "p1")
        problems = check_dom(dom, shown, late, select)
        png = chromium_screenshot(page, args.out, select=select, profile=tmpd / "p2")
    c = view.counts()
    print(f"{view.selection.describe()}: {c['processes']} processes, {len(shown)} lines, "
          f"{c['late_shells']} late shell(s), {c['alerts']} alert(s)")
    print(f"screenshot: {png}")
    for p in problems:
        print(f"PROBLEM: {p}", file=sys.stderr)
    print("OK" if not problems else "FAILED")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
