"""``tetrapipe forward --from-kafka`` to syslog over TCP, killed with SIGKILL at random points: no alert lost.

Plain TCP syslog (RFC 6587) has no acknowledgement: the sink counts a batch
delivered once the kernel took it (``sendall`` returned), and the forwarder
commits the Kafka offsets after that. What makes that safe across a kill of
the forwarder is the kernel: a killed process's socket is closed by the
kernel, which still sends what was written and then a FIN (the forwarder
never reads from the connection, so it is not a reset). What the next run
reads again is what :mod:`test_forward_kill` says (the poll batch in hand,
a spool chunk whose cursor had not moved), so the same bound on duplicates
holds: a poll batch plus a sink batch per kill. A kill in the middle of a
``sendall`` leaves half a message on the wire; with octet-counting framing
rsyslog discards an incomplete frame at the end of a connection (the next
run sends the whole message again), so no torn message reaches the SIEM.

The peer is a real rsyslogd behind a slow link (a relay on loopback with
small buffers and Ethernet-sized segments that passes about 1 MB/s), so the
kills land while batches are still being written, as with a busy SIEM
across a network. The SIEM is taken down (rsyslog and the link refuse
connections) only once it has what the dead run wrote: syslog over TCP
cannot survive a receiver that goes away with data unread (no acks: see the
syslog sink's docstring), and that is not what is tested here.
"""

from __future__ import annotations

import base64
import contextlib
import json
import random
import socket
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from syslog_server import Rsyslog, free_port, rsyslogd
from test_e2e_forward import _env, _spooled, _tp, config_head
from test_forward_kill import (  # noqa: F401 - alert_rows: a fixture
    DELIVERY,
    GROUP_OPTIONS,
    POLL,
    SINK_BATCH,
    KilledRuns,
    _produce,
    _wait,
    alert_rows,
)

#: the link's pace: each 4 kB read is followed by a pause of 4 kB / RATE (about 10 s for the topic)
RATE = 1_000_000
#: the alerts fire on command lines carrying an encoded payload (as a dropper's does): 6 kB messages, so that
#: with the link's Ethernet-sized segments (the kernel then buffers some 250 kB for the forwarder's socket, not
#: the 4 MB of loopback's 64 kB segments) the kills land while a batch is being written, not only between them
ROWS = 1500  # 9 MB
PAYLOAD = base64.b64encode(random.Random(7).randbytes(4500)).decode()


class SlowLink:
    """A TCP relay from the forwarder to rsyslog: slow, small buffers, and it counts the whole frames it passed.

    On the forwarder's end of a connection (a FIN, after a kill too) it passes
    on what it still has, then half-closes towards rsyslog, as a network would.
    ``frames`` counts the complete octet-counted messages it passed, so a test
    can wait until rsyslog has written them all instead of sleeping.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.frames = 0
        self.active = 0
        self._server: socket.socket | None = None
        self._lock = threading.Lock()

    def up(self) -> SlowLink:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)  # inherited: the forwarder blocks soon
        server.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 1460)  # a network's segments, not loopback's
        server.bind(("127.0.0.1", self.port))
        server.listen(16)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()
        return self

    def down(self) -> None:
        """Refuse new connections (the SIEM is unreachable)."""
        assert not self.active, "the link still carries a connection: taking the SIEM down would lose it"
        self.close()

    def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            with contextlib.suppress(OSError):
                server.shutdown(socket.SHUT_RDWR)
            server.close()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return  # down()
            with self._lock:
                self.active += 1
            threading.Thread(target=self._pipe, args=(client,), daemon=True).start()

    def _pipe(self, client: socket.socket) -> None:
        upstream = None
        pending = b""
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            while data := client.recv(4096):
                upstream.sendall(data)
                pending += data
                whole = 0
                while (sp := pending.find(b" ")) > 0 and len(pending) > sp + int(pending[:sp]):
                    pending = pending[sp + 1 + int(pending[:sp]) :]
                    whole += 1
                with self._lock:
                    self.frames += whole
                time.sleep(len(data) / RATE)
        except OSError:
            pass
        finally:
            if upstream is not None:
                with contextlib.suppress(OSError):
                    upstream.shutdown(socket.SHUT_WR)
                upstream.close()
            client.close()
            with self._lock:
                self.active -= 1


def _config(path: Path, bootstrap: str, topic: str, port: int, spool: Path) -> Path:
    path.write_text(
        config_head(spool, bootstrap, topic, GROUP_OPTIONS)
        + f"""\
  - name: syslog
    type: syslog
    format: native
    options: {{port: {port}, protocol: tcp, facility: local3, timeout_seconds: 5}}
    delivery: {json.dumps(DELIVERY)}
"""
    )
    return path


def _messages(rs: Rsyslog) -> tuple[list[str], int]:
    """The alert ids rsyslog wrote, and how many messages it wrote that are not a whole JSON alert (torn)."""
    ids, torn = [], 0
    for m in rs.received():
        try:
            ids.append(json.loads(m.msg.strip())["alert_id"])
        except (ValueError, KeyError, TypeError):
            torn += 1
    return ids, torn


class Written:
    """How many messages rsyslog has written so far, read incrementally (the file grows to some 20 MB)."""

    def __init__(self, rs: Rsyslog) -> None:
        self.path = rs.out
        self.offset = self.lines = 0

    def __call__(self) -> int:
        if self.path.exists():
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                new = f.read()
            self.offset += len(new)
            self.lines += new.count(b"\n")
        return self.lines


def _caught_up(written: Written, link: SlowLink) -> bool:
    """The link carries nothing and rsyslog has written every whole message it passed."""
    return not link.active and written() >= link.frames


def _wait_caught_up(written: Written, link: SlowLink, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not _caught_up(written, link):
        assert time.monotonic() < deadline, f"rsyslog wrote {written()} of the {link.frames} messages passed"
        time.sleep(0.05)


def _incomplete_frames(rs: Rsyslog) -> int:
    """How many connections ended in the middle of a message (rsyslog says so, and drops that part)."""
    err = rs.dir / "rsyslogd.err"
    return err.read_text().count("Incomplete frame at end of stream") if err.exists() else 0


def test_kill_9_to_syslog_over_tcp_loses_nothing_and_repeats_at_most_a_batch_a_kill(
    kafka: Any,
    topic: str,
    alert_rows: list[dict[str, Any]],  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    """SIGKILL 5 times (seeded): twice while batches go out over a slow link, once while rsyslog is down and
    the spool fills, once while the spool is replayed, once more mid-delivery; then a run to the end.

    Every alert reaches rsyslog, none torn; the duplicates stay within a poll batch plus a sink batch per
    kill; the spool ends empty; every restart comes up on what the kill left on disk.
    """
    if rsyslogd() is None:
        pytest.fail("rsyslogd is not installed: apt-get install rsyslog rsyslog-openssl (.ci/run does)")
    rows = [{**r, "arguments": f"{r.get('arguments') or ''} -e {PAYLOAD}"} for r in alert_rows[:ROWS]]
    _produce(kafka.bootstrap, topic, rows)
    want = {r["alert_id"] for r in rows}
    rs = Rsyslog(tmp_path / "rsyslog").start()
    link = SlowLink(rs.tcp_port).up()
    spool = tmp_path / "spool"
    cfg = _config(tmp_path / "tetrapipe.yaml", kafka.bootstrap, topic, link.port, spool)
    cmd = _tp("forward", "--config", str(cfg), "--from-kafka", "--group", f"{topic}-fwd", "--batch-size", str(POLL))
    rng = random.Random(20261207)
    proc: subprocess.Popen[bytes] | None = None
    received = Written(rs)
    runs = KilledRuns(
        cmd, _env(), tmp_path, lambda: f"rsyslog {received()}, link {link.frames}, spool {_spooled(spool / 'syslog')}"
    )
    start, kill = runs.start, runs.kill

    try:
        for k in range(2):  # batches going out over the slow link: the kill lands mid-write or mid-commit
            proc, log = start(k)
            base, n = received(), rng.randint(SINK_BATCH, 600)
            _wait(lambda: received() >= base + n, proc, log, f"{n} alerts at rsyslog")  # noqa: B023
            time.sleep(rng.uniform(0, 0.3))
            kill(proc, f"mid-delivery {k}")
        _wait_caught_up(received, link)  # what the dead run wrote is in rsyslog, not left in the link
        link.down()  # the SIEM goes away: connections refused, the sink spools
        rs.stop()
        proc, log = start(2)
        base, n = _spooled(spool / "syslog"), rng.randint(POLL, 800)
        _wait(lambda: _spooled(spool / "syslog") >= base + n, proc, log, f"{n} alerts spooled")
        kill(proc, "SIEM down, spool filling")
        rs.start()  # back on the same port: the next run replays the spool before anything new
        link.up()
        proc, log = start(3)
        spooled, base = _spooled(spool / "syslog"), received()
        assert spooled > 2 * SINK_BATCH
        n = rng.randint(SINK_BATCH, spooled - SINK_BATCH)
        _wait(lambda: received() >= base + n, proc, log, f"{n} spooled alerts replayed")
        kill(proc, "mid-replay")
        proc, log = start(4)
        base, n = received(), rng.randint(SINK_BATCH, 600)
        _wait(lambda: received() >= base + n, proc, log, f"{n} alerts at rsyslog")
        kill(proc, "mid-delivery 4")
        proc, log = start(5)
        proc.wait(timeout=180)
        err = log.read_text()
        assert proc.returncode == 0, err[-3000:]
        _wait_caught_up(received, link)
        ids, torn = _messages(rs)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        link.close()
        rs.stop()
    got = Counter(ids)
    trail = runs.trail
    assert set(got) == want, f"lost at rsyslog: {len(want - set(got))}\n{trail}"
    assert not torn, f"{torn} torn message(s) at rsyslog\n{trail}"
    kills = len(runs.runs)
    extra = sum(got.values()) - len(want)
    assert extra <= kills * (POLL + SINK_BATCH), f"{extra} duplicates after {kills} kills\n{trail}"
    assert "dropped 0, rejected 0; in spool 0" in err
    assert not [p.name for p in (spool / "syslog").iterdir() if p.name != "rejected.jsonl"], "the spool is not empty"
    assert "Traceback" not in "".join(p.read_text() for p in tmp_path.glob("run-*.log"))
    print(f"\n{trail}\n{extra} duplicates, {_incomplete_frames(rs)} message(s) cut by a kill, after {kills} kills")
