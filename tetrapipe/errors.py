"""The domain's own errors: what a user can fix, said in words, turned into exit codes in one place.

Code below the command line (sources, transforms, rules, sinks, the lake)
raises these plain exceptions and never imports click; :mod:`tetrapipe.cli`
turns them into click's messages and exit codes (1 for a problem, 2 for a
usage error), so a library user gets an exception and a terminal user gets a
sentence, from the same code.
"""

from __future__ import annotations


class TetrapipeError(Exception):
    """A problem the user can fix; the message says what and where (exit 1 on the command line)."""


class UsageProblem(TetrapipeError):
    """A value the user gave cannot work (a taken port, a missing directory): exit 2, like a usage error."""


__all__ = ["TetrapipeError", "UsageProblem"]
