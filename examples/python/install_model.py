#!/usr/bin/python3
"""Installs a model through mm-installer and follows its Watch stream.

Lists the models the records service holds, starts an install of SOURCE
(a local path, a URL or a Hugging Face repo) and prints each change of the
install job until it ends. Uses only grpcio (Debian's python3-grpcio); the
stubs come from Debian's protoc and grpc_python_plugin, which the build
puts in build/<preset>/python:

    PYTHONPATH=build/default/python examples/python/install_model.py \\
        --installer 127.0.0.1:7003 --records 127.0.0.1:7001 \\
        --ca /etc/mm/ca.pem --token-file /run/secrets/mm-token \\
        stabilityai/sdxl-vae

TLS when --ca is given (the certificate must name the address's host, or
pass --server-name); the bearer token (the services' --auth-token-file) goes
with every call and needs TLS. Addresses may list replicas in gRPC's form,
ipv4:HOST:PORT,HOST:PORT: calls then go round-robin. Exit status: 0 when the
install completed, 1 when it ended otherwise, 2 for a failed call.
"""
import argparse
import json
import sys
import time

import grpc

from modelmanager.v1 import installer_pb2
from modelmanager.v1 import installer_pb2_grpc
from modelmanager.v1 import records_pb2
from modelmanager.v1 import records_pb2_grpc

CALL_TIMEOUT = 30  # seconds


def make_channel(address, args):
    options = []
    if args.server_name:
        options.append(("grpc.ssl_target_name_override", args.server_name))
    if address.startswith(("ipv4:", "ipv6:")):
        # Replicas: spread the calls and skip the ones that do not answer;
        # the name checked against the certificate is the first address's.
        options.append(("grpc.service_config", json.dumps(
            {"loadBalancingConfig": [{"round_robin": {}}]})))
        options.append(("grpc.default_authority",
                        address[5:].split(",")[0]))
    if not args.ca:
        if args.token_file:
            sys.exit("install_model.py: --token-file needs --ca (TLS)")
        return grpc.insecure_channel(address, options=options)
    with open(args.ca, "rb") as f:
        credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
    if args.token_file:
        # Read once, never printed.
        with open(args.token_file, encoding="utf-8") as f:
            token = f.read().strip()
        credentials = grpc.composite_channel_credentials(
            credentials, grpc.access_token_call_credentials(token))
    return grpc.secure_channel(address, credentials, options=options)


def list_models(records):
    models = []
    page_token = ""
    while True:
        page = records.ListModels(
            records_pb2.ListModelsRequest(page_size=1000,
                                          page_token=page_token),
            timeout=CALL_TIMEOUT)
        models.extend(page.models)
        page_token = page.next_page_token
        if not page_token:
            return models


def describe(job):
    state = installer_pb2.InstallState.Name(job.state)
    progress = f" {job.bytes}/{job.total_bytes} bytes" if job.total_bytes else ""
    message = f" ({job.status_message})" if job.status_message else ""
    return f"{state}{progress}{message}"


def follow(installer, job_id, timeout):
    """The job's final message; a stream that breaks (a replica going away)
    is watched again from the last revision seen, until `timeout`."""
    end = time.monotonic() + timeout
    since = 0
    events_seen = 0
    while True:
        remaining = end - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"install {job_id} not done in time")
        stream = installer.WatchInstall(
            installer_pb2.WatchInstallRequest(id=job_id,
                                              since_revision=since),
            timeout=remaining)
        try:
            for job in stream:
                since = job.revision
                for event in job.events[events_seen:]:
                    print(f"event {event.type}")
                events_seen = max(events_seen, len(job.events))
                print(f"job {job.id} {describe(job)}", flush=True)
                if job.done:
                    return job
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.UNAVAILABLE:
                raise


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="a local path, a URL or owner/repo")
    parser.add_argument("--installer", required=True,
                        help="installer address (HOST:PORT, unix:PATH)")
    parser.add_argument("--records", required=True,
                        help="records service address")
    parser.add_argument("--ca", help="PEM CA bundle: use TLS")
    parser.add_argument("--token-file", help="file with the bearer token")
    parser.add_argument("--server-name",
                        help="name to check in the server certificate")
    parser.add_argument("--timeout", type=float, default=600,
                        help="seconds to wait for the install")
    args = parser.parse_args()

    records = records_pb2_grpc.ModelRecordsStub(
        make_channel(args.records, args))
    installer = installer_pb2_grpc.InstallerStub(
        make_channel(args.installer, args))
    try:
        models = list_models(records)
        print(f"{len(models)} models")
        for model in models:
            print(f"model {model.key} {model.type}/{model.base} {model.name}")
        job = installer.CreateInstall(
            installer_pb2.CreateInstallRequest(source=args.source),
            timeout=CALL_TIMEOUT)
        print(f"install {job.id} of {job.source}: {describe(job)}",
              flush=True)
        final = follow(installer, job.id, args.timeout)
    except (grpc.RpcError, TimeoutError) as error:
        details = error.details() if isinstance(error, grpc.RpcError) else error
        print(f"install_model.py: {details}", file=sys.stderr)
        return 2
    if final.state != installer_pb2.INSTALL_STATE_COMPLETED:
        print(f"failed: {final.error.code}: {final.error.message}")
        return 1
    print(f"installed {final.key} at {final.config_out.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
