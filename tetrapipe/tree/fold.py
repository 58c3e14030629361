"""Arrange a tree for reading: roots grouped by container, identical sibling subtrees folded into one line.

Folding is what keeps a pod with a cron job readable: 500 identical runs are one
line with a count. What counts as "identical" is a signature over a subtree
(:func:`fold_children`); anything a reader must see on its own (alerts, the
focused process and its path) gets a unique signature and never folds.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from tetrapipe.tree.model import Entry, Group, Node, Shown


def group_by_container(roots: list[Node], fold: bool, max_children: int) -> list[Group]:
    """One group per container (per node for host processes), its roots listed under the parent that started them."""
    by_container: dict[tuple, list[Node]] = {}
    for r in sorted(roots, key=lambda n: (n.container_start_time or dt.datetime.min, n.start_time or dt.datetime.min)):
        key = (r.namespace, r.pod, r.container_id, r.node_name if r.container_id is None else None)
        by_container.setdefault(key, []).append(r)
    groups = []
    for (_ns, _pod, _cid, _node), members in by_container.items():
        first = members[0]
        entries: dict[str | None, list[Node]] = {}
        for r in members:
            entries.setdefault(r.parent_exec_id, []).append(r)
        out_entries = []
        for parent_id, rs in entries.items():
            p0 = rs[0]
            out_entries.append(
                Entry(parent_id, p0.parent_binary, list(p0.ancestor_binaries), fold_children(rs, fold, max_children))
            )
        groups.append(
            Group(
                first.namespace,
                first.pod,
                first.container_name,
                first.container_id,
                first.image,
                first.container_start_time,
                first.node_name,
                out_entries,
            )
        )
    return groups


def _signature(n: Node, memo: dict[str, int]) -> int:
    """What makes two subtrees "the same" to a reader (a hash); unique for anything worth seeing alone."""
    if n.exec_id in memo:
        return memo[n.exec_id]
    if n.alerts or n.focus or n.on_path:
        sig = hash(("unique", n.exec_id))
    else:
        # late shells fold only with late shells: a cron job's 500 late "sh -c" stay one marked line
        kids = tuple(sorted(_signature(c, memo) for c in n.children))
        evs = tuple(sorted({e.label for e in n.events}))
        sig = hash((n.binary, n.arguments, n.status(), n.in_init_tree, n.late_shell, n.injected, evs, kids))
    memo[n.exec_id] = sig
    return sig


def fold_children(
    children: Iterable[Node], fold: bool = True, max_children: int = 60, memo: dict[str, int] | None = None
) -> list[Shown]:
    """Siblings as drawn: identical subtrees folded (first one shown, with the count), in start order."""
    memo = {} if memo is None else memo
    groups: dict[object, list[Node]] = {}
    for c in children:
        key = _signature(c, memo) if fold else c.exec_id
        groups.setdefault(key, []).append(c)
    shown = []
    for members in groups.values():
        rep = members[0]
        kids = fold_children(rep.children, fold, max_children, memo)
        hidden = max(0, len(kids) - max_children)
        shown.append(Shown(rep, members, kids[:max_children] if hidden else kids, hidden))
    return shown
