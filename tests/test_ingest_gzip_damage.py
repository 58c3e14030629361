"""A damaged gzip copy of a log costs only itself: a whole copy ingested before or after delivers every event once.

The damage is found out where zlib stumbles, often only at the member's CRC,
after the lines inflated before it were committed: those lines may be garbage
(rejected as such), so the lake must not count them as read for the log. Each
test builds real gzip files (the scenario log, or many chunks of real-shaped
events), damages a copy the way a bad disk or download does (two bytes flipped),
runs the real ingest and checks the lake's rows.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import zlib
from pathlib import Path

import pytest
from conftest import REAL_LOGS, SAMPLES

from tetrapipe.flows.ingest import IngestStats, ingest
from tetrapipe.lake import Lake, connect
from tetrapipe.sources.files import expand_inputs

SCENARIO = SAMPLES / "scenario" / "tenant-jobs.log"
SCENARIO_EVENTS = 135


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)  # the same bytes every run: the damage lands in the same place


def _damaged(whole: bytes, at: float) -> bytes:
    """``whole`` with two bytes flipped from fraction ``at`` of it on, where only the CRC finds the damage.

    The first such place that inflates into several whole lines of garbage:
    the case where lines are delivered (and committed) before the damage is
    known. Searched rather than fixed, as zlib builds may compress alike
    differently.
    """
    text = zlib.decompress(whole, wbits=31)
    for i in range(int(len(whole) * at), len(whole) - 10):
        data = bytearray(whole)
        data[i] ^= 0xFF
        data[i + 1] ^= 0xFF
        try:
            inflated = zlib.decompressobj(wbits=31).decompress(bytes(data[:-8]))  # all but the CRC and size
        except zlib.error:
            continue  # a deflate error: found where it is
        lines, good = inflated.split(b"\n")[:-1], text.split(b"\n")
        if sum(1 for k, line in enumerate(lines) if k >= len(good) or line != good[k]) >= 5:
            return bytes(data)
    raise AssertionError("no place found to damage")


def _many_events(n: int) -> bytes:
    """``n`` distinct real-shaped exec events (one real event with another time and pid per line)."""
    base = json.loads(REAL_LOGS[0].read_text().splitlines()[2])
    lines = []
    for i in range(n):
        base["time"] = f"2024-05-01T10:{(i // 60) % 60:02d}:{i % 60:02d}.{i:09d}Z"
        base["process_exec"]["process"]["pid"] = 100_000 + i
        lines.append(json.dumps(base, separators=(",", ":")))
    return "".join(ln + "\n" for ln in lines).encode()


def _ingest(lake: Lake, path: Path, **kw: object) -> IngestStats:
    return ingest(expand_inputs([str(path)]), lake, keep_rejects=10_000, **kw)  # type: ignore[arg-type]


def _lake_state(lake: Lake) -> tuple[int, int, list[tuple[str, int | None, str]]]:
    """(events rows, distinct event_ids, the rejects that say where an input broke)."""
    con = connect(lake)
    try:
        rows, ids = con.execute("SELECT count(*), count(DISTINCT event_id) FROM events").fetchone()
        faults = con.execute(
            "SELECT source, source_offset, reason FROM rejects WHERE reason LIKE 'corrupt gzip:%' ORDER BY source"
        ).fetchall()
        return rows, ids, faults
    finally:
        con.close()


def _rejects(lake: Lake) -> int:
    con = connect(lake)
    try:
        return con.execute("SELECT count(*) FROM rejects").fetchone()[0]
    finally:
        con.close()


@pytest.fixture
def copies(tmp_path: Path, request: pytest.FixtureRequest) -> tuple[Path, Path]:
    """The scenario log gzip'd whole, and a copy damaged at ``request.param`` of its length."""
    whole = _gzip(SCENARIO.read_bytes())
    intact = tmp_path / "tj.log.gz"
    intact.write_bytes(whole)
    damaged = tmp_path / "corrupt.gz"
    damaged.write_bytes(_damaged(whole, request.param))
    return intact, damaged


@pytest.mark.parametrize("copies", [0.5, 0.95], indirect=True, ids=["middle", "95pct"])
def test_a_damaged_copy_then_a_whole_one_stores_every_event_once_and_the_damage(
    copies: tuple[Path, Path], lake_dir: Path
) -> None:
    intact, damaged = copies
    lake = Lake(lake_dir)
    first = _ingest(lake, damaged)
    # what the damaged copy gives: some events, then the break, stored in rejects like the summary says
    assert 0 < first.events < SCENARIO_EVENTS
    assert first.first_rejects[-1].reason.startswith("corrupt gzip: ")
    assert _lake_state(lake)[:2] == (first.events, first.events)
    rejects_after_damage = _rejects(lake)

    second = _ingest(lake, intact)
    assert second.events == SCENARIO_EVENTS - first.events
    assert _lake_state(lake)[:2] == (SCENARIO_EVENTS, SCENARIO_EVENTS)
    assert _rejects(lake) == rejects_after_damage  # the whole copy has no bad line: it adds no reject
    # every reject the damaged copy's summary counted is in the table, the break included, saying where
    assert rejects_after_damage == first.rejects
    faults = _lake_state(lake)[2]
    assert [(src, reason) for src, _line, reason in faults] == [(str(damaged), first.first_rejects[-1].reason)]
    assert faults[0][1] is not None and faults[0][1] > first.events  # the line it broke in

    # either copy again: nothing more, nothing twice
    for again in (intact, damaged, intact):
        stats = _ingest(lake, again)
        assert stats.events == 0
        assert _lake_state(lake)[:2] == (SCENARIO_EVENTS, SCENARIO_EVENTS)
        assert _rejects(lake) == rejects_after_damage


@pytest.mark.parametrize("copies", [0.5, 0.95], indirect=True, ids=["middle", "95pct"])
def test_a_whole_copy_then_a_damaged_one_records_the_damage_once(copies: tuple[Path, Path], lake_dir: Path) -> None:
    intact, damaged = copies
    lake = Lake(lake_dir)
    assert _ingest(lake, intact).events == SCENARIO_EVENTS
    rejects: list[int] = []
    for _ in range(2):
        stats = _ingest(lake, damaged)
        assert stats.events == 0
        events, ids, faults = _lake_state(lake)
        assert (events, ids) == (SCENARIO_EVENTS, SCENARIO_EVENTS)
        assert len(faults) == 1 and faults[0][0] == str(damaged)
        assert faults[0][2].startswith("corrupt gzip: ") and f"of {damaged})" in faults[0][2]
        # the break, and the garbage lines past the log's end if the damage made more lines than it has
        rejects.append(_rejects(lake))
    assert rejects[0] >= 1 and rejects[1] == rejects[0]
    assert _ingest(lake, intact).events == 0
    assert _lake_state(lake)[:2] == (SCENARIO_EVENTS, SCENARIO_EVENTS) and _rejects(lake) == rejects[0]


def test_damage_found_chunks_later_makes_a_whole_copy_read_those_chunks_again(tmp_path: Path, lake_dir: Path) -> None:
    """One gzip member over many chunks: the chunks before the CRC fails are committed before it is known."""
    text = _many_events(3000)
    whole = _gzip(text)
    damaged = tmp_path / "tetragon.log.1.gz"
    damaged.write_bytes(_damaged(whole, 0.6))
    lake = Lake(lake_dir)
    first = _ingest(lake, damaged, chunk_bytes=64 * 1024)
    assert len(text) > 10 * 64 * 1024  # many chunks
    assert 0 < first.events < 3000 and first.first_rejects[-1].reason.startswith("corrupt gzip: ")
    rejects_after_damage = _rejects(lake)
    # the whole log, plain (the rotated file the damaged backup was compressed from): same first line
    plain = tmp_path / "tetragon.log.1"
    plain.write_bytes(text)
    second = _ingest(lake, plain, chunk_bytes=64 * 1024)
    assert first.events + second.events == 3000
    assert _lake_state(lake)[:2] == (3000, 3000)
    assert _rejects(lake) == rejects_after_damage == first.rejects
    # and once it is whole, the lake counts it read: the gzip'd whole copy adds nothing, skips every line
    gz = tmp_path / "tetragon.log.1.whole.gz"
    gz.write_bytes(whole)
    third = _ingest(lake, gz, chunk_bytes=64 * 1024)
    assert (third.events, third.skipped_lines, third.duplicates) == (0, 3000, 0)
    assert _lake_state(lake)[:2] == (3000, 3000)


@pytest.mark.parametrize("copies", [0.95], indirect=True, ids=["95pct"])
def test_cli_the_summary_and_the_rejects_table_agree_on_a_damaged_copy(
    copies: tuple[Path, Path], lake_dir: Path, tetrapipe_cmd: list[str]
) -> None:
    """The user's report: the summary listed ``corrupt gzip: … incorrect data check``, the table did not hold it."""
    intact, damaged = copies

    def cli(path: Path) -> str:
        proc = subprocess.run(
            [*tetrapipe_cmd, "ingest", str(path), "--lake", str(lake_dir), "--rules", "none"],
            capture_output=True,
            timeout=120,
            text=True,
        )
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
        return proc.stdout

    out = cli(damaged)
    lake = Lake(lake_dir)
    events, _ids, faults = _lake_state(lake)
    assert len(faults) == 1 and faults[0][0] == str(damaged)
    assert f"{_rejects(lake)} lines rejected" in out  # the summary's count is the table's
    cli(intact)
    assert _lake_state(lake)[:2] == (SCENARIO_EVENTS, SCENARIO_EVENTS)


@pytest.mark.parametrize("copies", [0.5], indirect=True, ids=["middle"])
def test_cli_with_the_shipped_rules_a_damaged_then_a_whole_copy_raise_the_alerts_of_the_whole_once(
    copies: tuple[Path, Path], tmp_path: Path, tetrapipe_cmd: list[str]
) -> None:
    """The events the whole copy adds go through the rules as any others: the alerts are those of the whole log."""
    intact, damaged = copies

    def cli(path: Path, lake: Path) -> None:
        proc = subprocess.run(
            [*tetrapipe_cmd, "ingest", str(path), "--lake", str(lake), "--quiet"], capture_output=True, timeout=120
        )
        assert proc.returncode == 0 and b"Traceback" not in proc.stderr, proc.stderr.decode()

    def alerts(lake: Path) -> list[tuple[str, int]]:
        con = connect(Lake(lake))
        try:
            return con.execute("SELECT alert_id, sum(count) FROM alerts GROUP BY alert_id ORDER BY 1").fetchall()
        finally:
            con.close()

    cli(damaged, tmp_path / "mended")
    cli(intact, tmp_path / "mended")
    cli(intact, tmp_path / "whole")
    assert _lake_state(Lake(tmp_path / "mended"))[:2] == (SCENARIO_EVENTS, SCENARIO_EVENTS)
    whole = alerts(tmp_path / "whole")
    assert whole and alerts(tmp_path / "mended") == whole
