#!/usr/bin/env python3
"""What can be checked of deploy/docker/Dockerfile without a container engine.

- every runtime target the deployment needs exists (records, installer,
  downloader, loader, mm), runs as a fixed non-root uid, stops on SIGTERM,
  declares the gRPC port (and the metrics port, for services) and has an
  exec-form ENTRYPOINT (no shell at run time);
- every executable the build stage copies is a target of this build, at the
  path the build puts it (relative to the build folder);
- each target's ENTRYPOINT + CMD, with its ENV, is accepted by the
  executable: run with --help added, in a root assembled by the same
  collect-rootfs.sh the image uses (chroot, as root or in a user namespace),
  so a library the list misses or a renamed flag fails here.

Usage (CMake registers it as deploy_docker_test):
  docker_test.py --source-dir DIR --binary-dir DIR --executable NAME=PATH...
"""
import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile

REQUIRED_TARGETS = ["records", "installer", "downloader", "loader", "mm"]
SERVICES = ["records", "installer", "downloader", "loader"]
GRPC_PORT = "50051"
METRICS_PORT = "9090"
RUN_TIMEOUT_S = 20


class Failures:
    def __init__(self):
        self.messages = []

    def check(self, condition, message):
        if not condition:
            self.messages.append(message)
        return condition


def logical_lines(text):
    """Dockerfile lines with continuations joined and comments dropped."""
    lines, current = [], ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    if current:
        lines.append(current)
    return lines


def parse_stages(text):
    """[{name, base, instructions: [(KEYWORD, rest)]}] in file order."""
    stages = []
    for line in logical_lines(text):
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = rest.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append({"name": name, "base": words[0], "instructions": []})
        elif stages:
            stages[-1]["instructions"].append((keyword, rest.strip()))
    return stages


def exec_form(stage, keyword, failures):
    """The JSON-array value of ENTRYPOINT or CMD (the last one), or None."""
    values = [rest for key, rest in stage["instructions"] if key == keyword]
    if not values:
        return None
    try:
        value = json.loads(values[-1])
    except json.JSONDecodeError:
        value = None
    failures.check(
        isinstance(value, list) and all(isinstance(v, str) for v in value),
        f"target {stage['name']}: {keyword} must be an exec-form JSON array "
        f"(no shell at run time), got {values[-1]!r}")
    return value if isinstance(value, list) else None


def stage_env(stage):
    """ENV KEY=VALUE pairs of a stage (the KEY VALUE form is refused)."""
    env = {}
    for key, rest in stage["instructions"]:
        if key != "ENV":
            continue
        for word in shlex.split(rest):
            name, sep, value = word.partition("=")
            if sep:
                env[name] = value
    return env


def collected_executables(build_stage):
    """{rootfs name: [executable paths in the build stage]} from the
    collect-rootfs.sh calls of the build stage's RUN lines."""
    result = {}
    for key, rest in build_stage["instructions"]:
        if key != "RUN":
            continue
        for command in rest.split("&&"):
            words = shlex.split(command)
            if words and words[0].endswith("collect-rootfs.sh"):
                root = words[1]
                result[os.path.basename(root.rstrip("/"))] = words[2:]
    return result


def chroot_prefix():
    """The command prefix that can chroot here, or None."""
    chroot, unshare = shutil.which("chroot"), shutil.which("unshare")
    if chroot is None:
        return None
    if os.geteuid() == 0:
        return [chroot, "--userspec=65532:65532"]
    if unshare is not None and subprocess.run(
            [unshare, "-r", "true"], capture_output=True).returncode == 0:
        return [unshare, "-r", chroot]
    return None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--source-dir", required=True)
    parser.add_argument("--binary-dir", required=True)
    parser.add_argument("--executable", action="append", default=[],
                        help="NAME=PATH of a build target")
    args = parser.parse_args()

    targets = {}
    for item in args.executable:
        name, _, path = item.partition("=")
        targets[name] = os.path.relpath(path, args.binary_dir)

    dockerfile = os.path.join(args.source_dir, "deploy/docker/Dockerfile")
    with open(dockerfile) as f:
        stages = parse_stages(f.read())
    failures = Failures()
    by_name = {s["name"]: s for s in stages if s["name"]}
    build = by_name.get("build")
    if not failures.check(build is not None, "no stage named build"):
        print("\n".join(failures.messages))
        return 1
    collected = collected_executables(build)

    # Every copied executable is a target, at the path the build gives it.
    # The Dockerfile's build folder is /build.
    for root, paths in collected.items():
        for path in paths:
            relative = os.path.relpath(path, "/build")
            name = os.path.basename(path)
            if failures.check(name in targets,
                              f"{root}: copies {path}, not a build target "
                              f"(targets: {sorted(targets)})"):
                failures.check(targets[name] == relative,
                               f"{root}: copies {path}, but the build puts "
                               f"{name} at /build/{targets[name]}")

    prefix = chroot_prefix()
    if prefix is None:
        print("note: cannot chroot here (not root, no user namespaces): "
              "entrypoints run from the build folder instead")
    checked = 0
    with tempfile.TemporaryDirectory(prefix="mm-docker-test-") as temp:
        for target in REQUIRED_TARGETS:
            stage = by_name.get(target)
            if not failures.check(stage is not None, f"no target {target}"):
                continue
            instructions = stage["instructions"]
            failures.check(stage["base"] == "scratch",
                           f"target {target}: FROM {stage['base']}; the "
                           f"runtime holds only the collected root (scratch)")
            copies = [rest for key, rest in instructions if key == "COPY"]
            failures.check(copies == [f"--from=build /rootfs/{target}/ /"],
                           f"target {target}: must copy exactly its root "
                           f"/rootfs/{target}/, got {copies}")
            users = [rest for key, rest in instructions if key == "USER"]
            failures.check(
                users and users[-1].split(":")[0].isdigit()
                and users[-1].split(":")[0] != "0",
                f"target {target}: USER must be a fixed non-root uid, got "
                f"{users}")
            failures.check(("STOPSIGNAL", "SIGTERM") in instructions,
                           f"target {target}: no STOPSIGNAL SIGTERM")
            exposed = " ".join(r for k, r in instructions if k == "EXPOSE")
            wanted = [GRPC_PORT, METRICS_PORT] if target in SERVICES else []
            for port in wanted:
                failures.check(port in exposed.split(),
                               f"target {target}: EXPOSE lacks {port}")
            entrypoint = exec_form(stage, "ENTRYPOINT", failures)
            cmd = exec_form(stage, "CMD", failures) or []
            if not failures.check(bool(entrypoint),
                                  f"target {target}: no ENTRYPOINT"):
                continue
            executable = os.path.basename(entrypoint[0])
            failures.check(
                entrypoint[0] == f"/usr/local/bin/{executable}"
                and any(os.path.basename(p) == executable
                        for p in collected.get(target, [])),
                f"target {target}: ENTRYPOINT {entrypoint[0]} is not an "
                f"executable collected into /rootfs/{target}")
            if executable not in targets:
                continue
            # Run it as the image would, with --help added: the executable
            # parses every flag and MM_* variable and refuses unknown ones.
            built = os.path.join(args.binary_dir, targets[executable])
            env = {"PATH": "/usr/local/bin"}
            env.update(stage_env(stage))
            argv = entrypoint[1:] + cmd + ["--help"]
            if prefix is not None:
                root = os.path.join(temp, target)
                subprocess.run(
                    [os.path.join(args.source_dir,
                                  "deploy/docker/collect-rootfs.sh"),
                     root, built], check=True)
                command = prefix + [root, entrypoint[0]] + argv
            else:
                command = [built] + argv
            result = subprocess.run(command, env=env, capture_output=True,
                                    text=True, timeout=RUN_TIMEOUT_S)
            if failures.check(
                    result.returncode == 0 and "usage:" in result.stdout.lower(),
                    f"target {target}: {shlex.join(entrypoint + cmd)} "
                    f"--help exited {result.returncode}: "
                    f"{result.stderr.strip()[-400:]}"):
                checked += 1
            if prefix is not None:
                shutil.rmtree(os.path.join(temp, target))

    for message in failures.messages:
        print("FAIL:", message)
    print(f"{checked} of {len(REQUIRED_TARGETS)} entrypoints accepted; "
          f"{len(failures.messages)} failure(s)")
    return 0 if not failures.messages else 1


if __name__ == "__main__":
    sys.exit(main())
