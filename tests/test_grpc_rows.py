"""Events decoded from protobuf give exactly the same rows as the same events read from JSON."""

from __future__ import annotations

import json

from conftest import real_events

from tetrapipe.schema import OSS_KINDS
from tetrapipe.sources.grpc.codec import json_to_response, response_to_json
from tetrapipe.transforms.normalize import normalize_lines

PROVENANCE = {"raw", "source", "source_offset"}


def test_protobuf_and_json_paths_give_identical_rows() -> None:
    lines = [
        json.dumps(ev, separators=(",", ":"))
        for _, _, ev in real_events()
        if next(k for k in ev if k not in ("node_name", "time")) in OSS_KINDS
    ]
    assert len(lines) >= 30
    from_json = normalize_lines(lines).events
    from_grpc = normalize_lines([response_to_json(json_to_response(line)) for line in lines]).events
    assert from_grpc.num_rows == from_json.num_rows == len(lines)
    cols = [c for c in from_json.column_names if c not in PROVENANCE]
    assert from_grpc.select(cols).to_pylist() == from_json.select(cols).to_pylist()
    # and the original event survives the trip (raw differs only in key order / spacing)
    for a, b in zip(from_json.column("raw").to_pylist(), from_grpc.column("raw").to_pylist(), strict=True):
        assert json.loads(a) == json.loads(b)


def _key_order(value: object) -> object:
    """Every object's keys in order, recursively (what json.loads(a) == json.loads(b) ignores)."""
    if isinstance(value, dict):
        return [(k, _key_order(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [_key_order(v) for v in value]
    return None


def test_codec_writes_keys_in_tetragon_order() -> None:
    """Go's protojson writes fields in declaration order and map entries sorted, and so must the codec.

    Field-number order put ``node_name`` (1000) and ``time`` (1001) before
    ``rate_limit_info`` (40001), and the upb map order shuffled pod labels: the
    normalizer then had to re-serialize every such line before reading it.
    """
    lines = [
        json.dumps(ev, separators=(",", ":"))
        for _, _, ev in real_events()
        if next(k for k in ev if k not in ("node_name", "time")) in OSS_KINDS
    ]
    assert any(
        len(json.loads(line)[next(iter(json.loads(line)))]["process"]["pod"].get("pod_labels", {})) > 1
        for line in lines
        if "pod_labels" in line
    )
    for line in lines:
        assert _key_order(json.loads(response_to_json(json_to_response(line)))) == _key_order(json.loads(line))
    rate = {
        "rate_limit_info": {"number_of_dropped_process_events": "7"},
        "node_name": "n1",
        "time": "2024-01-01T00:00:00Z",
        "cluster_name": "c1",
        "node_labels": {"zone": "b", "arch": "amd64"},
    }
    shuffled = {k: rate[k] for k in ("node_labels", "time", "cluster_name", "node_name", "rate_limit_info")}
    out = json.loads(response_to_json(json_to_response(json.dumps(shuffled))))
    assert list(out) == ["rate_limit_info", "node_name", "time", "cluster_name", "node_labels"]
    assert list(out["node_labels"]) == ["arch", "zone"]
    arg = {"process_kprobe": {"function_name": "f", "args": [{"label": "fd", "int_arg": 3}]}}
    out = json.loads(response_to_json(json_to_response(json.dumps(arg))))
    assert list(out["process_kprobe"]["args"][0]) == ["int_arg", "label"]
