"""deploy/: the Kubernetes manifests validate against the Kubernetes schema, and the container runs the
`tagger serve` command this test starts and health-checks.

No image is built here (no container daemon on this machine) and nothing is applied to a cluster:
docs/deploy.md says so. The schemas come with ``kubernetes-validate`` (no network).
"""
from __future__ import annotations

import copy
import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
#: The Kubernetes release the manifests are written for (the grpc probe's ``mode`` is in its API).
KUBERNETES_VERSION = "1.37.0"
#: Flags whose values are files the Deployment mounts from Secrets, and the volume each comes from.
SECRET_FLAGS = {"--tls-cert": "tls", "--tls-key": "tls", "--token-file": "auth"}


def manifests() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        docs += [(path.name, d) for d in yaml.safe_load_all(path.read_text("utf-8")) if d]
    return docs


def resource(kind: str) -> dict[str, Any]:
    [found] = [d for _, d in manifests() if d["kind"] == kind]
    return found


def containerfile() -> tuple[list[str], list[str]]:
    """The Containerfile's ENTRYPOINT and CMD (exec form: JSON arrays)."""
    text = (DEPLOY / "Containerfile").read_text("utf-8")
    entry = re.search(r"^ENTRYPOINT (\[.*\])$", text, re.M)
    cmd = re.search(r"^CMD (\[.*\])$", text, re.M)
    assert entry and cmd, "ENTRYPOINT and CMD must be in exec form"
    return json.loads(entry.group(1)), json.loads(cmd.group(1))


def container() -> dict[str, Any]:
    [c] = resource("Deployment")["spec"]["template"]["spec"]["containers"]
    return c


def flag_values(args: list[str]) -> dict[str, str]:
    """``--flag value`` pairs (every flag the manifests use takes a value)."""
    assert len(args) % 2 == 0 and all(a.startswith("--") for a in args[::2]), args
    return dict(zip(args[::2], args[1::2]))


# ------------------------------------------------------------------------------------- schemas
def test_every_manifest_validates_against_the_kubernetes_schema() -> None:
    import kubernetes_validate

    docs = manifests()
    assert {d["kind"] for _, d in docs} >= {
        "Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler", "Secret", "PersistentVolumeClaim"}
    for name, doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)  # raises naming the bad field
    # The check is real: a misspelt field or a wrong type is refused.
    broken = copy.deepcopy(resource("Deployment"))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grpc"]["prot"] = 50051
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)
    broken = copy.deepcopy(resource("Deployment"))
    broken["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


# ---------------------------------------------------------------------- one command, tested
def test_the_deployment_runs_the_containers_command() -> None:
    entry, cmd = containerfile()
    c = container()
    assert entry == ["tagger", "serve"] and c["command"] == entry
    assert c["args"][: len(cmd)] == cmd  # the image's settings, then the deployment's files
    extra = flag_values(c["args"][len(cmd):])
    assert set(extra) == {"--model", *SECRET_FLAGS}


def test_every_deployment_argument_is_a_tagger_serve_setting() -> None:
    """Every flag the Deployment passes is one `tagger serve` defines (the TLS and token flags come
    with the server's TLS/auth work, issue 15)."""
    from tagger.cli import build_parser

    parser = build_parser("serve")
    args, unknown = parser.parse_known_args(container()["command"][1:] + container()["args"])
    assert unknown == [], f"not `tagger serve` settings: {unknown}"
    assert args.command == "serve" and args.model == Path("/models/arabic-news-topics")


def _health(target: str, service: str) -> int:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
    return reply.status


def test_the_containers_serve_command_starts_and_answers_health(loaded) -> None:
    """The image's ENTRYPOINT + CMD, run as is but for the addresses (127.0.0.1, OS-assigned ports) and the
    model (the shipped one, by path): the server becomes SERVING on grpc.health.v1, for the whole server
    and for the service the readiness probe names, and stops cleanly on SIGTERM."""
    from grpc_health.v1 import health_pb2

    entry, cmd = containerfile()
    settings = flag_values(cmd) | {"--host": "127.0.0.1", "--port": "0", "--metrics-host": "127.0.0.1",
                                   "--metrics-port": "0"}
    argv = [str(Path(sys.executable).parent / entry[0]), *entry[1:],
            *[x for kv in settings.items() for x in kv], "--model", str(loaded.path)]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=os.environ | {"TAGGER_LOG_LEVEL": "INFO"})
    log: list[str] = []
    ready = threading.Event()
    port = []

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            log.append(line)
            m = re.search(r"ready: .* on 127\.0\.0\.1:(\d+)", line)
            if m:
                port.append(int(m.group(1)))
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert ready.wait(120) and port, "server did not start:\n" + "".join(log)
        target = f"127.0.0.1:{port[0]}"
        probe = container()["readinessProbe"]["grpc"]
        assert _health(target, probe["service"]) == health_pb2.HealthCheckResponse.SERVING
        assert _health(target, "") == health_pb2.HealthCheckResponse.SERVING  # the liveness probe's check
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ----------------------------------------------------------------------- the pieces fit together
def test_probes_ports_files_and_selectors_agree() -> None:
    deployment = resource("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    c = container()
    settings = flag_values(c["args"])
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"grpc": int(settings["--port"]), "metrics": int(settings["--metrics-port"])}
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[kind]["grpc"]["port"] == ports["grpc"], kind  # native gRPC probes on the served port
    assert pod["terminationGracePeriodSeconds"] > float(settings["--grace"])  # RPCs finish before SIGKILL
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] != 0
    assert "USER 10001:10001" in (DEPLOY / "Containerfile").read_text("utf-8")

    # Every file the server is given lives in a mounted volume; secret files are keys of their Secret.
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    secrets = {d["metadata"]["name"]: d for _, d in manifests() if d["kind"] == "Secret"}
    for flag, volume in SECRET_FLAGS.items():
        path = Path(settings[flag])
        assert path.parent == Path(mounts[volume]), flag
        source = volumes[volume]["secret"]
        assert path.name in {i["path"] for i in source["items"]}
        assert {i["key"] for i in source["items"]} <= set(secrets[source["secretName"]]["stringData"])
    assert Path(settings["--model"]).parent == Path(mounts["models"])
    claim = volumes["models"]["persistentVolumeClaim"]["claimName"]
    assert resource("PersistentVolumeClaim")["metadata"]["name"] == claim

    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = resource("Service")
    assert service["spec"]["clusterIP"] == "None"  # headless: clients balance per request (round_robin)
    assert service["spec"]["selector"].items() <= labels.items()
    assert {p["targetPort"] for p in service["spec"]["ports"]} == set(ports)
    assert resource("PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= labels.items()
    hpa = resource("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": deployment["metadata"]["name"]}
    assert hpa["spec"]["minReplicas"] > resource("PodDisruptionBudget")["spec"]["minAvailable"]
    assert "cpu" in c["resources"]["requests"]  # the HPA's utilisation is measured against it
