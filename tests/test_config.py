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


# --- the located YAML loader: libyaml when present, the pure-Python loader as reference and fallback ----------


def _shape(value: object) -> object:
    """A loaded document with every position the located loader keeps (a plain scalar's style: None or "")."""
    from tetrapipe.config.located import Located, LocatedList

    if isinstance(value, Located):
        marks = {
            k: (
                n.start_mark.line,
                n.start_mark.column,
                n.end_mark.line,
                n.end_mark.column,
                getattr(n, "style", None) or None,
            )
            for k, n in value.value_nodes.items()
        }
        items = {k: _shape(v) for k, v in value.items()}
        return ("map", value.line, value.column, value.key_lines, value.key_columns, marks, items)
    if isinstance(value, LocatedList):
        return ("seq", value.line, value.column, value.item_lines, value.item_columns, [_shape(v) for v in value])
    return (type(value).__name__, value)


def _yaml_files() -> list[Path]:
    files = sorted((REPO / "rules").rglob("*.yaml")) + sorted((REPO / "deploy").rglob("*.yaml"))
    files += sorted((REPO / "tests").rglob("*.yaml"))
    assert len(files) > 20
    return files


def test_libyaml_loader_keeps_the_same_documents_and_positions_as_the_pure_python_one() -> None:
    """Every shipped rule, config and test file: equal values, lines, columns, end marks and scalar styles."""
    import yaml

    from tetrapipe.config.located import CLoader, parse_yaml

    assert yaml.__with_libyaml__ and CLoader is not None  # PyYAML's Linux wheels carry libyaml
    tricky = "a: |\n  x\n  é\nb: >-\n  y\nc: [1, 'z', {d: e}]\n? [k]\n: v\nu: ü€😀\n"
    for text in [p.read_text(encoding="utf-8") for p in _yaml_files()] + [tricky]:
        try:
            pure = parse_yaml(text, pure=True)
        except yaml.YAMLError as exc:  # a test's deliberately broken file: the same error either way
            with pytest.raises(type(exc)) as fast_error:
                parse_yaml(text)
            assert str(fast_error.value) == str(exc)
            continue
        fast = yaml.load(text, Loader=CLoader)  # noqa: S506 - a CSafeLoader
        assert _shape(fast) == _shape(pure)
        assert _shape(parse_yaml(text)) == _shape(fast)


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ('a: "\\q"\n', 1, "found unknown escape character 'q'"),  # libyaml does not name the character
        ("a: *x\n", 1, "found undefined alias 'x'"),
        ("a: 1\nb:\n\tc: 1\n", 3, "found character '\\t' that cannot start any token"),
        ("a: 1\na: 2\n", 2, "duplicate key 'a'"),
        ("key: 'open\n\nc: 1\n", 1, "found unexpected end of stream (while scanning a quoted scalar that starts on"),
        ("x: \udc80\n", 1, "special characters are not allowed"),  # a lone surrogate libyaml cannot even encode
    ],
)
def test_a_broken_yaml_file_is_reported_as_the_pure_python_loader_reports_it(text: str, line: int, reason: str) -> None:
    """libyaml's messages are vaguer: a rejected document is parsed again in pure Python for its error."""
    from tetrapipe.config.located import YamlError, load_yaml

    with pytest.raises(YamlError) as fast:
        load_yaml(Path("r.yaml"), text)
    assert fast.value.line == line and reason in fast.value.reason


def test_without_libyaml_the_pure_python_loader_loads_rules_and_configs_alike(tmp_path: Path) -> None:
    """PyYAML built without libyaml (a source install): rules and config load the same, errors too."""
    script = tmp_path / "nolib.py"
    script.write_text(
        "import sys, pickle\n"
        "sys.modules['yaml._yaml'] = None  # as if PyYAML had been built without libyaml\n"
        "import yaml\n"
        "from tetrapipe.config import located\n"
        "assert not yaml.__with_libyaml__ and located.CLoader is None\n"
        "from tetrapipe.ruleset import load_ruleset\n"
        "rs = load_ruleset([sys.argv[1]])\n"
        "try:\n"
        "    located.load_yaml(located.Path('r.yaml'), 'a: 1\\nb: [2\\n')\n"
        "except located.YamlError as exc:\n"
        "    err = str(exc)\n"
        "sys.stdout.buffer.write(pickle.dumps(("
        "sorted((r.id, r.compiled.condition, r.condition_lines) for r in rs.rules), "
        "[str(e) for e in rs.errors], err)))\n",
        encoding="utf-8",
    )
    out = subprocess.run(
        [sys.executable, str(script), str(REPO / "rules")], capture_output=True, check=True, cwd=tmp_path
    ).stdout
    import pickle

    from tetrapipe.config.located import YamlError, load_yaml
    from tetrapipe.ruleset import load_ruleset

    rules, errors, err = pickle.loads(out)  # our own child's output
    rs = load_ruleset([REPO / "rules"])
    assert len(rules) > 10 and errors == []
    assert rules == sorted((r.id, r.compiled.condition, r.condition_lines) for r in rs.rules)
    with pytest.raises(YamlError) as here:
        load_yaml(Path("r.yaml"), "a: 1\nb: [2\n")
    assert err == str(here.value) and "r.yaml:3:" in err
