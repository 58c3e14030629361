"""Process ancestry trees from the history: build (DuckDB recursive SQL), draw in a terminal, write HTML.

from tetrapipe.tree import Selection, build_tree, render_html
view = build_tree("tetrapipe-lake", Selection(pod="crawler-7d9f8b6c5-x2x4z"))
Path("tree.html").write_text(render_html(view))

One module a job: :mod:`.model` is the data drawn, :mod:`.build` reads it from the
history, :mod:`.fold` groups and folds it, :mod:`.sql` holds the DuckDB macros it
is read with, :mod:`.html` writes the standalone page. The terminal drawing is the face's
(:mod:`tetrapipe.commands.tree_text`, rich). The HTML renderer is imported on
first use, so building a tree never loads the template.
"""

from tetrapipe.tree.build import build_tree, list_pods, newest_event_time
from tetrapipe.tree.model import DEFAULT_LATE_AFTER, SHELLS, Selection, TreeError, TreeView
from tetrapipe.tree.sql import install

__all__ = [
    "DEFAULT_LATE_AFTER",
    "SHELLS",
    "Selection",
    "TreeError",
    "TreeView",
    "build_tree",
    "install",
    "list_pods",
    "newest_event_time",
    "render_html",
]


def render_html(view: TreeView) -> str:
    from tetrapipe.tree.html import render_html as _render

    return _render(view)
