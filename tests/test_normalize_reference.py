"""Every line we have reads exactly as with the reference queries (see tests/reference_normalizer.py).

Why whole tables: the normalizer's queries are rewritten for speed, and nothing they
produce may move: ``event_id`` is stored and deduplicates across runs, a reject's
reason is what a person reads, a warning flags a tampered log. So every real sample,
the scenario, a slice of generated traffic (all the kinds and argument shapes the
benchmark has) and lines broken on purpose are normalized both ways and the outputs
compared whole: values, Arrow types, order.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REAL_LOGS, REPO
from reference_normalizer import REFERENCE_SQL, assert_same_output, reference_normalize

import tetrapipe.transforms.normalize.normalizer as normalizer_module
from tetrapipe.transforms.normalize import Normalizer, normalize_lines

_SHARED = REPO.parent / "shared" / "tetragon-samples"
_SAMPLES = sorted({*REAL_LOGS, REPO / "samples" / "scenario" / "tenant-jobs.log", *_SHARED.glob("*.jsonl")})

#: lines that take the other ways through the normalizer: re-serialized (another key
#: order, a repeated key, an unknown kind first), careful (invalid JSON, not an object,
#: no event key, bad time), wrong JSON types where columns are read
_ODD = [
    '{"process_exec":{"process":{"exec_id":"abc"',
    "hello world",
    "[1, 2]",
    "42",
    '{"node_name":"x","time":"2024-01-01T00:00:00Z"}',
    '{"process_exec":{},"time":"yesterday"}',
    '{"process_exec":"x","time":"2024-01-01T00:00:00Z"}',
    '{"time":"2024-01-01T00:00:00Z","process_exec":{"process":{"binary":"/bin/a","pid":"7"}}}',
    '{"process_exec":{"process":{"binary":"/bin/a","binary":"/bin/b"}},"time":"2024-01-01T00:00:00Z"}',
    '{"process_future":{"process":{"exec_id":"e1","binary":"/x"},"what":[1,{"a":2}]},"time":"2024-01-01T00:00:00Z"}',
    '{"process_kprobe":{"process":{"exec_id":"e2"},"function_name":"__x64_sys_openat",'
    '"args":[{"int_arg":-100},{"string_arg":"/etc/shadow"},{"int_arg":577}]},"time":"2024-01-01T00:00:00.123456789Z"}',
    '{"process_kprobe":{"process":{"exec_id":"e3"},"function_name":"x","args":"notalist",'
    '"return":{"int_arg":1,"label":"r"}},"time":"2024-01-01T00:00:00Z"}',
    '{"process_kprobe":{"process":{"exec_id":"e4","pod":{"pod_labels":{"b":"1","a":"2"}},"ns":{"uts":{"is_host":true}}},'
    '"function_name":"security_file_permission","args":[{"file_arg":{"path":"/p","permission":"-rw"}},{"int_arg":2},'
    '{"int_arg":3},{"int_arg":4},{"int_arg":5}]},"time":"2024-01-01T00:00:00Z"}',
    '{"process_throttle":{"type":"THROTTLE_START","cgroup":"c","extra":{"z":1,"a":2}},"time":"2024-01-01T00:00:00Z"}',
    '{"rate_limit_info":{"number_of_dropped_process_events":"12"},"node_name":"n","time":"2024-01-01T00:00:00Z"}',
    '{"process_exec":{"process":{"exec_id":"e5","cap":{"effective":"CAP_X"},"pod":{"pod_labels":[1]}}},'
    '"time":"2024-01-01T00:00:00Z"}',
    # labels of every JSON type (the map is built apart from the query: see labels_map)
    *(
        '{"process_exec":{"process":{"exec_id":"e6","pod":{"name":"p","pod_labels":LABELS}}},"time":"2024-01-01T00:00:00Z"}'.replace(
            "LABELS", labels
        )
        for labels in (
            '{"a":1,"b":null,"c":true,"d":{"x":[1, 2]},"e":[],"f":1.50,"g":1e999,"h":"\\u00e9"}',
            "{}",
            '{"a":"1","a":"2"}',
            '"{\\"a\\":\\"b\\"}"',
            '"{}"',
            "null",
            '{"":"x","z":"y"}',
        )
    ),
    # times with an offset (read in UTC), or one DuckDB cannot read (a bad time)
    *(
        '{"process_exec":{"process":{"exec_id":"e7","start_time":"WHEN","pod":{"container":{"start_time":"WHEN"}}},'
        '"parent":{"start_time":"WHEN"}},"time":"WHEN"}'.replace("WHEN", when)
        for when in (
            "2024-01-01T02:00:00.123456789+02:00",
            "2023-12-31T18:30:00.5-05:30",
            "2024-01-01T00:00:00",
            "2024-01-01T00:00:00 +02:00",
        )
    ),
]


@pytest.fixture(scope="module")
def normalizers() -> Iterator[tuple[Normalizer, Normalizer]]:
    new, old = Normalizer(), Normalizer()
    yield new, old
    new.close()
    old.close()


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """3,000 lines of the benchmark's traffic (a pure function of count and seed)."""
    out = tmp_path_factory.mktemp("gen") / "events.jsonl"
    script = REPO / "bench" / "gen_events.py"
    subprocess.run([sys.executable, str(script), "--count", "3000", "--seed", "7", "--out", str(out)], check=True)
    return out.read_text().splitlines()


def test_the_reference_queries_are_not_the_ones_in_use() -> None:
    """Else every comparison below would pass whatever the queries do."""
    assert all(getattr(normalizer_module, name) != sql for name, sql in REFERENCE_SQL.items())


@pytest.mark.parametrize("path", _SAMPLES, ids=lambda p: p.name)
def test_every_sample_reads_as_with_the_reference_queries(
    normalizers: tuple[Normalizer, Normalizer], path: Path
) -> None:
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    new, old = normalizers
    got = normalize_lines(lines, source=path.name, normalizer=new)
    assert got.events.num_rows > 0
    assert_same_output(got, reference_normalize(lines, old, source=path.name))


def test_generated_traffic_reads_as_with_the_reference_queries(
    normalizers: tuple[Normalizer, Normalizer], generated: list[str]
) -> None:
    new, old = normalizers
    got = normalize_lines(generated, normalizer=new)
    assert got.events.num_rows == len(generated)
    assert_same_output(got, reference_normalize(generated, old))


def test_odd_lines_read_as_with_the_reference_queries(normalizers: tuple[Normalizer, Normalizer]) -> None:
    """Each way through the normalizer (fast, re-read, careful, reject), between good lines."""
    good = REAL_LOGS[0].read_text().splitlines()[0]
    lines = [x for line in _ODD for x in (good, line)] + [json.dumps(json.loads(good), indent=None, sort_keys=True)]
    new, old = normalizers
    got = normalize_lines(lines, normalizer=new)
    assert got.rejects.num_rows >= 6 and got.events.column("warnings").drop_null().to_pylist()
    assert_same_output(got, reference_normalize(lines, old))
