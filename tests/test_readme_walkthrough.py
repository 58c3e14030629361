"""README.md's commands as a new user types them, outside a checkout: what they promise holds.

The rest of the suite runs beside the repository's ``samples/``, ``rules/`` and
``tracing-policies/``; a user who installed the wheel stands in a directory
holding none of them. These tests run from an empty directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
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


@pytest.fixture
def run(empty: Path, tetrapipe_cmd: list[str]) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``tetrapipe ARGS...`` as a separate process in the empty directory, its output piped (not a terminal)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETRAPIPE_")}

    def tetrapipe(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*tetrapipe_cmd, *args], cwd=empty, env=env, capture_output=True, text=True, timeout=120)

    return tetrapipe


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


RULE = """\
id: nc-in-container
title: netcat in a container
description: nc started in a container
severity: high
event: process_exec
condition: process_name = 'nc' AND container_id IS NOT NULL
output: "{process_binary} {arguments} in {pod}"
tests:
  - name: the scenario's nc -e /bin/sh in the crawler pod fires, which is what on-call wants to see first thing
    log: samples/scenario/tenant-jobs.log
    expect: {count: 1, lines: [116]}
"""


def test_rules_test_lint_and_coverage_keep_one_finding_on_one_line_in_a_pipe(empty: Path, run: Callable) -> None:
    """`rules test | grep FAILED` and a CI log: a test, an issue or a policy problem was folded at 80-160 columns,
    the file:line on one line and the verdict or the reason on the next."""
    team = empty / "rules" / ("team-detections-" * 6)
    team.mkdir(parents=True)
    rule = team / "nc-in-container.yaml"
    rule.write_text(RULE)
    policies = empty / "pol"
    policies.mkdir()
    policy = policies / (("cluster-policies-" * 6) + ".yaml")
    policy.write_text("apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata: {name: x}\n---\n---\nfoo: [\n")
    where = f"{rule.relative_to(empty)}:"
    tested = run("rules", "test", "rules/")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert any(ln.startswith(where) and ln.endswith("PASSED") for ln in tested.stdout.splitlines()), tested.stdout
    # a failure's reason too: the rule's file and line, then what was expected and what came
    rule.write_text(RULE.replace("lines: [116]", "lines: [118]"))
    failing = run("rules", "test", "rules/")
    assert failing.returncode == 1
    assert any(ln.startswith(where) and ln.endswith("FAILED") for ln in failing.stdout.splitlines()), failing.stdout
    assert any(ln.startswith(where) and "got [116]" in ln for ln in failing.stdout.splitlines()), failing.stdout
    long_policies = empty / ("policies-of-the-production-cluster-" * 4)
    long_policies.mkdir()
    linted = run("rules", "lint", "rules/", "--policies", str(long_policies))
    assert linted.stdout.splitlines()[-1].endswith(f"policies in {long_policies})"), linted.stdout
    assert any(
        ln.startswith(where) and "warning: no test that does not fire" in ln and ln.endswith("(nc-in-container)")
        for ln in linted.stdout.splitlines()
    ), linted.stdout
    covered = run("rules", "coverage", "--rules", "rules", "--policies", "pol")
    problems = [ln for ln in covered.stderr.splitlines() if ln.startswith("policy problem")]
    assert problems and all(f"{policy.name}:" in ln and "invalid YAML" in ln for ln in problems), covered.stderr
    # a rule that does not load, as lint and coverage say it
    rule.write_text(RULE.replace("description: nc started in a container\n", ""))
    broken = run("rules", "lint", "rules/")
    assert any(
        ln.startswith(where) and "missing required key 'description'" in ln for ln in broken.stdout.splitlines()
    ), broken.stdout
    # coverage stops there (README: a broken rules directory never runs as a smaller rule set)
    covered = run("rules", "coverage", "--rules", "rules")
    assert covered.returncode == 2, covered.stdout + covered.stderr
    errors = [ln for ln in covered.stderr.splitlines() if ln.startswith("error")]
    assert errors and all(where in ln and "'description'" in ln for ln in errors), covered.stderr
    assert "ATT&CK coverage" not in covered.stdout, covered.stdout


def test_query_of_a_mistyped_lake_says_so_on_one_line(empty: Path, run: Callable) -> None:
    """`--lake` naming nothing: the note naming the path and the command to fill it was folded at 80 columns,
    and a [bracketed] part of the path was read as markup and left out."""
    missing = empty / ("history-[prod]-of-the-production-cluster-" * 3)
    proc = run("query", "SELECT count(*) FROM events", "--lake", str(missing))
    assert proc.returncode == 0, proc.stderr
    notes = [ln for ln in proc.stderr.splitlines() if ln.startswith("note:")]
    assert len(notes) == 1 and notes[0].endswith("every view is empty"), proc.stderr
    assert f"tetrapipe ingest FILE --lake {missing}" in notes[0]


def test_rules_test_keyword_that_selects_nothing_is_shown_as_typed(empty: Path) -> None:
    """`rules test -k '[b]late[/b]'` said `-k 'late' selected none`: the brackets were read as markup."""
    result = CliRunner().invoke(cli, ["rules", "test", "-k", "[b]late[/b]"])
    assert result.exit_code == 5, result.output
    assert "no tests ran (-k '[b]late[/b]' selected none)" in result.output, result.output


def test_status_and_process_without_a_reachable_broker_say_so_in_one_sentence(
    empty: Path, tetrapipe_cmd: list[str]
) -> None:
    """Nothing listening at --kafka (a broker down, a pod up before Kafka): `status` and `process` printed a
    Python traceback (either client). Both still exit 1 (a supervisor restarts the processor), saying why.

    Run side by side: each waits ~10 s for its client's bootstrap (librdkafka's metadata request).
    """
    from kafka_broker import free_port

    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETRAPIPE_")}
    commands = {
        "status": ["status", "--kafka", address],
        "process": ["process", "--kafka", address, "--lake", str(empty / "lake"), "--rules", "none"],
    }
    running = {
        name: subprocess.Popen(
            [*tetrapipe_cmd, *args], cwd=empty, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for name, args in commands.items()
    }
    said = {name: proc.communicate(timeout=120) for name, proc in running.items()}
    for name, proc in running.items():
        err = said[name][1]
        assert proc.returncode == 1, (name, said[name])
        assert "Traceback" not in err, (name, err[-3000:])
    assert f"Error: cannot read the partitions of tetragon.events from Kafka at {address}: " in said["status"][1]
    assert f"Error: cannot reach Kafka at {address}: " in said["process"][1], said["process"][1][-3000:]
    # librdkafka logs every refused connection of every thread: ~370 lines above that one, until its repeats
    # were held back (one line per kind a minute; kafka_client.RepeatFilter)
    assert said["process"][1].count("Connection refused") <= 4, said["process"][1][-3000:]


def test_rules_lint_of_a_copy_of_the_shipped_rules_still_checks_them_on_the_samples(empty: Path) -> None:
    """README: copy the shipped rules into ./rules to add your own. Without a samples/ beside that copy, lint's
    never-true-on-the-samples check was skipped without a word; the samples shipped with tetrapipe stand in."""
    from conftest import REPO

    shutil.copytree(REPO / "rules", empty / "rules")
    result = CliRunner().invoke(cli, ["rules", "lint"])
    assert result.exit_code == 0, result.output
    summary = result.output.strip().splitlines()[-1]
    assert " sample events from " in summary, summary
    shipped = Path(summary.split(" sample events from ", 1)[1].split(",", 1)[0])
    assert (shipped / "scenario" / "tenant-jobs.log").is_file(), summary
    # and the check runs: a condition no sample event meets is named
    (empty / "rules" / "never.yaml").write_text(
        RULE.replace("nc-in-container", "never-fires").replace("process_name = 'nc'", "process_name = 'no-such-tool'")
    )
    never = CliRunner().invoke(cli, ["rules", "lint"])
    assert any("never-fires" in ln and "sample" in ln for ln in never.output.splitlines()), never.output


def test_relearn_of_a_rule_that_does_not_load_says_why(empty: Path) -> None:
    """A rule file copied alone (its @macros left behind) was answered `no rule 'X' in DIR` by relearn."""
    from conftest import REPO

    mine = empty / "my-rules"
    mine.mkdir()
    shutil.copy(REPO / "rules" / "new-binary-in-image.yaml", mine)
    result = CliRunner().invoke(cli, ["rules", "relearn", "new-binary-in-image", "--rules", str(mine)])
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert "rule 'new-binary-in-image' in " in message and " does not load: " in message, result.output
    assert "unknown list or macro @in_container" in message, result.output
    assert not list(mine.glob("relearn-*.yaml"))


def test_rules_show_prints_a_title_with_brackets_as_written(empty: Path) -> None:
    """A Sigma title such as `Reverse shell [nc] or [bold]socat[/bold]` was shown as `Reverse shell  or socat`."""
    mine = empty / "rules"
    mine.mkdir()
    title = "Reverse shell [nc] or [bold]socat[/bold]"
    (mine / "nc.yaml").write_text(RULE.replace("title: netcat in a container", f'title: "{title}"'))
    result = CliRunner().invoke(cli, ["rules", "show", "nc-in-container"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[1] == title, result.output


def test_rules_coverage_of_a_rules_directory_that_is_not_there_stops(run: Callable) -> None:
    """`rules coverage --rules DIR` with a mistyped DIR drew an empty matrix and exited 0 (0 rules, 0 techniques)."""
    covered = run("rules", "coverage", "--rules", "no-such-rules")
    assert covered.returncode == 2, covered.stdout + covered.stderr
    assert "no-such-rules: no such file or directory" in covered.stderr, covered.stderr
    assert "ATT&CK coverage" not in covered.stdout, covered.stdout
