"""The bot's webhook component (k8s/components/bot-webhook), as the gpu-scaled overlay renders it.

Several bot replicas behind Telegram's webhook: a StatefulSet (one job store per replica, given
back to a restarted replica), Redis for the users' modes, a Service and NetworkPolicies for the
webhook. Checked offline against the bot's own settings so the manifests and the program agree.
"""

from __future__ import annotations

import copy
import shutil
from urllib.parse import urlparse

import kubernetes_validate
import pytest
import yaml

from bot.config import Settings
from restoration import names
from tests.test_k8s_manifests import K8S, KUBERNETES_VERSION, container, env_of, find, kustomize

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (for `kubectl kustomize`) is missing")

COMPONENT = K8S / "components" / "bot-webhook"
# What webhook mode adds to the polling bot's container, and nothing else.
WEBHOOK_ENV = {"BOT_WEBHOOK_URL", "BOT_WEBHOOK_SECRET", "BOT_WEBHOOK_PORT", "BOT_REDIS_URL"}


@pytest.fixture(scope="module")
def scaled() -> list[dict]:
    return kustomize(K8S / "overlays" / "gpu-scaled")


@pytest.fixture(scope="module")
def polling() -> list[dict]:
    return kustomize(K8S / "overlays" / "gpu")


def test_the_polling_bot_gives_way_to_a_statefulset(scaled):
    assert not [o for o in scaled if o["metadata"]["name"] == "pix2pix-bot" and o["kind"] == "Deployment"]
    assert not [o for o in scaled if o["kind"] == "PersistentVolumeClaim"]
    sts = find(scaled, "StatefulSet", "pix2pix-bot")
    assert sts["spec"]["replicas"] >= 2
    governing = find(scaled, "Service", sts["spec"]["serviceName"])
    assert governing["spec"]["clusterIP"] == "None"
    # one job store per replica, mounted where the bot keeps its jobs, kept when scaled down
    bot = container(sts, "bot")
    claim = sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"]
    mount = next(m for m in bot["volumeMounts"] if m["name"] == claim)
    assert mount["mountPath"] == env_of(bot)["BOT_STATE_DIR"]
    assert sts["spec"]["persistentVolumeClaimRetentionPolicy"]["whenScaled"] == "Retain"


def test_pod_template_is_the_polling_bots_plus_webhook_settings(scaled, polling):
    """The StatefulSet repeats the base Deployment's pod template: only the documented differences."""
    base = copy.deepcopy(find(polling, "Deployment", "pix2pix-bot")["spec"]["template"])
    hook = copy.deepcopy(find(scaled, "StatefulSet", "pix2pix-bot")["spec"]["template"])
    b, h = container({"spec": {"template": base}}, "bot"), container({"spec": {"template": hook}}, "bot")
    h_env = {e["name"]: e for e in h.pop("env")}
    b_env = {e["name"]: e for e in b.pop("env")}
    assert set(h_env) - set(b_env) == WEBHOOK_ENV
    for name in set(b_env) - {names.ENV_TORCHSERVE_TOKEN}:  # the key is the gateway's in this overlay
        assert h_env[name] == b_env[name], name
    assert [p for p in h.pop("ports") if p["name"] != "webhook"] == b.pop("ports")
    assert h.pop("readinessProbe")["tcpSocket"]["port"] == "webhook"
    b.pop("readinessProbe")
    assert h == b
    base["spec"]["volumes"] = [v for v in base["spec"]["volumes"] if v["name"] != "state"]
    assert hook == base


def test_webhook_and_redis_settings_agree_with_the_bot_and_the_services(scaled):
    sts = find(scaled, "StatefulSet", "pix2pix-bot")
    bot = container(sts, "bot")
    env = env_of(bot)
    for key in ("BOT_WEBHOOK_URL", "BOT_WEBHOOK_SECRET"):
        assert env[key]["secretKeyRef"]["name"] == "pix2pix-bot" and not env[key]["secretKeyRef"].get("optional")
    port = {p["name"]: p["containerPort"] for p in bot["ports"]}["webhook"]
    assert int(env["BOT_WEBHOOK_PORT"]) == port
    svc = find(scaled, "Service", "pix2pix-bot-webhook")
    assert [(p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [(port, "webhook")]
    redis_url = urlparse(env["BOT_REDIS_URL"])
    redis_svc = find(scaled, "Service", redis_url.hostname)
    redis = container(find(scaled, "Deployment", "pix2pix-redis"), "redis")
    assert redis_url.port == redis_svc["spec"]["ports"][0]["port"] == redis["ports"][0]["containerPort"]
    # the bot reads exactly these settings: webhook mode with the shared Redis
    plain = {k: v for k, v in env.items() if isinstance(v, str)}
    settings = Settings.from_env({**plain, names.ENV_BOT_TOKEN: "123456:" + "A" * 35, "BOT_WEBHOOK_URL":
                                  "https://bot.example.com/telegram", "BOT_WEBHOOK_SECRET": "s3cret-token-value"})
    assert settings.webhook_url and settings.webhook_port == port
    assert settings.redis_url == env["BOT_REDIS_URL"]
    # the Secret is the operator's (a template documents the new keys)
    example = yaml.safe_load((K8S / "base" / "bot" / "secret.example.yaml").read_text())
    assert {"webhook-url", "webhook-secret"} <= set(example["stringData"])


def test_only_the_bot_reaches_redis_and_only_the_ingress_the_webhook(scaled):
    redis = find(scaled, "NetworkPolicy", "pix2pix-redis")
    assert redis["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "pix2pix-redis"
    (rule,) = redis["spec"]["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "pix2pix-bot"}}}]
    hook = find(scaled, "NetworkPolicy", "pix2pix-bot-webhook")
    (rule,) = hook["spec"]["ingress"]
    assert [p["port"] for p in rule["ports"]] == [8443]
    assert all("namespaceSelector" in f and "podSelector" not in f for f in rule["from"])


def test_redis_is_pinned_unprivileged_and_keeps_nothing_on_disk(scaled):
    deploy = find(scaled, "Deployment", "pix2pix-redis")
    redis = container(deploy, "redis")
    repo, _, tag = redis["image"].rpartition(":")
    assert repo == "redis" and tag[0].isdigit() and tag.count(".") == 2
    args = redis["args"]
    assert args[args.index("--save") + 1] == "" and args[args.index("--appendonly") + 1] == "no"
    assert "--maxmemory" in args


def test_the_example_ingress_validates_and_points_at_the_webhook(scaled):
    ingress = yaml.safe_load((COMPONENT / "ingress.example.yaml").read_text())
    kubernetes_validate.validate(ingress, KUBERNETES_VERSION, strict=True)
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    svc = find(scaled, "Service", backend["name"])
    assert backend["port"]["name"] in {p["name"] for p in svc["spec"]["ports"]}
    path = ingress["spec"]["rules"][0]["http"]["paths"][0]["path"]
    assert path == Settings.from_env({names.ENV_BOT_TOKEN: "123456:" + "A" * 35}).webhook_path
