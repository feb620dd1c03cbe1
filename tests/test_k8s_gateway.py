"""The scaled deployment (k8s/overlays/gpu-scaled = gpu + bot-webhook + gateway + autoscaling), checked offline.

Several TorchServe pods cannot share TorchServe's own keys (each process makes its own), so the
gateway component moves authorization into a gateway container holding the keys of one Secret.
These tests tie that wiring together: what listens where, who reads which Secret, that nothing
is left that only made sense for one replica, and that every object validates strictly.
"""

from __future__ import annotations

import re
import shutil

import kubernetes_validate
import pytest

from k8s import render_config
from restoration import names
from tests import test_k8s_manifests as single
from tests.test_k8s_manifests import (
    CRD_KINDS,
    K8S,
    KUBERNETES_VERSION,
    ROOT,
    SIDECAR,
    cluster_props,
    container,
    env_of,
    find,
    kustomize,
    port_of,
)

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (for `kubectl kustomize`) is missing")

GATEWAY = "/home/model-server/bin/ts_gateway.py"


@pytest.fixture(scope="module")
def scaled() -> list[dict]:
    return kustomize(K8S / "overlays" / "gpu-scaled")


def test_every_object_validates_strictly(scaled):
    for obj in scaled:
        if obj["kind"] not in CRD_KINDS:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_torchserve_listens_on_loopback_behind_the_gateway_with_its_own_auth_off(scaled):
    props = cluster_props(scaled)
    base = render_config.render()
    assert props["inference_address"] == f"http://127.0.0.1:{render_config.GATEWAY_UPSTREAM_PORT}"
    assert props["disable_token_authorization"] == "true"
    # everything else is the base cluster config: management on loopback, no model API, ...
    assert props["management_address"] == f"http://127.0.0.1:{names.MANAGEMENT_PORT}"
    assert props["enable_model_api"] == "false" and props["enable_envvars_config"] == "false"
    for line in base.splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            if key not in render_config.GATEWAY_OVERRIDES:
                assert props[key] == value, key


def test_the_gateway_is_the_only_way_in_and_forwards_to_torchserve(scaled):
    props = cluster_props(scaled)
    deploy = find(scaled, "Deployment", "pix2pix-torchserve")
    ts, gw, sidecar = (container(deploy, n) for n in ("torchserve", "gateway", "ts-sidecar"))
    # TorchServe exposes only metrics; the gateway holds the inference port the Service targets
    assert {p["name"]: p["containerPort"] for p in ts["ports"]} == {"metrics": names.METRICS_PORT}
    assert {p["name"]: p["containerPort"] for p in gw["ports"]} == {"inference": names.INFERENCE_PORT}
    svc = find(scaled, "Service", "pix2pix-torchserve")
    assert {p["name"]: p["targetPort"] for p in svc["spec"]["ports"]} == {"inference": "inference", "metrics": "metrics"}
    upstream = port_of(props["inference_address"])
    env = env_of(gw)
    assert port_of(env["GATEWAY_UPSTREAM"]) == upstream and env["GATEWAY_UPSTREAM"].startswith("http://127.0.0.1:")
    assert port_of(env["GATEWAY_LISTEN"]) == names.INFERENCE_PORT
    # probes and the sidecar talk to TorchServe directly, not through the gateway
    assert port_of(env_of(ts)["TS_INFERENCE_URL"]) == upstream
    assert port_of(env_of(sidecar)["TS_INFERENCE_URL"]) == upstream
    assert ts["readinessProbe"]["exec"]["command"][-2:] == [SIDECAR, "ready"]
    assert gw["command"][-1] == GATEWAY and gw["lifecycle"]["preStop"]
    assert gw["image"] == ts["image"]  # the serving image carries the gateway
    for dockerfile in ("Dockerfile.serve", "Dockerfile.serve-cpu"):
        text = (ROOT / "docker" / dockerfile).read_text()
        assert re.search(rf"^COPY .* {re.escape(GATEWAY)}$", text, re.M), dockerfile
        assert re.search(r"\baiohttp\b", text), dockerfile


def test_gateway_and_bot_share_one_operator_made_secret(scaled):
    deploy = find(scaled, "Deployment", "pix2pix-torchserve")
    gw = container(deploy, "gateway")
    pod = deploy["spec"]["template"]["spec"]
    keys_dir = env_of(gw)["GATEWAY_KEYS_DIR"]
    mount = next(m for m in gw["volumeMounts"] if m["mountPath"] == keys_dir)
    assert mount["readOnly"] is True
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    secret = volume["secret"]["secretName"]
    sts = find(scaled, "StatefulSet", "pix2pix-bot")
    assert single.secret_file(sts, container(sts, "bot"), names.ENV_TORCHSERVE_TOKEN + "_FILE") == (
        secret, "inference-key")
    # the Secret holds real keys: the operator makes it, the manifests never carry one
    assert not [o for o in scaled if o["kind"] == "Secret"]


def test_nothing_of_the_one_replica_key_scheme_is_left(scaled):
    deploy = find(scaled, "Deployment", "pix2pix-torchserve")
    sidecar_env = env_of(container(deploy, "ts-sidecar"))
    assert "KEY_SECRET" not in sidecar_env and "RESTART_DEPLOYMENT" not in sidecar_env
    assert not [o for o in scaled if o["kind"] in ("Role", "RoleBinding")]
    pod = deploy["spec"]["template"]["spec"]
    assert not [v for v in pod["volumes"] if "projected" in v]  # no Kubernetes API token in the pod
    assert pod["automountServiceAccountToken"] is False


def test_replicas_roll_without_a_gap_and_the_hpa_owns_their_number(scaled):
    deploy = find(scaled, "Deployment", "pix2pix-torchserve")
    assert "replicas" not in deploy["spec"]
    strategy = deploy["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate" and strategy["rollingUpdate"]["maxUnavailable"] == 0
    hpa = find(scaled, "HorizontalPodAutoscaler", "pix2pix-torchserve")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "pix2pix-torchserve"
    assert hpa["spec"]["minReplicas"] >= 2 and hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
    pdb = find(scaled, "PodDisruptionBudget", "pix2pix-torchserve")
    assert pdb["spec"]["maxUnavailable"] < hpa["spec"]["minReplicas"]


def test_shared_checks_hold_for_the_scaled_overlay(scaled):
    for check in (single.test_containers_are_non_root_read_only_and_unprivileged,
                  single.test_network_policies_let_only_the_bot_reach_inference,
                  single.test_images_are_pinned_and_match_the_overlay):
        check(("gpu", scaled))
    # the same for the StatefulSet of the webhook bot (the checks above look at Deployments)
    as_deployments = [{**o, "kind": "Deployment"} if o["kind"] == "StatefulSet" else o for o in scaled]
    for check in (single.test_containers_are_non_root_read_only_and_unprivileged,
                  single.test_scrape_annotations_point_at_metrics_ports,
                  single.test_images_are_pinned_and_match_the_overlay):
        check(("gpu", as_deployments))
