"""Every overlay and every component lands in one namespace and refers only to what exists.

`kubectl apply -k` does not check that an HPA's target, a Service's selector or a Secret a pod
mounts exist: a typo or an object left outside the namespace applies cleanly and fails later, in
the cluster. These offline checks render every overlay, and every component on top of each plain
overlay as an operator's own kustomization would list it, then resolve each reference inside the
render. What the manifests use but never create (the operator's Secrets, the namespace's
``kube-root-ca.crt``) must be listed in docs/deploy.md, "Objects you create".
"""

from __future__ import annotations

import copy
import re
import shutil
from collections.abc import Iterator

import pytest

from tests.test_k8s_manifests import K8S, ROOT, kustomize, with_components

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (for `kubectl kustomize`) is missing")

PLAIN = ("gpu", "cpu")
OVERLAYS = (*PLAIN, "gpu-scaled")
COMPONENTS = tuple(sorted(p.name for p in (K8S / "components").iterdir() if (p / "kustomization.yaml").exists()))
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume", "StorageClass",
                  "CustomResourceDefinition", "PriorityClass", "IngressClass", "ValidatingWebhookConfiguration",
                  "MutatingWebhookConfiguration"}
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


def renders() -> Iterator[tuple[str, str, list[str]]]:
    """(id, overlay, components) for every overlay, and every component on each plain overlay."""
    for overlay in OVERLAYS:
        yield overlay, overlay, []
    for overlay in PLAIN:
        for component in COMPONENTS:
            yield f"{overlay}+{component}", overlay, [component]
    yield "gpu-scaled+monitoring", "gpu-scaled", ["monitoring"]


CASES = list(renders())


@pytest.fixture(scope="module", params=CASES, ids=[c[0] for c in CASES])
def render(request, tmp_path_factory) -> list[dict]:
    _, overlay, components = request.param
    if not components:
        return kustomize(K8S / "overlays" / overlay)
    return with_components(tmp_path_factory.mktemp("kz"), overlay, components)


def operator_objects() -> set[tuple[str, str]]:
    """(kind, name) rows of the table in docs/deploy.md, "Objects you create"."""
    text = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    section = text.split("## Objects you create", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| (Secret|ConfigMap) \| `([a-z0-9.-]+)` \|", section, re.M))


# --- the checks, as functions returning what is wrong ----------------------------------------------


def namespace_problems(objs: list[dict]) -> list[str]:
    namespaces = [o["metadata"]["name"] for o in objs if o["kind"] == "Namespace"]
    if len(namespaces) != 1:
        return [f"expected one Namespace, found {namespaces}"]
    (ns,) = namespaces
    return [f"{o['kind']}/{o['metadata']['name']} is in namespace {o['metadata'].get('namespace')!r}, not {ns!r}"
            for o in objs if o["kind"] not in CLUSTER_SCOPED and o["metadata"].get("namespace") != ns]


def matches(selector: dict, labels: dict) -> bool:
    """A label selector (matchLabels and matchExpressions) against a set of labels."""
    if not selector:
        return True
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if (op == "In" and labels.get(key) not in values) or (op == "NotIn" and labels.get(key) in values) \
                or (op == "Exists" and key not in labels) or (op == "DoesNotExist" and key in labels):
            return False
    return True


def pods(objs: list[dict]) -> list[tuple[str, dict, dict]]:
    """(owner, pod labels, pod spec) of every workload's pod template."""
    found = []
    for o in objs:
        if o["kind"] in WORKLOADS:
            tmpl = o["spec"]["template"]
            found.append((f"{o['kind']}/{o['metadata']['name']}", tmpl["metadata"].get("labels", {}), tmpl["spec"]))
    return found


def container_ports(spec: dict) -> set[object]:
    return {p.get(k) for c in spec.get("containers", []) + spec.get("initContainers", [])
            for p in c.get("ports", []) for k in ("name", "containerPort")} - {None}


def config_references(spec: dict) -> Iterator[tuple[str, str]]:
    """(kind, name) of every ConfigMap and Secret a pod spec uses."""
    for v in spec.get("volumes", []):
        if "secret" in v:
            yield "Secret", v["secret"]["secretName"]
        if "configMap" in v:
            yield "ConfigMap", v["configMap"]["name"]
        for source in v.get("projected", {}).get("sources", []):
            if "secret" in source:
                yield "Secret", source["secret"]["name"]
            if "configMap" in source:
                yield "ConfigMap", source["configMap"]["name"]
    for c in spec.get("containers", []) + spec.get("initContainers", []):
        for e in c.get("env", []):
            ref = e.get("valueFrom", {})
            if "secretKeyRef" in ref:
                yield "Secret", ref["secretKeyRef"]["name"]
            if "configMapKeyRef" in ref:
                yield "ConfigMap", ref["configMapKeyRef"]["name"]
        for e in c.get("envFrom", []):
            if "secretRef" in e:
                yield "Secret", e["secretRef"]["name"]
            if "configMapRef" in e:
                yield "ConfigMap", e["configMapRef"]["name"]
    for s in spec.get("imagePullSecrets", []):
        yield "Secret", s["name"]


def reference_problems(objs: list[dict], external: set[tuple[str, str]]) -> list[str]:
    """Every reference that does not resolve inside the render (or to a documented operator object)."""
    have = {(o["kind"], o["metadata"]["name"]) for o in objs}
    workload_pods = pods(objs)
    problems = []

    def selected(selector: dict, what: str) -> list[tuple[str, dict, dict]]:
        hits = [p for p in workload_pods if matches(selector, p[1])]
        if not hits:
            problems.append(f"{what}: selector {selector} matches no pod")
        return hits

    for o in objs:
        kind, name, spec = o["kind"], o["metadata"]["name"], o.get("spec", {})
        what = f"{kind}/{name}"
        if kind == "HorizontalPodAutoscaler":
            target = spec["scaleTargetRef"]
            if (target["kind"], target["name"]) not in have:
                problems.append(f"{what}: scales {target['kind']}/{target['name']}, which is not in the render")
        elif kind == "Service" and spec.get("selector"):
            hits = selected({"matchLabels": spec["selector"]}, what)
            ports = set().union(*(container_ports(p[2]) for p in hits)) if hits else set()
            for port in spec.get("ports", []):
                target = port.get("targetPort", port["port"])
                if hits and target not in ports:
                    problems.append(f"{what}: targetPort {target!r} is no container port of its pods")
        elif kind == "PodDisruptionBudget":
            selected(spec["selector"], what)
        elif kind == "NetworkPolicy":
            if spec["podSelector"]:
                selected(spec["podSelector"], what)
            for rule in spec.get("ingress", []) + spec.get("egress", []):
                for peer in rule.get("from", []) + rule.get("to", []):
                    if "podSelector" in peer and "namespaceSelector" not in peer and peer["podSelector"]:
                        selected(peer["podSelector"], f"{what} (peer)")
        elif kind == "StatefulSet":
            if ("Service", spec["serviceName"]) not in have:
                problems.append(f"{what}: serviceName {spec['serviceName']} is not in the render")
        elif kind == "RoleBinding":
            ref = spec if "roleRef" in spec else o
            role = (ref["roleRef"]["kind"], ref["roleRef"]["name"])
            if role not in have:
                problems.append(f"{what}: binds {role[0]}/{role[1]}, which is not in the render")
            for subject in o.get("subjects", []):
                if subject["kind"] == "ServiceAccount" and ("ServiceAccount", subject["name"]) not in have:
                    problems.append(f"{what}: subject ServiceAccount/{subject['name']} is not in the render")
        elif kind == "ServiceMonitor":
            services = [s for s in objs if s["kind"] == "Service"
                        and matches(spec["selector"], s["metadata"].get("labels", {}))]
            if not services:
                problems.append(f"{what}: selector matches no Service")
            for endpoint in spec.get("endpoints", []):
                if services and not any(endpoint["port"] in {p.get("name") for p in s["spec"]["ports"]}
                                        for s in services):
                    problems.append(f"{what}: port {endpoint['port']} is on none of its Services")
        elif kind == "PodMonitor":
            hits = selected(spec["selector"], what)
            for endpoint in spec.get("podMetricsEndpoints", []):
                if hits and not any(endpoint["port"] in container_ports(p[2]) for p in hits):
                    problems.append(f"{what}: port {endpoint['port']} is on none of its pods")
    claims = {("PersistentVolumeClaim", t["metadata"]["name"]) for o in objs if o["kind"] == "StatefulSet"
              for t in o["spec"].get("volumeClaimTemplates", [])}
    for owner, _, spec in workload_pods:
        account = spec.get("serviceAccountName", "default")
        if account != "default" and ("ServiceAccount", account) not in have:
            problems.append(f"{owner}: ServiceAccount {account} is not in the render")
        for ref in sorted(set(config_references(spec))):
            if ref not in have and ref not in external:
                problems.append(f"{owner}: uses {ref[0]}/{ref[1]}, neither in the render nor in docs/deploy.md")
        volumes = {v["name"] for v in spec.get("volumes", [])} | {c[1] for c in claims}
        for v in spec.get("volumes", []):
            claim = v.get("persistentVolumeClaim", {}).get("claimName")
            if claim and ("PersistentVolumeClaim", claim) not in have:
                problems.append(f"{owner}: claim {claim} is not in the render")
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            for m in c.get("volumeMounts", []):
                if m["name"] not in volumes:
                    problems.append(f"{owner}: {c['name']} mounts {m['name']}, which is no volume of the pod")
    return problems


# --- tests ------------------------------------------------------------------------------------------


def test_every_object_is_in_the_overlays_namespace(render):
    assert namespace_problems(render) == []


def test_every_reference_resolves_inside_the_render(render):
    assert reference_problems(render, operator_objects()) == []


def test_documented_operator_objects_are_used_and_not_shipped():
    """The list in docs/deploy.md is neither stale nor a cover for objects the manifests create."""
    documented = operator_objects()
    assert ("Secret", "pix2pix-bot") in documented
    used: set[tuple[str, str]] = set()
    shipped: set[tuple[str, str]] = set()
    for _, overlay, components in CASES:
        if components:
            continue
        objs = kustomize(K8S / "overlays" / overlay)
        shipped |= {(o["kind"], o["metadata"]["name"]) for o in objs}
        used |= {ref for _, _, spec in pods(objs) for ref in config_references(spec)}
    assert documented <= used, f"listed in docs/deploy.md but used by no overlay: {documented - used}"
    assert not documented & shipped, f"listed as the operator's but shipped: {documented & shipped}"


def test_the_checks_catch_what_they_are_for():
    """Each check flags the mistake it exists for (the gpu-scaled render, broken on purpose)."""
    good = kustomize(K8S / "overlays" / "gpu-scaled")
    external = operator_objects()
    assert namespace_problems(good) == [] and reference_problems(good, external) == []

    def broken(kind: str, name: str, change) -> list[dict]:
        objs = copy.deepcopy(good)
        change(next(o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name))
        return objs

    outside = broken("HorizontalPodAutoscaler", "pix2pix-torchserve", lambda o: o["metadata"].pop("namespace"))
    assert namespace_problems(outside) == [
        "HorizontalPodAutoscaler/pix2pix-torchserve is in namespace None, not 'pix2pix'"]
    cases = {
        "scales Deployment/nope": broken("HorizontalPodAutoscaler", "pix2pix-torchserve",
                                         lambda o: o["spec"]["scaleTargetRef"].update(name="nope")),
        "Service/pix2pix-redis: selector": broken("Service", "pix2pix-redis",
                                                  lambda o: o["spec"]["selector"].update({"app.kubernetes.io/name": "x"})),
        "targetPort 'hook'": broken("Service", "pix2pix-bot-webhook",
                                    lambda o: o["spec"]["ports"][0].update(targetPort="hook")),
        "PodDisruptionBudget/pix2pix-torchserve: selector": broken(
            "PodDisruptionBudget", "pix2pix-torchserve",
            lambda o: o["spec"]["selector"]["matchLabels"].update({"app.kubernetes.io/name": "ts"})),
        "NetworkPolicy/pix2pix-redis (peer)": broken(
            "NetworkPolicy", "pix2pix-redis",
            lambda o: o["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"].update(
                {"app.kubernetes.io/name": "bot"})),
        "uses Secret/pix2pix-redis-password": broken(
            "Deployment", "pix2pix-redis",
            lambda o: next(v for v in o["spec"]["template"]["spec"]["volumes"] if "secret" in v)["secret"].update(
                secretName="pix2pix-redis-password")),
    }
    for expected, objs in cases.items():
        problems = reference_problems(objs, external)
        assert any(expected in p for p in problems), (expected, problems)
