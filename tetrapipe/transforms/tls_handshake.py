"""Recognise TLS ClientHello / ServerHello records in bytes Tetragon captured.

Open-source Tetragon has no TLS event, but a TracingPolicy can capture the
first bytes a process writes to or reads from a socket
(``tracing-policies/tls-handshake.yaml``). The handshake is plaintext by
design, so those bytes say what the client offered (SNI, versions, ciphers)
and what the server chose (version, cipher). This parser is strict about
structure and lenient about length: a buffer cut short (Tetragon caps what it
copies) still yields what was complete, and anything that is not a handshake
gives ``None`` — never an exception.

TLS 1.3 hides its version: the record and ServerHello say 1.2 and the real
choice is in the ``supported_versions`` extension, which is read here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tetrapipe.transforms.tls_ciphers import cipher_name, version_name

CONTENT_HANDSHAKE = 0x16
HS_CLIENT_HELLO = 1
HS_SERVER_HELLO = 2
EXT_SERVER_NAME = 0
EXT_SUPPORTED_VERSIONS = 43
EXT_ALPN = 16
# HelloRetryRequest is a ServerHello with this fixed random (RFC 8446 4.1.3)
HRR_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")


def _is_grease(v: int) -> bool:
    """GREASE values (RFC 8701) are noise clients add to keep servers honest."""
    return (v & 0x0F0F) == 0x0A0A and (v >> 8) == (v & 0xFF)


@dataclass
class Hello:
    """What one handshake message says. ``kind`` is 'client_hello' or 'server_hello'."""

    kind: str
    record_version: int
    legacy_version: int
    sni: str | None = None
    cipher: int | None = None  # ServerHello: the chosen suite
    offered_ciphers: list[int] = field(default_factory=list)  # ClientHello
    offered_versions: list[int] = field(default_factory=list)  # ClientHello supported_versions
    selected_version: int | None = None  # ServerHello supported_versions (TLS 1.3)
    alpn: list[str] = field(default_factory=list)
    hello_retry: bool = False
    truncated: bool = False

    @property
    def version(self) -> int:
        """The negotiated version for a ServerHello; the highest offered for a ClientHello."""
        if self.kind == "server_hello":
            return self.selected_version or self.legacy_version
        offered = [v for v in self.offered_versions if not _is_grease(v)]
        return max(offered) if offered else self.legacy_version

    @property
    def version_name(self) -> str:
        return version_name(self.version)

    @property
    def cipher_name(self) -> str | None:
        return cipher_name(self.cipher) if self.cipher is not None else None


class _Reader:
    """Bounds-checked reads; running off the end raises _Short."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise _Short
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        b = self.take(2)
        return (b[0] << 8) | b[1]

    def u24(self) -> int:
        b = self.take(3)
        return (b[0] << 16) | (b[1] << 8) | b[2]

    def vec(self, len_bytes: int) -> _Reader:
        n = self.u8() if len_bytes == 1 else self.u16()
        return _Reader(self.take(n))

    def remaining(self) -> int:
        return len(self.data) - self.pos


class _Short(Exception):
    """The buffer ended inside a field."""


def _handshake_payload(data: bytes) -> tuple[int, bytes, bool] | None:
    """Join the handshake records at the start of ``data``; returns (record version, payload, cut short)."""
    payload = b""
    record_version = None
    pos = 0
    cut = False
    while pos + 5 <= len(data) and data[pos] == CONTENT_HANDSHAKE:
        ver = (data[pos + 1] << 8) | data[pos + 2]
        if data[pos + 1] != 3 or data[pos + 2] > 4:
            return None
        length = (data[pos + 3] << 8) | data[pos + 4]
        if length == 0 or length > 16384 + 2048:
            return None
        record_version = record_version or ver
        body = data[pos + 5 : pos + 5 + length]
        payload += body
        if len(body) < length:
            cut = True
            break
        pos += 5 + length
        if len(payload) >= 4 and len(payload) >= 4 + ((payload[1] << 16) | (payload[2] << 8) | payload[3]):
            break  # the first handshake message is complete
    if record_version is None:
        return None
    return record_version, payload, cut


def parse_hello(data: bytes) -> Hello | None:
    """Parse the first handshake message in ``data``, or return None if it is not one."""
    try:
        found = _handshake_payload(data)
    except IndexError:
        return None
    if found is None:
        return None
    record_version, payload, cut = found
    if len(payload) < 4 or payload[0] not in (HS_CLIENT_HELLO, HS_SERVER_HELLO):
        return None
    r = _Reader(payload)
    msg_type = r.u8()
    length = r.u24()
    body = payload[4 : 4 + length]
    truncated = cut or len(body) < length
    try:
        if msg_type == HS_CLIENT_HELLO:
            return _client_hello(_Reader(body), record_version, truncated)
        return _server_hello(_Reader(body), record_version, truncated)
    except _Short:
        return None


def _client_hello(r: _Reader, record_version: int, truncated: bool) -> Hello | None:
    legacy = r.u16()
    if legacy >> 8 != 3:
        return None
    r.take(32)  # random
    r.vec(1)  # session id
    hello = Hello("client_hello", record_version, legacy, truncated=truncated)
    try:
        suites = r.vec(2)
        while suites.remaining() >= 2:
            s = suites.u16()
            if not _is_grease(s):
                hello.offered_ciphers.append(s)
        r.vec(1)  # compression methods
        if r.remaining() == 0:
            return hello
        _extensions(r.vec(2), hello)
    except _Short:
        hello.truncated = True
    return hello


def _server_hello(r: _Reader, record_version: int, truncated: bool) -> Hello | None:
    legacy = r.u16()
    if legacy >> 8 != 3:
        return None
    random = r.take(32)
    r.vec(1)  # session id
    hello = Hello("server_hello", record_version, legacy, truncated=truncated)
    hello.hello_retry = random == HRR_RANDOM
    hello.cipher = r.u16()
    try:
        r.u8()  # compression method
        if r.remaining() == 0:
            return hello
        _extensions(r.vec(2), hello)
    except _Short:
        hello.truncated = True
    return hello


def _extensions(exts: _Reader, hello: Hello) -> None:
    while exts.remaining() >= 4:
        etype = exts.u16()
        edata = exts.vec(2)
        if etype == EXT_SERVER_NAME and hello.kind == "client_hello":
            names = edata.vec(2)
            while names.remaining() >= 3:
                name_type = names.u8()
                name = names.vec(2).data
                if name_type == 0:
                    hello.sni = name.decode("ascii", errors="replace")
                    break
        elif etype == EXT_SUPPORTED_VERSIONS:
            if hello.kind == "client_hello":
                versions = edata.vec(1)
                while versions.remaining() >= 2:
                    v = versions.u16()
                    if not _is_grease(v):
                        hello.offered_versions.append(v)
            elif edata.remaining() >= 2:
                hello.selected_version = edata.u16()
        elif etype == EXT_ALPN:
            protos = edata.vec(2)
            while protos.remaining() >= 1:
                hello.alpn.append(protos.vec(1).data.decode("ascii", errors="replace"))
