"""Secrets out of everything tetrapipe prints: configuration dumps, URLs, log lines and errors.

The one place that decides what a secret looks like, so ``config show``, the
forwarder's logs, sink errors and configuration problems all mask the same
way and a fix here fixes every output:

* a **key** looks secret when one of its words is a password, secret, token,
  credential, cookie, authorization or API key (``sasl_plain_password``,
  ``ssl.key.password``, ``sasl_oauth_token_provider``, ``X-Api-Key``,
  ``clientSecret``), or a ``key`` that is not a path to a key file
  (``ssl.key.location`` and ``ssl_keyfile`` name files; ``ssl_check_hostname``
  is no key at all);
* a **URL** keeps its scheme, host, port and path, but its userinfo becomes
  ``user:***@`` (``***@`` when there is only a user: that "user" is often a
  token), and query or fragment parameters with a secret-looking name become
  ``name=***``; a URL whose path is itself the secret (a Slack webhook) can
  hide the path too;
* free **text** (an exception, a log line) has every URL in it masked as
  above, and ``name=value`` / ``'name': 'value'`` pairs (option lists, dict
  reprs) with a secret-looking name masked; a bare ``name: text`` is prose
  ("options.token: environment variable ... is not set") and is left alone.

Masking is for display only: the values the program uses are never changed.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import unquote, urlsplit

MASK = "***"

#: words that make a key secret wherever they appear in it
_SECRET_WORDS = frozenset(
    {
        "password",
        "passwd",
        "pwd",
        "passphrase",
        "secret",
        "secrets",
        "token",
        "tokens",
        "apikey",
        "credential",
        "credentials",
        "cookie",
        "authorization",
        "auth",
        "oauth",
        "bearer",
        "jaas",
        "pem",
        "privatekey",
    }
)
#: endings of run-together words that are secrets too (accesstoken, clientsecret, xapikey)
_SECRET_SUFFIXES = ("password", "passwd", "secret", "token", "apikey", "privatekey")
#: a ``key`` followed by one of these names where the key is, not the key itself
_PATH_WORDS = frozenset({"file", "filename", "path", "location", "dir", "directory"})


def _words(name: str) -> list[str]:
    """``sslKeyPassword`` / ``ssl.key.password`` / ``X-Api-Key`` -> lower-case words."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)
    return [w for w in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if w]


def is_secret_key(name: str) -> bool:
    """Whether a configuration key, header or parameter name looks like it holds a secret."""
    words = _words(name)
    if not words:
        return False
    if any(w in _SECRET_WORDS or w.endswith(_SECRET_SUFFIXES) or w.startswith("oauth") for w in words):
        return True
    if any(w == "key" or w.endswith("key") for w in words):
        return words[-1] not in _PATH_WORDS
    return False


def _mask_params(text: str) -> str:
    """``a=1&token=x`` -> ``a=1&token=***`` (order and encoding of the rest unchanged)."""
    if not text:
        return text
    out = []
    for part in text.split("&"):
        name, eq, value = part.partition("=")
        out.append(f"{name}={MASK}" if eq and value and is_secret_key(unquote(name)) else part)
    return "&".join(out)


def _mask_netloc(netloc: str) -> str:
    userinfo, at, hostport = netloc.rpartition("@")
    if not at:
        return netloc
    user, colon, _ = userinfo.partition(":")
    return f"{user}:{MASK}@{hostport}" if colon else f"{MASK}@{hostport}"


def redact_url(url: str, *, keep_path: bool = True) -> str:
    """``https://user:pw@host:8088/x?token=t`` -> ``https://user:***@host:8088/x?token=***``.

    ``keep_path=False`` also replaces a non-empty path with ``/***``, for URLs
    whose path is the secret (Slack and Mattermost incoming webhooks). A
    string without ``://`` is read as ``host/path`` with an optional userinfo,
    the way the HTTP sinks read it.
    """
    if not isinstance(url, str) or not url:
        return url
    has_scheme = "://" in url
    try:
        parts = urlsplit(url if has_scheme else f"//{url}")
    except ValueError:  # e.g. an unbalanced IPv6 bracket: mask what looks like userinfo and stop there
        return re.sub(r"^([^/@]*//)?[^/@\s]*@", lambda m: (m.group(1) or "") + f"{MASK}@", url)
    path = parts.path
    if not keep_path and path not in ("", "/"):
        path = f"/{MASK}"
    netloc, query, fragment = _mask_netloc(parts.netloc), _mask_params(parts.query), _mask_params(parts.fragment)
    if (netloc, path, query, fragment) == (parts.netloc, parts.path, parts.query, parts.fragment):
        return url  # nothing to hide: exactly as given (urlunsplit would turn unix:///x into unix:/x)
    text = f"{parts.scheme}:" if parts.scheme else ""
    rest = url[len(text) :] if has_scheme else f"//{url}"
    if rest.startswith("//"):
        text += f"//{netloc}"
    text += path
    if query or "?" in rest:
        text += f"?{query}"
    if fragment or "#" in rest:
        text += f"#{fragment}"
    return text if has_scheme else text.removeprefix("//")


_URL_IN_TEXT = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
_PAIR_IN_TEXT = re.compile(
    r"""(?:(?P<q>["'])(?P<qkey>[A-Za-z_][\w.-]*)(?P=q)(?P<qsep>\s*[=:]\s*)|(?P<key>[A-Za-z_][\w.-]*)(?P<sep>\s*=\s*))"""
    r"""(?P<value>"[^"]*"|'[^']*'|(?:(?:Basic|Bearer|Digest|Negotiate|Splunk|Token)\s+)?[^\s,;&'"}]+)"""
)


def redact_text(text: str) -> str:
    """Every URL in ``text`` through :func:`redact_url`, and secret-looking ``name=value`` pairs masked."""
    if not isinstance(text, str) or not text:
        return text
    text = _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)

    def pair(m: re.Match[str]) -> str:
        value = m.group("value")
        quote = value[0] if value[:1] in ("'", '"') else ""
        key = m.group("qkey") or m.group("key")
        if not is_secret_key(key) or value.strip("'\"").startswith(MASK) or value in ('""', "''"):
            return m.group(0)
        return m.group(0)[: m.start("value") - m.start()] + f"{quote}{MASK}{quote}"

    return _PAIR_IN_TEXT.sub(pair, text)


def redact(data: Any) -> Any:
    """A copy of plain data (mappings, lists, scalars) fit to print.

    Values under secret-looking keys become ``***`` (a mapping under such a
    key keeps its keys, every value masked); strings elsewhere go through
    :func:`redact_text`, so a URL anywhere loses its password.
    """
    if isinstance(data, dict):
        out: dict[Any, Any] = {}
        for key, value in data.items():
            if isinstance(key, str) and is_secret_key(key) and value not in (None, "", [], {}):
                out[key] = {k: MASK for k in value} if isinstance(value, dict) else MASK
            else:
                out[key] = redact(value)
        return out
    if isinstance(data, list | tuple):
        return [redact(v) for v in data]
    if isinstance(data, str):
        return redact_text(data)
    return data


class RedactingFilter(logging.Filter):
    """A handler filter that masks URLs and secret pairs in every record it passes (message and traceback),
    and writes control characters in the message as visible escapes (:func:`tetrapipe.textsafe.visible`).

    Installed on the handlers of long-running commands, so a library's error
    that quotes a URL with its password (an HTTP client, a Kafka client) is
    masked too, not only tetrapipe's own messages.
    """

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        from tetrapipe.textsafe import visible

        message = record.getMessage()
        # masked, and control characters from data (a file name, a broker's error) written visibly
        masked = visible(redact_text(message), newlines=True)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact_text(self._formatter.formatException(record.exc_info))
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Put a :class:`RedactingFilter` on every handler of ``logger`` (the root logger by default)."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


__all__ = ["MASK", "RedactingFilter", "install_log_redaction", "is_secret_key", "redact", "redact_text", "redact_url"]
