#!/usr/bin/env python3
"""Check the ``tetrapipe tree --html`` page in a real headless Chromium, and take its screenshot.

    python scripts/check_tree_html.py                       # the scenario (or the built-in demo)
    python scripts/check_tree_html.py --log samples/scenario/tenant-jobs.log --pod crawler
    python scripts/check_tree_html.py --lake ./tetrapipe-lake --pod crawler --out /tmp/tree.png

It ingests the samples (``samples/``: the real events and the scenario, with
the pipeline's transforms and the shipped rules, so alerts show) into a
temporary lake, or uses ``--lake``, writes the tree's HTML, lets Chromium run
the page (``--dump-dom``) with the first late shell selected, checks that
every process is in the DOM, that the late shell is marked, that the side
panel shows it and that no badge (late shell, alert, ...) is clipped or
hidden, then saves a 1400x900 screenshot (default: docs/tree-screenshot.png).

Needs Chromium: ``apt-get install -y chromium`` (Debian). The page must not
need the network: Chromium runs with networking features off, and the page's
own Content-Security-Policy forbids any fetch.
"""

from __future__ import annotations

import argparse
import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import quote

REPO = Path(__file__).resolve().parents[1]

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-extensions",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
]


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


def chromium_dump_dom(
    page: Path,
    select: str | None = None,
    profile: Path | None = None,
    timeout: float = 90,
    size: tuple[int, int] = (1400, 900),
) -> str:
    """The DOM after the page's scripts ran (Chromium's ``--dump-dom``), laid out in a ``size`` window."""
    with tempfile.TemporaryDirectory() as tmp:
        prof = profile or Path(tmp) / "profile"
        res = _run(
            [f"--user-data-dir={prof}", f"--window-size={size[0]},{size[1]}", "--dump-dom", _url(page, select)], timeout
        )
    if res.returncode != 0 or "<html" not in res.stdout:
        raise RuntimeError(f"chromium --dump-dom failed ({res.returncode}): {res.stderr[-2000:]}")
    return res.stdout


def chromium_screenshot(
    page: Path,
    png: Path,
    select: str | None = None,
    profile: Path | None = None,
    size: tuple[int, int] = (1400, 900),
    timeout: float = 90,
) -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        prof = profile or Path(tmp) / "profile"
        png.parent.mkdir(parents=True, exist_ok=True)
        res = _run(
            [
                f"--user-data-dir={prof}",
                f"--screenshot={png.resolve()}",
                f"--window-size={size[0]},{size[1]}",
                _url(page, select),
            ],
            timeout,
        )
    if res.returncode != 0 or not png.exists():
        raise RuntimeError(f"chromium --screenshot failed ({res.returncode}): {res.stderr[-2000:]}")
    return png


#: Run in the page after its own script: every badge must be laid out whole inside its parent and
#: inside every ancestor that clips its overflow (the tree scrolls sideways: a badge past its right
#: edge is there in the DOM, yet nobody sees it). Results go to attributes --dump-dom can read.
BADGE_CHECK_JS = r"""
(function () {
  "use strict";
  var SLACK = 0.5;
  function name(e) {
    return e.tagName.toLowerCase() + (e.id ? "#" + e.id : "") + (e.className ? "." + String(e.className).split(" ").join(".") : "");
  }
  function outside(r, left, top, right, bottom) {
    return r.left < left - SLACK || r.top < top - SLACK || r.right > right + SLACK || r.bottom > bottom + SLACK;
  }
  var problems = [], badges = document.querySelectorAll(".badge");
  badges.forEach(function (b) {
    var label = b.textContent.trim() + " (" + (b.closest("li.proc") ? "tree row of " + b.closest("li.proc").dataset.execId : name(b.parentElement)) + ")";
    var r = b.getBoundingClientRect();
    if (r.width < 1 || r.height < 1 || getComputedStyle(b).visibility !== "visible") { problems.push(label + ": not displayed"); return; }
    if (b.scrollWidth > b.clientWidth + 1) problems.push(label + ": its text is cut inside the badge");
    var p = b.parentElement.getBoundingClientRect();
    if (outside(r, p.left, p.top, p.right, p.bottom)) problems.push(label + ": sticks out of its container " + name(b.parentElement));
    for (var a = b.parentElement; a && a !== document.documentElement; a = a.parentElement) {
      var cs = getComputedStyle(a);
      if (cs.overflowX === "visible" && cs.overflowY === "visible") continue;
      var c = a.getBoundingClientRect(), left = c.left + a.clientLeft, top = c.top + a.clientTop;
      if (outside(r, left, top, left + a.clientWidth, top + a.clientHeight)) problems.push(label + ": clipped by " + name(a));
    }
  });
  document.body.dataset.badges = String(badges.length);
  document.body.dataset.badgeProblems = JSON.stringify(problems);
})();
"""


def badge_problems(
    page: Path, select: str | None = None, profile: Path | None = None, size: tuple[int, int] = (1400, 900)
) -> tuple[int, list[str]]:
    """(badges in the page, the ones clipped, hidden or out of their box), as Chromium lays it out at ``size``.

    The check runs in a copy of the page with :data:`BADGE_CHECK_JS` as a last
    inline script (the page's policy allows inline scripts, nothing else).
    """
    probe = page.with_name(page.stem + ".badge-check.html")
    probe.write_text(
        page.read_text(encoding="utf-8").replace("</body>", f"<script>{BADGE_CHECK_JS}</script>\n</body>"),
        encoding="utf-8",
    )
    try:
        dom = chromium_dump_dom(probe, select=select, profile=profile, size=size)
    finally:
        probe.unlink()
    count = re.search(r'data-badges="(\d+)"', dom)
    found = re.search(r'data-badge-problems="([^"]*)"', dom)
    if count is None or found is None:
        raise RuntimeError("the badge check did not run in the page")
    return int(count.group(1)), json.loads(html.unescape(found.group(1)))


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


def _transforms() -> list:
    """The pipeline's transforms with the repository's rules, so the page shows the alerts ``ingest`` raises."""
    from tetrapipe.transforms.chain import build_transforms

    return build_transforms(REPO / "rules")[0]


def main() -> int:
    sys.path.insert(0, str(REPO))
    from tetrapipe.tree import Selection, build_tree, render_html

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--log",
        type=Path,
        help="Tetragon export log or directory to ingest (default: samples/, else the built-in demo story).",
    )
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
            from tetrapipe.flows.ingest import ingest
            from tetrapipe.lake import Lake
            from tetrapipe.sources.files import expand_inputs

            log = args.log
            samples = REPO / "samples"
            if log is None and (samples / "scenario" / "tenant-jobs.log").exists():
                log = samples
            if log is None:
                log = tmpd / "demo.log"
                _demo_log(log)
            lake_dir = tmpd / "lake"
            ingest(expand_inputs([str(log)]), Lake(lake_dir), transforms=_transforms())
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
        badges, clipped = badge_problems(page, select=select, profile=tmpd / "p3")
        problems += [f"badge {p}" for p in clipped]
        png = chromium_screenshot(page, args.out, select=select, profile=tmpd / "p2")
    c = view.counts()
    print(
        f"{view.selection.describe()}: {c['processes']} processes, {len(shown)} lines, "
        f"{c['late_shells']} late shell(s), {c['alerts']} alert(s), {badges} badges"
    )
    print(f"screenshot: {png}")
    for p in problems:
        print(f"PROBLEM: {p}", file=sys.stderr)
    print("OK" if not problems else "FAILED")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
