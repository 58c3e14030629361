"""``tetrapipe rules coverage``: the ATT&CK matrix of the rules in use; with --policies, what can fire.

\b
tetrapipe rules coverage                                   the matrix in the terminal
tetrapipe rules coverage --html coverage.html              the same as one self-contained page
tetrapipe rules coverage --policies tracing-policies/      rules that cannot fire, hooks no rule reads
kubectl get tracingpolicies -A -o yaml > tp.yaml && tetrapipe rules coverage --policies tp.yaml
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tetrapipe.commands.options import rules_option
from tetrapipe.textsafe import visible

out = Console(highlight=False, emoji=False, soft_wrap=False, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False, emoji=False, soft_wrap=True)  # a problem, one line: file:line first


def _safe(text: object) -> str:
    return escape(visible(str(text)))


@click.command("coverage")
@rules_option(detection=False)
@click.option(
    "--policies",
    "policies_path",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="TracingPolicies of a cluster: a directory, or the output of kubectl get tracingpolicies -A -o yaml.",
)
@click.option("--html", "html_out", type=click.Path(dir_okay=False, path_type=Path), help="Write the page here.")
def coverage_command(rules_dir: str | None, policies_path: Path | None, html_out: Path | None) -> None:
    """ATT&CK coverage (tactic x technique) of the enabled rules, and which of them a cluster's policies let fire."""
    from tetrapipe.ruleset import load_ruleset
    from tetrapipe.ruleset.coverage import against_policies, load_cluster_policies, matrix
    from tetrapipe.ruleset.locate import choose_rules_dir, policies_dir_for
    from tetrapipe.ruleset.policies import load_policies

    root, note = choose_rules_dir(rules_dir)
    if note:
        err.print(_safe(note))
    if root is None:
        raise click.UsageError("no rules directory: give --rules DIR or set TETRAPIPE_RULES")
    rs = load_ruleset([root])
    if rs.errors:
        # as every rules command: a broken (or mistyped) rules directory stops, never a smaller matrix that
        # reads as the rules in use (a missing --rules DIR drew an empty one and exited 0)
        for issue in rs.errors:
            err.print(f"[bold red]error[/] {_safe(issue)}")
        err.print(f"[bold red]{len(rs.errors)} error{'s' if len(rs.errors) != 1 else ''} in the rules[/]")
        sys.exit(2)
    rules = rs.enabled()
    cov = matrix(rules)
    if policies_path is not None:
        cluster, issues = load_cluster_policies(policies_path)
        for issue in issues:
            err.print(f"[yellow]policy problem[/] {_safe(issue)}")
        shipped, _ = load_policies(policies_dir_for(root))
        against_policies(cov, rules, cluster, shipped)
    _print(cov)
    if html_out is not None:
        from tetrapipe.ruleset.coverage_html import render_html

        html_out.write_text(render_html(cov), encoding="utf-8")
        out.print(f"wrote {_safe(html_out)}")


def _print(cov) -> None:  # noqa: ANN001
    tactics = cov.tactics()
    t = Table(
        title=f"[bold]ATT&CK coverage[/]: {cov.rules} rules, {len(cov.techniques())} techniques",
        title_justify="left",
        header_style="bold cyan",
    )
    t.add_column("technique", no_wrap=True)
    t.add_column("name", overflow="fold", max_width=34)
    for _, name in tactics:
        t.add_column(name, justify="center", overflow="fold", max_width=14)
    for tech in cov.techniques():
        row = [_safe(tech), _safe(cov.names.get(tech) or "")]
        row += [str(len(cov.cells.get((tid, tech), []))) if (tid, tech) in cov.cells else "" for tid, _ in tactics]
        t.add_row(*row)
    out.print(t)
    for tech in cov.techniques():
        ids = sorted({r for (_, t2), rs in cov.cells.items() if t2 == tech for r in rs})
        out.print(f"  {_safe(tech)}: {_safe(', '.join(ids))}")
    if cov.unmapped:
        out.print(f"no technique: {_safe(', '.join(sorted(cov.unmapped)))}")
    if cov.policies is not None:
        out.print(f"\n[bold]against the policies[/] ({_safe(', '.join(cov.policies) or 'none')})")
        out.print(f"rules that cannot fire: {len(cov.cannot_fire) or 'none'}")
        for rid, why in cov.cannot_fire:
            out.print(f"  [red]{_safe(rid)}[/]: {_safe(why)}")
        out.print(f"hooked functions no rule reads: {len(cov.unread_hooks) or 'none'}")
        for name, fn in cov.unread_hooks:
            out.print(f"  {_safe(name)}: {_safe(fn)}")
