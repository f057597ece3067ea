#!/usr/bin/env python3
"""The manifests run as processes: each rendered container of our services
is started with its own command, args and environment, on loopback, and
must reach SERVING through the grpc.health.v1 check its readiness probe
makes; then SIGTERM must stop it with exit status 0.

Run by with_postgres (tests/deploy/with_postgres.cc), which provides a
throwaway PostgreSQL in MM_TEST_POSTGRES_URL. What the test substitutes, and
nothing else (flag names, the other flags and every MM_* variable are used
as rendered, so a flag renamed in the code fails here):
- the address of --listen: 127.0.0.1:0 (the port the service reports is
  used for its probe and for the Services that select it), and of
  --metrics-listen;
- Service addresses (`records:50051`) in args and env: the loopback
  address of the process behind that Service;
- volume mount paths in args and env: temporary folders (one per
  PersistentVolumeClaim or hostPath shared between workloads, one per pod
  for an emptyDir; a Secret volume gets files with test values);
- Secret values: the database URL of the fixture for the database Secret,
  test values for other keys;
Every MM_* variable must name an option of the executable (its --help);
- --shm-group: the group of the test process (the image's group `mm` need
  not exist here).
Workloads that are not ours (the dev overlay's PostgreSQL) are replaced by
the fixture.

Usage: with_postgres k8s_process_test.py --source-dir DIR --overlay DIR
         --executable NAME=PATH...
"""
import argparse
import grp
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time

import grpc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import k8s_render  # noqa: E402

START_TIMEOUT_S = 30
SERVING_TIMEOUT_S = 20
STOP_TIMEOUT_S = 20
# Secret keys whose value is the database URL.
DATABASE_KEYS = {("mm-database", "url"), ("mm-postgres-app", "uri")}
LISTENING = re.compile(r"listening on (\S+)")


class TestFailure(Exception):
    pass


class Service:
    """One running container: its process, its log and its address."""

    def __init__(self, name, command, env, cwd):
        self.name = name
        self.command = command
        self.log = []
        self.process = subprocess.Popen(command, env=env, cwd=cwd,
                                        stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT)
        self.address = self._wait_listening()
        # Keep draining the output so the service never blocks on it.
        self._drain = threading.Thread(target=self._read_rest, daemon=True)
        self._drain.start()

    def _wait_listening(self):
        # Reads the pipe unbuffered: a buffered readline could hold the
        # "listening" line in Python's buffer while select() waits on the
        # descriptor for more.
        deadline = time.monotonic() + START_TIMEOUT_S
        fd = self.process.stdout.fileno()
        pending = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [],
                                        deadline - time.monotonic())
            if not ready:
                break
            chunk = os.read(fd, 65536)
            if not chunk:
                self._abandon()
                raise TestFailure(
                    f"{self.name} exited with {self.process.wait()} before "
                    f"listening: {' '.join(self.command)}\n" +
                    "".join(self.log) + pending.decode(errors="replace"))
            pending += chunk
            *lines, pending = pending.split(b"\n")
            found = None
            for line in lines:
                self.log.append(line.decode(errors="replace") + "\n")
                match = LISTENING.search(self.log[-1])
                if match and found is None:
                    found = match.group(1)
            if found is not None:
                self._pending = pending
                return found
        self._abandon()
        raise TestFailure(f"{self.name} did not listen within "
                          f"{START_TIMEOUT_S}s:\n" + "".join(self.log))

    def _abandon(self):
        """Kills a process that failed to start (it is never stopped)."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    def _read_rest(self):
        fd = self.process.stdout.fileno()
        rest = self._pending
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            rest += chunk
        if rest:
            self.log.append(rest.decode(errors="replace"))

    def stop(self):
        """SIGTERM, as the kubelet sends; the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            status = self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            status = self.process.wait()
        self._drain.join(timeout=STOP_TIMEOUT_S)
        return status


def health_request(service_name):
    """grpc.health.v1.HealthCheckRequest{service}, encoded by hand (field 1,
    a string) so the test needs no generated stubs."""
    data = service_name.encode()
    return b"" if not data else b"\x0a" + bytes([len(data)]) + data


def health_status(response):
    """HealthCheckResponse.status (field 1, varint): 1 is SERVING."""
    if len(response) >= 2 and response[0] == 0x08:
        return response[1]
    return 0


def wait_serving(address, service_name):
    """Follows Health/Watch until SERVING, then asks Health/Check, the rpc
    the kubelet's gRPC probe makes; the Check's status."""
    with grpc.insecure_channel(address) as channel:
        identity = {"request_serializer": None, "response_deserializer": None}
        watch = channel.unary_stream("/grpc.health.v1.Health/Watch", **identity)
        seen = []
        try:
            for response in watch(health_request(service_name),
                                  timeout=SERVING_TIMEOUT_S):
                seen.append(health_status(response))
                if seen[-1] == 1:
                    break
        except grpc.RpcError as error:
            raise TestFailure(f"{address}: Watch ended with {error.code()} "
                              f"after statuses {seen}: {error.details()}")
        check = channel.unary_unary("/grpc.health.v1.Health/Check", **identity)
        return health_status(check(health_request(service_name), timeout=5))


class Substitutions:
    """Maps what a container sees in a cluster to this machine."""

    def __init__(self, root, objects, database_url):
        self.root = root
        self.objects = objects
        self.database_url = database_url
        self.service_addresses = {}  # Service name -> loopback address

    def config_map(self, name):
        for obj in self.objects:
            if obj["kind"] == "ConfigMap" and obj["metadata"]["name"] == name:
                return obj.get("data") or {}
        raise TestFailure(f"ConfigMap {name} is referenced, not rendered")

    def secret_value(self, name, key):
        if (name, key) in DATABASE_KEYS:
            return self.database_url
        return f"test-{name}-{key}"

    def mounts(self, workload, spec, container):
        """{mount path: local folder} for the container's volume mounts."""
        volumes = {v["name"]: v for v in spec.get("volumes") or []}
        result = {}
        for mount in container.get("volumeMounts") or []:
            volume = volumes[mount["name"]]
            if "persistentVolumeClaim" in volume:
                local = os.path.join(
                    self.root, "pvc", volume["persistentVolumeClaim"]["claimName"])
            elif "hostPath" in volume:
                local = os.path.join(
                    self.root, "host", volume["hostPath"]["path"].strip("/")
                    .replace("/", "_"))
            elif "secret" in volume:
                local = os.path.join(self.root, "secret",
                                     volume["secret"]["secretName"])
                os.makedirs(local, exist_ok=True)
                # Keys are unknown without the Secret: the usual ones.
                for key in ("token", "url", "uri", "tls.crt", "tls.key",
                            "ca.crt"):
                    with open(os.path.join(local, key), "w") as f:
                        f.write(self.secret_value(
                            volume["secret"]["secretName"], key))
            elif "configMap" in volume:
                local = os.path.join(self.root, "configmap",
                                     volume["configMap"]["name"])
                os.makedirs(local, exist_ok=True)
                for key, value in self.config_map(
                        volume["configMap"]["name"]).items():
                    with open(os.path.join(local, key), "w") as f:
                        f.write(value)
            else:  # emptyDir and the like: one per pod
                local = os.path.join(self.root, "pod", workload, mount["name"])
            os.makedirs(local, exist_ok=True)
            result[mount["mountPath"].rstrip("/")] = local
        return result

    def value(self, text, mounts):
        """A flag or variable value with paths and Service addresses mapped."""
        for path in sorted(mounts, key=len, reverse=True):
            if text == path or text.startswith(path + "/"):
                text = mounts[path] + text[len(path):]
                break
        match = re.fullmatch(r"([a-z0-9-]+)(\.[a-z0-9.-]+)?:(\d+)", text)
        if match and match.group(1) in self.service_addresses:
            text = self.service_addresses[match.group(1)]
        return text

    def argument(self, arg, mounts):
        if arg.startswith("--") and "=" in arg:
            flag, value = arg.split("=", 1)
            if flag in ("--listen", "--metrics-listen"):
                # Every pod has its own network; here they share loopback.
                return f"{flag}=127.0.0.1:0"
            if flag == "--shm-group":
                return f"--shm-group={grp.getgrgid(os.getgid()).gr_name}"
            return f"{flag}={self.value(value, mounts)}"
        return self.value(arg, mounts)

    def environment(self, container, mounts):
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        for source in container.get("envFrom") or []:
            if "configMapRef" in source:
                env.update(self.config_map(source["configMapRef"]["name"]))
            else:
                raise TestFailure(f"envFrom {source}: not handled by the test")
        for variable in container.get("env") or []:
            if "value" in variable:
                value = variable["value"]
            else:
                source = variable["valueFrom"]
                if "secretKeyRef" in source:
                    ref = source["secretKeyRef"]
                    value = self.secret_value(ref["name"], ref["key"])
                elif "configMapKeyRef" in source:
                    ref = source["configMapKeyRef"]
                    value = self.config_map(ref["name"])[ref["key"]]
                else:
                    raise TestFailure(f"env {variable}: not handled")
            env[variable["name"]] = self.value(value, mounts)
        return env


def unknown_variables(executable, env):
    """MM_* variables in `env` that name no option of `executable` (the
    executables ignore variables they do not know, so a misspelt or renamed
    one would be silently lost)."""
    usage = subprocess.run([executable, "--help"], capture_output=True,
                           text=True, timeout=START_TIMEOUT_S).stdout
    options = set(re.findall(r"--([a-z0-9-]+)", usage))
    return sorted(name for name in env if name.startswith("MM_") and
                  name[3:].lower().replace("_", "-") not in options)


def our_containers(objects, executables):
    """[(workload name, pod spec, container, labels)] whose command runs one
    of our executables."""
    result = []
    for obj in objects:
        spec = k8s_render.pod_spec(obj)
        if spec is None:
            continue
        for container in spec.get("containers") or []:
            command = container.get("command") or []
            if command and os.path.basename(command[0]) in executables:
                result.append((obj["metadata"]["name"], spec, container,
                               k8s_render.pod_labels(obj)))
    return result


def referenced_services(container, service_names):
    """Services named in the container's args or env values."""
    text = " ".join((container.get("args") or []) +
                    [v.get("value", "") for v in container.get("env") or []])
    return {name for name in service_names
            if re.search(rf"(^|[=\s]){re.escape(name)}(\.[a-z0-9.-]+)?:\d+",
                         text)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--source-dir", required=True)
    parser.add_argument("--overlay", required=True)
    parser.add_argument("--executable", action="append", default=[])
    args = parser.parse_args()
    executables = dict(item.split("=", 1) for item in args.executable)
    database_url = os.environ.get("MM_TEST_POSTGRES_URL")
    if not database_url:
        print("FAIL: MM_TEST_POSTGRES_URL is not set (run under with_postgres)")
        return 1

    objects = k8s_render.render(os.path.join(args.source_dir, args.overlay))
    services = [o for o in objects if o["kind"] == "Service"]
    containers = our_containers(objects, executables)
    found = {os.path.basename(c["command"][0]) for _, _, c, _ in containers}
    missing = {"mm-records", "mm-installer", "mm-downloader", "mm-loader"} - found
    failures = []
    if missing:
        failures.append(f"{args.overlay} runs none of {sorted(missing)}")

    running = []
    with tempfile.TemporaryDirectory(prefix="mm-k8s-process-") as root:
        subs = Substitutions(root, objects, database_url)
        pending = list(containers)
        try:
            # Start a container once every Service it calls has a process.
            while pending:
                startable = [c for c in pending if referenced_services(
                    c[2], {s["metadata"]["name"] for s in services})
                    <= set(subs.service_addresses)]
                if not startable:
                    raise TestFailure(
                        "these call Services that nothing started: " +
                        ", ".join(c[0] for c in pending))
                workload, spec, container, labels = startable[0]
                pending.remove(startable[0])
                mounts = subs.mounts(workload, spec, container)
                command = ([executables[os.path.basename(container["command"][0])]]
                           + [subs.argument(a, mounts)
                              for a in container["command"][1:]
                              + (container.get("args") or [])])
                cwd = os.path.join(root, "pod", workload, "cwd")
                os.makedirs(cwd, exist_ok=True)
                env = subs.environment(container, mounts)
                unknown = unknown_variables(command[0], env)
                if unknown:
                    raise TestFailure(f"{workload}: {', '.join(unknown)} name "
                                      f"no option of {command[0]}")
                service = Service(workload, command, env, cwd)
                running.append((service, container))
                for svc in services:
                    if k8s_render.selects(svc["spec"].get("selector"), labels):
                        subs.service_addresses[svc["metadata"]["name"]] = \
                            service.address
            # Every container: SERVING through its readiness probe's check.
            for service, container in running:
                probe = (container.get("readinessProbe") or {}).get("grpc")
                if probe is None:
                    failures.append(f"{service.name}: the readiness probe is "
                                    f"not a gRPC health check")
                    continue
                status = wait_serving(service.address, probe.get("service", ""))
                if status != 1:
                    failures.append(f"{service.name}: Health/Check says "
                                    f"{status}, not SERVING (1)")
                else:
                    print(f"{service.name}: SERVING at {service.address}")
        except TestFailure as error:
            failures.append(str(error))
        finally:
            for service, _ in reversed(running):
                status = service.stop()
                if status != 0:
                    failures.append(f"{service.name}: exit status {status} "
                                    f"after SIGTERM:\n" + "".join(service.log))

    for message in failures:
        print("FAIL:", message)
    print(f"{len(running)} of {len(containers)} containers started; "
          f"{len(failures)} failure(s)")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
