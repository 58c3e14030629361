"""The one definition of every table tetrapipe writes.

Each table is a list of :class:`Column` (name, type, one-line meaning). The
Arrow schemas built from them are what the lake's files are written with, the
DuckDB types of the same names what an empty history view is declared with,
and the type names what ``tetrapipe query --schema`` prints, so a column is
added here once and shows up everywhere. The types are kept by name and the
Arrow schemas built on first use: a reader of the lake never imports pyarrow.

Tetragon's JSON export omits zero values (a clean exit has no ``status``,
``uid`` 0 may be absent on old events): a NULL here means "Tetragon did not
say", never "we dropped it". The original line is always kept in ``raw``.

Time: ``time`` is a microsecond TIMESTAMP and ``time_ns`` an INT64 of
nanoseconds since the epoch. Tetragon stamps events in nanoseconds; cut to
microseconds, two events of one process in the same microsecond lose their
order, hence ``time_ns``. Why a second column and not ``time`` as
TIMESTAMP_NS: every lake written so far has ``time`` in microseconds, and the
history views read old and new segments together (``union_by_name``) while
compaction and the Arrow readers ``conform`` old segments to this schema, so
an added column is simply NULL in old segments, whereas a changed type
mixes units across segments; rules, trees, hunts and saved queries compare
``time`` with TIMESTAMP values and take its ``date`` partition, which stay as
they were; and pyarrow cannot hand a nanosecond timestamp to Python without
pandas (``to_pylist`` raises), which transforms and tests here do on event rows. An integer
``time_ns`` sorts and compares exactly, and ``make_timestamp_ns(time_ns)``
makes it a TIMESTAMP_NS in SQL when wanted.

``warnings`` lists what was odd about a line that is still an event (a key
given twice: the last value is used, as by every other JSON reader); see
tetrapipe/transforms/normalize/.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

# The column types by the names Arrow prints them with (what ``query --schema`` shows). They are
# names, not pyarrow types: a reader of the lake (``tetrapipe query``, ``tree``) needs the columns
# and their DuckDB types, and importing pyarrow (numpy with it) was ~80 ms of each of its starts.
STR = "string"
I64 = "int64"
BOOL = "bool"
TS = "timestamp[us]"
STR_LIST = "list<item: string>"
STR_MAP = "map<string, string>"

#: each type as DuckDB names it (what an empty view of a table is declared with)
DUCKDB_TYPES = {
    STR: "VARCHAR",
    I64: "BIGINT",
    BOOL: "BOOLEAN",
    TS: "TIMESTAMP",
    STR_LIST: "VARCHAR[]",
    STR_MAP: "MAP(VARCHAR, VARCHAR)",
}


@cache
def arrow_type(kind: str) -> pa.DataType:
    """The pyarrow type of a column type name (pyarrow is imported here, by the writers that need it)."""
    import pyarrow as pa

    types = {
        STR: pa.string(),
        I64: pa.int64(),
        BOOL: pa.bool_(),
        TS: pa.timestamp("us"),
        STR_LIST: pa.list_(pa.string()),
        STR_MAP: pa.map_(pa.string(), pa.string()),
    }
    return types[kind]


@dataclass(frozen=True)
class Column:
    """One column: ``kind`` is its type's name (see :data:`DUCKDB_TYPES`), ``type`` the pyarrow type."""

    name: str
    kind: str
    doc: str

    @property
    def type(self) -> pa.DataType:
        return arrow_type(self.kind)

    @property
    def duckdb_type(self) -> str:
        return DUCKDB_TYPES[self.kind]


EVENT_COLUMNS: list[Column] = [
    # envelope
    Column("event_id", STR, "deterministic id of the event (same event, same id, whatever the source)"),
    Column("time", TS, "event time, UTC (microseconds; time_ns has Tetragon's nanoseconds)"),
    Column(
        "time_ns",
        I64,
        "event time in nanoseconds since the Unix epoch, as Tetragon sent it: "
        "orders events of the same microsecond (make_timestamp_ns(time_ns) is a TIMESTAMP_NS)",
    ),
    Column(
        "kind", STR, "Tetragon event kind: process_exec, process_exit, process_kprobe, ... (unknown kinds kept by name)"
    ),
    Column("node_name", STR, "Kubernetes node that emitted the event"),
    Column("cluster_name", STR, "cluster name, when Tetragon is configured with one"),
    # the process
    Column("exec_id", STR, "Tetragon process id, unique per node (base64 of node:ktime:pid)"),
    Column("parent_exec_id", STR, "exec_id of the parent process"),
    Column("pid", I64, "process id on the host"),
    Column("tid", I64, "thread id that triggered the event"),
    Column("uid", I64, "real user id"),
    Column("euid", I64, "effective user id (with --enable-process-cred)"),
    Column("auid", I64, "login (audit) user id; 4294967295 when unset"),
    Column("process_binary", STR, "absolute path of the executed binary"),
    Column("process_name", STR, "file name of the binary (bash for /bin/bash)"),
    Column("arguments", STR, "command-line arguments, space separated"),
    Column("cwd", STR, "working directory"),
    Column("flags", STR, "Tetragon process flags (execve, clone, procFS, rootcwd, ...)"),
    Column("process_start_time", TS, "when the process started, UTC"),
    Column("in_init_tree", BOOL, "false for processes injected into a container (kubectl exec, nsenter)"),
    Column("cap_effective", STR_LIST, "effective capabilities"),
    Column("host_namespaces", STR_LIST, "Linux namespaces the process shares with the host (with --enable-process-ns)"),
    Column("binary_setuid", I64, "setuid owner of the binary when it is a setuid binary"),
    Column("privileges_changed", STR_LIST, "how exec raised privileges (setuid, setgid, file capabilities)"),
    # Kubernetes
    Column("namespace", STR, "Kubernetes namespace; NULL for host processes"),
    Column("pod", STR, "pod name"),
    Column("pod_uid", STR, "pod UID"),
    Column("pod_labels", STR_MAP, "pod labels"),
    Column("workload", STR, "owning workload name (Deployment, DaemonSet, ...)"),
    Column("workload_kind", STR, "owning workload kind"),
    Column("container_id", STR, "container id with runtime prefix (containerd://...)"),
    Column("container_name", STR, "container name"),
    Column("image", STR, "container image name"),
    Column("image_id", STR, "container image id (digest)"),
    Column("container_start_time", TS, "when the container started, UTC"),
    Column("container_pid", I64, "pid inside the container's pid namespace (1 = entrypoint)"),
    Column("privileged", BOOL, "container runs privileged"),
    # the parent and the ancestors
    Column("parent_binary", STR, "binary of the parent process"),
    Column("parent_arguments", STR, "arguments of the parent process"),
    Column("parent_pid", I64, "pid of the parent process"),
    Column("parent_start_time", TS, "when the parent process started, UTC"),
    Column(
        "ancestor_exec_ids", STR_LIST, "exec_ids above the parent, nearest first (from the event or the process table)"
    ),
    Column("ancestor_binaries", STR_LIST, "binaries above the parent, nearest first"),
    # hooks: kprobe, tracepoint, uprobe, usdt, lsm, loader
    Column(
        "function_name",
        STR,
        "hooked function: kprobe/LSM function, tracepoint subsys/event, uprobe symbol, usdt provider:name",
    ),
    Column("hook_path", STR, "binary or library path of a uprobe/usdt/loader event"),
    Column("policy_name", STR, "TracingPolicy that produced the event"),
    Column("action", STR, "action taken: KPROBE_ACTION_POST, _SIGKILL, _OVERRIDE, ..."),
    Column("return_action", STR, "action taken on return"),
    Column("message", STR, "policy message"),
    Column("tags", STR_LIST, "policy tags"),
    Column("args", STR, "hook arguments as Tetragon sent them (JSON array)"),
    Column("return_value", STR, "hook return value (JSON)"),
    Column("file_path", STR, "file or path argument of a file hook"),
    Column(
        "file_access", STR, "what the hook did to file_path: read, write, open, truncate, unlink, rename, mmap, exec"
    ),
    Column("file_permission", STR, "mode string of the file argument, e.g. -rw-r--r--"),
    # network
    Column("sock_family", STR, "socket family, e.g. AF_INET"),
    Column("protocol", STR, "transport protocol, e.g. IPPROTO_TCP or TCP"),
    Column("saddr", STR, "source address"),
    Column("sport", I64, "source port"),
    Column("daddr", STR, "destination address"),
    Column("dport", I64, "destination port"),
    Column("sock_state", STR, "TCP state of the socket, e.g. TCP_SYN_SENT"),
    # TLS (filled by the tls transform)
    Column("tls_version", STR, "negotiated TLS version, e.g. TLS 1.3"),
    Column("tls_cipher", STR, "negotiated cipher suite (IANA name)"),
    Column("tls_cipher_code", I64, "negotiated cipher suite (IANA code, e.g. 4865 = 0x1301 TLS_AES_128_GCM_SHA256)"),
    Column("tls_sni", STR, "server name indication sent by the client"),
    # exit, throttle, rate limit
    Column("exit_status", I64, "exit status of a process_exit (NULL = 0, Tetragon omits zero)"),
    Column("exit_signal", STR, "signal that ended the process, e.g. SIGKILL"),
    Column("throttle_type", STR, "process_throttle: THROTTLE_START or THROTTLE_STOP"),
    Column("cgroup", STR, "process_throttle: the throttled cgroup"),
    Column("dropped_events", I64, "rate_limit_info: events dropped by the export rate limit"),
    # provenance
    Column(
        "warnings",
        STR_LIST,
        "what was odd about the line although it is an event, e.g. "
        "'duplicate key process_exec.process.binary: last value used'",
    ),
    Column("source", STR, "where the event was read: file path, stdin, grpc://..., kafka topic/partition"),
    Column("source_offset", I64, "line number in the file, or Kafka offset"),
    Column("raw", STR, "the original Tetragon JSON event"),
]

REJECT_COLUMNS: list[Column] = [
    Column("time", TS, "when tetrapipe rejected the line, UTC"),
    Column("source", STR, "where the line was read"),
    Column("source_offset", I64, "line number in the file, or Kafka offset"),
    Column("reason", STR, "why it is not a Tetragon event"),
    Column("raw", STR, "the line as read (decoded with replacement characters if it was not UTF-8)"),
]

ALERT_COLUMNS: list[Column] = [
    Column("alert_id", STR, "deterministic id: rule id + dedup key + first event"),
    Column("rule_id", STR, "id of the rule that fired"),
    Column("title", STR, "rule title"),
    Column("severity", STR, "info, low, medium, high or critical"),
    Column("mitre", STR_LIST, "MITRE ATT&CK technique ids"),
    Column("tags", STR_LIST, "rule tags"),
    Column("time", TS, "time of the first event of the alert, UTC"),
    Column("last_time", TS, "time of the last event folded into the alert"),
    Column("node_name", STR, "node of the first event"),
    Column("namespace", STR, "Kubernetes namespace"),
    Column("pod", STR, "pod name"),
    Column("container_name", STR, "container name"),
    Column("image", STR, "container image"),
    Column("exec_id", STR, "exec_id of the process that triggered the rule"),
    Column("process_binary", STR, "binary of that process"),
    Column("arguments", STR, "its arguments"),
    Column("parent_binary", STR, "its parent's binary"),
    Column("ancestor_binaries", STR_LIST, "binaries above the parent, nearest first"),
    Column("message", STR, "the rule's output template filled with the event's fields"),
    Column("dedup_key", STR, "values of the rule's dedup fields"),
    Column("count", I64, "how many matching events this alert stands for"),
    Column("event_ids", STR_LIST, "event_id of the events that caused it (first ones)"),
]

TLS_STATS_COLUMNS: list[Column] = [
    Column("window_start", TS, "start of the tumbling window, UTC"),
    Column("window_end", TS, "end of the window"),
    Column("namespace", STR, "Kubernetes namespace"),
    Column("workload", STR, "workload (or pod, or binary for host processes)"),
    Column("daddr", STR, "destination address"),
    Column("dport", I64, "destination port"),
    Column("tls_sni", STR, "server name"),
    Column("tls_version", STR, "negotiated TLS version"),
    Column("tls_cipher", STR, "negotiated cipher suite"),
    Column("connections", I64, "handshakes seen in the window"),
    Column("first_seen", TS, "first handshake in the window"),
    Column("last_seen", TS, "last handshake in the window"),
]


def arrow_schema(columns: list[Column]) -> pa.Schema:
    import pyarrow as pa

    return pa.schema([pa.field(c.name, c.type) for c in columns])


#: table name in the lake -> its columns. Views of the same names are created
#: over the Parquet segments; ``date`` is added as the hive partition column.
TABLES: dict[str, list[Column]] = {
    "events": EVENT_COLUMNS,
    "rejects": REJECT_COLUMNS,
    "alerts": ALERT_COLUMNS,
    "tls_stats": TLS_STATS_COLUMNS,
}


class _Schemas(Mapping[str, "pa.Schema"]):
    """Each table's Arrow schema, built when first asked for: its names (the tables) cost no pyarrow."""

    def __getitem__(self, name: str) -> pa.Schema:
        return _schema(name)

    def __iter__(self) -> Iterator[str]:
        return iter(TABLES)

    def __len__(self) -> int:
        return len(TABLES)


@cache
def _schema(name: str) -> pa.Schema:
    return arrow_schema(TABLES[name])


#: table name -> its Arrow schema (a mapping that imports pyarrow only when a schema is read)
SCHEMAS: Mapping[str, pa.Schema] = _Schemas()
#: the module's names for each table's Arrow schema, served by :func:`__getattr__` (built on first use)
_SCHEMA_NAMES = {
    "EVENT_SCHEMA": "events",
    "REJECT_SCHEMA": "rejects",
    "ALERT_SCHEMA": "alerts",
    "TLS_STATS_SCHEMA": "tls_stats",
}


def __getattr__(name: str) -> object:
    if name in _SCHEMA_NAMES:
        return _schema(_SCHEMA_NAMES[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: the column whose date partitions each table in the lake
PARTITION_TIME: dict[str, str] = {
    "events": "time",
    "rejects": "time",
    "alerts": "time",
    "tls_stats": "window_start",
}

#: the Tetragon event kinds of the open-source API (GetEventsResponse oneof)
OSS_KINDS = (
    "process_exec",
    "process_exit",
    "process_kprobe",
    "process_tracepoint",
    "process_loader",
    "process_uprobe",
    "process_throttle",
    "process_lsm",
    "process_usdt",
    "test",
    "rate_limit_info",
)

#: kinds seen in Isovalent Enterprise exports (tetragon-facts §6): not in the
#: open-source protobuf API, so no open-source agent streams them, but exports carry them
ENTERPRISE_KINDS = (
    "process_connect",
    "process_close",
    "process_listen",
    "process_accept",
    "process_sock_stats",
    "process_dns",
    "process_http",
    "process_tls",
)

#: top-level keys of an exported event that are not the event itself
ENVELOPE_KEYS = ("node_name", "time", "cluster_name", "node_labels", "aggregation_info")


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` in ``schema``'s column order and types; columns it predates are added as NULLs.

    Segments written before a column was added stay readable (DuckDB's views
    use union_by_name; compaction and other Arrow readers use this).
    """
    import pyarrow as pa

    if table.schema == schema:
        return table
    names = set(table.schema.names)
    cols = [table.column(f.name) if f.name in names else pa.nulls(table.num_rows, f.type) for f in schema]
    return pa.table(dict(zip(schema.names, cols, strict=True))).cast(schema)


def empty(name: str) -> pa.Table:
    return SCHEMAS[name].empty_table()
