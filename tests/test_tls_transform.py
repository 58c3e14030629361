"""TLS columns and tls_stats from Tetragon kprobe events carrying real handshake bytes."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_tls_handshake import _loopback, cert  # noqa: F401 - fixture reuse

from tetrapipe.cli import cli
from tetrapipe.flows.ingest import ingest
from tetrapipe.lake import Lake
from tetrapipe.sources.files import expand_inputs
from tetrapipe.transforms.normalize import normalize_lines
from tetrapipe.transforms.tls import TlsTransform

PROC = {
    "exec_id": "a2luZC13b3JrZXI6MTIzNDU6OTk=",
    "pid": 99,
    "uid": 0,
    "binary": "/usr/local/bin/node",
    "arguments": "crawler.js",
    "start_time": "2026-03-10T09:00:31.000000000Z",
    "pod": {
        "namespace": "tenant-jobs",
        "name": "crawler-7d9f8b6c5-x2x9k",
        "container": {
            "id": "containerd://abc",
            "name": "crawler",
            "image": {"id": "sha256:1", "name": "quay.io/isovalent/jobs-app-crawler:v0.1"},
            "start_time": "2026-03-10T09:00:30Z",
        },
        "workload": "crawler",
        "workload_kind": "Deployment",
    },
}


def _kprobe(t: str, fn: str, args: list, policy: str) -> str:
    return json.dumps(
        {
            "process_kprobe": {
                "process": PROC,
                "function_name": fn,
                "args": args,
                "action": "KPROBE_ACTION_POST",
                "policy_name": policy,
            },
            "node_name": "kind-worker",
            "time": t,
        }
    )


def _connection(hs: dict, second: int, fd: int, daddr: str) -> list[str]:
    sock = {
        "family": "AF_INET",
        "type": "SOCK_STREAM",
        "protocol": "IPPROTO_TCP",
        "saddr": "10.244.1.7",
        "daddr": daddr,
        "sport": 40000 + fd,
        "dport": 443,
        "cookie": "1",
        "state": "TCP_SYN_SENT",
    }
    client, server = hs["client"], hs["server"]
    return [
        _kprobe(f"2026-03-10T09:0{second}:00.1Z", "tcp_connect", [{"sock_arg": sock}], "connect"),
        _kprobe(
            f"2026-03-10T09:0{second}:00.2Z",
            "__x64_sys_write",
            [{"int_arg": fd}, {"bytes_arg": client}, {"size_arg": str(len(base64.b64decode(client)))}],
            "tls-handshake",
        ),
        _kprobe(
            f"2026-03-10T09:0{second}:00.3Z",
            "__x64_sys_read",
            [{"int_arg": fd}, {"bytes_arg": server}, {"size_arg": str(len(base64.b64decode(server)))}],
            "tls-handshake",
        ),
    ]


@pytest.fixture(scope="module")
def handshake_log(cert: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:  # noqa: F811
    tmp = tmp_path_factory.mktemp("tls")
    specs = [
        ("TLSv1_3", "TLS_CHACHA20_POLY1305_SHA256", "api.github.com", "140.82.121.6"),
        ("TLSv1_2", "AES128-SHA", "legacy.example.com", "93.184.216.34"),
    ]
    lines, truth = [], []
    for n, (ver, cipher, sni, daddr) in enumerate(specs):
        hs = _loopback(cert, ver, cipher, sni, tmp)
        lines += _connection(hs, n + 1, 5 + n, daddr)
        truth.append(
            {
                "sni": sni,
                "daddr": daddr,
                "version": {"TLSv1.3": "TLS 1.3", "TLSv1.2": "TLS 1.2"}[hs["version"]],
                "cipher_code": hs["cipher_code"],
            }
        )
    path = tmp / "tls.log"
    path.write_text("\n".join(lines) + "\n")
    return path, truth


def test_transform_fills_tls_columns(handshake_log: tuple[Path, list[dict]]) -> None:
    path, truth = handshake_log
    events = normalize_lines(path.read_text().splitlines()).events
    out, extra = TlsTransform()(events)
    rows = [r for r in out.to_pylist() if r["tls_version"]]
    assert [(r["tls_sni"], r["daddr"], r["dport"], r["tls_version"]) for r in rows] == [
        (t["sni"], t["daddr"], 443, t["version"]) for t in truth
    ]
    assert rows[0]["tls_cipher"] == "TLS_CHACHA20_POLY1305_SHA256"
    assert rows[1]["tls_cipher"] == "TLS_RSA_WITH_AES_128_CBC_SHA"
    assert [r["tls_cipher_code"] for r in rows] == [t["cipher_code"] for t in truth]  # as the ssl module negotiated
    stats = extra["tls_stats"].to_pylist()
    assert sum(s["connections"] for s in stats) == 2 and {s["workload"] for s in stats} == {"crawler"}


def test_no_tls_no_cost() -> None:
    events = normalize_lines(
        [
            _kprobe(
                "2026-03-10T09:00:00Z",
                "security_file_permission",
                [{"file_arg": {"path": "/etc/passwd"}}, {"int_arg": 2}],
                "file-monitoring",
            )
        ]
    ).events
    out, extra = TlsTransform()(events)
    assert out is events and extra == {}


def test_tls_command_reproduces_the_handshakes(handshake_log: tuple[Path, list[dict]], tmp_path: Path) -> None:
    path, truth = handshake_log
    lake = Lake(tmp_path / "lake")
    ingest(expand_inputs([str(path)]), lake, transforms=[TlsTransform()])
    result = CliRunner().invoke(cli, ["tls", "--lake", str(lake.root), "--format", "json"], catch_exceptions=False)
    rows = json.loads(result.output)
    assert {(r["tls_sni"], r["tls_version"], r["tls_cipher"], r["connections"]) for r in rows} == {
        ("api.github.com", "TLS 1.3", "TLS_CHACHA20_POLY1305_SHA256", 1),
        ("legacy.example.com", "TLS 1.2", "TLS_RSA_WITH_AES_128_CBC_SHA", 1),
    }
    weak = {r["tls_sni"]: r["weak"] for r in rows}
    assert weak["api.github.com"] == [] and "no forward secrecy" in weak["legacy.example.com"]
    table = CliRunner().invoke(cli, ["tls", "--lake", str(lake.root)], catch_exceptions=False).output
    assert "tenant-jobs/crawler" in table and "TLS_RSA_WITH_AES_128_CBC_SHA" in table
    assert "legacy.example.com" in table and "CBC with SHA-1" in table  # the SNI under its address, why weak


def test_enterprise_tls_kind_is_read_tolerantly() -> None:
    line = json.dumps(
        {
            "tls": {
                "process": PROC,
                "version": "TLSv1.2",
                "cipher_suite": "TLS_RSA_WITH_RC4_128_SHA",
                "sni": "old.example.com",
            },
            "node_name": "n",
            "time": "2026-03-10T09:00:00Z",
        }
    )
    out, extra = TlsTransform()(normalize_lines([line]).events)
    (row,) = out.to_pylist()
    assert (row["tls_version"], row["tls_cipher"], row["tls_sni"]) == (
        "TLS 1.2",
        "TLS_RSA_WITH_RC4_128_SHA",
        "old.example.com",
    )
    assert row["tls_cipher_code"] == 0x0005  # the name's IANA code


@pytest.mark.parametrize(("window", "minutes", "windows"), [(None, 1, 4), ("15m", 15, 1), ("1h", 60, 1)])
def test_tls_window_is_configurable(
    window: str | None, minutes: int, windows: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scenario's four handshakes span 09:04-09:09: one window each by default, one per hour with 1h."""
    scenario = Path(__file__).resolve().parents[1] / "samples" / "scenario" / "tenant-jobs.log"
    args = ["ingest", "-q", "--rules", "none", "--lake", str(tmp_path / "lake"), str(scenario)]
    if window:
        monkeypatch.setenv("TETRAPIPE_TLS_WINDOW", window)
    CliRunner().invoke(cli, args, catch_exceptions=False)
    import duckdb

    rows = duckdb.sql(
        f"SELECT window_start, window_end, connections FROM read_parquet('{tmp_path}/lake/tls_stats/**/*.parquet')"
    ).fetchall()
    assert sum(r[2] for r in rows) == 4
    assert {(end - start).total_seconds() for start, end, _ in rows} == {minutes * 60}
    assert all(start.minute % minutes == 0 and start.second == 0 for start, _, _ in rows)
    assert len({start for start, _, _ in rows}) == windows


def test_a_bad_tls_window_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["ingest", "--tls-window", "soon", "--lake", str(tmp_path), "-"])
    assert result.exit_code == 2 and "not a duration" in result.output
