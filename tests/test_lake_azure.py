"""A lake in Azure Blob Storage (``az://``), against a real emulator (Azurite), never a mock.

What is promised: every command that takes ``--lake`` takes an ``az://``
URI with ``--lake-option KEY=VALUE`` pairs (or ``TETRAPIPE_LAKE_OPTIONS``,
or a deployment file's ``lake_options``) and behaves as it does on a local
directory, and a credential given that way is never printed, not even when
the store refuses it.
"""

from __future__ import annotations

import datetime as dt
import http.server
import json
import os
import shlex
import subprocess
import threading
import urllib.parse
from pathlib import Path

import pyarrow as pa
import pytest
from azurite import ACCOUNT_KEY, Azurite, lake_uri
from conftest import REPO

from tetrapipe.lake import Lake
from tetrapipe.lake.positions import Position
from tetrapipe.schema import SCHEMAS

INPUTS = [str(REPO / "samples" / "real"), str(REPO / "samples" / "scenario" / "tenant-jobs.log")]
TABLES = ("events", "alerts", "rejects", "tls_stats")
COUNTS_SQL = " UNION ALL ".join(f"SELECT '{t}' AS t, count(*) AS n FROM {t}" for t in TABLES)
#: a well-formed Shared Key that is not the account's: the store refuses it, and it must never be shown
WRONG_KEY = "V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3JvbmdLZXk="


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=300, check=False
    )


def _counts(tetrapipe_cmd: list[str], cwd: Path, lake: str, options: list[str]) -> dict[str, int]:
    proc = _run([*tetrapipe_cmd, "query", COUNTS_SQL, "--lake", lake, *options, "--format", "json"], cwd)
    assert proc.returncode == 0, proc.stderr
    return {row["t"]: row["n"] for row in json.loads(proc.stdout)}


def test_ingest_into_azure_blob_counts_what_a_local_lake_counts(
    tmp_path: Path, azurite: Azurite, az_container: str, tetrapipe_cmd: list[str]
) -> None:
    """The same inputs, once into a directory and once into ``az://``: every table holds the same rows."""
    uri = lake_uri(az_container)
    local = str(tmp_path / "local-lake")
    for lake, options in ((local, []), (uri, azurite.lake_options())):
        proc = _run([*tetrapipe_cmd, "ingest", *INPUTS, "--lake", lake, *options, "-q"], tmp_path)
        assert proc.returncode == 0, proc.stderr
    want = _counts(tetrapipe_cmd, tmp_path, local, [])
    assert want["events"] > 0 and want["alerts"] > 0
    assert _counts(tetrapipe_cmd, tmp_path, uri, azurite.lake_options()) == want
    # the rows are in the container, as Delta tables, and nothing was written beside the command instead
    blobs = azurite.blobs(az_container, "lake/")
    for table in ("events", "alerts"):
        assert f"lake/{table}/_delta_log/00000000000000000000.json" in blobs
        assert any(b.startswith(f"lake/{table}/date=") and b.endswith(".parquet") for b in blobs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["local-lake"]
    # a second ingest of the same inputs adds nothing: the positions live in the remote Delta log too
    proc = _run([*tetrapipe_cmd, "ingest", *INPUTS, "--lake", uri, *azurite.lake_options(), "-q"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert _counts(tetrapipe_cmd, tmp_path, uri, azurite.lake_options()) == want


def test_lake_options_from_the_environment_are_comma_separated(
    tmp_path: Path, azurite: Azurite, az_container: str, tetrapipe_cmd: list[str]
) -> None:
    uri = lake_uri(az_container, "env/lake")
    env = {
        "TETRAPIPE_LAKE": uri,
        "TETRAPIPE_LAKE_OPTIONS": ",".join(f"{k}={v}" for k, v in azurite.storage_options.items()),
    }
    proc = _run([*tetrapipe_cmd, "ingest", INPUTS[1], "-q", "--rules", "none"], tmp_path, env)
    assert proc.returncode == 0, proc.stderr
    proc = _run([*tetrapipe_cmd, "query", "SELECT count(*) AS n FROM events", "--format", "json"], tmp_path, env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["n"] > 0


def test_a_refused_key_is_an_error_that_never_shows_the_key(
    tmp_path: Path, azurite: Azurite, az_container: str, tetrapipe_cmd: list[str]
) -> None:
    """Azurite refuses a wrong Shared Key: the command fails, and neither output holds the key."""
    options = {**azurite.storage_options, "account_key": WRONG_KEY, "max_retries": "0"}
    args = [a for k, v in options.items() for a in ("--lake-option", f"{k}={v}")]
    for cmd in (
        ["ingest", INPUTS[1], "--rules", "none", "-q"],
        ["query", "SELECT count(*) FROM events"],
    ):
        proc = _run([*tetrapipe_cmd, *cmd, "--lake", lake_uri(az_container), *args], tmp_path)
        assert proc.returncode == 1, (cmd, proc.stdout, proc.stderr)
        assert "the lake's storage failed" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert WRONG_KEY not in proc.stdout + proc.stderr, cmd
        assert WRONG_KEY[:12] not in proc.stdout + proc.stderr, cmd
    assert azurite.blobs(az_container) == []


def test_a_lake_option_without_a_key_is_refused_without_echoing_it(tmp_path: Path, tetrapipe_cmd: list[str]) -> None:
    """A key pasted without ``account_key=`` in front is a usage error that does not print it."""
    proc = _run([*tetrapipe_cmd, "query", "SELECT 1", "--lake", "az://c/lake", "--lake-option", ACCOUNT_KEY], tmp_path)
    assert proc.returncode == 2
    assert "KEY=VALUE" in proc.stderr
    assert ACCOUNT_KEY[:12] not in proc.stdout + proc.stderr


def test_lake_commits_and_reads_back_over_azure_blob(azurite: Azurite, az_container: str) -> None:
    """The library level: Lake.commit with a position, skipped when repeated; read back by a second Lake."""
    uri = lake_uri(az_container)
    writer = Lake(uri, storage_options=azurite.storage_options)
    schema = SCHEMAS["rejects"].empty_table().schema
    when = dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC).replace(tzinfo=None)
    rows = pa.Table.from_pydict(
        {"time": [when], "source": ["a.log"], "source_offset": [1], "reason": ["not JSON"], "raw": ["{"]},
        schema=schema,
    )
    position = Position("file:test", 1)
    assert writer.commit("rejects", rows, position) is True
    assert writer.commit("rejects", rows, position) is False  # already held: nothing written twice
    reader = Lake(uri, storage_options=azurite.storage_options)
    assert not reader.is_local
    table = reader.table("rejects")
    assert table is not None and table.to_pyarrow_table().num_rows == 1
    assert reader.committed("rejects", "file:test") == 1
    assert reader.table("events") is None


@pytest.mark.parametrize("bad", ["", "=x"])
def test_empty_keys_are_refused(bad: str, tmp_path: Path, tetrapipe_cmd: list[str]) -> None:
    proc = _run([*tetrapipe_cmd, "query", "SELECT 1", "--lake", "az://c/l", "--lake-option", bad], tmp_path)
    assert proc.returncode == 2, proc.stderr


def test_a_deployment_file_names_the_lake_and_its_options(
    tmp_path: Path, azurite: Azurite, az_container: str, tetrapipe_cmd: list[str]
) -> None:
    """``lake_options`` in the file: ``config show`` masks the key, ``config env`` hands both to the processor,
    and the variables it prints open the lake."""
    uri = lake_uri(az_container, "from-file")
    opts = azurite.storage_options
    conf = tmp_path / "tetrapipe.yaml"
    conf.write_text(
        f"lake: {uri}\n"
        "lake_options:\n"
        f"  account_name: {opts['account_name']}\n"
        "  account_key: ${AZ_KEY}\n"
        f"  endpoint: {opts['endpoint']}\n"
        "  allow_http: true\n"
    )
    env = {"AZ_KEY": ACCOUNT_KEY}
    show = _run([*tetrapipe_cmd, "config", "show", str(conf)], tmp_path, env)
    assert show.returncode == 0, show.stderr
    shown = json.loads(show.stdout)
    assert shown["lake_options"]["account_key"] == "***" and ACCOUNT_KEY not in show.stdout
    assert shown["lake_options"]["allow_http"] == "true"
    proc = _run([*tetrapipe_cmd, "config", "env", str(conf), "process"], tmp_path, env)
    assert proc.returncode == 0, proc.stderr
    variables = dict(shlex.split(line)[0].split("=", 1) for line in proc.stdout.splitlines())
    assert variables["TETRAPIPE_LAKE"] == uri
    ingest = _run([*tetrapipe_cmd, "ingest", INPUTS[1], "--rules", "none", "-q"], tmp_path, variables)
    assert ingest.returncode == 0, ingest.stderr
    assert any(b.startswith("from-file/events/_delta_log/") for b in azurite.blobs(az_container))


def test_workload_identity_variables_ask_entra_id_for_a_storage_token(tmp_path: Path, tetrapipe_cmd: list[str]) -> None:
    """The variables AKS's workload identity webhook injects are enough: tetrapipe (delta-rs) exchanges the
    projected token file at the authority for a storage token. The authority here is a local HTTP server that
    records the request and refuses it (no Entra ID offline): the refusal is a clear error, the token unshown."""
    seen: list[tuple[str, str]] = []

    class Authority(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            seen.append((self.path, body))
            self.send_response(401)
            self.end_headers()
            self.wfile.write(b'{"error": "invalid_client"}')

        def log_message(self, *args: object) -> None:
            pass

    token = tmp_path / "azure-identity-token"
    token.write_text("projected.service-account.token")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Authority)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {
            "AZURE_CLIENT_ID": "11111111-2222-3333-4444-555555555555",
            "AZURE_TENANT_ID": "contoso-tenant",
            "AZURE_FEDERATED_TOKEN_FILE": str(token),
            "AZURE_AUTHORITY_HOST": f"http://127.0.0.1:{server.server_port}",
            "AZURE_STORAGE_ACCOUNT_NAME": "tetrapipeprod",
        }
        args = ["query", "SELECT count(*) FROM events", "--lake", "az://history/lake"]
        # allow_http: the stand-in authority speaks plain HTTP (Entra ID is https://login.microsoftonline.com)
        options = ["--lake-option", "max_retries=0", "--lake-option", "allow_http=true"]
        proc = _run([*tetrapipe_cmd, *args, *options], tmp_path, env)
    finally:
        server.shutdown()
    assert proc.returncode == 1 and "the lake's storage failed" in proc.stderr, proc.stderr
    assert "projected.service-account.token" not in proc.stdout + proc.stderr
    assert seen and seen[0][0] == "/contoso-tenant/oauth2/v2.0/token"
    form = dict(urllib.parse.parse_qsl(seen[0][1]))
    assert form["client_id"] == env["AZURE_CLIENT_ID"]
    assert form["client_assertion"] == "projected.service-account.token"
    assert form["scope"] == "https://storage.azure.com/.default"


AKS = REPO / "deploy" / "kubernetes" / "azure"


def test_the_aks_processor_runs_several_replicas_on_one_blob_lake_without_a_volume() -> None:
    """deploy/kubernetes/azure: valid Kubernetes (strict), several replicas, the lake an az:// URI, no claim,
    workload identity wired (pod label, service account with a client id), and the command line parses."""
    import kubernetes_validate as kv
    import yaml

    from tetrapipe.cli import cli

    docs = {d["kind"]: d for p in sorted(AKS.glob("*.yaml")) for d in yaml.safe_load_all(p.read_text()) if d}
    for doc in docs.values():
        kv.validate(doc, "1.30.0", strict=True)
    dep, sa = docs["Deployment"], docs["ServiceAccount"]
    pod = dep["spec"]["template"]["spec"]
    assert dep["spec"]["replicas"] > 1 and dep["spec"]["strategy"]["type"] == "RollingUpdate"
    assert not any("persistentVolumeClaim" in v for v in pod["volumes"])
    assert dep["spec"]["template"]["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    assert pod["serviceAccountName"] == sa["metadata"]["name"]
    assert sa["metadata"]["annotations"]["azure.workload.identity/client-id"]
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value", "from-a-configmap") for e in container["env"]}
    assert env["TETRAPIPE_LAKE"].startswith("az://") and env["AZURE_STORAGE_ACCOUNT_NAME"]
    assert docs["Secret"]["stringData"]["AZURE_STORAGE_ACCOUNT_KEY"] == "change-me"
    name, *rest = container["args"]
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        ctx = cli.commands[name].make_context(name, rest)
    assert ctx.params["lake_dir"] == env["TETRAPIPE_LAKE"]


def test_optimize_and_vacuum_an_azure_blob_lake_keep_every_row(
    tmp_path: Path, azurite: Azurite, az_container: str, tetrapipe_cmd: list[str]
) -> None:
    """Many small commits (small read chunks) into az://, then ``lake optimize`` and ``lake vacuum``:
    fewer data blobs in the container, the same rows."""
    uri, options = lake_uri(az_container), azurite.lake_options()

    def tetrapipe(*args: str) -> subprocess.CompletedProcess[str]:
        proc = _run([*tetrapipe_cmd, *args, "--lake", uri, *options], tmp_path)
        assert proc.returncode == 0, (args, proc.stderr)
        return proc

    tetrapipe("ingest", INPUTS[1], "--rules", "none", "-q", "--chunk-bytes", "65536")
    before = _counts(tetrapipe_cmd, tmp_path, uri, options)

    def data_blobs() -> list[str]:
        return [b for b in azurite.blobs(az_container, "lake/events/") if b.endswith(".parquet")]

    n_before = len(data_blobs())
    optimized = tetrapipe("lake", "optimize", "--table", "events")
    assert "0 files compacted" not in optimized.stdout, optimized.stdout
    tetrapipe("lake", "vacuum", "--table", "events", "--retention", "0h")
    assert len(data_blobs()) < n_before
    assert _counts(tetrapipe_cmd, tmp_path, uri, options) == before
