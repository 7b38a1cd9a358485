"""The deployment files: every Kubernetes manifest valid against the API schema, every pod
passing the Pod Security "restricted" profile, exit codes handled as the CLI defines them,
the example mapping a valid one, and compose starting only the worker by default."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from revsync.config.loader import load_config

DEPLOY = Path(__file__).parents[2] / "deploy"
MANIFESTS = ("cronjob.yaml", "worker.yaml", "config.yaml", "collector.yaml")
KUBERNETES = "1.33.0"
VOLUME_TYPES = {"configMap", "secret", "emptyDir", "projected", "downwardAPI",
                "persistentVolumeClaim", "ephemeral", "csi"}  # fmt: skip


def documents(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d]


def pod_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]  # type: ignore[no-any-return]
    if doc["kind"] in ("Deployment", "Job"):
        return doc["spec"]["template"]["spec"]  # type: ignore[no-any-return]
    return None


def restricted_violations(spec: dict[str, Any]) -> list[str]:
    """The Pod Security Standards' "restricted" checks (kubernetes.io/docs/concepts/security/
    pod-security-standards): what a namespace enforcing the profile would refuse."""
    found = []
    pod = spec.get("securityContext", {})
    if any(spec.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")):
        found.append("host namespaces")
    for volume in spec.get("volumes", []):
        if not set(volume) - {"name"} <= VOLUME_TYPES:
            found.append(f"volume {volume['name']} of a type restricted forbids")
    for container in spec.get("containers", []) + spec.get("initContainers", []):
        own = container.get("securityContext", {})
        name = container["name"]
        if own.get("privileged"):
            found.append(f"{name}: privileged")
        if own.get("allowPrivilegeEscalation") is not False:
            found.append(f"{name}: allowPrivilegeEscalation must be false")
        if own.get("runAsNonRoot", pod.get("runAsNonRoot")) is not True:
            found.append(f"{name}: runAsNonRoot must be true")
        if own.get("runAsUser", pod.get("runAsUser")) == 0:
            found.append(f"{name}: runs as root")
        seccomp = own.get("seccompProfile", pod.get("seccompProfile", {}))
        if seccomp.get("type") not in ("RuntimeDefault", "Localhost"):
            found.append(f"{name}: seccompProfile must be RuntimeDefault or Localhost")
        capabilities = own.get("capabilities", {})
        if "ALL" not in capabilities.get("drop", []):
            found.append(f"{name}: capabilities must drop ALL")
        if set(capabilities.get("add", [])) - {"NET_BIND_SERVICE"}:
            found.append(f"{name}: adds capabilities")
        if any(port.get("hostPort") for port in container.get("ports", [])):
            found.append(f"{name}: host port")
    return found


@pytest.mark.parametrize("name", MANIFESTS)
def test_each_manifest_is_valid_against_the_kubernetes_schema(name: str) -> None:
    for doc in documents(name):
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)


@pytest.mark.parametrize("name", ["cronjob.yaml", "worker.yaml"])
def test_each_pod_passes_the_restricted_profile_with_a_read_only_root(name: str) -> None:
    for doc in documents(name):
        spec = pod_spec(doc)
        assert spec is not None
        assert restricted_violations(spec) == []
        assert spec["automountServiceAccountToken"] is False
        assert spec["terminationGracePeriodSeconds"] >= 120
        for container in spec["containers"]:
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            assert "/tmp" in {m["mountPath"] for m in container["volumeMounts"]}


def test_the_collector_passes_the_restricted_profile_and_probes_the_store() -> None:
    deployment, service = documents("collector.yaml")
    spec = pod_spec(deployment)
    assert spec is not None and restricted_violations(spec) == []
    assert spec["automountServiceAccountToken"] is False
    (container,) = spec["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["args"][:1] == ["serve"] and "0.0.0.0" in container["args"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_the_checker_refuses_what_restricted_refuses() -> None:
    spec = {"containers": [{"name": "c", "securityContext": {"privileged": True}}],
            "volumes": [{"name": "h", "hostPath": {"path": "/"}}]}  # fmt: skip
    assert len(restricted_violations(spec)) == 6


def test_the_cronjob_fails_fast_on_config_errors_and_never_retries_partial_runs() -> None:
    (cronjob,) = documents("cronjob.yaml")
    rules = cronjob["spec"]["jobTemplate"]["spec"]["podFailurePolicy"]["rules"]
    by_code = {code: rule["action"] for rule in rules if "onExitCodes" in rule
               for code in rule["onExitCodes"]["values"]}  # fmt: skip
    assert by_code == {2: "FailJob", 3: "FailJob", 5: "FailJob", 4: "Ignore"}
    drained = [{"type": "DisruptionTarget", "status": "True"}]
    assert any(rule.get("onPodConditions") == drained for rule in rules)


def test_the_example_mapping_in_the_config_map_is_a_valid_mapping(tmp_path: Path) -> None:
    config_map = next(d for d in documents("config.yaml") if d["kind"] == "ConfigMap")
    path = tmp_path / "revsync.yaml"
    path.write_text(config_map["data"]["revsync.yaml"])
    config = load_config(path)
    assert [s.type for s in config.sources] == ["hubspot"]


def test_compose_up_starts_the_worker_and_not_the_one_shot() -> None:
    (compose,) = documents("compose.yaml")
    services = compose["services"]
    assert services["revsync"]["profiles"] == ["job"]
    assert "profiles" not in services["worker"] and "profiles" not in services["postgres"]


def test_the_image_pins_every_runtime_dependency() -> None:
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = tomllib.loads((DEPLOY.parent / "pyproject.toml").read_text())["project"]
    wanted = {canonicalize_name(Requirement(d).name) for d in project["dependencies"]}
    lines = (DEPLOY / "constraints.txt").read_text().splitlines()
    pinned = {canonicalize_name(line.split("==")[0]) for line in lines
              if line and not line.startswith("#")}  # fmt: skip
    assert all("==" in line for line in lines if line and not line.startswith("#"))
    assert wanted <= pinned, f"regenerate deploy/constraints.txt: {sorted(wanted - pinned)}"
    assert "constraints.txt" in (DEPLOY.parent / "Dockerfile").read_text()
