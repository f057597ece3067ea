#!/usr/bin/python3
"""Loads a model through mm-loader and maps its tensors without a copy.

Uses only grpcio, the standard library's mmap and numpy (Debian's
python3-grpcio and python3-numpy). The stubs come from Debian's protoc and
grpc_python_plugin; the build puts them in build/<preset>/python:

    PYTHONPATH=build/default/python examples/python/load_model.py \
        --loader unix:$HOME/.local/state/modelmanager/loader.sock KEY

It prints one line per tensor (name, dtype, shape, first values), one per
side file the handle carries (config.json, a tokenizer's vocabulary, ...;
a files-only submodel such as KEY:tokenizer has only those) and, with
--hold, keeps the lease until Ctrl-C. --dump FILE writes every tensor's
bytes, read through its numpy view, one after the other (the end-to-end
test compares them with the weights file).
"""
import argparse
import mmap
import os
import sys

import grpc
import numpy

from modelmanager.v1 import loader_pb2
from modelmanager.v1 import loader_pb2_grpc

# safetensors dtype names -> numpy dtypes (little-endian). BF16 has no numpy
# type: it is viewed as raw 16-bit words.
NUMPY_DTYPES = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2",
    "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
    "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?",
}


def tensor_view(region, tensor):
    """A read-only numpy array over the tensor's bytes in the mapping."""
    dtype = NUMPY_DTYPES.get(tensor.dtype)
    if dtype is None:  # e.g. GGUF blocks: raw bytes
        return numpy.frombuffer(region, dtype="u1", count=tensor.byte_size,
                                offset=tensor.offset)
    item = numpy.dtype(dtype).itemsize
    array = numpy.frombuffer(region, dtype=dtype,
                             count=tensor.byte_size // item,
                             offset=tensor.offset)
    return array.reshape(tuple(tensor.shape))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("key", help="model key, or KEY:SUBMODEL")
    parser.add_argument("--loader", required=True,
                        help="loader address (unix:PATH or HOST:PORT)")
    parser.add_argument("--hold", action="store_true",
                        help="keep the lease until Ctrl-C")
    parser.add_argument("--dump", help="write every tensor's bytes here")
    args = parser.parse_args()
    key, _, submodel = args.key.partition(":")

    channel = grpc.insecure_channel(args.loader)
    stub = loader_pb2_grpc.LoaderStub(channel)
    # The lease is the stream: keep it open while the mapping is in use.
    stream = stub.Load(loader_pb2.LoadRequest(key=key, submodel=submodel))
    handle = None
    for response in stream:
        if response.HasField("handle"):
            handle = response.handle
            break
    if handle is None:
        sys.exit("the loader ended the stream without a handle")

    fd = os.open("/dev/shm" + handle.shm_name, os.O_RDONLY)
    try:
        region = mmap.mmap(fd, handle.total_bytes, prot=mmap.PROT_READ)
    finally:
        os.close(fd)
    print(f"{handle.cache_key}: {len(handle.tensors)} tensors in "
          f"{handle.shm_name} ({handle.total_bytes} bytes)")
    dump = open(args.dump, "wb") if args.dump else None
    for tensor in handle.tensors:
        view = tensor_view(region, tensor)
        first = view.reshape(-1)[:4].tolist()
        print(f"  {tensor.name} {tensor.dtype} {list(tensor.shape)} {first}")
        if dump:
            dump.write(view.tobytes())
    if dump:
        dump.close()
    for name in sorted(handle.files):
        print(f"  file {name} ({len(handle.files[name])} bytes)")
    sys.stdout.flush()
    if args.hold:
        print("holding the lease; press Ctrl-C to release it", flush=True)
        try:
            for _ in stream:  # blocks until the loader ends the stream
                pass
        except KeyboardInterrupt:
            pass
        except grpc.RpcError as error:
            print(f"stream ended: {error.code().name}", flush=True)
    stream.cancel()


if __name__ == "__main__":
    main()
