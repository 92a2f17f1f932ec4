"""The deploy bundle, checked statically (no container engine here): every file parses, points at
the real rules, dashboards, port and command, and the tools that can validate a piece offline
(amtool, promtool, systemd-analyze, kubectl kustomize) accept it."""

from __future__ import annotations

import configparser
import fnmatch
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from monitoring import ALERTS, DASHBOARDS, DEPLOY, ROOT, all_alerts, require_binary, rule_files

from monitord.config import DEFAULT_PORT, loads
from monitord.webconfig import load_web_config

K8S = DEPLOY / "kubernetes"
PROM_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
AM_CONFIG = DEPLOY / "alertmanager" / "alertmanager.yml"
COMPOSE = DEPLOY / "docker-compose.yml"


class _ComposeLoader(yaml.SafeLoader):
    """SafeLoader that knows Compose's merge tags (!reset, !override)."""


_ComposeLoader.add_constructor("!reset", lambda loader, node: None)
_ComposeLoader.add_constructor(
    "!override", lambda loader, node: loader.construct_sequence(node) if isinstance(node, yaml.SequenceNode)
    else loader.construct_mapping(node))


def _compose(path: Path = COMPOSE) -> dict[str, Any]:
    return yaml.load(path.read_text(encoding="utf-8"), Loader=_ComposeLoader)


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------ Dockerfile

def _dockerfile() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_is_slim_non_root_with_a_health_check_on_the_default_port() -> None:
    instructions = _dockerfile()
    by = lambda word: [rest for w, rest in instructions if w == word]  # noqa: E731
    for image in by("FROM"):
        assert re.match(r"python:3\.\d+-slim\b", image), f"base image {image!r} is not a slim Python"
    user = by("USER")[-1]
    assert re.fullmatch(r"[1-9]\d*(:\d+)?", user), f"USER {user!r}: numeric and not root"
    assert by("EXPOSE") == [str(DEFAULT_PORT)]
    health = by("HEALTHCHECK")
    assert len(health) == 1 and f"127.0.0.1:{DEFAULT_PORT}/-/healthy" in health[0]
    entrypoint = by("ENTRYPOINT")[-1]
    assert entrypoint == '["monitord"]'
    assert 'monitord = "monitord.__main__:main"' in (ROOT / "pyproject.toml").read_text()
    cmd = yaml.safe_load(by("CMD")[-1])
    assert cmd[:3] == ["run", "--config.file", "/etc/monitord/config.yml"]
    # The state dir the image makes writable is the one the examples configure.
    assert "/var/lib/monitord" in " ".join(by("RUN")) and by("VOLUME") == ['["/var/lib/monitord"]']


def test_dockerignore_keeps_what_the_build_needs() -> None:
    patterns = [p.strip() for p in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]
    for needed in ("pyproject.toml", "monitord", "monitord/__main__.py", "monitord/simulators/base.py"):
        assert not any(fnmatch.fnmatch(needed, p) or needed.startswith(p.rstrip("/") + "/") for p in patterns), \
            f"{needed} is excluded from the build context"


# ------------------------------------------------------------------------------ compose

def _binds(service: dict[str, Any]) -> dict[str, str]:
    """container path -> host path (relative to deploy/) of a service's bind mounts."""
    binds = {}
    for volume in service.get("volumes") or []:
        host, container = volume.split(":")[:2]
        if host.startswith((".", "/")):
            binds[container] = host
    return binds


def test_compose_stack_wires_the_real_files_and_ports() -> None:
    compose = _compose()
    services = compose["services"]
    assert {"monitord", "prometheus", "alertmanager", "grafana"} <= set(services)
    monitord = services["monitord"]
    assert (DEPLOY / monitord["build"]["context"] / monitord["build"]["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
    assert f"{DEFAULT_PORT}:{DEFAULT_PORT}" in monitord["ports"]
    assert monitord["command"][:3] == ["run", "--config.file", "/etc/monitord/config.yml"]
    assert _binds(monitord)["/etc/monitord/config.yml"] == "./config.yml"

    for name, service in services.items():
        for host in _binds(service).values():
            if host in ("./config.yml", "./web-config.yml"):  # the operator's copies, documented at the top
                example = Path(host).name.replace(".yml", ".example.yml")
                assert f"cp {example} {Path(host).name}" in COMPOSE.read_text()
                assert (DEPLOY / example).is_file()
                continue
            assert (DEPLOY / host).exists(), f"{name}: bind source {host} does not exist"

    prom = services["prometheus"]
    prom_binds = _binds(prom)
    config_path = next(a.split("=", 1)[1] for a in prom["command"] if a.startswith("--config.file="))
    assert (DEPLOY / prom_binds[config_path]).resolve() == PROM_CONFIG
    rules_dir = next(c for c, h in prom_binds.items() if (DEPLOY / h).resolve() == ALERTS)
    config = _yaml(PROM_CONFIG)
    globs = config["rule_files"]
    assert globs == [f"{rules_dir}/*.rules.yml"], "Prometheus must load exactly the mounted alerts/*.rules.yml"
    mounted = sorted(ALERTS.glob(Path(globs[0]).name))
    assert mounted == rule_files() and mounted

    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert jobs["monitord"]["static_configs"][0]["targets"] == [f"monitord:{DEFAULT_PORT}"]
    am_target = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"][0]
    host, port = am_target.split(":")
    assert host in services and f"{port}:{port}" in services[host]["ports"]

    am = services["alertmanager"]
    am_path = next(a.split("=", 1)[1] for a in am["command"] if a.startswith("--config.file="))
    assert (DEPLOY / _binds(am)[am_path]).resolve() == AM_CONFIG

    grafana = services["grafana"]
    g_binds = _binds(grafana)
    assert (DEPLOY / g_binds["/etc/grafana/provisioning"]).resolve() == DEPLOY / "grafana" / "provisioning"
    provider = _yaml(DEPLOY / "grafana" / "provisioning" / "dashboards" / "monitord.yml")["providers"][0]
    dash_path = provider["options"]["path"]
    assert (DEPLOY / g_binds[dash_path]).resolve() == DASHBOARDS
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(dash_path + "/") and (DASHBOARDS / Path(home).name).is_file()
    datasource = _yaml(DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml")["datasources"][0]
    assert datasource["type"] == "prometheus"
    host_port = re.match(r"http://([^/:]+):(\d+)", datasource["url"])
    assert host_port and host_port.group(1) in services
    assert f"{host_port.group(2)}:{host_port.group(2)}" in services[host_port.group(1)]["ports"]
    # $__rate_interval spans four scrapes only if Grafana knows the scrape interval.
    assert datasource["jsonData"]["timeInterval"] == config["global"]["scrape_interval"]


def test_compose_demo_override_runs_the_demo_on_the_default_port() -> None:
    override = _compose(DEPLOY / "docker-compose.demo.yml")["services"]["monitord"]
    assert override["command"][:3] == ["demo", "--web.listen-address", f"0.0.0.0:{DEFAULT_PORT}"]
    assert "demo" in subprocess.run([sys.executable, "-m", "monitord", "--help"], capture_output=True,
                                    text=True, cwd=ROOT, timeout=60).stdout


# --------------------------------------------------------------------- Prometheus, Alertmanager

def test_prometheus_config_passes_promtool_with_the_real_rules(tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    config = _yaml(PROM_CONFIG)
    config["rule_files"] = [str(ALERTS / "*.rules.yml")]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    for rules in rule_files():
        assert rules.name in result.stdout + result.stderr, f"{rules.name} was not checked"


def test_alertmanager_config_passes_amtool() -> None:
    amtool = require_binary("amtool")
    result = subprocess.run([amtool, "check-config", str(AM_CONFIG)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(("severity", "receiver"), [("critical", "page"), ("warning", "ticket"), ("info", "null")])
def test_alertmanager_routes_by_severity(severity: str, receiver: str) -> None:
    amtool = require_binary("amtool")
    result = subprocess.run(
        [amtool, "config", "routes", "test", f"--config.file={AM_CONFIG}", f"--verify.receivers={receiver}",
         f"severity={severity}", "alertname=MonitordTargetDown", "source=endpoint", "target=room-1"],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_severity_in_the_rules_is_routed_and_inhibitions_name_real_alerts() -> None:
    config = _yaml(AM_CONFIG)
    routed = {m.split("=", 1)[1].strip('"') for r in config["route"]["routes"] for m in r.get("matchers", [])
              if m.startswith("severity=")}
    severities = {a.rule["labels"]["severity"] for a in all_alerts()}
    assert severities <= routed
    names = {a.name for a in all_alerts()}
    for rule in config["inhibit_rules"]:
        for matcher in rule["source_matchers"] + rule["target_matchers"]:
            if matcher.startswith("alertname="):
                assert matcher.split("=", 1)[1].strip('"') in names, matcher
        # instance: every alert from a scraped series carries it (two monitord instances never inhibit
        # each other's alerts).
        assert set(rule["equal"]) <= {"instance", "source", "target", "alertname"}


# ------------------------------------------------------------------------------ systemd

def test_systemd_unit_is_hardened_and_runs_the_daemon() -> None:
    path = DEPLOY / "systemd" / "monitord.service"
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text(encoding="utf-8"))
    service = parser["Service"]
    argv = shlex.split(service["ExecStart"])
    assert Path(argv[0]).name == "monitord" and argv[1:4] == ["run", "--config.file", "/etc/monitord/config.yml"]
    assert "HUP" in service["ExecReload"], "SIGHUP reloads the config"
    expected = {
        "DynamicUser": "yes", "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
        "PrivateTmp": "yes", "PrivateDevices": "yes", "CapabilityBoundingSet": "", "RestrictSUIDSGID": "yes",
        "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes", "ProtectControlGroups": "yes",
        "MemoryDenyWriteExecute": "yes", "LockPersonality": "yes", "StateDirectory": "monitord",
    }
    for key, value in expected.items():
        assert service.get(key) == value, f"{key}={service.get(key)!r}, want {value!r}"
    assert "AF_INET" in service["RestrictAddressFamilies"]
    assert parser["Install"]["WantedBy"] == "multi-user.target"


def test_systemd_analyze_accepts_the_unit() -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed")
    result = subprocess.run([analyze, "verify", str(DEPLOY / "systemd" / "monitord.service")],
                            capture_output=True, text=True, timeout=60)
    # monitord is not installed at /usr/local/bin on a test machine; anything else is a finding.
    findings = [line for line in (result.stdout + result.stderr).splitlines()
                if line.strip() and "/usr/local/bin/monitord" not in line]
    assert not findings, "\n".join(findings)


# ------------------------------------------------------------------------------ Kubernetes

def _k8s() -> dict[str, dict[str, Any]]:
    """The base's objects by kind; the headless peer Service under "Service/peers"."""
    base = K8S / "base"
    kustomization = _yaml(base / "kustomization.yaml")
    docs: dict[str, dict[str, Any]] = {}
    for resource in kustomization["resources"]:
        path = base / resource
        assert path.is_file(), f"kustomization lists missing {resource}"
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            # Secrets are told apart by name (the vendor secrets, the web config), the headless
            # peer Service by its clusterIP; other kinds come once.
            key = doc["kind"]
            if key == "Secret":
                key = f"Secret/{doc['metadata']['name']}"
            elif key == "Service" and doc["spec"].get("clusterIP") == "None":
                key = "Service/peers"
            assert key not in docs, f"two {key}s"
            docs[key] = doc
    return docs


def test_kustomization_has_every_piece() -> None:
    assert set(_k8s()) == {"StatefulSet", "Service", "Service/peers", "ConfigMap", "Secret/monitord-secrets",
                           "Secret/monitord-web-config", "ServiceMonitor", "PodDisruptionBudget", "PrometheusRule"}


def test_kubernetes_objects_point_at_each_other_and_the_default_port() -> None:
    docs = _k8s()
    deployment, service, monitor = docs["StatefulSet"], docs["Service"], docs["ServiceMonitor"]
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    container = pod["spec"]["containers"][0]
    port = container["ports"][0]
    assert port["containerPort"] == DEFAULT_PORT
    svc_port = service["spec"]["ports"][0]
    assert svc_port["port"] == DEFAULT_PORT and svc_port["targetPort"] == port["name"] == svc_port["name"]
    assert monitor["spec"]["endpoints"][0]["port"] == svc_port["name"]
    # The rules select up{job="monitord"}; the operator names the job after the Service.
    assert service["metadata"]["name"] == "monitord"
    assert container["readinessProbe"]["httpGet"]["path"] == "/-/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/-/healthy"
    security = {**pod["spec"]["securityContext"], **container["securityContext"]}
    assert security["runAsNonRoot"] is True and security["runAsUser"] > 0
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]


def test_kubernetes_config_is_valid_and_its_secrets_come_from_the_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    docs = _k8s()
    pod = docs["StatefulSet"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    config_arg = container["args"][container["args"].index("--config.file") + 1]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    config_volume = volumes[mounts[str(Path(config_arg).parent)]]
    assert config_volume["configMap"]["name"] == docs["ConfigMap"]["metadata"]["name"]
    text = docs["ConfigMap"]["data"][Path(config_arg).name]
    secret = docs["Secret/monitord-secrets"]
    assert [e["secretRef"]["name"] for e in container["envFrom"]] == [secret["metadata"]["name"]]
    env_names = set(re.findall(r"_env:\s*(\S+)", text))
    assert env_names and env_names <= set(secret["stringData"]), "every *_env must be a key of the Secret"
    for name, value in secret["stringData"].items():
        monkeypatch.setenv(name, value)
    config = loads(text, source="configmap.yaml")
    assert config.web.listen_address.endswith(f":{DEFAULT_PORT}")
    assert str(config.global_.state_dir) in mounts, "global.state_dir must be a mounted, writable volume"


def test_prometheusrule_is_generated_from_the_alerts_directory() -> None:
    result = subprocess.run([sys.executable, str(K8S / "generate_prometheusrule.py"), "--check"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    generated = _k8s()["PrometheusRule"]
    groups = [g for path in rule_files() for g in _yaml(path)["groups"]]
    assert generated["spec"]["groups"] == groups


def test_kubectl_kustomize_builds_the_bundle() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed")
    result = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    kinds = {doc["kind"] for doc in yaml.safe_load_all(result.stdout)}
    assert kinds == {"StatefulSet", "Service", "ConfigMap", "Secret", "ServiceMonitor", "PodDisruptionBudget",
                     "PrometheusRule"}
    assert all(doc["metadata"].get("namespace") == "monitoring" for doc in yaml.safe_load_all(result.stdout))


# ------------------------------------------------------------------------------ web config

def test_kubernetes_mounts_the_web_config_secret_where_the_flag_points(tmp_path: Path) -> None:
    docs = _k8s()
    pod = docs["StatefulSet"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    flag = Path(container["args"][container["args"].index("--web.config.file") + 1])
    assert "--web.enable-lifecycle" not in container["args"], "reload by HTTP stays off"
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volume = {v["name"]: v for v in pod["volumes"]}[mounts[str(flag.parent)]]
    secret = docs[f"Secret/{volume['secret']['secretName']}"]
    (tmp_path / flag.name).write_text(secret["stringData"][flag.name])
    load_web_config(tmp_path / flag.name)  # raises ConfigError with the problems


def test_compose_and_systemd_pass_the_web_config_and_the_example_loads() -> None:
    command = _compose()["services"]["monitord"]["command"]
    in_container = command[command.index("--web.config.file") + 1]
    assert _binds(_compose()["services"]["monitord"])[in_container] == "./web-config.yml"
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.read_string((DEPLOY / "systemd" / "monitord.service").read_text(encoding="utf-8"))
    argv = shlex.split(parser["Service"]["ExecStart"].replace("\\\n", " "))
    assert argv[argv.index("--web.config.file") + 1] == "/etc/monitord/web-config.yml"
    assert "--web.enable-lifecycle" not in argv + command
    assert load_web_config(DEPLOY / "web-config.example.yml").headers["X-Frame-Options"] == "deny"
