"""The two DuckDB queries that turn raw lines into event rows.

Fast: the event kind comes from the line's first key (a cheap prefix regex;
Tetragon writes the event first); that key is renamed ``__event__`` so one
list of constant paths extracts every field in ONE parse of the line, and
a second lists the keys of every object a field is read from (the
``shape``, which the caller judges: a line with a repeated key, or not in
canonical order where that matters, is re-serialized and read again).
Lines whose first key is not a known kind are left to the caller, and so
is a batch in which some line is not valid JSON (DuckDB then raises).

Careful: validates each line, finds the kind among all top-level keys,
explains rejects, and reaches any kind by rebuilding the object around
its body. It sees only lines the caller already re-serialized (or could
not), so it needs no shape.

Both end in the same projection. The queries are text built once, at import
(:data:`FAST_SQL`, :data:`CAREFUL_SQL`); the pieces below each build one part
of it. See ``docs/ARCHITECTURE.md``.
"""

from __future__ import annotations

from tetrapipe.schema import ENVELOPE_KEYS
from tetrapipe.sqltext import sql_string_list
from tetrapipe.transforms.normalize.fields import (
    ARG_FIELDS,
    ARG_SLOTS,
    BODY_KINDS,
    ENV_PATHS,
    FIELDS,
    KNOWN_KINDS,
    NAMESPACE_NAMES,
    OPEN_WRITE_FLAGS,
    TP_PATH_SYSCALLS,
)
from tetrapipe.transforms.normalize.shape import KEY_OBJECTS, key_paths


def idx(names: list[str], name: str) -> int:
    return names.index(name) + 1  # DuckDB lists are 1-based


NAMES = list(FIELDS)
ARG_PATHS = [f"$[{i}].{fld}" for i in range(ARG_SLOTS) for fld in ARG_FIELDS] + [f"$[{ARG_SLOTS}]"]
#: an argument list longer than the slots looked at: searched whole with wildcard paths
MANY_ARGS = f"a[{len(ARG_PATHS)}] IS NOT NULL"


def val(name: str) -> str:
    """A field's extracted text (the ``s`` list holds every field of :data:`FIELDS`)."""
    return f"s[{idx(NAMES, name)}]"


def key_list(name: str) -> str:
    """The key list of one of :data:`KEY_OBJECTS` (careful query)."""
    return f"ks[{idx(KEY_OBJECTS, name)}]"


def arg(i: int, fld: str) -> str:
    """Field ``fld`` of the argument in slot ``i``."""
    return f"a[{ARG_PATHS.index(f'$[{i}].{fld}') + 1}]"


def first_arg(*fields: str) -> str:
    """The first argument having one of ``fields`` (in that order of preference)."""
    slots = "coalesce(" + ", ".join(arg(i, fld) for fld in fields for i in range(ARG_SLOTS)) + ")"
    whole = "coalesce(" + ", ".join(f"json_extract_string(args_t, '$[*].{fld}')[1]" for fld in fields) + ")"
    # the rows without arguments (execs and exits, most of a log) are left out before any slot is looked at
    return f"CASE WHEN a IS NULL THEN NULL WHEN {MANY_ARGS} THEN {whole} ELSE {slots} END"


#: characters of a value a reject reason quotes: a reason names what is wrong, it does not carry the line again
SHOWN_CHARS = 100


def shown(expr: str) -> str:
    """``expr`` (text) as a reject reason quotes it: cut to :data:`SHOWN_CHARS`, saying how long it was."""
    return (
        f"CASE WHEN length({expr}) > {SHOWN_CHARS} "
        f"THEN left({expr}, {SHOWN_CHARS}) || '... (' || length({expr}) || ' characters)' ELSE {expr} END"
    )


#: DuckDB's names of JSON value types, as JSON itself names them (a reason says what the line is)
_JSON_TYPE_NAMES = (
    "CASE jt WHEN 'ARRAY' THEN 'an array' WHEN 'VARCHAR' THEN 'a string' WHEN 'BOOLEAN' THEN 'a boolean' "
    "WHEN 'NULL' THEN 'null' ELSE 'a number' END"
)


def int_(expr: str) -> str:
    return f"TRY_CAST({expr} AS BIGINT)"


#: an offset RFC 3339 does not allow (hour past 23, minute past 59), which DuckDB's TIMESTAMPTZ cast reads all the
#: same (``+99:99`` as 4 days and 3 hours): such a time is unknown, never days off
_IMPOSSIBLE_OFFSET = "[+-](2[4-9]|[3-9][0-9]):?[0-9][0-9]$|[+-][0-9][0-9]:?[6-9][0-9]$"


def _utc(expr: str) -> str:
    """The time ``expr`` says, in UTC: the cast to TIMESTAMPTZ applies an offset (the connection's time zone is UTC)."""
    return (
        f"CASE WHEN regexp_matches({expr}, '{_IMPOSSIBLE_OFFSET}') THEN NULL "
        f"ELSE TRY_CAST(TRY_CAST({expr} AS TIMESTAMPTZ) AS TIMESTAMP) END"
    )


def ts(expr: str) -> str:
    """An RFC 3339 time in UTC. Why not a plain cast: DuckDB's cast to TIMESTAMP drops an
    offset (``09:00+02:00`` would read as 09:00 UTC). Tetragon writes ``Z``, which takes the plain cast."""
    return f"CASE WHEN ends_with({expr}, 'Z') THEN TRY_CAST({expr} AS TIMESTAMP) ELSE {_utc(expr)} END"


def ts_ns(expr: str) -> str:
    """:func:`ts` in nanoseconds: DuckDB has no TIMESTAMPTZ in nanoseconds, so the offset is
    the difference the UTC reading makes to the plain cast, added to the plain nanosecond cast
    (NULL, and so a bad time, when TIMESTAMPTZ cannot read the offset)."""
    naive = f"TRY_CAST({expr} AS TIMESTAMP_NS)"
    offset = f"{_utc(expr)} - TRY_CAST({expr} AS TIMESTAMP)"
    return f"CASE WHEN ends_with({expr}, 'Z') THEN {naive} ELSE {naive} + ({offset}) END"


FN = "fn"


def file_columns() -> tuple[str, str]:
    """``file_path`` and ``file_access``: from a hook's arguments, by the function it probed."""
    fn = FN
    string_path = (
        f"CASE WHEN {fn} SIMILAR TO '.*sys_(openat|openat2|unlinkat|renameat|renameat2|mkdirat|fchmodat|fchownat)' "
        f"THEN {arg(1, 'string_arg')} "
        f"WHEN {fn} SIMILAR TO '.*sys_(open|creat|unlink|rename|truncate|chmod|chown|mkdir|rmdir)' "
        f"THEN {arg(0, 'string_arg')} "
        f"WHEN kind = 'process_tracepoint' AND {fn} SIMILAR TO 'syscalls/sys_enter_({TP_PATH_SYSCALLS})' "
        f"THEN {first_arg('string_arg')} END"
    )
    file_path = f"coalesce({first_arg('file_arg.path', 'path_arg.path', 'linux_binprm_arg.path')}, {string_path})"
    mask = int_(arg(1, "int_arg"))
    open_flags = int_(
        f"CASE WHEN {fn} SIMILAR TO '.*sys_(openat|openat2)' THEN {arg(2, 'int_arg')} "
        f"WHEN {fn} SIMILAR TO '.*sys_open' THEN {arg(1, 'int_arg')} END"
    )
    file_access = f"""CASE WHEN file_path IS NULL THEN NULL
        WHEN {fn} IN ('security_file_permission', 'file_permission') THEN
            CASE WHEN {mask} & 10 != 0 THEN 'write' WHEN {mask} & 4 != 0 THEN 'read'
                 WHEN {mask} & 1 != 0 THEN 'exec' END
        WHEN {fn} LIKE '%truncate%' THEN 'truncate'
        WHEN {fn} LIKE '%unlink%' OR {fn} LIKE '%rmdir%' THEN 'unlink'
        WHEN {fn} LIKE '%rename%' THEN 'rename'
        WHEN {fn} LIKE '%mmap%' THEN 'mmap'
        WHEN {fn} LIKE '%chmod%' THEN 'chmod'
        WHEN {fn} LIKE '%chown%' THEN 'chown'
        WHEN {fn} LIKE '%bprm%' OR {fn} LIKE '%exec%' THEN 'exec'
        WHEN {fn} SIMILAR TO '.*sys_(write|pwrite64|writev|pwritev)' THEN 'write'
        WHEN {fn} SIMILAR TO '.*sys_(read|pread64|readv|preadv)' THEN 'read'
        WHEN {fn} LIKE '%open%' OR {fn} = 'fd_install' THEN
            CASE WHEN coalesce({open_flags}, 0) & {OPEN_WRITE_FLAGS} != 0 THEN 'write' ELSE 'open' END
        ELSE 'access' END"""
    return file_path, file_access


def host_namespaces() -> str:
    """The namespaces a process shares with the host, as a list of their names."""
    return (
        "CASE WHEN ns_t IS NOT NULL THEN list_filter(["
        + ", ".join(f"CASE WHEN TRY_CAST({val('ns__' + n)} AS BOOLEAN) THEN '{n}' END" for n in NAMESPACE_NAMES)
        + "], lambda n: n IS NOT NULL) END"
    )


def function_name() -> str:
    """The probed function, whatever the hook kind (kprobe, tracepoint, uprobe, USDT)."""
    return (
        f"coalesce({val('function_name')}, "
        f"CASE WHEN {val('tp_subsys')} IS NOT NULL THEN {val('tp_subsys')} || '/' || coalesce({val('tp_event')}, '') END, "
        f"{val('symbol')}, "
        f"CASE WHEN {val('usdt_provider')} IS NOT NULL THEN {val('usdt_provider')} || ':' || coalesce({val('usdt_name')}, '') END)"
    )


def array_t(name: str) -> str:
    return (
        f"CASE WHEN starts_with({val(name)}, '[') AND ({val(name)} = '[]' OR {val(name + '__0')} IS NOT NULL) "
        f"THEN {val(name)} END"
    )


def object_t(name: str, keys: str | None) -> str:
    """An object-valued field's text when it is an object. With ``keys`` (the careful
    query's key lists) that is decided here; the fast query keeps any text that parses
    as an object and leaves the rest to :func:`shape_verdict`, which sees the key lists
    (json_extract_string gives the same text for an object and a string holding it)."""
    if keys is not None:
        return f"CASE WHEN {val(name)} = '{{}}' OR len({key_list(keys)}) > 0 THEN {val(name)} END"
    return f"CASE WHEN starts_with({val(name)}, '{{') AND json_valid({val(name)}) THEN {val(name)} END"


def typed(careful: bool) -> str:
    """JSON-valued fields, kept only when they have the JSON type Tetragon gives them."""
    ns, labels, ret = ("ns", "labels", "return") if careful else (None, None, None)
    return f"""
y AS (
    SELECT *,
        {array_t("args")} AS args_t,
        {array_t("ancestors")} AS anc_t,
        {array_t("cap_effective")} AS cap_t,
        {array_t("privileges_changed")} AS priv_t,
        {array_t("tags")} AS tags_t,
        {object_t("ns", ns)} AS ns_t,
        {object_t("pod_labels", labels)} AS labels_t,
        {object_t("return_value", ret)} AS ret_t
    FROM x
),
y2 AS (
    SELECT *,
        CASE WHEN args_t IS NOT NULL THEN json_extract_string(args_t, {sql_string_list(ARG_PATHS)}) END AS a,
        {function_name()} AS fn
    FROM y
),"""


# The shape of a line: the key lists of the objects columns are read from, whether the
# object-valued fields were empty objects, and (hooks) the key lists of the arguments,
# return value and ancestors. Python judges each distinct shape once (see shape_verdict).
# It leaves the query as JSON text: equal shapes give equal text and different ones
# different text (JSON says where every key starts and ends), so the text itself tells
# shapes apart in Python; one string a row costs DuckDB less to hand over than the
# nested lists (~0.5 µs an event less, fingerprinting the lists in Python included).
SHAPE_CTE = """
c AS (
    SELECT *, to_json(struct_pack(
        kind := kind,
        ks := shape_keys,
        empty := CASE WHEN labels_t = '{}' THEN '1' ELSE '0' END || CASE WHEN ns_t = '{}' THEN '1' ELSE '0' END
                 || CASE WHEN ret_t = '{}' THEN '1' ELSE '0' END,
        ak := CASE WHEN args_t IS NOT NULL THEN json_keys(args_t, '$[*]') END,
        av := CASE WHEN args_t IS NOT NULL THEN json_keys(args_t, '$[*].*') END,
        ab := CASE WHEN args_t IS NOT NULL THEN length(args_t) - length(replace(args_t, '{', '')) END,
        rk := CASE WHEN ret_t IS NOT NULL THEN json_keys('[' || ret_t || ']', '$[*]') END,
        rv := CASE WHEN ret_t IS NOT NULL THEN json_keys('[' || ret_t || ']', '$[*].*') END,
        rb := CASE WHEN ret_t IS NOT NULL THEN length(ret_t) - length(replace(ret_t, '{', '')) END,
        anc := CASE WHEN anc_t IS NOT NULL THEN json_keys(anc_t, '$[*]') END,
        nsk := CASE WHEN ns_t IS NOT NULL THEN json_keys(ns_t, '$.*') END)) AS shape
    FROM y2
),"""
NO_SHAPE_CTE = """
c AS (
    SELECT *, NULL AS shape FROM y2
),"""


def projection_head(sort_labels: bool = True) -> str:
    """The rows' identity, time and process columns (the start of the shared projection).

    ``sort_labels``: sort the labels map by key, as Tetragon's protojson writes maps,
    so that a line gives the same labels whatever wrote it. The fast query's first
    pass leaves them as they are (~1.3 µs a line saved): a row it keeps has a plain
    shape, and :func:`shape_verdict` finds a shape plain only when its labels are
    sorted already (the same order: UTF-8 bytes, code points). Nor does it build the
    map: it hands over the labels' keys (the shape's key list of the same object) and
    values (``label_keys``, ``label_values``), and the normalizer puts them together in
    Arrow (``labels_map`` in normalizer.py): ~1 µs a line less than DuckDB's JSON-to-MAP
    cast, for the same map (a value of any JSON type as its text, null as NULL).
    """
    file_path, _ = file_columns()
    host_ns = host_namespaces()
    labels = "TRY_CAST(CAST(labels_t AS JSON) AS MAP(VARCHAR, VARCHAR))"
    label_parts = ""
    if sort_labels:
        labels = f"map_from_entries(list_sort(map_entries({labels})))"
    else:
        labels = "NULL::MAP(VARCHAR, VARCHAR)"
        label_parts = f"""
    shape_keys[{idx(KEY_OBJECTS, "labels")}] AS label_keys,
    CASE WHEN labels_t IS NOT NULL THEN json_extract_string(labels_t, '$.*') END AS label_values,"""
    # generic words ("type", "name", "path", "event", "ip") are only read for the kinds that define them
    return f"""
z AS (
    SELECT *, {file_path} AS file_path, {ts_ns(val("env_time"))} AS tns
    FROM c
),
z2 AS (
    SELECT *,
        coalesce(reject0, CASE WHEN {val("env_time")} IS NOT NULL AND tns IS NULL
                               THEN 'not a Tetragon event: bad time ' || {shown(val("env_time"))} END) AS reject
    FROM z
)
SELECT
    _i,
    shape,{label_parts}
    CASE WHEN reject IS NULL THEN md5(concat_ws('|', kind, coalesce({val("env_node")}, ''),
        coalesce(CAST(tns AS VARCHAR), ''), coalesce({val("exec_id")}, ''),
        coalesce(fn, ''), coalesce({val("policy_name")}, ''), coalesce(args_t, ''),
        coalesce({val("exit_status")}, ''), coalesce({val("exit_signal")}, ''), coalesce(body, '')))
    END AS event_id,
    {ts(val("env_time"))} AS time,
    epoch_ns(tns) AS time_ns,
    kind,
    {val("env_node")} AS node_name,
    {val("env_cluster")} AS cluster_name,
    {val("exec_id")} AS exec_id,
    coalesce({val("parent_exec_id")}, {val("parent_exec_id_p")}) AS parent_exec_id,
    {int_(val("pid"))} AS pid,
    {int_(val("tid"))} AS tid,
    {int_(val("uid"))} AS uid,
    {int_(val("euid"))} AS euid,
    {int_(val("auid"))} AS auid,
    {val("binary")} AS process_binary,
    CASE WHEN {val("binary")} IS NOT NULL THEN parse_filename({val("binary")}, 'forward_slash') END AS process_name,
    {val("arguments")} AS arguments,
    {val("cwd")} AS cwd,
    {val("flags")} AS flags,
    {ts(val("process_start_time"))} AS process_start_time,
    TRY_CAST({val("in_init_tree")} AS BOOLEAN) AS in_init_tree,
    TRY_CAST(CAST(cap_t AS JSON) AS VARCHAR[]) AS cap_effective,
    {host_ns} AS host_namespaces,
    {int_(val("binary_setuid"))} AS binary_setuid,
    TRY_CAST(CAST(priv_t AS JSON) AS VARCHAR[]) AS privileges_changed,
    {val("namespace")} AS namespace,
    {val("pod")} AS pod,
    {val("pod_uid")} AS pod_uid,
    {labels} AS pod_labels,
    {val("workload")} AS workload,
    {val("workload_kind")} AS workload_kind,
    {val("container_id")} AS container_id,
    {val("container_name")} AS container_name,
    {val("image")} AS image,
    {val("image_id")} AS image_id,
    {ts(val("container_start_time"))} AS container_start_time,
    {int_(val("container_pid"))} AS container_pid,
    TRY_CAST({val("privileged")} AS BOOLEAN) AS privileged,
"""


def projection_tail() -> str:
    """Parent, hook, file, socket, exit columns (the end of the shared projection)."""
    _, file_access = file_columns()
    return f"""    {val("parent_binary")} AS parent_binary,
    {val("parent_arguments")} AS parent_arguments,
    {int_(val("parent_pid"))} AS parent_pid,
    {ts(val("parent_start_time"))} AS parent_start_time,
    CASE WHEN anc_t IS NOT NULL THEN json_extract_string(anc_t, '$[*].exec_id') END AS ancestor_exec_ids,
    CASE WHEN anc_t IS NOT NULL THEN json_extract_string(anc_t, '$[*].binary') END AS ancestor_binaries,
    fn AS function_name,
    CASE WHEN kind IN ('process_uprobe', 'process_usdt', 'process_loader') THEN {val("hook_path")} END AS hook_path,
    {val("policy_name")} AS policy_name,
    {val("action")} AS action,
    {val("return_action")} AS return_action,
    {val("message")} AS message,
    TRY_CAST(CAST(tags_t AS JSON) AS VARCHAR[]) AS tags,
    args_t AS args,
    ret_t AS return_value,
    file_path,
    {file_access} AS file_access,
    CASE WHEN file_path IS NOT NULL
         THEN {first_arg("file_arg.permission", "path_arg.permission", "linux_binprm_arg.permission")} END
        AS file_permission,
    {first_arg("sock_arg.family", "skb_arg.family", "sockaddr_arg.family")} AS sock_family,
    coalesce({first_arg("sock_arg.protocol", "skb_arg.protocol")}, {val("ent_protocol")}) AS protocol,
    coalesce({first_arg("sock_arg.saddr", "skb_arg.saddr")}, {val("source_ip")},
             CASE WHEN kind = 'process_listen' THEN {val("listen_ip")} END) AS saddr,
    {
        int_(
            f"coalesce({first_arg('sock_arg.sport', 'skb_arg.sport')}, {val('source_port')}, "
            f"CASE WHEN kind = 'process_listen' THEN {val('listen_port')} END)"
        )
    } AS sport,
    coalesce({first_arg("sock_arg.daddr", "skb_arg.daddr", "sockaddr_arg.addr")}, {val("destination_ip")}) AS daddr,
    {
        int_(
            f"coalesce({first_arg('sock_arg.dport', 'skb_arg.dport', 'sockaddr_arg.port')}, {val('destination_port')})"
        )
    } AS dport,
    {first_arg("sock_arg.state")} AS sock_state,
    NULL::VARCHAR AS tls_version,
    NULL::VARCHAR AS tls_cipher,
    NULL::BIGINT AS tls_cipher_code,
    NULL::VARCHAR AS tls_sni,
    CASE WHEN kind = 'process_exit' THEN {int_(val("exit_status"))} END AS exit_status,
    CASE WHEN kind = 'process_exit' THEN {val("exit_signal")} END AS exit_signal,
    CASE WHEN kind = 'process_throttle' THEN {val("throttle_type")} END AS throttle_type,
    CASE WHEN kind = 'process_throttle' THEN {val("cgroup")} END AS cgroup,
    {int_(val("dropped_events"))} AS dropped_events,
    NULL::VARCHAR[] AS warnings,
    NULL::VARCHAR AS source,
    source_offset,
    reject
FROM z2
"""


def projection(sort_labels: bool = True) -> str:
    """The projection both queries end in (``sort_labels``: see :func:`projection_head`)."""
    return projection_head(sort_labels) + projection_tail()


#: the kinds most lines are (exec, exit, kprobe: ~95% of a busy cluster's export): the
#: fast query reads them by their own key, each with its own list of constant paths,
#: which spares copying the whole line to rename its key (~1 µs a line); the others
#: share the renamed line's paths, so the query stays small
DIRECT_KINDS = ("process_exec", "process_exit", "process_kprobe")


def own_paths(key: str) -> tuple[str, str]:
    """Every field's path and every key list's path, with the event under ``key``."""
    own_fields = [n for n in FIELDS if n not in ENV_PATHS]
    fields = sql_string_list([f"$.{key}.{FIELDS[n]}" for n in own_fields] + list(ENV_PATHS.values()))
    return fields, sql_string_list(key_paths(f"$.{key}"))


def by_kind(function: str, which: int) -> str:
    """``function`` (json_extract_string or json_keys) of the line, by its own key for
    :data:`DIRECT_KINDS`, else of the renamed line (``ev``); ``which``: 0 fields, 1 key lists.

    The same values either way: a path finds the first of the keys it names, and the
    renamed key is the line's first. The key list of the line itself then starts with
    the kind instead of ``__event__``, which :func:`shape_verdict` reads the same.
    """
    branches = "".join(
        f"\n            WHEN '{kind}' THEN {function}(raw, {own_paths(kind)[which]})" for kind in DIRECT_KINDS
    )
    return f"CASE kind{branches}\n            ELSE {function}(ev, {own_paths('__event__')[which]}) END"


def read_paths() -> tuple[str, str, str, str]:
    """The path lists: event fields, envelope fields, key lists, kinds whose body is kept.

    The event's body is read under a fixed key, so ONE list of constant paths serves
    every kind: the fast query renames the line's first key (a prefix splice), the
    careful one rebuilds the object. The envelope is read from the line itself.
    """
    own_fields = [n for n in FIELDS if n not in ENV_PATHS]
    event_paths = sql_string_list([f"$.__event__.{FIELDS[n]}" for n in own_fields])
    env_paths = sql_string_list(list(ENV_PATHS.values()))
    keys = sql_string_list(key_paths("$.__event__"))
    body_kinds = sql_string_list(list(BODY_KINDS))
    return event_paths, env_paths, keys, body_kinds


def fast_query(sort_labels: bool = True) -> str:
    """The fast query (see the module doc); ``sort_labels``: see :func:`projection_head`."""
    event_paths, env_paths, keys, body_kinds = read_paths()
    return f"""
WITH k AS (
    SELECT _i, source_offset, raw, regexp_extract(raw, '^\\{{"([a-z_]+)": ?\\{{', 1) AS kind FROM batch
),
r AS (
    SELECT _i, source_offset, kind, raw,
        CASE WHEN NOT list_contains({sql_string_list(list(DIRECT_KINDS))}, kind)
             THEN regexp_replace(raw, '^\\{{"[a-z_]+":', '{{"__event__":') END AS ev
    FROM k WHERE list_contains({sql_string_list(KNOWN_KINDS)}, kind)
),
x AS (
    SELECT _i, source_offset, kind,
        {by_kind("json_extract_string", 0)} AS s,
        {by_kind("json_keys", 1)} AS shape_keys,
        CASE WHEN list_contains({body_kinds}, kind) THEN CAST(json_extract(ev, '$.__event__') AS VARCHAR) END AS body,
        NULL::VARCHAR AS reject0
    FROM r
),{typed(False)}{SHAPE_CTE}{projection(sort_labels)}"""


def careful_query() -> str:
    """The careful query (see the module doc)."""
    event_paths, env_paths, keys, body_kinds = read_paths()
    envelope = sql_string_list(list(ENVELOPE_KEYS))
    body_path = "'$.\"' || kind || '\"'"
    return f"""
WITH v AS (
    SELECT _i, source_offset, raw, json_valid(raw) AS ok FROM batch
),
t AS (
    SELECT *, CASE WHEN ok THEN json_type(raw) END AS jt FROM v
),
k AS (
    SELECT *,
        CASE WHEN jt = 'OBJECT'
             THEN list_filter(json_keys(raw), lambda x: NOT list_contains({envelope}, x))[1] END AS kind0
    FROM t
),
e AS (
    SELECT *,
        CASE WHEN kind0 IS NOT NULL AND regexp_full_match(kind0, '[A-Za-z0-9_]+') THEN kind0 END AS kind,
        CASE
            WHEN NOT ok THEN 'invalid JSON'
            WHEN jt != 'OBJECT' THEN 'not a Tetragon event: ' || {_JSON_TYPE_NAMES} || ', not an object'
            WHEN kind0 IS NULL AND json_keys(raw) = [] THEN 'not a Tetragon event: an empty object'
            WHEN kind0 IS NULL
            THEN 'not a Tetragon event: no event key besides ' || {shown("array_to_string(json_keys(raw), ', ')")}
            WHEN NOT regexp_full_match(kind0, '[A-Za-z0-9_]+') THEN 'not a Tetragon event: odd event key ' || {shown("kind0")}
        END AS reject1
    FROM k
),
e2 AS (
    SELECT *,
        CASE WHEN reject1 IS NOT NULL THEN reject1
             WHEN json_type(raw, {body_path}) != 'OBJECT' THEN 'not a Tetragon event: ' || kind || ' is not an object'
        END AS reject0
    FROM e
),
ev AS (
    SELECT *,
        CASE WHEN reject0 IS NULL THEN json_object('__event__', json_extract(raw, {body_path})) END AS ev
    FROM e2
),
x AS (
    SELECT _i, source_offset, kind,
        CASE WHEN reject0 IS NULL THEN json_extract_string(ev, {event_paths}) || json_extract_string(raw, {env_paths})
        END AS s,
        CASE WHEN reject0 IS NULL THEN json_keys(ev, {keys}) END AS ks,
        CASE WHEN reject0 IS NULL
              AND (list_contains({body_kinds}, kind)
                   OR (NOT list_contains({sql_string_list(KNOWN_KINDS)}, kind)
                       AND json_extract_string(ev, '$.__event__.process.exec_id') IS NULL))
             THEN CAST(json_extract(ev, '$.__event__') AS VARCHAR) END AS body,
        reject0
    FROM ev
),{typed(True)}{NO_SHAPE_CTE}{projection()}"""


#: the first pass over a batch: only rows whose shape is plain are kept from it
FAST_SQL = fast_query(sort_labels=False)
#: the same over re-serialized lines, whose rows are kept whatever their shape
REREAD_SQL = fast_query()
CAREFUL_SQL = careful_query()
