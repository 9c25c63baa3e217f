"""deploy/k8s (issue #19.4): the kustomization builds, every variable a zxsync container gets is
a setting, each gets only the secrets it needs (as in docker-compose.yml), the workers run the
compose file's queue groups, KEDA scales each group on the backlog of exactly its queues, and
Redis is a Sentinel set under the master name the processes are told."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import redis
import yaml
from prometheus_client.parser import text_string_to_metric_families
from test_compose import API_SECRETS, APP_SERVICES, dotenv
from test_compose import config as compose_config
from test_console import client, names, settings  # noqa: F401

from console.metrics import render
from console.settings import ConsoleSettings
from workers.redis import sentinel_nodes
from workers.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
IMAGE = "zoho-xero-sync"
KUBECTL = shutil.which("kubectl")
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml where built in: ~5x faster


def resources(directory: Path) -> list[dict[str, Any]]:
    """The documents a kustomization lists, its bases' included (what `kubectl kustomize`
    builds, before it sets the namespace, labels and image tag)."""
    kustomization = yaml.load((directory / "kustomization.yaml").read_text(), Loader=LOADER)
    docs: list[dict[str, Any]] = []
    for entry in kustomization["resources"]:
        path = directory / entry
        if path.is_dir():
            docs += resources(path)
        else:
            docs += [d for d in yaml.load_all(path.read_text(), Loader=LOADER) if d]
    return docs


@pytest.fixture(scope="module")
def docs() -> list[dict[str, Any]]:
    return resources(K8S / "keda")


def named(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def app_containers(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Deployment name (without `zxsync-`) -> its zxsync container."""
    found = {}
    for name, deployment in named(docs, "Deployment").items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["image"] == IMAGE, name
        found[name.removeprefix("zxsync-")] = container
    return found


def secret_example() -> dict[str, dict[str, str]]:
    return {
        d["metadata"]["name"]: d["stringData"]
        for d in yaml.load_all((K8S / "secret.example.yaml").read_text(), Loader=LOADER)
    }


def config_map(docs: list[dict[str, Any]]) -> dict[str, str]:
    return dict(named(docs, "ConfigMap")["zxsync-config"]["data"])


def secrets_of(container: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {
        e["name"]: (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
        for e in container.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    }


def test_every_manifest_parses_and_the_kustomization_builds(docs: list[dict[str, Any]]) -> None:
    for path in sorted(K8S.rglob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.load_all(path.read_text(), Loader=LOADER):
            assert doc and {"apiVersion", "kind", "metadata"} <= set(doc), path
            assert doc["metadata"].get("name"), path
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert len(kinds) == len(docs), "a resource is listed twice"
    if KUBECTL is None:
        pytest.skip("no kubectl: the kustomization was resolved by hand only")
    for overlay in ("base", "keda"):
        built = subprocess.run(
            [KUBECTL, "kustomize", str(K8S / overlay)], capture_output=True, text=True
        )
        assert built.returncode == 0, built.stderr
        out = [d for d in yaml.load_all(built.stdout, Loader=LOADER) if d]
        want = resources(K8S / overlay)
        assert {(d["kind"], d["metadata"]["name"]) for d in out} == {
            (d["kind"], d["metadata"]["name"]) for d in want
        }
        for doc in out:
            if doc["kind"] != "Namespace":
                assert doc["metadata"]["namespace"] == "zxsync", doc["metadata"]["name"]
            template = doc.get("spec", {}).get("template")
            if template:  # the NetworkPolicy admits Redis clients by this label
                assert template["metadata"]["labels"]["app.kubernetes.io/part-of"] == "zxsync"
                for container in template["spec"]["containers"]:
                    assert container["image"] in (f"{IMAGE}:latest", "redis:7.2", "postgres:16")


def test_every_variable_a_container_gets_is_a_setting_and_its_defaults_load(
    docs: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    fields = {f.upper() for f in Settings.model_fields} | {
        f.upper() for f in ConsoleSettings.model_fields
    }
    secrets = secret_example()
    shared = config_map(docs)
    assert set(secrets["zxsync"]) <= fields, set(secrets["zxsync"]) - fields
    for name, container in app_containers(docs).items():
        assert container["envFrom"] == [{"configMapRef": {"name": "zxsync-config"}}], name
        given = dict(shared)
        for variable, (secret, key) in secrets_of(container).items():
            assert key in secrets[secret], f"{name}: {secret}/{key} is not in the example"
            given[variable] = secrets[secret][key]
        for entry in container["env"]:
            assert "secretKeyRef" in entry["valueFrom"], f"{name}: {entry['name']} from where?"
        for variable, value in given.items():
            assert variable in fields or variable.removesuffix("_FILE") in fields, (
                f"{name}: {variable} is not a setting (typo?)"
            )
            monkeypatch.setenv(variable, value)
        Settings(_env_file=None)  # empty values mean the default, not a parse error
        ConsoleSettings(_env_file=None)
        for variable in given:
            monkeypatch.delenv(variable)


def test_each_container_gets_only_the_secrets_compose_gives_it(
    docs: list[dict[str, Any]],
) -> None:
    """Least privilege as in docker-compose.yml (tests/test_compose.py says who needs what):
    each container names exactly the secrets its compose service gets, and no secret sits in
    the ConfigMap every container reads."""
    services = compose_config(dotenv(ROOT / ".env.example"))["services"]
    secret_names = set(secret_example()["zxsync"])
    containers = app_containers(docs)
    assert set(containers) == set(APP_SERVICES)
    for name, container in containers.items():
        composed = {v.removesuffix("_FILE") for v in services[name]["environment"]}
        assert set(secrets_of(container)) == composed & secret_names, name
    assert secrets_of(containers["flower"]).keys() == {"REDIS_URL", "FLOWER_BASIC_AUTH"}
    assert set(secrets_of(containers["worker-sync"])) >= API_SECRETS
    assert "DATABASE_URL" in secrets_of(containers["relay"])
    assert "DATABASE_URL" not in secrets_of(containers["beat"])
    assert not set(config_map(docs)) & (API_SECRETS | secret_names)


def test_postgres_keeps_its_data_on_a_volume_and_the_url_names_its_service(
    docs: list[dict[str, Any]],
) -> None:
    postgres = named(docs, "StatefulSet")["zxsync-postgres"]
    (container,) = postgres["spec"]["template"]["spec"]["containers"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts["/var/lib/postgresql/data"] == "data"
    assert [t["metadata"]["name"] for t in postgres["spec"]["volumeClaimTemplates"]] == ["data"]
    assert "pg_isready" in container["readinessProbe"]["exec"]["command"]
    url = urlparse(secret_example()["zxsync"]["DATABASE_URL"])
    assert (
        url.scheme == "postgresql"
        and url.password == secret_example()["zxsync-postgres"]["password"]
    )
    assert url.hostname is not None
    assert url.port in [p["port"] for p in named(docs, "Service")[url.hostname]["spec"]["ports"]]


def test_each_service_runs_the_compose_files_command(docs: list[dict[str, Any]]) -> None:
    services = compose_config(dotenv(ROOT / ".env.example"))["services"]
    for name, container in app_containers(docs).items():
        assert container["command"] == services[name]["command"], name


def test_pods_run_unprivileged_and_nothing_is_published(docs: list[dict[str, Any]]) -> None:
    for kind in ("Deployment", "StatefulSet"):
        for name, workload in named(docs, kind).items():
            pod = workload["spec"]["template"]["spec"]
            assert pod["securityContext"]["runAsNonRoot"] is True, name
            assert pod["automountServiceAccountToken"] is False, name
            for container in pod["containers"] + pod.get("initContainers", []):
                security = container["securityContext"]
                assert security["readOnlyRootFilesystem"] is True, name
                assert security["allowPrivilegeEscalation"] is False, name
                assert security["capabilities"]["drop"] == ["ALL"], name
    for name, service in named(docs, "Service").items():
        assert service["spec"].get("type", "ClusterIP") == "ClusterIP", f"{name} is published"
    assert named(docs, "Deployment")["zxsync-beat"]["spec"]["replicas"] == 1
    assert named(docs, "Deployment")["zxsync-beat"]["spec"]["strategy"]["type"] == "Recreate"


def test_keda_scales_each_worker_group_on_the_backlog_of_exactly_its_queues(
    docs: list[dict[str, Any]],
    client: redis.Redis,  # noqa: F811
    settings: Settings,  # noqa: F811
) -> None:
    exported = {f.name for f in text_string_to_metric_families(render(client, settings).decode())}
    containers = app_containers(docs)
    scaled = named(docs, "ScaledObject")
    workers = {name for name in containers if name.startswith("worker-")}
    assert {s["spec"]["scaleTargetRef"]["name"] for s in scaled.values()} == {
        f"zxsync-{w}" for w in workers
    }
    for name, scaled_object in scaled.items():
        target = scaled_object["spec"]["scaleTargetRef"]["name"].removeprefix("zxsync-")
        command = containers[target]["command"]
        queues = set(command[command.index("--queues") + 1].split(","))
        (trigger,) = scaled_object["spec"]["triggers"]
        assert trigger["type"] == "prometheus", name
        query = trigger["metadata"]["query"]
        match = re.fullmatch(r'sum\((\w+)\{queue=~"([^"]+)"\}\)', query)
        assert match, query
        assert match.group(1) == "zxsync_queue_backlog" and match.group(1) in exported
        assert set(match.group(2).split("|")) == queues, name
        assert int(trigger["metadata"]["threshold"]) > 0
        # a console or Prometheus down must not read as an empty queue mid-burst
        assert trigger["metadata"]["ignoreNullValues"] == "false", name
        assert scaled_object["spec"]["fallback"]["replicas"] >= 1, name
        assert (
            1 <= scaled_object["spec"]["minReplicaCount"] < scaled_object["spec"]["maxReplicaCount"]
        )


def test_redis_is_a_sentinel_set_under_the_master_name_the_processes_use(
    docs: list[dict[str, Any]],
) -> None:
    master = config_map(docs)["ZXS_REDIS_SENTINEL_MASTER"]
    script = named(docs, "ConfigMap")["zxsync-redis-scripts"]["data"]["configure.sh"]
    assert set(re.findall(r"sentinel monitor (\S+)", script)) == {master}
    assert set(re.findall(r"get-master-addr-by-name (\S+)", script)) == {master}
    assert "appendonly yes" in script
    nodes, password, _ = sentinel_nodes(secret_example()["zxsync"]["REDIS_URL"])
    assert password == secret_example()["zxsync-redis"]["password"]
    services = named(docs, "Service")
    for host, port in nodes:
        assert port in [p["port"] for p in services[host]["spec"]["ports"]], host
    redis_set = named(docs, "StatefulSet")["zxsync-redis"]
    assert redis_set["spec"]["replicas"] == 3
    assert {c["name"] for c in redis_set["spec"]["template"]["spec"]["containers"]} == {
        "redis",
        "sentinel",
    }


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs sh")
@pytest.mark.parametrize(
    ("pod", "sentinels_say", "replica_of"),
    [
        ("zxsync-redis-0", "", None),  # the very first start: pod 0 is the master
        ("zxsync-redis-1", "", "zxsync-redis-0"),
        ("zxsync-redis-0", "zxsync-redis-2", "zxsync-redis-2"),  # pod 0 back after a failover
        ("zxsync-redis-2", "zxsync-redis-2", None),  # the master restarted before a failover
    ],
)
def test_a_redis_pod_takes_the_role_the_sentinels_know(
    docs: list[dict[str, Any]],
    tmp_path: Path,
    pod: str,
    sentinels_say: str,
    replica_of: str | None,
) -> None:
    domain = "zxsync-redis.zxsync.svc.cluster.local"
    script = named(docs, "ConfigMap")["zxsync-redis-scripts"]["data"]["configure.sh"]
    (tmp_path / "configure.sh").write_text(script)
    fake = tmp_path / "bin" / "redis-cli"  # a Sentinel's answer, or none (no Sentinel yet)
    fake.parent.mkdir()
    answer = f"echo {sentinels_say}.{domain}; echo 6379" if sentinels_say else "exit 1"
    fake.write_text(f"#!/bin/sh\n{answer}\n")
    fake.chmod(0o755)
    env = {
        "PATH": f"{fake.parent}:{os.environ['PATH']}",
        "HOSTNAME": pod,
        "POD_NAMESPACE": "zxsync",
        "REDIS_PASSWORD": "pw",
        "REDIS_DATA": str(tmp_path),
    }
    subprocess.run(["sh", str(tmp_path / "configure.sh")], env=env, check=True, timeout=30)
    redis_conf = (tmp_path / "conf" / "redis.conf").read_text()
    sentinel_conf = (tmp_path / "conf" / "sentinel.conf").read_text()
    master = f"{replica_of or pod}.{domain}"
    if replica_of:
        assert f"replicaof {master} 6379" in redis_conf
    else:
        assert "replicaof" not in redis_conf
    assert f"sentinel monitor zxsync {master} 6379 2" in sentinel_conf
    assert f"replica-announce-ip {pod}.{domain}" in redis_conf
    assert "sentinel auth-pass zxsync pw" in sentinel_conf
