"""A real Azure Blob Storage endpoint for tests: Microsoft's Azurite emulator, on 127.0.0.1.

Why Azurite: it speaks the Blob REST API that delta-rs (through the Rust
``object_store`` crate) speaks to Azure, with Shared Key auth, conditional
puts and listings, so the lake's ``az://`` path is tested against real
requests and not a mock. It comes from the npm registry; ``tests/peers.py``
installs it into a cache directory when a session starts on a fresh machine.

What was learnt wiring delta-rs to it (deltalake 1.6.6):

* ``use_emulator=true`` ignores ``endpoint`` and reads the address from the
  ``AZURITE_BLOB_STORAGE_URL`` environment variable (default port 10000), so
  tests pass the plain Shared Key options instead, which also work on the
  command line as ``--lake-option``: ``account_name``, ``account_key``,
  ``endpoint`` (path style, the account in the path) and ``allow_http``;
* delta-rs does not create the container: a write to a missing one fails
  with ``ContainerNotFound``, so :meth:`Azurite.create_container` makes it
  first with one signed PUT (no Azure SDK needed).

Each test takes a fresh container (the ``az_container`` fixture), so tests
sharing the one emulator of a session never see each other's tables.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import http.client
import socket
import subprocess
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path
from urllib.parse import quote

import pytest
from peers import AZURITE_VERSION, azurite_blob, azurite_dir

#: the emulator's one account and its key: public, printed in Microsoft's documentation, not a secret
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
#: the REST API version the fixture's own requests name (Azurite runs with --skipApiVersionCheck anyway)
_API_VERSION = "2021-08-06"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AzuriteError(RuntimeError):
    """The emulator did not start, or answered a request with an error."""


class Azurite:
    """``start()`` / ``stop()`` an Azurite blob service, and the few REST calls tests need (Shared Key signed)."""

    def __init__(self, location: Path, port: int | None = None) -> None:
        self.location = location
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = location / "azurite.log"

    # --- what the code under test is given ---------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """The blob endpoint, path style (``http://127.0.0.1:PORT/devstoreaccount1``), as delta-rs wants it."""
        return f"http://127.0.0.1:{self.port}/{ACCOUNT}"

    @property
    def storage_options(self) -> dict[str, str]:
        """delta-rs storage options that reach this emulator (the ones ``--lake-option`` passes)."""
        return {"account_name": ACCOUNT, "account_key": ACCOUNT_KEY, "endpoint": self.endpoint, "allow_http": "true"}

    def lake_options(self) -> list[str]:
        """The same options as command-line arguments: ``--lake-option KEY=VALUE`` ..."""
        args: list[str] = []
        for key, value in self.storage_options.items():
            args += ["--lake-option", f"{key}={value}"]
        return args

    # --- process ------------------------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> None:
        """Start the emulator and return once it answers a signed request (never a fixed sleep)."""
        exe = azurite_blob()
        if exe is None:
            raise AzuriteError(f"azurite is not installed under {azurite_dir()} (python tests/peers.py installs it)")
        self.location.mkdir(parents=True, exist_ok=True)
        cmd = [
            str(exe),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(self.port),
            "--location",
            str(self.location / "data"),
            "--skipApiVersionCheck",
            "--disableTelemetry",
            "--loose",
            "--silent",
        ]
        with open(self.log_path, "ab") as log:
            # own process group: stop() ends node and nothing else
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AzuriteError(f"azurite exited with {self.proc.returncode}: {self.log_path.read_text()[-2000:]}")
            with contextlib.suppress(OSError, AzuriteError):
                self.request("GET", "", {"comp": "list"})
                return
            if time.monotonic() > deadline:
                self.stop()
                raise AzuriteError(f"azurite did not answer on port {self.port} within {timeout:.0f} s")
            time.sleep(0.1)  # poll interval while waiting for readiness, not a wait for an event

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    # --- REST ---------------------------------------------------------------------------------------

    def _sign(self, method: str, path: str, query: dict[str, str], headers: dict[str, str]) -> str:
        """The Shared Key ``Authorization`` header for a request (Azure Storage's documented string-to-sign)."""
        ms = "".join(
            f"{k}:{v}\n" for k, v in sorted((k.lower(), v) for k, v in headers.items() if k.lower().startswith("x-ms-"))
        )
        resource = f"/{ACCOUNT}{path}" + "".join(f"\n{k.lower()}:{v}" for k, v in sorted(query.items()))
        length = headers.get("Content-Length", "")
        standard = [
            "",
            "",
            "" if length == "0" else length,
            "",
            headers.get("Content-Type", ""),
            "",
            "",
            "",
            "",
            "",
            "",
        ]
        to_sign = "\n".join([method, *standard]) + "\n" + ms + resource
        mac = hmac.new(base64.b64decode(ACCOUNT_KEY), to_sign.encode(), hashlib.sha256).digest()
        return f"SharedKey {ACCOUNT}:{base64.b64encode(mac).decode()}"

    def request(self, method: str, path: str, query: dict[str, str] | None = None) -> bytes:
        """``method`` on ``/devstoreaccount1{path}``; the body of a 2xx answer, else :class:`AzuriteError`."""
        query = query or {}
        full = f"/{ACCOUNT}{quote(path)}"
        headers = {"x-ms-date": formatdate(usegmt=True), "x-ms-version": _API_VERSION, "Content-Length": "0"}
        headers["Authorization"] = self._sign(method, full, query, headers)
        url = full + ("?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in query.items()) if query else "")
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, url, headers=headers)
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
        if resp.status >= 300:
            raise AzuriteError(f"{method} {url}: {resp.status} {resp.reason}: {body[:500]!r}")
        return body

    def create_container(self, name: str) -> None:
        self.request("PUT", f"/{name}", {"restype": "container"})

    def blobs(self, container: str, prefix: str = "") -> list[str]:
        """Names of the blobs in ``container`` under ``prefix`` (every page of the listing)."""
        names: list[str] = []
        marker = ""
        while True:
            query = {"restype": "container", "comp": "list", "prefix": prefix}
            if marker:
                query["marker"] = marker
            root = ET.fromstring(self.request("GET", f"/{container}", query))
            names += [el.text or "" for el in root.iter("Name")]
            marker = root.findtext("NextMarker") or ""
            if not marker:
                return names


def lake_uri(container: str, path: str = "lake") -> str:
    """``az://container/path``: the lake root tests hand to ``--lake``."""
    return f"az://{container}/{path}"


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """One emulator for the session (node starts in about a second); tests keep apart by container."""
    service = Azurite(tmp_path_factory.mktemp("azurite"))
    service.start()
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture
def az_container(azurite: Azurite) -> str:
    """A new, empty container of the session's emulator, for this test alone."""
    name = f"t{uuid.uuid4().hex[:20]}"
    azurite.create_container(name)
    return name


__all__ = [
    "ACCOUNT",
    "ACCOUNT_KEY",
    "AZURITE_VERSION",
    "Azurite",
    "AzuriteError",
    "az_container",
    "azurite",
    "azurite_blob",
    "azurite_dir",
    "lake_uri",
]
