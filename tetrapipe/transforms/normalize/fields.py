"""What the normalizer reads from a Tetragon event: the field paths, the argument slots, the kinds.

One list of paths, so that a line is parsed once (see :mod:`tetrapipe.transforms.normalize`
and ``docs/ARCHITECTURE.md``).
"""

from __future__ import annotations

from tetrapipe.schema import OSS_KINDS

# Scalars looked up under the event's own key, as strings (one JSON parse for
# all of them). Name -> JSON path suffix below the event key.
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
    # process_listen: the listening address (samples/real/events-docs.log: "ip":"0.0.0.0","port":9080)
    "listen_ip": "ip",
    "listen_port": "port",
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

#: The list-valued JSON fields, each with a probe of its first element: json_extract_string
#: returns the same text for the array ``[1]`` and the string ``"[1]"``, but only a real
#: array has a ``[0]`` (the empty array is told by its text ``[]``).
ARRAY_FIELDS = ("args", "ancestors", "cap_effective", "privileges_changed", "tags")
PROBES: dict[str, str] = {f"{name}__0": f"{JSONS[name]}[0]" for name in ARRAY_FIELDS}

NAMESPACE_NAMES = [
    "uts",
    "ipc",
    "mnt",
    "pid",
    "pid_for_children",
    "net",
    "time",
    "time_for_children",
    "cgroup",
    "user",
]
#: ``is_host`` of each namespace, read directly (a constant path per namespace)
NS_HOST: dict[str, str] = {f"ns__{n}": f"process.ns.{n}.is_host" for n in NAMESPACE_NAMES}

#: absolute paths of the envelope fields, looked up in the same pass
ENV_PATHS = {"env_node": "$.node_name", "env_time": "$.time", "env_cluster": "$.cluster_name"}
#: every field extracted from a line, in one list so a line is parsed once; the
#: envelope comes last, so a list of the others and a list of it can be concatenated
FIELDS: dict[str, str] = {**SCALARS, **JSONS, **PROBES, **NS_HOST, **{k: "" for k in ENV_PATHS}}

# Fields read from a hook's argument list. Tetragon sends each argument as a
# one-key object named by its type; a policy decides the index, so the first
# few positions are all looked at, in one parse; an argument list longer than
# that (rare) is searched whole with wildcard paths instead.
ARG_SLOTS = 4
ARG_FIELDS = [
    "file_arg.path",
    "path_arg.path",
    "linux_binprm_arg.path",
    "file_arg.permission",
    "path_arg.permission",
    "linux_binprm_arg.permission",
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

#: Enterprise kinds: not in the open-source proto, field order as in the real exports
#: (samples/real/events-docs.log; sock_cookie from tetragon-facts §6): the order a
#: re-serialized line of these kinds is written in.
ENTERPRISE_BODIES: dict[str, list[str]] = {
    "process_connect": [
        "process",
        "parent",
        "source_ip",
        "source_port",
        "destination_ip",
        "destination_port",
        "sock_cookie",
        "protocol",
    ],
    "process_close": [
        "process",
        "parent",
        "source_ip",
        "source_port",
        "destination_ip",
        "destination_port",
        "sock_cookie",
        "stats",
        "protocol",
    ],
    "process_listen": ["process", "parent", "ip", "port", "protocol"],
    "process_sock_stats": ["process", "parent", "socket", "stats"],
    "process_dns": ["process", "parent"],
}
ENTERPRISE_BODIES["process_accept"] = ENTERPRISE_BODIES["process_connect"]  # the same socket fields

#: kinds whose key is looked up explicitly (the open-source API, plus the Isovalent
#: Enterprise kinds seen in real exports); other kinds take the careful query
KNOWN_KINDS = list(OSS_KINDS) + list(ENTERPRISE_BODIES)

#: events without a process (throttle, rate limit): their body is part of the identity
BODY_KINDS = ("process_throttle", "rate_limit_info", "test")

# Open flags that mean the file may be modified (O_WRONLY|O_RDWR|O_CREAT|O_TRUNC|O_APPEND).
OPEN_WRITE_FLAGS = 0x1 | 0x2 | 0x40 | 0x200 | 0x400
# security_file_permission mask bits: MAY_EXEC 1, MAY_WRITE 2, MAY_READ 4, MAY_APPEND 8.

#: syscall tracepoints whose path is a string argument (Tetragon sends the tracepoint
#: fields a policy selects, in the policy's order: the path is the first string_arg)
TP_PATH_SYSCALLS = (
    "open|openat|openat2|creat|unlink|unlinkat|rename|renameat|renameat2|mkdir|mkdirat|rmdir|"
    "chmod|fchmodat|chown|fchownat|lchown|truncate|execve|execveat"
)


# ---------------------------------------------------------------------------
# The canonical order: Tetragon's protojson order, from tetrapipe's .proto
# ---------------------------------------------------------------------------
