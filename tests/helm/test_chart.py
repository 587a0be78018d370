"""The Helm chart, rendered by the real Helm engine (helm-python-sdk bundles Helm's Go library),
with the default values and several others; every object checked against the Kubernetes
schemas, the Role checked against what the backend calls."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml

from backends.kubernetes.inventory import PERMISSIONS
from runner.settings import Settings
from tests.helpers import ROOT
from tests.kubernetes.fake_objects import merged

CHART = ROOT / "deploy" / "helm" / "oneoff-runner"
SCHEMA_VERSIONS = ("1.29.0", "1.37.0")

VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "tokens-ingress-egress": {
        "auth": {"tokens": ["t1", "t2"], "operatorTokens": ["ops:t3"]},
        "ingress": {
            "enabled": True,
            "className": "nginx",
            "host": "runner.example.com",
            "tls": [{"hosts": ["runner.example.com"], "secretName": "runner-tls"}],
        },
        "networkPolicy": {"egress": {"enabled": True, "cidrs": ["10.0.0.0/8"]}},
        "replicaCount": 3,
    },
    "own-namespace-and-scheduling": {
        "auth": {"existingSecret": "my-tokens", "tokensKey": "list"},
        "runs": {
            "namespace": "sandbox",
            "serviceAccount": "runs",
            "nodeSelector": {"pool": "runs"},
            "tolerations": [{"key": "runs", "operator": "Exists", "effect": "NoSchedule"}],
            "createNamespace": True,
            "imagePullSecrets": ["regcred"],
            "runtimeClassName": "gvisor",
        },
        "config": {"max_concurrent_runs": 32, "allowed_images": ["python:*", "busybox:*"]},
        "serviceAccount": {"create": False, "name": "runner"},
    },
    "docker-mode": {"docker": {"enabled": True}, "networkPolicy": {"enabled": False}},
    "identity-provider": {
        "auth": {
            "oauth": {
                "issuers": ["https://login.example.com/realms/acme"],
                "audience": ["https://runner.example.com"],
                "tenantClaim": "org.id",
                "requiredScopes": ["runner"],
                "writeScopes": ["runner.write"],
                "introspection": {
                    "url": "https://login.example.com/introspect",
                    "clientId": "runner",
                    "existingSecret": "runner-introspection",
                },
            }
        }
    },
}


def render(values: dict[str, Any]) -> dict[str, str]:
    with helm.Chart.load(CHART) as chart:
        return chart.render(values, name="demo", namespace="tools")


def objects(values: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        item
        for path, text in render(values).items()
        if not path.endswith("NOTES.txt")
        for item in yaml.safe_load_all(text)
        if item
    ]


def find(items: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [item for item in items if item["kind"] == kind]


@pytest.mark.parametrize("name", VALUE_SETS)
def test_every_rendered_object_is_valid_kubernetes(name: str) -> None:
    for item in objects(VALUE_SETS[name]):
        for version in SCHEMA_VERSIONS:
            kubernetes_validate.validate(item, version, strict=True)


def test_the_role_grants_exactly_what_the_backend_calls_and_nothing_cluster_wide() -> None:
    items = objects({})
    (role,) = find(items, "Role")
    granted = {
        (group, resource): tuple(rule["verbs"])
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    assert granted == PERMISSIONS
    assert find(items, "ClusterRole") == find(items, "ClusterRoleBinding") == []
    (binding,) = find(items, "RoleBinding")
    assert binding["subjects"][0]["name"] == find(items, "ServiceAccount")[0]["metadata"]["name"]


def test_runs_go_to_their_own_namespace_with_the_role_there() -> None:
    items = objects(VALUE_SETS["own-namespace-and-scheduling"])
    assert find(items, "Role")[0]["metadata"]["namespace"] == "sandbox"
    assert find(items, "NetworkPolicy")[0]["metadata"]["namespace"] == "sandbox"
    env = container_env(items)
    assert env["RUNNER_KUBE_NAMESPACE"] == "sandbox"
    assert env["RUNNER_KUBE_NODE_SELECTOR"] == '{"pool":"runs"}'


def runner_config(items: list[dict[str, Any]]) -> dict[str, Any]:
    """The ConfigMap of the runner's settings (the other one owns the runs)."""
    (config,) = [item for item in find(items, "ConfigMap") if "data" in item]
    return config


def test_an_owner_config_map_in_the_runs_namespace_owns_the_runs() -> None:
    """RUNNER_KUBE_OWNER names it, the runner may read it: `helm uninstall` deletes it, and
    with it every Job, record and lease of the release's runners."""
    items = objects(VALUE_SETS["own-namespace-and-scheduling"])
    (owner,) = [item for item in find(items, "ConfigMap") if "data" not in item]
    assert (owner["metadata"]["name"], owner["metadata"]["namespace"]) == (
        "demo-oneoff-runner-runs",
        "sandbox",
    )
    assert container_env(items)["RUNNER_KUBE_OWNER"] == "demo-oneoff-runner-runs"
    docker = objects(VALUE_SETS["docker-mode"])
    assert [item["metadata"]["name"] for item in find(docker, "ConfigMap")] == [
        "demo-oneoff-runner"
    ]


def container_env(items: list[dict[str, Any]]) -> dict[str, str]:
    (deployment,) = find(items, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {item["name"]: item.get("value", "") for item in container["env"]}


@pytest.mark.parametrize("name", VALUE_SETS)
def test_the_environment_the_chart_gives_is_valid_runner_settings(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    items = objects(VALUE_SETS[name])
    env = {**runner_config(items)["data"], **container_env(items)}
    env["RUNNER_INSTANCE_ID"] = "demo-oneoff-runner-abc12"  # the pod's name, in a cluster
    tokens = tmp_path / "tokens"
    tokens.write_text("t\n")
    env["RUNNER_API_TOKENS_FILE"] = str(tokens)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings(_env_file=None)
    assert settings.backend == ("docker" if name == "docker-mode" else "kubernetes")
    assert settings.host == "0.0.0.0"


def test_operator_tokens_go_into_the_secret_and_make_operators(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "RUNNER_OPERATOR_TOKENS_FILE" not in container_env(objects({}))
    items = objects(VALUE_SETS["tokens-ingress-egress"])
    (secret,) = find(items, "Secret")
    env = container_env(items)
    mounted = "/etc/oneoff-runner/tokens/"
    assert env["RUNNER_OPERATOR_TOKENS_FILE"] == f"{mounted}operators"
    for key, text in secret["stringData"].items():
        (tmp_path / key).write_text(text)
    for key in ("RUNNER_API_TOKENS_FILE", "RUNNER_OPERATOR_TOKENS_FILE"):
        monkeypatch.setenv(key, env[key].replace(mounted, f"{tmp_path}/"))
    tenants = dict(Settings(_env_file=None).tokens())
    assert tenants["t3"].operator and tenants["t3"].name == "ops"
    assert not tenants["t1"].operator


def test_values_carry_every_runner_setting() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    items = objects({})
    config = runner_config(items)
    covered = {
        key.removeprefix("RUNNER_").lower() for key in [*config["data"], *container_env(items)]
    }
    covered |= {
        "docker_host",
        "docker_tls_verify",
        "docker_cert_path",
        "kubeconfig",
        "kube_context",
    }
    # tokens come from a Secret's files (operators' only when auth.operatorTokens are given)
    covered |= {"api_tokens", "operator_tokens", "operator_tokens_file"}
    covered |= {"allow_unauthenticated_remote"}
    oauth = objects(VALUE_SETS["identity-provider"])
    covered |= {key.removeprefix("RUNNER_").lower() for key in container_env(oauth)}
    covered |= set(values["config"]) | {"kube_service_account"}  # runs.serviceAccount
    assert set(Settings.model_fields) - covered == set()
    assert set(values["config"]) <= set(Settings.model_fields)


def test_the_deployment_serves_both_ports_with_health_probes_and_runs_unprivileged() -> None:
    items = objects({})
    (deployment,) = find(items, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert {port["containerPort"] for port in container["ports"]} == {8000, 8001}
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"  # never the backend
    assert pod["terminationGracePeriodSeconds"] > 30  # past RUNNER_SHUTDOWN_GRACE_SECONDS
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert not any("hostPath" in volume for volume in pod["volumes"])
    (service,) = find(items, "Service")
    assert {port["port"] for port in service["spec"]["ports"]} == {8000, 8001}


def test_run_pods_get_no_ingress_and_no_egress_by_default() -> None:
    (policy,) = find(objects({}), "NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"] == {"oneoff-runner.managed": "true"}
    assert policy["spec"]["ingress"] == policy["spec"]["egress"] == []
    (opened,) = find(objects(VALUE_SETS["tokens-ingress-egress"]), "NetworkPolicy")
    dns, allowed = opened["spec"]["egress"]
    assert allowed == {"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}  # listed: opened on purpose
    assert {port["port"] for port in dns["ports"]} == {53}


def test_open_egress_leaves_out_metadata_and_private_ranges_and_allows_dns() -> None:
    values = {"networkPolicy": {"egress": {"enabled": True}}}
    (policy,) = find(objects(values), "NetworkPolicy")
    dns, anywhere = policy["spec"]["egress"]
    assert dns["to"][0]["podSelector"]["matchLabels"] == {"k8s-app": "kube-dns"}
    assert {(port["protocol"], port["port"]) for port in dns["ports"]} == {
        ("UDP", 53),
        ("TCP", 53),
    }
    block = anywhere["to"][0]["ipBlock"]
    assert block["cidr"] == "0.0.0.0/0"
    assert {"169.254.0.0/16", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"} <= set(
        block["except"]
    )


def test_the_chart_makes_and_labels_the_runs_namespace_when_asked() -> None:
    values = {"runs": {"namespace": "sandbox", "createNamespace": True}}
    (namespace,) = find(objects(values), "Namespace")
    assert namespace["metadata"]["name"] == "sandbox"
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert find(objects({"runs": {"namespace": "sandbox"}}), "Namespace") == []


def test_api_tokens_come_from_a_secret() -> None:
    items = objects(VALUE_SETS["tokens-ingress-egress"])
    (secret,) = find(items, "Secret")
    assert secret["stringData"]["tokens"].split() == ["t1", "t2"]
    generated = find(objects({}), "Secret")[0]["stringData"]["tokens"].split()
    assert len(generated) == 1 and len(generated[0]) == 40
    assert find(objects(VALUE_SETS["own-namespace-and-scheduling"]), "Secret") == []


def test_docker_mode_mounts_the_socket_and_drops_the_kubernetes_rbac() -> None:
    items = objects(VALUE_SETS["docker-mode"])
    pod = find(items, "Deployment")[0]["spec"]["template"]["spec"]
    assert {
        "name": "docker-socket",
        "hostPath": {"path": "/var/run/docker.sock", "type": "Socket"},
    } in pod["volumes"]
    assert container_env(items)["RUNNER_BACKEND"] == "docker"
    assert find(items, "Role") == []
    values_text = (CHART / "values.yaml").read_text()
    assert "WARNING: Docker mode" in values_text


def test_the_ingress_routes_mcp_and_rest() -> None:
    (ingress,) = find(objects(VALUE_SETS["tokens-ingress-egress"]), "Ingress")
    paths = {
        path["path"]: path["backend"]["service"]["port"]["name"]
        for path in ingress["spec"]["rules"][0]["http"]["paths"]
    }
    assert paths == {"/mcp": "mcp", "/": "http"}


def test_notes_tell_how_to_reach_both_endpoints() -> None:
    notes = render({})["oneoff-runner/templates/NOTES.txt"]
    assert "http://127.0.0.1:8000/" in notes and "http://127.0.0.1:8001/mcp" in notes
    with_ingress = render(VALUE_SETS["tokens-ingress-egress"])["oneoff-runner/templates/NOTES.txt"]
    assert "https://runner.example.com/mcp" in with_ingress


def test_the_dockerfile_builds_a_non_root_image_from_the_lock_file() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "uv sync --frozen --no-dev" in text
    assert "USER 10001" in text
    assert "EXPOSE 8000 8001" in text
    assert "HEALTHCHECK" in text and 'CMD ["oneoff-runner", "serve"]' in text


def test_map_settings_reach_the_runner_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    options = {"size": ["1Gi", "10Gi"]}
    config = runner_config(objects({"config": {"allowed_volume_options": options}}))
    for name, value in config["data"].items():
        monkeypatch.setenv(name, value)
    assert Settings().allowed_volume_options == options


def test_the_values_schema_takes_every_value_set_and_refuses_typos() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    for values in VALUE_SETS.values():
        jsonschema.validate(merged(copy.deepcopy(defaults), values), schema)
    for wrong in (
        {"runs": {"namespce": "x"}},
        {"replicaCount": "two"},
        {"podDisruptionBudget": 1},
        {"runs": {"returnLimitBytes": 1024}},  # below RUNNER_KUBE_RETURN_LIMIT_BYTES' floor
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(merged(copy.deepcopy(defaults), wrong), schema)


def test_the_generated_token_and_a_checksum_that_rolls_the_pods() -> None:
    (deployment,) = find(objects({}), "Deployment")
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert "checksum/tokens" in annotations
    secret_text = (CHART / "templates" / "secret.yaml").read_text()
    assert 'lookup "v1" "Secret"' in secret_text  # an upgrade keeps the token it generated


def test_a_disruption_budget_and_an_optional_service_monitor() -> None:
    (budget,) = find(objects({}), "PodDisruptionBudget")
    assert budget["spec"]["maxUnavailable"] == 1
    assert find(objects({}), "ServiceMonitor") == []
    (monitor,) = find(objects({"serviceMonitor": {"enabled": True}}), "ServiceMonitor")
    (endpoint,) = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("http", "/metrics")
    assert endpoint["authorization"]["credentials"]["key"] == "tokens"


def test_run_pod_settings_reach_the_runner() -> None:
    (deployment,) = find(objects(VALUE_SETS["own-namespace-and-scheduling"]), "Deployment")
    env = {item["name"]: item.get("value") for item in _env(deployment)}
    assert env["RUNNER_KUBE_IMAGE_PULL_SECRETS"] == "regcred"
    assert env["RUNNER_RUNTIME"] == "gvisor"
    assert env["RUNNER_KUBE_SCRATCH_SIZE"] == "1Gi"
    assert env["RUNNER_KUBE_RETURN_LIMIT_BYTES"] == "7340032"
    lowered = objects({"runs": {"returnLimitBytes": 1048576}})
    assert container_env(lowered)["RUNNER_KUBE_RETURN_LIMIT_BYTES"] == "1048576"


def test_the_identity_provider_values_reach_the_runner() -> None:
    items = objects(VALUE_SETS["identity-provider"])
    env = container_env(items)
    assert env["RUNNER_OAUTH_ISSUERS"] == "https://login.example.com/realms/acme"
    assert env["RUNNER_OAUTH_AUDIENCE"] == "https://runner.example.com"
    assert env["RUNNER_OAUTH_TENANT_CLAIM"] == "org.id"
    assert env["RUNNER_OAUTH_REQUIRED_SCOPES"] == "runner"
    assert (env["RUNNER_OAUTH_READ_SCOPES"], env["RUNNER_OAUTH_WRITE_SCOPES"]) == (
        "",
        "runner.write",
    )
    (deployment,) = find(items, "Deployment")
    (secret,) = [item for item in _env(deployment) if item["name"].endswith("CLIENT_SECRET")]
    assert secret["valueFrom"]["secretKeyRef"] == {
        "name": "runner-introspection",
        "key": "client-secret",
    }
    assert not any(name.startswith("RUNNER_OAUTH_I") for name in container_env(objects({})))
    with pytest.raises(Exception, match="auth.oauth.audience"):
        objects({"auth": {"oauth": {"issuers": ["https://login.example.com"]}}})


def _env(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    return deployment["spec"]["template"]["spec"]["containers"][0]["env"]  # type: ignore[no-any-return]
