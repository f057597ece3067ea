#!/usr/bin/python3
"""What torch.Tensor.to gives for every tensor of a safetensors file.

Usage: torch_reference.py WEIGHTS.safetensors OUT_DIR

For each target dtype (F16, BF16, F32) writes OUT_DIR/<TARGET>/<tensor name>
with the raw little-endian bytes of tensor.to(target) for floating-point
tensors and the stored bytes for the others: the reference the loader's
libtorch conversion must equal bit for bit (tests/loader/
dtype_conversion_test.cc). The file is parsed with the standard library
(json, struct) so that no safetensors package is needed; the tensors are
made by torch.frombuffer, with no conversion of their own.
"""
import json
import os
import struct
import sys

import torch

DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
}
TARGETS = {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32}


def main():
    weights, out_dir = sys.argv[1], sys.argv[2]
    with open(weights, "rb") as f:
        data = f.read()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_len])
    base = 8 + header_len
    for target_name, target in TARGETS.items():
        os.makedirs(os.path.join(out_dir, target_name), exist_ok=True)
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        raw = bytearray(data[base + begin : base + end])
        tensor = torch.frombuffer(raw, dtype=DTYPES[info["dtype"]])
        for target_name, target in TARGETS.items():
            out = tensor.to(target) if tensor.is_floating_point() else tensor
            # view(uint8) reinterprets the converted bytes (numpy has no
            # bfloat16).
            blob = bytes(out.contiguous().view(torch.uint8).numpy())
            with open(os.path.join(out_dir, target_name, name), "wb") as f:
                f.write(blob)


if __name__ == "__main__":
    main()
