#!/usr/bin/python3
"""bench/load's Python peers, run with Debian's python3-torch.

  torch_peers.py save WEIGHTS.safetensors OUT.pt
      torch.save of the same tensors (a dict, file order), for torch.load.
  torch_peers.py load OUT.pt
      prints the seconds torch.load takes (interpreter start excluded).
  torch_peers.py to WEIGHTS.safetensors THREADS
      prints the best of 3 seconds of tensor.to(torch.float16) over every
      tensor of the file, with THREADS intra-op threads (0: torch's default),
      and the thread count used.
The safetensors file is parsed with json and struct, and its tensors are
torch.frombuffer views of the file's bytes (no safetensors package).
"""
import json
import struct
import sys
import time

import torch


def read_safetensors(path):
    with open(path, "rb") as f:
        data = bytearray(f.read())
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(bytes(data[8 : 8 + header_len]))
    base = 8 + header_len
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", info["dtype"]
        begin, end = info["data_offsets"]
        tensors[name] = torch.frombuffer(
            data, dtype=torch.float32, offset=base + begin,
            count=(end - begin) // 4).reshape(info["shape"])
    return tensors


def main():
    command = sys.argv[1]
    if command == "save":
        torch.save(read_safetensors(sys.argv[2]), sys.argv[3])
    elif command == "load":
        start = time.perf_counter()
        torch.load(sys.argv[2])
        print(f"{time.perf_counter() - start:.6f}")
    elif command == "to":
        threads = int(sys.argv[3])
        if threads > 0:
            torch.set_num_threads(threads)
        tensors = list(read_safetensors(sys.argv[2]).values())
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            converted = [t.to(torch.float16) for t in tensors]
            best = min(best, time.perf_counter() - start)
            del converted
        print(f"{best:.6f} {torch.get_num_threads()}")
    else:
        sys.exit(f"unknown command {command}")


if __name__ == "__main__":
    main()
