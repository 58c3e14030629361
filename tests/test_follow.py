"""The file follower against real files: rotation as lumberjack does it, gzip, truncation, partial and long lines.

Every test writes real files in a temporary directory and renames, truncates
or compresses them the way Tetragon's exporter (or logrotate) does, then
checks the follower emitted every complete line exactly once, in order, and
that a follower restarted from any checkpoint continues exactly there.
"""

from __future__ import annotations

import gzip
import json
import os
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tetrapipe.sources.chunks import Chunk, LineSplitter, Reject
from tetrapipe.sources.follow import FileFollower
from tetrapipe.sources.stdin import StreamFollower


def ev(i: int, node: str = "kind-worker1", pad: int = 0) -> bytes:
    """A Tetragon-shaped export line with a sequence number."""
    body = {
        "process_exec": {"process": {"exec_id": f"id{i}", "pid": i, "binary": "/bin/sh", "arguments": "x" * pad}},
        "node_name": node,
        "time": f"2026-03-10T09:00:00.{i:09d}Z",
    }
    return json.dumps(body, separators=(",", ":")).encode()


def seq(line: bytes) -> int:
    return json.loads(line)["process_exec"]["process"]["pid"]


def write(path: Path, lines: list[bytes], mode: str = "ab") -> None:
    with open(path, mode) as f:
        f.write(b"".join(ln + b"\n" for ln in lines))


def drain(f: FileFollower, chunks: list[Chunk] | None = None) -> list[bytes]:
    out: list[bytes] = []
    while (c := f.read()) is not None:
        out += c.lines
        if chunks is not None:
            chunks.append(c)
    return out


def rotate(live: Path, stamp: int, *, compress: bool = False) -> Path:
    """lumberjack: rename to <stem>-<UTC time>.log, create a new file; optionally gzip the backup."""
    backup = live.with_name(f"tetragon-2026-01-02T15-04-{stamp:02d}.000.log")
    os.rename(live, backup)
    live.touch()
    if compress:
        with open(backup, "rb") as src, gzip.open(str(backup) + ".gz", "wb") as dst:
            dst.write(src.read())
        backup.unlink()
        return Path(str(backup) + ".gz")
    return backup


@pytest.fixture
def live(tmp_path: Path) -> Path:
    return tmp_path / "tetragon.log"


def test_partial_lines_are_never_emitted(live: Path) -> None:
    f = FileFollower(live, start="beginning", chunk_bytes=16)
    assert f.read() is None  # the file does not exist yet
    with open(live, "wb") as w:
        w.write(ev(1) + b"\n" + ev(2)[:10])
    assert drain(f) == [ev(1)]
    assert f.position()["file"]["offset"] == len(ev(1)) + 1  # the half line is not covered
    with open(live, "ab") as w:
        w.write(ev(2)[10:])
    assert drain(f) == []
    with open(live, "ab") as w:
        w.write(b"\n")
    assert drain(f) == [ev(2)]


def test_rename_and_create_reads_old_file_to_its_end_then_new(live: Path) -> None:
    write(live, [ev(i) for i in range(3)])
    f = FileFollower(live, start="beginning")
    assert [seq(x) for x in drain(f)] == [0, 1, 2]
    write(live, [ev(3), ev(4)])  # written just before the rotation, never seen at the live path
    rotate(live, 1)
    write(live, [ev(5)])
    assert [seq(x) for x in drain(f)] == [3, 4, 5]
    assert f.rotations == 1


def test_behind_several_rotations_reads_unread_backups_in_order_plain_and_gzip(live: Path) -> None:
    write(live, [ev(0)])
    f = FileFollower(live, start="beginning")
    assert [seq(x) for x in drain(f)] == [0]
    write(live, [ev(1)])
    rotate(live, 1)  # the file being read: renamed, kept plain
    write(live, [ev(2), ev(3)])
    rotate(live, 2, compress=True)  # never opened by the follower: only its .gz remains
    write(live, [ev(4)])
    b3 = rotate(live, 3)
    # lumberjack compressing b3 right now: the .gz is half written while the plain file still exists
    with open(str(b3) + ".gz", "wb") as half:
        half.write(gzip.compress(b3.read_bytes())[:20])
    write(live, [ev(5)])
    assert [seq(x) for x in drain(f)] == [1, 2, 3, 4, 5]


def _stored_gz(path: Path, lines: list[bytes]) -> None:
    """A gzip file whose size depends only on the length of its content (stored, fixed header)."""
    with open(path, "r+b" if path.exists() else "wb") as raw:
        raw.seek(0)
        with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=0, filename="", mtime=0) as gz:
            gz.write(b"".join(ln + b"\n" for ln in lines))


def test_a_new_backup_on_a_reused_inode_of_the_same_size_is_not_taken_for_a_read_one(live: Path) -> None:
    """Filesystems reuse a freed inode at once: lumberjack's next .gz can get the inode, and by chance the
    size, of a backup already read and deleted. Its identity must come from its content, not a stale
    fingerprint cached under (device, inode, size), or the whole file is skipped as "already read"."""
    old = live.with_name("tetragon-2026-01-02T15-04-01.000.log.gz")
    _stored_gz(old, [ev(100), ev(101)])
    write(live, [ev(0)])
    f = FileFollower(live, start="beginning")
    assert [seq(x) for x in drain(f)] == [100, 101, 0]
    rotate(live, 2)
    write(live, [ev(3)])
    # lumberjack deletes the old backup past max-backups and writes a new .gz that lands on the same inode
    # with the same size (simulated: the same file rewritten in place, then given the new name)
    ino = old.stat().st_ino
    os.utime(old, ns=(old.stat().st_atime_ns, old.stat().st_mtime_ns + 1_000_000))  # written later
    _stored_gz(old, [ev(200), ev(201)])  # same lengths as ev(100), ev(101): same size
    new = live.with_name("tetragon-2026-01-02T15-04-03.000.log.gz")
    os.rename(old, new)
    assert new.stat().st_ino == ino
    rotate(live, 4)
    write(live, [ev(5)])
    assert [seq(x) for x in drain(f)] == [200, 201, 3, 5]  # backups by name (time) order, then live


def test_a_backup_deleted_before_it_was_read_is_reported_and_counted(live: Path) -> None:
    """Tetragon prunes backups past --export-file-max-backups whether read or not: say so, by name."""
    write(live, [ev(0)])
    f = FileFollower(live, start="beginning")
    assert [seq(x) for x in drain(f)] == [0]
    rotate(live, 1)  # the file being read
    write(live, [ev(2)])
    b2 = rotate(live, 2, compress=True)
    write(live, [ev(3)])
    rotate(live, 3, compress=True)
    write(live, [ev(4)])
    f.lag_bytes()  # the collector's once-a-second stats list the directory: b2 is seen, not read yet
    b2.unlink()  # pruned past max-backups before the follower got to it
    assert [seq(x) for x in drain(f)] == [3, 4]
    assert f.files_lost == 1 and b2.name in f.lost_warnings[0] and "deleted by rotation" in f.lost_warnings[0]
    rotate(live, 4)
    write(live, [ev(5)])
    assert [seq(x) for x in drain(f)] == [5] and f.files_lost == 1  # reported once; read files never


def test_a_backup_compressed_between_listing_and_open_is_read_from_its_gz(
    live: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """lumberjack gzips and unlinks a backup at any moment, also between our listing and our open."""
    import tetrapipe.sources.follow as follow

    write(live, [ev(0)])
    f = FileFollower(live, start="beginning")
    assert [seq(x) for x in drain(f)] == [0]
    rotate(live, 1)
    write(live, [ev(1)])
    b1 = rotate(live, 2)  # plain, unread
    write(live, [ev(2)])
    real, calls = follow._open_any, {"n": 0}

    def racing_open(path: str):
        if path == str(b1):
            calls["n"] += 1
            if calls["n"] == 2:  # listed (fingerprinted) first; now, as it is opened, it is compressed away
                with open(b1, "rb") as src, gzip.open(str(b1) + ".gz", "wb") as dst:
                    dst.write(src.read())
                b1.unlink()
        return real(path)

    monkeypatch.setattr(follow, "_open_any", racing_open)
    assert [seq(x) for x in drain(f)] == [1, 2] and f.files_lost == 0


def test_after_a_finished_backup_is_deleted_the_next_is_found_by_its_name_not_mtime(live: Path) -> None:
    """lumberjack compresses in the background: a .gz can be younger (mtime) than the next backup's last write."""
    f_gz = live.with_name("tetragon-2026-01-02T15-04-01.000.log.gz")
    with gzip.open(f_gz, "wb") as gz:
        gz.write(ev(1) + b"\n")
    g = live.with_name("tetragon-2026-01-02T15-04-02.000.log")
    write(g, [ev(2)])
    late = f_gz.stat().st_mtime_ns + 5_000_000_000
    os.utime(f_gz, ns=(late, late))  # the mill got to F only after G was complete
    write(live, [ev(3)])
    f = FileFollower(live, start="beginning")
    first = f.read()
    assert first is not None and [seq(x) for x in first.lines] == [1]
    f_gz.unlink()  # pruned past max-backups right after we finished it
    assert [seq(x) for x in drain(f)] == [2, 3]


def test_a_rotation_between_listing_and_open_neither_skips_nor_doubles(
    live: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The live name is listed (and fingerprinted), then Tetragon rotates before we open it: the name now
    leads to the new file. Reading that one as the listed file would mark the wrong one as read."""
    import tetrapipe.sources.follow as follow

    write(live, [ev(1)])
    real, calls = follow._open_any, {"n": 0}

    def rotating_open(path: str):
        if path == str(live):
            calls["n"] += 1
            if calls["n"] == 2:  # listed and fingerprinted; now, as it is opened, it is rotated away
                rotate(live, 1)
                write(live, [ev(2)])
        return real(path)

    monkeypatch.setattr(follow, "_open_any", rotating_open)
    f = FileFollower(live, start="beginning")
    assert [seq(x) for x in drain(f)] == [1, 2]
    write(live, [ev(3)])
    rotate(live, 2)
    write(live, [ev(4)])
    assert [seq(x) for x in drain(f)] == [3, 4]  # nothing read twice, nothing left behind


def test_a_rotation_during_the_directory_listing_does_not_hide_the_renamed_file(
    live: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """listdir, then Tetragon rotates, then we stat tetragon.log: the listing lacks the renamed file while the
    live name already leads to its successor. That file must still be read, in its place."""
    write(live, [ev(1)])
    f = FileFollower(live, start="beginning")
    assert [seq(x) for x in drain(f)] == [1]
    write(live, [ev(2)])
    rotate(live, 1)  # the file being read
    write(live, [ev(3)])
    real, armed = os.listdir, {"on": True}

    def listdir_then_rotate(path):
        names = real(path)
        if armed["on"] and str(path) == str(live.parent):
            armed["on"] = False
            rotate(live, 2)  # right after the listing: ev(3)'s file gets its backup name, unlisted
            write(live, [ev(4)])
        return names

    monkeypatch.setattr(os, "listdir", listdir_then_rotate)
    assert [seq(x) for x in drain(f)] == [2, 3, 4]
    monkeypatch.setattr(os, "listdir", real)
    rotate(live, 3)
    write(live, [ev(5)])
    assert [seq(x) for x in drain(f)] == [5]


def test_backups_present_at_start_are_read_oldest_first(live: Path) -> None:
    write(live, [ev(0), ev(1)])
    rotate(live, 1, compress=True)
    write(live, [ev(2)])
    rotate(live, 2)
    write(live, [ev(3)])
    assert [seq(x) for x in drain(FileFollower(live, start="beginning"))] == [0, 1, 2, 3]
    # without a checkpoint, "checkpoint" starts like "beginning"
    assert [seq(x) for x in drain(FileFollower(live, start="checkpoint"))] == [0, 1, 2, 3]


def test_from_end_starts_after_the_last_complete_line(live: Path) -> None:
    write(live, [ev(0), ev(1)])
    with open(live, "ab") as w:
        w.write(ev(2)[:7])  # a line being written when we start
    rotate_before = live.with_name("tetragon-2026-01-02T15-04-00.000.log")
    write(rotate_before, [ev(-1)])  # an older backup: not read with --from end
    f = FileFollower(live, start="end")
    assert drain(f) == []
    with open(live, "ab") as w:
        w.write(ev(2)[7:] + b"\n")
    write(live, [ev(3)])
    assert [seq(x) for x in drain(f)] == [2, 3]
    rotate(live, 5)
    write(live, [ev(4)])
    assert [seq(x) for x in drain(f)] == [4]


def test_resume_from_every_checkpoint_gives_exactly_the_rest(live: Path) -> None:
    all_lines = [ev(i, pad=i % 50) for i in range(60)]
    write(live, all_lines[:20])
    rotate(live, 1, compress=True)
    write(live, all_lines[20:40])
    rotate(live, 2)
    write(live, all_lines[40:])
    chunks: list[Chunk] = []
    got = drain(FileFollower(live, start="beginning", chunk_bytes=300), chunks)
    assert got == all_lines
    assert len(chunks) > 10
    seen = 0
    for c in chunks:
        seen += len(c.lines)
        resumed = drain(FileFollower(live, start="checkpoint", checkpoint=json.loads(json.dumps(c.position))))
        assert resumed == all_lines[seen:], f"resuming after line {seen}"


def test_copytruncate_reads_the_tail_from_the_copy(live: Path) -> None:
    write(live, [ev(0), ev(1)])
    f = FileFollower(live, start="beginning")
    assert [seq(x) for x in drain(f)] == [0, 1]
    write(live, [ev(2)])  # not read yet when logrotate copies and truncates
    copy = live.with_name("tetragon.log.1")
    copy.write_bytes(live.read_bytes())
    with open(live, "r+b") as w:
        w.truncate(0)
    write(live, [ev(3)])
    assert [seq(x) for x in drain(f)] == [2, 3]
    assert f.truncations == 1 and not f.lost_warnings


def test_truncation_without_copy_rereads_from_start_and_warns(live: Path) -> None:
    write(live, [ev(0), ev(1), ev(2)])
    f = FileFollower(live, start="beginning")
    drain(f)
    with open(live, "r+b") as w:
        w.truncate(0)
    write(live, [ev(7)])
    assert [seq(x) for x in drain(f)] == [7]
    assert f.truncations == 1 and f.lost_warnings


def test_rewritten_file_with_same_inode_is_detected_by_fingerprint(live: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tetrapipe.sources.follow as follow

    monkeypatch.setattr(follow, "_FP_CHECK_SECONDS", 0.0)
    write(live, [ev(0)])
    f = FileFollower(live, start="beginning")
    drain(f)
    # truncated and rewritten past our offset before we looked: the size alone cannot tell
    with open(live, "r+b") as w:
        w.truncate(0)
        w.write(b"".join(ln + b"\n" for ln in [ev(10, pad=100), ev(11)]))
    assert [seq(x) for x in drain(f)] == [10, 11]


def test_long_lines_are_skipped_and_reported_even_across_chunks(live: Path) -> None:
    long = ev(1, pad=5000)
    write(live, [ev(0), long, ev(2), ev(3, pad=3000), ev(4)])
    chunks: list[Chunk] = []
    f = FileFollower(live, start="beginning", chunk_bytes=1024, max_line_bytes=2048)
    assert [seq(x) for x in drain(f, chunks)] == [0, 2, 4]
    rejects = [r for c in chunks for r in c.rejects]
    assert [r.line_no for r in rejects] == [2, 4]
    assert all("longer than 2048" in r.reason for r in rejects)
    # a checkpoint taken inside the skipped line resumes still skipping
    mid = next(c for c in chunks if c.rejects and c.position["file"]["skip"])
    rest = drain(FileFollower(live, start="checkpoint", checkpoint=mid.position, chunk_bytes=1024, max_line_bytes=2048))
    assert [seq(x) for x in rest] == [2, 4]


def test_checkpointed_file_deleted_continues_with_newer_and_warns(live: Path) -> None:
    write(live, [ev(0), ev(1)])
    chunks: list[Chunk] = []
    f = FileFollower(live, start="beginning", chunk_bytes=len(ev(0)) + 1)
    drain(f, chunks)
    pos = chunks[0].position  # after line 0
    f.close()
    b = rotate(live, 1)
    write(live, [ev(2)])
    b.unlink()  # deleted past max-backups while the collector was down
    g = FileFollower(live, start="checkpoint", checkpoint=pos)
    assert [seq(x) for x in drain(g)] == [2]
    assert any("gone" in w for w in g.lost_warnings)


def test_lag_counts_unread_bytes(live: Path) -> None:
    write(live, [ev(0)])
    f = FileFollower(live, start="beginning")
    drain(f)
    assert f.lag_bytes() == 0
    write(live, [ev(1)])
    assert f.lag_bytes() == len(ev(1)) + 1


def test_line_splitter_blank_crlf_and_final_line() -> None:
    s = LineSplitter(100, want_line_nos=True)
    lines, consumed, nos, rejects = s.feed(b"a\n\n\r\nb\r\nc")
    assert lines == [b"a", b"b\r"] and nos == [1, 4] and consumed == 8 and not rejects
    lines, consumed, nos, _ = s.feed(b"", final=True)
    assert lines == [b"c"] and nos == [5] and consumed == 1


def _expected_lines(data: bytes, limit: int) -> tuple[list[bytes], list[int], list[int]]:
    """What one reading of the whole ``data`` must give: kept lines, their numbers, the numbers of over-long ones."""
    pieces = data.split(b"\n")
    if pieces and pieces[-1] == b"":
        pieces.pop()  # the empty piece after a final newline
    kept, nos, long = [], [], []
    for no, line in enumerate(pieces, start=1):
        if len(line) > limit:
            long.append(no)
        elif line and line != b"\r":
            kept.append(line)
            nos.append(no)
    return kept, nos, long


@settings(max_examples=300, deadline=None)
@given(
    data=st.lists(st.sampled_from([b"a", b"bc", b"\n", b"\r", b"\r\n", b"x" * 7, b"{}"]), max_size=60).map(b"".join),
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=8),
    limit=st.sampled_from([4, 6, 1000]),
)
def test_line_splitter_gives_the_same_lines_however_the_data_is_cut(data: bytes, cuts: list[int], limit: int) -> None:
    """Any bytes, fed in any pieces: the lines, their numbers, the rejects and the bytes consumed are one reading's."""
    s = LineSplitter(limit, want_line_nos=True)
    bounds = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    got, got_nos, got_long, consumed = [], [], [], 0
    for i, (a, b) in enumerate(zip(bounds, bounds[1:] + [len(data)], strict=True)):
        last = i == len(bounds) - 1
        lines, used, nos, rejects = s.feed(data[a:b], final=last)
        got += lines
        got_nos += nos
        got_long += [r.line_no for r in rejects]
        consumed += used
    want, want_nos, want_long = _expected_lines(data, limit)
    assert (got, got_nos, got_long) == (want, want_nos, want_long)
    assert consumed == len(data) and s.pending_bytes == 0


def test_stream_follower_reads_a_pipe_and_ends_at_eof() -> None:
    r, w = os.pipe()
    os.write(w, ev(0) + b"\n" + ev(1)[:5])
    src = StreamFollower(os.fdopen(r, "rb", buffering=0), wait_seconds=0.01)
    got: list[bytes] = []
    for _ in range(5):
        c = src.read()
        got += c.lines if c else []
    assert got == [ev(0)] and not src.exhausted
    os.write(w, ev(1)[5:])
    os.close(w)
    while not src.exhausted:
        c = src.read()
        got += c.lines if c else []
    assert got == [ev(0), ev(1)]


@pytest.mark.parametrize("chunk", [100, 100_000])
def test_a_line_over_the_limit_is_rejected_at_any_chunk_size(live: Path, chunk: int) -> None:
    """Smaller chunks than the line (it is cut across reads) and larger ones (it arrives whole in one)."""
    write(live, [ev(0), ev(1, pad=5000), ev(2)])
    with open(live, "ab") as f:
        f.write(ev(3, pad=3000))  # the last line of a file that is finished, without its newline
    rotate(live, 1)
    chunks: list[Chunk] = []
    f = FileFollower(live, start="beginning", chunk_bytes=chunk, max_line_bytes=2048)
    assert [seq(x) for x in drain(f, chunks)] == [0, 2]
    assert [(r.line_no, "longer than 2048 bytes" in r.reason) for c in chunks for r in c.rejects] == [
        (2, True),
        (4, True),
    ]


@pytest.mark.parametrize("chunk", [100, 100_000])
def test_a_line_over_the_limit_from_a_pipe_is_rejected_at_any_chunk_size(chunk: int) -> None:
    r, w = os.pipe()
    os.write(w, b"".join(x + b"\n" for x in [ev(0), ev(1, pad=5000), ev(2)]) + ev(3, pad=3000))
    os.close(w)
    src = StreamFollower(os.fdopen(r, "rb", buffering=0), chunk_bytes=chunk, max_line_bytes=2048, wait_seconds=1)
    got: list[bytes] = []
    rejects = []
    while not src.exhausted:
        c = src.read()
        if c:
            got += c.lines
            rejects += c.rejects
    assert [seq(x) for x in got] == [0, 2]
    assert [(r.line_no, "longer than 2048 bytes" in r.reason) for r in rejects] == [(2, True), (4, True)]


def test_a_gzip_backup_cut_short_gives_every_complete_line_then_a_warning(live: Path) -> None:
    """gzip.GzipFile dropped the lines it had inflated in the read that hit the cut (up to a chunk's worth)."""
    lines = [ev(i, pad=200) for i in range(20_000)]
    whole = gzip.compress(b"".join(x + b"\n" for x in lines))
    cut = whole[: len(whole) * 2 // 3]
    complete = zlib.decompressobj(wbits=31).decompress(cut).count(b"\n")
    live.with_name("tetragon-2026-01-02T15-04-01.000.log.gz").write_bytes(cut)
    write(live, [ev(50_000)])
    f = FileFollower(live, start="beginning")
    chunks: list[Chunk] = []
    assert [seq(x) for x in drain(f, chunks)] == [*range(complete), 50_000]  # not the half line at the cut
    f_rejects = [r for c in chunks for r in c.rejects]
    assert any(f"truncated gzip: stream ends at byte {len(cut)}" in w for w in f.lost_warnings)
    assert [r.line_no for r in f_rejects] == [complete + 1]


def test_resuming_inside_a_gzip_backup_continues_at_the_checkpoint(live: Path) -> None:
    write(live, [ev(i) for i in range(300)])
    backup = rotate(live, 1, compress=True)
    write(live, [ev(300)])
    chunks: list[Chunk] = []
    f = FileFollower(live, start="beginning", chunk_bytes=4096)
    drain(f, chunks)
    mid = next(c for c in chunks if c.position["file"]["path"] == str(backup) and c.position["file"]["line"] > 100)
    rest = drain(FileFollower(live, start="checkpoint", checkpoint=mid.position, chunk_bytes=4096))
    assert [seq(x) for x in rest] == list(range(mid.position["file"]["line"], 301))


def _pipe_lines(data: bytes, pieces: int = 1) -> tuple[list[bytes], list[Reject]]:
    """Everything a StreamFollower gets out of ``data`` written into a pipe in ``pieces``, and its rejects."""
    r, w = os.pipe()
    src = StreamFollower(os.fdopen(r, "rb", buffering=0), wait_seconds=1)
    got: list[bytes] = []
    rejects: list[Reject] = []
    step = max(1, -(-len(data) // pieces))
    for i in range(0, len(data), step):
        os.write(w, data[i : i + step])
        c = src.read()  # (one read per write: a piece may hold no whole line, or no inflated byte yet)
        if c:
            got += c.lines
            rejects += c.rejects
    os.close(w)
    while not src.exhausted:
        c = src.read()
        if c:
            got += c.lines
            rejects += c.rejects
    return got, rejects


def test_a_gzip_pipe_in_small_pieces_and_joined_members_is_read_whole() -> None:
    """A piece that inflates to nothing (a gzip header) is not the end of the pipe; `cat a.gz b.gz` is both."""
    a = gzip.compress(b"".join(ev(i) + b"\n" for i in range(50)))
    b = gzip.compress(b"".join(ev(i) + b"\n" for i in range(50, 80)))
    got, rejects = _pipe_lines(a + b + bytes(16), pieces=len(a + b) // 7)
    assert [seq(x) for x in got] == list(range(80)) and rejects == []


def test_a_gzip_pipe_cut_short_or_damaged_keeps_what_came_before_and_says_why() -> None:
    whole = gzip.compress(b"".join(ev(i, pad=300) + b"\n" for i in range(300)))
    cut = whole[: len(whole) // 2]
    got, rejects = _pipe_lines(cut, pieces=5)
    complete = zlib.decompressobj(wbits=31).decompress(cut).count(b"\n")
    assert [seq(x) for x in got] == list(range(complete))
    assert [(r.line_no, r.reason) for r in rejects] == [
        (complete + 1, f"truncated gzip: stream ends at byte {len(cut)} of <stdin>")
    ]
    damaged = whole + gzip.compress(b"")[:10] + b"\xff" * 50  # a second member with a reserved block type
    got, rejects = _pipe_lines(damaged)
    assert [seq(x) for x in got] == list(range(300))
    assert len(rejects) == 1 and rejects[0].reason.startswith("corrupt gzip: Error -3 while decompressing data")
