"""README.md's commands as a new user types them, outside a checkout: what they promise holds.

The rest of the suite runs beside the repository's ``samples/``, ``rules/`` and
``tracing-policies/``; a user who installed the wheel stands in a directory
holding none of them. These tests run from an empty directory.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from tetrapipe.cli import cli


@pytest.fixture
def empty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    work = tmp_path / "empty"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def test_ingest_samples_outside_a_checkout_names_the_shipped_samples(empty: Path) -> None:
    """README's first command, `tetrapipe ingest samples/`, with no samples/ here: say where the package keeps them."""
    result = CliRunner().invoke(cli, ["ingest", "samples/"])
    assert result.exit_code == 2, result.output
    assert "no such file or directory: samples/" in result.output
    message = " ".join(result.output.split())  # click folds nothing, but be safe about line ends
    assert "the sample logs shipped with tetrapipe are in " in message, result.output
    shipped = Path(message.split("the sample logs shipped with tetrapipe are in ", 1)[1].split(":", 1)[0])
    assert (shipped / "scenario" / "tenant-jobs.log").is_file(), shipped
    assert f"tetrapipe ingest {shipped}" in message
    # a path that is simply mistyped gets no such hint
    other = CliRunner().invoke(cli, ["ingest", "smaples/"])
    assert other.exit_code == 2 and "shipped" not in other.output, other.output
