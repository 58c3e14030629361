"""``tetrapipe rules``: list, lint, test, backtest and show the detection rules.

\b
tetrapipe rules list                       what is loaded, and the policies each rule needs
tetrapipe rules test [PATH...]             run every rule's tests (CI: --format junit -o report.xml)
tetrapipe rules lint [PATH...]             schema, columns, never-true conditions, duplicates
tetrapipe rules backtest --since 2026-03-10  what the rules would have fired over the history
tetrapipe rules show RULE_ID               the SQL a rule compiles to (paste it into tetrapipe query)
tetrapipe rules coverage [--policies DIR]  the ATT&CK matrix; which rules a cluster's policies let fire
tetrapipe rules relearn RULE_ID [--since]   a first-seen rule learns its baseline again (override file)
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tetrapipe.commands.coverage import coverage_command
from tetrapipe.commands.options import lake_option, open_lake, rules_option
from tetrapipe.commands.relearn import relearn_command
from tetrapipe.commands.report import SEVERITY_STYLE
from tetrapipe.textsafe import visible
from tetrapipe.units import most_severe_first

if TYPE_CHECKING:
    from rich.text import Text

    from tetrapipe.ruleset.testing import TestReport

out = Console(highlight=False, emoji=False, soft_wrap=False, width=None if sys.stdout.isatty() else 160)
# data in a line is text, not :emoji: codes; one problem, one line (file:line first), never folded in a CI log
err = Console(stderr=True, highlight=False, emoji=False, soft_wrap=True)


def _roots(paths: tuple[str, ...], rules_dir: str | None = None) -> tuple[list[Path], list[Path] | None]:
    """(directories to load, files to restrict tests to or None) from PATH arguments."""
    from tetrapipe.ruleset.locate import choose_rules_dir, rules_root_of

    if not paths:
        root, note = choose_rules_dir(rules_dir)
        if note:
            err.print(visible(note), markup=False, highlight=False)
        if root is None:
            raise click.UsageError("no rules directory: give PATH, --rules DIR or set TETRAPIPE_RULES")
        return [root], None
    roots: list[Path] = []
    files: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise click.UsageError(f"{raw}: no such file or directory")
        if p.is_dir():
            roots.append(p)
        else:
            files.append(p)
            root = rules_root_of(p)
            if not any(root.resolve() == r.resolve() for r in roots):
                roots.append(root)
    # a directory given alongside files of its own: test everything in it
    only = files if files and not any(Path(x).is_dir() for x in paths) else None
    return roots, only


def _load(roots: list[Path]):  # noqa: ANN202
    from tetrapipe.ruleset import load_ruleset

    return load_ruleset(roots)


def _fail_on_errors(rs) -> None:  # noqa: ANN001
    if rs.errors:
        for issue in rs.errors:
            err.print(f"[bold red]error[/] {escape(visible(str(issue)))}", markup=True, highlight=False)
        err.print(f"[bold red]{len(rs.errors)} error{'s' if len(rs.errors) != 1 else ''} in the rules[/]")
        sys.exit(2)


@click.group("rules")
def rules_group() -> None:
    """Detection rules: list, lint, test, backtest, show, import-sigma, coverage."""


rules_group.add_command(coverage_command)
rules_group.add_command(relearn_command)


@rules_group.command("list")
@rules_option(detection=False)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--all", "show_all", is_flag=True, help="Include disabled rules.")
def list_command(rules_dir: str | None, fmt: str, show_all: bool) -> None:
    """The rules loaded, their severity, event kinds, MITRE ids, the TracingPolicy each depends on."""
    import orjson

    from tetrapipe.ruleset.locate import policies_dir_for
    from tetrapipe.ruleset.policies import load_policies

    roots, _ = _roots((), rules_dir)
    rs = _load(roots)
    _fail_on_errors(rs)
    policies, _ = load_policies(policies_dir_for(roots[0]))
    rules = [r for r in rs.rules if show_all or r.enabled]
    if fmt == "json":
        rows = [
            {
                "id": r.id,
                "title": r.title,
                "severity": r.severity,
                "enabled": r.enabled,
                "event": r.events,
                "mitre": r.mitre,
                "tags": r.tags,
                "policies": r.policies,
                "tetragon_flags": r.tetragon_flags,
                "params": r.params,
                "params_by_namespace": r.params_by_namespace,
                "dedup": {"fields": r.dedup.fields, "window_seconds": r.dedup.window_seconds},
                "tests": len(r.tests),
                "file": str(r.path),
            }
            for r in rules
        ]
        click.echo(orjson.dumps(rows, option=orjson.OPT_INDENT_2, default=str).decode())
        return
    t = Table(
        title=f"[bold]{len(rules)} rules[/] from {', '.join(map(str, roots))}",
        title_justify="left",
        header_style="bold cyan",
    )
    for col in ("id", "severity", "events", "MITRE", "needs (policy, flags)", "params", "tests"):
        t.add_column(col, overflow="fold", no_wrap=col == "id")
    for r in sorted(rules, key=lambda r: r.id):
        needs = [f"{p}" + ("" if p in policies else " [red](missing)[/]") for p in r.policies] + r.tetragon_flags
        params = ", ".join(f"{k}={v}" for k, v in r.params.items())
        if r.params_by_namespace:
            params += " (+" + ", ".join(r.params_by_namespace) + ")"
        state = "" if r.enabled else " [dim](disabled)[/]"
        kinds = " ".join(k.removeprefix("process_") for k in r.events)
        t.add_row(
            r.id + state,
            f"[{SEVERITY_STYLE.get(r.severity, '')}]{r.severity}[/]",
            kinds,
            " ".join(r.mitre),
            " ".join(needs) or "[dim]-[/]",
            params,
            str(len(r.tests)),
        )
    out.print(t)


@rules_group.command("test")
@click.argument("paths", nargs=-1)
@rules_option(detection=False)
@click.option("--format", "fmt", type=click.Choice(["text", "junit"]), default="text", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write the report to this file.")
@click.option("-k", "keyword", help="Only tests whose 'rule-id::test name' contains this text.")
@click.option("--quiet", "-q", is_flag=True, help="Only failures and the summary.")
def test_command(
    paths: tuple[str, ...], rules_dir: str | None, fmt: str, output: str | None, keyword: str | None, quiet: bool
) -> None:
    """Run the rules' tests: sample logs or inline events in, alerts expected out.

    PATHS are rule directories or rule files (default: the rules directory).
    Exit code 1 when a test fails or a rule does not load, 5 when no test ran.
    """
    from tetrapipe.ruleset.testing import run_tests

    roots, files = _roots(paths, rules_dir)
    rs = _load(roots)
    report = run_tests(rs, files=files, keyword=keyword)
    if fmt == "junit":
        from tetrapipe.ruleset.junit import to_junit

        xml = to_junit(report)
        if output:
            Path(output).write_text(xml, encoding="utf-8")
            print_report(Console(stderr=True, highlight=False), report, verbose=False)
        else:
            click.echo(xml, nl=False)
    else:
        console = Console(file=open(output, "w", encoding="utf-8"), width=120) if output else out  # noqa: SIM115
        print_report(console, report, verbose=not quiet)
    untested = [r.id for r in rs.rules if not r.tests and (files is None or r.path in files)]
    if untested and not quiet:
        err.print(
            f"[yellow]{len(untested)} rule{'s' if len(untested) != 1 else ''} without tests:[/] " + ", ".join(untested),
            highlight=False,
        )
    if not report.results:
        # as pytest: exit 5 when nothing ran, so a CI job over an untested rules directory is not green
        # the keyword as typed: `-k '[b]x'` is text, not markup
        err.print(
            "[yellow]no tests ran[/]" + (f" (-k {escape(visible(repr(keyword)))} selected none)" if keyword else "")
        )
        sys.exit(5 if report.ok else 1)
    sys.exit(0 if report.ok else 1)


@rules_group.command("lint")
@click.argument("paths", nargs=-1)
@rules_option(detection=False)
@click.option(
    "--samples",
    type=click.Path(exists=True),
    default=None,
    help="Sample logs to evaluate conditions on (default: samples/ next to the rules directory, else the shipped ones).",
)
@click.option(
    "--policies",
    "policies_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="TracingPolicy directory (default: tracing-policies/ next to the rules directory).",
)
@click.option("--strict", is_flag=True, help="Warnings fail too.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def lint_command(
    paths: tuple[str, ...], rules_dir: str | None, samples: str | None, policies_dir: str | None, strict: bool, fmt: str
) -> None:
    """Check rules: schema, columns, boolean conditions, duplicate ids, never-true conditions, policies."""
    from tetrapipe.ruleset.lint import lint
    from tetrapipe.ruleset.locate import policies_dir_for, samples_dir_for

    roots, _ = _roots(paths, rules_dir)
    rs = _load(roots)
    sample_dir = Path(samples) if samples else samples_dir_for(roots[0])
    pol = Path(policies_dir) if policies_dir else policies_dir_for(roots[0])
    report = lint(rs, samples=sample_dir, policies_dir=pol)
    if fmt == "json":
        import orjson

        click.echo(
            orjson.dumps(
                [
                    {
                        "file": str(i.path) if i.path else None,
                        "line": i.line,
                        "level": i.level,
                        "rule": i.rule_id,
                        "reason": i.reason,
                    }
                    for i in report.issues
                ],
                option=orjson.OPT_INDENT_2,
            ).decode()
        )
    else:
        for i in report.issues:
            color = "red" if i.level == "error" else "yellow"
            out.print(
                f"{escape(visible(i.where()))}: [{color}]{i.level}[/]: {escape(visible(i.reason))}"
                + (f" [dim]({escape(visible(i.rule_id))})[/]" if i.rule_id else ""),
                soft_wrap=True,  # one issue, one line: `rules lint | grep error` keeps its file:line
            )
        checked = f"{report.rules} rules"
        if sample_dir:
            checked += f", {report.sample_events} sample events from {sample_dir}"
        if pol:
            checked += f", policies in {pol}"
        color = "red" if report.errors else ("yellow" if report.warnings else "green")
        out.print(
            f"[bold {color}]{len(report.errors)} errors, {len(report.warnings)} warnings[/] ({escape(checked)})",
            soft_wrap=True,  # the installed package's paths are long: the summary stays one line
        )
    failed = bool(report.errors) or (strict and bool(report.warnings))
    sys.exit(1 if failed else 0)


@rules_group.command("backtest")
@rules_option(detection=False)
@lake_option()
@click.option("--since", help="Only events at or after this time (e.g. 2026-03-10 or '2026-03-10 09:00').")
@click.option("--until", help="Only events before this time.")
@click.option("--rule", "rule_ids", multiple=True, help="Only this rule (repeat for more).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@click.option("--limit", type=int, default=50, show_default=True, help="Alerts shown in the table.")
def backtest_command(
    rules_dir: str | None,
    lake_dir: str,
    since: str | None,
    until: str | None,
    rule_ids: tuple[str, ...],
    fmt: str,
    limit: int,
) -> None:
    """Run the rules over the stored history and report what would have fired.

    One row per alert (rule, dedup key, window) with its total count; 'stored'
    says whether the live pipeline already recorded that alert.
    \f

    (Not in --help.) Long only because a click command receives each of its options
    as a parameter; the work is done by the modules it calls.
    """
    from tetrapipe.lake import connect
    from tetrapipe.ruleset.backtest import backtest

    roots, _ = _roots((), rules_dir)
    rs = _load(roots)
    _fail_on_errors(rs)
    rules = [r for r in rs.rules if r.enabled]
    if rule_ids:
        unknown = set(rule_ids) - {r.id for r in rs.rules}
        if unknown:
            raise click.UsageError(f"unknown rule(s): {', '.join(sorted(unknown))}")
        rules = [r for r in rs.rules if r.id in rule_ids]
    lake = open_lake(lake_dir)
    if lake.table("events") is None:
        raise click.UsageError(f"{lake_dir} holds no events (tetrapipe ingest FILE --lake {lake_dir})")
    import duckdb

    try:
        table = backtest(lake, rules, since=since, until=until)
    except duckdb.ConversionException as exc:
        raise click.UsageError(f"--since/--until: {str(exc).splitlines()[0]}") from exc
    con = connect(lake)
    try:
        stored = {r[0] for r in con.sql("SELECT DISTINCT alert_id FROM alerts").fetchall()}
    finally:
        con.close()
    import pyarrow as pa

    table = table.append_column("stored", pa.array([a in stored for a in table.column("alert_id").to_pylist()]))
    if fmt != "table":
        from tetrapipe.lake.query import to_csv, to_json

        click.echo((to_json(table).decode() if fmt == "json" else to_csv(table)).rstrip("\n"))
        return
    rows = table.to_pylist()
    by_rule: dict[str, list[int]] = {}
    for r in rows:
        c = by_rule.setdefault(r["rule_id"], [0, 0, 0])
        c[0] += 1
        c[1] += r["count"]
        c[2] += 0 if r["stored"] else 1
    span = f" since {since}" if since else ""
    span += f" until {until}" if until else ""
    summary = Table(
        title=f"[bold]backtest of {len(rules)} rules over {lake_dir}{span}[/]",
        title_justify="left",
        header_style="bold cyan",
    )
    for col in ("rule", "alerts", "events", "not in the alerts table"):
        summary.add_column(col, justify="left" if col == "rule" else "right")
    for rid in sorted(by_rule, key=lambda k: -by_rule[k][0]):
        a, e, n = by_rule[rid]
        summary.add_row(escape(visible(rid)), str(a), str(e), str(n))
    quiet = [r.id for r in rules if r.id not in by_rule]
    out.print(summary)
    if quiet:
        out.print(f"[dim]no alerts: {', '.join(quiet)}[/]")
    if not rows:
        return
    t = Table(header_style="bold cyan")
    for col in ("severity", "rule", "first", "last", "where", "count", "message"):
        t.add_column(col, overflow="fold")
    rows.sort(key=lambda r: (most_severe_first(r["severity"]), str(r["time"])))
    for r in rows[:limit]:
        where = f"{r['namespace']}/{r['pod']}" if r["pod"] else f"host {r['node_name'] or ''}"
        # rows quote the events (pod names, arguments in the message): shown, never obeyed or read as markup
        t.add_row(
            f"[{SEVERITY_STYLE.get(r['severity'], '')}]{escape(visible(r['severity']))}[/]",
            escape(visible(r["rule_id"])),
            str(r["time"])[:19],
            str(r["last_time"])[:19],
            escape(visible(where)),
            str(r["count"]),
            escape(visible(r["message"] or "")),
        )
    out.print(t)
    if len(rows) > limit:
        out.print(f"[dim]... {len(rows) - limit} more (--limit, or --format json)[/]")


@rules_group.command("show")
@click.argument("rule_id")
@rules_option(detection=False)
def show_command(rule_id: str, rules_dir: str | None) -> None:
    """The SQL a rule compiles to: paste the WHERE clause into tetrapipe query to hunt with it."""
    roots, _ = _roots((), rules_dir)
    rs = _load(roots)
    rule = rs.get(rule_id)
    if rule is None:
        _fail_on_errors(rs)
        import difflib

        hint = difflib.get_close_matches(rule_id, [r.id for r in rs.rules], n=1)
        raise click.UsageError(f"no rule {rule_id!r}" + (f" (did you mean {hint[0]!r}?)" if hint else ""))
    c = rule.compiled
    # a title is whoever wrote the rule's text (a Sigma title: "Reverse shell [nc]"): shown, not read as markup
    head = escape(visible(f"{rule.path}:{rule.line}")), escape(visible(rule.title))
    out.print(f"[bold]{escape(rule.id)}[/] ({rule.severity}) {head[0]}\n{head[1]}\n")
    if rule.sequence is not None:
        from tetrapipe.ruleset.sequence import hunt_sql

        out.print(f"[bold cyan]-- the chains it finds[/] (by {rule.sequence.by}; every combination of step events)")
        click.echo(hunt_sql(rule))
        return
    if c.min_count:
        from tetrapipe.ruleset.plan import threshold_hunt_sql

        out.print(f"[bold cyan]-- the windows that reach the threshold[/] ({c.min_count})")
        click.echo(threshold_hunt_sql(rule))
        out.print("")
    out.print("[bold cyan]-- the events it matches[/]")
    click.echo(
        f"SELECT time, namespace, pod, process_binary, arguments\nFROM events\nWHERE {c.predicate()}\nORDER BY time;"
    )
    out.print("\n[bold cyan]-- message[/]")
    click.echo(c.message)
    out.print("\n[bold cyan]-- dedup key[/] (window " + f"{rule.dedup.window_seconds}s)")
    click.echo(c.dedup_key)
    if c.term:
        out.print("\n[bold cyan]-- new terms[/]")
        click.echo(c.term)
    if rule.first_seen is not None:
        from tetrapipe.ruleset.baseline import baseline_sql

        out.print("\n[bold cyan]-- the baseline[/] (paste into tetrapipe query; after rules relearn, the new one)")
        click.echo(baseline_sql(rule, rs))


@rules_group.command("import-sigma")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Rules directory to write the converted rules to (one YAML file per rule).",
)
@click.option("--force", is_flag=True, help="Overwrite rule files that already exist in --out.")
def import_sigma_command(paths: tuple[Path, ...], out_dir: Path, force: bool) -> None:
    """Convert Sigma rules (files or directories) for Linux into tetrapipe rules.

    Supported log sources: process_creation, file_event, file_change,
    file_delete, file_access, network_connection. A rule tetrapipe cannot
    express faithfully is refused with the reason; rules for other platforms
    are counted and skipped. The converted rules are loaded back (compiled
    against the event schema) before this command reports success; add tests
    to them and run `tetrapipe rules test OUT`.

    File names (and rule ids) are slugs of the Sigma title and id, inside OUT
    whatever the id says. The files are written all or none: staged, moved
    into place, loaded; on any error OUT is left as it was (exit 2).
    """
    from rich.markup import escape

    from tetrapipe.ruleset import Issue, load_ruleset
    from tetrapipe.ruleset.sigma.convert import import_sigma
    from tetrapipe.ruleset.sigma.write import SigmaImportError, write_rules

    def load_errors(new_files: list[Path]) -> list[Issue]:
        """The converted rules must load with the rest of --out (duplicate ids included) before they stay."""
        rs = load_ruleset([out_dir])
        return [i for i in rs.errors if i.path in new_files]

    report = import_sigma(paths)
    try:
        result = write_rules(report.converted, out_dir, force=force, validate=load_errors)
    except SigmaImportError as exc:
        err.print(f"[bold red]error[/] {escape(str(exc))}", highlight=False)
        sys.exit(2)
    for conv, target in result.written:
        out.print(
            f"[green]converted[/] {escape(str(conv.source))} -> {escape(str(target))}", highlight=False, soft_wrap=True
        )
    refused = report.refused + result.refused
    for source, reason in refused:
        out.print(f"[yellow]refused[/]   {escape(str(source))}: {escape(reason)}", highlight=False, soft_wrap=True)
    others = ", ".join(f"{n} {p}" for p, n in sorted(report.other_platforms.items()))
    for issue in result.broken:
        err.print(f"[bold red]error[/] {escape(str(issue))}", highlight=False)
    out.print(
        f"{len(result.written)} converted, {len(refused)} refused"
        + (f", {sum(report.other_platforms.values())} for other platforms ({escape(others)})" if others else "")
        + (f"; {len(result.broken)} do not load, so none was written" if result.broken else ""),
        highlight=False,
    )
    if result.broken:
        sys.exit(2)
    if result.written:
        out.print(f"next: add tests to each rule, then [bold]tetrapipe rules test {escape(str(out_dir))}[/]")
    if refused:
        sys.exit(1)


def print_report(console: Console, report: TestReport, verbose: bool = True) -> None:
    """pytest-like text: a line per test, failures with their diff, the summary line.

    Names, reasons and the diff quote rule files and test events (arguments,
    pod names): they are made visible (:func:`tetrapipe.textsafe.visible`) and
    turned into text by ``console.render_str`` with markup and emoji codes off,
    so nothing in them is obeyed by the terminal or read as rich markup.
    """

    def plain(text: str, multiline: bool = False) -> Text:
        return console.render_str(visible(text, newlines=multiline), markup=False, emoji=False, highlight=False)

    style = {"passed": "green", "failed": "bold red", "error": "bold red"}
    for r in report.results:
        if verbose or r.status != "passed":
            where = f"{r.path}:{r.line}" if r.line else str(r.path)
            line = plain(f"{where}::{r.rule_id}::{r.name} ")
            line.append(r.status.upper(), style=style[r.status])
            console.print(line, soft_wrap=True)  # the verdict on the test's own line: `| grep FAILED` finds where
    bad = [r for r in report.results if r.status != "passed"]
    if bad:
        console.rule("[bold red]FAILURES[/]")
        for r in bad:
            console.rule(plain(f"{r.rule_id} :: {r.name}"), characters="_")
            where = f"{r.path}:{r.line}" if r.line else str(r.path)
            console.print(plain(f"{where}: {r.reason}", multiline=True), soft_wrap=True)
            for line in r.diff:
                color = (
                    "red"
                    if line.startswith("-") and not line.startswith("---")
                    else "green"
                    if line.startswith("+") and not line.startswith("+++")
                    else None
                )
                console.print(plain(line), style=color, soft_wrap=True)
    color = "green" if report.ok else "red"
    console.rule(f"[bold {color}]{report.summary()}[/]", style=color)


COMMANDS = [rules_group]
