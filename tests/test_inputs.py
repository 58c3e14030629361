"""Issue 14, the input side: any input, any fault, never a crash.

Truncated and still-being-written gzip files, FIFOs, ``<(…)`` and stdin,
lines over the limit whatever the chunking, one bad record costing one record,
and the same event read from two files stored once. Every test feeds real
files, pipes or processes and checks what the lake holds afterwards.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import threading
import zlib
from pathlib import Path

import pyarrow as pa
import pytest
from conftest import REAL_LOGS

from tetrapipe.flows.ingest import IngestStats, ingest
from tetrapipe.flows.run import run
from tetrapipe.lake import Lake, connect
from tetrapipe.sources.files import InputFile, expand_inputs, scan_inputs
from tetrapipe.sources.lines import read_line_batches
from tetrapipe.sources.streams import GzipStream, InputFault

MAX_LINE = 4 * 1024 * 1024


# --- helpers ---------------------------------------------------------------------------------


def _real_lines() -> list[bytes]:
    """The real sample events, each a distinct valid Tetragon event (55 of them)."""
    return [ln for p in REAL_LOGS for ln in p.read_bytes().splitlines() if ln.strip()]


def _events(start: int, n: int, *, day: str = "2024-05-01", pad: int = 0) -> list[bytes]:
    """Distinct real-shaped exec events (one real event with another time and pid per line)."""
    base = json.loads(REAL_LOGS[0].read_text().splitlines()[2])
    out = []
    for i in range(start, start + n):
        base["time"] = f"{day}T10:{(i // 60) % 60:02d}:{i % 60:02d}.{i:09d}Z"
        base["process_exec"]["process"]["pid"] = 100_000 + i
        if pad:
            base["process_exec"]["process"]["arguments"] = "x" * pad
        out.append(json.dumps(base, separators=(",", ":")).encode())
    return out


def _write(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"".join(ln + b"\n" for ln in lines))
    return path


def _one(lake: Lake, sql: str) -> tuple:
    con = connect(lake)
    try:
        return con.execute(sql).fetchone()
    finally:
        con.close()


def _counts(lake: Lake) -> tuple[int, int]:
    """(rows, distinct event_ids) in the events table."""
    return _one(lake, "SELECT count(*), count(DISTINCT event_id) FROM events")


def _rejects(lake: Lake) -> list[tuple[str, int | None, str]]:
    con = connect(lake)
    try:
        return con.execute("SELECT source, source_offset, reason FROM rejects ORDER BY source_offset").fetchall()
    finally:
        con.close()


def _cli(cmd: list[str], *args: str, **kw: object) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run([*cmd, *args], capture_output=True, timeout=120, **kw)  # type: ignore[call-overload]
    assert b"Traceback" not in proc.stderr and b"Aborted" not in proc.stderr, proc.stderr.decode()
    return proc


def _complete_lines_of(gz_prefix: bytes) -> int:
    """How many whole lines the inflatable part of a cut gzip holds (what zlib can get out of it)."""
    return zlib.decompressobj(wbits=31).decompress(gz_prefix).count(b"\n")


# --- 1. truncated and still-being-written gzip -----------------------------------------------


def test_half_a_gzip_gives_every_complete_line_and_one_reject(
    tmp_path: Path, lake_dir: Path, tetrapipe_cmd: list[str]
) -> None:
    lines = _real_lines()
    whole = gzip.compress(b"".join(ln + b"\n" for ln in lines))
    half = tmp_path / "tetragon-2026-01-02T15-04-05.000.log.gz"
    half.write_bytes(whole[: len(whole) // 2])
    complete = _complete_lines_of(half.read_bytes())
    assert 0 < complete < len(lines)
    proc = _cli(tetrapipe_cmd, "ingest", str(half), "--lake", str(lake_dir), "--rules", "none")
    assert proc.returncode == 0, proc.stderr.decode()
    lake = Lake(lake_dir)
    assert _counts(lake) == (complete, complete)
    reason = f"truncated gzip: stream ends at byte {len(whole) // 2} of {half}"
    assert _rejects(lake) == [(str(half), complete + 1, reason)]
    assert reason in proc.stdout.decode()
    # the events are the first lines of the log, not some other subset
    con = connect(lake)
    got = {r[0] for r in con.execute("SELECT source_offset FROM events").fetchall()}
    assert got == set(range(1, complete + 1))


def test_a_gzip_cut_inside_its_first_line_or_header_is_one_reject(tmp_path: Path, lake_dir: Path) -> None:
    whole = gzip.compress(b"".join(ln + b"\n" for ln in _real_lines()))
    lake = Lake(lake_dir)
    for cut in (5, 40):  # inside the gzip header; inside the first line's deflate data
        f = tmp_path / f"cut{cut}.log.gz"
        f.write_bytes(whole[:cut])
        stats = ingest(expand_inputs([str(f)]), lake)
        assert (stats.events, stats.rejects) == (0, 1)
        assert stats.first_rejects[-1].reason == f"truncated gzip: stream ends at byte {cut} of {f}"
    assert _one(lake, "SELECT count(*) FROM rejects") == (2,)


def test_a_corrupt_gzip_keeps_what_precedes_the_damage(tmp_path: Path, lake_dir: Path) -> None:
    good = gzip.compress(b"".join(ln + b"\n" for ln in _events(0, 1500)))
    header = gzip.compress(b"")[:10]
    f = tmp_path / "damaged.log.gz"
    f.write_bytes(good + header + b"\xff" * 100)  # a second member whose first block has the reserved type
    stats = ingest(expand_inputs([str(f)]), Lake(lake_dir))
    assert (stats.events, stats.rejects) == (1500, 1)
    assert stats.first_rejects[0].reason == (
        f"corrupt gzip: Error -3 while decompressing data: invalid block type (at byte {len(good) + 10} of {f})"
    )


def test_a_gzip_whose_checksum_fails_keeps_every_line_then_says_so(tmp_path: Path, lake_dir: Path) -> None:
    """zlib checks the CRC at the member's end: the lines inflated in that same call are still delivered."""
    data = bytearray(gzip.compress(b"".join(ln + b"\n" for ln in _events(0, 1500))))
    data[-8] ^= 0xFF  # the trailer's CRC-32
    f = tmp_path / "bad-crc.log.gz"
    f.write_bytes(bytes(data))
    stats = ingest(expand_inputs([str(f)]), Lake(lake_dir))
    assert (stats.events, stats.rejects) == (1500, 1)
    assert stats.first_rejects[0].reason.startswith(
        "corrupt gzip: Error -3 while decompressing data: incorrect data check"
    )


def test_gzip_members_concatenated_and_zero_padding_read_whole(tmp_path: Path, lake_dir: Path) -> None:
    """What gzip itself accepts (``cat a.gz b.gz``, a tape's zero padding) is read whole, no reject."""
    a, b = _events(0, 500), _events(500, 500)
    f = tmp_path / "joined.log.gz"
    f.write_bytes(
        gzip.compress(b"".join(x + b"\n" for x in a)) + gzip.compress(b"".join(x + b"\n" for x in b)) + bytes(512)
    )
    stats = ingest(expand_inputs([str(f)]), Lake(lake_dir), chunk_bytes=64 * 1024)
    assert (stats.events, stats.rejects) == (1000, 0)


def test_gzip_stream_delivers_every_inflated_byte_then_names_the_cut() -> None:
    payload = b"".join(ln + b"\n" for ln in _events(0, 2000))
    whole = gzip.compress(payload)
    cut = len(whole) * 2 // 3
    s = GzipStream(io.BytesIO(whole[:cut]), "x.gz")
    got = bytearray()
    with pytest.raises(InputFault, match=f"truncated gzip: stream ends at byte {cut} of x.gz") as info:
        while chunk := s.read(10_000):
            got += chunk
    assert info.value.truncated
    assert bytes(got) == zlib.decompressobj(wbits=31).decompress(whole[:cut])
    with pytest.raises(InputFault):  # the fault is sticky: a reader asking again hears it again
        s.read(1)


def test_truncated_gzip_on_stdin_is_one_reject(lake_dir: Path, tetrapipe_cmd: list[str]) -> None:
    whole = gzip.compress(b"".join(ln + b"\n" for ln in _real_lines()))
    cut = whole[: len(whole) // 2]
    proc = _cli(tetrapipe_cmd, "ingest", "-", "--lake", str(lake_dir), "--rules", "none", input=cut)
    assert proc.returncode == 0, proc.stderr.decode()
    complete = _complete_lines_of(cut)
    lake = Lake(lake_dir)
    assert _counts(lake) == (complete, complete)
    assert _rejects(lake) == [("<stdin>", complete + 1, f"truncated gzip: stream ends at byte {len(cut)} of <stdin>")]


def _polls(d: Path, lake: Lake, between: list) -> list[IngestStats]:
    """``run`` over ``d`` until a poll finds nothing new; ``between[i]()`` runs after poll i."""
    seen: list[IngestStats] = []

    def on_poll(st: IngestStats) -> None:
        seen.append(st)
        if len(seen) <= len(between):
            between[len(seen) - 1]()

    run([str(d / "tetragon.log")], lake, [], exit_at_eof=True, poll_seconds=0.01, on_poll=on_poll)
    return seen


def test_run_reads_the_live_file_while_a_backup_is_being_compressed_beside_it(tmp_path: Path) -> None:
    """lumberjack writes ``<backup>.gz`` next to the plain backup, then deletes the plain one."""
    d = tmp_path / "t"
    d.mkdir()
    backup = _write(d / "tetragon-2026-03-10T09-00-00.000.log", _events(0, 400))
    live = _write(d / "tetragon.log", _events(400, 50))
    whole = gzip.compress(backup.read_bytes())
    gz = Path(str(backup) + ".gz")
    gz.write_bytes(whole[: len(whole) // 2])
    lake = Lake(tmp_path / "lake")

    def finish_compressing() -> None:
        gz.write_bytes(whole)
        backup.unlink()
        with open(live, "ab") as f:
            f.write(b"".join(x + b"\n" for x in _events(450, 10)))

    polls = _polls(d, lake, [finish_compressing])
    assert [p.events for p in polls] == [450, 10, 0]
    assert sum(p.rejects for p in polls) == 0
    assert _counts(lake) == (460, 460)


def test_run_retries_an_in_progress_gzip_on_a_later_poll_and_reads_it_once(tmp_path: Path) -> None:
    """A ``.gz`` still being written and no plain copy beside it: its whole lines now, the rest later."""
    d = tmp_path / "t"
    d.mkdir()
    _write(d / "tetragon.log", _events(400, 50))
    whole = gzip.compress(b"".join(x + b"\n" for x in _events(0, 400)))
    gz = d / "tetragon-2026-03-10T09-00-00.000.log.gz"
    gz.write_bytes(whole[: len(whole) // 2])
    complete = _complete_lines_of(gz.read_bytes())
    lake = Lake(tmp_path / "lake")
    polls = _polls(d, lake, [lambda: gz.write_bytes(whole)])
    assert [p.events for p in polls] == [complete + 50, 400 - complete, 0]
    assert sum(p.rejects for p in polls) == 0  # being written is not a fault
    assert _counts(lake) == (450, 450)
    assert run([str(d / "tetragon.log")], lake, [], exit_at_eof=True, poll_seconds=0.01).events == 0  # done


def test_run_gives_up_on_a_gzip_truncated_long_ago_with_one_reject(tmp_path: Path) -> None:
    d = tmp_path / "t"
    d.mkdir()
    _write(d / "tetragon.log", _events(400, 5))
    whole = gzip.compress(b"".join(x + b"\n" for x in _events(0, 400)))
    gz = d / "tetragon-2026-03-10T09-00-00.000.log.gz"
    gz.write_bytes(whole[: len(whole) // 2])
    os.utime(gz, (1_700_000_000, 1_700_000_000))  # unchanged for ages: no writer will finish it
    complete = _complete_lines_of(gz.read_bytes())
    lake = Lake(tmp_path / "lake")
    totals = run([str(d / "tetragon.log")], lake, [], exit_at_eof=True, poll_seconds=0.01)
    assert (totals.events, totals.rejects) == (complete + 5, 1)
    again = run([str(d / "tetragon.log")], lake, [], exit_at_eof=True, poll_seconds=0.01)
    assert (again.events, again.rejects) == (0, 0)  # given up on once, not re-read at every poll
    assert [r[2] for r in _rejects(lake)] == [f"truncated gzip: stream ends at byte {len(whole) // 2} of {gz}"]


# --- 2. FIFOs, <(…) and - ----------------------------------------------------------------------


def _feed(path_or_fd: str | int, data: bytes, pieces: int = 7) -> threading.Thread:
    """A writer that opens the pipe (blocking until the reader opens it) and writes ``data`` in pieces."""

    def write() -> None:
        fd = path_or_fd if isinstance(path_or_fd, int) else os.open(path_or_fd, os.O_WRONLY)
        try:
            step = max(1, len(data) // pieces)
            for i in range(0, len(data), step):
                os.write(fd, data[i : i + step])
        finally:
            os.close(fd)

    t = threading.Thread(target=write, daemon=True)
    t.start()
    return t


def test_ingest_reads_a_fifo_as_a_stream(tmp_path: Path, lake_dir: Path, tetrapipe_cmd: list[str]) -> None:
    fifo = tmp_path / "events.fifo"
    os.mkfifo(fifo)
    lines = _events(0, 1000)
    writer = _feed(str(fifo), b"".join(x + b"\n" for x in lines))
    try:
        proc = _cli(
            tetrapipe_cmd, "ingest", str(fifo), "--lake", str(lake_dir), "--rules", "none", "--chunk-bytes", "262144"
        )
    finally:
        if writer.is_alive():  # the reader never opened it: let the writer's open return
            os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
    writer.join(10)
    assert proc.returncode == 0, proc.stderr.decode()
    assert _counts(Lake(lake_dir)) == (1000, 1000)


def test_ingest_reads_process_substitution_plain_and_gzip(lake_dir: Path, tetrapipe_cmd: list[str]) -> None:
    """``tetrapipe ingest <(kubectl logs …) <(zcat …)``: bash hands over /dev/fd/N of a pipe."""
    plain_r, plain_w = os.pipe()
    gz_r, gz_w = os.pipe()
    writers = [
        _feed(plain_w, b"".join(x + b"\n" for x in _events(0, 1000))),
        _feed(gz_w, gzip.compress(b"".join(x + b"\n" for x in _events(1000, 1000)))),
    ]
    try:
        proc = _cli(
            tetrapipe_cmd,
            "ingest",
            f"/dev/fd/{plain_r}",
            f"/dev/fd/{gz_r}",
            "--lake",
            str(lake_dir),
            "--rules",
            "none",
            pass_fds=(plain_r, gz_r),
        )
    finally:
        os.close(plain_r)
        os.close(gz_r)
    for w in writers:
        w.join(10)
    assert proc.returncode == 0, proc.stderr.decode()
    assert _counts(Lake(lake_dir)) == (2000, 2000)


def test_ingest_reads_stdin_in_process(monkeypatch: pytest.MonkeyPatch, lake_dir: Path) -> None:
    r, w = os.pipe()
    writer = _feed(w, b"".join(x + b"\n" for x in _events(0, 500)))
    with os.fdopen(r, "rb") as stdin:
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(stdin))
        stats = ingest(scan_inputs(["-"]).inputs, Lake(lake_dir), chunk_bytes=128 * 1024)
    writer.join(10)
    assert (stats.events, stats.rejects) == (500, 0)


def test_listing_a_fifo_does_not_open_it(tmp_path: Path) -> None:
    """Opening a FIFO to probe it would block without a writer, and break the writer's pipe after."""
    fifo = tmp_path / "p"
    os.mkfifo(fifo)
    listed: list[str] = []
    lister = threading.Thread(
        target=lambda: listed.extend(i.path for i in scan_inputs([str(fifo)]).inputs), daemon=True
    )
    lister.start()
    lister.join(10)
    blocked = lister.is_alive()
    if blocked:  # an open for reading waits for a writer: be that writer so the thread can end
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        lister.join(10)
    assert not blocked, "scan_inputs opened the FIFO"
    assert listed == [str(fifo)]


# --- 3. lines over the limit, whatever the chunking ---------------------------------------------


@pytest.mark.parametrize("chunk", [1000, 64 * 1024])
def test_line_reader_rejects_an_over_long_line_at_any_chunk_size(chunk: int) -> None:
    data = b'{"a":1}\n' + b"y" * 5000 + b'\n{"b":2}\n'
    good, bad = [], []
    for b in read_line_batches(io.BytesIO(data), chunk_bytes=chunk, max_line_bytes=4096):
        good += b.line_nos.to_pylist()
        bad += [(x.line_no, x.reason) for x in b.bad]
    assert good == [1, 3]
    assert bad == [(2, "line longer than 4096 bytes, skipped")]


def _long_line_log(path: Path) -> Path:
    over = _events(1, 1, pad=MAX_LINE)[0]  # a real event whose arguments push it past 4 MiB
    assert len(over) > MAX_LINE
    return _write(path, [_events(0, 1)[0], over, _events(2, 1)[0]])


@pytest.mark.parametrize("chunk", [1024 * 1024, 24 * 1024 * 1024])
def test_ingest_rejects_a_line_over_4_mib_at_any_chunk_size(tmp_path: Path, lake_dir: Path, chunk: int) -> None:
    f = _long_line_log(tmp_path / "long.log")
    lake = Lake(lake_dir)
    stats = ingest(expand_inputs([str(f)]), lake, chunk_bytes=chunk)
    assert (stats.events, stats.rejects) == (2, 1)
    assert _rejects(lake) == [(str(f), 2, f"line longer than {MAX_LINE} bytes, skipped")]


@pytest.mark.parametrize("chunk", [1024 * 1024, 24 * 1024 * 1024])
def test_run_rejects_a_line_over_4_mib_at_any_chunk_size(tmp_path: Path, chunk: int) -> None:
    d = tmp_path / "t"
    d.mkdir()
    f = _long_line_log(d / "tetragon.log")
    lake = Lake(tmp_path / "lake")
    totals = run([str(f)], lake, [], exit_at_eof=True, poll_seconds=0.01, chunk_bytes=chunk)
    assert (totals.events, totals.rejects) == (2, 1)
    assert _rejects(lake) == [(str(f), 2, f"line longer than {MAX_LINE} bytes, skipped")]


# --- 4. one bad record costs one record ----------------------------------------------------------


def _poison_log(path: Path) -> tuple[Path, int]:
    """2,000 good events and one ``"args":"notalist"`` kprobe in the middle; returns the poison's line."""
    kprobe = next(json.loads(ln) for ln in _real_lines() if b'"process_kprobe"' in ln)
    kprobe["process_kprobe"]["args"] = "notalist"
    lines = _events(0, 2000)
    lines.insert(1000, json.dumps(kprobe, separators=(",", ":")).encode())
    return _write(path, lines), 1001


def test_one_poison_line_among_2000_costs_at_most_itself(
    tmp_path: Path, lake_dir: Path, tetrapipe_cmd: list[str]
) -> None:
    f, poison = _poison_log(tmp_path / "poison.log")
    proc = _cli(tetrapipe_cmd, "ingest", str(f), "--lake", str(lake_dir))  # the shipped rules too
    assert proc.returncode == 0, proc.stderr.decode()
    lake = Lake(lake_dir)
    events = _one(
        lake,
        f"SELECT count(*) FILTER (WHERE source_offset != {poison}), "
        f"count(*) FILTER (WHERE source_offset = {poison}) FROM events",
    )
    rejects = _one(lake, f"SELECT count(*) FILTER (WHERE source_offset = {poison}), count(*) FROM rejects")
    assert events[0] == 2000
    assert events[1] + rejects[0] == 1 and rejects[1] == rejects[0]


def _fails_on(pid: int) -> object:
    def transform(events: pa.Table) -> tuple[pa.Table, dict]:
        if pid in events.column("pid").to_pylist():
            raise ValueError(f"cannot handle pid {pid}")
        return events, {}

    return transform


def test_a_transform_raising_on_one_event_costs_that_event(tmp_path: Path, lake_dir: Path) -> None:
    f = _write(tmp_path / "t.log", _events(0, 1000))
    lake = Lake(lake_dir)
    stats = ingest(expand_inputs([str(f)]), lake, transforms=[_fails_on(100_234)], chunk_bytes=256 * 1024)
    assert (stats.events, stats.rejects) == (999, 1)
    assert _one(lake, "SELECT count(*) FROM events WHERE pid = 100234") == (0,)
    [(source, line, reason)] = _rejects(lake)
    assert (source, line) == (str(f), 235)
    assert reason.startswith("transform _fails_on.<locals>.transform failed on this event: ValueError: cannot handle")


def test_run_one_poison_line_and_one_event_a_transform_cannot_take_cost_at_most_themselves(tmp_path: Path) -> None:
    d = tmp_path / "t"
    d.mkdir()
    f, poison = _poison_log(d / "tetragon.log")
    lake = Lake(tmp_path / "lake")
    totals = run([str(f)], lake, [_fails_on(100_500)], exit_at_eof=True, poll_seconds=0.01, chunk_bytes=64 * 1024)
    assert totals.events + totals.rejects == 2001
    assert _one(lake, f"SELECT count(*) FROM events WHERE source_offset != {poison}") == (1999,)
    assert _one(lake, "SELECT count(*) FROM rejects WHERE source_offset = 501 AND reason LIKE 'transform %'") == (1,)


def test_a_file_that_vanishes_before_it_is_read_is_a_reject_and_the_others_go_in(
    tmp_path: Path, lake_dir: Path
) -> None:
    gone = tmp_path / "gone.log"
    good = _write(tmp_path / "good.log", _events(0, 10))
    stats = ingest([InputFile(str(gone)), InputFile(str(good))], Lake(lake_dir))
    assert (stats.events, stats.rejects) == (10, 1)
    assert _rejects(Lake(lake_dir)) == [(str(gone), None, "disappeared before it could be read")]


class _FailingDisk(io.RawIOBase):
    """A file whose reads fail with EIO after ``good`` bytes (a dying disk, a dropped NFS mount)."""

    def __init__(self, data: bytes, good: int) -> None:
        self._data, self._good, self._pos = data, good, 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: memoryview) -> int:  # type: ignore[override]
        if self._pos >= self._good:
            raise OSError(5, "Input/output error")
        n = min(len(b), self._good - self._pos)
        b[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n


def test_a_read_error_ends_that_input_with_a_reject_not_the_run() -> None:
    data = b"".join(x + b"\n" for x in _events(0, 100))
    cut = data.index(b"\n", len(data) // 2) + 30  # inside line 51
    batches = list(read_line_batches(io.BufferedReader(_FailingDisk(data, cut)), chunk_bytes=1024))
    good = [n for b in batches for n in b.line_nos.to_pylist()]
    bad = [(x.line_no, x.reason) for b in batches for x in b.bad]
    assert good == list(range(1, 51))
    assert bad == [(51, "read failed: Input/output error")]
    assert batches[-1].lines_total == 50  # the unread line is not counted as consumed


# --- 5. the same event from two files is stored once --------------------------------------------


def test_the_same_events_from_two_files_are_stored_once(tmp_path: Path, lake_dir: Path) -> None:
    lines = _real_lines()
    a = _write(tmp_path / "events-docs.log", lines)
    b = _write(tmp_path / "copy.log", lines[5:] + lines[:5])  # another first line: another fingerprint
    lake = Lake(lake_dir)
    stats = ingest(expand_inputs([str(a), str(b)]), lake)
    assert stats.events == len(lines)
    assert _counts(lake) == (len(lines), len(lines))
    again = ingest(expand_inputs([str(_write(tmp_path / "third.log", lines[::-1]))]), lake)
    assert again.events == 0 and again.duplicates == len(lines)
    assert _counts(lake) == (len(lines), len(lines))


def test_the_summary_says_events_from_another_file_were_skipped(tmp_path: Path, lake_dir: Path) -> None:
    import subprocess
    import sys

    lines = _real_lines()
    a = _write(tmp_path / "events-docs.log", lines)
    b = _write(tmp_path / "copy.log", lines[::-1])
    tp = [sys.executable, "-m", "tetrapipe", "ingest", "--lake", str(lake_dir), "--rules", "none"]
    subprocess.run([*tp, str(a)], check=True, capture_output=True)
    out = subprocess.run([*tp, str(b)], check=True, capture_output=True, text=True).stdout
    assert f"skipped {len(lines)} events the lake already holds from another file" in out
    assert "fully ingested before" not in out  # no line of copy.log was read before


def test_duplicates_in_flight_within_one_run_are_stored_once(tmp_path: Path, lake_dir: Path) -> None:
    """Small chunks: the second file starts with copies of the first's last lines, still on their way to the lake."""
    lines = _events(0, 200, day="2024-05-01") + _events(200, 200, day="2024-05-02")
    a = _write(tmp_path / "a.log", lines)
    b = _write(tmp_path / "b.log", [*lines[-30:], _events(9000, 1)[0], *lines[150:250], lines[10]])
    lake = Lake(lake_dir)
    stats = ingest(expand_inputs([str(a), str(b), str(a)]), lake, chunk_bytes=16 * 1024)
    assert stats.events == 401 and stats.duplicates == 131
    assert _counts(lake) == (401, 401)


def test_ids_sent_to_the_writer_count_as_stored_until_their_commit(lake_dir: Path) -> None:
    from tetrapipe.flows.dedup import EventDedup
    from tetrapipe.transforms.normalize import normalize_lines

    batch = normalize_lines(_events(0, 5)).events
    dedup = EventDedup(Lake(lake_dir))
    token = dedup.hold(batch.column("event_id").slice(1, 2))
    kept, dropped = dedup.drop_seen(batch)
    assert dropped == 2 and kept.column("pid").to_pylist() == [100_000, 100_003, 100_004]
    dedup.release(token)  # (committed, or given up on: either way not held any more)
    assert dedup.drop_seen(batch)[1] == 0
    twice = pa.concat_tables([batch, batch.slice(0, 2)])
    kept, dropped = dedup.drop_seen(twice)
    assert dropped == 2 and kept.num_rows == 5


def test_run_stores_a_rotated_copy_of_the_same_events_once(tmp_path: Path) -> None:
    d = tmp_path / "t"
    d.mkdir()
    lines = _events(0, 200)
    _write(d / "tetragon.log", lines[100:])
    _write(d / "tetragon.log.1", lines[:150])  # a copy that overlaps the live file by 50 events
    lake = Lake(tmp_path / "lake")
    totals = run([str(d / "tetragon.log")], lake, [], exit_at_eof=True, poll_seconds=0.01)
    assert totals.events == 200
    assert _counts(lake) == (200, 200)


def test_force_still_ingests_again(tmp_path: Path, lake_dir: Path) -> None:
    f = _write(tmp_path / "a.log", _events(0, 20))
    lake = Lake(lake_dir)
    ingest(expand_inputs([str(f)]), lake)
    assert ingest(expand_inputs([str(f)]), lake, force=True).events == 20
    assert _counts(lake) == (40, 20)


def test_an_event_without_time_is_deduplicated_too(tmp_path: Path, lake_dir: Path) -> None:
    timeless = json.loads(_events(0, 1)[0])
    del timeless["time"]
    line = json.dumps(timeless).encode()
    lake = Lake(lake_dir)
    ingest(expand_inputs([str(_write(tmp_path / "a.log", [line]))]), lake)
    ingest(expand_inputs([str(_write(tmp_path / "b.log", [_events(5, 1)[0], line]))]), lake)
    assert _counts(lake) == (2, 2)


def test_the_time_ranges_come_from_the_delta_log_and_only_overlapping_files_are_read(
    tmp_path: Path, lake_dir: Path
) -> None:
    """New events later than the lake cost no read of a data file; copies cost only the files they overlap."""
    from tetrapipe.flows.dedup import EventDedup

    lake = Lake(lake_dir)
    ingest(expand_inputs([str(_write(tmp_path / "a.log", _events(0, 1000)))]), lake, chunk_bytes=64 * 1024)
    files = pa.table(lake.table("events").get_add_actions(flatten=True))
    assert files.num_rows > 5 and "min.time" in files.column_names  # the statistics the dedup reads
    later = EventDedup(lake)
    stats = ingest(
        expand_inputs([str(_write(tmp_path / "b.log", _events(5000, 300)))]), lake, chunk_bytes=64 * 1024, dedup=later
    )
    assert (stats.events, stats.duplicates, later.files_read) == (300, 0, 0)
    copies = EventDedup(lake)
    stats = ingest(expand_inputs([str(_write(tmp_path / "c.log", _events(990, 20)))]), lake, dedup=copies)
    assert (stats.events, stats.duplicates) == (10, 10)  # 990..999 were in, 1000..1009 are new
    assert 0 < copies.files_read <= 2  # the one or two files around event 990, not the lake's > 5
    copies.close()
    later.close()


# --- file names ------------------------------------------------------------------------------


def test_a_file_name_that_is_not_utf8_is_read_and_named_with_its_bytes_escaped(
    tmp_path: Path, lake_dir: Path, tetrapipe_cmd: list[str]
) -> None:
    """A name is bytes: one that is not UTF-8 (``bad\\xff.log``) crashed ingest before anything was stored, the
    good files beside it included (DuckDB and Arrow cannot take the surrogate Python decodes it to). Its events
    are stored with the name written ``bad\\xff.log``, a rejected line of it too, and ``run`` reads it as well."""
    d = tmp_path / "logs"
    d.mkdir()
    _write(d / "good.log", _events(0, 5))
    bad = os.fsdecode(bytes(d) + b"/bad\xff.log")
    _write(Path(bad), [*_events(5, 7), b"not json"])
    proc = _cli(tetrapipe_cmd, "ingest", str(d), "--lake", str(lake_dir), "--rules", "none", "-q")
    assert proc.returncode == 0, proc.stderr.decode()
    lake = Lake(lake_dir)
    assert _counts(lake) == (12, 12)
    assert _one(lake, "SELECT count(*) FROM events WHERE source LIKE '%bad\\xff.log'") == (7,)
    assert [(os.path.basename(s), n) for s, n, _ in _rejects(lake)] == [("bad\\xff.log", 8)]
    ran = Lake(tmp_path / "ran")
    totals = run([bad], ran, [], exit_at_eof=True)
    assert (totals.events, totals.rejects) == (7, 1) and _counts(ran) == (7, 7)


def test_a_last_line_still_being_written_is_read_again_whole_by_a_later_ingest(
    tmp_path: Path, lake_dir: Path, tetrapipe_cmd: list[str]
) -> None:
    """A log ingested while its last line was half written: that line is a reject then, and the whole event once
    the file has grown; it used to be counted as read, so the next ingest resumed in its middle (a false
    'number with leading zero' reject, the event lost, from this file and from any whole copy of it)."""
    lines = _events(0, 13)
    log = tmp_path / "tetragon.log"
    log.write_bytes(b"".join(ln + b"\n" for ln in lines[:11]) + lines[11][:150])  # line 12 cut, no newline
    lake = Lake(lake_dir)
    args = ("--lake", str(lake_dir), "--rules", "none", "-q")
    for _ in range(2):  # the same half line read twice: its reject is stored once
        assert _cli(tetrapipe_cmd, "ingest", str(log), *args).returncode == 0
        assert _counts(lake) == (11, 11)
        assert [(n, r.split(":")[0]) for _, n, r in _rejects(lake)] == [(12, "truncated JSON")]
    with open(log, "ab") as f:  # the writer finishes the line and writes another
        f.write(lines[11][150:] + b"\n" + lines[12] + b"\n")
    assert _cli(tetrapipe_cmd, "ingest", str(log), *args).returncode == 0
    assert _counts(lake) == (13, 13)
    assert [n for _, n, _ in _rejects(lake)] == [12]  # only the reject of the half line, as it was then
    whole = _write(tmp_path / "copy.log", lines)
    assert _cli(tetrapipe_cmd, "ingest", str(whole), *args).returncode == 0
    assert _counts(lake) == (13, 13) and len(_rejects(lake)) == 1
    # a file that only lacks its final newline, its last line a whole event, is read to its end as before
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "x.log").write_bytes(b"\n".join(_events(100, 3)))
    assert (
        _cli(tetrapipe_cmd, "ingest", str(plain), "--lake", str(tmp_path / "l2"), "--rules", "none", "-q").returncode
        == 0
    )
    assert _counts(Lake(tmp_path / "l2")) == (3, 3)
