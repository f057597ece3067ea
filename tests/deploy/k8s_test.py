#!/usr/bin/env python3
"""The Kubernetes manifests, checked without a cluster.

For the base, each overlay and examples/k8s:
1. `kubectl kustomize` renders it;
2. every rendered object validates against the Kubernetes OpenAPI schemas
   bundled in the pinned kubernetes-models package (deploy/k8s/validate,
   installed by scripts/setup.sh with `npm ci`; no network here);
3. our policy holds (policy_failures below): probes, requests and limits,
   the security context, a PodDisruptionBudget per Deployment, Secrets
   referenced and never inlined, probe ports that exist.

--self-test also breaks a copy of the dev overlay in each way the policy
forbids and checks that each break is reported.

Usage: k8s_test.py --source-dir DIR [--self-test]
"""
import argparse
import copy
import json
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import k8s_render  # noqa: E402

# Environment variable names and ConfigMap keys that must come from a
# Secret, never a literal value.
SECRET_LIKE = re.compile(r"(TOKEN|PASSWORD|PASSWD|SECRET|CREDENTIAL|"
                         r"PRIVATE_KEY|^MM_DB$|DATABASE_URL)", re.I)
INLINE_SECRET_REASON = "modelmanager.io/inline-secret-reason"
LONG_RUNNING = {"Deployment", "DaemonSet", "StatefulSet"}


def container_port_names(container):
    ports = set()
    for port in container.get("ports") or []:
        ports.add(port.get("containerPort"))
        if port.get("name"):
            ports.add(port["name"])
    return ports


def listen_port(container):
    """The port of --listen=HOST:PORT (or --listen HOST:PORT) in args."""
    args = (container.get("command") or []) + (container.get("args") or [])
    for i, arg in enumerate(args):
        value = None
        if arg.startswith("--listen="):
            value = arg.split("=", 1)[1]
        elif arg == "--listen" and i + 1 < len(args):
            value = args[i + 1]
        if value is not None and ":" in value and not value.startswith("unix:"):
            return int(value.rsplit(":", 1)[1])
    return None


def probe_failures(where, container, probe_name):
    probe = container.get(probe_name)
    if not probe:
        return [f"{where}: no {probe_name}"]
    failures = []
    ports = container_port_names(container)
    for handler in ("grpc", "httpGet", "tcpSocket"):
        if handler in probe:
            port = probe[handler].get("port")
            if port not in ports:
                failures.append(f"{where}: {probe_name} port {port} is not a "
                                f"declared container port {sorted(map(str, ports))}")
            if handler == "grpc" and listen_port(container) not in (None, port):
                failures.append(f"{where}: {probe_name} asks port {port}, the "
                                f"service listens on {listen_port(container)}")
    return failures


def security_failures(where, pod_security, container):
    failures = []
    security = container.get("securityContext") or {}
    if security.get("allowPrivilegeEscalation") is not False:
        failures.append(f"{where}: allowPrivilegeEscalation must be false")
    if security.get("readOnlyRootFilesystem") is not True:
        failures.append(f"{where}: readOnlyRootFilesystem must be true")
    if "ALL" not in ((security.get("capabilities") or {}).get("drop") or []):
        failures.append(f"{where}: capabilities must drop ALL")
    if security.get("privileged"):
        failures.append(f"{where}: privileged")
    for context_name, context in (("container", security),
                                  ("pod", pod_security)):
        if context.get("runAsUser") == 0:
            failures.append(f"{where}: {context_name} runs as uid 0")
    if security.get("runAsNonRoot") is not True:
        failures.append(f"{where}: container runAsNonRoot must be true")
    seccomp = (security.get("seccompProfile") or {}).get("type")
    if seccomp != "RuntimeDefault":
        failures.append(f"{where}: container seccompProfile must be "
                        f"RuntimeDefault, got {seccomp}")
    return failures


def env_failures(where, container):
    failures = []
    for env in container.get("env") or []:
        if "value" in env and SECRET_LIKE.search(env.get("name", "")):
            failures.append(f"{where}: env {env['name']} has a literal value; "
                            f"take it from a Secret (secretKeyRef)")
    return failures


def policy_failures(objects):
    """Every way `objects` (one render) breaks our policy, as messages."""
    failures = []
    by_kind = {}
    for obj in objects:
        by_kind.setdefault(obj.get("kind"), []).append(obj)
    workloads = [o for o in objects if k8s_render.pod_spec(o) is not None]
    for obj in workloads:
        spec = k8s_render.pod_spec(obj)
        name = k8s_render.name_of(obj)
        pod_security = spec.get("securityContext") or {}
        if pod_security.get("runAsNonRoot") is not True:
            failures.append(f"{name}: pod securityContext.runAsNonRoot must "
                            f"be true")
        if (pod_security.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
            failures.append(f"{name}: pod seccompProfile must be RuntimeDefault")
        for field in ("hostNetwork", "hostPID"):
            if spec.get(field):
                failures.append(f"{name}: {field} is not allowed")
        containers = spec.get("containers") or []
        for container in (spec.get("initContainers") or []) + containers:
            where = f"{name} container {container.get('name')}"
            failures += security_failures(where, pod_security, container)
            failures += env_failures(where, container)
            resources = container.get("resources") or {}
            for part in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    if resource not in (resources.get(part) or {}):
                        failures.append(f"{where}: no {part}.{resource}")
            image = container.get("image", "")
            if ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest"):
                failures.append(f"{where}: image {image!r} needs a fixed tag")
        if obj["kind"] in LONG_RUNNING:
            for container in containers:
                where = f"{name} container {container.get('name')}"
                for probe in ("readinessProbe", "livenessProbe"):
                    failures += probe_failures(where, container, probe)
    # Every Deployment has a PodDisruptionBudget selecting its pods.
    for deployment in by_kind.get("Deployment", []):
        labels = k8s_render.pod_labels(deployment)
        if not any(k8s_render.selects(pdb["spec"].get("selector"), labels)
                   for pdb in by_kind.get("PodDisruptionBudget", [])):
            failures.append(f"{k8s_render.name_of(deployment)}: no "
                            f"PodDisruptionBudget selects its pods")
    # Secrets: referenced, never rendered, except one documented by the
    # annotation (the dev database URL, which holds no credential).
    for secret in by_kind.get("Secret", []):
        annotations = (secret.get("metadata") or {}).get("annotations") or {}
        if not annotations.get(INLINE_SECRET_REASON):
            failures.append(f"{k8s_render.name_of(secret)}: a Secret in the "
                            f"render; reference it and let the operator "
                            f"create it (or annotate {INLINE_SECRET_REASON})")
    for config_map in by_kind.get("ConfigMap", []):
        for key in (config_map.get("data") or {}):
            if SECRET_LIKE.search(key):
                failures.append(f"{k8s_render.name_of(config_map)}: key {key} "
                                f"belongs in a Secret")
    # Services and the HPA point at something that exists.
    for service in by_kind.get("Service", []):
        selector = (service.get("spec") or {}).get("selector")
        if not any(k8s_render.selects(selector, k8s_render.pod_labels(w))
                   for w in workloads):
            failures.append(f"{k8s_render.name_of(service)}: selects no pods")
    for hpa in by_kind.get("HorizontalPodAutoscaler", []):
        target = hpa["spec"]["scaleTargetRef"]
        if not any(d["metadata"]["name"] == target["name"]
                   for d in by_kind.get(target["kind"], [])):
            failures.append(f"{k8s_render.name_of(hpa)}: scales "
                            f"{target['kind']}/{target['name']}, not rendered")
    return failures


def schema_failures(validator_dir, objects):
    """Messages for objects the pinned schemas reject."""
    node = shutil.which("node")
    if node is None:
        return ["node is not installed (scripts/setup.sh)"]
    if not os.path.isdir(os.path.join(validator_dir, "node_modules",
                                      "kubernetes-models")):
        return [f"the schema validator is not installed: run scripts/setup.sh "
                f"(npm ci in {validator_dir})"]
    result = subprocess.run([node, os.path.join(validator_dir, "validate.cjs")],
                            input=json.dumps(objects), capture_output=True,
                            text=True, timeout=60)
    if result.returncode == 0:
        return []
    lines = [line for line in result.stdout.splitlines()
             if not re.match(r"^\d+ valid, \d+ invalid$", line)]
    return lines or [f"validator failed: {result.stderr.strip()}"]


def check_all(source_dir):
    validator = os.path.join(source_dir, "deploy/k8s/validate")
    failures, rendered = [], 0
    for directory in k8s_render.KUSTOMIZATIONS:
        try:
            objects = k8s_render.render(os.path.join(source_dir, directory))
        except k8s_render.RenderError as error:
            failures.append(str(error))
            continue
        rendered += len(objects)
        found = schema_failures(validator, objects) + policy_failures(objects)
        failures += [f"{directory}: {message}" for message in found]
        print(f"{directory}: {len(objects)} objects, {len(found)} failure(s)")
    return rendered, failures


# Each break of the rendered dev overlay that the policy must report, with
# a fragment of the message expected.
def _first(objects, kind, name):
    return next(o for o in objects if o["kind"] == kind
                and o["metadata"]["name"] == name)


def _container(objects, kind, name):
    return k8s_render.pod_spec(_first(objects, kind, name))["containers"][0]


BREAKS = [
    ("no readiness probe",
     lambda o: _container(o, "Deployment", "records").pop("readinessProbe"),
     "no readinessProbe"),
    ("probe on an undeclared port",
     lambda o: _container(o, "DaemonSet", "loader")["livenessProbe"]["grpc"]
     .update(port=50052), "not a declared container port"),
    ("no memory limit",
     lambda o: _container(o, "Deployment", "installer")["resources"]["limits"]
     .pop("memory"), "no limits.memory"),
    ("writable root",
     lambda o: _container(o, "Deployment", "downloader")["securityContext"]
     .update(readOnlyRootFilesystem=False), "readOnlyRootFilesystem"),
    ("capabilities kept",
     lambda o: _container(o, "DaemonSet", "loader")["securityContext"]
     .pop("capabilities"), "capabilities must drop ALL"),
    ("pod may run as root",
     lambda o: k8s_render.pod_spec(_first(o, "Deployment", "records"))
     ["securityContext"].pop("runAsNonRoot"), "runAsNonRoot"),
    ("no seccomp",
     lambda o: _container(o, "Deployment", "records")["securityContext"]
     .pop("seccompProfile"), "seccompProfile"),
    ("a Deployment without a PDB",
     lambda o: o.remove(_first(o, "PodDisruptionBudget", "installer")),
     "no PodDisruptionBudget"),
    ("an inlined Secret",
     lambda o: o.append({"apiVersion": "v1", "kind": "Secret",
                         "metadata": {"name": "mm-token"},
                         "stringData": {"token": "x"}}), "a Secret in the render"),
    ("a database URL as a literal",
     lambda o: _container(o, "Deployment", "records").update(
         env=[{"name": "MM_DB", "value": "postgresql://mm:pw@db/x"}]),
     "literal value"),
    ("a token in a ConfigMap",
     lambda o: _first(o, "ConfigMap", "installer-config")["data"].update(
         MM_TOKEN_FILE="x"), "belongs in a Secret"),
    ("an untagged image",
     lambda o: _container(o, "Deployment", "records").update(
         image="modelmanager/records"), "needs a fixed tag"),
]


def self_test(source_dir):
    """Breaks the dev render in each way of BREAKS; every break must be
    reported, and the schema validator must reject a wrong type."""
    objects = k8s_render.render(os.path.join(source_dir,
                                             "deploy/k8s/overlays/dev"))
    failures = []
    if policy_failures(objects):
        failures.append("the unbroken dev overlay fails the policy")
    for description, breaker, expected in BREAKS:
        broken = copy.deepcopy(objects)
        breaker(broken)
        found = policy_failures(broken)
        if not any(expected in message for message in found):
            failures.append(f"break '{description}' not reported "
                            f"(expected '{expected}', got {found})")
    broken = copy.deepcopy(objects)
    _first(broken, "Service", "records")["spec"]["ports"][0]["port"] = "grpc"
    if not schema_failures(os.path.join(source_dir, "deploy/k8s/validate"),
                           broken):
        failures.append("the schema validator accepted a string port")
    print(f"self-test: {len(BREAKS) + 1} breaks, {len(failures)} unreported")
    return failures


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--source-dir", required=True)
    parser.add_argument("--self-test", action="store_true")
    args = parser.parse_args()
    rendered, failures = check_all(args.source_dir)
    if args.self_test and not failures:
        failures += self_test(args.source_dir)
    for message in failures:
        print("FAIL:", message)
    print(f"{rendered} objects rendered; {len(failures)} failure(s)")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
