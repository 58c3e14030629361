"""Tetragon JSON lines -> rows of the event schema, a whole batch at a time.

Why SQL and not a Python loop: parsing and flattening 2 KB Tetragon events one
by one in Python tops out near 70k events/s on one core, while DuckDB's JSON
functions do the same work vectorized, in C++, on every core (~150k events/s
on two). So the normalizer is one generated DuckDB query over an Arrow batch of
raw lines. Every event kind is handled by the same query: fields are looked up
under the event's own top-level key (``$.process_exec.process.binary``,
``$.process_kprobe.process.binary``, ...), so kinds this module has never
heard of (enterprise ``process_connect``, a future kind) still get their
process, pod and socket columns, and their JSON is kept in ``raw``.

Lines that are not Tetragon events are not dropped: they come back as rejects
with the reason (invalid or truncated JSON, not an object, no event key, bad
time) and where they were read.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from tetrapipe.schema import ENVELOPE_KEYS, EVENT_SCHEMA, OSS_KINDS, REJECT_SCHEMA

# Scalars looked up under the event's own key, as strings (one JSON parse for
# all of them). Name -> JSON path suffix below ``$.<kind>``.
SCALARS: dict[str, str] = {
    "exec_id": "process.exec_id",
    "parent_exec_id": "process.parent_exec_id",
    "parent_exec_id_p": "parent.exec_id",
    "pid": "process.pid",
    "tid": "process.tid",
    "uid": "process.uid",
    "euid": "process.process_credentials.euid",
    "auid": "process.auid",
    "binary": "process.binary",
    "arguments": "process.arguments",
    "cwd": "process.cwd",
    "flags": "process.flags",
    "process_start_time": "process.start_time",
    "in_init_tree": "process.in_init_tree",
    "binary_setuid": "process.binary_properties.setuid",
    "namespace": "process.pod.namespace",
    "pod": "process.pod.name",
    "pod_uid": "process.pod.uid",
    "workload": "process.pod.workload",
    "workload_kind": "process.pod.workload_kind",
    "container_id": "process.pod.container.id",
    "container_name": "process.pod.container.name",
    "image": "process.pod.container.image.name",
    "image_id": "process.pod.container.image.id",
    "container_start_time": "process.pod.container.start_time",
    "container_pid": "process.pod.container.pid",
    "privileged": "process.pod.container.security_context.privileged",
    "parent_binary": "parent.binary",
    "parent_arguments": "parent.arguments",
    "parent_pid": "parent.pid",
    "parent_start_time": "parent.start_time",
    # hooks
    "function_name": "function_name",
    "tp_subsys": "subsys",
    "tp_event": "event",
    "symbol": "symbol",
    "usdt_provider": "provider",
    "usdt_name": "name",
    "hook_path": "path",
    "policy_name": "policy_name",
    "action": "action",
    "return_action": "return_action",
    "message": "message",
    # exit, throttle, rate limit
    "exit_status": "status",
    "exit_signal": "signal",
    "throttle_type": "type",
    "cgroup": "cgroup",
    "dropped_events": "number_of_dropped_process_events",
    # Isovalent Enterprise network events (process_connect, _close, _listen, _accept)
    "source_ip": "source_ip",
    "source_port": "source_port",
    "destination_ip": "destination_ip",
    "destination_port": "destination_port",
    "ent_protocol": "protocol",
}

# Values kept as JSON text (objects and lists): json_extract_string returns them serialized.
JSONS: dict[str, str] = {
    "pod_labels": "process.pod.pod_labels",
    "cap_effective": "process.cap.effective",
    "ns": "process.ns",
    "privileges_changed": "process.binary_properties.privileges_changed",
    "tags": "tags",
    "args": "args",
    "return_value": "return",
    "ancestors": "ancestors",
}

#: absolute paths of the envelope fields, looked up in the same pass
ENV_PATHS = {"env_node": "$.node_name", "env_time": "$.time", "env_cluster": "$.cluster_name"}
#: every field extracted from a line, in one list so a line is parsed once
FIELDS: dict[str, str] = {**SCALARS, **JSONS, **{k: "" for k in ENV_PATHS}}

# Fields read from a hook's argument list. Tetragon sends each argument as a
# one-key object named by its type; a policy decides the index, so the first
# few positions are all looked at.
ARG_SLOTS = 4
ARG_FIELDS = [
    "file_arg.path",
    "path_arg.path",
    "linux_binprm_arg.path",
    "file_arg.permission",
    "path_arg.permission",
    "string_arg",
    "int_arg",
    "uint_arg",
    "sock_arg.family",
    "sock_arg.protocol",
    "sock_arg.saddr",
    "sock_arg.sport",
    "sock_arg.daddr",
    "sock_arg.dport",
    "sock_arg.state",
    "skb_arg.family",
    "skb_arg.protocol",
    "skb_arg.saddr",
    "skb_arg.sport",
    "skb_arg.daddr",
    "skb_arg.dport",
    "sockaddr_arg.family",
    "sockaddr_arg.addr",
    "sockaddr_arg.port",
]

#: kinds whose key is looked up explicitly when it is not the first key of the line
#: (the open-source API, plus the Isovalent Enterprise kinds seen in real exports)
KNOWN_KINDS = list(OSS_KINDS) + [
    "process_connect", "process_close", "process_listen", "process_accept", "process_sock_stats", "process_dns",
]

NAMESPACE_NAMES = [
    "uts", "ipc", "mnt", "pid", "pid_for_children", "net",
    "time", "time_for_children", "cgroup", "user",
]

# Open flags that mean the file may be modified (O_WRONLY|O_RDWR|O_CREAT|O_TRUNC|O_APPEND).
_OPEN_WRITE_FLAGS = 0x1 | 0x2 | 0x40 | 0x200 | 0x400
# security_file_permission mask bits: MAY_EXEC 1, MAY_WRITE 2, MAY_READ 4, MAY_APPEND 8.


def _sql_list(items: list[str]) -> str:
    return "[" + ", ".join("'" + i.replace("'", "''") + "'" for i in items) + "]"


def _idx(names: list[str], name: str) -> int:
    return names.index(name) + 1  # DuckDB lists are 1-based


def _build_queries() -> tuple[str, str]:
    """Build the fast query and the careful query; both end in the same projection.

    Fast: the event kind comes from the line's first key (a cheap prefix regex;
    Tetragon writes the event first), and one ``CASE kind`` with constant paths
    per kind extracts every field in ONE parse of the line. Lines whose first
    key is not a known kind are left to the careful query, and so is a whole
    batch in which some line is not valid JSON (DuckDB then raises).

    Careful: validates each line, finds the kind among all top-level keys,
    explains rejects, and reaches unknown kinds by renaming their key.
    """
    names = list(FIELDS)

    def f(name: str) -> str:
        return f"s[{_idx(names, name)}]"

    def jf(name: str) -> str:
        return f"CAST({f(name)} AS JSON)"

    arg_paths = [f"$[{i}].{fld}" for i in range(ARG_SLOTS) for fld in ARG_FIELDS]

    def arg(i: int, fld: str) -> str:
        return f"a[{arg_paths.index(f'$[{i}].{fld}') + 1}]"

    def first_arg(*fields: str) -> str:
        return "coalesce(" + ", ".join(arg(i, fld) for fld in fields for i in range(ARG_SLOTS)) + ")"

    def int_(expr: str) -> str:
        return f"TRY_CAST({expr} AS BIGINT)"

    def ts(expr: str) -> str:
        return f"TRY_CAST({expr} AS TIMESTAMP)"

    fn = "fn"
    string_path = (
        f"CASE WHEN {fn} SIMILAR TO '.*sys_(openat|openat2|unlinkat|renameat|renameat2|mkdirat|fchmodat|fchownat)' "
        f"THEN {arg(1, 'string_arg')} "
        f"WHEN {fn} SIMILAR TO '.*sys_(open|creat|unlink|rename|truncate|chmod|chown|mkdir|rmdir)' "
        f"THEN {arg(0, 'string_arg')} END"
    )
    file_path = f"coalesce({first_arg('file_arg.path', 'path_arg.path', 'linux_binprm_arg.path')}, {string_path})"
    mask = int_(arg(1, "int_arg"))
    open_flags = int_(f"CASE WHEN {fn} SIMILAR TO '.*sys_(openat|openat2)' THEN {arg(2, 'int_arg')} "
                      f"WHEN {fn} SIMILAR TO '.*sys_open' THEN {arg(1, 'int_arg')} END")
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
            CASE WHEN coalesce({open_flags}, 0) & {_OPEN_WRITE_FLAGS} != 0 THEN 'write' ELSE 'open' END
        ELSE 'access' END"""
    host_ns = (
        f"CASE WHEN {f('ns')} IS NOT NULL THEN [n FOR n IN {_sql_list(NAMESPACE_NAMES)} "
        f"IF coalesce(TRY_CAST(json_extract_string({f('ns')}, '$.' || n || '.is_host') AS BOOLEAN), false)] END"
    )
    function_name = (
        f"coalesce({f('function_name')}, "
        f"CASE WHEN {f('tp_subsys')} IS NOT NULL THEN {f('tp_subsys')} || '/' || coalesce({f('tp_event')}, '') END, "
        f"{f('symbol')}, "
        f"CASE WHEN {f('usdt_provider')} IS NOT NULL THEN {f('usdt_provider')} || ':' || coalesce({f('usdt_name')}, '') END)"
    )
    envelope = _sql_list(list(ENVELOPE_KEYS))
    # generic words ("type", "name", "path", "event") are only read for the kinds that define them
    projection = f"""
y AS (
    SELECT *,
        CASE WHEN {f('args')} IS NOT NULL THEN json_extract_string({f('args')}, {_sql_list(arg_paths)}) END AS a,
        {function_name} AS fn
    FROM x
),
z AS (
    SELECT *, {file_path} AS file_path,
        coalesce(reject0, CASE WHEN {f('env_time')} IS NOT NULL AND TRY_CAST({f('env_time')} AS TIMESTAMP_NS) IS NULL
                               THEN 'not a Tetragon event: bad time ' || {f('env_time')} END) AS reject
    FROM y
)
SELECT
    _i,
    CASE WHEN reject IS NULL THEN md5(concat_ws('|', kind, coalesce({f('env_node')}, ''),
        coalesce(CAST(TRY_CAST({f('env_time')} AS TIMESTAMP_NS) AS VARCHAR), ''), coalesce({f('exec_id')}, ''),
        coalesce(fn, ''), coalesce({f('policy_name')}, ''), coalesce({f('args')}, ''),
        coalesce({f('exit_status')}, ''), coalesce({f('exit_signal')}, ''), coalesce(body, '')))
    END AS event_id,
    {ts(f('env_time'))} AS time,
    kind,
    {f('env_node')} AS node_name,
    {f('env_cluster')} AS cluster_name,
    {f('exec_id')} AS exec_id,
    coalesce({f('parent_exec_id')}, {f('parent_exec_id_p')}) AS parent_exec_id,
    {int_(f('pid'))} AS pid,
    {int_(f('tid'))} AS tid,
    {int_(f('uid'))} AS uid,
    {int_(f('euid'))} AS euid,
    {int_(f('auid'))} AS auid,
    {f('binary')} AS process_binary,
    CASE WHEN {f('binary')} IS NOT NULL THEN parse_filename({f('binary')}) END AS process_name,
    {f('arguments')} AS arguments,
    {f('cwd')} AS cwd,
    {f('flags')} AS flags,
    {ts(f('process_start_time'))} AS process_start_time,
    TRY_CAST({f('in_init_tree')} AS BOOLEAN) AS in_init_tree,
    TRY_CAST({jf('cap_effective')} AS VARCHAR[]) AS cap_effective,
    {host_ns} AS host_namespaces,
    {int_(f('binary_setuid'))} AS binary_setuid,
    TRY_CAST({jf('privileges_changed')} AS VARCHAR[]) AS privileges_changed,
    {f('namespace')} AS namespace,
    {f('pod')} AS pod,
    {f('pod_uid')} AS pod_uid,
    -- sorted by key, as Tetragon's protojson writes maps: the same labels whatever the source
    map_from_entries(list_sort(map_entries(TRY_CAST({jf('pod_labels')} AS MAP(VARCHAR, VARCHAR))))) AS pod_labels,
    {f('workload')} AS workload,
    {f('workload_kind')} AS workload_kind,
    {f('container_id')} AS container_id,
    {f('container_name')} AS container_name,
    {f('image')} AS image,
    {f('image_id')} AS image_id,
    {ts(f('container_start_time'))} AS container_start_time,
    {int_(f('container_pid'))} AS container_pid,
    TRY_CAST({f('privileged')} AS BOOLEAN) AS privileged,
    {f('parent_binary')} AS parent_binary,
    {f('parent_arguments')} AS parent_arguments,
    {int_(f('parent_pid'))} AS parent_pid,
    {ts(f('parent_start_time'))} AS parent_start_time,
    CASE WHEN {f('ancestors')} IS NOT NULL THEN json_extract_string({f('ancestors')}, '$[*].exec_id') END AS ancestor_exec_ids,
    CASE WHEN {f('ancestors')} IS NOT NULL THEN json_extract_string({f('ancestors')}, '$[*].binary') END AS ancestor_binaries,
    fn AS function_name,
    CASE WHEN kind IN ('process_uprobe', 'process_usdt', 'process_loader') THEN {f('hook_path')} END AS hook_path,
    {f('policy_name')} AS policy_name,
    {f('action')} AS action,
    {f('return_action')} AS return_action,
    {f('message')} AS message,
    TRY_CAST({jf('tags')} AS VARCHAR[]) AS tags,
    {f('args')} AS args,
    {f('return_value')} AS return_value,
    file_path,
    {file_access} AS file_access,
    CASE WHEN file_path IS NOT NULL THEN {first_arg('file_arg.permission', 'path_arg.permission')} END AS file_permission,
    {first_arg('sock_arg.family', 'skb_arg.family', 'sockaddr_arg.family')} AS sock_family,
    coalesce({first_arg('sock_arg.protocol', 'skb_arg.protocol')}, {f('ent_protocol')}) AS protocol,
    coalesce({first_arg('sock_arg.saddr', 'skb_arg.saddr')}, {f('source_ip')}) AS saddr,
    {int_(f"coalesce({first_arg('sock_arg.sport', 'skb_arg.sport')}, {f('source_port')})")} AS sport,
    coalesce({first_arg('sock_arg.daddr', 'skb_arg.daddr', 'sockaddr_arg.addr')}, {f('destination_ip')}) AS daddr,
    {int_(f"coalesce({first_arg('sock_arg.dport', 'skb_arg.dport', 'sockaddr_arg.port')}, {f('destination_port')})")} AS dport,
    {first_arg('sock_arg.state')} AS sock_state,
    NULL::VARCHAR AS tls_version,
    NULL::VARCHAR AS tls_cipher,
    NULL::BIGINT AS tls_cipher_code,
    NULL::VARCHAR AS tls_sni,
    CASE WHEN kind = 'process_exit' THEN {int_(f('exit_status'))} END AS exit_status,
    CASE WHEN kind = 'process_exit' THEN {f('exit_signal')} END AS exit_signal,
    CASE WHEN kind = 'process_throttle' THEN {f('throttle_type')} END AS throttle_type,
    CASE WHEN kind = 'process_throttle' THEN {f('cgroup')} END AS cgroup,
    {int_(f('dropped_events'))} AS dropped_events,
    $source AS source,
    source_offset,
    reject
FROM z
"""

    def paths_under(prefix: str) -> str:
        return _sql_list([ENV_PATHS.get(n, f"{prefix}.{p}") for n, p in FIELDS.items()])

    branches = " ".join(f"WHEN '{k}' THEN json_extract_string(raw, {paths_under('$.' + k)})" for k in KNOWN_KINDS)
    # events without a process (throttle, rate limit): their body is part of the identity
    body_kinds = ("process_throttle", "rate_limit_info", "test")
    body_fast = " ".join(
        f"WHEN '{k}' THEN CAST(json_extract(raw, '$.{k}') AS VARCHAR)" for k in body_kinds
    )
    fast = f"""
WITH k AS (
    SELECT _i, source_offset, raw, regexp_extract(raw, '^\\{{"([a-z_]+)": ?\\{{', 1) AS kind FROM batch
),
x AS (
    SELECT _i, source_offset, kind, CASE kind {branches} END AS s,
        CASE kind {body_fast} END AS body, NULL::VARCHAR AS reject0
    FROM k WHERE list_contains({_sql_list(KNOWN_KINDS)}, kind)
),{projection}"""

    fallback = " ".join(
        f"WHEN '{k}' THEN json_object('__event__', json_extract(raw, '$.{k}'))" for k in KNOWN_KINDS
    )
    careful = f"""
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
            WHEN jt != 'OBJECT' THEN 'not a Tetragon event: JSON ' || lower(jt) || ', not an object'
            WHEN kind0 IS NULL THEN 'not a Tetragon event: no event key besides ' || array_to_string(json_keys(raw), ', ')
            WHEN NOT regexp_full_match(kind0, '[A-Za-z0-9_]+') THEN 'not a Tetragon event: odd event key ' || kind0
        END AS reject1
    FROM k
),
ev AS (
    SELECT *,
        CASE WHEN reject1 IS NOT NULL THEN NULL
             WHEN starts_with(raw, '{{"' || kind || '":') THEN '{{"__event__":' || substr(raw, length(kind) + 5)
             ELSE CASE kind {fallback} ELSE NULL END
        END AS ev
    FROM e
),
x AS (
    SELECT _i, source_offset, kind,
        json_extract_string(ev, {paths_under('$.__event__')}) AS s,
        CASE WHEN json_extract_string(ev, '$.__event__.process.exec_id') IS NULL
             THEN CAST(json_extract(ev, '$.__event__') AS VARCHAR) END AS body,
        coalesce(reject1, CASE WHEN json_type(ev, '$.__event__') != 'OBJECT'
                               THEN 'not a Tetragon event: ' || kind || ' is not an object' END) AS reject0
    FROM ev
),{projection}"""
    return fast, careful


FAST_SQL, CAREFUL_SQL = _build_queries()

#: rows per Arrow record batch handed to DuckDB: several batches let it use every core
_SCAN_CHUNK = 4096


@dataclass
class Normalized:
    """One batch after normalization: the events, and the lines that were not events."""

    events: pa.Table
    rejects: pa.Table


class Normalizer:
    """Turns batches of raw Tetragon JSON lines into event rows.

    Holds one in-memory DuckDB connection for its whole life: planning the
    query once and reusing the connection is what keeps small batches (a
    stream processor's micro-batches) cheap.
    """

    def __init__(self, threads: int | None = None) -> None:
        self._con = duckdb.connect(":memory:")
        if threads:
            self._con.execute(f"SET threads = {int(threads)}")
        self._con.execute("SET TimeZone = 'UTC'")

    def close(self) -> None:
        self._con.close()

    def _run(self, sql: str, batch: pa.Table, source: str) -> pa.Table:
        self._con.register("batch", batch)
        try:
            return self._con.sql(sql, params={"source": source}).to_arrow_table()
        finally:
            self._con.unregister("batch")

    def normalize(self, raw: pa.Array, offsets: pa.Array, source: str) -> Normalized:
        """Normalize ``raw`` (strings, one event each) read at ``offsets`` of ``source``.

        ``raw`` must be valid UTF-8 (see :func:`tetrapipe.sources.lines.split_lines`).
        """
        n = len(raw)
        if n == 0:
            return Normalized(EVENT_SCHEMA.empty_table(), REJECT_SCHEMA.empty_table())
        batch = pa.table({"_i": pa.array(np.arange(n, dtype=np.int64)), "source_offset": offsets, "raw": raw})
        batch = pa.Table.from_batches(batch.to_batches(max_chunksize=_SCAN_CHUNK))
        try:
            out = self._run(FAST_SQL, batch, source)
        except duckdb.InvalidInputException:
            out = None  # a line that is not valid JSON: the careful query explains it
        if out is None:
            out = self._run(CAREFUL_SQL, batch, source)
        elif out.num_rows < n:
            done = np.zeros(n, dtype=bool)
            done[out.column("_i").to_numpy()] = True
            rest = batch.filter(pa.array(~done))
            out = pa.concat_tables([out, self._run(CAREFUL_SQL, rest, source)])
        if not _is_sorted(out.column("_i")):
            # DuckDB scans the batch's Arrow chunks on several threads and may hand
            # them back out of order; later transforms (TLS pairing a ServerHello
            # with its ClientHello, ancestry, dedup windows) need the log's order.
            out = out.take(pc.sort_indices(out.column("_i")))
        order = out.column("_i")
        reject = out.column("reject")
        ok = pc.is_null(reject)
        raw_col = batch.column("raw").take(order) if out.num_rows != n or not _is_identity(order) else batch.column("raw")
        all_ok = reject.null_count == out.num_rows
        events = (out if all_ok else out.filter(ok)).drop_columns(["reject", "_i"])
        events = events.append_column("raw", raw_col if all_ok else pc.filter(raw_col, ok)).cast(EVENT_SCHEMA)
        rejects = REJECT_SCHEMA.empty_table()
        if events.num_rows < n:
            bad = pc.invert(ok)
            bad_raw = pc.filter(raw_col, bad).to_pylist()
            rejects = make_rejects(
                source,
                pc.filter(out.column("source_offset"), bad).to_pylist(),
                [_explain(r, line) for r, line in zip(pc.filter(reject, bad).to_pylist(), bad_raw, strict=True)],
                bad_raw,
            )
        return Normalized(events, rejects)


def _is_sorted(order: pa.ChunkedArray) -> bool:
    arr = order.to_numpy()
    return bool(len(arr) < 2 or np.all(arr[1:] > arr[:-1]))


def _is_identity(order: pa.ChunkedArray) -> bool:
    arr = order.to_numpy()
    return bool(len(arr) == 0 or (arr[0] == 0 and np.all(np.diff(arr) == 1)))


def _explain(reason: str, line: str) -> str:
    """Make 'invalid JSON' say what is wrong and where, the way a person fixing it needs."""
    if reason != "invalid JSON":
        return reason
    try:
        orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        if exc.pos >= len(line.rstrip()) - 1 and line.lstrip().startswith("{"):
            return f"truncated JSON: ends after {len(line)} characters (no closing brace)"
        return f"invalid JSON: {exc.msg} at character {exc.pos + 1}"
    return reason


def make_rejects(source: str, offsets: list[int | None], reasons: list[str], raws: list[str]) -> pa.Table:
    """Build a rejects table; the rejection time is now, so the rejects view shows when it happened."""
    import datetime as _dt

    now = _dt.datetime.now(_dt.UTC).replace(tzinfo=None)
    n = len(reasons)
    return pa.table(
        {
            "time": pa.array([now] * n, pa.timestamp("us")),
            "source": pa.array([source] * n, pa.string()),
            "source_offset": pa.array(offsets, pa.int64()),
            "reason": pa.array(reasons, pa.string()),
            "raw": pa.array(raws, pa.string()),
        },
        schema=REJECT_SCHEMA,
    )


def normalize_lines(lines: list[str] | list[bytes], source: str = "<inline>", first_offset: int = 1,
                    normalizer: Normalizer | None = None, offsets: list[int] | None = None) -> Normalized:
    """Normalize a small list of lines (rule tests, gRPC, Kafka micro-batches).

    ``offsets`` gives each line's position (Kafka offsets); by default lines
    are numbered from ``first_offset``. Non-UTF-8 lines become rejects instead
    of reaching DuckDB.
    """
    texts: list[str] = []
    kept: list[int] = []
    bad: list[tuple[int, str, str]] = []
    for i, line in enumerate(lines):
        off = offsets[i] if offsets is not None else first_offset + i
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                bad.append((off, f"not UTF-8: byte at character {exc.start + 1}", line.decode("utf-8", "replace")))
                continue
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        texts.append(line)
        kept.append(off)
    own = normalizer is None
    normalizer = normalizer or Normalizer()
    try:
        result = normalizer.normalize(pa.array(texts, pa.large_string()), pa.array(kept, pa.int64()), source)
    finally:
        if own:
            normalizer.close()
    if bad:
        extra = make_rejects(source, [b[0] for b in bad], [b[1] for b in bad], [b[2] for b in bad])
        result.rejects = pa.concat_tables([result.rejects, extra])
    return result
