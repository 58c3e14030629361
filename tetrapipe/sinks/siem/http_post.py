"""One keep-alive HTTP(S) connection to a SIEM endpoint, shared by the HEC and webhook sinks.

Every transport failure (refused, reset, timeout, TLS) becomes a
:class:`~tetrapipe.sinks.siem.base.TransientError`: the request may or may
not have reached the peer, so the sink's answer is to send again (at least
once) or spool, never to drop.
"""

from __future__ import annotations

import base64
import http.client
import ssl
from urllib.parse import unquote, urlsplit

from tetrapipe.redact import redact_text, redact_url
from tetrapipe.sinks.siem.base import TransientError


class HttpPeer:
    """A SIEM endpoint given as a URL: scheme, host, port, path and query, and credentials in it.

    ``https://user:password@host/path`` is read as RFC 3986 says: the userinfo
    is not part of the host (``http.client`` would take ``user:password@host``
    for a host name and resolve it); it becomes HTTP basic authentication
    (``auth_header``), unless the sink sends its own ``Authorization``. The
    URL never appears in messages as given: they name ``hostport`` only, and
    :func:`~tetrapipe.redact.redact_url` masks it where it must be quoted.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 10.0,
        verify_tls: bool = True,
        ca_file: str | None = None,
        what: str = "HTTP",
    ) -> None:
        shown = redact_url(url, keep_path=False)
        try:
            parts = urlsplit(url if "://" in url else f"https://{url}")
            port = parts.port
        except ValueError as exc:  # a port that is not a number, an unbalanced IPv6 bracket
            raise ValueError(f"{what} url {shown!r} is not valid: {redact_text(str(exc))}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{what} url must be http:// or https://, not {shown!r}")
        self.what = what
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = port or (443 if self.scheme == "https" else 80)
        #: host:port as messages show it (never the userinfo)
        self.hostport = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        #: ``Basic ...`` from the URL's userinfo (percent-decoded), or None
        self.auth_header: str | None = None
        if parts.username is not None or parts.password is not None:
            pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
            self.auth_header = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
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
                self._conn = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout, context=self._ssl)
            else:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
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
        """(status, body, lower-cased headers); a connection the peer asked to close is not reused.

        The URL's credentials go in as basic authentication unless ``headers``
        already carry an ``Authorization`` (a HEC token, a bearer token).
        """
        if self.auth_header and not any(k.lower() == "authorization" for k in headers):
            headers = {"Authorization": self.auth_header, **headers}
        try:
            conn = self._connection()
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
            status = resp.status
            resp_headers = {k.lower(): v for k, v in resp.getheaders()}
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise TransientError(f"{self.what} {self.hostport}: {type(exc).__name__}: {redact_text(str(exc))}") from exc
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
