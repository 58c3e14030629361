"""Generate a realistic Tetragon JSON export log of a busy cluster, for benchmarks.

    python bench/gen_events.py --out /tmp/ev.jsonl [--count 1000000] [--seed 1]

Why a generator and not the real samples: only a few dozen complete real events
exist, and a benchmark needs a million lines whose *shape* matches what a real
cluster exports, because parse and normalize costs depend on nesting, key
count, string lengths and the mix of kinds, and ancestry costs depend on how
processes relate. So the lines follow Tetragon's protojson encoding exactly as
the real samples (/work/shared/tetragon-samples) and the field facts show it:
snake_case proto names in field-number order, zero values omitted, 64-bit
integers as strings, wrappers present even at 0, map keys sorted, RFC 3339 UTC
times with 0/3/6/9 fraction digits, container start times in whole seconds,
``exec_id = base64("<node>:<ktime_ns>:<pid>")``, ``docker`` = the first 31
characters of the container id. No field is used that the samples or the
field facts do not show.

What the stream models: 8 nodes, ~200 pods (Deployments, StatefulSets,
DaemonSets, Job pods and two bare debug pods) in 9 namespaces, each container's
entrypoint parented by its containerd shim. Short-lived processes are spawned
by the entrypoint, often through ``/bin/sh -c``, or by kubelet exec probes
(``maybe_exec_probe``); a few interactive shells arrive through ``kubectl exec``.
Every process has its exec before any of its other events, children start
after and exit before their parent, and ``parent`` carries the parent's live
``refcnt``. Pods that start during the stream get their entrypoint exec in
the stream; the others had theirs before it starts (hours before, and those
execs are written first), so shells show up both soon after and long after
their container started. Kinds: ~35% process_exec, ~35% process_exit, ~25%
process_kprobe (security_file_permission with return and return_action,
tcp_connect / tcp_sendmsg with sock_arg, __x64_sys_write with bytes_arg and
size_arg, and ~0.1% TLS ClientHello writes / ServerHello reads of node
workers, from the real flights in samples/scenario/handshakes.json), plus a few
process_tracepoint, process_lsm, process_throttle and rate_limit_info. The
output is a pure function of (count, seed).
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import heapq
import itertools
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tetrapipe.proto.tetragon_pb2 import CapabilitiesType

try:  # orjson is ~5x faster, and the generator is meant to write 1M lines in seconds
    import orjson

    def _dumps(obj: Any) -> bytes:
        return orjson.dumps(obj)
except ImportError:  # pragma: no cover - the stdlib fallback gives the same bytes, slower
    import json

    def _dumps(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


T0 = dt.datetime(2026, 3, 10, 9, 0, 0, tzinfo=dt.UTC)
T0_NS = int(T0.timestamp()) * 1_000_000_000
EVENTS_PER_SECOND = 16_000  # 8 nodes at 2k events/s each: a busy but ordinary cluster
AUID_UNSET = 4294967295
POST = "KPROBE_ACTION_POST"

# Default container capability set as runc grants it (note DAC_OVERRIDE: Tetragon's enum has no CAP_ prefix).
CAPS_DEFAULT = [
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
CAPS_ALL = list(CapabilitiesType.keys())  # every capability, in the API's enum order
CAP_DEFAULT = {"permitted": CAPS_DEFAULT, "effective": CAPS_DEFAULT}
CAP_PRIVILEGED = {"permitted": CAPS_ALL, "effective": CAPS_ALL}

# --- time formatting -------------------------------------------------------------------------------------------

_SECOND_CACHE: dict[int, str] = {}


def _second_text(sec: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS`` for a Unix second; cached because ~16k events share each second."""
    text = _SECOND_CACHE.get(sec)
    if text is None:
        if len(_SECOND_CACHE) > 100_000:
            _SECOND_CACHE.clear()
        text = dt.datetime.fromtimestamp(sec, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _SECOND_CACHE[sec] = text
    return text


def ts(ns: int) -> str:
    """A Timestamp the way protojson prints it: UTC, ``Z``, and 0, 3, 6 or 9 fraction digits."""
    sec, frac = divmod(ns, 1_000_000_000)
    if frac == 0:
        return _second_text(sec) + "Z"
    if frac % 1_000_000 == 0:
        return f"{_second_text(sec)}.{frac // 1_000_000:03d}Z"
    if frac % 1000 == 0:
        return f"{_second_text(sec)}.{frac // 1000:06d}Z"
    return f"{_second_text(sec)}.{frac:09d}Z"


def exec_id(node: str, ktime: int, pid: int) -> str:
    """Tetragon's process id: base64 (standard alphabet, padded) of ``node:ktime:pid``."""
    return base64.b64encode(f"{node}:{ktime}:{pid}".encode()).decode()


# --- the cluster ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cmd:
    """A program a container (or a shell in it) runs: what it is, how long it lives, what hooks it hits.

    ``acts`` names activities (see ``Generator._activity``); ``children`` are run one after the other, so
    a ``/bin/sh -c 'a && b'`` is a Cmd with two children. ``lifetime_ms`` bounds the time the process lives
    beyond its children.
    """

    binary: str
    args: str = ""
    acts: tuple[str, ...] = ()
    children: tuple[Cmd, ...] = ()
    lifetime_ms: tuple[float, float] = (1.0, 30.0)
    cwd: str | None = None
    port: int = 8080  # the local port a ``connect_local`` activity talks to


def sh(script: str, *children: Cmd, acts: tuple[str, ...] = ()) -> Cmd:
    """``/bin/sh -c SCRIPT`` running CHILDREN, as entrypoint scripts and cron-like loops do."""
    return Cmd("/bin/sh", f"-c {script}" if " " not in script else f'-c "{script}"', acts, children, (0.5, 5.0))


CURL_API = Cmd("/usr/bin/curl", "-sf http://localhost:8080/healthz", ("connect_local",), lifetime_ms=(3, 40))
CAT_PASSWD = Cmd("/usr/bin/cat", "/etc/passwd", ("read_passwd", "lsm_passwd", "stdout"), lifetime_ms=(0.3, 3))
CAT_SHADOW = Cmd("/usr/bin/cat", "/etc/shadow", ("read_shadow", "lsm_shadow"), lifetime_ms=(0.3, 3))
ID = Cmd("/usr/bin/id", "-u", ("read_passwd", "stdout"), lifetime_ms=(0.2, 2))
DATE = Cmd("/bin/date", "+%s", ("read_localtime", "stdout"), lifetime_ms=(0.2, 2))
HOSTNAME = Cmd("/bin/hostname", "", ("stdout",), lifetime_ms=(0.2, 1))
LS = Cmd("/bin/ls", "-la /tmp", ("read_passwd", "stdout"), lifetime_ms=(0.3, 4))
PS = Cmd("/bin/ps", "aux", ("read_passwd", "stdout", "tracepoint"), lifetime_ms=(2, 20))
GREP = Cmd("/bin/grep", "-c ERROR /var/log/app/app.log", ("stdout",), lifetime_ms=(1, 30))
WGET_EXT = Cmd("/usr/bin/wget", "-qO- https://api.github.com/meta", ("resolv", "connect_ext"), lifetime_ms=(80, 600))
CURL_EXT = Cmd(
    "/usr/bin/curl",
    "-s https://ebpf.io/applications/#tetragon",
    ("resolv", "connect_ext", "stdout"),
    lifetime_ms=(60, 700),
)
NSLOOKUP = Cmd("/usr/bin/nslookup", "kubernetes.default.svc.cluster.local", ("resolv", "stdout"), lifetime_ms=(2, 40))
PY_TASK = Cmd(
    "/usr/local/bin/python3",
    "/app/manage.py clearsessions",
    ("resolv", "connect_db", "stdout", "tracepoint"),
    lifetime_ms=(200, 2500),
)
PY_MIGRATE = Cmd(
    "/usr/local/bin/python3",
    "-m app.jobs.reindex --batch 500",
    ("resolv", "connect_db", "connect_db", "stdout"),
    lifetime_ms=(300, 4000),
)
NODE_WORKER = Cmd(
    "/usr/local/bin/node",
    "/app/dist/workers/thumbnail.js",
    ("connect_db", "tls", "stdout", "tracepoint"),
    lifetime_ms=(100, 1500),
)
JAVA_JCMD = Cmd("/opt/java/openjdk/bin/jcmd", "1 GC.heap_info", ("stdout",), lifetime_ms=(150, 900))
GIT_FETCH = Cmd(
    "/usr/bin/git",
    "fetch --depth 1 origin main",
    ("resolv", "connect_ext"),
    (
        Cmd(
            "/usr/lib/git-core/git-remote-https",
            "origin https://gitlab.example.com/shop/checkout.git",
            ("resolv", "connect_ext", "connect_ext"),
            lifetime_ms=(100, 900),
        ),
    ),
    (10, 80),
)
MAKE_TEST = Cmd(
    "/usr/bin/make",
    "test",
    ("stdout",),
    (
        Cmd(
            "/usr/local/go/bin/go",
            "test ./...",
            ("stdout",),
            (
                Cmd(
                    "/usr/local/go/pkg/tool/linux_amd64/compile",
                    "-o /tmp/go-build/b001/_pkg_.a -p main",
                    lifetime_ms=(50, 900),
                ),
                Cmd("/usr/local/go/pkg/tool/linux_amd64/link", "-o /tmp/go-build/b001/app.test", lifetime_ms=(80, 700)),
                Cmd(
                    "/tmp/go-build/b001/app.test",
                    "-test.v=true -test.timeout=10m",
                    ("connect_local", "stdout"),
                    lifetime_ms=(100, 2000),
                ),
            ),
            (20, 200),
        ),
    ),
    (5, 50),
)
PG_ISREADY = Cmd(
    "/usr/lib/postgresql/16/bin/pg_isready",
    "-U postgres -h 127.0.0.1 -p 5432",
    ("connect_local",),
    lifetime_ms=(2, 15),
    port=5432,
)
REDIS_PING = Cmd("/usr/local/bin/redis-cli", "ping", ("connect_local", "stdout"), lifetime_ms=(1, 8), port=6379)
NGINX_TEST = Cmd("/usr/bin/nginx", "-t -c /etc/nginx/nginx.conf", ("read_nginx", "stdout"), lifetime_ms=(5, 40))
PGDUMP = Cmd(
    "/usr/lib/postgresql/16/bin/pg_dump",
    "-Fc -f /backup/shop.dump shop",
    ("connect_local", "read_passwd"),
    lifetime_ms=(400, 5000),
    port=5432,
)
ES_CURL = Cmd(
    "/usr/bin/curl", "-s localhost:9200/_cluster/health", ("connect_local", "stdout"), lifetime_ms=(3, 30), port=9200
)

# Interactive shells arrive via `kubectl exec`: parented by the shim, not the entrypoint, and rare.
INTERACTIVE = Cmd(
    "/bin/bash",
    "",
    (),
    (
        ID,
        Cmd("/bin/ls", "-la /", ("stdout",), lifetime_ms=(0.5, 3)),
        CAT_PASSWD,
        Cmd("/usr/bin/env", "", ("stdout",), lifetime_ms=(0.3, 2)),
        PS,
        CURL_EXT,
        Cmd("/usr/bin/vi", "/etc/passwd", ("read_passwd", "write_passwd"), lifetime_ms=(2000, 9000)),
    ),
    (3000, 20000),
    "/",
)


@dataclass(frozen=True, slots=True)
class App:
    """One workload: where it runs, what image, what its entrypoint is, what it spawns and how often."""

    namespace: str
    workload: str
    kind: str
    image: str
    container: str
    entry: str
    entry_args: str
    cwd: str
    uid: int
    replicas: int  # for a DaemonSet: 0 = one per node
    spawns: tuple[tuple[Cmd, float], ...]  # (what, weight) of processes the container runs
    rate: float  # relative rate at which the workload's containers spawn processes
    probe: Cmd | None = None
    dests: tuple[tuple[str, int], ...] = ()  # where its connections go (address, port)
    privileged: bool = False
    label_extra: tuple[tuple[str, str], ...] = ()


SVC = {
    "checkout": ("10.96.31.12", 8080),
    "cart": ("10.96.44.7", 8080),
    "payments": ("10.96.18.201", 8443),
    "search": ("10.96.90.3", 8000),
    "postgres": ("10.96.0.54", 5432),
    "redis": ("10.96.7.70", 6379),
    "kafka": ("10.96.120.9", 9092),
    "elasticsearch": ("10.96.60.200", 9200),
    "keycloak": ("10.96.5.18", 8443),
    "coreapi": ("10.96.77.41", 9080),
    "prometheus": ("10.96.200.10", 9090),
    "dns": ("10.96.0.10", 53),
}
EXTERNAL = (
    ("142.250.74.110", 443),
    ("104.198.14.52", 443),
    ("151.101.1.69", 443),
    ("52.216.8.11", 443),
    ("140.82.121.4", 443),
    ("3.5.140.2", 443),
)

APPS: tuple[App, ...] = (
    App(
        "shop",
        "frontend",
        "Deployment",
        "docker.io/library/node:20.12-alpine",
        "frontend",
        "/usr/local/bin/node",
        "/app/server.js",
        "/app",
        1000,
        26,
        ((NODE_WORKER, 3), (sh("node /app/dist/cron/sitemap.js", NODE_WORKER), 1), (DATE, 1)),
        1.0,
        dests=(SVC["checkout"], SVC["cart"], SVC["search"], SVC["keycloak"]),
        label_extra=(("app.kubernetes.io/part-of", "shop"), ("tier", "web")),
    ),
    App(
        "shop",
        "checkout",
        "Deployment",
        "ghcr.io/acme-shop/checkout:v2.14.1",
        "checkout",
        "/app/checkout",
        "--config /etc/checkout/config.yaml",
        "/app",
        65532,
        18,
        ((sh("/app/bin/reconcile.sh", CURL_API, DATE), 2), (CURL_API, 1)),
        0.6,
        dests=(SVC["payments"], SVC["postgres"], SVC["kafka"], SVC["redis"]),
        label_extra=(("app.kubernetes.io/part-of", "shop"),),
    ),
    App(
        "shop",
        "cart",
        "Deployment",
        "ghcr.io/acme-shop/cart:v1.9.0",
        "cart",
        "/usr/local/bin/python3",
        "-m gunicorn cart.wsgi -b 0.0.0.0:8080 -w 4",
        "/srv",
        1000,
        18,
        ((PY_TASK, 2), (sh("python3 /srv/tasks/expire_carts.py", PY_TASK), 2)),
        0.8,
        dests=(SVC["redis"], SVC["postgres"]),
        label_extra=(("app.kubernetes.io/part-of", "shop"),),
    ),
    App(
        "shop",
        "payments",
        "Deployment",
        "ghcr.io/acme-shop/payments:v3.2.7",
        "payments",
        "/opt/java/openjdk/bin/java",
        "-XX:MaxRAMPercentage=75 -jar /app/payments.jar",
        "/app",
        1001,
        10,
        ((JAVA_JCMD, 1), (sh("/app/bin/rotate-keys.sh", CURL_EXT, DATE), 1)),
        0.3,
        dests=(SVC["postgres"], SVC["kafka"], EXTERNAL[3], EXTERNAL[0]),
        label_extra=(("app.kubernetes.io/part-of", "shop"), ("pci", "true")),
    ),
    App(
        "shop",
        "search",
        "Deployment",
        "ghcr.io/acme-shop/search:v0.31.2",
        "search",
        "/usr/local/bin/python3",
        "-m uvicorn search.main:app --host 0.0.0.0 --port 8000",
        "/srv",
        1000,
        14,
        ((PY_MIGRATE, 1), (sh("python3 -m search.warmup", PY_TASK, ES_CURL), 1)),
        0.5,
        dests=(SVC["elasticsearch"], SVC["redis"]),
    ),
    App(
        "data",
        "postgres",
        "StatefulSet",
        "docker.io/library/postgres:16.3",
        "postgres",
        "/usr/lib/postgresql/16/bin/postgres",
        "-c config_file=/etc/postgresql/postgresql.conf",
        "/var/lib/postgresql",
        999,
        3,
        ((PGDUMP, 1), (sh("/usr/local/bin/backup.sh", PGDUMP, DATE), 1)),
        0.3,
        probe=PG_ISREADY,
        dests=(SVC["dns"],),
    ),
    App(
        "data",
        "redis",
        "StatefulSet",
        "docker.io/library/redis:7.2.5",
        "redis",
        "/usr/local/bin/redis-server",
        "*:6379",
        "/data",
        999,
        8,
        ((REDIS_PING, 1),),
        0.1,
        probe=REDIS_PING,
        dests=(SVC["dns"],),
    ),
    App(
        "data",
        "kafka",
        "StatefulSet",
        "docker.io/bitnami/kafka:3.7.0",
        "kafka",
        "/opt/bitnami/java/bin/java",
        "-Xmx1G -Xms1G -server kafka.Kafka /opt/bitnami/kafka/config/server.properties",
        "/",
        1001,
        5,
        (
            (
                sh(
                    "/opt/bitnami/scripts/kafka/healthcheck.sh",
                    Cmd("/bin/grep", "-q listeners /opt/bitnami/kafka/config/server.properties", lifetime_ms=(0.5, 3)),
                ),
                1,
            ),
        ),
        0.2,
        dests=(SVC["kafka"],),
    ),
    App(
        "data",
        "elasticsearch",
        "StatefulSet",
        "docker.elastic.co/elasticsearch/elasticsearch:8.13.4",
        "elasticsearch",
        "/usr/share/elasticsearch/jdk/bin/java",
        "-Xms2g -Xmx2g -XX:+UseG1GC org.elasticsearch.bootstrap.Elasticsearch",
        "/usr/share/elasticsearch",
        1000,
        3,
        ((ES_CURL, 1),),
        0.2,
        probe=ES_CURL,
        dests=(SVC["elasticsearch"],),
    ),
    App(
        "tenant-jobs",
        "crawler",
        "Deployment",
        "quay.io/isovalent/jobs-app-crawler:latest",
        "crawler",
        "/usr/local/bin/node",
        "crawler.js",
        "/usr/src/app",
        0,
        20,
        ((CURL_EXT, 3), (WGET_EXT, 2), (sh("node crawler-batch.js", NODE_WORKER, CURL_EXT), 2), (NSLOOKUP, 1)),
        1.2,
        dests=(SVC["elasticsearch"], SVC["coreapi"], EXTERNAL[0], EXTERNAL[1], EXTERNAL[2], EXTERNAL[5]),
    ),
    App(
        "tenant-jobs",
        "jobposting",
        "Deployment",
        "quay.io/isovalent/jobs-app-jobposting:latest",
        "jobposting",
        "/usr/local/bin/python",
        "app.py",
        "/app",
        0,
        14,
        ((PY_TASK, 2), (sh("python3 tasks/index.py", PY_TASK, CURL_API), 1), (CAT_PASSWD, 1.0)),
        0.8,
        dests=(SVC["coreapi"], SVC["elasticsearch"]),
    ),
    App(
        "tenant-jobs",
        "coreapi",
        "Deployment",
        "quay.io/isovalent/jobs-app-coreapi:latest",
        "coreapi",
        "/usr/local/bin/python",
        "-m coreapi.server --port 9080",
        "/app",
        0,
        12,
        ((PY_TASK, 1), (sh("/app/scripts/refresh-cache.sh", CURL_API, REDIS_PING), 1)),
        0.6,
        dests=(SVC["postgres"], SVC["redis"], SVC["kafka"]),
    ),
    App(
        "tenant-jobs",
        "elasticsearch",
        "Deployment",
        "quay.io/isovalent/jobs-app-elasticsearch:latest",
        "elasticsearch",
        "/usr/share/elasticsearch/jdk/bin/java",
        "-Xms1g -Xmx1g org.elasticsearch.bootstrap.Elasticsearch",
        "/usr/share/elasticsearch/",
        0,
        6,
        ((sh("/usr/share/elasticsearch/bin/lifecycle.sh", ES_CURL, CAT_PASSWD), 1), (ES_CURL, 1)),
        0.4,
        dests=(SVC["elasticsearch"],),
    ),
    App(
        "ci",
        "gitlab-runner",
        "Deployment",
        "registry.gitlab.com/gitlab-org/gitlab-runner:v16.11.0",
        "gitlab-runner",
        "/usr/bin/gitlab-runner",
        "run --user=gitlab-runner --working-directory=/home/gitlab-runner",
        "/home/gitlab-runner",
        999,
        8,
        ((sh("git fetch && make test", GIT_FETCH, MAKE_TEST), 3), (GIT_FETCH, 1), (HOSTNAME, 1)),
        1.0,
        dests=(("172.65.251.78", 443), EXTERNAL[4]),
    ),
    App(
        "ci",
        "nightly-build",
        "Job",
        "docker.io/library/golang:1.22.3",
        "build",
        "/bin/sh",
        "-c make -C /src test",
        "/src",
        0,
        4,
        ((MAKE_TEST, 3), (GIT_FETCH, 1), (LS, 1)),
        2.0,
        dests=(EXTERNAL[4],),
        label_extra=(),
    ),
    App(
        "monitoring",
        "node-exporter",
        "DaemonSet",
        "quay.io/prometheus/node-exporter:v1.8.1",
        "node-exporter",
        "/bin/node_exporter",
        "--path.rootfs=/host --web.listen-address=0.0.0.0:9100",
        "/",
        65534,
        0,
        ((HOSTNAME, 1),),
        0.05,
        dests=(SVC["prometheus"],),
        privileged=True,
    ),
    App(
        "monitoring",
        "prometheus",
        "StatefulSet",
        "quay.io/prometheus/prometheus:v2.52.0",
        "prometheus",
        "/bin/prometheus",
        "--config.file=/etc/prometheus/prometheus.yml --storage.tsdb.path=/prometheus",
        "/prometheus",
        65534,
        2,
        ((sh("wget -qO- localhost:9090/-/ready", WGET_EXT), 1),),
        0.2,
        dests=(SVC["checkout"], SVC["cart"], SVC["payments"], SVC["search"], SVC["coreapi"]),
    ),
    App(
        "logging",
        "fluent-bit",
        "DaemonSet",
        "cr.fluentbit.io/fluent/fluent-bit:3.0.4",
        "fluent-bit",
        "/fluent-bit/bin/fluent-bit",
        "-c /fluent-bit/etc/conf/fluent-bit.conf",
        "/",
        0,
        0,
        ((HOSTNAME, 1),),
        0.05,
        dests=(SVC["elasticsearch"],),
    ),
    App(
        "ingress-nginx",
        "ingress-nginx-controller",
        "Deployment",
        "registry.k8s.io/ingress-nginx/controller:v1.10.1",
        "controller",
        "/nginx-ingress-controller",
        "--publish-service=ingress-nginx/ingress-nginx-controller "
        "--election-id=ingress-nginx-leader --controller-class=k8s.io/ingress-nginx",
        "/etc/nginx",
        101,
        4,
        ((NGINX_TEST, 2), (sh("/etc/nginx/reload.sh", NGINX_TEST), 1)),
        0.4,
        dests=(SVC["checkout"], SVC["cart"], SVC["search"], SVC["keycloak"]),
    ),
    App(
        "auth",
        "keycloak",
        "Deployment",
        "quay.io/keycloak/keycloak:24.0.4",
        "keycloak",
        "/usr/bin/java",
        "-Dkc.home.dir=/opt/keycloak -jar /opt/keycloak/lib/quarkus-run.jar start --optimized",
        "/opt/keycloak",
        1000,
        4,
        ((JAVA_JCMD, 1), (sh("/opt/keycloak/bin/kc.sh show-config", JAVA_JCMD), 1)),
        0.2,
        dests=(SVC["postgres"],),
    ),
    App(
        "default",
        "debug",
        "Pod",
        "docker.io/library/ubuntu:22.04",
        "debug",
        "/bin/sleep",
        "infinity",
        "/",
        0,
        2,
        ((sh("while true; do date; sleep 5; done", DATE), 1),),
        0.02,
        privileged=True,
    ),
)
BACKGROUND_CHANCE = 0.05  # share of free slots filled by a long-running entrypoint's own hooks
INTERACTIVE_RATE = 0.001  # share of new process trees (in root containers) that are a `kubectl exec` shell

FILES_PASSWD = ("/etc/passwd", "-rw-r--r--")
ETC_READS = (
    ("/etc/hosts", "-rw-r--r--"),
    ("/etc/resolv.conf", "-rw-r--r--"),
    ("/etc/nsswitch.conf", "-rw-r--r--"),
    ("/etc/ssl/certs/ca-certificates.crt", "-rw-r--r--"),
    ("/etc/host.conf", "-rw-r--r--"),
    ("/etc/gai.conf", "-rw-r--r--"),
    ("/etc/localtime", "-rw-r--r--"),
)
STDOUT_TEXTS = (
    b"ok\n",
    b"0\n",
    b"PONG\n",
    b"1773133200\n",
    b"uid=0(root) gid=0(root) groups=0(root)\n",
    b'{"level":"info","ts":"2026-03-10T09:00:03Z","msg":"reconciled","orders":12,"duration_ms":41}\n',
    b'{"status":"green","number_of_nodes":3,"active_shards":142,"relocating_shards":0}\n',
    b"root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
    b"bin:x:2:2:bin:/bin:/usr/sbin/nologin\nsys:x:3:3:sys:/dev:/usr/sbin/nologin\n"
    b"nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\napp:x:1000:1000::/home/app:/bin/sh\n",
    b"total 24\ndrwxrwxrwt 1 root root 4096 Mar 10 09:00 .\ndrwxr-xr-x 1 root root 4096 Mar  9 21:14 ..\n"
    b"-rw-r--r-- 1 app  app   812 Mar 10 08:59 cache.db-journal\n",
    b"=== RUN   TestCheckoutTotals\n--- PASS: TestCheckoutTotals (0.01s)\n=== RUN   TestTaxRounding\n"
    b"--- PASS: TestTaxRounding (0.00s)\nPASS\nok  \tgitlab.example.com/shop/checkout\t0.412s\n",
    b"[2026-03-10 09:00:04,112] INFO processed batch size=500 took=183ms lag=0 (app.jobs.reindex)\n",
    b"Server:\t\t10.96.0.10\nAddress:\t10.96.0.10#53\n\nName:\tkubernetes.default.svc.cluster.local\n"
    b"Address: 10.96.0.1\n",
    b"nginx: the configuration file /etc/nginx/nginx.conf syntax is ok\n"
    b"nginx: configuration file /etc/nginx/nginx.conf test is successful\n",
    b"Heap\n garbage-first heap   total 524288K, used 301114K [0x00000000e0000000, 0x0000000100000000)\n"
    b"  region size 1024K, 112 young (114688K), 9 survivors (9216K)\n Metaspace  used 98211K, committed 99072K\n",
)
STDOUT_ARGS = tuple(
    ({"int_arg": 1}, {"bytes_arg": base64.b64encode(t).decode()}, {"size_arg": str(len(t))}) for t in STDOUT_TEXTS
)
# How often an activity a program is capable of actually reaches a hook in one run: output is often
# redirected (sys-write matches fd 1 only), names are cached, HTTP clients reuse connections.
ACT_CHANCE = {
    "stdout": 0.3,
    "resolv": 0.3,
    "connect_ext": 0.4,
    "connect_db": 0.3,
    "connect_local": 0.3,
    "read_passwd": 0.5,
    "read_localtime": 0.3,
    "read_nginx": 0.5,
    "tracepoint": 0.25,
    "tls": 0.03,
}
SYSCALL_IDS = ("0", "1", "3", "9", "202", "257", "262", "281", "232", "59", "56", "61")  # read, write, close, ...

# TLS handshakes as tracing-policies/tls-handshake.yaml captures them (first write / first read of a socket by
# node): the real flights recorded in samples/scenario/handshakes.json, so the TLS transform parses genuine
# ClientHello/ServerHello bytes. One of the four negotiates a weak suite; it is picked rarely.
_HANDSHAKES_FILE = Path(__file__).resolve().parent.parent / "samples" / "scenario" / "handshakes.json"
TLS_WEIGHTS = {False: 10.0, True: 1.0}  # weak: False/True


def _load_handshakes() -> tuple[tuple[tuple[str, str, int, int], ...], tuple[float, ...]]:
    """(sni, client_hello_b64, server flight length, weak?) per recorded connection, and pick weights."""
    if not _HANDSHAKES_FILE.exists():  # pragma: no cover - a checkout without samples: no TLS events
        return (), ()
    import json

    conns = json.loads(_HANDSHAKES_FILE.read_text())["connections"]
    flights = tuple(
        (
            c["client_hello_b64"],
            c["server_hello_b64"],
            len(base64.b64decode(c["server_hello_b64"])),
            bool(c.get("weak")),
        )
        for c in conns
    )
    return flights, tuple(TLS_WEIGHTS[f[3]] for f in flights)


HANDSHAKES, HANDSHAKE_WEIGHTS = _load_handshakes()


@dataclass(slots=True)
class Node:
    """A Kubernetes node: its name, boot time (for ktime), pid counter and the host processes pods hang off."""

    name: str
    index: int
    boot_ns: int
    next_pid: int
    containerd: Proc | None = None


@dataclass(slots=True)
class Pod:
    """One pod with one container, and the process objects every event of it shares."""

    app: App
    node: Node
    name: str
    ip: str
    labels: dict[str, str]
    container_id: str
    image: dict[str, str]
    start_ns: int  # container start (whole seconds)
    init_ns: int  # its entrypoint's exec, a fraction of a second later
    cpid: int = 0  # last pid handed out in the container's pid namespace
    shim: Proc | None = None
    init: Proc | None = None


@dataclass(slots=True)
class Proc:
    """A process: its three protojson renderings (exec: with caps; live: with refcnt; exit: refcnt 0 omitted)."""

    node: Node
    pod: Pod | None
    exec_obj: dict[str, Any]
    live: dict[str, Any]
    exit_obj: dict[str, Any]
    parent: Proc | None
    cmd: Cmd | None
    children: int = 0
    static: bool = False  # host ancestors outside the stream: their refcnt does not move

    def as_live(self) -> dict[str, Any]:
        """The object a later event carries for this process: ``refcnt`` = itself + live children."""
        if self.static:
            return self.live
        obj = self.live.copy()
        obj["refcnt"] = 1 + self.children
        return obj


# heap actions
EXEC, EXIT, KPROBE, LSM, TRACEPOINT, THROTTLE_STOP, INIT_EXEC = range(7)


class Generator:
    """Builds the cluster once, then yields events as dicts in time order."""

    def __init__(self, count: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.count = count
        self.step_ns = 1_000_000_000 // EVENTS_PER_SECOND
        self.duration_ns = count * self.step_ns
        self.heap: list[tuple[int, int, int, Any]] = []
        self.seq = itertools.count()
        self.nodes = [self._node(i) for i in range(8)]
        self.pods: list[Pod] = []
        self.active: list[Pod] = []
        self.active_cum: list[float] = []  # cumulative spawn rates of ``active``, for an O(log n) weighted pick
        self.cookie = 0xFFFF8881_0A000000
        self.image_digests: dict[str, str] = {}
        self._build_pods()

    # --- construction -------------------------------------------------------------------------------------------

    def _int(self, lo: int, hi: int) -> int:
        """Uniform integer in [lo, hi]; ~3x cheaper than ``randint``, which matters at millions of draws."""
        return lo + int(self.rng.random() * (hi - lo + 1))

    def _hex(self, nbytes: int) -> str:
        return self.rng.getrandbits(nbytes * 8).to_bytes(nbytes, "big").hex()

    def _suffix(self, n: int = 5) -> str:
        return "".join(self.rng.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(n))

    def _node(self, i: int) -> Node:
        name = f"gke-prod-eu1-pool-{'ab'[i // 4]}-{self._hex(4)}-{self._suffix(4)}"
        uptime_ns = self.rng.randint(2 * 86400, 60 * 86400) * 1_000_000_000
        node = Node(name, i, T0_NS - uptime_ns, self.rng.randint(100_000, 400_000))
        systemd_id = exec_id(name, 1_000_000_000, 1)  # pid 1 started about 1 s after boot
        containerd_start = node.boot_ns + 9_000_000_000
        node.containerd = self._host_proc(
            node,
            "/usr/bin/containerd",
            "",
            containerd_start,
            812,
            systemd_id,
            refcnt=len(APPS) + 10,
            flags="procFS auid rootcwd",
            static=True,
        )
        return node

    def _host_proc(
        self,
        node: Node,
        binary: str,
        args: str,
        start_ns: int,
        pid: int,
        parent_id: str,
        *,
        refcnt: int = 1,
        flags: str = "execve rootcwd clone",
        static: bool = False,
        parent: Proc | None = None,
    ) -> Proc:
        """A process outside any pod (no ``pod``/``docker``), as Tetragon reports containerd and the shims."""
        eid = exec_id(node.name, start_ns - node.boot_ns, pid)
        base: dict[str, Any] = {"exec_id": eid, "pid": pid, "uid": 0, "cwd": "/", "binary": binary}
        if args:
            base["arguments"] = args
        base.update(flags=flags, start_time=ts(start_ns), auid=AUID_UNSET, parent_exec_id=parent_id)
        live = {**base, "refcnt": refcnt, "tid": pid}
        exec_obj = {**base, "refcnt": 1, "cap": CAP_PRIVILEGED, "tid": pid}
        return Proc(node, None, exec_obj, live, {**base, "tid": pid}, parent, None, static=static)

    def _build_pods(self) -> None:
        rng = self.rng
        for app in APPS:
            n = len(self.nodes) if app.replicas == 0 else app.replicas
            tmpl_hash = self._hex(5)[:10]
            for r in range(n):
                node = self.nodes[r] if app.replicas == 0 else rng.choice(self.nodes)
                name, labels = self._pod_identity(app, r, tmpl_hash)
                cid = self._hex(32)
                repo = app.image.rsplit(":", 1)[0]
                image = {"id": f"{repo}@sha256:{self._hash_for(app.image)}", "name": app.image}
                # most containers run since hours; ~8% start while the stream runs (rollouts, job pods)
                if rng.random() < 0.08 or app.kind == "Job":
                    start = T0_NS + rng.randrange(0, max(1, int(self.duration_ns * 0.8)))
                else:
                    start = T0_NS - rng.randint(60, 6 * 3600) * 1_000_000_000
                start -= start % 1_000_000_000  # container start times are whole seconds
                ip = f"10.{52 + node.index}.{rng.randrange(0, 4)}.{rng.randrange(2, 254)}"
                init_ns = start + rng.randint(20_000_000, 950_000_000)
                pod = Pod(app, node, name, ip, labels, cid, image, start, init_ns)
                self.pods.append(pod)
                self._push(init_ns + rng.randint(30_000, 900_000), INIT_EXEC, pod)

    def _hash_for(self, image: str) -> str:
        """One digest per image, shared by all its pods, as a registry would give."""
        if image not in self.image_digests:
            self.image_digests[image] = self._hex(32)
        return self.image_digests[image]

    def _pod_identity(self, app: App, r: int, tmpl_hash: str) -> tuple[str, dict[str, str]]:
        """Pod name and labels as the workload's controller sets them."""
        w = app.workload
        if app.kind == "Deployment":
            name = f"{w}-{tmpl_hash}-{self._suffix()}"
            labels = {"app": w, "pod-template-hash": tmpl_hash}
        elif app.kind == "StatefulSet":
            name = f"{w}-{r}"
            labels = {
                "app": w,
                "controller-revision-hash": f"{w}-{tmpl_hash}",
                "statefulset.kubernetes.io/pod-name": name,
            }
        elif app.kind == "DaemonSet":
            name = f"{w}-{self._suffix()}"
            labels = {
                "app.kubernetes.io/name": w,
                "controller-revision-hash": tmpl_hash,
                "pod-template-generation": "3",
            }
        elif app.kind == "Job":
            uid = f"{self._hex(4)}-{self._hex(2)}-{self._hex(2)}-{self._hex(2)}-{self._hex(6)}"
            name = f"{w}-{self._suffix()}"
            labels = {
                "batch.kubernetes.io/controller-uid": uid,
                "batch.kubernetes.io/job-name": w,
                "controller-uid": uid,
                "job-name": w,
            }
        else:
            name = f"{w}-{r}" if r else w
            labels = {"run": name}
        labels.update(app.label_extra)
        return name, dict(sorted(labels.items()))  # protojson writes map keys sorted

    # --- processes --------------------------------------------------------------------------------------------------

    def _pod_obj(self, pod: Pod, cpid: int, probe: bool) -> dict[str, Any]:
        app = pod.app
        container: dict[str, Any] = {
            "id": f"containerd://{pod.container_id}",
            "name": app.container,
            "image": pod.image,
            "start_time": ts(pod.start_ns),
            "pid": cpid,
        }
        if probe:
            container["maybe_exec_probe"] = True
        obj: dict[str, Any] = {
            "namespace": app.namespace,
            "name": pod.name,
            "container": container,
            "pod_labels": pod.labels,
        }
        if app.kind != "Pod":
            obj["workload"] = app.workload
        else:
            obj["workload"] = pod.name
        obj["workload_kind"] = app.kind
        return obj

    def _spawn(
        self, pod: Pod, cmd: Cmd, parent: Proc, start_ns: int, *, probe: bool = False, entry: bool = False
    ) -> Proc:
        """Create a process in POD's container (pid, exec_id, the three object renderings)."""
        node = pod.node
        pid = node.next_pid
        node.next_pid = pid + 1 if pid < 4_194_303 else 300
        pod.cpid = 1 if entry else pod.cpid + 1
        app = pod.app
        cwd = cmd.cwd or app.cwd
        uid = app.uid
        base: dict[str, Any] = {
            "exec_id": exec_id(node.name, start_ns - node.boot_ns, pid),
            "pid": pid,
            "uid": uid,
            "cwd": cwd,
            "binary": cmd.binary,
        }
        if cmd.args:
            base["arguments"] = cmd.args
        base["flags"] = "execve rootcwd clone" if cwd == "/" else "execve clone"
        base["start_time"] = ts(start_ns)
        base["auid"] = AUID_UNSET
        base["pod"] = self._pod_obj(pod, pod.cpid, probe)
        base["docker"] = pod.container_id[:31]
        base["parent_exec_id"] = parent.live["exec_id"]
        exec_obj = dict(base)
        exec_obj["refcnt"] = 1
        if uid == 0:
            exec_obj["cap"] = CAP_PRIVILEGED if app.privileged else CAP_DEFAULT
        exec_obj["tid"] = pid
        live = dict(base)
        live["refcnt"] = 1
        live["tid"] = pid
        base["tid"] = pid
        return Proc(node, pod, exec_obj, live, base, parent, cmd)

    def _push(self, t: int, action: int, payload: Any) -> None:
        heapq.heappush(self.heap, (t, next(self.seq), action, payload))

    def _plan(self, pod: Pod, cmd: Cmd, parent: Proc, start: int, *, probe: bool = False) -> int:
        """Schedule CMD's whole life (exec, hooks, children in sequence, exit); return its exit time."""
        rng = self.rng
        proc = self._spawn(pod, cmd, parent, start, probe=probe)
        self._push(start, EXEC, proc)
        lo, hi = cmd.lifetime_ms
        own = int(rng.uniform(lo, hi) * 1_000_000)
        t = start + self._int(150_000, 900_000)  # exec is reported; the program then starts working
        for act in cmd.acts:
            t = self._activity(proc, act, t + self._int(20_000, max(30_000, own // (len(cmd.acts) + 1))))
        for child in cmd.children:
            t = self._plan(pod, child, proc, t + self._int(100_000, 2_000_000))
        end = max(t, start + own) + self._int(50_000, 400_000)
        r = rng.random()
        status, signal = (
            (0, "")
            if r < 0.93
            else (1, "")
            if r < 0.975
            else (127, "")
            if r < 0.985
            else (0, "SIGTERM")
            if r < 0.995
            else (0, "SIGKILL")
        )
        self._push(end, EXIT, (proc, status, signal))
        return end

    def _activity(self, proc: Proc, act: str, t: int) -> int:
        """Schedule the hook events one named activity causes; return the time after it."""
        rng = self.rng
        if rng.random() >= ACT_CHANCE.get(act, 1.0):
            return t
        if act in ("connect_ext", "connect_db", "connect_local"):
            if act == "connect_local":
                dest = ("127.0.0.1", proc.cmd.port)
                saddr = "127.0.0.1"
            else:
                dests = proc.pod.app.dests if act == "connect_db" and proc.pod.app.dests else EXTERNAL
                dest = rng.choice(dests)
                saddr = proc.pod.ip
            t = self._connection(proc, saddr, dest, t, rng.choice((0, 1, 1, 2)))
        elif act == "resolv":
            self._push(t, KPROBE, (proc, "file", rng.choice(ETC_READS[:3]), 4, 0))
        elif act == "read_passwd":
            self._push(t, KPROBE, (proc, "file", FILES_PASSWD, 4, 0))
        elif act == "read_shadow":
            self._push(t, KPROBE, (proc, "file", ("/etc/shadow", "-rw-r-----"), 4, 0 if proc.live["uid"] == 0 else -13))
        elif act == "write_passwd":
            self._push(t, KPROBE, (proc, "file", FILES_PASSWD, 2, 0))
        elif act == "read_localtime":
            self._push(t, KPROBE, (proc, "file", ("/etc/localtime", "-rw-r--r--"), 4, 0))
        elif act == "read_nginx":
            self._push(t, KPROBE, (proc, "file", ("/etc/nginx/nginx.conf", "-rw-r--r--"), 4, 0))
        elif act == "stdout":
            self._push(t, KPROBE, (proc, "write", rng.choice(STDOUT_ARGS)))
        elif act in ("lsm_passwd", "lsm_shadow"):
            self._push(t, LSM, (proc, "/etc/passwd" if act == "lsm_passwd" else "/etc/shadow"))
        elif act == "tracepoint":
            self._push(t, TRACEPOINT, (proc, rng.choice(SYSCALL_IDS)))
        elif act == "tls" and HANDSHAKES:
            t = self._tls(proc, proc.pod.ip, rng.choice(EXTERNAL), t)
        return t + self._int(10_000, 500_000)

    def _tls(self, proc: Proc, saddr: str, dest: tuple[str, int], t: int) -> int:
        """tcp_connect, then the ClientHello write and the ServerHello read on the socket's fd."""
        rng = self.rng
        client, server, server_len, _weak = rng.choices(HANDSHAKES, HANDSHAKE_WEIGHTS)[0]
        self._push(t, KPROBE, (proc, "connect", self._sock(saddr, dest, "TCP_SYN_SENT")))
        fd = self._int(18, 40)
        t += self._int(300_000, 3_000_000)
        self._push(t, KPROBE, (proc, "tls_write", fd, client))
        t += self._int(2_000_000, 60_000_000)  # a round trip to the server
        self._push(t, KPROBE, (proc, "tls_read", fd, server, server_len))
        return t

    def _sock(self, saddr: str, dest: tuple[str, int], state: str) -> dict[str, Any]:
        """A sock_arg for a new socket: fresh ephemeral port and cookie (the kernel address of the socket)."""
        self.cookie += 64 * self._int(1, 4096)
        return {
            "family": "AF_INET",
            "type": "SOCK_STREAM",
            "protocol": "IPPROTO_TCP",
            "saddr": saddr,
            "daddr": dest[0],
            "sport": self._int(32768, 60999),
            "dport": dest[1],
            "cookie": str(self.cookie),
            "state": state,
        }

    def _connection(self, proc: Proc, saddr: str, dest: tuple[str, int], t: int, sends: int) -> int:
        """tcp_connect then SENDS tcp_sendmsg on one socket (same 4-tuple and cookie)."""
        rng = self.rng
        sock = self._sock(saddr, dest, "TCP_SYN_SENT")
        self._push(t, KPROBE, (proc, "connect", sock))
        established = {**sock, "state": "TCP_ESTABLISHED"}
        for _ in range(sends):
            t += self._int(200_000, 20_000_000)
            self._push(t, KPROBE, (proc, "sendmsg", established, rng.choice((64, 133, 517, 1024, 1448, 4096))))
        return t

    # --- event rendering --------------------------------------------------------------------------------------------

    @staticmethod
    def _envelope(kind: str, body: dict[str, Any], node: str, now: int) -> dict[str, Any]:
        return {kind: body, "node_name": node, "time": ts(now)}

    def _kprobe_body(self, proc: Proc, what: str, a: Any, b: Any = None, c: Any = None) -> dict[str, Any]:
        body: dict[str, Any] = {"process": proc.as_live(), "parent": proc.parent.as_live()}
        if what == "file":
            path, perm = a
            body.update(
                function_name="security_file_permission",
                args=[{"file_arg": {"path": path, "permission": perm}}, {"int_arg": b}],
                **{"return": {"int_arg": c}},
                action=POST,
                policy_name="file-monitoring",
                return_action=POST,
            )
        elif what == "connect":
            body.update(
                function_name="tcp_connect",
                args=[{"sock_arg": a}],
                action=POST,
                policy_name="connect",
                return_action=POST,
            )
        elif what == "sendmsg":
            body.update(
                function_name="tcp_sendmsg",
                args=[{"sock_arg": a}, {"int_arg": b}],
                action=POST,
                policy_name="connect",
                return_action=POST,
            )
        elif what == "tls_write":  # write(fd, ClientHello, 517)
            body.update(
                function_name="__x64_sys_write",
                args=[{"int_arg": a}, {"bytes_arg": b}, {"size_arg": str(len(base64.b64decode(b)))}],
                action=POST,
                policy_name="tls-handshake",
                return_action=POST,
            )
        elif what == "tls_read":  # read(fd, buf, 65536) returning the server's first flight
            body.update(
                function_name="__x64_sys_read",
                args=[{"int_arg": a}, {"bytes_arg": b}, {"size_arg": "65536"}],
                **{"return": {"int_arg": c}},
                action=POST,
                policy_name="tls-handshake",
                return_action=POST,
            )
        else:  # write(1, buf, n) to stdout
            body.update(
                function_name="__x64_sys_write", args=list(a), action=POST, policy_name="sys-write", return_action=POST
            )
        return body

    def _emit(self, action: int, payload: Any, now: int, at: int) -> dict[str, Any]:
        if action == EXEC:
            proc: Proc = payload
            proc.parent.children += 1
            body = {"process": proc.exec_obj, "parent": proc.parent.as_live()}
            return self._envelope("process_exec", body, proc.node.name, now)
        if action == EXIT:
            proc, status, signal = payload
            proc.parent.children -= 1
            body = {"process": proc.exit_obj, "parent": proc.parent.as_live()}
            if signal:
                body["signal"] = signal
            if status:
                body["status"] = status
            body["time"] = ts(at)
            return self._envelope("process_exit", body, proc.node.name, now)
        if action == KPROBE:
            proc = payload[0]
            return self._envelope("process_kprobe", self._kprobe_body(*payload), proc.node.name, now)
        if action == LSM:
            proc, path = payload
            body = {
                "process": proc.as_live(),
                "parent": proc.parent.as_live(),
                "function_name": "file_open",
                "policy_name": "lsm-file-open",
                "args": [
                    {"file_arg": {"path": path, "permission": "-rw-r--r--" if path == "/etc/passwd" else "-rw-r-----"}}
                ],
                "action": POST,
            }
            return self._envelope("process_lsm", body, proc.node.name, now)
        if action == TRACEPOINT:
            proc, sysno = payload
            body = {
                "process": proc.as_live(),
                "parent": proc.parent.as_live(),
                "subsys": "raw_syscalls",
                "event": "sys_enter",
                "args": [{"long_arg": sysno}],
                "policy_name": "raw-syscalls",
                "action": POST,
            }
            return self._envelope("process_tracepoint", body, proc.node.name, now)
        if action == THROTTLE_STOP:
            node, cgroup = payload
            return self._envelope("process_throttle", {"type": "THROTTLE_STOP", "cgroup": cgroup}, node.name, now)
        # INIT_EXEC: the container's entrypoint starts, parented by its containerd shim
        pod: Pod = payload
        node = pod.node
        shim_start = pod.init_ns - self._int(80_000_000, 400_000_000)
        shim_pid = node.next_pid
        node.next_pid += 1
        pod.shim = self._host_proc(
            node,
            "/usr/bin/containerd-shim-runc-v2",
            f"-namespace k8s.io -id {self._hex(32)} -address /run/containerd/containerd.sock",
            shim_start,
            shim_pid,
            node.containerd.live["exec_id"],
            refcnt=2,
            flags="execve clone",
            parent=node.containerd,
        )
        app = pod.app
        pod.init = self._spawn(pod, Cmd(app.entry, app.entry_args), pod.shim, pod.init_ns, entry=True)
        pod.shim.children += 1
        self.active.append(pod)
        self.active_cum.append((self.active_cum[-1] if self.active_cum else 0.0) + app.rate)
        body = {"process": pod.init.exec_obj, "parent": pod.shim.as_live()}
        return self._envelope("process_exec", body, node.name, max(now, at))

    # --- the stream -------------------------------------------------------------------------------------------------

    def _new_tree(self, now: int) -> None:
        """Start a new process tree now in a random running container (weighted by how busy its workload is)."""
        rng = self.rng
        pod = rng.choices(self.active, cum_weights=self.active_cum)[0]
        app = pod.app
        r = rng.random()
        if r < INTERACTIVE_RATE and app.uid == 0:  # someone `kubectl exec`s into a root container
            self._plan(pod, INTERACTIVE, pod.shim, now)
        elif app.probe is not None and r < 0.35:
            self._plan(pod, app.probe, pod.shim, now, probe=True)
        else:
            cmds, weights = zip(*app.spawns, strict=True)
            self._plan(pod, rng.choices(cmds, weights)[0], pod.init, now)

    def _background(self, now: int) -> dict[str, Any]:
        """Work of a long-running entrypoint: a request to a peer, a new connection, a file read, a syscall."""
        rng = self.rng
        pod = rng.choice(self.active)
        proc = pod.init
        r = rng.random()
        if r < 0.80 and pod.app.dests:
            dest = rng.choice(pod.app.dests)
            if r < 0.62:  # a request on a pooled connection
                sock = self._sock(pod.ip, dest, "TCP_ESTABLISHED")
                body = self._kprobe_body(proc, "sendmsg", sock, rng.choice((96, 310, 517, 1448, 2896, 8192)))
            else:
                body = self._kprobe_body(proc, "connect", self._sock(pod.ip, dest, "TCP_SYN_SENT"))
        elif r < 0.90:
            body = self._kprobe_body(proc, "file", rng.choice(ETC_READS), 4, 0)
        else:
            return self._emit(TRACEPOINT, (proc, rng.choice(SYSCALL_IDS)), now, now)
        return self._envelope("process_kprobe", body, pod.node.name, now)

    def events(self) -> Iterator[dict[str, Any]]:
        """Yield COUNT events: first the entrypoint execs of containers started before the stream, then the stream."""
        rng = self.rng
        heap = self.heap
        emitted = 0
        # containers started before T0: their entrypoint execs come first, in time order
        while heap and heap[0][0] < T0_NS and emitted < self.count:
            at, _, action, payload = heapq.heappop(heap)
            yield self._emit(action, payload, at + self._int(20_000, 300_000), at)
            emitted += 1
        now = T0_NS
        next_minute = T0_NS + 60_000_000_000
        next_throttle = T0_NS + self._int(5, 20) * 1_000_000_000
        step = self.step_ns
        while emitted < self.count:
            now += int(rng.expovariate(1.0) * step) + 1
            if now >= next_minute:  # the exporter's once-a-minute drop report, from nodes that dropped
                next_minute += 60_000_000_000
                for node in self.nodes:
                    if rng.random() < 0.5 and emitted < self.count:
                        yield self._envelope(
                            "rate_limit_info",
                            {"number_of_dropped_process_events": str(self._int(1, 40_000))},
                            node.name,
                            now,
                        )
                        emitted += 1
                continue
            if now >= next_throttle:  # cgroup-rate throttling of a container that forks too much
                next_throttle = now + self._int(5, 20) * 1_000_000_000
                pod = rng.choice(self.active)
                cgroup = f"cri-containerd-{pod.container_id}.scope"
                self._push(now + self._int(2, 12) * 1_000_000_000, THROTTLE_STOP, (pod.node, cgroup))
                yield self._envelope(
                    "process_throttle", {"type": "THROTTLE_START", "cgroup": cgroup}, pod.node.name, now
                )
                emitted += 1
                continue
            if not heap or heap[0][0] > now:
                if self.active and rng.random() < BACKGROUND_CHANCE:
                    yield self._background(now)
                    emitted += 1
                    continue
                if self.active:
                    self._new_tree(now)
                else:  # nothing runs yet (only when every container starts in the stream)
                    now = heap[0][0]
            at, _, action, payload = heapq.heappop(heap)
            yield self._emit(action, payload, now, at)
            emitted += 1


def generate(
    count: int, out: Path, seed: int = 1, progress: Callable[[int], None] | None = None
) -> tuple[int, int, Counter[str]]:
    """Write COUNT lines to OUT; return (lines, bytes, lines per kind)."""
    kinds: Counter[str] = Counter()
    total = 0
    batch: list[bytes] = []
    with open(out, "wb", buffering=8 * 1024 * 1024) as f:
        for i, ev in enumerate(Generator(count, seed).events(), 1):
            line = _dumps(ev)
            batch.append(line)
            kinds[next(iter(ev))] += 1
            if len(batch) == 2_000:
                chunk = b"\n".join(batch) + b"\n"
                f.write(chunk)
                total += len(chunk)
                batch.clear()
                if progress is not None and i % 200_000 == 0:
                    progress(i)
        if batch:
            chunk = b"\n".join(batch) + b"\n"
            f.write(chunk)
            total += len(chunk)
    return sum(kinds.values()), total, kinds


def generate_reported(count: int, out: Path, seed: int = 1) -> None:
    """:func:`generate`, then one line on stderr with the size and time (what a benchmark shows first)."""
    started = time.perf_counter()
    n, size, _ = generate(count, out, seed)
    print(
        f"generated {n:,} events ({size / 1e9:.2f} GB) in {time.perf_counter() - started:.0f}s -> {out}",
        file=sys.stderr,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=1_000_000, help="Lines to write (default 1,000,000).")
    ap.add_argument("--out", type=Path, required=True, help="Output file (JSON lines).")
    ap.add_argument("--seed", type=int, default=1, help="Random seed; the same seed gives the same file.")
    args = ap.parse_args()
    started = time.perf_counter()

    def progress(i: int) -> None:
        if sys.stderr.isatty():
            print(f"\r{i:,} / {args.count:,}", end="", file=sys.stderr, flush=True)

    n, size, kinds = generate(args.count, args.out, args.seed, progress)
    secs = time.perf_counter() - started
    if sys.stderr.isatty():
        print("\r", end="", file=sys.stderr)
    mix = ", ".join(f"{k} {100 * v / n:.1f}%" for k, v in kinds.most_common())
    print(
        f"{n:,} events, {size / 1e6:,.0f} MB, {size / max(n, 1):,.0f} bytes per line on average, "
        f"in {secs:.1f} s ({n / secs:,.0f} lines/s)\n{mix}"
    )


if __name__ == "__main__":
    main()
