"""tetrapipe run: following a live export log through growth, half-written lines and rotation."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

from conftest import REAL_LOGS

from tetrapipe.flows.run import run
from tetrapipe.lake import Lake, connect


def _lines(start: int, n: int) -> list[str]:
    base = json.loads(REAL_LOGS[0].read_text().splitlines()[2])
    out = []
    for i in range(start, start + n):
        base["time"] = f"2026-03-10T09:{(i // 60) % 60:02d}:{i % 60:02d}.{i:09d}Z"
        out.append(json.dumps(base, separators=(",", ":")))
    return out


def _summary(lake: Lake) -> tuple[int, int]:
    con = connect(lake)
    try:
        return con.execute("SELECT count(*), count(DISTINCT event_id) FROM events").fetchone()
    finally:
        con.close()


def test_follow_growth_half_lines_and_rotation(tmp_path: Path) -> None:
    d = tmp_path / "tetragon"
    d.mkdir()
    live = d / "tetragon.log"
    lake = Lake(tmp_path / "lake")
    stop = threading.Event()
    runner = threading.Thread(target=run, args=([str(live)], lake, []), kwargs={"poll_seconds": 0.05, "stop": stop})
    all_lines: list[str] = []
    with open(live, "w") as f:
        f.write("")
    runner.start()
    n = 0
    for rotation in range(3):
        with open(live, "a") as f:
            for _ in range(40):
                batch = _lines(n, 25)
                n += 25
                all_lines += batch
                text = "\n".join(batch) + "\n"
                cut = len(text) // 2  # half a line now, the rest a moment later
                f.write(text[:cut])
                f.flush()
                time.sleep(0.003)
                f.write(text[cut:])
                f.flush()
        # rotate like Tetragon's exporter: rename to a timestamped backup, gzip it, start a new file
        backup = d / f"tetragon-2026-03-10T09-0{rotation}-00.000.log"
        os.rename(live, backup)
        live.write_text("")
        if rotation == 1:
            with open(backup, "rb") as src, gzip.open(str(backup) + ".gz", "wb") as dst:
                dst.write(src.read())
            backup.unlink()
    with open(live, "a") as f:
        batch = _lines(n, 10)
        all_lines += batch
        f.write("\n".join(batch) + "\n")
    deadline = time.monotonic() + 30
    while _summary(lake)[0] < len(all_lines) and time.monotonic() < deadline:
        time.sleep(0.1)
    stop.set()
    runner.join(30)
    assert _summary(lake) == (len(all_lines), len(all_lines))
    con = connect(lake)
    assert con.execute("SELECT count(*) FROM rejects").fetchone()[0] == 0  # no half line was ever read


def test_finished_gzip_backup_is_not_reread(tmp_path: Path) -> None:
    d = tmp_path / "t"
    d.mkdir()
    with gzip.open(d / "tetragon-2026-03-10T09-00-00.000.log.gz", "wt") as f:
        f.write("\n".join(_lines(0, 50)) + "\n")
    (d / "tetragon.log").write_text("\n".join(_lines(50, 5)) + "\n")
    lake = Lake(tmp_path / "lake")
    totals = run([str(d)], lake, [], exit_at_eof=True, poll_seconds=0.01)
    assert totals.events == 55
    assert _summary(lake) == (55, 55)
    assert run([str(d)], lake, [], exit_at_eof=True, poll_seconds=0.01).events == 0


def test_a_backup_that_vanishes_between_listing_and_reading_is_looked_at_again(tmp_path: Path) -> None:
    """Tetragon gzips (or deletes) a backup while a poll is under way: no crash, no loss, no repeat."""
    from tetrapipe.flows.ingest import ingest
    from tetrapipe.sources.files import InputFile

    d = tmp_path / "t"
    d.mkdir()
    backup = d / "tetragon-2026-03-10T09-00-00.000.log"
    backup.write_text("\n".join(_lines(0, 30)) + "\n")
    lake = Lake(tmp_path / "lake")
    listed = [InputFile(str(backup))]
    with open(backup, "rb") as src, gzip.open(str(backup) + ".gz", "wb") as dst:
        dst.write(src.read())
    backup.unlink()  # after the listing, before the read
    assert ingest(listed, lake, follow=True).events == 0
    assert run([str(d)], lake, [], exit_at_eof=True, poll_seconds=0.01).events == 30
    assert _summary(lake) == (30, 30)


def test_cli_run_stops_on_sigterm_with_exit_0(tmp_path: Path, tetrapipe_cmd: list[str]) -> None:
    log = tmp_path / "tetragon.log"
    log.write_text("\n".join(_lines(0, 100)) + "\n")
    proc = subprocess.Popen(
        [*tetrapipe_cmd, "run", str(log), "--lake", str(tmp_path / "lake"), "--rules", "none", "--poll-seconds", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while Lake(tmp_path / "lake").table("events") is None and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0, proc.stderr.read().decode()
    assert _summary(Lake(tmp_path / "lake")) == (100, 100)
