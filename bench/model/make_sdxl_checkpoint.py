#!/usr/bin/env python3
"""Writes a sparse, SDXL-shaped safetensors checkpoint for the probe benchmark.

About 2,500 F16 tensors named like an SDXL checkpoint (UNet, both text
encoders, VAE) adding up to ~7 GB; the data area is a hole (ftruncate), so
the file costs no disk. Usage: make_sdxl_checkpoint.py OUT.safetensors
"""
import json
import os
import struct
import sys


def tensors():
    # Keys the probe reads (spec §4.1), with the shapes that decide SDXL.
    yield "model.diffusion_model.input_blocks.0.0.weight", [320, 4, 3, 3]
    yield ("model.diffusion_model.input_blocks.4.1.transformer_blocks.0."
           "attn2.to_k.weight"), [640, 2048]
    yield "first_stage_model.decoder.conv_in.weight", [512, 4, 3, 3]
    yield "conditioner.embedders.0.transformer.text_model.final_layer_norm.weight", [768]
    # Bulk: enough large tensors to reach ~7 GB and ~2,500 names.
    for block in range(2490):
        yield (f"model.diffusion_model.middle_block.{block}.transformer."
               f"proj.weight"), [1280, 1100]


def main():
    out = sys.argv[1]
    header = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape in tensors():
        count = 1
        for dim in shape:
            count *= dim
        size = count * 2
        header[name] = {"dtype": "F16", "shape": shape,
                        "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(out, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        f.truncate(8 + len(text) + offset)
    print(f"{out}: {len(header) - 1} tensors, {8 + len(text) + offset} bytes")


if __name__ == "__main__":
    main()
