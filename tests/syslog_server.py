"""Run a real rsyslog daemon for tests: RFC 5424 in over TCP, UDP and TLS on loopback, a file out.

rsyslog (Debian's ``rsyslog`` and ``rsyslog-openssl`` packages) runs in the
foreground (``rsyslogd -n``) with a generated configuration: ``imtcp`` and
``imudp`` bound to free 127.0.0.1 ports (plus a TLS ``imtcp`` input through
the OpenSSL stream driver when certificates are given), and one ``omfile``
action writing every message it parsed as ``PRI|TIMESTAMP|HOSTNAME|APP-NAME|
MSGID|STRUCTURED-DATA|MSG`` -- so a test sees what rsyslog understood, not
what we sent.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SEP = "\x1f"  # unit separator: never in our headers, escaped by rsyslog if it were in a message


def rsyslogd() -> str | None:
    return shutil.which("rsyslogd") or next(
        (p for p in ("/usr/sbin/rsyslogd", "/sbin/rsyslogd") if os.path.exists(p)), None
    )


def has_ossl_driver() -> bool:
    return any(
        Path(d).joinpath("lmnsd_ossl.so").exists()
        for d in ("/usr/lib/x86_64-linux-gnu/rsyslog", "/usr/lib/aarch64-linux-gnu/rsyslog", "/usr/lib/rsyslog")
    )


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_cert(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 / localhost (the client trusts it as its CA)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@dataclass
class Received:
    pri: int
    timestamp: str
    hostname: str
    app_name: str
    msgid: str
    structured_data: str
    msg: str


class Rsyslog:
    def __init__(self, workdir: Path, tls_cert: tuple[Path, Path] | None = None) -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.tcp_port = free_port()
        self.udp_port = free_port(socket.SOCK_DGRAM)
        self.tls_port = free_port() if tls_cert else None
        self.tls_cert = tls_cert
        self.out = self.dir / "received.log"
        self.conf = self.dir / "rsyslog.conf"
        self.pidfile = self.dir / "rsyslogd.pid"
        self.proc: subprocess.Popen[bytes] | None = None
        self._write_conf()

    def _write_conf(self) -> None:
        (self.dir / "work").mkdir(exist_ok=True)
        tls_global = tls_input = ""
        if self.tls_cert:
            cert, key = self.tls_cert
            tls_global = (
                f'global(DefaultNetstreamDriverCAFile="{cert}" DefaultNetstreamDriverCertFile="{cert}" '
                f'DefaultNetstreamDriverKeyFile="{key}")\n'
            )
            tls_input = (
                f'input(type="imtcp" address="127.0.0.1" port="{self.tls_port}" ruleset="capture" '
                'streamDriver.name="ossl" streamDriver.mode="1" streamDriver.authMode="anon")\n'
            )
        fields = SEP.join(
            ["%PRI%", "%TIMESTAMP:::date-rfc3339%", "%HOSTNAME%", "%APP-NAME%", "%MSGID%", "%STRUCTURED-DATA%", "%msg%"]
        )
        self.conf.write_text(
            f'global(workDirectory="{self.dir / "work"}" maxMessageSize="256k")\n'
            f"{tls_global}"
            'module(load="imtcp")\n'
            'module(load="imudp")\n'
            f'template(name="capture" type="string" string="{fields}\\n")\n'
            'ruleset(name="capture") {\n'
            f'  action(type="omfile" file="{self.out}" template="capture" flushOnTXEnd="on" asyncWriting="off")\n'
            "}\n"
            f'input(type="imtcp" address="127.0.0.1" port="{self.tcp_port}" ruleset="capture")\n'
            f'input(type="imudp" address="127.0.0.1" port="{self.udp_port}" ruleset="capture")\n'
            f"{tls_input}"
        )

    def start(self, timeout: float = 10.0) -> Rsyslog:
        exe = rsyslogd()
        if exe is None:
            raise RuntimeError("rsyslogd is not installed (apt-get install rsyslog rsyslog-openssl)")
        self.pidfile.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [exe, "-n", "-f", str(self.conf), "-i", str(self.pidfile)],
            stdout=subprocess.DEVNULL,
            stderr=open(self.dir / "rsyslogd.err", "ab"),  # noqa: SIM115 - the daemon keeps writing to it
        )
        deadline = time.monotonic() + timeout
        ports = [p for p in (self.tcp_port, self.tls_port) if p]
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rsyslogd exited: {(self.dir / 'rsyslogd.err').read_text()[-2000:]}")
            if all(_accepts(p) for p in ports):
                time.sleep(0.1)  # imudp binds in the same start-up step; give it a moment
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("rsyslogd did not start listening")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def received(self) -> list[Received]:
        if not self.out.exists():
            return []
        out = []
        for line in self.out.read_text(errors="replace").splitlines():
            parts = line.split(SEP, 6)
            if len(parts) == 7:
                out.append(Received(int(parts[0]), *parts[1:]))
        return out

    def wait_for(self, n: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        got = self.received()
        while len(got) < n and time.monotonic() < deadline:
            time.sleep(0.05)
            got = self.received()
        return got


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False
