"""The ATT&CK coverage matrix as one self-contained HTML page (no script, no fetch, inline CSS).

Everything printed comes from rule files and policies, so every text goes
through :func:`html.escape`; the page's Content-Security-Policy forbids
loading anything, so it opens the same offline, from a CI artifact or a mail.
"""

from __future__ import annotations

import html

from tetrapipe.ruleset.coverage import Coverage

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1b1f24}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em}
table.matrix{border-collapse:collapse;table-layout:fixed}
table.matrix th{background:#24313f;color:#fff;padding:.4em .6em;font-weight:600;min-width:11em;text-align:left}
table.matrix td{vertical-align:top;border:1px solid #d0d7de;padding:.3em;min-width:11em}
.tech{background:#e6f0fa;border-left:4px solid #2f6fb0;margin:.2em 0;padding:.3em .4em;border-radius:3px}
.tech .id{font-weight:700}.tech .n{float:right;background:#2f6fb0;color:#fff;border-radius:8px;padding:0 .45em}
.tech ul{margin:.2em 0 0 1.1em;padding:0;font-size:.85em;color:#3d4853}
table.list td,table.list th{border-bottom:1px solid #d0d7de;padding:.25em .6em;text-align:left}
.none{color:#57606a}
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def render_html(cov: Coverage, title: str = "tetrapipe: ATT&CK coverage") -> str:
    tactics = cov.tactics()
    cols = []
    for tid, _ in tactics:
        cells = []
        for tech in sorted(t for (ta, t) in cov.cells if ta == tid):
            rules = cov.cells[(tid, tech)]
            name = cov.names.get(tech) or ""
            items = "".join(f"<li>{_e(r)}</li>" for r in sorted(rules))
            cells.append(
                f'<div class="tech" data-tactic="{_e(tid)}" data-technique="{_e(tech)}">'
                f'<span class="n">{len(rules)}</span><span class="id">{_e(tech)}</span> {_e(name)}<ul>{items}</ul></div>'
            )
        cols.append(f"<td>{''.join(cells)}</td>")
    head = "".join(f'<th data-tactic="{_e(tid)}">{_e(name)}</th>' for tid, name in tactics)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p id="summary">{cov.rules} rules in use, {len(cov.techniques())} techniques in '
        f"{len(tactics)} tactics; {len(cov.unmapped)} rules name no technique.</p>",
        f'<table class="matrix"><thead><tr>{head}</tr></thead><tbody><tr>{"".join(cols)}</tr></tbody></table>',
    ]
    if cov.unmapped:
        parts.append(f'<p class="none">No technique: {_e(", ".join(sorted(cov.unmapped)))}</p>')
    if cov.policies is not None:
        parts.append(f"<h2>Against the policies ({_e(', '.join(cov.policies) or 'none')})</h2>")
        parts.append(_list("cannot-fire", "Rules that cannot fire", ("rule", "why"), cov.cannot_fire))
        parts.append(_list("unread-hooks", "Hooked functions no rule reads", ("policy", "function"), cov.unread_hooks))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _list(id_: str, caption: str, header: tuple[str, str], rows: list[tuple[str, str]]) -> str:
    if not rows:
        return f'<p id="{id_}" class="none">{_e(caption)}: none.</p>'
    body = "".join(f"<tr><td>{_e(a)}</td><td>{_e(b)}</td></tr>" for a, b in rows)
    return (
        f'<table id="{id_}" class="list"><caption>{_e(caption)} ({len(rows)})</caption>'
        f"<thead><tr><th>{_e(header[0])}</th><th>{_e(header[1])}</th></tr></thead><tbody>{body}</tbody></table>"
    )


__all__ = ["render_html"]
