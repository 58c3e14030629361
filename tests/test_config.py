"""The deployment configuration file: validation with file:line locations, environment, the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from tetrapipe.config import ConfigError, command_env, expand_env, load_config, parse_config

DEPLOY = REPO / "deploy" / "tetrapipe.yaml"
ENV = {"SPLUNK_HEC_TOKEN": "secret-token"}


def problems(text: str, env: dict[str, str] | None = None, toml: bool = False) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "t.yaml" if not toml else "t.toml", env=env or {}, toml=toml)
    return [str(p) for p in info.value.problems]


def test_shipped_configuration_is_valid() -> None:
    cfg = load_config(DEPLOY, env=ENV)
    assert [s.name for s in cfg.sinks] == ["splunk", "syslog", "archive"]
    splunk = cfg.sinks[0]
    assert splunk.type == "hec" and splunk.format == "ocsf" and splunk.options["token"] == "secret-token"
    assert splunk.options["ack"] is True and splunk.delivery["batch_size"] == 500
    assert cfg.sinks[1].filters["min_severity"] == "medium" and cfg.sinks[1].options["port"] == 6514
    assert cfg.sinks[2].enabled is False
    assert cfg.kafka["alerts_topic"] == "tetrapipe.alerts" and cfg.lake == "/data/lake"
    assert cfg.redacted()["sinks"][0]["options"]["token"] == "***"


def test_every_error_reported_at_once_with_its_line_and_column() -> None:
    text = """\
version: 1
lake: /tmp/lake
spool_dri: /tmp/spool
sinks:
  - name: splunk
    type: hec
    format: leef
    options:
      url: http://splunk:8088
      tokne: abc
  - name: splunk
    type: syslog
    options:
      port: seventy
      protocol: sctp
    delivery:
      batch_size: 0
"""
    got = problems(text)
    assert got == [
        "t.yaml:3:1: (top level): unknown key 'spool_dri' (did you mean 'spool_dir'?)",
        "t.yaml:7:13: sinks[0].format: must be one of native, ocsf, ecs, cef, slack, not 'leef'",
        "t.yaml:9:7: sinks[0].options: missing required key 'token'",
        "t.yaml:10:7: sinks[0].options: unknown key 'tokne' (did you mean 'token'?)",
        "t.yaml:11:11: sinks[1].name: duplicate sink name 'splunk' (also sinks[0])",
        "t.yaml:14:13: sinks[1].options.port: expected an integer, got 'seventy'",
        "t.yaml:15:17: sinks[1].options.protocol: must be one of udp, tcp, tls, not 'sctp'",
        "t.yaml:17:19: sinks[1].delivery.batch_size: must be at least 1, not 0",
    ]


def test_yaml_syntax_error_and_duplicate_key_located() -> None:
    assert problems("sinks:\n  - name: a\n   type: hec\n")[0].startswith("t.yaml:3:")
    assert problems("lake: a\nlake: b\n") == ["t.yaml:2:1: duplicate key 'lake'"]


def test_environment_expansion() -> None:
    assert expand_env("${A}-${B:-dflt}-$$", {"A": "x"}) == "x-dflt-$"
    text = "sinks:\n  - name: s\n    type: syslog\n    options:\n      port: ${PORT:-5514}\n      host: ${HOST}\n"
    cfg = parse_config(text, env={"HOST": "rsyslog"})
    assert cfg.sinks[0].options["port"] == 5514 and cfg.sinks[0].options["host"] == "rsyslog"
    assert problems(text) == [
        "t.yaml:6:13: sinks[0].options.host: environment variable HOST is not set "
        "(write ${HOST:-default} for a default)"
    ]


def test_toml_configuration_lines() -> None:
    text = 'lake = "/x"\n\n[[sinks]]\nname = "f"\ntype = "file"\n[sinks.options]\nmax_bytes = "big"\n'
    got = problems(text, toml=True)
    assert got == [
        "t.toml:6: sinks[0].options: missing required key 'path'",
        "t.toml:7: sinks[0].options.max_bytes: expected an integer, got 'big'",
    ]


def test_kafka_sink_defaults_to_the_top_level_bootstrap() -> None:
    text = "kafka: {bootstrap: 'b:9092'}\nsinks:\n  - {name: k, type: kafka, options: {topic: siem}}\n"
    assert parse_config(text).sinks[0].options["bootstrap"] == "b:9092"
    assert "missing 'bootstrap'" in problems("sinks:\n  - {name: k, type: kafka, options: {topic: siem}}\n")[0]


def test_kafka_sink_takes_the_files_client_unless_it_names_one() -> None:
    top = "kafka: {bootstrap: 'b:9092', client: kafka-python}\nsinks:\n"
    assert parse_config(top + "  - {name: k, type: kafka, options: {topic: s}}\n").sinks[0].options["client"] == (
        "kafka-python"
    )
    own = top + "  - {name: k, type: kafka, options: {topic: s, client: confluent}}\n"
    assert parse_config(own).sinks[0].options["client"] == "confluent"
    bad = problems("sinks:\n  - {name: k, type: kafka, options: {bootstrap: 'b:1', topic: s, client: java}}\n")
    assert len(bad) == 1 and "sinks[0].options.client" in bad[0] and "java" in bad[0]


def test_hec_sourcetype_follows_the_format_unless_set() -> None:
    from tetrapipe.sinks.siem import build_sink

    hec = "{name: %s, type: hec, format: %s, options: {url: 'http://127.0.0.1:1', token: t%s}}"
    text = "sinks:\n" + "".join(
        "  - " + hec % args + "\n"
        for args in (("j", "ocsf", ""), ("c", "cef", ""), ("mine", "cef", ", sourcetype: 'cef:arcsight'"))
    )
    sinks = [build_sink(sc, None) for sc in parse_config(text).sinks]
    assert [s.sourcetype for s in sinks] == ["_json", "tetrapipe:cef", "cef:arcsight"]


def test_command_env_bridges_the_file_to_collect_and_process() -> None:
    cfg = load_config(DEPLOY, env=ENV)
    collect = command_env(cfg, "collect")
    assert collect["TETRAPIPE_SOURCE"] == "file:///var/run/cilium/tetragon/tetragon.log"
    assert collect["TETRAPIPE_KAFKA"] == "kafka:9092" and collect["TETRAPIPE_TOPIC"] == "tetragon.events"
    process = command_env(cfg, "process")
    assert process["TETRAPIPE_ALERTS_TOPIC"] == "tetrapipe.alerts" and process["TETRAPIPE_BATCH_SIZE"] == "20000"
    assert process["TETRAPIPE_RULES"] == "/etc/tetrapipe/rules" and process["TETRAPIPE_LAKE"] == "/data/lake"
    assert cfg.kafka["events_topic"] == "" and "TETRAPIPE_EVENTS_TOPIC" not in process  # off unless set
    streaming = parse_config("kafka: {bootstrap: k:9092, events_topic: tetrapipe.events}\n", "t.yaml", env={})
    assert command_env(streaming, "process")["TETRAPIPE_EVENTS_TOPIC"] == "tetrapipe.events"
    with pytest.raises(ValueError, match="collect, process, forward"):
        command_env(cfg, "ingest")


def test_processor_tls_window_is_checked_and_reaches_the_processor() -> None:
    cfg = parse_config("processor: {tls_window: 5m}\n", "t.yaml", env={})
    assert command_env(cfg, "process")["TETRAPIPE_TLS_WINDOW"] == "5m"
    assert problems("processor:\n  tls_window: soon\n") == [
        "t.yaml:2:15: processor.tls_window: must be a positive duration (30s, 5m, 1h), not 'soon'"
    ]
    assert problems("processor: {tls_window: 0s}\n")[0].endswith("not '0s'")


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    full = {k: v for k, v in os.environ.items() if not k.startswith(("TETRAPIPE_", "SPLUNK_"))} | (env or {})
    return subprocess.run(
        [sys.executable, "-m", "tetrapipe", *args], capture_output=True, text=True, env=full, timeout=60
    )


def test_config_check_cli(tmp_path: Path) -> None:
    ok = _cli("config", "check", str(DEPLOY), env=ENV)
    assert ok.returncode == 0 and "OK" in ok.stdout and "splunk (hec, ocsf, alerts)" in ok.stdout
    missing = _cli("config", "check", str(DEPLOY))
    assert missing.returncode == 1
    assert f"{DEPLOY}:44:14: sinks[0].options.token: environment variable SPLUNK_HEC_TOKEN is not set" in missing.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("sinks:\n  - name: x\n    type: splunk\n")
    res = _cli("config", "check", str(bad))
    assert res.returncode == 1
    assert (
        res.stderr.strip() == f"{bad}:3:11: sinks[0].type: must be one of hec, syslog, file, stdout, webhook, "
        "kafka, not 'splunk'"
    )
    assert _cli("config", "check", str(tmp_path / "nope.yaml")).returncode == 1


def test_config_show_masks_secrets_and_env_lines() -> None:
    shown = _cli("config", "show", str(DEPLOY), env=ENV)
    assert shown.returncode == 0 and "secret-token" not in shown.stdout and '"***"' in shown.stdout
    env = _cli("config", "env", str(DEPLOY), "process", env=ENV)
    assert env.returncode == 0 and "TETRAPIPE_ALERTS_TOPIC=tetrapipe.alerts" in env.stdout.splitlines()


SECRETS = [
    "kafka-pw-1",
    "keystore-pw-2",
    "oauth-3",
    "hec-pw-4",
    "hec-token-5",
    "hook-pw-6",
    "T000-path-7",
    "api-k-8",
    "hdr-9",
    "sink-kafka-pw-10",
    "jaas-pw-11",
]


def test_config_show_masks_every_secret_and_every_url_password(tmp_path: Path) -> None:
    """Schema secrets, secret-looking keys of the free Kafka maps, and a URL's password, wherever they are."""
    import json

    cfg = tmp_path / "c.yaml"
    cfg.write_text("""\
kafka:
  bootstrap: kafka:9093
  options:
    security_protocol: SASL_SSL
    sasl_mechanism: PLAIN
    sasl_plain_username: tetrapipe
    sasl_plain_password: kafka-pw-1
    ssl_password: keystore-pw-2
    sasl_oauth_token_provider: oauth-3
    ssl_check_hostname: true
    ssl_keyfile: /etc/tls/client.key
sources: [{type: grpc, address: "unix:///var/run/tetragon/tetragon.sock"}]
sinks:
  - name: splunk
    type: hec
    options: {url: "https://hec-user:hec-pw-4@splunk:8088", token: hec-token-5}
  - name: soar
    type: webhook
    options:
      url: "https://bot:hook-pw-6@soar.example:8443/hooks/T000-path-7?api_key=api-k-8&team=blue"
      headers: {Authorization: "Bearer hdr-9", X-Team: blue}
  - name: copy
    type: kafka
    options:
      topic: alerts
      options: {sasl_plain_password: sink-kafka-pw-10, "sasl.jaas.config": "password=jaas-pw-11", acks: all}
""")
    shown = _cli("config", "show", str(cfg))
    assert shown.returncode == 0, shown.stderr
    assert [s for s in SECRETS if s in shown.stdout] == []
    data = json.loads(shown.stdout)
    opts = data["kafka"]["options"]
    assert (opts["sasl_plain_password"], opts["ssl_password"], opts["sasl_oauth_token_provider"]) == ("***",) * 3
    assert (opts["ssl_check_hostname"], opts["ssl_keyfile"], opts["sasl_plain_username"]) == (
        True,
        "/etc/tls/client.key",
        "tetrapipe",
    )
    splunk, soar, copy = (s["options"] for s in data["sinks"])
    assert splunk["url"] == "https://hec-user:***@splunk:8088" and splunk["token"] == "***"
    assert soar["url"] == "https://bot:***@soar.example:8443/***?api_key=***&team=blue"
    assert soar["headers"] == {"Authorization": "***", "X-Team": "***"}
    assert copy["options"] == {"sasl_plain_password": "***", "sasl.jaas.config": "***", "acks": "all"}
    assert data["sources"][0]["address"] == "unix:///var/run/tetragon/tetragon.sock"


def test_a_url_quoted_back_in_a_problem_is_masked() -> None:
    assert problems("metrics: {port: 'http://ops:hunter2@grafana:3000'}\n") == [
        "t.yaml:1:17: metrics.port: expected an integer, got 'http://ops:***@grafana:3000'"
    ]


def test_metrics_host_is_loopback_unless_the_file_names_one() -> None:
    """No host in the file: no TETRAPIPE_METRICS_HOST, so collect and process keep their 127.0.0.1 default."""
    cfg = parse_config("metrics: {port: 9477}\n", "t.yaml", env={})
    assert cfg.metrics == {"host": None, "port": 9477}
    for command in ("collect", "process"):
        env = command_env(cfg, command)
        assert env["TETRAPIPE_METRICS_PORT"] == "9477" and "TETRAPIPE_METRICS_HOST" not in env
    wide = parse_config("metrics: {port: 9477, host: 0.0.0.0}\n", "t.yaml", env={})
    assert command_env(wide, "process")["TETRAPIPE_METRICS_HOST"] == "0.0.0.0"


def test_sink_option_defaults_are_the_sink_classes_own() -> None:
    """A sink option's default has one home, the sink's keyword default; the schema only types and limits it."""
    import inspect

    from tetrapipe.config.schema import SINK_OPTIONS, sink_section
    from tetrapipe.sinks.siem import sink_class

    for type_name, spec in SINK_OPTIONS.items():
        params = inspect.signature(sink_class(type_name).__init__).parameters
        assert set(spec.fields) <= set(params), type_name
        for key, f in sink_section(type_name).fields.items():
            if not f.required and key not in ("sourcetype", "bootstrap"):  # chosen per format / from kafka:
                assert f.default == params[key].default, (type_name, key)
