"""Every overlay renders, validates against the Kubernetes schemas, and agrees with the serving config.

Offline checks of k8s/: `kubectl kustomize` renders the overlays (and the optional components),
`kubernetes-validate` checks every built-in object in strict mode against a pinned Kubernetes
version, and consistency tests tie ports, probes, names and security settings to
config.properties, restoration/names.py and TorchServe's API. prometheus-operator objects (CRDs) have
no schema here: they are checked structurally, and their rules by promtool.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from k8s import render_config
from restoration import names
from serving.server import read_properties

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "k8s"
KUBERNETES_VERSION = "1.33.0"
OVERLAYS = ("gpu", "cpu")
CRD_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
SIDECAR = "/home/model-server/bin/ts_sidecar.py"

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (for `kubectl kustomize`) is missing")


def kustomize(path: Path) -> list[dict]:
    out = subprocess.run(["kubectl", "kustomize", str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def with_components(tmp_path: Path, overlay: str, components: list[str]) -> list[dict]:
    """Render an overlay plus optional components, as an operator's own kustomization would."""
    rel = os.path.relpath(K8S, tmp_path)
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [f"{rel}/overlays/{overlay}"],
        "components": [f"{rel}/components/{c}" for c in components],
    }))
    return kustomize(tmp_path)


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request) -> tuple[str, list[dict]]:
    return request.param, kustomize(K8S / "overlays" / request.param)


@pytest.fixture(scope="module")
def gpu() -> list[dict]:
    return kustomize(K8S / "overlays" / "gpu")


@pytest.fixture(scope="module")
def full(tmp_path_factory) -> list[dict]:
    return with_components(tmp_path_factory.mktemp("kz"), "gpu", ["monitoring", "autoscaling"])


def find(objs: list[dict], kind: str, name: str) -> dict:
    matches = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


def container(deployment: dict, name: str) -> dict:
    spec = deployment["spec"]["template"]["spec"]
    for c in spec.get("containers", []) + spec.get("initContainers", []):
        if c["name"] == name:
            return c
    raise AssertionError(f"no container {name}")


def env_of(c: dict) -> dict[str, object]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


def cluster_props(objs: list[dict]) -> dict[str, str]:
    cm = next(o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("pix2pix-torchserve-config"))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.properties"
        path.write_text(cm["data"]["config.properties"])
        return read_properties(path)


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


# --- rendering and schemas ---------------------------------------------------------------------------


def test_every_builtin_object_validates_strictly(rendered, full):
    overlay, objs = rendered
    for obj in objs + full:
        if obj["kind"] in CRD_KINDS:
            continue
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    kinds = {o["kind"] for o in objs}
    assert {"Deployment", "Service", "ConfigMap", "NetworkPolicy", "PodDisruptionBudget"} <= kinds
    assert "HorizontalPodAutoscaler" in {o["kind"] for o in full}


def test_strict_validation_catches_a_misspelt_field(gpu):
    """The validator is not a rubber stamp: a typo in a Deployment is refused."""
    bad = json.loads(json.dumps(find(gpu, "Deployment", "pix2pix-torchserve")))
    bad["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"exec": {"command": ["true"]}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES_VERSION, strict=True)


def test_generated_files_are_current():
    for path, text in render_config.outputs().items():
        assert path.read_text(encoding="utf-8") == text, f"{path.name} is stale: run `python -m k8s.render_config`"


def test_monitoring_objects_are_well_formed(full):
    svc = find(full, "Service", "pix2pix-torchserve")
    sm = find(full, "ServiceMonitor", "pix2pix-torchserve")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert {e["port"] for e in sm["spec"]["endpoints"]} <= {p["name"] for p in svc["spec"]["ports"]}
    pm = find(full, "PodMonitor", "pix2pix-bot")
    bot = find(full, "Deployment", "pix2pix-bot")
    assert pm["spec"]["selector"]["matchLabels"].items() <= bot["spec"]["template"]["metadata"]["labels"].items()
    assert {e["port"] for e in pm["spec"]["podMetricsEndpoints"]} <= {p["name"] for p in container(bot, "bot")["ports"]}
    # job labels as in monitoring/prometheus.yml, which the alerts and the dashboard use
    jobs = {c["job_name"] for c in yaml.safe_load((ROOT / "monitoring" / "prometheus.yml").read_text())["scrape_configs"]}
    relabelled = {r["replacement"] for r in sm["spec"]["endpoints"][0]["relabelings"] if r.get("targetLabel") == "job"}
    relabelled |= {r["replacement"] for r in pm["spec"]["podMetricsEndpoints"][0]["relabelings"]
                   if r.get("targetLabel") == "job"}
    assert relabelled == jobs
    rule = find(full, "PrometheusRule", "pix2pix-sr")
    assert rule["spec"]["groups"] == yaml.safe_load((ROOT / "monitoring" / "alerts.yml").read_text())["groups"]
    dash = find(full, "ConfigMap", "pix2pix-grafana-dashboard")
    assert dash["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dash["data"]["pix2pix-sr.json"])["uid"] == "pix2pix-sr"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool missing (Debian package `prometheus`)")
def test_prometheusrule_rules_pass_promtool(full, tmp_path):
    rule = find(full, "PrometheusRule", "pix2pix-sr")
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    out = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


# --- TorchServe: configuration, ports, probes ----------------------------------------------------------


def test_cluster_config_is_the_local_one_with_torchserve_on_loopback_behind_the_front(rendered):
    _, objs = rendered
    props = cluster_props(objs)
    local = read_properties(ROOT / "config.properties")
    # inference only on the pod's loopback: the front in the same pod is the only way in
    assert props["inference_address"] == f"http://127.0.0.1:{names.TORCHSERVE_INFERENCE_PORT}"
    assert props["inference_address"] == local["inference_address"]
    assert props["metrics_address"] == f"http://0.0.0.0:{names.METRICS_PORT}"
    # management only on the pod's loopback: unreachable from any other pod
    assert props["management_address"] == f"http://127.0.0.1:{names.MANAGEMENT_PORT}"
    # the front checks the keys of one Secret; TorchServe's own per-process keys stay off
    assert props["disable_token_authorization"] == "true"
    assert props["enable_model_api"] == "false"
    assert props["enable_envvars_config"] == "false"
    assert props["allowed_urls"] == f"file://{props['model_store']}/.*" and ".*" not in props["model_store"]
    assert props["metrics_mode"] == "prometheus"
    for key in ("models", "load_models", "max_request_size", "max_response_size", "job_queue_size"):
        assert props[key] == local[key], key


def test_container_ports_and_services_agree_with_config(rendered):
    _, objs = rendered
    props = cluster_props(objs)
    deploy = find(objs, "Deployment", "pix2pix-torchserve")
    ts, proxy = container(deploy, "torchserve"), container(deploy, "proxy")
    # TorchServe exposes only metrics; the front holds the inference port the Service targets
    assert {p["name"]: p["containerPort"] for p in ts["ports"]} == {"metrics": port_of(props["metrics_address"])}
    assert {p["name"]: p["containerPort"] for p in proxy["ports"]} == {"inference": names.INFERENCE_PORT}
    ports = {p["name"]: p["containerPort"] for c in (ts, proxy) for p in c["ports"]}
    services = [o for o in objs if o["kind"] == "Service"]
    exposed = {p.get("targetPort") for s in services for p in s["spec"]["ports"]}
    exposed |= {p["port"] for s in services for p in s["spec"]["ports"]}
    assert names.MANAGEMENT_PORT not in exposed and "management" not in exposed
    assert names.TORCHSERVE_INFERENCE_PORT not in exposed
    assert names.MANAGEMENT_PORT not in ports.values()
    svc = find(objs, "Service", "pix2pix-torchserve")
    assert {p["name"]: p["port"] for p in svc["spec"]["ports"]} == ports
    assert {p["name"]: p["targetPort"] for p in svc["spec"]["ports"]} == {"inference": "inference", "metrics": "metrics"}
    for policy in (o for o in objs if o["kind"] == "NetworkPolicy"):
        for rule in policy["spec"].get("ingress", []):
            assert names.MANAGEMENT_PORT not in {p["port"] for p in rule.get("ports", [])}


def test_probes_use_the_sidecar_and_readiness_needs_the_workflow(rendered):
    _, objs = rendered
    props = cluster_props(objs)
    deploy = find(objs, "Deployment", "pix2pix-torchserve")
    ts = container(deploy, "torchserve")
    assert ts["readinessProbe"]["exec"]["command"][-2:] == [SIDECAR, "ready"]
    assert ts["livenessProbe"]["exec"]["command"][-2:] == [SIDECAR, "live"]
    assert ts["startupProbe"]["exec"]["command"][-2:] == [SIDECAR, "live"]
    # the probes may take the whole model load: startup allows minutes
    startup = ts["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300
    sidecar = container(deploy, "ts-sidecar")
    assert sidecar["restartPolicy"] == "Always" and sidecar["command"][-2:] == [SIDECAR, "run"]
    env = env_of(sidecar)
    assert port_of(env["TS_MANAGEMENT_URL"]) == port_of(props["management_address"])
    assert port_of(env["TS_INFERENCE_URL"]) == port_of(props["inference_address"])
    assert env["TS_WORKFLOW"] == names.WORKFLOW_RESTORE
    # the probes in TorchServe's container reach it on loopback too
    assert port_of(env_of(ts)["TS_INFERENCE_URL"]) == port_of(props["inference_address"])
    # TorchServe's working directory, which the sidecar reads
    workdir = env_of(ts)["TS_WORKDIR"]
    assert env["TS_WORKDIR"] == workdir
    assert workdir in {m["mountPath"] for m in ts["volumeMounts"]} & {m["mountPath"] for m in sidecar["volumeMounts"]}
    assert f"WORKDIR {workdir}" in (ROOT / "docker" / "Dockerfile.serve").read_text()
    # the sidecar's script and the config's paths exist in the image
    dockerfile = (ROOT / "docker" / "Dockerfile.serve").read_text()
    for path in (SIDECAR, props["metrics_config"], props["model_store"] + "/"):
        assert re.search(rf"^COPY .* {re.escape(path)}$", dockerfile, re.M), path
    config_mount = next(m["mountPath"] for m in ts["volumeMounts"] if m["name"] == "config")
    assert f"{config_mount}/config.properties" in dockerfile
    assert deploy["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > 30
    # one GPU, one pod: never two side by side during an update (the autoscaling component rolls)
    assert deploy["spec"]["replicas"] == 1 and deploy["spec"]["strategy"]["type"] == "Recreate"
    assert ts["lifecycle"]["preStop"]


def test_nothing_in_the_pod_calls_the_kubernetes_api(rendered):
    """The front reads the keys from a mounted Secret: no Role, no token, no API egress."""
    _, objs = rendered
    deploy = find(objs, "Deployment", "pix2pix-torchserve")
    env = env_of(container(deploy, "ts-sidecar"))
    assert not {"KEY_SECRET", "RESTART_DEPLOYMENT"} & set(env)
    assert not [o for o in objs if o["kind"] in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")]
    pod = deploy["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert not [v for v in pod["volumes"] if "projected" in v]
    policy = find(objs, "NetworkPolicy", "pix2pix-torchserve")
    assert {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]} == {53}
    assert not [o for o in objs if o["kind"] == "Secret"]  # the operator makes the keys' Secret


def keys_secret(deploy: dict) -> tuple[str, str]:
    """(Secret, mount path) of the keys the front accepts."""
    proxy = container(deploy, "proxy")
    keys_dir = render_config.PROXY_KEYS_DIR
    mount = next(m for m in proxy["volumeMounts"] if m["mountPath"] == keys_dir)
    assert mount["readOnly"] is True
    volume = next(v for v in deploy["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"])
    return volume["secret"]["secretName"], keys_dir


def test_the_front_is_the_only_way_in_and_runs_the_rendered_config(rendered, tmp_path):
    _, objs = rendered
    deploy = find(objs, "Deployment", "pix2pix-torchserve")
    proxy = container(deploy, "proxy")
    pod = deploy["spec"]["template"]["spec"]
    # its nginx.conf: the ConfigMap generated from serving/nginx/nginx.conf, mounted where the
    # image's entry point reads it
    cm = next(o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("pix2pix-proxy-config"))
    assert cm["data"]["nginx.conf"] == render_config.render_proxy()
    mount = next(m for m in proxy["volumeMounts"] if m["name"] ==
                 next(v["name"] for v in pod["volumes"] if v.get("configMap", {}).get("name") == cm["metadata"]["name"]))
    dockerfile = (ROOT / "docker" / "Dockerfile.proxy").read_text()
    assert f'"-c", "{mount["mountPath"]}/nginx.conf"' in dockerfile
    assert re.search(rf"^COPY .*serving/nginx/front.js {re.escape(render_config.PROXY_JS_DIR)}/front.js$", dockerfile, re.M)
    assert "STOPSIGNAL SIGQUIT" in dockerfile  # requests in flight finish on shutdown
    # what it listens on and forwards to, the keys it reads, its one writable place
    conf = cm["data"]["nginx.conf"]
    props = cluster_props(objs)
    assert f"listen 0.0.0.0:{names.INFERENCE_PORT};" in conf
    assert f"server 127.0.0.1:{port_of(props['inference_address'])};" in conf
    secret, keys_dir = keys_secret(deploy)
    assert f"js_var $inference_keys_dir {keys_dir};" in conf and secret == "pix2pix-inference-key"
    assert "if ($inference_key_ok != 1) { return 401; }" in conf
    assert render_config.PROXY_RUN_DIR in {m["mountPath"] for m in proxy["volumeMounts"]}
    # it would hold this many workflow replies of this size; its memory limit covers twice that
    limit = int(re.search(r"limit_conn workflows (\d+);", conf).group(1))
    reply = int(re.search(r"subrequest_output_buffer_size (\d+);", conf).group(1))
    assert reply == int(props["max_response_size"])
    memory = proxy["resources"]["limits"]["memory"]
    assert memory.endswith("Mi") and int(memory[:-2]) * 2**20 >= limit * 2 * reply
    # probes: ready through to TorchServe's /ping, alive on nginx alone
    assert proxy["readinessProbe"]["httpGet"] == {"path": "/ping", "port": "inference"}
    assert proxy["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "inference"}
    assert proxy["lifecycle"]["preStop"]
    # the configuration is one nginx accepts (its paths pointed at this machine)
    from serving.proxy import FrontSettings, Proxy, missing

    if reason := missing():
        pytest.fail(f"{reason}; `make setup` installs it")
    local = render_config.proxy_settings(run_dir=tmp_path, js_dir=ROOT / "serving" / "nginx",
                                         error_log=str(tmp_path / "error.log"))
    assert isinstance(local, FrontSettings)
    Proxy(local).write_config()
    Proxy(local).check()


# --- bot -------------------------------------------------------------------------------------------


def secret_file(pod_owner: dict, c: dict, variable: str) -> tuple[str, str]:
    """(Secret, key) that the file named by ``variable`` (a *_FILE setting) comes from."""
    path = env_of(c)[variable]
    folder, _, key = path.rpartition("/")
    mount = next(m for m in c["volumeMounts"] if m["mountPath"] == folder)
    assert mount["readOnly"] is True
    volume = next(v for v in pod_owner["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"])
    items = {i["key"]: i["path"] for i in volume["secret"].get("items", [])}
    assert not items or key in items.values(), f"{variable}: {key} is not projected"
    return volume["secret"]["secretName"], next((k for k, p in items.items() if p == key), key)


def test_bot_settings_come_from_secret_files_and_agree_with_names(rendered):
    _, objs = rendered
    bot_deploy = find(objs, "Deployment", "pix2pix-bot")
    bot = container(bot_deploy, "bot")
    env = env_of(bot)
    known = {getattr(names, n) for n in dir(names) if n.startswith("ENV_")}
    assert {names.ENV_BOT_TOKEN + "_FILE", names.ENV_TORCHSERVE_URL, names.ENV_TORCHSERVE_TOKEN + "_FILE"} <= set(env)
    assert {k.removesuffix("_FILE") for k in env if not k.startswith("BOT_")} <= known
    # secrets as files only: nothing secret in the environment
    assert not [e for e in bot["env"] if "secretKeyRef" in e.get("valueFrom", {})] and "envFrom" not in bot
    assert secret_file(bot_deploy, bot, names.ENV_BOT_TOKEN + "_FILE") == ("pix2pix-bot", "telegram-bot-token")
    assert secret_file(bot_deploy, bot, "BOT_ALLOWED_USERS_FILE") == ("pix2pix-bot", "allowed-users")
    # the bot sends the key of the Secret the front accepts
    secret, _ = keys_secret(find(objs, "Deployment", "pix2pix-torchserve"))
    assert secret_file(bot_deploy, bot, names.ENV_TORCHSERVE_TOKEN + "_FILE") == (secret, "inference-key")
    svc = find(objs, "Service", "pix2pix-torchserve")
    assert env[names.ENV_TORCHSERVE_URL] == f"http://{svc['metadata']['name']}:{names.INFERENCE_PORT}"
    assert env[names.ENV_BOT_METRICS_PORT] == str(names.BOT_METRICS_PORT)
    assert [p["containerPort"] for p in bot["ports"]] == [names.BOT_METRICS_PORT]
    # long polling: exactly one bot, never two at once
    assert bot_deploy["spec"]["replicas"] == 1 and bot_deploy["spec"]["strategy"]["type"] == "Recreate"
    # the Secret is shipped as a template only, without a real token
    example = yaml.safe_load((K8S / "base" / "bot" / "secret.example.yaml").read_text())
    assert "<" in example["stringData"]["telegram-bot-token"]
    assert not [o for o in objs if o["kind"] == "Secret" and o["metadata"]["name"] == "pix2pix-bot"]


def test_scrape_annotations_point_at_metrics_ports(rendered):
    _, objs = rendered
    for name, port in (("pix2pix-torchserve", names.METRICS_PORT), ("pix2pix-bot", names.BOT_METRICS_PORT)):
        tmpl = find(objs, "Deployment", name)["spec"]["template"]
        ann = tmpl["metadata"]["annotations"]
        assert ann["prometheus.io/scrape"] == "true" and int(ann["prometheus.io/port"]) == port
        assert port in {p["containerPort"] for c in tmpl["spec"]["containers"] for p in c["ports"]}


# --- images, resources, security -------------------------------------------------------------------


def test_images_are_pinned_and_match_the_overlay(rendered):
    overlay, objs = rendered
    for deploy in (o for o in objs if o["kind"] == "Deployment"):
        spec = deploy["spec"]["template"]["spec"]
        for c in spec["containers"] + spec.get("initContainers", []):
            repo, _, tag = c["image"].rpartition(":")
            assert repo and tag and tag != "latest" and "/" not in tag, c["image"]
            if repo.endswith("/torchserve"):
                assert tag.endswith(f"-{overlay}"), c["image"]


def test_gpu_overlay_requests_a_gpu_and_cpu_overlay_does_not(rendered):
    overlay, objs = rendered
    spec = find(objs, "Deployment", "pix2pix-torchserve")["spec"]["template"]["spec"]
    ts = container(find(objs, "Deployment", "pix2pix-torchserve"), "torchserve")
    res = ts["resources"]
    for key in ("cpu", "memory"):
        assert key in res["requests"] and key in res["limits"]
    if overlay == "gpu":
        assert res["limits"]["nvidia.com/gpu"] == 1
        assert spec["nodeSelector"] and any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"])
    else:
        assert "nvidia.com/gpu" not in json.dumps(spec)


def test_containers_are_non_root_read_only_and_unprivileged(rendered):
    _, objs = rendered
    for deploy in (o for o in objs if o["kind"] == "Deployment"):
        pod = deploy["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] > 0
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        for c in pod["containers"] + pod.get("initContainers", []):
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
            assert sc["capabilities"]["drop"] == ["ALL"] and "add" not in sc["capabilities"]
            assert "requests" in c["resources"] and "limits" in c["resources"]
    ns = next(o for o in objs if o["kind"] == "Namespace")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_network_policies_let_only_the_bot_reach_inference(rendered):
    _, objs = rendered
    deny = find(objs, "NetworkPolicy", "pix2pix-default-deny-ingress")
    assert deny["spec"]["podSelector"] == {} and "ingress" not in deny["spec"]
    ts = find(objs, "NetworkPolicy", "pix2pix-torchserve")
    by_port = {p["port"]: rule["from"] for rule in ts["spec"]["ingress"] for p in rule["ports"]}
    assert set(by_port) == {names.INFERENCE_PORT, names.METRICS_PORT}
    inference_from = by_port[names.INFERENCE_PORT]
    assert {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "pix2pix-bot"}}} in inference_from
    assert all("ipBlock" not in peer for peer in inference_from)
