"""The bot's webhook component (k8s/components/bot-webhook), as the gpu-scaled overlay renders it.

Several bot replicas behind Telegram's webhook: a StatefulSet (one job store per replica, given
back to a restarted replica), Redis for the users' modes, a Service and NetworkPolicies for the
webhook. Checked offline against the bot's own settings so the manifests and the program agree.
"""

from __future__ import annotations

import copy
import re
import shutil
from urllib.parse import urlparse

import kubernetes_validate
import pytest
import yaml

from bot.config import Settings
from restoration import names
from tests.test_k8s_manifests import K8S, KUBERNETES_VERSION, container, env_of, find, kustomize, secret_file

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (for `kubectl kustomize`) is missing")

COMPONENT = K8S / "components" / "bot-webhook"
# What webhook mode adds to the polling bot's container, and nothing else.
WEBHOOK_ENV = {"BOT_WEBHOOK_URL_FILE", "BOT_WEBHOOK_SECRET_FILE", "BOT_WEBHOOK_PORT", "BOT_REDIS_URL",
               "BOT_REDIS_PASSWORD_FILE"}


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
    for name in b_env:
        assert h_env[name] == b_env[name], name
    assert [p for p in h.pop("ports") if p["name"] != "webhook"] == b.pop("ports")
    assert h.pop("readinessProbe")["tcpSocket"]["port"] == "webhook"
    b.pop("readinessProbe")
    h["volumeMounts"] = [m for m in h["volumeMounts"] if m["name"] != "redis-password"]
    assert h == b
    base["spec"]["volumes"] = [v for v in base["spec"]["volumes"] if v["name"] != "state"]
    hook["spec"]["volumes"] = [v for v in hook["spec"]["volumes"] if v["name"] != "redis-password"]
    for pod in (base, hook):
        pod["spec"]["volumes"].sort(key=lambda v: v["name"])
    assert hook == base


def test_webhook_and_redis_settings_agree_with_the_bot_and_the_services(scaled):
    sts = find(scaled, "StatefulSet", "pix2pix-bot")
    bot = container(sts, "bot")
    env = env_of(bot)
    assert secret_file(sts, bot, "BOT_WEBHOOK_URL_FILE") == ("pix2pix-bot", "webhook-url")
    assert secret_file(sts, bot, "BOT_WEBHOOK_SECRET_FILE") == ("pix2pix-bot", "webhook-secret")
    assert not [e for e in bot["env"] if "valueFrom" in e]
    port = {p["name"]: p["containerPort"] for p in bot["ports"]}["webhook"]
    assert int(env["BOT_WEBHOOK_PORT"]) == port
    svc = find(scaled, "Service", "pix2pix-bot-webhook")
    assert [(p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [(port, "webhook")]
    redis_url = urlparse(env["BOT_REDIS_URL"])
    redis_svc = find(scaled, "Service", redis_url.hostname)
    redis_deploy = find(scaled, "Deployment", "pix2pix-redis")
    redis = container(redis_deploy, "redis")
    assert redis_url.port == redis_svc["spec"]["ports"][0]["port"] == redis["ports"][0]["containerPort"]
    # one password, from one Secret: the file Redis reads its password from is the bot's
    assert redis_url.password is None
    password = secret_file(sts, bot, "BOT_REDIS_PASSWORD_FILE")
    redis_file = next(w for w in redis["command"][2].split() if w.startswith("/var/run/secrets/")).rstrip(")")
    assert secret_file(redis_deploy, {**redis, "env": [{"name": "P", "value": redis_file}]}, "P") == password
    assert password == ("pix2pix-redis", "password")
    # the bot reads exactly these settings: webhook mode with the shared Redis (files as values here)
    plain = {k: v for k, v in env.items() if isinstance(v, str) and not k.endswith("_FILE")}
    settings = Settings.from_env({**plain, names.ENV_BOT_TOKEN: "123456:" + "A" * 35, "BOT_WEBHOOK_URL":
                                  "https://bot.example.com/telegram", "BOT_WEBHOOK_SECRET": "s3cret-token-value",
                                  "BOT_REDIS_PASSWORD": "0123456789abcdef"})
    assert settings.webhook_url and settings.webhook_port == port
    assert settings.redis_url == env["BOT_REDIS_URL"] and settings.redis_password
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
    # a version tag for people, the digest for the kubelet (a tag can be moved, a digest cannot)
    assert re.fullmatch(r"redis:\d+\.\d+\.\d+-alpine@sha256:[0-9a-f]{64}", redis["image"]), redis["image"]
    assert "args" not in redis and redis["command"][:2] == ["sh", "-c"]
    script = redis["command"][2]
    assert script.startswith("exec redis-server - ")  # Redis replaces the shell: it gets SIGTERM
    assert '--save ""' in script and "--appendonly no" in script and "--maxmemory " in script
    assert "--protected-mode no" not in script  # protected: an empty password refuses other pods
    assert "requirepass $(cat /var/run/secrets/" in script
    # the password is never in the environment or the arguments
    assert not [e for e in redis.get("env", []) if "valueFrom" in e]


def test_the_example_ingress_validates_and_points_at_the_webhook(scaled):
    ingress = yaml.safe_load((COMPONENT / "ingress.example.yaml").read_text())
    kubernetes_validate.validate(ingress, KUBERNETES_VERSION, strict=True)
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    svc = find(scaled, "Service", backend["name"])
    assert backend["port"]["name"] in {p["name"] for p in svc["spec"]["ports"]}
    path = ingress["spec"]["rules"][0]["http"]["paths"][0]["path"]
    assert path == Settings.from_env({names.ENV_BOT_TOKEN: "123456:" + "A" * 35}).webhook_path
