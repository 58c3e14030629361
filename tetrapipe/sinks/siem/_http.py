"""One keep-alive HTTP(S) connection to a SIEM endpoint, shared by the HEC and webhook sinks.

Every transport failure (refused, reset, timeout, TLS) becomes a
:class:`~tetrapipe.sinks.siem.base.TransientError`: the request may or may
not have reached the peer, so the sink's answer is to send again (at least
once) or spool, never to drop.
"""

from __future__ import annotations

import http.client
import ssl
from urllib.parse import urlsplit

from tetrapipe.sinks.siem.base import TransientError


class HttpPeer:
    def __init__(
        self,
        url: str,
        *,
        timeout: float = 10.0,
        verify_tls: bool = True,
        ca_file: str | None = None,
        what: str = "HTTP",
    ) -> None:
        parts = urlsplit(url if "://" in url else f"https://{url}")
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"{what} url must be http:// or https://, not {url!r}")
        self.what = what
        self.scheme = parts.scheme
        self.hostport = parts.netloc
        #: the URL's path (no trailing slash) and query, as given
        self.path = parts.path.rstrip("/")
        self.query = parts.query
        self.timeout = timeout
        self._ssl: ssl.SSLContext | None = None
        if self.scheme == "https":
            self._ssl = ssl.create_default_context(cafile=ca_file)
            if not verify_tls:
                self._ssl.check_hostname = False
                self._ssl.verify_mode = ssl.CERT_NONE
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self.scheme == "https":
                self._conn = http.client.HTTPSConnection(self.hostport, timeout=self.timeout, context=self._ssl)
            else:
                self._conn = http.client.HTTPConnection(self.hostport, timeout=self.timeout)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def request(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, bytes, dict[str, str]]:
        """(status, body, lower-cased headers); a connection the peer asked to close is not reused."""
        try:
            conn = self._connection()
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
            status = resp.status
            resp_headers = {k.lower(): v for k, v in resp.getheaders()}
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise TransientError(f"{self.what} {self.hostport}: {type(exc).__name__}: {exc}") from exc
        if resp_headers.get("connection", "").lower() == "close":
            self.close()
        return status, raw, resp_headers


def retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (the delta-seconds form; a date is ignored)."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        return None


__all__ = ["HttpPeer", "retry_after"]
