"""``kubectl logs -f … | tetrapipe run -``: a pipe that stays open is committed and alerted as it goes.

Each test runs the CLI as a subprocess reading a real pipe that the test keeps
open (as ``kubectl logs -f`` does), and checks the lake. Waits are on
conditions with a deadline: the lake holding the events, a line on stdout, the
pipe drained (``FIONREAD`` on its write end says what the reader has not taken).
"""

from __future__ import annotations

import fcntl
import signal
import struct
import subprocess
import termios
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import SAMPLES

from tetrapipe.lake import Lake, connect

SCENARIO = SAMPLES / "scenario" / "tenant-jobs.log"
#: how long a live pipe's lines may take to reach the lake (the README promises about a second)
ARRIVAL_SECONDS = 15.0
#: how long a signalled run may take to commit and exit
STOP_SECONDS = 15.0


def _scenario() -> list[bytes]:
    return [line + b"\n" for line in SCENARIO.read_bytes().splitlines() if line.strip()]


def _counts(lake_dir: Path, sql: str = "SELECT count(*), count(DISTINCT event_id) FROM events") -> tuple:
    lake = Lake(lake_dir)
    if lake.table("events") is None:
        return (0, 0)
    con = connect(lake)
    try:
        return con.execute(sql).fetchone()
    finally:
        con.close()


def _wait_for(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.05)


def _unread(proc: subprocess.Popen) -> int:
    """Bytes written to the run's stdin that it has not read yet."""
    assert proc.stdin is not None
    buf = fcntl.ioctl(proc.stdin.fileno(), termios.FIONREAD, struct.pack("i", 0))
    return struct.unpack("i", buf)[0]


class Run:
    """A ``tetrapipe run -`` reading a pipe held open by the test; stdout collected as it comes."""

    def __init__(self, cmd: list[str], lake_dir: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [*cmd, "run", "-", "--lake", str(lake_dir), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.out: list[str] = []
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.out.append(line.decode())

    def write(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def stop(self, sig: signal.Signals) -> tuple[int, str]:
        """Signal the run with its stdin still open; its exit code and stderr (it must exit in time)."""
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{sig.name} did not stop run within {STOP_SECONDS:.0f} s") from None
        self._reader.join(5)
        assert self.proc.stderr is not None
        return code, self.proc.stderr.read().decode()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if f is not None:
                try:
                    f.close()
                except OSError:
                    pass


@pytest.fixture
def runs(tetrapipe_cmd: list[str]) -> Iterator[Callable[..., Run]]:
    started: list[Run] = []

    def start(lake_dir: Path, *args: str) -> Run:
        r = Run(tetrapipe_cmd, lake_dir, *args)
        started.append(r)
        return r

    yield start
    for r in started:
        r.kill()


def test_an_open_pipes_lines_are_committed_and_alerted_as_they_come(
    tmp_path: Path, runs: Callable[..., Run], tetrapipe_cmd: list[str]
) -> None:
    """100 lines, then 35 more, through a pipe never closed: each lot is in the lake and alerted while it is open."""
    lines = _scenario()
    first, rest = lines[:100], lines[100:]
    lake_dir = tmp_path / "lake"
    run = runs(lake_dir)  # the shipped rules
    run.write(b"".join(first))
    _wait_for("the first 100 events in the lake", lambda: _counts(lake_dir) == (100, 100), ARRIVAL_SECONDS)
    _wait_for(
        "the late shell's alert on stdout",
        lambda: any("late-shell-in-container" in line for line in run.out),
        ARRIVAL_SECONDS,
    )
    run.write(b"".join(rest))
    _wait_for(f"all {len(lines)} events in the lake", lambda: _counts(lake_dir) == (len(lines),) * 2, ARRIVAL_SECONDS)
    code, err = run.stop(signal.SIGTERM)
    assert code == 0, err
    assert "Traceback" not in err
    assert _counts(lake_dir) == (len(lines), len(lines))
    # the same alerts as a one-shot ingest of the same lines, none twice
    ref = tmp_path / "ref"
    src = tmp_path / "all.log"
    src.write_bytes(b"".join(lines))
    subprocess.run([*tetrapipe_cmd, "ingest", str(src), "--lake", str(ref)], check=True, capture_output=True)
    alerts = "SELECT list(rule_id ORDER BY rule_id, time), count(DISTINCT alert_id) FROM alerts"
    assert _counts(lake_dir, alerts) == _counts(ref, alerts)
    assert _counts(ref, alerts)[1] >= 10


def test_sigint_commits_what_was_read_and_a_half_line_is_read_again_later(
    tmp_path: Path, runs: Callable[..., Run], tetrapipe_cmd: list[str]
) -> None:
    """--poll-seconds 60: nothing is due before the signal, so the stop alone commits the 100 lines read."""
    lines = _scenario()
    lake_dir = tmp_path / "lake"
    run = runs(lake_dir, "--rules", "none", "--poll-seconds", "60")
    half = lines[100][: len(lines[100]) // 2]
    run.write(b"".join(lines[:100]) + half)
    _wait_for("run to read the pipe", lambda: _unread(run.proc) == 0, ARRIVAL_SECONDS)
    code, err = run.stop(signal.SIGINT)
    assert code == 0, err
    assert "Traceback" not in err
    assert _counts(lake_dir) == (100, 100)
    # the unfinished line was not stored as a reject, nor counted as read: the whole stream again adds it
    assert _counts(lake_dir, "SELECT count(*), 0 FROM rejects") == (0, 0)
    again = subprocess.run(
        [*tetrapipe_cmd, "run", "-", "--lake", str(lake_dir), "--rules", "none"],
        input=b"".join(lines[:101]),
        capture_output=True,
        timeout=60,
    )
    assert again.returncode == 0, again.stderr.decode()
    assert _counts(lake_dir) == (101, 101)


def test_sigterm_stops_a_run_whose_pipe_has_not_sent_a_whole_line(tmp_path: Path, runs: Callable[..., Run]) -> None:
    lake_dir = tmp_path / "lake"
    run = runs(lake_dir, "--rules", "none")
    run.write(_scenario()[0][:100])
    _wait_for("run to read the pipe", lambda: _unread(run.proc) == 0, ARRIVAL_SECONDS)
    code, err = run.stop(signal.SIGTERM)
    assert code == 0, err
    assert "Traceback" not in err
    assert _counts(lake_dir) == (0, 0)


def test_a_gzipd_stream_left_open_is_committed_as_it_comes(tmp_path: Path, runs: Callable[..., Run]) -> None:
    """``kubectl logs -f … | gzip`` flushed block by block: inflated lines are not held back for a whole chunk."""
    lines = _scenario()[:100]
    lake_dir = tmp_path / "lake"
    run = runs(lake_dir, "--rules", "none")
    gz = zlib.compressobj(wbits=31)
    run.write(gz.compress(b"".join(lines)) + gz.flush(zlib.Z_SYNC_FLUSH))
    _wait_for("the 100 events in the lake", lambda: _counts(lake_dir) == (100, 100), ARRIVAL_SECONDS)
    code, err = run.stop(signal.SIGTERM)
    assert code == 0, err
    assert _counts(lake_dir) == (100, 100)
    assert _counts(lake_dir, "SELECT count(*), 0 FROM rejects") == (0, 0)  # the unended gzip is no fault at a stop


def test_a_missing_file_is_a_usage_error(tmp_path: Path, tetrapipe_cmd: list[str]) -> None:
    """As ``ingest`` says it: exit 2 and the path, no traceback."""
    missing = tmp_path / "missing.log"
    done = subprocess.run(
        [*tetrapipe_cmd, "run", str(missing), "--exit-at-eof", "--lake", str(tmp_path / "lake"), "--rules", "none"],
        capture_output=True,
        timeout=60,
    )
    err = done.stderr.decode()
    assert done.returncode == 2, err
    assert "Traceback" not in err
    assert "no such file or directory" in err and "missing.log" in err


def test_a_quiet_pipe_keeps_run_live_and_ready(tmp_path: Path, runs: Callable[..., Run]) -> None:
    """A pod that logs nothing for a while: ``/healthz`` must not see a stall (a liveness probe would restart a healthy
    run) and ``/readyz`` says ready. A stream's poll ends only with the stream, so the heartbeat of the end of a poll
    never came: the main loop's beat aged without bound, and readiness never came."""
    import re
    import urllib.error
    import urllib.request

    from test_run_vs_process import _free_port

    def get(path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError:
            return 0, ""

    port = _free_port()
    lake_dir = tmp_path / "lake"
    run = runs(lake_dir, "--rules", "none", "--poll-seconds", "0.2", "--metrics-port", str(port))
    run.write(b"".join(_scenario()[:10]))
    _wait_for("the first 10 events in the lake", lambda: _counts(lake_dir) == (10, 10), ARRIVAL_SECONDS)
    quiet_since = time.monotonic()
    _wait_for("3 s of a quiet pipe", lambda: time.monotonic() - quiet_since > 3, 10)
    status, body = get("/readyz")
    assert status == 200 and "reading a stream" in body, (status, body)
    status, body = get("/healthz")
    beat = re.search(r"beat ([0-9.]+)s ago", body)
    assert status == 200 and beat is not None and float(beat.group(1)) < 1.0, (status, body)
    code, err = run.stop(signal.SIGTERM)
    assert code == 0, err
