"""The Kubernetes manifests (deploy/kubernetes, docs/operations.md "Kubernetes"): kustomize builds
them (``kubectl kustomize``), every object validates against the Kubernetes schema
(kubernetes-validate, strict: unknown fields are errors), and they hold what production needs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.services import require

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
SCHEMA_VERSION = "1.37.0"
BUILDS = ("base", "overlays/production")


def kustomize(folder: str) -> list[dict]:
    kubectl = shutil.which("kubectl")
    require(kubectl is not None, "kubectl is not installed (.ci/run installs it)")
    result = subprocess.run(
        [kubectl, "kustomize", str(KUBERNETES / folder)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def production() -> list[dict]:
    return kustomize("overlays/production")


def find(objects: list[dict], kind: str, name: str) -> dict:
    [obj] = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return obj


def pod_specs(objects: list[dict]) -> dict[str, dict]:
    return {o["metadata"]["name"]: o["spec"]["template"]["spec"] for o in objects if o["kind"] in ("Deployment", "Job")}


@pytest.mark.parametrize("folder", BUILDS)
def test_every_object_validates_against_the_kubernetes_schema(folder):
    objects = kustomize(folder)
    assert objects
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, SCHEMA_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message} at {list(exc.path)}")


def test_every_piece_is_there(production):
    kinds = {(o["kind"], o["metadata"]["name"]) for o in production}
    assert kinds >= {
        ("Namespace", "rolegate"),
        ("Deployment", "rolegate-web"),
        ("Deployment", "rolegate-worker"),
        ("Deployment", "rolegate-beat"),
        ("Job", "rolegate-migrate"),
        ("Service", "rolegate-web"),
        ("Ingress", "rolegate"),
        ("HorizontalPodAutoscaler", "rolegate-web"),
        ("PodDisruptionBudget", "rolegate-web"),
        ("NetworkPolicy", "rolegate-deny-ingress"),
        ("NetworkPolicy", "rolegate-web-from-ingress"),
        ("NetworkPolicy", "rolegate-metrics-from-prometheus"),
    }
    assert all(o["metadata"].get("namespace") == "rolegate" for o in production if o["kind"] != "Namespace")
    # Secrets are referenced, never shipped in the manifests.
    assert not [o for o in production if o["kind"] == "Secret"]


def test_web_is_replicated_probed_autoscaled_and_protected_from_disruption(production):
    web = find(production, "Deployment", "rolegate-web")
    assert web["spec"]["replicas"] >= 2
    [container] = web["spec"]["template"]["spec"]["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    hpa = find(production, "HorizontalPodAutoscaler", "rolegate-web")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "rolegate-web" and hpa["spec"]["minReplicas"] >= 2
    pdb = find(production, "PodDisruptionBudget", "rolegate-web")
    labels = web["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = find(production, "Service", "rolegate-web")
    assert service["spec"]["selector"].items() <= labels.items()
    ingress = find(production, "Ingress", "rolegate")
    assert ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] == "rolegate-web"


def test_beat_is_a_singleton_and_migrations_are_a_job(production):
    beat = find(production, "Deployment", "rolegate-beat")
    assert beat["spec"]["replicas"] == 1 and beat["spec"]["strategy"] == {"type": "Recreate"}
    assert beat["spec"]["template"]["spec"]["containers"][0]["command"][:4] == ["celery", "-A", "portal", "beat"]
    worker = find(production, "Deployment", "rolegate-worker")
    assert worker["spec"]["template"]["spec"]["containers"][0]["command"][:4] == ["celery", "-A", "portal", "worker"]
    job = find(production, "Job", "rolegate-migrate")
    [migrate] = job["spec"]["template"]["spec"]["containers"]
    assert migrate["command"] == ["python", "manage.py", "migrate", "--no-input"]


def test_every_pod_runs_as_non_root_on_a_read_only_root_filesystem(production):
    for name, spec in pod_specs(production).items():
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["automountServiceAccountToken"] is False, name
        volumes = {v["name"]: v for v in spec["volumes"]}
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            assert container["resources"]["requests"]["cpu"] and container["resources"]["requests"]["memory"], name
            tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
            assert tmp and "emptyDir" in volumes[tmp[0]["name"]], name


def test_secrets_come_by_reference_only(production):
    config = find(production, "ConfigMap", "rolegate")["data"]
    assert not [key for key in config if "SECRET" in key and not key.endswith("_FILE")]
    assert "DATABASE_URL" not in config
    for name, spec in pod_specs(production).items():
        [container] = spec["containers"]
        env = {e["name"]: e for e in container["env"]}
        assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "rolegate", "key": "database-url"}, name
        assert "DJANGO_SECRET_KEY" not in env
        secret_file = env["DJANGO_SECRET_KEY_FILE"]["value"]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volume = {v["name"]: v for v in spec["volumes"]}[mounts[str(Path(secret_file).parent)]]
        assert volume["secret"]["secretName"] == "rolegate", name


def test_the_image_writes_nothing_to_the_app_folder_at_run_time():
    """A read-only root filesystem: no bytecode written next to the code, the code owned by
    root (the app user cannot change it), the only write (a development secret key) only
    happens in DJANGO_DEBUG mode."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "PYTHONDONTWRITEBYTECODE=1" in dockerfile
    assert "--chown" not in dockerfile and "chown" not in dockerfile
    # Settings outside DJANGO_DEBUG, with and without a secret: loading them writes no file.
    no_writes = (
        "import pathlib; "
        "pathlib.Path.write_text = pathlib.Path.write_bytes = lambda *a, **k: (_ for _ in ()).throw(OSError('write')); "
        "import django; django.setup()"
    )
    for secret in ({}, {"DJANGO_SECRET_KEY": "k" * 50}):
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DJANGO_SETTINGS_MODULE": "portal.settings", **secret}
        result = subprocess.run([sys.executable, "-c", no_writes], cwd=ROOT, env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr


def test_the_ingress_controller_is_the_one_trusted_proxy(production):
    config = find(production, "ConfigMap", "rolegate")["data"]
    assert config["ROLEGATE_TRUSTED_PROXIES"] == "1"
    assert config["ROLEGATE_TRUSTED_PROXY_NETWORKS"]


def selects(selector: dict, labels: dict) -> bool:
    """A label selector (matchLabels, matchExpressions with In) against a pod's labels."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", expression
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def admitted_ports(objects: list[dict], labels: dict) -> set:
    """The ports any NetworkPolicy selecting pods with ``labels`` admits from somewhere."""
    return {
        port["port"]
        for policy in objects
        if policy["kind"] == "NetworkPolicy" and selects(policy["spec"]["podSelector"], labels)
        for rule in policy["spec"].get("ingress", [])
        for port in rule.get("ports", [])
    }


@pytest.mark.parametrize(
    ("deployment", "port_name", "port"), [("rolegate-web", "http", 8000), ("rolegate-worker", "metrics", 9100)]
)
def test_prometheus_may_scrape_the_web_and_the_worker_with_the_token(production, deployment, port_name, port):
    """The worker counts the IAM syncs and serves them itself: its port is declared, it is the one
    ROLEGATE_WORKER_METRICS_PORT opens, and a NetworkPolicy admits it; web and worker read the
    same scrape token from the Secret."""
    pod = find(production, "Deployment", deployment)["spec"]["template"]
    [container] = pod["spec"]["containers"]
    assert {p["name"]: p["containerPort"] for p in container["ports"]}[port_name] == port
    assert port in admitted_ports(production, pod["metadata"]["labels"])
    if deployment == "rolegate-worker":
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["ROLEGATE_WORKER_METRICS_PORT"] == str(port)
        assert env["ROLEGATE_WORKER_METRICS_ADDRESS"] == "0.0.0.0"  # the pod's address, not loopback
        assert container["readinessProbe"]["tcpSocket"]["port"] == port_name
    token_file = find(production, "ConfigMap", "rolegate")["data"]["ROLEGATE_METRICS_TOKEN_FILE"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volume = {v["name"]: v for v in pod["spec"]["volumes"]}[mounts[str(Path(token_file).parent)]]
    assert volume["secret"]["secretName"] == "rolegate"
