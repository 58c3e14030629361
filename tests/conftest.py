"""Shared fixtures: paths to the real Tetragon samples and a fresh lake per test."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import peers
import pytest

pytest_plugins = ["conftest_kafka", "azurite"]  # fixtures: kafka_broker, azurite (tests/azurite.py)


#: the edit-test loop (`pytest -m "not slow"`, under 90 s) leaves out what takes seconds each: whole modules
#: that run a broker, SIEMs or the pipeline end to end, and single long tests elsewhere (tests/test_image.py and
#: tests/test_installed.py mark themselves). CI runs everything.
SLOW_MODULES = {
    "test_process.py",
    "test_process_azure.py",  # the processor on an az:// lake in Azurite: kill -9, two replicas
    "test_e2e_forward.py",
    "test_run_vs_process.py",
    "test_enriched_stream.py",
    "test_collect.py",
    "test_inputs.py",  # gzip, FIFO, follow and dedup end to end, many through the command line
    "test_hostile_output.py",  # every command as a subprocess, on a pipe and a terminal
    "test_normalize_properties.py",  # hypothesis over every real event
}
SLOW_TESTS = {
    "test_forward_kill.py::test_kill_9_at_random_points_loses_nothing_and_repeats_at_most_a_batch_a_kill",
    "test_forward_kill.py::test_a_kill_before_the_acks_of_a_replayed_spool_loses_nothing",
    "test_forward_kill.py::test_a_kill_while_hec_acks_are_overdue_loses_nothing_from_kafka",
    "test_forward_kill.py::test_exit_at_eof_waits_for_the_partitions_another_member_holds",
    "test_lake_delta.py::test_kill_9_at_random_points_then_a_full_run_stores_every_event_and_alert_once",
    "test_ingest.py::test_a_failing_transform_stops_the_ingest_and_a_rerun_completes_it_once",
    "test_ingest.py::test_query_while_an_ingest_is_running",
    "test_ingest.py::test_one_run_over_a_log_and_its_gzip_copy_ingests_it_once",
    "test_ancestry.py::test_any_order_any_batching_never_lies",
    "test_ancestry.py::test_memory_stays_flat_over_a_million_short_lived_processes",
    "test_ancestry.py::test_a_million_live_processes_fit_in_200_mb",
    "test_restart_state.py::test_run_prints_alerts_as_they_fire_and_a_restart_does_not_repeat_them",
    "test_sigma.py::test_import_then_detect_on_the_scenario",
    "test_safety.py::test_query_output_tree_page_and_optimized_files_are_owner_only",
    "test_normalize.py::test_rows_keep_the_log_order_across_scan_chunks",
    "test_tree.py::test_html_badges_are_never_clipped_in_chromium",
    "test_tree.py::test_html_in_headless_chromium",
    "test_ingest.py::test_ingest_prints_the_alerts_of_this_run_not_the_whole_lake",
    "test_chains.py::test_kill_9_between_steps_then_a_rerun_alerts_every_chain_exactly_once",
    "test_chains.py::test_generated_chains_split_over_micro_batches_and_out_of_order_fire_once_live_and_retro",
    "test_chains.py::test_a_hundred_thousand_partial_chains_stay_under_200_mb",
    "test_chains_threshold.py::test_bursts_counted_across_micro_batches_fire_once_with_the_backtests_totals",
    "test_chains_threshold.py::test_a_burst_split_by_a_restart_still_fires_once",
    "test_chains_first_seen.py::test_the_saved_hunt_lists_the_baseline_and_since_learns_again",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        module = item.path.name
        if module in SLOW_MODULES or f"{module}::{item.name.split('[')[0]}" in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Real peers (rsyslogd, Chromium, buildah) are installed before any test runs, or the run stops saying how."""
    try:
        peers.ensure()
    except RuntimeError as exc:
        pytest.exit(str(exc), returncode=4)


REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"
_SHARED = REPO.parent / "shared" / "tetragon-samples"


def _real_logs() -> list[Path]:
    """The real Tetragon events: samples/real/ in the repo (copies of shared/tetragon-samples)."""
    local = [SAMPLES / "real" / "events-docs.log", SAMPLES / "real" / "events-docs-more.log"]
    if all(p.exists() for p in local):
        return local
    return [_SHARED / "events-docs.jsonl", _SHARED / "events-docs-more.jsonl"]


REAL_LOGS = _real_logs()


def real_events() -> list[tuple[Path, int, dict]]:
    out = []
    for path in REAL_LOGS:
        for i, line in enumerate(path.read_text().splitlines(), start=1):
            if line.strip():
                out.append((path, i, json.loads(line)))
    return out


@pytest.fixture
def lake_dir(tmp_path: Path) -> Path:
    return tmp_path / "lake"


@pytest.fixture
def tetrapipe_cmd() -> list[str]:
    """The installed console script when present, else the module (same code)."""
    exe = shutil.which("tetrapipe")
    return [exe] if exe else [sys.executable, "-m", "tetrapipe"]


@pytest.fixture(autouse=True)
def _no_env_leak(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("TETRAPIPE_"):
            monkeypatch.delenv(key, raising=False)
