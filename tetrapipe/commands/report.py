"""What the command line shows a person: summaries, alerts, tables (the ingest's progress bar: :mod:`.progress`).

Every line goes through :func:`emit` and every table through :func:`print_table`,
so how text reaches a person is decided in one place. Three rules shape it:

* **Data is shown, never obeyed.** Arguments, paths and pod names are written by
  whoever ran the process: control characters in them (a terminal escape, a
  carriage return, a bidi override) are shown as ``\\x1b``, ``\\r``, ``\\u202e``
  (:func:`tetrapipe.textsafe.visible`) before a width is measured, and nothing
  in data is read as rich markup or emoji codes.

* **Not a terminal** (a pipe, a file, CI logs): plain aligned columns, never
  wrapped, no trailing spaces, no colour; a line is as long as its content.
  Rich's default of folding everything at 80 columns made a timestamp ten
  lines tall in ``| less``.
* **A terminal**: what fits its width. Long cells are cut with an ellipsis
  (times and numbers never are); prose columns (a meaning, a description) wrap
  inside their column; when even that cannot fit, each row is shown as
  ``column  value`` lines instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from rich.cells import cell_len, set_cell_size
from rich.console import Console
from rich.text import Text

from tetrapipe.textsafe import has_unsafe, visible
from tetrapipe.units import most_severe_first

if TYPE_CHECKING:  # the ingest's types only: ``tetrapipe query`` imports this module and none of the pipeline
    from tetrapipe.flows.ingest import IngestStats, RejectNote, RunAlert
    from tetrapipe.lake import Lake
    from tetrapipe.lake.query import Rows
    from tetrapipe.sources.files import Skipped

SEVERITY_STYLE = {"critical": "bold white on red", "high": "bold red", "medium": "yellow", "low": "cyan", "info": "dim"}
#: columns between two table columns
GAP = 2
#: the message under an alert's header line is indented to the rule id
ALERT_INDENT = 9
#: skipped files listed one by one after an ingest (the rest are counted)
SKIPPED_SHOWN = 10


# --- the one way out ---------------------------------------------------------------------


def emit(console: Console, text: str | Text = "") -> None:
    """Print one line as is: no markup or emoji codes read from data, no wrapping by rich.

    Rich's own wrapping would pad and fold; where a terminal needs text
    fitted, the caller fits it (see :func:`print_table`). Callers make the
    data they put in a line visible (one line, measured after escaping); this
    is the last guard for anything that slipped through, keeping only the
    line ends of text that is several lines by design (a database error).
    """
    if isinstance(text, Text):
        text = _visible_text(text)
    else:
        text = visible(text, newlines=True)
    console.print(text, soft_wrap=True, markup=False, emoji=False, highlight=False)


def _visible_text(text: Text) -> Text:
    """``text`` with :func:`visible` applied to its characters, its styles kept on the same characters."""
    plain = text.plain
    if not has_unsafe(plain, newlines=True):
        return text
    ends = [0]  # ends[i]: where original character i starts in the escaped text
    pieces = []
    for ch in plain:
        piece = visible(ch, newlines=True)
        pieces.append(piece)
        ends.append(ends[-1] + len(piece))
    out = Text(
        "".join(pieces),
        style=text.style,
        justify=text.justify,
        overflow=text.overflow,
        no_wrap=text.no_wrap,
        end=text.end,
    )
    for span in text.spans:
        out.stylize(span.style, ends[min(span.start, len(plain))], ends[min(span.end, len(plain))])
    return out


def _styled(*parts: tuple[str, str] | str) -> Text:
    """A line from (text, style) pieces; the data in it is made visible and never read as markup."""
    return Text.assemble(*((visible(p[0]), p[1]) if isinstance(p, tuple) else visible(p) for p in parts))


def _truncate(text: str, width: int) -> str:
    """``text`` in at most ``width`` cells, its end replaced by an ellipsis when cut."""
    if cell_len(text) <= width:
        return text
    if width <= 1:
        return "…"[:width]
    return set_cell_size(text, width - 1).rstrip() + "…"


def _wrap(console: Console, text: str, width: int) -> list[str]:
    """``text`` wrapped at ``width`` cells (words kept whole where they fit), no trailing spaces."""
    if not text:
        return [""]
    lines = Text(text).wrap(console, max(width, 1), overflow="fold")
    return [line.plain.rstrip() for line in lines] or [""]


# --- tables ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Col:
    """A table column: its header and how its cells may be fitted to a terminal."""

    name: str
    right: bool = False  # numbers
    whole: bool = False  # never cut: times, numbers, ids a person copies
    prose: bool = False  # may wrap inside its column (descriptions) instead of being cut


def _fit_widths(natural: list[int], floors: list[int], room: int) -> list[int] | None:
    """Column widths summing to at most ``room``: the widest columns give up cells first.

    None when even every column at its floor does not fit.
    """
    if sum(natural) <= room:
        return natural
    if sum(floors) > room:
        return None
    lo, hi = 0, max(natural)  # the largest cap c with sum(min(natural, max(c, floor))) <= room
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if sum(min(n, max(mid, f)) for n, f in zip(natural, floors, strict=True)) <= room:
            lo = mid
        else:
            hi = mid - 1
    widths = [min(n, max(lo, f)) for n, f in zip(natural, floors, strict=True)]
    spare = room - sum(widths)
    for i, (w, n) in enumerate(zip(widths, natural, strict=True)):  # hand out what the cap left over
        if spare <= 0:
            break
        give = min(spare, n - w)
        widths[i] += give
        spare -= give
    return widths


def _pad(text: str, width: int, right: bool) -> str:
    fill = " " * max(width - cell_len(text), 0)
    return fill + text if right else text + fill


def _row_lines(console: Console, cols: Sequence[Col], cells: Sequence[str], widths: list[int]) -> list[str]:
    """One table row as text lines: more than one when a prose cell wraps; cut cells end in an ellipsis."""
    parts: list[list[str]] = []
    for col, cell, w in zip(cols, cells, widths, strict=True):
        parts.append(_wrap(console, cell, w) if col.prose and cell_len(cell) > w else [_truncate(cell, w)])
    height = max(len(p) for p in parts)
    return [
        (" " * GAP)
        .join(_pad(p[i] if i < len(p) else "", w, col.right) for p, w, col in zip(parts, widths, cols, strict=True))
        .rstrip()
        for i in range(height)
    ]


def print_table(console: Console, cols: Sequence[Col], rows: Iterable[Sequence[str]]) -> None:
    """Aligned columns under a header: plain in a pipe, fitted to the width on a terminal.

    Cells and headers (a PIVOT names columns after data) are made visible
    first, so widths are those of what the terminal shows.
    """
    cols = [replace(c, name=visible(c.name)) for c in cols]
    rows = [[visible(cell) for cell in r] for r in rows]
    natural = [max([cell_len(c.name), *(cell_len(r[i]) for r in rows)]) for i, c in enumerate(cols)]
    widths = natural  # not a terminal: every cell whole, however long the line
    if console.is_terminal:
        room = console.width - GAP * (len(cols) - 1)
        # below 8 cells a cut value says little: then the row is better shown as records
        floors = [n if c.whole else min(n, 12 if c.prose else 8) for c, n in zip(cols, natural, strict=True)]
        fitted = _fit_widths(natural, floors, room)
        if fitted is None:
            _print_records(console, cols, rows)
            return
        widths = fitted
    header = (" " * GAP).join(_pad(_truncate(c.name, w), w, c.right) for c, w in zip(cols, widths, strict=True))
    emit(console, Text(header.rstrip(), style="bold cyan"))
    emit(console, Text((" " * GAP).join("-" * w for w in widths).rstrip(), style="dim"))
    for r in rows:
        for line in _row_lines(console, cols, r, widths):
            emit(console, line)


def _print_records(console: Console, cols: Sequence[Col], rows: list[list[str]]) -> None:
    """Rows too wide for the terminal in any column layout: one ``column  value`` line per field."""
    name_w = max(cell_len(c.name) for c in cols)
    room = max(console.width - name_w - GAP, 8)
    for n, r in enumerate(rows, start=1):
        emit(console, Text(f"-- row {n} ".ljust(console.width, "-"), style="dim"))
        for c, cell in zip(cols, r, strict=True):
            lines = _wrap(console, cell, room) if c.prose else [_truncate(cell, room)]
            for i, line in enumerate(lines):
                label = _pad(c.name if i == 0 else "", name_w, False)
                emit(
                    console,
                    _styled((label, "bold cyan"), " " * GAP, line) if line else Text(label.rstrip(), style="bold cyan"),
                )


# --- ingest ------------------------------------------------------------------------------


def print_ingest_summary(console: Console, stats: IngestStats, lake: Lake, skipped: Sequence[Skipped] = ()) -> None:
    """What the ingest did: events by kind, lines already in the lake, files left out, rejected lines."""
    rate = f", {stats.events_per_second:,.0f} events/s" if stats.events else ""
    emit(
        console,
        _styled(
            ("ingested", "bold"),
            f" {stats.events:,} events from {_plural(stats.files, 'input')} "
            f"into {lake.root} in {stats.seconds:.2f}s{rate}",
        ),
    )
    reread = stats.skipped_lines - stats.duplicates  # lines of inputs ingested before (the per-input manifest)
    if reread:
        emit(
            console,
            Text(
                f"skipped {reread:,} lines already in the lake "
                f"({_plural(stats.skipped_files, 'input')} fully ingested before; --force to ingest again)",
                style="dim",
            ),
        )
    if stats.duplicates:
        emit(
            console,
            Text(
                f"skipped {stats.duplicates:,} events the lake already holds from another file (same event_id; "
                "--force to store them again)",
                style="dim",
            ),
        )
    if skipped:
        emit(console, Text(f"{_plural(len(skipped), 'file')} in the directories not read:", style="dim"))
        for s in skipped[:SKIPPED_SHOWN]:
            emit(console, _styled("  ", s.path, (f": {s.reason}", "dim")))
        if len(skipped) > SKIPPED_SHOWN:
            emit(console, Text(f"  ... and {len(skipped) - SKIPPED_SHOWN:,} more", style="dim"))
    if stats.by_kind:
        print_table(
            console,
            [Col("kind"), Col("events", right=True, whole=True)],
            [(kind, f"{n:,}") for kind, n in stats.by_kind.most_common()],
        )
    if stats.rejects:
        emit(
            console,
            _styled(
                (f"{_plural(stats.rejects, 'line')} rejected", "bold yellow"),
                ' (kept in the rejects table: tetrapipe query "SELECT * FROM rejects")',
            ),
        )
        for note in _in_input_order(stats.first_rejects):
            where = f"{note.source}:{note.line_no}" if note.line_no is not None else note.source
            emit(console, _styled("  ", (where, "yellow"), f": {note.reason}"))
        if stats.rejects > len(stats.first_rejects):
            emit(console, Text(f"  ... and {stats.rejects - len(stats.first_rejects):,} more", style="dim"))


def _in_input_order(notes: list[RejectNote]) -> list[RejectNote]:
    """Each input's rejects by line, inputs in the order they were read (the reader's own rejects, such as a
    line that is not UTF-8, are noted after the normalizer's of the same chunk)."""
    first = {note.source: i for i, note in reversed(list(enumerate(notes)))}
    return sorted(notes, key=lambda n: (first[n.source], n.line_no if n.line_no is not None else -1))


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'s' if n != 1 else ''}"


def _lake_alerts(lake: Lake, run_ids: list[str]) -> tuple[int, dict[str, int]]:
    """How many alerts the lake holds, and how many rows it has for each of ``run_ids``."""
    from tetrapipe.lake import connect

    con = connect(lake)
    try:
        total = con.execute("SELECT count(DISTINCT alert_id) FROM alerts").fetchone()[0]
        rows: dict[str, int] = {}
        if run_ids:
            rows = dict(
                con.execute(
                    "SELECT alert_id, count(*) FROM alerts WHERE list_contains(?, alert_id) GROUP BY alert_id",
                    [run_ids],
                ).fetchall()
            )
    finally:
        con.close()
    return total, rows


def print_alerts(console: Console, lake: Lake, alerts: Iterable[RunAlert], limit: int) -> None:
    """The alerts this ingest wrote, most severe first, and how many the lake holds in all.

    An alert the lake already held (a live log ingested again as it grew, the
    same alert window still open) is marked: its earlier rows are not this
    run's, so it is not new to whoever read the last ingest.
    """
    run = sorted(alerts, key=lambda a: (most_severe_first(a.severity), a.time is None, str(a.time)))
    total, lake_rows = _lake_alerts(lake, [a.alert_id for a in run])
    earlier = {a.alert_id for a in run if lake_rows.get(a.alert_id, 0) > a.rows}
    everything = f"the lake holds {_plural(total, 'alert')} in all: tetrapipe query alerts"
    if not run:
        emit(console, Text(f"no new alerts ({everything})" if total else "no alerts", style="green"))
        return
    more = f", {len(earlier):,} of them adding to an alert already in the lake" if earlier else ""
    emit(
        console,
        _styled(
            (f"{_plural(len(run), 'alert')} from this ingest", "bold"), f"{more}, most severe first ({everything}):"
        ),
    )
    for a in run[:limit]:
        _print_alert(console, a, a.alert_id in earlier)
    if len(run) > limit:
        emit(
            console,
            Text(
                f"... {len(run) - limit:,} more from this ingest: tetrapipe query alerts "
                f"(--max-alerts to show more here)",
                style="dim",
            ),
        )


def _print_alert(console: Console, a: RunAlert, earlier: bool) -> None:
    """A header line (severity, rule, time, where) and the message beneath it, like Falco's output.

    A table would fold long messages into unreadable slivers on an 80-column terminal.
    """
    sev = visible((a.severity or "?").upper())
    where = visible(f"{a.namespace}/{a.pod}" if a.pod else f"(host {a.node_name})" if a.node_name else "(host)")
    when = str(a.time)[:19] if a.time is not None else "(no time)"
    rule_id = visible(a.rule_id)
    message = visible(a.message or "")
    tail = f"  x{a.count}" if a.count > 1 else ""
    if earlier:
        tail += "  (more events of an alert already in the lake)"
    indent = " " * ALERT_INDENT
    own_line = False  # on a narrow terminal, where it happened gets the line under the header
    if console.is_terminal:
        own_line = cell_len(f"{sev:<8} {rule_id}  {when}  {where}{tail}") > console.width
    line = _styled((f"{sev:<8}", SEVERITY_STYLE.get(a.severity, "")), " ", (rule_id, "bold"), "  ", (when, "dim"))
    if not own_line:
        line.append_text(_styled("  ", where, (tail, "dim")))
    emit(console, line)
    if own_line:
        emit(
            console,
            _styled(
                indent,
                _truncate(where, console.width - ALERT_INDENT),
                (_truncate(tail, max(console.width - ALERT_INDENT - cell_len(where), 0)), "dim"),
            ),
        )
    if console.is_terminal:
        lines = _wrap(console, message, console.width - ALERT_INDENT)
    else:
        lines = [message]  # a pipe gets the message whole, on one line
    for text in lines:
        emit(console, indent + text if text else "")


# --- query -------------------------------------------------------------------------------


def print_query_table(console: Console, answer: Rows, limit: int) -> None:
    """A query's rows as a table (the first ``limit``), and how many there were."""
    from tetrapipe.lake.query import is_number, is_time, rows_as_text

    cols = [
        Col(n, right=is_number(t), whole=is_number(t) or is_time(t))
        for n, t in zip(answer.names, answer.types, strict=True)
    ]
    shown = min(len(answer.rows), limit)
    print_table(console, cols, rows_as_text(answer)[:shown])
    more = answer.total - shown
    suffix = f" (showing {shown}; --limit or --format json|csv for all)" if more > 0 else ""
    emit(console, Text(f"{_plural(answer.total, 'row')}{suffix}", style="dim"))


def print_schema(console: Console) -> None:
    """Every table's columns with their meaning, then the views and macros."""
    from tetrapipe.lake import VIEW_DOCS
    from tetrapipe.schema import TABLES

    cols = [Col("column"), Col("type", whole=True), Col("meaning", prose=True)]
    for name, columns in TABLES.items():
        emit(console, Text(name, style="bold"))
        rows = [(c.name, str(c.type), c.doc) for c in columns]
        rows.append(
            (
                "date",
                "string",
                'partition: UTC date of the row\'s time, YYYY-MM-DD ("unknown" when Tetragon sent no time)',
            )
        )
        print_table(console, cols, rows)
        emit(console)
    for name, doc in VIEW_DOCS.items():
        emit(console, _styled((name, "bold"), f" (view): {doc}"))


def print_hunts(console: Console) -> None:
    """The saved hunts and what each finds."""
    from tetrapipe.lake import saved_hunts

    print_table(
        console,
        [Col("hunt", whole=True), Col("what it finds", prose=True)],
        [(h.name, h.description) for h in saved_hunts().values()],
    )
    emit(console, Text("run one: tetrapipe query NAME", style="dim"))
