"""The three Kubernetes variants (overlays/single, sharded, sharded-standby), as `kubectl kustomize`
renders them, validated offline against the Kubernetes OpenAPI schemas that the
kubernetes-validate package ships (strict: unknown fields are errors), and checked for what makes
them work together: the pod's arguments parse with monitord's own parser and give every pod a
shard, the StatefulSet's replicas match the shard count, peers resolve through the headless
Service, leader election has exactly the RBAC it needs, and every replica is scraped."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any

import pytest
import yaml
from monitoring import DEPLOY

from monitord.__main__ import _parser
from monitord.sharding import peer_urls, spec_from_args

kubernetes_validate = pytest.importorskip("kubernetes_validate")

OVERLAYS = DEPLOY / "kubernetes" / "overlays"
VARIANTS = ("single", "sharded", "sharded-standby")
# The oldest Kubernetes minor still supported upstream when this was written; the objects use
# nothing newer than policy/v1 and coordination.k8s.io/v1.
K8S_VERSION = "1.30.0"
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}


def _kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        if os.environ.get("MONITORD_REQUIRE_E2E") == "1":
            pytest.fail("kubectl (for `kubectl kustomize`) is not installed, but MONITORD_REQUIRE_E2E=1")
        pytest.skip("kubectl not installed")
    return path


def render(variant: str) -> list[dict[str, Any]]:
    result = subprocess.run([_kubectl(), "kustomize", str(OVERLAYS / variant)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def _one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    hits = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(hits) == 1, f"{len(hits)} {kind} {name or ''}"
    return hits[0]


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_object_is_valid_against_the_kubernetes_schemas(variant: str) -> None:
    docs = render(variant)
    for doc in docs:
        assert doc["metadata"].get("namespace") == "monitoring", doc["metadata"]
        if doc["kind"] in CRD_KINDS:
            assert doc["apiVersion"] == "monitoring.coreos.com/v1"
            continue
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_validation_catches_a_broken_object() -> None:
    """Shows the check above can fail: a misspelt field and a wrong type are rejected."""
    sts = _one(render("sharded"), "StatefulSet")
    typo = {**sts, "spec": {**sts["spec"], "replica": 3}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, K8S_VERSION, strict=True)
    wrong = {**sts, "spec": {**sts["spec"], "replicas": "three"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong, K8S_VERSION, strict=True)


def _pod_args(sts: dict[str, Any]) -> list[str]:
    return list(sts["spec"]["template"]["spec"]["containers"][0]["args"])


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_pod_gets_a_shard_and_every_shard_a_pod(variant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = render(variant)
    sts = _one(docs, "StatefulSet")
    replicas = sts["spec"]["replicas"]
    env = {e["name"]: e for e in sts["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    shards: dict[int, int] = {}
    total = 1
    for ordinal in range(replicas):
        monkeypatch.setenv("POD_NAME", f"{sts['metadata']['name']}-{ordinal}")
        args = _parser().parse_args(_pod_args(sts))
        spec = spec_from_args(args)
        total = spec.total
        shards[spec.shard] = shards.get(spec.shard, 0) + 1
    assert sorted(shards) == list(range(total)), "every shard has a pod"
    per_shard = {"single": 1, "sharded": 1, "sharded-standby": 2}[variant]
    assert set(shards.values()) == {per_shard}
    # One pod more would be refused at start (ordinal past the shards), not silently idle.
    monkeypatch.setenv("POD_NAME", f"{sts['metadata']['name']}-{replicas}")
    if variant != "single":
        with pytest.raises(ValueError, match="more replicas than shards"):
            spec_from_args(_parser().parse_args(_pod_args(sts)))


@pytest.mark.parametrize("variant", ["sharded", "sharded-standby"])
def test_peers_are_the_pods_through_the_headless_service(variant: str) -> None:
    docs = render(variant)
    sts = _one(docs, "StatefulSet")
    peers_svc = _one(docs, "Service", sts["spec"]["serviceName"])
    assert peers_svc["spec"]["clusterIP"] == "None" and peers_svc["spec"]["publishNotReadyAddresses"] is True
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert peers_svc["spec"]["selector"].items() <= labels.items()
    args = _parser().parse_args(_pod_args(sts))
    port = sts["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
    urls = peer_urls(args.shard_peers, args.total_shards, args.replicas_per_shard)
    name, svc = sts["metadata"]["name"], peers_svc["metadata"]["name"]
    assert urls == [f"http://{name}-{i}.{svc}:{port}" for i in range(sts["spec"]["replicas"])]


@pytest.mark.parametrize("variant", VARIANTS)
def test_state_is_on_a_volume_per_pod_and_every_replica_is_scraped(variant: str) -> None:
    docs = render(variant)
    sts = _one(docs, "StatefulSet")
    claims = {c["metadata"]["name"]: c for c in sts["spec"]["volumeClaimTemplates"]}
    mounts = {m["name"]: m["mountPath"] for m in sts["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}
    assert mounts[next(iter(claims))] == "/var/lib/monitord"
    assert claims["state"]["spec"]["accessModes"] == ["ReadWriteOnce"]
    # The ServiceMonitor selects only the regular Service (its endpoints: every ready pod, the
    # standby included), never the headless one too, which would scrape each pod twice.
    monitor = _one(docs, "ServiceMonitor")
    selected = [d for d in docs if d["kind"] == "Service"
                and monitor["spec"]["selector"]["matchLabels"].items() <= d["metadata"].get("labels", {}).items()]
    assert [s["metadata"]["name"] for s in selected] == ["monitord"]
    assert selected[0]["spec"]["selector"].items() <= sts["spec"]["template"]["metadata"]["labels"].items()
    pdb = _one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= sts["spec"]["template"]["metadata"]["labels"].items()
    assert pdb["spec"]["maxUnavailable"] == 1


def test_the_standby_variant_may_use_leases_and_nothing_else() -> None:
    docs = render("sharded-standby")
    pod = _one(docs, "StatefulSet")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is True
    account = _one(docs, "ServiceAccount", pod["serviceAccountName"])
    binding = _one(docs, "RoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"],
                                    "namespace": "monitoring"}]
    role = _one(docs, "Role", binding["roleRef"]["name"])
    assert role["rules"] == [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                              "verbs": ["get", "create", "update"]}]
    args = _parser().parse_args(_pod_args(_one(docs, "StatefulSet")))
    assert args.leader_election and args.le_kubeconfig is None, "in-cluster service account"
    assert args.le_lease_duration > args.le_renew_deadline > args.le_retry_period
    for variant in ("single", "sharded"):
        others = render(variant)
        assert not [d for d in others if d["kind"] in ("Role", "RoleBinding", "ServiceAccount")]
        assert _one(others, "StatefulSet")["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


def test_the_top_level_kustomization_is_the_single_variant() -> None:
    result = subprocess.run([_kubectl(), "kustomize", str(DEPLOY / "kubernetes")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert [d for d in yaml.safe_load_all(result.stdout) if d] == render("single")


def test_overlays_are_listed_in_the_readme() -> None:
    readme = (DEPLOY.parent / "README.md").read_text(encoding="utf-8")
    for variant in VARIANTS:
        assert f"deploy/kubernetes/overlays/{variant}" in readme
