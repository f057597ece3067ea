"""Renders a kustomization with `kubectl kustomize` into a list of objects
(shared by k8s_test.py and k8s_process_test.py)."""
import shutil
import subprocess

import yaml

# What the render tests check: every overlay, the base, and the example.
KUSTOMIZATIONS = [
    "deploy/k8s/base",
    "deploy/k8s/overlays/dev",
    "deploy/k8s/overlays/prod",
    "examples/k8s",
]
WORKLOAD_KINDS = {"Deployment", "DaemonSet", "StatefulSet", "Job", "Pod"}


class RenderError(Exception):
    pass


def render(directory):
    """The objects `kubectl kustomize DIRECTORY` renders."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise RenderError("kubectl is not installed (scripts/setup.sh)")
    result = subprocess.run([kubectl, "kustomize", directory],
                            capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RenderError(f"kubectl kustomize {directory} failed: "
                          f"{result.stderr.strip()}")
    return [o for o in yaml.safe_load_all(result.stdout) if o]


def name_of(obj):
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def pod_spec(obj):
    """The pod spec of a workload object, or None."""
    if obj.get("kind") == "Pod":
        return obj.get("spec") or {}
    if obj.get("kind") in WORKLOAD_KINDS:
        return ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
    return None


def pod_labels(obj):
    if obj.get("kind") == "Pod":
        return (obj.get("metadata") or {}).get("labels") or {}
    return (((obj.get("spec") or {}).get("template") or {}).get("metadata")
            or {}).get("labels") or {}


def selects(selector, labels):
    """Whether a matchLabels selector selects `labels`."""
    match = (selector or {}).get("matchLabels", selector or {})
    return bool(match) and all(labels.get(k) == v for k, v in match.items())
