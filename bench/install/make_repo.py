#!/usr/bin/env python3
"""Writes the install benchmark's inputs: a Hugging Face-shaped SDXL
diffusers repo laid out for a static web server, and one large single-file
checkpoint.

  make_repo.py HUB_ROOT CHECKPOINT --weights-bytes N --checkpoint-bytes M

HUB_ROOT receives
  api/models/bench/sdxl-synth           the model-info JSON (as answered to
                                        /api/models/bench/sdxl-synth?blobs=true)
  bench/sdxl-synth/resolve/<commit>/... the repo's files
and CHECKPOINT one SD-1 safetensors checkpoint of about M bytes.

The repo is what the installer's probe accepts as main/diffusers/sdxl: a
model_index.json, a scheduler config, and four components (text_encoder,
text_encoder_2, unet, vae), each a config.json plus one weights file of
about N bytes. Each weights file is a valid safetensors file: the tensor
the probe looks at (as in tests/testing/install_fixtures.cc) and one large
filler tensor of random bytes, so nothing compresses or dedupes. The LFS
sha256 of each weights file is in the model-info, as on the real hub, so the
downloader verifies it.
"""
import argparse
import hashlib
import json
import os
import struct
import sys

COMMIT = "0123456789abcdef0123456789abcdef01234567"
REPO = "bench/sdxl-synth"
CHUNK = 16 << 20


def safetensors_header(tensors, metadata):
    """tensors: list of (name, dtype, shape, nbytes). Returns the header
    bytes (length prefix included) with the data offsets laid end to end."""
    header = {"__metadata__": metadata}
    offset = 0
    for name, dtype, shape, nbytes in tensors:
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned
    return struct.pack("<Q", len(text)) + text


def write_safetensors(path, small_tensors, filler_name, total_bytes):
    """The small real-shaped tensors the probe reads, as zeros (a list of
    (name, dtype, shape)), then a U8 filler tensor of random bytes bringing
    the file to about total_bytes. Returns (size, sha256 hex)."""
    width = {"F32": 4, "F16": 2}
    tensors = []
    small_bytes = 0
    for name, dtype, shape in small_tensors:
        nbytes = width[dtype]
        for dim in shape:
            nbytes *= dim
        tensors.append((name, dtype, shape, nbytes))
        small_bytes += nbytes
    filler = max(total_bytes - small_bytes - 4096, 0)
    header = safetensors_header(
        tensors + [(filler_name, "U8", [filler], filler)], {"format": "pt"})
    digest = hashlib.sha256()
    tmp = path + ".tmp"
    with open(tmp, "wb") as out:
        for block in (header, bytes(small_bytes)):
            out.write(block)
            digest.update(block)
        left = filler
        while left:
            block = os.urandom(min(CHUNK, left))
            out.write(block)
            digest.update(block)
            left -= len(block)
    os.replace(tmp, path)
    return os.path.getsize(path), digest.hexdigest()


def git_blob_id(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def pretty(value):
    return (json.dumps(value, indent=2) + "\n").encode()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("hub_root")
    parser.add_argument("checkpoint")
    parser.add_argument("--weights-bytes", type=int, required=True)
    parser.add_argument("--checkpoint-bytes", type=int, required=True)
    args = parser.parse_args()

    files_dir = os.path.join(args.hub_root, REPO, "resolve", COMMIT)
    os.makedirs(files_dir, exist_ok=True)
    small = {
        "model_index.json": pretty({
            "_class_name": "StableDiffusionXLPipeline",
            "_diffusers_version": "0.19.0",
            "scheduler": ["diffusers", "EulerDiscreteScheduler"],
            "text_encoder": ["transformers", "CLIPTextModel"],
            "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
            "unet": ["diffusers", "UNet2DConditionModel"],
            "vae": ["diffusers", "AutoencoderKL"]}),
        "scheduler/scheduler_config.json": pretty({
            "_class_name": "EulerDiscreteScheduler",
            "num_train_timesteps": 1000, "prediction_type": "epsilon"}),
        "text_encoder/config.json": pretty({
            "architectures": ["CLIPTextModel"], "hidden_size": 768,
            "model_type": "clip_text_model"}),
        "text_encoder_2/config.json": pretty({
            "architectures": ["CLIPTextModelWithProjection"],
            "hidden_size": 1280, "model_type": "clip_text_model"}),
        "unet/config.json": pretty({
            "_class_name": "UNet2DConditionModel", "cross_attention_dim": 2048,
            "in_channels": 4, "sample_size": 128}),
        "vae/config.json": pretty({
            "_class_name": "AutoencoderKL", "latent_channels": 4,
            "sample_size": 1024, "scaling_factor": 0.13025}),
    }
    weights = [
        ("text_encoder/model.safetensors",
         [("text_model.embeddings.token_embedding.weight", "F32",
           [16, 768])]),
        ("text_encoder_2/model.safetensors",
         [("text_model.embeddings.token_embedding.weight", "F32",
           [16, 1280])]),
        ("unet/diffusion_pytorch_model.safetensors",
         [("conv_in.weight", "F32", [8, 4, 3, 3])]),
        ("vae/diffusion_pytorch_model.safetensors",
         [("decoder.conv_in.weight", "F32", [8, 4, 3, 3])]),
    ]

    siblings = []
    for path, data in sorted(small.items()):
        os.makedirs(os.path.dirname(os.path.join(files_dir, path)),
                    exist_ok=True)
        with open(os.path.join(files_dir, path), "wb") as out:
            out.write(data)
        siblings.append({"rfilename": path, "size": len(data),
                         "blobId": git_blob_id(data)})
    for path, tensor in weights:
        target = os.path.join(files_dir, path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        print(f"writing {target}", file=sys.stderr)
        size, sha256 = write_safetensors(target, tensor, "filler.weight",
                                         args.weights_bytes)
        pointer = (f"version https://git-lfs.github.com/spec/v1\n"
                   f"oid sha256:{sha256}\nsize {size}\n").encode()
        siblings.append({"rfilename": path, "size": size,
                         "blobId": git_blob_id(pointer),
                         "lfs": {"sha256": sha256, "size": size,
                                 "pointerSize": len(pointer)}})
    siblings.sort(key=lambda s: s["rfilename"])

    info = {"_id": "bench0000000000000000000", "id": REPO, "author": "bench",
            "sha": COMMIT, "lastModified": "2026-12-01T00:00:00.000Z",
            "private": False, "gated": False, "disabled": False,
            "tags": ["diffusers", "safetensors", "text-to-image"],
            "library_name": "diffusers", "siblings": siblings}
    api_dir = os.path.join(args.hub_root, "api", "models", "bench")
    os.makedirs(api_dir, exist_ok=True)
    with open(os.path.join(api_dir, "sdxl-synth"), "wb") as out:
        out.write(pretty(info))

    print(f"writing {args.checkpoint}", file=sys.stderr)
    # The tensors of tests/testing/install_fixtures.cc's SD-1 checkpoint.
    write_safetensors(
        args.checkpoint,
        [("cond_stage_model.transformer.text_model.final_layer_norm.weight",
          "F16", [768]),
         ("model.diffusion_model.input_blocks.0.0.weight", "F16",
          [8, 4, 3, 3]),
         ("model.diffusion_model.input_blocks.2.1.transformer_blocks.0."
          "attn2.to_k.weight", "F16", [8, 768])],
        "model.diffusion_model.out.2.weight", args.checkpoint_bytes)


if __name__ == "__main__":
    main()
