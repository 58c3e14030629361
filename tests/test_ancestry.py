"""The process table and the ancestry transform: chains, out of order, gaps, nodes, eviction, restart."""

from __future__ import annotations

import base64
import datetime as dt
import random
from pathlib import Path

import pyarrow as pa
import pytest
from conftest import REAL_LOGS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_ancestry_world import World, host_and_pod, scenario_lines

from tetrapipe.schema import EVENT_SCHEMA
from tetrapipe.transforms.ancestry import AncestryTransform, ProcessTable, exec_id_pid
from tetrapipe.transforms.normalize import Normalizer, normalize_lines

_NORMALIZER: list[Normalizer] = []


def events(lines: list[str]) -> pa.Table:
    if not _NORMALIZER:  # one DuckDB connection for the module: hypothesis calls this hundreds of times
        _NORMALIZER.append(Normalizer())
    norm = normalize_lines(lines, normalizer=_NORMALIZER[0])
    assert norm.rejects.num_rows == 0
    return norm.events


def rows(table: pa.Table) -> list[dict]:
    return table.select(
        [
            "kind",
            "exec_id",
            "process_binary",
            "parent_exec_id",
            "parent_binary",
            "ancestor_exec_ids",
            "ancestor_binaries",
        ]
    ).to_pylist()


def chain_of(p) -> tuple[list[str], list[str]]:
    anc = p.ancestors()
    return [a.exec_id for a in anc], [a.binary for a in anc]


def node_of(exec_id: str) -> str:
    return base64.b64decode(exec_id).decode().split(":")[0]


@pytest.fixture
def world() -> World:
    return World()


def test_chain_in_order_is_complete_and_ends_at_init(world: World) -> None:
    p = host_and_pod(world)
    lines = [world.exec(p[k]) for k in ("containerd", "shim", "crawler", "runc", "bash", "cat")]
    out = rows(ProcessTable().enrich(events(lines)))
    cat = out[-1]
    assert cat["ancestor_binaries"] == [
        "/usr/bin/runc",
        "/usr/bin/containerd-shim-runc-v2",
        "/usr/bin/containerd",
        "/sbin/init",
    ]
    assert cat["ancestor_exec_ids"] == chain_of(p["cat"])[0]
    # the shim's parent (containerd) is a child of pid 1: nothing above init
    assert out[1]["ancestor_binaries"] == ["/sbin/init"]


def test_child_before_parent_in_one_batch(world: World) -> None:
    p = host_and_pod(world)
    lines = [world.exec(p[k]) for k in ("cat", "bash", "runc", "shim", "containerd")]  # newest first
    cat = rows(ProcessTable().enrich(events(lines)))[0]
    assert (cat["ancestor_exec_ids"], cat["ancestor_binaries"]) == chain_of(p["cat"])


def test_child_before_parent_across_batches_gap_then_filled(world: World) -> None:
    p = host_and_pod(world)
    table = ProcessTable()
    first = rows(table.enrich(events([world.exec(p["cat"])])))[0]
    # the parent (bash) is known from the event itself, the grandparent id from the event's raw parent,
    # nothing above: the chain says so with a NULL-binary element and a NULL exec_id at the end
    assert first["parent_binary"] == "/bin/bash"
    assert first["ancestor_exec_ids"] == [p["runc"].exec_id, None]
    assert first["ancestor_binaries"] == [None, None]
    table.enrich(events([world.exec(p[k]) for k in ("containerd", "shim", "runc", "bash")]))
    later = rows(table.enrich(events([world.file(p["cat"], "/etc/passwd")])))[0]
    assert (later["ancestor_exec_ids"], later["ancestor_binaries"]) == chain_of(p["cat"])
    assert table.stats.with_gaps >= 1


def test_parent_that_started_before_tetrapipe_is_learned_from_children(world: World) -> None:
    """No exec of the shim or containerd ever arrives (procFS-era processes): links come from children."""
    p = host_and_pod(world)
    table = ProcessTable()
    # the crawler's exec names the shim as parent (and, inside "parent", containerd as the shim's parent)
    table.enrich(events([world.exec(p["crawler"])]))
    info = table.get(p["shim"].exec_id)
    assert info is not None and info.binary == "/usr/bin/containerd-shim-runc-v2"
    assert info.parent_exec_id == p["containerd"].exec_id
    worker = rows(table.enrich(events([world.exec(p["worker"])])))[0]
    assert worker["ancestor_exec_ids"] == [p["shim"].exec_id, p["containerd"].exec_id, None]
    assert worker["ancestor_binaries"] == ["/usr/bin/containerd-shim-runc-v2", None, None]


def test_tetragon_ancestors_are_kept_and_teach_the_table(world: World) -> None:
    p = host_and_pod(world)
    table = ProcessTable()
    sent = rows(table.enrich(events([world.exec(p["cat"], ancestors=True)])))[0]
    assert (sent["ancestor_exec_ids"], sent["ancestor_binaries"]) == chain_of(p["cat"])
    assert table.stats.kept_from_tetragon == 1
    # a kprobe event without ancestors (Tetragon's kprobe ancestors are a separate flag): same chain
    kp = rows(table.enrich(events([world.file(p["cat"], "/etc/passwd")])))[0]
    assert (kp["ancestor_exec_ids"], kp["ancestor_binaries"]) == chain_of(p["cat"])
    # and a sibling's exec too, with no raw parse needed
    sib = rows(table.enrich(events([world.exec(p["curl"])])))[0]
    assert (sib["ancestor_exec_ids"], sib["ancestor_binaries"]) == chain_of(p["curl"])


def test_tetragon_ancestors_ordering_differs_from_table_keeps_tetragon(world: World) -> None:
    """Whatever Tetragon sent stays as sent, even when the table would say something else."""
    p = host_and_pod(world)
    line = world.exec(p["cat"], ancestors=True)
    out = rows(ProcessTable().enrich(events([line])))[0]
    assert out["ancestor_binaries"][0] == "/usr/bin/runc"


def test_exit_without_exec(world: World) -> None:
    p = host_and_pod(world)
    table = ProcessTable(grace=dt.timedelta(seconds=10))
    table.enrich(events([world.exec(p[k]) for k in ("containerd", "shim", "runc", "bash")]))
    out = rows(table.enrich(events([world.exit(p["cat"], 0.3)])))[0]
    assert out["kind"] == "process_exit"
    assert (out["ancestor_exec_ids"], out["ancestor_binaries"]) == chain_of(p["cat"])
    info = table.get(p["cat"].exec_id)
    assert info is not None and info.exited and info.binary == "/bin/cat"
    # 30 s later (event time) on the same node, the exited cat is gone; the living bash stays
    later = world.proc("/bin/true", "", parent=p["bash"], at=p["cat"].start.timestamp() - world.t0.timestamp() + 60)
    table.enrich(events([world.exec(later), world.exit(later, 0.1)]))
    table.evict()
    assert table.get(p["cat"].exec_id) is None
    assert table.get(p["bash"].exec_id) is not None


def test_pid_reuse_new_exec_id_is_a_new_process(world: World) -> None:
    p = host_and_pod(world)
    table = ProcessTable(grace=dt.timedelta(seconds=5))
    old = world.proc("/usr/bin/sleep", "1", parent=p["crawler"], pid=4242, at=100)
    new = world.proc("/usr/bin/wget", "http://x", parent=p["bash"], pid=4242, at=500)
    assert old.exec_id != new.exec_id
    base = [world.exec(p[k]) for k in ("containerd", "shim", "crawler", "runc", "bash")]
    table.enrich(events(base + [world.exec(old), world.exit(old, 1.0)]))
    out = rows(table.enrich(events([world.exec(new), world.connect(new, "1.2.3.4", 80)])))
    assert all(r["ancestor_binaries"][0] == "/usr/bin/runc" for r in out)  # not the crawler's chain
    table.evict()
    assert table.get(old.exec_id) is None
    assert table.get(new.exec_id) is not None and not table.get(new.exec_id).exited


def test_two_nodes_interleaved_never_mix(world: World) -> None:
    wa, wb = World("node-a"), World("node-b")
    pa_, pb_ = host_and_pod(wa), host_and_pod(wb)  # same pids, same binaries, same ktimes
    assert pa_["cat"].pid == pb_["cat"].pid and pa_["cat"].exec_id != pb_["cat"].exec_id
    keys = ("containerd", "shim", "crawler", "runc", "bash", "cat", "curl")
    lines = [x for k in keys for x in (wa.exec(pa_[k]), wb.exec(pb_[k]))]
    random.Random(7).shuffle(lines)
    out = rows(ProcessTable().enrich(events(lines)))
    for r in out:
        node = node_of(r["exec_id"])
        assert all(node_of(a) == node for a in r["ancestor_exec_ids"] if a)
    by_id = {r["exec_id"]: r for r in out}
    assert by_id[pb_["cat"].exec_id]["ancestor_exec_ids"] == chain_of(pb_["cat"])[0]
    assert by_id[pa_["curl"].exec_id]["ancestor_exec_ids"] == chain_of(pa_["curl"])[0]


def test_exited_parent_stays_while_a_child_lives(world: World) -> None:
    p = host_and_pod(world)
    table = ProcessTable(grace=dt.timedelta(seconds=1))
    daemon = world.proc("/usr/sbin/sshd", "-D", parent=p["bash"], at=401)
    table.enrich(events([world.exec(p[k]) for k in ("containerd", "shim", "runc", "bash")] + [world.exec(daemon)]))
    table.enrich(events([world.exit(p["bash"], 2.0)]))  # the shell exits, its daemon child lives on
    much_later = world.proc("/bin/true", "", parent=p["shim"], at=4000)
    table.enrich(events([world.exec(much_later)]))
    table.evict()
    assert table.get(p["bash"].exec_id) is not None
    out = rows(table.enrich(events([world.connect(daemon, "10.0.0.1", 22, after=3700)])))[0]
    assert (out["ancestor_exec_ids"], out["ancestor_binaries"]) == chain_of(daemon)


def test_cycle_in_corrupt_data_terminates(world: World) -> None:
    a = world.proc("/bin/a", "", pid=500)
    b = world.proc("/bin/b", "", parent=a, pid=501)
    a.parent = b  # corrupt: a's parent is b, b's parent is a
    c = world.proc("/bin/c", "", parent=b, pid=502)
    out = rows(ProcessTable().enrich(events([world.exec(a), world.exec(b), world.exec(c)])))
    chain = out[-1]["ancestor_exec_ids"]
    assert chain == [a.exec_id, None]


def test_schema_and_rows_preserved_on_real_samples() -> None:
    lines = [ln for path in REAL_LOGS for ln in Path(path).read_text().splitlines() if ln.strip()]
    ev = events(lines)
    transform = AncestryTransform()
    out, extra = transform(ev)
    assert extra == {}
    assert out.schema == EVENT_SCHEMA and out.num_rows == ev.num_rows
    assert out.column("event_id").to_pylist() == ev.column("event_id").to_pylist()
    got = rows(out)
    for r in got:
        if r["exec_id"] and r["parent_exec_id"]:
            assert r["ancestor_exec_ids"] is not None
            assert len(r["ancestor_exec_ids"]) == len(r["ancestor_binaries"])
        if r["exec_id"] is None:
            assert r["ancestor_exec_ids"] is None
    # the real privileged-pod story: cat <- bash <- nsenter <- bash <- runc <- containerd-shim <- containerd
    cat = next(r for r in got if r["process_binary"] == "/usr/bin/cat" and r["parent_binary"] == "/usr/bin/bash")
    assert cat["ancestor_binaries"][:5] == [
        "/usr/bin/nsenter",
        "/bin/bash",
        "/usr/bin/runc",
        "/usr/bin/containerd-shim",
        "/usr/bin/containerd",
    ]


def test_empty_batch_and_batch_without_process_columns() -> None:
    table = ProcessTable()
    empty = EVENT_SCHEMA.empty_table()
    assert table.enrich(empty).num_rows == 0
    throttle = events(
        ['{"process_throttle":{"type":"THROTTLE_START","cgroup":"x"},"node_name":"n","time":"2024-05-01T10:00:00Z"}']
    )
    out = table.enrich(throttle)
    assert out.column("ancestor_exec_ids").to_pylist() == [None]


def test_exec_id_pid() -> None:
    assert exec_id_pid(base64.b64encode(b"kind-control-plane:11428615636901:51583").decode()) == 51583
    assert exec_id_pid("OjEwMTgzOTUyNjg1NjcwNDoyNjIzNw==") == 26237
    assert exec_id_pid("not base64 !!") is None


# --- bounded memory ----------------------------------------------------------------------


def _sid(node: str, i: int) -> str:
    return base64.b64encode(f"{node}:{10**9 + i * 1000}:{100000 + i % 3000000}".encode()).decode()


def synthetic_batch(
    start: int, count: int, t0_us: int, node: str, parent_ids: list[str], step_us: int = 1000
) -> pa.Table:
    """exec + exit of ``count`` short-lived processes, 1 ms apart (Arrow, no JSON).

    Every fourth one is a shell, child of a long-lived parent; the three after it are its
    children, so parents come and go too (and compaction moves them in the arrays).
    """
    idx = range(start, start + count)
    ids = [_sid(node, i) for i in idx]
    parents = [parent_ids[i % len(parent_ids)] if i % 4 == 0 else _sid(node, i - i % 4) for i in idx]
    times = [t0_us + i * step_us for i in idx]
    exits = [t + (3500 if i % 4 == 0 else 500) for i, t in zip(idx, times, strict=True)]  # shells exit last
    binaries = [("/bin/sh", "/usr/bin/curl", "/bin/true", "/usr/bin/date")[i % 4] for i in idx]
    parent_bins = ["/usr/bin/node" if i % 4 == 0 else "/bin/sh" for i in idx]
    pids = [100000 + i % 3000000 for i in idx]
    parent_pids = [900 if i % 4 == 0 else 100000 + (i - i % 4) % 3000000 for i in idx]
    return pa.table(
        {
            "time": pa.array(times + exits, pa.int64()).cast(pa.timestamp("us")),
            "kind": pa.array(["process_exec"] * count + ["process_exit"] * count),
            "node_name": pa.array([node] * (2 * count)),
            "exec_id": pa.array(ids * 2),
            "parent_exec_id": pa.array(parents * 2),
            "pid": pa.array(pids * 2, pa.int64()),
            "process_binary": pa.array(binaries * 2),
            "parent_binary": pa.array(parent_bins * 2),
            "parent_pid": pa.array(parent_pids * 2, pa.int64()),
        }
    )


def test_memory_stays_flat_over_a_million_short_lived_processes() -> None:
    table = ProcessTable(grace=dt.timedelta(seconds=30))
    node = "gke-prod-pool-1-a1b2c3d4-x9z8"
    parents = [base64.b64encode(f"{node}:{5 * 10**8 + k}:{900 + k}".encode()).decode() for k in range(50)]
    t0 = 1_714_557_600_000_000
    total, batch = 1_000_000, 50_000
    sizes, bytes_ = [], []
    for start in range(0, total, batch):
        out = table.enrich(synthetic_batch(start, batch, t0, node, parents))
        sizes.append(len(table))
        bytes_.append(table.nbytes)
        # a child's chain: its shell's parent (the long-lived app, known by id only), then the cut
        k = 4 * (batch // 8) + 1
        assert out.column("parent_exec_id")[k].as_py() == _sid(node, start + k - 1)
        assert out.column("ancestor_exec_ids")[k].as_py() == [parents[(start + k - 1) % len(parents)], None]
        assert out.column("ancestor_binaries")[k].as_py() == ["/usr/bin/node", None]
    # 1 process per ms, 30 s grace: ~30k exited ones waiting (+ eviction lag), never a million
    assert max(sizes) < 150_000, sizes
    assert sizes[-1] < 150_000
    assert max(bytes_[5:]) < 1.3 * max(bytes_[5:10]), bytes_  # flat, not growing
    assert max(bytes_) < 64 * 2**20
    assert table.stats.evicted > 800_000


def test_a_million_live_processes_fit_in_200_mb() -> None:
    """No eviction at all (none exit): the compact layout alone keeps 1M processes under 200 MB."""
    table = ProcessTable(grace=dt.timedelta(days=1), max_entries=2_000_000)
    node = "gke-prod-pool-1-a1b2c3d4-x9z8"
    parents = [base64.b64encode(f"{node}:{5 * 10**8 + k}:{900 + k}".encode()).decode() for k in range(50)]
    t0 = 1_714_557_600_000_000
    for start in range(0, 1_000_000, 100_000):
        b = synthetic_batch(start, 100_000, t0, node, parents)
        table.update(b.slice(0, 100_000))  # execs only
    assert len(table) >= 1_000_000  # plus the long-lived parents
    print(f"1M live processes: {table.nbytes / 2**20:.0f} MiB")
    assert table.nbytes < 200 * 2**20, table.nbytes


def test_hard_cap_evicts_least_recently_seen_and_marks_forgotten() -> None:
    table = ProcessTable(grace=dt.timedelta(days=1), max_entries=10_000)
    node = "n1"
    parents = [base64.b64encode(f"{node}:{5 * 10**8 + k}:{900 + k}".encode()).decode() for k in range(5)]
    for start in range(0, 50_000, 5_000):
        table.update(synthetic_batch(start, 5_000, 1_714_557_600_000_000, node, parents).slice(0, 5_000))
        assert len(table) <= 10_000
    assert table.stats.evicted_by_cap > 0


# --- restart -----------------------------------------------------------------------------


def test_restore_from_the_lake_rebuilds_chains(tmp_path: Path, world: World) -> None:
    from tetrapipe.flows.ingest import ingest
    from tetrapipe.flows.transforms import restore_transforms
    from tetrapipe.lake import Lake
    from tetrapipe.sources.files import expand_inputs

    p = host_and_pod(world)
    log = tmp_path / "tetragon.log"
    log.write_text("\n".join(scenario_lines(world, p)) + "\n")
    lake = Lake(tmp_path / "lake")
    live = AncestryTransform()
    ingest(expand_inputs([str(log)]), lake, transforms=[live])
    # a restarted processor: a fresh table from the lake, then a new event of the shell's child
    restarted = AncestryTransform(restore_since=dt.timedelta(hours=1))
    assert restore_transforms([restarted], lake) == 1
    restored = restarted.table
    assert len(restored) > 0
    later = world.proc("/usr/bin/whoami", "", parent=p["bash"], at=500, pod=p["pod"])
    fresh = rows(restored.enrich(events([world.exec(later)])))[0]
    # init and containerd never exec'd in this log: init is known by its id (pid 1 inside it: the top)
    truth_ids, truth_bins = chain_of(later)
    assert fresh["ancestor_exec_ids"] == truth_ids
    assert fresh["ancestor_binaries"] == truth_bins[:-1] + [None]
    # and it matches what the table that never restarted says
    same = rows(live.table.enrich(events([world.exec(later)])))[0]
    assert (same["ancestor_exec_ids"], same["ancestor_binaries"]) == (
        fresh["ancestor_exec_ids"],
        fresh["ancestor_binaries"],
    )
    # a restore window in the future sees nothing
    empty = AncestryTransform(restore_since=dt.datetime(2030, 1, 1))
    restore_transforms([empty], lake)
    assert len(empty.table) == 0


# --- property: any order, any batching ----------------------------------------------------


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), n=st.integers(2, 40), cuts=st.integers(1, 6), with_anc=st.booleans())
def test_any_order_any_batching_never_lies(seed: int, n: int, cuts: int, with_anc: bool) -> None:
    """Every chain written is a true prefix (NULLs only where unknown), and complete once all is known."""
    rnd = random.Random(seed)
    w = World("node-a")
    init = w.proc("/sbin/init", pid=1, at=-100)
    procs = [init]
    for i in range(n):
        parent = rnd.choice(procs)
        procs.append(w.proc(f"/bin/p{i}", parent=parent, pid=200 + i, at=i))
    lines = [w.exec(q, ancestors=with_anc and rnd.random() < 0.3) for q in procs[1:]]
    lines += [w.exit(q, 0.5) for q in procs[1:] if rnd.random() < 0.3]
    rnd.shuffle(lines)
    bounds = sorted(rnd.sample(range(1, len(lines)), min(cuts, len(lines) - 1)))
    table = ProcessTable()
    by_id = {q.exec_id: q for q in procs}
    for a, b in zip([0, *bounds], [*bounds, len(lines)], strict=True):
        for r in rows(table.enrich(events(lines[a:b]))):
            truth_ids, truth_bins = chain_of(by_id[r["exec_id"]])
            got_ids, got_bins = r["ancestor_exec_ids"], r["ancestor_binaries"]
            assert len(got_ids) == len(got_bins)
            if got_ids and got_ids[-1] is None:  # cut: the known part is a true prefix
                got_ids, got_bins = got_ids[:-1], got_bins[:-1]
                assert got_ids == truth_ids[: len(got_ids)]
            else:
                assert got_ids == truth_ids
            assert all(g is None or g == t for g, t in zip(got_bins, truth_bins, strict=False))
    # everything known now: one more event per process gets the whole truth
    final = rows(table.enrich(events([w.file(q, "/tmp/x") for q in procs[1:]])))
    for r in final:
        assert (r["ancestor_exec_ids"], r["ancestor_binaries"]) == chain_of(by_id[r["exec_id"]])


def test_churn_through_eviction_and_compaction_keeps_every_chain_exact() -> None:
    """30k processes over time, parents and children exiting in any order, 1 s grace: chains stay exact.

    Events arrive in time order with each parent's exec before its children's, so every chain is
    fully known; eviction (which respects live children) and compaction (which moves every slot)
    must never cut or corrupt one.
    """
    rnd = random.Random(11)
    node = "node-churn"
    t0 = 1_714_557_600_000_000
    init_id = base64.b64encode(f"{node}:1:1".encode()).decode()
    parent_of: dict[str, str | None] = {init_id: None}
    binary_of = {init_id: "/sbin/init"}
    alive = [init_id]
    depth = {init_id: 0}
    timeline: list[tuple[int, str, str]] = []  # (time, kind, exec_id)
    t = t0
    for i in range(30_000):
        t += rnd.randrange(100, 900)
        parent = rnd.choice([a for a in alive[-60:] if depth[a] < 24] or [init_id])
        eid = base64.b64encode(f"{node}:{10**9 + i}:{2000 + i}".encode()).decode()
        parent_of[eid], binary_of[eid] = parent, f"/bin/b{i % 97}"
        depth[eid] = depth[parent] + 1
        life = rnd.randrange(1_000, 3_000_000)
        timeline += [(t, "process_exec", eid), (t + life // 2, "process_kprobe", eid), (t + life, "process_exit", eid)]
        alive.append(eid)
        if len(alive) > 400:
            alive.pop(1)
    timeline.sort()

    def truth(eid: str) -> list[str]:
        out, p = [], parent_of[parent_of[eid]] if parent_of[eid] else None
        while p is not None:
            out.append(p)
            p = parent_of[p]
        return out

    table = ProcessTable(grace=dt.timedelta(seconds=1))
    checked = 0
    for a in range(0, len(timeline), 3000):
        chunk = timeline[a : a + 3000]
        ids = [e for _, _, e in chunk]
        batch = pa.table(
            {
                "time": pa.array([x for x, _, _ in chunk], pa.int64()).cast(pa.timestamp("us")),
                "kind": pa.array([k for _, k, _ in chunk]),
                "node_name": pa.array([node] * len(chunk)),
                "exec_id": pa.array(ids),
                "parent_exec_id": pa.array([parent_of[e] for e in ids]),
                "pid": pa.array([int(base64.b64decode(e).decode().rsplit(":", 1)[1]) for e in ids], pa.int64()),
                "process_binary": pa.array([binary_of[e] for e in ids]),
                "parent_binary": pa.array([binary_of[parent_of[e]] for e in ids]),
                "parent_pid": pa.array(
                    [int(base64.b64decode(parent_of[e]).decode().rsplit(":", 1)[1]) for e in ids], pa.int64()
                ),
            }
        )
        out = table.enrich(batch)
        for eid, chain in zip(ids, out.column("ancestor_exec_ids").to_pylist(), strict=True):
            assert chain == truth(eid)
            checked += 1
    assert checked == 90_000
    assert table.stats.evicted > 20_000 and table.stats.compactions >= 1
    assert len(table) < 10_000  # of 30,000: the live ones and the recently exited


def test_enrich_leaves_no_reference_cycles(world: World) -> None:
    """A batch (with its raw JSON) must be freed when the caller drops it, not when the cyclic GC runs."""
    import gc

    p = host_and_pod(world)
    table = ProcessTable()
    lines = scenario_lines(world, p)
    table.enrich(events(lines[:10]))  # warm up: first calls initialise libraries
    gc.collect()
    was = gc.get_debug()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.disable()
        table.enrich(events(lines[10:]))
        table.update(events(lines[:5]))
        found = gc.collect()
        garbage = list(gc.garbage)
    finally:
        gc.garbage.clear()
        gc.set_debug(was)
        gc.enable()
    assert found == 0, sorted({type(o).__name__ for o in garbage})
