"""Event data made safe to show a person: control characters become visible escapes.

Everything tetrapipe shows comes from events, and process arguments, binaries,
paths, pod names and TLS server names are written by whoever runs the
process, an attacker included. Printed raw, ``\\x1b[2J`` clears the analyst's
terminal, an OSC 8 sequence turns text into a link to anywhere, backspaces and
carriage returns overwrite what was printed before them (hiding the real
command behind a harmless one), a newline forges an extra line of output and
U+202E (right-to-left override) shows ``gpj.exe`` as ``exe.jpg``. So every
human-readable output passes its data through :func:`visible`, which writes
each such character as the escape a programmer would type (``\\x1b``, ``\\r``,
``\\u202e``). Machine formats (JSON, CSV, the SIEM formats) keep the exact
data and never call it.

A literal backslash is left alone, so ``C:\\x1b`` typed as text reads the same
as an escaped ESC; the exact value is one ``--format json`` away, and escaping
every backslash would garble every regex and Windows path in the history.

This module is plain Python (no rich, no click): the HTML tree uses
:data:`UNSAFE_CLASS` for its script, the terminal faces call :func:`visible`.
"""

from __future__ import annotations

import re

#: The characters :func:`visible` escapes, as a regular-expression character
#: class body that Python's ``re`` and JavaScript's ``RegExp(..., "u")`` read
#: alike: C0 controls (newline and tab included: data is one line), DEL, C1
#: controls, the bidirectional controls (ALM, LRM, RLM, LRE/RLE/PDF/LRO/RLO,
#: LRI/RLI/FSI/PDI), the Unicode line and paragraph separators, lone
#: surrogates (which cannot even be encoded to a UTF-8 terminal), and the
#: characters that print as nothing at all: soft hyphen, Mongolian vowel
#: separator, zero-width space/joiners, word joiner and invisible operators,
#: the zero-width no-break space (BOM), interlinear annotation marks and the
#: tag characters (U+E0000-E007F, written literally: neither engine shares the
#: other's escape for a code point past U+FFFF). ``/usr/bin/cu\u200brl`` must
#: not look like ``/usr/bin/curl``.
UNSAFE_CLASS = (
    r"\x00-\x1f\x7f-\x9f\xad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ufff9-\ufffb\ud800-\udfff"
    + "\U000e0000-\U000e007f"
)

_UNSAFE = re.compile(f"[{UNSAFE_CLASS}]")
#: the same set without the newline, for text that is several lines by design (an error message)
_UNSAFE_BUT_NEWLINE = re.compile(f"[{UNSAFE_CLASS}](?<!\n)")
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape(match: re.Match[str]) -> str:
    ch = match.group()
    named = _NAMED.get(ch)
    if named is not None:
        return named
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def visible(text: str, *, newlines: bool = False) -> str:
    """``text`` with every control, bidi-override and separator character written as a visible escape.

    ``newlines=True`` keeps ``\\n`` as a line end, for text that is several
    lines by design; a value from an event is one line and keeps the default.
    A clean string (nearly all of them) costs one regex search and is
    returned as is.
    """
    pattern = _UNSAFE_BUT_NEWLINE if newlines else _UNSAFE
    if pattern.search(text) is None:
        return text
    return pattern.sub(_escape, text)


def has_unsafe(text: str, *, newlines: bool = False) -> bool:
    """True when :func:`visible` would change ``text``: the caller can skip rebuilding what is clean."""
    return (_UNSAFE_BUT_NEWLINE if newlines else _UNSAFE).search(text) is not None


__all__ = ["UNSAFE_CLASS", "has_unsafe", "visible"]
