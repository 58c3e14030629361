"""The detector's mask statement for many rules: one branch per event kind, shared sub-expressions computed once.

:func:`tetrapipe.ruleset.plan.mask_sql` writes every rule as one ``CASE`` over
every row of every kind any rule reads, each behind its own ``kind IN (...)``
test, and each ``ILIKE`` lower-cases its operand and its pattern again. With
the ~160 converted SigmaHQ rules that is ~1,800 ``concat_ws(' ',
process_binary, arguments) ILIKE '...'`` per exec event: 150 rules doubled the
ingest time. This plan gives the same bits with less work:

* **per kind**: a ``UNION ALL`` of one ``SELECT`` per event kind, each over
  that kind's rows only (the detector registers each kind's rows apart,
  :func:`split_by_kind`), testing only the rules that name the kind, without
  their kind test (true on every row of the branch);
* **per distinct value**: a rule that reads no per-event column
  (:data:`UNIQUE_COLUMNS`) is tested once per distinct combination of the
  columns it reads (a ``DISTINCT``, joined back with ``IS NOT DISTINCT
  FROM``); a batch holds a few dozen distinct command lines per thousand execs;
* **shared sub-expressions**: an operand used by two or more of a kind's
  rules (``lower(concat_ws(' ', process_binary, arguments))`` above all) is
  computed once per row, in a projection under the branch, and the rules
  read that column;
* **ILIKE as LIKE on a lowered operand**: ``x ILIKE p`` is
  ``lower(x) LIKE lower(p)`` in DuckDB (the same case mapping: checked by
  ``tests/test_detect_scale.py``), so with ``lower(x)`` computed once a
  pattern costs a ``LIKE``, and a pattern that is a plain prefix, suffix,
  substring or word becomes ``starts_with``, ``suffix``, ``contains`` or
  ``=``, which scan without a pattern matcher; an OR of several of those on
  one operand becomes one ``regexp_matches`` (:func:`~tetrapipe.transforms.likeplan.merge_literal_tests`).

The measured cost is in ``bench/bench_rules.py`` and the README (Performance).

Rules are rewritten on DuckDB's own parse tree (``json_serialize_sql``), not
on their text, and put back as text by DuckDB (``json_deserialize_sql``), so a
rewrite cannot misread precedence, quoting or a lambda. Only operands made of
columns, constants and functions that cannot fail on a row (:data:`_SAFE`) are
hoisted: computed for every row of the kind, such an operand can never raise
where the rule's own short-circuit would have skipped it. Anything else in a
condition is left exactly as written. A rule whose text DuckDB cannot parse
this way keeps its original predicate (:func:`branch_predicates` falls back
per rule); the detector falls back to ``mask_sql`` altogether if the planned
statement does not bind.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from tetrapipe.ruleset.compiler import COLUMNS, sql_words
from tetrapipe.ruleset.model import Rule
from tetrapipe.ruleset.plan import MASK_BITS
from tetrapipe.transforms.kindfold import specialize, truth
from tetrapipe.transforms.likeplan import like_test, merge_literal_tests
from tetrapipe.transforms.sqltree import (
    OPAQUE,
    TREES,
    args_of,
    call_node,
    canon,
    column_node,
    plain_function,
    string_constant,
    string_node,
    template,
)

#: functions that return a value for every input row (no cast, no parse, no division): safe to compute on
#: rows a rule's short-circuit would have skipped
_SAFE = frozenset(
    {"concat_ws", "concat", "||", "lower", "upper", "lcase", "ucase", "split_part", "regexp_extract", "trim", "ltrim"}
    | {"rtrim", "replace", "left", "right", "strip_accents"}
)
_ILIKE = {"~~*": False, "!~~*": True, "ilike_escape": False, "not_ilike_escape": True}
_LOWER = ("lower", "lcase")
#: hoisted columns: a prefix no event column has
_HOIST = "_tp_h"


def _safe(node: dict) -> bool:
    """Columns, constants and :data:`_SAFE` calls of them: an operand that may be computed on any row."""
    cls = node.get("class")
    if cls == "COLUMN_REF":
        return len(node.get("column_names", [])) == 1
    if cls == "CONSTANT":
        return True
    if plain_function(node) and node.get("function_name") in _SAFE:
        return all(_safe(a) for a in args_of(node))
    return False


def _lower_of(node: dict) -> dict:
    return call_node("lower", [node])


def _ilike_parts(node: dict) -> tuple[dict, str, str | None, bool] | None:
    """``(operand, pattern, escape, negated)`` of an ILIKE with a safe operand and constant pattern."""
    if not plain_function(node) or node.get("function_name") not in _ILIKE:
        return None
    args = args_of(node)
    escaped = node["function_name"].endswith("_escape")
    if len(args) != (3 if escaped else 2) or not _safe(args[0]):
        return None
    pattern = string_constant(args[1])
    escape = string_constant(args[2]) if escaped else None
    if pattern is None or (escaped and (escape is None or len(escape) > 1)):
        return None
    return args[0], pattern, escape or None, _ILIKE[node["function_name"]]


def _walk(node: Any) -> Iterator[tuple[str, dict]]:
    """The sharable operands of a condition: ``("lower", operand)`` for ILIKE/lower, ``("value", call)``."""
    if isinstance(node, list):
        for n in node:
            yield from _walk(n)
        return
    if not isinstance(node, dict):
        return
    if node.get("class") in OPAQUE:
        return  # a lambda's names are its own; a window or subquery cannot be in a condition; a leaf holds none
    parts = _ilike_parts(node)
    if parts is not None:
        yield "lower", parts[0]
        yield "pattern", string_node(parts[1])
        return
    if plain_function(node) and node.get("function_name") in _LOWER and len(args_of(node)) == 1 and _safe(node):
        yield "lower", args_of(node)[0]
        return
    if node.get("class") == "FUNCTION" and _safe(node):
        yield "value", node
        return
    for value in node.values():
        yield from _walk(value)


@dataclass
class _Shared:
    """The hoisted operands of one kind's branch: canonical key -> column name, and their SQL.

    ``keys`` remembers the canonical key of each operand node :func:`_walk`
    found (by ``(what, id(node))``; the trees live as long as the plan is being
    written), so that :func:`_rewrite` does not serialize them again.
    """

    columns: dict[str, str]
    sql: list[str]
    keys: dict[tuple[str, int], str] = field(default_factory=dict)

    def key(self, what: str, node: dict) -> str:
        key = self.keys.get((what, id(node)))
        return key if key is not None else canon(_lower_of(node) if what == "lower" else node)


def _rewrite(node: Any, shared: _Shared) -> Any:
    """``node`` with shared operands read from their columns and ILIKE turned into LIKE on the lowered operand.

    A subtree with nothing to rewrite comes back as it is, not copied (no tree
    is changed in place: the parsed ones are shared by the branches of a plan).
    """
    if isinstance(node, list):
        out_list = [_rewrite(n, shared) for n in node]
        return node if all(a is b for a, b in zip(out_list, node, strict=True)) else out_list
    if not isinstance(node, dict) or node.get("class") in OPAQUE:
        return node
    parts = _ilike_parts(node)
    if parts is not None:
        operand, pattern, escape, negated = parts
        lowered = shared.columns.get(shared.key("lower", operand))
        target = column_node(lowered) if lowered else _lower_of(_rewrite(operand, shared))
        out = like_test(target, TREES.lower(pattern), escape)
        return {"class": "OPERATOR", "type": "OPERATOR_NOT", "alias": "", "children": [out]} if negated else out
    if plain_function(node) and node.get("function_name") in _LOWER and len(args_of(node)) == 1 and _safe(node):
        name = shared.columns.get(shared.key("lower", args_of(node)[0]))
        if name:
            return column_node(name)
    if node.get("class") == "FUNCTION" and _safe(node):
        name = shared.columns.get(shared.key("value", node))
        if name:
            return column_node(name)
        return node
    out = {k: _rewrite(v, shared) if isinstance(v, dict | list) else v for k, v in node.items()}
    if all(out[k] is v for k, v in node.items()):
        out = node
    return merge_literal_tests(out, _HOIST) if out.get("type") == "CONJUNCTION_OR" else out


def _rule_sql(rule: Rule) -> str:
    """A rule's test on rows of one of its kinds: its condition, not excepted (the kind test is the branch's)."""
    c = rule.compiled
    return f"({c.condition})" + (f" AND ({c.exceptions}) IS NOT TRUE" if c.exceptions else "")


def branch_predicates(
    rules: list[Rule],
    trees: dict[Any, dict | None] | None = None,
    keys: dict[tuple[str, int], str] | None = None,
    kind: str | None = None,
) -> tuple[list[str], list[str]]:
    """Each rule's rewritten test over one kind's rows and the shared columns' ``expr AS name`` list.

    ``trees`` holds parse trees already read (rule text -> :meth:`SqlTrees.parse`), shared between the
    branches of one plan; they are not changed here. ``keys``: the canonical keys of their operands
    (see :class:`_Shared`), for the same trees only (by node identity), also shared by the branches.
    ``kind``: the branch's kind, whose rows alone the tests see (see :func:`~tetrapipe.transforms.kindfold.specialize`); the trees
    specialized to it are kept in ``trees`` too (under ``(kind, text)``), so that a node's identity,
    which ``keys`` goes by, stays its own while the plan is written.
    """
    if trees is None:
        trees, keys = {}, None  # the keys are of the nodes of these trees: new trees, new keys
    keys = keys if keys is not None else {}
    parsed = []
    for rule in rules:
        text = _rule_sql(rule)
        if text not in trees:
            trees[text] = TREES.parse(text)
        tree = trees[text]
        # (a text that names neither the kind column nor list_filter has nothing to specialize: most converted
        # SigmaHQ rules, whose trees are large, are not walked once per kind)
        if kind is not None and tree is not None and ("kind" in text or "list_filter" in text):
            if (kind, text) not in trees:
                trees[(kind, text)] = {"doc": tree["doc"], "expr": specialize(tree["expr"], kind)}
            tree = trees[(kind, text)]
        parsed.append(tree)
    counts: Counter[str] = Counter()
    nodes: dict[str, dict] = {}
    patterns = []
    shared = _Shared({}, [], keys)
    for p in parsed:
        if p is None:
            continue
        for what, node in _walk(p["expr"]):
            if what == "pattern":
                patterns.append(node["literal"]["text"])
                continue
            target = _lower_of(node) if what == "lower" else node
            key = shared.keys.get((what, id(node)))
            if key is None:
                key = shared.keys[(what, id(node))] = canon(target)
            counts[key] += 1
            nodes.setdefault(key, target)
    TREES.lower_all(patterns)
    candidates = [key for key, n in counts.items() if n >= 2]
    doc = {"doc": template()}
    for key, text in zip(candidates, TREES.render_all([(doc, nodes[key]) for key in candidates]), strict=True):
        if text is None:
            continue
        name = f"{_HOIST}{len(shared.columns)}"
        shared.columns[key] = name
        shared.sql.append(f"{text} AS {name}")
    texts = iter(TREES.render_all([(p, _rewrite(p["expr"], shared)) for p in parsed if p is not None]))
    out = []
    for rule, p in zip(rules, parsed, strict=True):
        text = next(texts) if p is not None else None
        out.append(text if text is not None else _rule_sql(rule))
    return out, shared.sql


def predicate_columns(rules: list[Rule]) -> list[str]:
    """The event columns the rules' conditions and exceptions read (over-inclusive: any such word), schema order."""
    words: set[str] = set()
    for rule in rules:
        for text in (rule.compiled.condition, rule.compiled.exceptions or ""):
            words |= sql_words(text)
    return [c for c in COLUMNS if c in words]


#: columns that differ on nearly every event (ids, times, pids, raw text): a rule that reads one is tested row by
#: row, not once per distinct combination (which would be as many as the rows, plus the grouping's cost)
UNIQUE_COLUMNS = frozenset(
    {"event_id", "time", "time_ns", "exec_id", "parent_exec_id", "pid", "tid", "process_start_time"}
    | {"container_start_time", "parent_pid", "parent_start_time", "ancestor_exec_ids", "container_pid", "sport"}
    | {"source_offset", "raw", "args", "return_value", "message", "pod_uid"}
)


@dataclass(frozen=True)
class KindMask:
    """Each kind's mask statement and the slot its rows are read from (``{source}_{n}``), in ``kinds`` order.

    The detector runs only the branches of the kinds a batch holds: DuckDB sets
    up every expression of a statement at each execution, rows or not (~4 ms
    for the rules on ``process_connect``, a kind most batches lack).
    """

    branches: tuple[str, ...]
    kinds: tuple[str, ...]
    slots: tuple[str, ...]
    #: the columns each branch names (over-inclusive), ``_i`` included: its slot holds only those
    columns: tuple[frozenset[str], ...]
    #: per kind, the same bits with every rule tested row by row, where the branch tests some per distinct
    #: value (None where it does not): which is cheaper depends on the data (see :mod:`.branchpick`)
    by_row: tuple[str | None, ...] = ()

    @property
    def sql(self) -> str:
        """Every branch in one statement (same columns in each): all kinds' rows at once."""
        return "\nUNION ALL\n".join(self.branches)


def kind_mask_sql(rules: list[Rule], source: str, sequences: list[Rule] | None = None) -> KindMask:
    """:func:`tetrapipe.ruleset.plan.mask_sql`'s columns and bits, planned per kind over per-kind slots.

    The caller registers each kind's rows (with ``_i``) as ``slots[n]``. Only
    rows with at least one bit set come back, in no particular order. In a
    kind's branch, the rules that read no :data:`UNIQUE_COLUMNS` are tested
    once per distinct combination of the columns they read (a ``DISTINCT``,
    joined back to the rows with ``IS NOT DISTINCT FROM``, so NULLs match
    NULLs): exec events of one batch repeat a few hundred command lines.

    ``sequences``: sequence rules whose step bits (``_q{r}``, as
    :func:`tetrapipe.ruleset.sequence.steps_sql` gives them) each branch
    computes too, for its kind's rows (see :func:`_step_bits`); a row with a
    step bit and no rule bit comes back as well. Without them, none.
    """
    sequences = sequences or []
    TREES.parse_all([_rule_sql(r) for r in rules])  # one query for all (branch_predicates reads them)
    kinds = tuple(sorted({k for r in [*rules, *sequences] for k in r.compiled.kinds}))
    slots = tuple(f"{source}_{n}" for n in range(len(kinds)))
    groups = (len(rules) + MASK_BITS - 1) // MASK_BITS
    columns = [predicate_columns([r]) for r in rules]
    trees: dict[Any, dict | None] = {}  # parse trees read once for all branches (and specialized per kind)
    keys: dict[tuple[str, int], str] = {}  # and the canonical keys of their operands
    memo = (trees, keys)
    steps = _step_bits(sequences, kinds)
    branches = [
        _branch(rules, kind, slot, groups, columns, memo, steps=steps[kind])
        for kind, slot in zip(kinds, slots, strict=True)
    ]
    by_row = [
        _branch(rules, kind, slot, groups, columns, memo, by_value=False, steps=steps[kind])
        if _by_value(rules, kind, columns)  # (else the branch already tests every rule row by row)
        else None
        for kind, slot in zip(kinds, slots, strict=True)
    ]
    words = [sql_words(b) | (sql_words(r) if r else set()) for b, r in zip(branches, by_row, strict=True)]
    columns = tuple(frozenset(w.intersection([*COLUMNS, "_i"])) for w in words)
    return KindMask(tuple(branches), kinds, slots, columns, tuple(by_row))


def _step_bits(sequences: list[Rule], kinds: tuple[str, ...]) -> dict[str, list[str]]:
    """Per kind, per sequence rule ``r``, ``(...) AS _q{r}``: its step and ``until`` bits on rows of that kind.

    The same bits as :func:`tetrapipe.ruleset.sequence.steps_sql` (bit ``k``
    for step ``k``, bit ``len(steps)`` for ``until``), each predicate as it
    reads on that kind (:func:`~tetrapipe.transforms.kindfold.specialize`: a step of another kind is false
    and drops out), so that the batch is not scanned once more for them. A
    predicate DuckDB cannot parse this way is used as it is. Every predicate
    is parsed once and every kind's are rendered in one query.
    """
    preds = [[*r.compiled.steps, *([r.compiled.until] if r.compiled.until else [])] for r in sequences]
    TREES.parse_all([p for ps in preds for p in ps])
    parsed = [[TREES.parse(p) for p in ps] for ps in preds]
    plans: dict[str, list[list[tuple[int, int | str]]]] = {}  # kind -> rule -> (step, index into todo | text)
    todo: list[tuple[dict, dict]] = []
    for kind in kinds:
        per_rule = []
        for ps, trees in zip(preds, parsed, strict=True):
            mine: list[tuple[int, int | str]] = []
            for k, (p, tree) in enumerate(zip(ps, trees, strict=True)):
                if tree is None:
                    mine.append((k, p))
                    continue
                expr = specialize(tree["expr"], kind)
                if truth(expr) is False:
                    continue  # never on this kind's rows
                mine.append((k, len(todo)))
                todo.append((tree, expr))
            per_rule.append(mine)
        plans[kind] = per_rule
    rendered = TREES.render_all(todo) if todo else []
    out: dict[str, list[str]] = {}
    for kind, per_rule in plans.items():
        bits = []
        for r, mine in enumerate(per_rule):
            terms = []
            for k, ref in mine:
                text = ref if isinstance(ref, str) else rendered[ref] or preds[r][k]
                terms.append(f"CASE WHEN {text}\n  THEN {1 << k}::BIGINT ELSE 0::BIGINT END")
            bits.append(f"({' + '.join(terms) or '0::BIGINT'}) AS _q{r}")
        out[kind] = bits
    return out


def _by_value(rules: list[Rule], kind: str, columns: list[list[str]]) -> list[int]:
    """The rules of ``kind`` that can be tested once per distinct value: those reading no :data:`UNIQUE_COLUMNS`."""
    return [i for i, r in enumerate(rules) if kind in r.compiled.kinds and not UNIQUE_COLUMNS.intersection(columns[i])]


def _bits(tests: dict[int, str], group: int) -> str:
    terms = [
        f"CASE WHEN {t}\n  THEN {1 << (i % MASK_BITS)}::BIGINT ELSE 0::BIGINT END"
        for i, t in tests.items()
        if i // MASK_BITS == group and t != "false"  # (a rule's test folded away on this kind: see kindfold.specialize)
    ]
    return " + ".join(terms) if terms else "0::BIGINT"


def _value_groups(by_value: list[int], cols: dict[int, list[str]]) -> list[list[int]]:
    """The rules tested per distinct value, grouped so that most are keyed on few columns.

    One ``DISTINCT`` over every column any of a kind's rules reads has nearly
    as many rows as the batch once a few rules read ``container_id`` or
    ``namespace``; the SigmaHQ rules read ``process_binary`` and ``arguments``
    (a few dozen combinations per batch). So the rules whose columns are all
    among the two most read form one group, those within the four most read a
    second, the others a third; each group costs one ``DISTINCT`` and one join.
    """
    freq = Counter(c for i in by_value for c in cols[i])
    rank = {c: n for n, (c, _) in enumerate(sorted(freq.items(), key=lambda kv: (-kv[1], COLUMNS.index(kv[0]))))}
    buckets: dict[int, list[int]] = {}
    for i in by_value:
        level = max((rank[c] for c in cols[i]), default=0)
        buckets.setdefault(0 if level < 2 else 1 if level < 4 else 2, []).append(i)
    return [buckets[b] for b in sorted(buckets)]


def _value_join(
    rules: list[Rule],
    kind: str,
    members: list[int],
    slot: str,
    n: int,
    groups: int,
    memo: tuple[dict[Any, dict | None], dict[tuple[str, int], str]],
) -> str:
    """``JOIN (...) v{n} ON ...``: the bits of ``members`` per distinct combination of the columns they read.

    The columns are those their tests read on rows of ``kind`` (see :func:`~tetrapipe.transforms.kindfold.specialize`: a rule's part
    for another kind reads columns this one's rows never need to be told apart by).
    """
    tests, shared = branch_predicates([rules[i] for i in members], *memo, kind=kind)
    words = sql_words(" ".join([*tests, *shared]))
    keys = [c for c in COLUMNS if c in words] or ["kind"]  # no column: any row will do
    test = dict(zip(members, tests, strict=True))
    distinct = f"SELECT DISTINCT {', '.join(keys)} FROM {slot}"
    hoisted = f"SELECT *{''.join(', ' + x for x in shared)} FROM ({distinct})"
    renamed = ", ".join(f"{k} AS _tp_k{j}" for j, k in enumerate(keys))
    values = ", ".join(f"{_bits(test, g)} AS _tp_v{g}" for g in range(groups))
    on = " AND ".join(f"b.{k} IS NOT DISTINCT FROM v{n}._tp_k{j}" for j, k in enumerate(keys))
    return f"\nJOIN (SELECT {renamed}, {values} FROM ({hoisted})) v{n} ON {on}"


def _branch(
    rules: list[Rule],
    kind: str,
    slot: str,
    groups: int,
    columns: list[list[str]],
    memo: tuple[dict[Any, dict | None], dict[tuple[str, int], str]],
    *,
    by_value: bool = True,
    steps: list[str] | None = None,
) -> str:
    """One kind's ``SELECT``: its rules' bits for every row of ``slot`` with one set.

    ``columns``: each rule's; ``memo``: the plan's parse trees and operand keys (see :func:`branch_predicates`).
    ``by_value=False``: every rule tested row by row (no ``DISTINCT``, no join). ``steps``: the
    sequence rules' step bits (:func:`_step_bits`), computed alongside (a row with one comes back too).
    """
    steps = steps or []
    mine = [i for i, r in enumerate(rules) if kind in r.compiled.kinds]
    cols = {i: columns[i] for i in mine}
    by_value = _by_value(rules, kind, columns) if by_value else []
    by_row = [i for i in mine if i not in by_value]
    tests_r, shared_r = branch_predicates([rules[i] for i in by_row], *memo, kind=kind)
    row_test = dict(zip(by_row, tests_r, strict=True))
    rows = f"(SELECT *{''.join(', ' + x for x in shared_r)} FROM {slot})" if shared_r else slot
    value_groups = _value_groups(by_value, cols)
    frm = f"{rows} b" + "".join(
        _value_join(rules, kind, members, slot, n, groups, memo) for n, members in enumerate(value_groups)
    )
    masks = [
        " + ".join([*(f"v{n}._tp_v{g}" for n in range(len(value_groups))), _bits(row_test, g)]) + f" AS _m{g}"
        for g in range(groups)
    ]
    extra = []
    for i, rule in enumerate(rules):
        c = rule.compiled
        bit = f"(_m{i // MASK_BITS} & {1 << (i % MASK_BITS)}::BIGINT) <> 0"
        if c.term:
            extra.append(
                f"CASE WHEN {bit} THEN CAST({c.term} AS UBIGINT) END AS _t{i}"
                if i in cols
                else f"NULL::UBIGINT AS _t{i}"
            )
        if c.learn_key:
            extra.append(
                f"CASE WHEN {bit} THEN CAST({c.learn_key} AS UBIGINT) END AS _k{i}"
                if i in cols
                else f"NULL::UBIGINT AS _k{i}"
            )
    any_bit = " OR ".join([*(f"_m{g} <> 0" for g in range(groups)), *(f"_q{r} <> 0" for r in range(len(steps)))])
    inner = f"SELECT b.*, {', '.join([*masks, *steps])}\nFROM {frm}"
    outer = [*(f"_m{g}" for g in range(groups)), *extra, *(f"_q{r}" for r in range(len(steps)))]
    return f"SELECT _i, {', '.join(outer)}\nFROM ({inner})\nWHERE {any_bit}"


def slot_schemas(schema: pa.Schema, plan: KindMask) -> dict[str, pa.Schema]:
    """The columns of each kind's slot for a batch of ``schema``: those its branch names, in the batch's order.

    Filtering ~40 columns (lists, ``raw``) per kind was a tenth of the detector's
    time, and DuckDB converts every column of a scanned Arrow table.
    """
    return {
        slot: pa.schema([f for f in schema if f.name in wanted])
        for slot, wanted in zip(plan.slots, plan.columns, strict=True)
    }


def split_by_kind(batch: pa.Table, plan: KindMask) -> dict[str, pa.Table]:
    """Each kind's rows of ``batch``, with :func:`slot_schemas`' columns, under its slot name (empty if none)."""
    kinds = batch.column("kind")
    held = set(pc.unique(kinds).to_pylist())  # a batch holds a few of the kinds: the others cost no scan
    out = {}
    for (slot, schema), kind in zip(slot_schemas(batch.schema, plan).items(), plan.kinds, strict=True):
        out[slot] = batch.select(schema.names).filter(pc.equal(kinds, kind)) if kind in held else schema.empty_table()
    return out


__all__ = [
    "KindMask",
    "UNIQUE_COLUMNS",
    "branch_predicates",
    "kind_mask_sql",
    "predicate_columns",
    "slot_schemas",
    "split_by_kind",
]
