"""deploy/: Kubernetes manifests and the docker-compose demo, validated at the schema level.

No cluster is needed: every document is validated against the official
Kubernetes OpenAPI schemas (kubernetes-validate, strict), its references (ConfigMap keys, Secrets, PVCs, volumes, ports named
by probes) resolved inside deploy/, and every container's command line parsed
by the real tetrapipe CLI with the environment the manifest gives it -- so a
renamed flag or environment variable breaks this test, not a rollout.
"""

from __future__ import annotations

import shlex
import tempfile
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from conftest import REPO

from tetrapipe.cli import cli
from tetrapipe.config import load_config

DEPLOY = REPO / "deploy"
K8S = DEPLOY / "kubernetes"

API_VERSIONS = {
    "Namespace": "v1",
    "ServiceAccount": "v1",
    "ConfigMap": "v1",
    "Secret": "v1",
    "Service": "v1",
    "PersistentVolumeClaim": "v1",
    "DaemonSet": "apps/v1",
    "Deployment": "apps/v1",
}
WORKLOADS = ("DaemonSet", "Deployment")


def _docs() -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                out.append((path, doc))
    return out


DOCS = _docs()


def _by_kind(kind: str) -> list[tuple[Path, dict[str, Any]]]:
    return [(p, d) for p, d in DOCS if d.get("kind") == kind]


def _configmaps() -> dict[str, dict[str, str]]:
    return {d["metadata"]["name"]: d.get("data", {}) for _, d in _by_kind("ConfigMap")}


def _secrets() -> dict[str, dict[str, str]]:
    return {d["metadata"]["name"]: d.get("stringData", {}) for _, d in _by_kind("Secret")}


def test_every_document_has_kind_apiversion_and_metadata() -> None:
    kinds = set()
    for path, doc in DOCS:
        if doc.get("kind") == "Kustomization":
            continue
        kind = doc.get("kind")
        assert kind in API_VERSIONS, f"{path.name}: unexpected kind {kind}"
        assert doc.get("apiVersion") == API_VERSIONS[kind], f"{path.name}: {kind} apiVersion"
        meta = doc.get("metadata") or {}
        assert meta.get("name"), f"{path.name}: {kind} without metadata.name"
        if kind != "Namespace":
            assert meta.get("namespace") == "tetrapipe", f"{path.name}: {meta['name']} namespace"
        kinds.add(kind)
    assert {"DaemonSet", "Deployment", "ConfigMap", "Service", "PersistentVolumeClaim"} <= kinds


#: the oldest Kubernetes minor the manifests promise to work on, and the newest schema the validator knows
K8S_VERSIONS = ("1.30.0", "latest")


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_document_validates_against_the_kubernetes_openapi_schema(version: str) -> None:
    """The official schemas (kubernetes-validate), strict: an unknown or misspelt field fails, as kubectl would."""
    import kubernetes_validate as kv

    target = kv.latest_version() if version == "latest" else version
    checked = 0
    for path, doc in DOCS:
        if doc.get("kind") == "Kustomization":  # a kustomize file, not an API object
            continue
        try:
            kv.validate(doc, target, strict=True)
        except kv.ValidationError as exc:
            pytest.fail(
                f"{path.name}: {doc['kind']}/{doc['metadata']['name']} is not valid Kubernetes {target}: "
                f"{exc.message} at {'.'.join(str(p) for p in exc.path)}"
            )
        checked += 1
    assert checked >= 10
    deployment = next(d for _, d in DOCS if d["kind"] == "Deployment")
    typo = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(kv.ValidationError):  # the validator is live: a typo is caught
        kv.validate(typo, target, strict=True)


def test_kustomization_lists_existing_files() -> None:
    kz = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    for res in kz["resources"]:
        assert (K8S / res).exists(), res
    assert "collector-daemonset-grpc.yaml" not in kz["resources"]  # one collector variant at a time


def _workloads() -> list[tuple[Path, dict[str, Any]]]:
    return [(p, d) for p, d in DOCS if d.get("kind") in WORKLOADS]


@pytest.mark.parametrize("path,doc", _workloads(), ids=lambda v: v.name if isinstance(v, Path) else "")
def test_workload_schema_security_probes_resources(path: Path, doc: dict[str, Any]) -> None:
    spec = doc["spec"]
    tpl = spec["template"]
    labels = tpl["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items(), "selector must match the pod labels"
    pod = tpl["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] >= 1000
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for c in pod.get("initContainers", []):
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    for c in pod["containers"]:
        assert c["image"].startswith("ghcr.io/tetrapipe/tetrapipe:")
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"]["drop"] == ["ALL"] and not sc["capabilities"].get("add")
        res = c["resources"]
        assert res["requests"]["cpu"] and res["requests"]["memory"] and res["limits"]["memory"]
        ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        for probe, endpoint in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            p = c[probe]
            if "httpGet" in p:
                assert p["httpGet"]["path"] == endpoint and p["httpGet"]["port"] in ports
            else:
                assert endpoint in " ".join(p["exec"]["command"])
        for m in c.get("volumeMounts", []):
            assert m["name"] in volumes, f"{c['name']}: mount of undeclared volume {m['name']}"
        _check_command(c, pod)
    for v in volumes.values():
        if "persistentVolumeClaim" in v:
            claims = {d["metadata"]["name"] for _, d in _by_kind("PersistentVolumeClaim")}
            assert v["persistentVolumeClaim"]["claimName"] in claims
        if "configMap" in v:
            assert v["configMap"]["name"] in _configmaps()


def _container_env(c: dict[str, Any], pod: dict[str, Any]) -> dict[str, str]:
    env: dict[str, str] = {}
    for src in c.get("envFrom", []):
        if "secretRef" in src:
            env.update(_secrets()[src["secretRef"]["name"]])
    for e in c.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
            continue
        ref = e["valueFrom"]
        if "configMapKeyRef" in ref:
            cm = _configmaps()[ref["configMapKeyRef"]["name"]]
            assert ref["configMapKeyRef"]["key"] in cm, f"no key {ref['configMapKeyRef']['key']}"
            env[e["name"]] = cm[ref["configMapKeyRef"]["key"]]
        elif "fieldRef" in ref:
            env[e["name"]] = {"spec.nodeName": "node-1", "status.podIP": "10.0.0.7"}[ref["fieldRef"]["fieldPath"]]
        else:
            raise AssertionError(f"unexpected env source {ref}")
    return env


def _parse(args: list[str], env: dict[str, str]) -> click.Context:
    """Parse a container command line with the real CLI and the container's environment (nothing runs)."""
    name, *rest = args
    assert name in cli.commands, f"{name!r} is not a tetrapipe command"
    cmd = cli.commands[name]
    for key in env:
        if key.startswith("TETRAPIPE_"):
            assert any(p.envvar == key for p in cmd.params), f"{name} has no option for {key}"
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        return cmd.make_context(name, list(rest))


def _check_command(c: dict[str, Any], pod: dict[str, Any]) -> None:
    env = _container_env(c, pod)
    ctx = _parse(list(c.get("args") or c.get("command")), env)
    name = ctx.command.name
    if name == "collect":
        source = ctx.params["source"]
        if source.startswith("file://"):
            mount = next(m for m in c["volumeMounts"] if source[len("file://") :].startswith(m["mountPath"]))
            vol = next(v for v in pod["volumes"] if v["name"] == mount["name"])
            assert vol["hostPath"]["path"] == "/var/run/cilium/tetragon" and mount.get("readOnly") is True
        else:
            assert pod.get("hostNetwork") is True or any("sock" in m["mountPath"] for m in c["volumeMounts"])
    if name == "forward":
        config = env["TETRAPIPE_CONFIG"]
        mount = next(m for m in c["volumeMounts"] if m["mountPath"] == config)
        vol = next(v for v in pod["volumes"] if v["name"] == mount["name"])
        text = _configmaps()[vol["configMap"]["name"]][mount["subPath"]]
        with tempfile.TemporaryDirectory() as tmp:
            cfg_file = Path(tmp) / "tetrapipe.yaml"
            cfg_file.write_text(text)
            cfg = load_config(cfg_file, env=env)  # the forwarder's file is valid with the forwarder's environment
        assert cfg.sinks and cfg.spool_dir == "/data/spool"
        assert any(m["mountPath"] == "/data" for m in c["volumeMounts"])


def test_collector_daemonset_reads_tetragons_export_dir_and_forwarder_keeps_its_spool() -> None:
    ds = yaml.safe_load((K8S / "collector-daemonset.yaml").read_text())
    assert ds["kind"] == "DaemonSet"
    host_paths = {v["hostPath"]["path"] for v in ds["spec"]["template"]["spec"]["volumes"] if "hostPath" in v}
    assert "/var/run/cilium/tetragon" in host_paths
    fwd = yaml.safe_load((K8S / "forwarder-deployment.yaml").read_text())
    assert fwd["spec"]["template"]["spec"]["containers"][0]["args"][:2] == ["forward", "--from-kafka"]


def test_configmap_holds_deploy_tetrapipe_yaml_verbatim() -> None:
    assert _configmaps()["tetrapipe-config"]["tetrapipe.yaml"] == (DEPLOY / "tetrapipe.yaml").read_text()


def test_services_select_existing_pods_by_a_named_port() -> None:
    pod_labels = [d["spec"]["template"]["metadata"]["labels"] for _, d in _workloads()]
    for _, svc in _by_kind("Service"):
        sel = svc["spec"]["selector"]
        assert any(sel.items() <= labels.items() for labels in pod_labels), svc["metadata"]["name"]
        assert all(p["targetPort"] == "metrics" for p in svc["spec"]["ports"])


# --- docker compose --------------------------------------------------------------------------------


def test_compose_demo() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yaml").read_text())
    services = compose["services"]
    assert {"broker", "collector", "processor", "forwarder"} <= services.keys()
    assert services["broker"]["healthcheck"]["test"]
    for name in ("collector", "processor", "forwarder"):
        svc = services[name]
        assert svc["read_only"] is True and svc["cap_drop"] == ["ALL"]
        assert svc["depends_on"]["broker"]["condition"] == "service_healthy"
        env = {k: str(v) for k, v in svc["environment"].items()}
        command = svc["command"] if isinstance(svc["command"], list) else shlex.split(svc["command"])
        ctx = _parse(command, env)
        for vol in svc.get("volumes", []):
            src = vol.split(":", 1)[0]
            if src.startswith("."):
                assert (DEPLOY / src).exists(), f"{name}: {src} does not exist"
            else:
                assert src in compose["volumes"], f"{name}: undeclared volume {src}"
        if name == "collector":
            assert ctx.params["source"].startswith("file:///samples/")
            assert (REPO / "samples" / ctx.params["source"][len("file:///samples/") :]).exists()
    fwd_cfg = load_config(DEPLOY / "compose" / "tetrapipe.yaml", env={})
    assert fwd_cfg.kafka["bootstrap"] == "broker:9092" and {s.type for s in fwd_cfg.sinks} == {"stdout", "file"}
