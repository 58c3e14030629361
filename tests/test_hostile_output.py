"""Events written by an attacker are shown to the analyst, never obeyed by the analyst's terminal.

Process arguments, binaries, working directories, file paths, pod names and TLS
server names are whatever the process (or the client) chose. These tests put
terminal escapes (clear screen, an OSC 8 hyperlink, colours, the 8-bit CSI),
backspaces, carriage returns, a newline, DEL, bidi overrides and rich markup
into the real events' fields, ingest them with the shipped rules (so alerts
quote them), and run every human-readable command as a real process: nothing
raw may reach stdout or stderr, and each hostile character must be there as
its visible escape (``\\x1b``, ``\\u202e``). ``--format json`` and csv keep the
exact strings: they are data.
"""

from __future__ import annotations

import base64
import json
import os
import pty
import re
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import REPO, SAMPLES

from tetrapipe.lake import Lake, connect
from tetrapipe.textsafe import UNSAFE_CLASS, has_unsafe, visible

#: an OSC 8 hyperlink: a terminal shows "click" and opens http://evil
OSC8 = "\x1b]8;;http://evil\x07click\x1b]8;;\x07"
#: the late shell's arguments: clear screen, the link, backspaces and a carriage return that would overwrite what
#: came before with something harmless, 8-bit CSI, DEL, a right-to-left override, a newline, markup and an emoji code
ARGS = f"-c 'id'\x1b[2J{OSC8}\x08\x08\rls -l\x9b31m\x7f\u202eexe.jpg\nFORGED LINE [bold red]B[/] :skull:"
POD = "crawler-\x1b[31mred\x1b[0m\u2066[bold]p[/bold]"  # still matches --pod crawler
CWD = "/app\x1b[2J\r\u202e/cu\u200brl\U000e0041"  # a zero-width space, a tag character: printed as nothing
TMP_BINARY = f"/tmp/{OSC8}\u202egpj.sh"  # exec-from-tmp quotes the binary
TMP_ARGS = "x\x1b[1A\x1b[2K\x85next"
CURL_ARGS = "-sk https://dl.example.net/k.sh -o /tmp/.k\x1b]0;pwned title\x07"  # download-to-tmp quotes it
FILE_PATH = "/tmp/.k\x1b[2J\u202eexe.txt"
#: the weak handshake's SNI: the same length as legacy-feed.example.org, so the ClientHello's lengths stay right
SNI = "\x1b[2J\x07\x08\r[b]x\x1b]8;;\x07evl.io"
SKIPPED_NAME = "notes\x1b[2J\u202e.txt"
LOG_NAME = "tetragon\x1b]8;;mailto:evil\x07x\x1b]8;;\x07.log"  # a file name holds no slash
REJECT_KEY = "\x1b[2Jnot-tetragon\u202e"

#: what must never reach a terminal: C0 controls but newline and tab, DEL, C1, bidi controls, separators, surrogates
RAW = re.compile(f"[{UNSAFE_CLASS}](?<![\n\t])")
HOSTILE_STRINGS = {"args": ARGS, "pod": POD, "cwd": CWD, "binary": TMP_BINARY, "path": FILE_PATH, "sni": SNI}


# --- the hostile history ------------------------------------------------------------------


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _body(event: dict) -> dict:
    return next(v for k, v in event.items() if k.startswith("process_"))


def _set_process(event: dict, exec_id: str, **fields: str) -> None:
    """Give the process ``exec_id`` these fields wherever the event carries it (as the process or the parent)."""
    body = _body(event)
    for role in ("process", "parent"):
        proc = body.get(role)
        if proc and proc.get("exec_id") == exec_id:
            proc.update(fields)


def _hostile_scenario() -> list[str]:
    """samples/scenario/tenant-jobs.log with hostile strings where its alerts will quote them."""
    lines = _lines(SAMPLES / "scenario" / "tenant-jobs.log")
    events = [json.loads(line) for line in lines]
    bash = _body(events[94])["process"]  # line 95: the kubectl exec bash (late shell, then writes /etc/passwd)
    curl_write = _body(events[113])  # line 114: curl -o /tmp/.k, and its write to /tmp/.k
    assert bash["binary"] == "/bin/bash" and curl_write["process"]["binary"] == "/usr/bin/curl"
    hello = _body(events[86])  # line 87: the weak handshake's ClientHello to legacy-feed.example.org
    for event in events:
        _set_process(event, bash["exec_id"], arguments=ARGS, cwd=CWD)
        _set_process(event, curl_write["process"]["exec_id"], arguments=CURL_ARGS)
    curl_write["args"][0]["file_arg"]["path"] = FILE_PATH
    for arg in hello["args"]:
        if "bytes_arg" in arg:
            raw = base64.b64decode(arg["bytes_arg"])
            name = b"legacy-feed.example.org"
            assert raw.count(name) == 1 and len(SNI.encode()) == len(name)
            arg["bytes_arg"] = base64.b64encode(raw.replace(name, SNI.encode())).decode()
    out = [json.dumps(e) for e in events]
    return [line.replace('"crawler-5f7c8d9b6-x4k2p"', json.dumps(POD)) for line in out]


def _hostile_real_exec() -> str:
    """A real exec (events-docs.log line 10) run from /tmp under a hostile name: exec-from-tmp fires on it."""
    event = json.loads(_lines(SAMPLES / "real" / "events-docs.log")[9])
    proc = _body(event)["process"]
    assert proc["binary"] == "/usr/bin/sh"
    proc.update(binary=TMP_BINARY, arguments=TMP_ARGS)
    return json.dumps(event)


def write_hostile_logs(directory: Path) -> Path:
    """A directory as ingest finds one: the hostile log (under a hostile name, with a rejected line) and a file
    it leaves out (also under a hostile name). Returns the log."""
    directory.mkdir(parents=True, exist_ok=True)
    log = directory / LOG_NAME
    rejected = json.dumps({REJECT_KEY: {"x": 1}})
    log.write_text("\n".join([*_hostile_scenario(), _hostile_real_exec(), rejected]) + "\n", encoding="utf-8")
    (directory / SKIPPED_NAME).write_text("not a log\n", encoding="utf-8")
    return log


@dataclass(frozen=True)
class Hostile:
    """The hostile logs, a lake holding them (ingested with the shipped rules) and what that ingest printed."""

    logs: Path
    log: Path
    lake: Path
    ingest: subprocess.CompletedProcess
    bash_exec_id: str


def _env(**extra: str) -> dict[str, str]:
    drop = ("TETRAPIPE_", "COLUMNS", "LINES", "NO_COLOR", "FORCE_COLOR", "TTY_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(extra)
    return env


def cli(cmd: list[str], *args: str | Path) -> subprocess.CompletedProcess:
    """``tetrapipe ARGS`` in a pipe, as a script or ``| less`` gets it.

    Bytes decoded by hand: text mode would turn a raw carriage return into a
    line end before the test could see it.
    """
    proc = subprocess.run([*cmd, *map(str, args)], capture_output=True, env=_env(), timeout=180, cwd=REPO, check=False)
    proc.stdout, proc.stderr = proc.stdout.decode(), proc.stderr.decode()
    return proc


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Hostile:
    import shutil
    import sys

    exe = shutil.which("tetrapipe")  # as the tetrapipe_cmd fixture, which a module-scoped fixture cannot use
    cmd = [exe] if exe else [sys.executable, "-m", "tetrapipe"]
    root = tmp_path_factory.mktemp("hostile")
    log = write_hostile_logs(root / "logs")
    lake = root / "lake"
    proc = cli(cmd, "ingest", root / "logs", "--lake", lake, "--rules", REPO / "rules")
    assert proc.returncode == 0, proc.stderr
    bash = json.loads(_lines(SAMPLES / "scenario" / "tenant-jobs.log")[94])["process_exec"]["process"]["exec_id"]
    return Hostile(root / "logs", log, lake, proc, bash)


def assert_shown_not_obeyed(text: str, *shown: str) -> None:
    """No character a terminal would obey is in ``text``, and each of ``shown`` is, escaped and readable."""
    raw = RAW.search(text)
    assert raw is None, f"raw {raw.group()!r} reaches the terminal: {text[max(raw.start() - 80, 0) : raw.end() + 40]!r}"
    for piece in shown:
        assert visible(piece) in text, f"{visible(piece)!r} not shown in {text[:3000]!r}"


def _no_forged_lines(text: str) -> None:
    """The newline in the arguments is shown as \\n, so nothing in the data starts a line of its own."""
    assert not any(line.lstrip().startswith("FORGED LINE") for line in text.splitlines())


# --- the helper --------------------------------------------------------------------------


def test_visible_escapes_what_a_terminal_obeys_and_nothing_else() -> None:
    clean = "/usr/bin/curl -sk https://example.com -o /tmp/x 'ünïcödé' 日本語 😀 C:\\x1b [bold]"
    assert visible(clean) is clean and not has_unsafe(clean)  # the common case: one search, the same object
    assert visible("\x1b[2J") == "\\x1b[2J"
    assert visible(OSC8) == "\\x1b]8;;http://evil\\x07click\\x1b]8;;\\x07"
    assert visible("a\tb\nc\rd\x08e\x00f\x7f") == "a\\tb\\nc\\rd\\x08e\\x00f\\x7f"
    assert visible("\x85\x9b\x9f") == "\\x85\\x9b\\x9f"  # C1, the 8-bit CSI among them
    bidi = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
    assert visible(bidi) == "".join(f"\\u{ord(c):04x}" for c in bidi)
    assert visible("\u2028\u2029") == "\\u2028\\u2029"
    assert visible("bad \ud800 half") == "bad \\ud800 half"  # a lone surrogate cannot even be printed raw
    invisible = "\u180e\u200b\u200c\u200d\u2060\u2064\ufeff\ufff9"  # each prints as nothing at all
    assert visible("\xad" + invisible) == "\\xad" + "".join(f"\\u{ord(c):04x}" for c in invisible)
    assert visible("/usr/bin/cu\U000e0072rl") == "/usr/bin/cu\\U000e0072rl"  # a tag character, past U+FFFF
    assert visible("two\nlines\r\n", newlines=True) == "two\nlines\\r\n"
    assert has_unsafe("x\ny") and not has_unsafe("x\ny", newlines=True)
    for s in (ARGS, POD, CWD, TMP_BINARY, SNI):
        assert visible(visible(s)) == visible(s) and RAW.search(visible(s)) is None and "\n" not in visible(s)


def test_emit_escapes_what_slipped_through_and_keeps_the_styles_in_place() -> None:
    """The last guard in report.emit: a styled line with raw data in it is escaped, each style on its own text."""
    import io

    from rich.console import Console
    from rich.text import Text

    from tetrapipe.commands.report import emit

    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, color_system="standard", width=200)
    emit(console, Text.assemble(("\x1b[2Jred", "red"), " and ", ("bold\u202e", "bold"), "\nsecond line"))
    out = buf.getvalue()
    assert "\x1b[2J" not in out and "\u202e" not in out
    assert "\x1b[31m\\x1b[2Jred\x1b[0m and \x1b[1mbold\\u202e\x1b[0m\nsecond line" in out


def test_rules_test_report_shows_names_reasons_and_diffs_escaped() -> None:
    """``rules test`` prints rule ids, test names, reasons and diffs of alerts that quote test events."""
    import io

    from rich.console import Console

    from tetrapipe.commands.rules import print_report
    from tetrapipe.ruleset.testing import TestReport, TestResult

    failed = TestResult(
        "late-shell", f"kubectl exec {OSC8} [bold]", Path("rules/x.yaml"), 3, "failed",
        reason=f"expected 1 alert\x1b[2J, got 0\nsee {OSC8}",
        diff=[f"- message: {ARGS}", f"+ message: {CWD}"],
    )  # fmt: skip
    buf = io.StringIO()
    print_report(Console(file=buf, width=200, color_system=None), TestReport([failed], 0.1))
    out = buf.getvalue()
    assert_shown_not_obeyed(out, OSC8, ARGS, CWD, "expected 1 alert\x1b[2J, got 0")
    assert "[bold]" in out and "x.yaml:3::late-shell::kubectl exec" in out
    assert "\nsee \\x1b]8;;" in out  # a multi-line reason keeps its line end; its controls are escaped


# --- the commands a person reads -------------------------------------------------------------


def test_ingest_summary_lists_skipped_files_rejects_and_alerts_escaped(hostile: Hostile) -> None:
    out = hostile.ingest.stdout + hostile.ingest.stderr
    assert_shown_not_obeyed(
        out,
        SKIPPED_NAME,  # the directory's file left out, by name
        LOG_NAME,  # the rejected line's file and line
        REJECT_KEY,  # the reason quotes the odd event key
        POD,
        TMP_BINARY,
        TMP_ARGS,
        CURL_ARGS,
        "\x1b[2J\x1b]8;;http://evil\x07click\x1b]8;;\x07\x08\x08",  # the late shell's arguments, in its alerts
        "\x9b31m\x7f\u202eexe.jpg",
        "\x1b]8;;\x07evl.io",  # the weak handshake's SNI
    )
    assert "late-shell-in-container" in out and "passwd-shadow-tampering" in out and "weak-tls" in out
    assert "exec-from-tmp" in out and "download-to-tmp" in out  # every hostile field was quoted by an alert
    assert "[bold red]B[/] :skull:" in out  # markup and emoji codes in data are printed as they are
    _no_forged_lines(out)


def test_query_tables_show_the_exact_values_escaped(hostile: Hostile, tetrapipe_cmd: list[str]) -> None:
    sql = "SELECT process_binary, arguments, cwd, pod FROM events WHERE kind = 'process_exec'"
    table = cli(tetrapipe_cmd, "query", sql, "--lake", hostile.lake)
    assert table.returncode == 0, table.stderr
    assert_shown_not_obeyed(table.stdout + table.stderr, ARGS, CWD, POD, TMP_BINARY, TMP_ARGS)
    _no_forged_lines(table.stdout)
    hunt = cli(tetrapipe_cmd, "query", "--hunt", "late-shells", "--lake", hostile.lake)
    assert hunt.returncode == 0, hunt.stderr
    assert_shown_not_obeyed(hunt.stdout + hunt.stderr, ARGS, POD)
    rejects = cli(tetrapipe_cmd, "query", "rejects", "--lake", hostile.lake)
    assert rejects.returncode == 0, rejects.stderr
    assert_shown_not_obeyed(rejects.stdout + rejects.stderr, LOG_NAME, REJECT_KEY)


def test_json_and_csv_keep_the_exact_strings(hostile: Hostile, tetrapipe_cmd: list[str]) -> None:
    """Machine formats are data: a program reading them gets what Tetragon sent, byte for byte."""
    import csv
    import io

    sql = f"SELECT arguments, cwd, pod FROM events WHERE exec_id = '{hostile.bash_exec_id}' AND kind = 'process_exec'"
    as_json = cli(tetrapipe_cmd, "query", sql, "--format", "json", "--lake", hostile.lake)
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout) == [{"arguments": ARGS, "cwd": CWD, "pod": POD}]
    as_csv = cli(tetrapipe_cmd, "query", sql, "--format", "csv", "--lake", hostile.lake)
    assert as_csv.returncode == 0, as_csv.stderr
    rows = list(csv.reader(io.StringIO(as_csv.stdout, newline="")))
    assert rows == [["arguments", "cwd", "pod"], [ARGS, CWD, POD]]
    tls = cli(tetrapipe_cmd, "tls", "--format", "json", "--lake", hostile.lake)
    assert tls.returncode == 0, tls.stderr
    assert SNI in {r["tls_sni"] for r in json.loads(tls.stdout)}
    tree = cli(tetrapipe_cmd, "tree", "--pod", "crawler", "--format", "json", "--lake", hostile.lake)
    assert tree.returncode == 0, tree.stderr
    bash = json.loads(tree.stdout)["processes"][hostile.bash_exec_id]
    assert (bash["arguments"], bash["cwd"], bash["pod"]) == (ARGS, CWD, POD)


def test_tree_text_and_the_pod_list_escape_every_field(hostile: Hostile, tetrapipe_cmd: list[str]) -> None:
    pods = cli(tetrapipe_cmd, "tree", "--lake", hostile.lake)
    assert pods.returncode == 0, pods.stderr
    assert_shown_not_obeyed(pods.stdout + pods.stderr, POD)
    tree = cli(tetrapipe_cmd, "tree", "--pod", "crawler", "--lake", hostile.lake)
    assert tree.returncode == 0, tree.stderr
    assert_shown_not_obeyed(
        tree.stdout + tree.stderr,
        POD,  # the group header
        "-c 'id'\x1b[2J\x1b]8;;http://evil\x07click",  # the late shell's arguments (cut at 80 cells)
        CURL_ARGS,
        FILE_PATH,  # curl's write, under its process
        "\x1b]8;;\x07evl.io",  # the weak-tls alert under node
    )
    _no_forged_lines(tree.stdout)
    assert "LATE SHELL +8m42s" in tree.stdout


def test_tree_html_shows_escapes_and_keeps_exact_ids_and_data(hostile: Hostile, tetrapipe_cmd: list[str]) -> None:
    page = hostile.lake.parent / "crawler.html"
    proc = cli(tetrapipe_cmd, "tree", "--pod", "crawler", "--html", page, "--lake", hostile.lake)
    assert proc.returncode == 0, proc.stderr
    assert_shown_not_obeyed(proc.stdout + proc.stderr, POD)  # "wrote crawler.html: ... (pod ...)"
    html = page.read_text(encoding="utf-8")
    assert RAW.search(html) is None
    import html as html_lib

    for piece in (POD, CURL_ARGS, FILE_PATH, "-c 'id'\x1b[2J\x1b]8;;http://evil\x07click\x1b]8;;\x07"):
        assert html_lib.escape(visible(piece), quote=True) in html
    assert f'data-exec-id="{hostile.bash_exec_id}"' in html
    data = json.loads(re.search(r'<script id="tree-data" type="application/json">(.*?)</script>', html, re.S)[1])
    assert data["processes"][hostile.bash_exec_id]["arguments"] == ARGS  # the script gets the exact value


def test_tree_html_details_panel_in_chromium_shows_escapes(hostile: Hostile, tetrapipe_cmd: list[str]) -> None:
    """The page's script fills the details panel from the embedded JSON: it escapes as the server does."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("check_tree_html", REPO / "scripts" / "check_tree_html.py")
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    page = hostile.lake.parent / "panel.html"
    proc = cli(tetrapipe_cmd, "tree", "--pod", "crawler", "--html", page, "--lake", hostile.lake)
    assert proc.returncode == 0, proc.stderr
    dom = check.chromium_dump_dom(page, select=hostile.bash_exec_id, profile=hostile.lake.parent / "chromium")
    assert 'data-ready="1"' in dom  # the script ran to its end
    panel = re.search(r'<aside id="panel"[^>]*>(.*?)</aside>', dom, re.S)[1]
    import html as html_lib

    assert RAW.search(dom) is None
    for piece in (ARGS, CWD, POD):  # the panel's rows hold the whole values: \r and \n shown too
        assert html_lib.escape(visible(piece), quote=False) in panel


def test_tls_table_escapes_the_sni(hostile: Hostile, tetrapipe_cmd: list[str]) -> None:
    proc = cli(tetrapipe_cmd, "tls", "--lake", hostile.lake)
    assert proc.returncode == 0, proc.stderr
    assert_shown_not_obeyed(proc.stdout + proc.stderr, SNI)
    assert "[b]x" in proc.stdout  # markup in the SNI is printed, not applied


def test_run_prints_one_escaped_line_per_alert(hostile: Hostile, tetrapipe_cmd: list[str]) -> None:
    lake = hostile.lake.parent / "run-lake"
    proc = cli(tetrapipe_cmd, "run", hostile.log, "--lake", lake, "--rules", REPO / "rules", "--exit-at-eof",
               "--poll-seconds", "0.1")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert_shown_not_obeyed(
        proc.stdout, POD, TMP_BINARY, TMP_ARGS, CURL_ARGS, "\x1b[2J\x1b]8;;http://evil\x07click\x1b]8;;\x07"
    )
    assert_shown_not_obeyed(proc.stderr, LOG_NAME, REJECT_KEY)  # the rejected line, on the progress stream
    lines = proc.stdout.splitlines()
    con = connect(Lake(lake))
    try:
        stored = con.execute("SELECT count(*) FROM alerts").fetchone()[0]
    finally:
        con.close()
    assert stored >= 17  # the single-event rules' alerts at least (chains and first-seen rules add theirs)
    assert len(lines) == stored, proc.stdout  # one line per alert row the run stored, however hostile its text
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} [A-Z]+ +\S+ ", x) for x in lines)


def test_rules_backtest_table_escapes_what_the_alerts_quote(hostile: Hostile, tetrapipe_cmd: list[str]) -> None:
    proc = cli(tetrapipe_cmd, "rules", "backtest", "--lake", hostile.lake, "--rules", REPO / "rules")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr
    assert_shown_not_obeyed(out, "\x1b[31mred", "\x1b]8;;http://evil")  # rich folds the cells: short pieces
    assert "[bold]p[/bold]" in out


# --- on a terminal -----------------------------------------------------------------------


def run_on_terminal(cmd: list[str], *args: str | Path, columns: int = 80) -> tuple[str, str, int]:
    """``tetrapipe ARGS`` with its stdout on a real pseudo-terminal: tables fit its width, cells are cut.

    TERM=dumb keeps rich from adding colour codes, so every ESC in the output
    would be the data's; stderr goes to a file (no progress bar).
    """
    import fcntl
    import select
    import tempfile
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [*cmd, *map(str, args)], stdin=subprocess.DEVNULL, stdout=slave, stderr=err, env=_env(TERM="dumb"), cwd=REPO
        )
        os.close(slave)
        chunks = []
        try:
            while True:
                ready, _, _ = select.select([master], [], [], 180)
                assert ready, "no output for 180 s"
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the command exited and closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
        finally:
            os.close(master)
        code = proc.wait(timeout=60)
        err.seek(0)
        stderr = err.read().decode("utf-8", errors="replace")
    out = b"".join(chunks).decode("utf-8", errors="replace").replace("\r\n", "\n")  # the terminal's line ends
    return out, stderr, code


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["query", "SELECT pod, process_binary, arguments, cwd FROM events"], id="query-records"),
        pytest.param(["query", "SELECT arguments FROM events"], id="query-cut-cells"),
        pytest.param(["query", "late-shells"], id="hunt"),
        pytest.param(["tree", "--pod", "crawler"], id="tree"),
        pytest.param(["tls"], id="tls"),
    ],
)
def test_on_a_terminal_nothing_is_obeyed(hostile: Hostile, tetrapipe_cmd: list[str], args: list[str]) -> None:
    out, err, code = run_on_terminal(tetrapipe_cmd, *args, "--lake", hostile.lake)
    assert code == 0, err
    assert_shown_not_obeyed(out + err)
    assert "\\x1b" in out  # the escapes are there to read (cut cells end in …)


def test_ingest_on_a_terminal_wraps_escaped_alerts(hostile: Hostile, tetrapipe_cmd: list[str]) -> None:
    lake = hostile.lake.parent / "tty-lake"
    out, err, code = run_on_terminal(tetrapipe_cmd, "ingest", hostile.logs, "--lake", lake, "--rules", REPO / "rules")
    assert code == 0, err
    assert_shown_not_obeyed(out + err, SKIPPED_NAME, "\x1b[31mred")
    assert "late-shell-in-container" in out
    alert_lines = [line for line in out.splitlines() if line.startswith(" " * 9)]  # the messages, indented
    assert any("\\x1b" in line for line in alert_lines)
    assert all(len(line) <= 80 for line in alert_lines)  # escaped first, then wrapped to the terminal's width
    _no_forged_lines(out)


def test_a_rule_failing_on_hostile_data_warns_and_errs_escaped(tmp_path: Path, tetrapipe_cmd: list[str]) -> None:
    """A rule that breaks on a value (a cast of the pod name) is named with that value in ingest's warning and in its
    final error: one-shot commands set up no logging, so the warning went out raw through logging's last-resort
    handler, and the error line raw through click."""
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "cast.yaml").write_text(
        "id: cast-pod\ntitle: casts the pod name\ndescription: a number it is not\nseverity: low\n"
        "event: [process_exec]\ncondition: CAST(pod AS INTEGER) > 0\noutput: pod %pod\n"
    )
    events = [json.loads(line) for line in _lines(SAMPLES / "scenario" / "tenant-jobs.log")]
    for event in events:
        for role in ("process", "parent"):
            pod = (_body(event).get(role) or {}).get("pod")
            if pod:
                pod["name"] = POD  # every pod: the first value the cast meets is a hostile one
    log = tmp_path / "pods.log"
    log.write_text("\n".join(json.dumps(e) for e in events) + "\n", encoding="utf-8")
    proc = cli(tetrapipe_cmd, "ingest", log, "--lake", tmp_path / "lake", "--rules", rules)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "Detector" in out, out[-2000:]
    assert "Error:" in out and "Conversion Error" in out, out[-2000:]
    assert_shown_not_obeyed(out, POD)
