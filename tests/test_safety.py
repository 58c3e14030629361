"""Safe to store, safe to show: listeners stay on loopback unless configured, files holding events are owner-only.

Listeners: every long-running command is started for real, from a
configuration (or flag) that names a metrics port but no host, and the
address its socket is bound to is read from ``/proc/net/tcp`` (what ``ss``
reads). Files: the lake, the collector's state and spool, the SIEM spools
and the file sink are written with a wide-open umask (0), and nothing they
created may be readable by group or others.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, SAMPLES
from kafka_broker import TansuBroker, free_port
from test_forward_sinks import fast, records
from webhook_receiver import WebhookReceiver

from tetrapipe.config import command_env, load_config
from tetrapipe.sinks.siem.jsonfile import JsonFileSink
from tetrapipe.sinks.siem.webhook import WebhookSink
from tetrapipe.sinks.spool import DiskSpool

# --- helpers ---------------------------------------------------------------------------------------


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The test's environment without the developer's TETRAPIPE_* settings, plus ``extra``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("TETRAPIPE_")}
    return base | {"PYTHONPATH": str(REPO)} | (extra or {})


@contextmanager
def open_umask() -> Iterator[None]:
    """umask 0 for the block: whatever is created gets exactly the mode the code asked for."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def loose(root: Path) -> list[str]:
    """Every directory and file under ``root`` (itself included) that group or others may access."""
    found = []
    for p in [root, *sorted(root.rglob("*"))]:
        mode = stat.S_IMODE(p.lstat().st_mode)
        if mode & 0o077:
            found.append(f"{mode:04o} {p.relative_to(root.parent)}")
    return found


def listening(port: int) -> set[str]:
    """Local addresses with a TCP socket listening on ``port`` (``/proc/net/tcp`` and ``tcp6``, as ``ss``)."""
    found: set[str] = set()
    for table in ("tcp", "tcp6"):
        path = Path("/proc/net") / table
        if not path.exists():
            continue
        for row in path.read_text().splitlines()[1:]:
            fields = row.split()
            address, port_hex = fields[1].split(":")
            if fields[3] != "0A" or int(port_hex, 16) != port:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(address)  # 32-bit words in host byte order
            words = [raw[i : i + 4] for i in range(0, len(raw), 4)]
            if sys.byteorder == "little":
                words = [w[::-1] for w in words]
            found.add(str(ipaddress.ip_address(b"".join(words))))
    return found


def wait_listening(proc: subprocess.Popen[bytes], port: int, timeout: float = 90.0) -> None:
    """Until ``/healthz`` answers on 127.0.0.1:port (any status), or the command died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            raise AssertionError(f"{proc.args} exited {proc.returncode} before serving metrics:\n{out}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answered: 503 while not healthy yet is still an answer
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"{proc.args}: no metrics server on 127.0.0.1:{port} after {timeout:.0f}s")


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


# --- listeners -----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_every_listener_binds_loopback_unless_a_host_is_configured(tmp_path: Path) -> None:
    """collect and process (config -> environment), forward (--config), run (flag): 127.0.0.1, not 0.0.0.0.

    The configuration names a metrics port and no host; the commands run for
    real (Kafka unreachable, which they outlive) and the kernel says where
    each socket listens. Only a configuration that says ``host: 0.0.0.0``
    gets all addresses. The forwarder's metrics never show its sink's URL
    password either.
    """
    log = tmp_path / "tetragon.log"
    log.write_bytes((SAMPLES / "scenario" / "tenant-jobs.log").read_bytes())
    ports = {name: free_port() for name in ("collect", "process", "forward", "run", "explicit")}
    dead = free_port()  # nothing listens here: Kafka and the webhook are unreachable

    def config(name: str, port: int, host: str = "") -> Path:
        path = tmp_path / f"{name}.yaml"
        path.write_text(f"""\
lake: {tmp_path / "lake"}
rules: none
spool_dir: {tmp_path / "spool" / name}
metrics: {{port: {port}{", host: " + host if host else ""}}}
kafka: {{bootstrap: "127.0.0.1:{dead}"}}
sources: [{{type: file, path: {log}, checkpoint_dir: {tmp_path / "state"}}}]
sinks:
  - {{name: soar, type: webhook, options: {{url: "http://alice:hunter2@127.0.0.1:{dead}/hook"}}}}
""")
        return path

    py = [sys.executable, "-m", "tetrapipe"]
    commands: dict[str, tuple[list[str], dict[str, str]]] = {
        "collect": (py + ["collect"], command_env(load_config(config("collect", ports["collect"])), "collect")),
        "process": (py + ["process"], command_env(load_config(config("process", ports["process"])), "process")),
        "forward": (py + ["forward", "--config", str(config("forward", ports["forward"])), "-"], {}),
        "run": (
            py
            + [
                "run",
                str(log),
                "--lake",
                str(tmp_path / "run-lake"),
                "--rules",
                "none",
                "--metrics-port",
                str(ports["run"]),
            ],
            {},
        ),
        "explicit": (py + ["forward", "--config", str(config("explicit", ports["explicit"], "0.0.0.0")), "-"], {}),
    }
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, (argv, env) in commands.items():
            procs[name] = subprocess.Popen(
                argv,
                cwd=tmp_path,
                env=_env(env),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
        for name, proc in procs.items():
            wait_listening(proc, ports[name])
        bound = {name: listening(port) for name, port in ports.items()}
        metrics = scrape(ports["forward"])
    finally:
        for proc in procs.values():
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
            for stream in (proc.stdin, proc.stdout):
                if stream:
                    stream.close()
    assert bound == {
        "collect": {"127.0.0.1"},
        "process": {"127.0.0.1"},
        "forward": {"127.0.0.1"},
        "run": {"127.0.0.1"},
        "explicit": {"0.0.0.0"},
    }
    assert 'tetrapipe_sink_up{sink="soar"}' in metrics and "hunter2" not in metrics


# --- owner-only files ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_lake_is_owner_only_whatever_the_umask(tmp_path: Path) -> None:
    """An ingest with the shipped rules (events, alerts, rejects, tls_stats, state) under umask 0."""
    lake = tmp_path / "made" / "for" / "lake"
    subprocess.run(
        [sys.executable, "-m", "tetrapipe", "ingest", str(SAMPLES / "scenario"), "--lake", str(lake), "-q"],
        cwd=tmp_path,
        env=_env(),
        check=True,
        capture_output=True,
        timeout=180,
        umask=0,
    )
    assert list(lake.glob("alerts/date=*/*.parquet")) and list(lake.glob("events/_delta_log/*.json"))
    assert loose(tmp_path / "made") == []


@pytest.mark.slow
def test_the_collectors_checkpoint_mark_and_spool_are_owner_only(
    kafka: TansuBroker, topic: str, tmp_path: Path
) -> None:
    """A real collection into a real broker (checkpoint, sent mark) and the spool it parks chunks in."""
    log = tmp_path / "tetragon.log"
    lines = (SAMPLES / "scenario" / "tenant-jobs.log").read_bytes()
    log.write_bytes(lines)
    state = tmp_path / "state" / "node"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "tetrapipe",
            "collect",
            f"file://{log}",
            "--kafka",
            kafka.bootstrap,
            "--topic",
            topic,
            "--from",
            "beginning",
            "--exit-at-eof",
            "--state-dir",
            str(state),
            "--metrics-port",
            "0",
        ],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        timeout=180,
        umask=0,
    )
    assert res.returncode == 0, res.stderr.decode()  # --exit-at-eof: every line acknowledged, then checkpointed
    assert {p.suffix for p in state.iterdir()} == {".json", ".sent"}
    with open_umask():
        spool = DiskSpool(state / "spool-test", max_bytes=1 << 20)
        spool.put_batch([b'{"a":1}', b'{"a":2}'], {"source": "test", "total": 0, "nbytes": 16})
    assert spool.pending_records == 2
    assert loose(tmp_path / "state") == []


def test_siem_spool_dead_letters_and_file_sink_are_owner_only(tmp_path: Path) -> None:
    """The forwarder's disk buffer (segments, cursor), rejected.jsonl, and the file sink with its rotations."""
    endpoint = WebhookReceiver(refuse=lambda r: r.get("message") == "poison").start()
    try:
        with open_umask():
            batch: list[dict[str, Any]] = records(6)
            batch[2]["message"] = "poison"
            sink = WebhookSink("soar", url=endpoint.url, delivery=fast(spool_dir=str(tmp_path / "spool")))
            sink.send(batch)
            sink.flush()
            endpoint.stop()
            sink.send(records(4, start=6))
            sink.flush()
            sink.close()
            disk = DiskSpool(tmp_path / "spool" / "other")
            disk.append(records(3))
            chunk = disk.read(1)
            disk.commit(chunk.positions[0])
            files = JsonFileSink(
                "audit",
                path=str(tmp_path / "files" / "out" / "alerts.jsonl"),
                max_bytes=1024,
                backups=2,
                delivery=fast(),
            )
            for i in range(10):
                files.send(records(3, start=3 * i))
            files.close()
    finally:
        endpoint.stop()
    assert sink.stats.rejected == 1 and sink.stats.spooled == 4
    assert (tmp_path / "spool" / "soar" / "rejected.jsonl").exists()
    assert (tmp_path / "spool" / "other" / "cursor.json").exists() and disk.pending_records == 2
    assert (tmp_path / "files" / "out" / "alerts.jsonl.2").exists()
    assert loose(tmp_path / "spool") == [] and loose(tmp_path / "files") == []


def test_log_records_are_masked_and_made_visible(capsys) -> None:
    """What the long-running commands log (a watched file's name, a client's error) is safe on a terminal."""
    import logging

    from tetrapipe.redact import RedactingFilter

    handler = logging.StreamHandler()
    handler.addFilter(RedactingFilter())
    log = logging.getLogger("tetrapipe.test-log-hygiene")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning(
            "file %s vanished; peer https://alice:hunter2@siem.example:8088/x refused",
            "/var/log/\x1b]8;;http://evil\x07tetragon.log\x1b[2J",
        )
    finally:
        log.removeHandler(handler)
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\x07" not in err and "hunter2" not in err
    assert "\\x1b]8;;http://evil\\x07tetragon.log\\x1b[2J" in err and "alice:***@" in err


def test_query_output_tree_page_and_optimized_files_are_owner_only(tmp_path: Path) -> None:
    """Files written from the history (query -o, tree --html, Delta OPTIMIZE) hold command lines too."""
    import stat
    import subprocess
    import sys

    from conftest import SAMPLES

    from tetrapipe.lake import Lake
    from tetrapipe.lake.maintenance import optimize

    lake = tmp_path / "lake"
    old = os.umask(0)
    try:
        tp = [sys.executable, "-m", "tetrapipe"]
        lines = (SAMPLES / "scenario" / "tenant-jobs.log").read_text().splitlines(keepends=True)
        for i, part in enumerate((lines[: len(lines) // 2], lines[len(lines) // 2 :])):  # two commits of one day
            (tmp_path / f"part{i}.log").write_text("".join(part))
            subprocess.run([*tp, "ingest", str(tmp_path / f"part{i}.log"), "--lake", str(lake), "-q"], check=True)
        outs = [tmp_path / "q.csv", tmp_path / "q.parquet", tmp_path / "tree.html"]
        subprocess.run(
            [*tp, "query", "SELECT * FROM events", "--lake", str(lake), "--format", "csv", "-o", str(outs[0])],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [*tp, "query", "SELECT * FROM events", "--lake", str(lake), "--format", "parquet", "-o", str(outs[1])],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [*tp, "tree", "--pod", "crawler", "--lake", str(lake), "--html", str(outs[2])],
            check=True,
            capture_output=True,
        )
        (events,) = optimize(Lake(lake), ["events"])
        assert events.files_removed >= 2 and events.files_added >= 1
    finally:
        os.umask(old)
    for path in [*outs, *lake.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, f"{path} is {oct(mode)}"
