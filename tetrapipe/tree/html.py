"""The process tree as one self-contained HTML file: the open replacement for the Hubble UI upload.

One file, no network: CSS and JS are inline and a Content-Security-Policy
forbids loading anything else, so it opens from a laptop, an air-gapped
workstation or an incident ticket. The tree is rendered on the server side
(nested lists with ``<details>``: readable and collapsible even with
JavaScript off); a small script adds the side panel with each process's
details and events, a filter box, expand/collapse all, and ``#select=<exec_id>``
links to one process.

Everything shown comes from the events, and arguments, paths and pod names
are attacker-controlled: text is HTML-escaped on the server, the embedded
JSON has ``<``, ``>`` and ``&`` escaped, and the script only ever sets
``textContent``. Control characters and bidi overrides are shown as
``\\x1b``, ``\\u202e`` (a U+202E in an argument would otherwise draw
``gpj.exe`` as ``exe.jpg``): on the server by :func:`tetrapipe.textsafe.visible`,
in the script by the same character class (:data:`~tetrapipe.textsafe.UNSAFE_CLASS`).
Identifiers the script looks up (``data-exec-id``) and the embedded JSON keep
the exact values.
"""

from __future__ import annotations

import html
import json

from tetrapipe.textsafe import UNSAFE_CLASS, visible
from tetrapipe.tree.model import DEPTH_CUT_NOTE, Group, Node, Shown, TreeView, format_offset, plural

CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:; "
    "base-uri 'none'; form-action 'none'"
)

CSS = """
:root { --bg:#f7f8fa; --fg:#1d2330; --dim:#6b7385; --line:#d9dde6; --panel:#ffffff; --accent:#2f6fed;
        --late:#c62828; --latebg:#fdecec; --conn:#0b7a8a; --file:#8a6d0b; --write:#c62828; --sel:#e8f0ff; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 -apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif; color:var(--fg);
       background:var(--bg); }
header { padding:14px 20px 10px; background:#1f2633; color:#e9edf5; }
header h1 { margin:0 0 4px; font-size:18px; font-weight:600; }
header .sel { color:#aeb8cc; }
header .counts { margin-top:6px; }
header .counts .late { color:#ff8a80; font-weight:700; }
.tools { display:flex; gap:8px; align-items:center; margin-top:10px; }
.tools input[type=search] { width:320px; padding:5px 8px; border-radius:4px; border:1px solid #49546a;
       background:#2b3445; color:#e9edf5; }
.tools button { padding:5px 10px; border-radius:4px; border:1px solid #49546a; background:#2b3445; color:#e9edf5;
       cursor:pointer; }
.tools label { color:#aeb8cc; }
main { display:flex; align-items:flex-start; }
#tree { flex:1; padding:12px 20px 40px; overflow:auto; min-width:0; }
#panel { width:440px; flex:none; position:sticky; top:0; max-height:100vh; overflow:auto; background:var(--panel);
       border-left:1px solid var(--line); padding:14px 16px; }
#panel.empty .body { display:none; }
#panel .hint { color:var(--dim); }
#panel:not(.empty) .hint { display:none; }
.group { background:var(--panel); border:1px solid var(--line); border-radius:6px; margin-bottom:14px; padding:8px 12px; }
.ghead { font-weight:600; padding:2px 0 6px; border-bottom:1px solid var(--line); margin-bottom:6px; }
.ghead .c { color:var(--accent); }
.ghead .d { color:var(--dim); font-weight:400; }
ul.t, ul.t ul { list-style:none; margin:0; padding-left:22px; }
ul.t { padding-left:4px; }
ul.t li { position:relative; }
ul.t ul > li::before { content:""; position:absolute; left:-13px; top:0; bottom:0; border-left:1px solid var(--line); }
ul.t ul > li:last-child::before { bottom:auto; height:13px; }
ul.t ul > li::after { content:""; position:absolute; left:-13px; top:13px; width:10px; border-top:1px solid var(--line); }
.lineage { color:var(--dim); font-style:italic; padding:2px 0; }
details > summary { list-style:none; cursor:pointer; }
details > summary::-webkit-details-marker { display:none; }
.row { display:flex; flex-wrap:wrap; gap:3px 8px; align-items:baseline; padding:2px 6px; border-radius:4px;
       cursor:pointer; white-space:nowrap; }
.row:hover { background:#f0f3f8; }
.tw { width:12px; color:var(--dim); flex:none; text-align:center; }
details[open] > summary .tw::before { content:"▾"; }
details:not([open]) > summary .tw::before { content:"▸"; }
.off { color:var(--dim); font-family:"DejaVu Sans Mono",Menlo,monospace; font-size:12px; min-width:58px; text-align:right; }
.bin { font-family:"DejaVu Sans Mono",Menlo,monospace; font-weight:600; }
.args { font-family:"DejaVu Sans Mono",Menlo,monospace; color:#39425a; overflow:hidden; text-overflow:ellipsis; max-width:560px;
        min-width:0; }
.meta { color:var(--dim); font-size:12px; }
.meta .bad { color:#b26a00; }
.badge { font-size:11px; font-weight:700; padding:1px 6px; border-radius:10px; letter-spacing:.02em; }
.row .badge { max-width:100%; white-space:normal; overflow-wrap:anywhere; }
.b-late { background:var(--late); color:#fff; }
.b-exec { background:#fff3cd; color:#7a5600; border:1px solid #e8c66a; }
.b-fold { background:#ede7f6; color:#5e35b1; }
.b-focus { background:var(--accent); color:#fff; }
.b-critical { background:#b71c1c; color:#fff; } .b-high { background:#e53935; color:#fff; }
.b-medium { background:#f9a825; color:#222; } .b-low { background:#81d4fa; color:#123; } .b-info { background:#cfd8dc; color:#333; }
li.proc.late > details > summary > .row, li.proc.late > .row { background:var(--latebg); box-shadow:inset 3px 0 0 var(--late); }
li.proc.late > details > summary .bin, li.proc.late > .row .bin { color:var(--late); }
li.proc.alerted > details > summary .bin, li.proc.alerted > .row .bin { color:#b71c1c; }
.row.selected { background:var(--sel) !important; outline:1px solid #9dbcf5; }
ul.ev { padding-left:34px !important; margin:0 0 2px; }
ul.ev li::before, ul.ev li::after { display:none; }
ul.ev li { font-family:"DejaVu Sans Mono",Menlo,monospace; font-size:12px; color:var(--dim); }
ul.ev li.connect { color:var(--conn); } ul.ev li.file { color:var(--file); } ul.ev li.write { color:var(--write); font-weight:700; }
ul.ev li.alert { color:#b71c1c; font-weight:700; font-family:inherit; }
.more { color:var(--dim); font-style:italic; font-size:12px; }
.hidden-by-filter { display:none !important; }
.noevents ul.ev { display:none; }
#panel .badge { display:inline-block; margin:0 6px 4px 0; }
#panel h2 { font-size:16px; margin:0 0 6px; font-family:"DejaVu Sans Mono",Menlo,monospace; word-break:break-all; }
#panel table { border-collapse:collapse; width:100%; font-size:12.5px; margin:6px 0 10px; }
#panel td { border-top:1px solid #eef0f4; padding:3px 4px; vertical-align:top; word-break:break-all; }
#panel td.k { color:var(--dim); width:120px; white-space:nowrap; word-break:normal; }
#panel h3 { font-size:13px; margin:12px 0 4px; color:#39425a; }
#panel .evrow { font-family:"DejaVu Sans Mono",Menlo,monospace; font-size:12px; padding:2px 0; border-top:1px solid #eef0f4; }
#panel .evrow .tm { color:var(--dim); margin-right:6px; }
#panel a { color:var(--accent); cursor:pointer; text-decoration:underline; }
footer { color:var(--dim); font-size:12px; padding:0 20px 20px; }
@media (max-width: 900px) {  /* a narrow window: the details go under the tree instead of squeezing it */
  main { flex-direction:column; align-items:stretch; }
  #panel { width:auto; position:static; max-height:none; border-left:none; border-top:1px solid var(--line); }
}
"""

_JS = r"""
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("tree-data").textContent);
  var procs = data.processes;
  var panel = document.getElementById("panel");
  var UNSAFE = new RegExp("[" + __UNSAFE_CLASS__ + "]", "gu");
  var NAMED = { "\t": "\\t", "\n": "\\n", "\r": "\\r" };
  function vis(s) {  // tetrapipe.textsafe.visible: control and bidi characters shown, not obeyed
    return String(s).replace(UNSAFE, function (c) {
      if (NAMED[c]) return NAMED[c];
      var n = c.codePointAt(0);
      if (n < 256) return "\\x" + n.toString(16).padStart(2, "0");
      return n < 0x10000 ? "\\u" + n.toString(16).padStart(4, "0") : "\\U" + n.toString(16).padStart(8, "0");
    });
  }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = vis(text);
    return e;
  }
  function fmtOff(s) {
    if (s === null || s === undefined) return "?";
    var sign = s < 0 ? "-" : "+"; s = Math.abs(s);
    if (s < 60) return sign + (s % 1 ? s.toFixed(1) : s) + "s";
    if (s < 3600) return sign + Math.floor(s / 60) + "m" + String(Math.floor(s % 60)).padStart(2, "0") + "s";
    return sign + Math.floor(s / 3600) + "h" + String(Math.floor(s % 3600 / 60)).padStart(2, "0") + "m";
  }
  function row(tbody, k, v, link) {
    if (v === null || v === undefined || v === "") return;
    var tr = el("tr"); tr.appendChild(el("td", "k", k));
    var td = el("td");
    if (link && procs[v]) { var a = el("a", null, v); a.addEventListener("click", function () { select(v, true); }); td.appendChild(a); }
    else td.textContent = vis(v);
    tr.appendChild(td); tbody.appendChild(tr);
  }
  function select(id, scroll) {
    var p = procs[id];
    if (!p) return;
    document.querySelectorAll(".row.selected").forEach(function (r) { r.classList.remove("selected"); });
    var li = document.querySelector('li.proc[data-exec-id="' + CSS.escape(id) + '"]');
    if (li) {
      var r = li.querySelector(":scope > details > summary > .row, :scope > .row");
      if (r) r.classList.add("selected");
      var d = li.parentElement;
      while (d) { if (d.tagName === "DETAILS") d.open = true; d = d.parentElement; }
      if (scroll && r) {  // only when it is out of sight: a page opened on a visible row keeps its header in view
        var box = r.getBoundingClientRect();
        if (box.top < 0 || box.bottom > window.innerHeight) r.scrollIntoView({ block: "center" });
      }
    }
    var body = panel.querySelector(".body");
    body.textContent = "";
    panel.classList.remove("empty");
    panel.dataset.selected = id;
    body.appendChild(el("h2", null, p.binary || "?"));
    var badges = el("div");
    if (p.late_shell) badges.appendChild(el("span", "badge b-late", "LATE SHELL " + fmtOff(p.since_container_start)));
    if (p.injected && p.pod) badges.appendChild(el("span", "badge b-exec", "exec'd into container"));
    p.alerts.forEach(function (a) { badges.appendChild(el("span", "badge b-" + a.severity, a.severity + " " + a.rule_id)); });
    body.appendChild(badges);
    var t = el("table"); var tb = el("tbody"); t.appendChild(tb);
    row(tb, "arguments", p.arguments);
    row(tb, "exec_id", p.exec_id);
    row(tb, "parent", p.parent_exec_id, true);
    row(tb, "parent binary", p.parent_binary);
    if (p.ancestor_binaries && p.ancestor_binaries.length)
      row(tb, "ancestors", p.ancestor_binaries.map(function (b) { return b === null ? "?" : b; }).join(" \u2190 "));
    row(tb, "pid", p.pid); row(tb, "uid", p.uid); row(tb, "cwd", p.cwd); row(tb, "flags", p.flags);
    row(tb, "started", p.start_time ? p.start_time + "  (" + fmtOff(p.since_container_start) + " after container start)" : null);
    row(tb, "status", p.status + (p.exit_time ? " at " + p.exit_time : ""));
    row(tb, "children", p.children + (p.descendants > p.children ? " (" + p.descendants + " descendants)" : ""));
    row(tb, "pod", p.pod ? (p.namespace || "?") + "/" + p.pod : null);
    row(tb, "container", p.container_name ? p.container_name + "  " + (p.container_id || "") : null);
    row(tb, "image", p.image); row(tb, "node", p.node_name);
    row(tb, "in init tree", p.in_init_tree === null ? null : String(p.in_init_tree));
    if (!p.seen_exec) row(tb, "note", "no exec event in the history (started before it, or its exec was lost)");
    body.appendChild(t);
    var members = (document.querySelector('li.proc[data-exec-id="' + CSS.escape(id) + '"]') || {}).dataset;
    if (members && members.members) {
      var ids = members.members.split(" ");
      body.appendChild(el("h3", null, "Folded: " + ids.length + " identical runs"));
      ids.forEach(function (m) {
        var q = procs[m]; var d = el("div", "evrow");
        d.appendChild(el("span", "tm", fmtOff(q.since_container_start)));
        d.appendChild(el("span", null, "pid " + q.pid + " \u00b7 " + q.status + " \u00b7 " + m));
        body.appendChild(d);
      });
    }
    if (p.alerts.length) {
      body.appendChild(el("h3", null, "Alerts"));
      p.alerts.forEach(function (a) {
        var d = el("div", "evrow"); d.appendChild(el("span", "tm", a.time || ""));
        d.appendChild(el("span", null, a.severity + " " + a.rule_id + ": " + (a.message || a.title || "") + (a.count > 1 ? " (\u00d7" + a.count + ")" : "")));
        body.appendChild(d);
      });
    }
    body.appendChild(el("h3", null, "Events (" + p.event_count + ")"));
    if (!p.events.length) body.appendChild(el("div", "more", "no hook events for this process"));
    p.events.forEach(function (e) {
      var d = el("div", "evrow"); d.appendChild(el("span", "tm", (e.time || "").replace("T", " ")));
      d.appendChild(el("span", null, (e.function || e.kind) + "  " + e.label));
      body.appendChild(d);
    });
    if (p.event_count > p.events.length) body.appendChild(el("div", "more", (p.event_count - p.events.length) + " more in the history: tetrapipe query"));
    if (history.replaceState) history.replaceState(null, "", "#select=" + encodeURIComponent(id));
  }
  document.getElementById("tree").addEventListener("click", function (ev) {
    var r = ev.target.closest(".row");
    if (!r) return;
    if (ev.target.classList.contains("tw")) return;  // the twisty only folds
    var li = r.closest("li.proc");
    if (li) { ev.preventDefault(); select(li.dataset.execId, false); }
  });
  document.getElementById("expand").addEventListener("click", function () {
    document.querySelectorAll("#tree details").forEach(function (d) { d.open = true; });
  });
  document.getElementById("collapse").addEventListener("click", function () {
    document.querySelectorAll("#tree details").forEach(function (d) { d.open = false; });
  });
  document.getElementById("events").addEventListener("change", function (ev) {
    document.getElementById("tree").classList.toggle("noevents", !ev.target.checked);
  });
  document.getElementById("filter").addEventListener("input", function (ev) {
    var q = ev.target.value.trim().toLowerCase();
    var all = document.querySelectorAll("#tree li.proc");
    all.forEach(function (li) { li.classList.remove("hidden-by-filter"); });
    if (!q) return;
    all.forEach(function (li) {
      if (!li.textContent.toLowerCase().includes(q) && !(li.dataset.execId || "").toLowerCase().includes(q))
        li.classList.add("hidden-by-filter");
    });
  });
  document.addEventListener("keydown", function (ev) {
    if (ev.key === "Escape") { panel.classList.add("empty"); document.querySelectorAll(".row.selected").forEach(function (r) { r.classList.remove("selected"); }); }
  });
  var m = /[#&]select=([^&]+)/.exec(location.hash);
  var first = m ? decodeURIComponent(m[1]) : data.initial;
  if (first) select(first, true);
  document.body.dataset.ready = "1";
})();
"""


#: the script, with the characters it must show escaped taken from the one definition
JS = _JS.replace("__UNSAFE_CLASS__", json.dumps(UNSAFE_CLASS))


def _e(text: object) -> str:
    """Text to show: control characters made visible, then HTML-escaped (attribute-safe)."""
    return html.escape(visible("" if text is None else str(text)), quote=True)


def _id(text: object) -> str:
    """An identifier the script looks up in the embedded JSON: exact, only HTML-escaped."""
    return html.escape("" if text is None else str(text), quote=True)


def _json_for_script(obj: object) -> str:
    """JSON that cannot end the <script> element it sits in, whatever the strings inside say."""
    return (
        json.dumps(obj, separators=(",", ":"))
        .replace("&", "\\u0026")
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def _row(s: Shown, collapsible: bool) -> str:
    n = s.node
    parts = [
        f'<span class="tw">{"" if collapsible else "·"}</span>',
        f'<span class="off">{_e(format_offset(n.since_container_start))}</span>',
    ]
    if s.count > 1:
        parts.append(f'<span class="badge b-fold" title="{s.count} identical runs">×{s.count}</span>')
    parts.append(f'<span class="bin">{_e(n.binary or "?")}</span>')
    if n.arguments:
        parts.append(f'<span class="args" title="{_e(n.arguments)}">{_e(n.arguments)}</span>')
    meta = []
    if n.pid is not None:
        meta.append(f"pid {n.pid}" if s.count == 1 else f"pids {n.pid}…")
    status = n.status()
    bad = status.startswith("killed") or (status.startswith("exit ") and status != "exit 0")
    meta.append(f'<span class="bad">{_e(status)}</span>' if bad else _e(status))
    kids = len(n.children) + n.other_children
    if kids:
        meta.append(f"{kids} child{'ren' if kids != 1 else ''}")
    if s.count > 1:
        meta.append(f"until {_e(format_offset(s.members[-1].since_container_start))}")
    parts.append(f'<span class="meta">{" · ".join(meta)}</span>')
    if n.late_shell:
        parts.append(f'<span class="badge b-late">LATE SHELL {_e(format_offset(n.since_container_start))}</span>')
    if n.injected and n.pod is not None:
        parts.append('<span class="badge b-exec">exec\'d into container</span>')
    if n.focus:
        parts.append('<span class="badge b-focus">focus</span>')
    for a in n.alerts:
        parts.append(
            f'<span class="badge b-{_e(a.severity)}" title="{_e(a.message or a.title)}">'
            f"{_e(a.severity)} {_e(a.rule_id)}</span>"
        )
    return f'<div class="row">{"".join(parts)}</div>'


def _events(n: Node) -> str:
    counts: dict[tuple[str, str, bool], int] = {}
    for e in n.events:
        counts[(e.category, e.label, e.write)] = counts.get((e.category, e.label, e.write), 0) + 1
    order = {"connect": 0, "listen": 1, "file": 2, "other": 3}
    items = sorted(counts.items(), key=lambda kv: (order.get(kv[0][0], 9), -kv[1]))
    out = []
    for (cat, label, write), k in items[:8]:
        arrow = {"connect": "→ ", "listen": "← ", "file": "▪ "}.get(cat, "· ")
        cls = cat + (" write" if write else "")
        out.append(f'<li class="{cls}">{arrow}{_e(label)}{f" ×{k}" if k > 1 else ""}</li>')
    if len(items) > 8:
        out.append(f'<li class="more">… {len(items) - 8} more kinds of event</li>')
    for a in n.alerts:
        out.append(f'<li class="alert">! {_e(a.severity.upper())} {_e(a.rule_id)}: {_e(a.message or a.title)}</li>')
    return f'<ul class="ev">{"".join(out)}</ul>' if out else ""


def _node(s: Shown) -> str:
    n = s.node
    classes = ["proc"]
    if n.late_shell:
        classes.append("late")
    if n.alerts:
        classes.append("alerted")
    if n.focus:
        classes.append("focus")
    attrs = f'class="{" ".join(classes)}" data-exec-id="{_id(n.exec_id)}"'
    if s.count > 1:
        attrs += f' data-members="{_id(" ".join(m.exec_id for m in s.members))}"'
    inner = _events(n)
    kids = "".join(_node(c) for c in s.children)
    if s.hidden_children:
        kids += f'<li class="more">… {s.hidden_children} more children not shown</li>'
    if n.on_path and n.other_children:
        kids += f'<li class="more">… {n.other_children} other children (not on the path to the focus)</li>'
    if kids:
        inner += f"<ul>{kids}</ul>"
    if inner:
        return f"<li {attrs}><details open><summary>{_row(s, True)}</summary>{inner}</details></li>"
    return f"<li {attrs}>{_row(s, False)}</li>"


def _group(g: Group) -> str:
    head = [f"<span>{_e(g.title)}</span>"]
    if g.container_name:
        head.append(f' <span class="c">container {_e(g.container_name)}</span>')
    if g.image:
        head.append(f' <span class="d">({_e(g.image)})</span>')
    if g.container_start_time:
        head.append(f' <span class="d">started {g.container_start_time:%Y-%m-%d %H:%M:%S} UTC</span>')
    if g.node_name:
        head.append(f' <span class="d">· node {_e(g.node_name)}</span>')
    body = []
    for e in g.entries:
        roots = "".join(_node(r) for r in e.roots)
        if g.pod is None:
            body.append(roots)
            continue
        chain = " ← ".join([e.parent_binary or "?", *[b or "?" for b in e.lineage]])
        where = "outside the container" if e.parent_binary else "parent not in the history"
        body.append(
            f'<li class="entry"><div class="lineage">↑ {_e(chain)} <span>({where})</span></div><ul>{roots}</ul></li>'
        )
    return f'<div class="group"><div class="ghead">{"".join(head)}</div><ul class="t">{"".join(body)}</ul></div>'


def _initial(view: TreeView) -> str | None:
    focus = [n for n in view.nodes.values() if n.focus]
    if focus:
        return focus[0].exec_id
    return None


def render_html(view: TreeView, title: str | None = None) -> str:
    """The whole page as a string."""
    data = view.to_dict()
    data["initial"] = _initial(view)
    c = view.counts()
    title = title or f"Process tree — {view.selection.describe()}"
    late = (
        f'<span class="late">{plural(c["late_shells"], "late shell")}</span>' if c["late_shells"] else "0 late shells"
    )
    counts = (
        f"{plural(c['processes'], 'process', 'processes')} · {plural(c['connections'], 'connection')} · "
        f"{plural(c['file_events'], 'file event')} · {plural(c['alerts'], 'alert')} · {late} "
        f'<span class="sel">(shells started more than '
        f"{_e(format_offset(view.late_after)[1:])} after their container)</span>"
    )
    if view.truncated:
        counts += ' · <span class="late">truncated: narrow the selection</span>'
    if view.depth_cut:
        counts += f' · <span class="late">{DEPTH_CUT_NOTE}</span>'
    groups = "".join(_group(g) for g in view.groups)
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="tetrapipe tree">
<title>{_e(title)}</title>
<style>{CSS}</style>
</head>
<body>
<header>
<h1>Process Ancestry Tree</h1>
<div class="sel">{_e(view.selection.describe())}</div>
<div class="counts">{counts}</div>
<div class="tools"><input type="search" id="filter" placeholder="filter: binary, arguments, address, path, exec_id">
<button id="expand" type="button">Expand all</button><button id="collapse" type="button">Collapse all</button>
<label><input type="checkbox" id="events" checked> events</label></div>
</header>
<main>
<section id="tree">{groups}</section>
<aside id="panel" class="empty"><div class="hint">Click a process to see its details and events.</div>
<div class="body"></div></aside>
</main>
<footer>Generated by tetrapipe tree from the Tetragon history. Times are UTC; offsets are from the container start.</footer>
<script id="tree-data" type="application/json">{_json_for_script(data)}</script>
<script>{JS}</script>
</body>
</html>
"""


__all__ = ["render_html", "CSP"]
