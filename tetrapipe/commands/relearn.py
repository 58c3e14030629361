"""``tetrapipe rules relearn RULE_ID``: a first-seen rule learns its baseline again, without editing the rule.

\b
tetrapipe rules relearn new-binary-in-image                      learn again from now on
tetrapipe rules relearn new-destination-for-workload --since 2026-03-12
tetrapipe rules relearn new-binary-in-image --since '2026-03-12 08:00' --rules ./my-rules

The shipped rule file stays as it is (upgrades replace it): the command writes
an override file, ``relearn-<rule id>.yaml`` in the rules directory, that sets
the rule's ``first_seen.since``. From then on, events before that time are not
the baseline: each key learns again for the rule's learning period from its
first match at or after ``since``, and a value seen only before it alerts once
that period is over. Pipelines read rules at start, so restart them.
"""

from __future__ import annotations

import datetime as dt
import difflib
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape

from tetrapipe.commands.options import rules_option
from tetrapipe.textsafe import visible

err = Console(stderr=True, highlight=False, emoji=False)


def _since(value: str) -> str:
    """``now`` (UTC, to the second) or a date/time, as the rule compiler writes it."""
    from tetrapipe.ruleset.kinds import since_text

    if value.strip().lower() == "now":
        return dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0).isoformat(sep=" ")
    try:
        return since_text(value.strip())
    except ValueError:
        raise click.BadParameter(
            f"{visible(value)!r} is not a date or time (2026-03-12, '2026-03-12 08:00') or now", param_hint="--since"
        ) from None


def _inside_installed_package(root: Path) -> bool:
    """The rules shipped in an installed wheel: not the user's to change (an upgrade would drop the file)."""
    import tetrapipe

    package = Path(tetrapipe.__file__).resolve().parent
    return root.resolve().is_relative_to(package)


@click.command("relearn")
@click.argument("rule_id")
@click.option(
    "--since",
    "since_raw",
    default="now",
    show_default=True,
    help="Learn again from this time on (UTC): a date, a date and time, or now.",
)
@rules_option(detection=False)
def relearn_command(rule_id: str, since_raw: str, rules_dir: str | None) -> None:
    """A first-seen rule learns its baseline again from --since, through an override file (the rule is not edited)."""
    from tetrapipe.ruleset import load_ruleset
    from tetrapipe.ruleset.locate import choose_rules_dir

    since = _since(since_raw)
    choice = choose_rules_dir(rules_dir)
    if choice.note:  # an empty ./rules passed over: say so, as every other command does
        click.echo(choice.note, err=True)
    root = choice.root
    if root is None or not root.is_dir():
        raise click.UsageError("no rules directory: give --rules DIR (a directory) or set TETRAPIPE_RULES")
    if _inside_installed_package(root):
        raise click.UsageError(
            f"{visible(str(root))} holds the rules shipped in the installed package; copy them to a directory of "
            "your own and give --rules DIR (or TETRAPIPE_RULES), where the override file can live"
        )
    rs = load_ruleset([root])
    rule = rs.get(rule_id)
    broken = [i for i in rs.errors if i.rule_id == rule_id]
    if rule is None and broken:  # the file is there, it does not load: say why rather than "no rule"
        raise click.UsageError(
            f"rule {visible(rule_id)!r} in {visible(str(root))} does not load: {visible(str(broken[0]))}"
            + (f" (and {len(broken) - 1} more: tetrapipe rules lint)" if len(broken) > 1 else "")
        )
    if rule is None:
        hint = difflib.get_close_matches(rule_id, [r.id for r in rs.rules], n=1)
        raise click.UsageError(
            f"no rule {visible(rule_id)!r} in {visible(str(root))}"
            + (f" (did you mean {visible(hint[0])!r}?)" if hint else "")
        )
    if rule.first_seen is None:
        first_seen = sorted(r.id for r in rs.rules if r.first_seen is not None)
        raise click.UsageError(
            f"{rule.id} is not a first-seen rule, it has no baseline to learn again "
            f"(first-seen rules here: {', '.join(first_seen) or 'none'})"
        )
    path = root / f"relearn-{rule.id}.yaml"
    previous = path.read_text(encoding="utf-8") if path.exists() else None
    path.write_text(
        f"# written by `tetrapipe rules relearn {rule.id}` on "
        f"{dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}: events before since are not the baseline\n"
        f"override: {rule.id}\nfirst_seen:\n  since: '{since}'\n",
        encoding="utf-8",
    )
    check = load_ruleset([root]).get(rule.id)
    if check is None or check.first_seen is None or check.first_seen.since != since:
        # another override of the rule (sorted later) sets since too, or the directory stopped loading: undo
        if previous is None:
            path.unlink()
        else:
            path.write_text(previous, encoding="utf-8")
        err.print(
            f"[bold red]error[/] {escape(visible(str(path)))} did not take effect (another override of {rule.id} "
            "sets first_seen.since, or the rules do not load: tetrapipe rules lint); nothing changed"
        )
        sys.exit(2)
    was = f" (was {rule.first_seen.since})" if rule.first_seen.since else ""
    learn = dt.timedelta(seconds=rule.first_seen.learn_seconds)
    click.echo(
        f"{rule.id} learns again from {since} UTC{was}: each key's first {learn} from then on is its baseline, "
        f"values seen only before it alert again. Override written to {visible(str(path))}; restart the pipelines "
        "that run these rules."
    )


__all__ = ["relearn_command"]
