#!/usr/bin/env python3
"""Write a full-size CLIP model directory with random weights (HF layout).

usage: make_random_clip.py FIXTURE_DIR OUT_DIR [--shape ViT-B/32]

For benchmarks only (bench/serve_bench.sh): the weights are random float16
values with sane scales (LayerNorm gains 1, biases 0, matrices ~N(0, 1/width)
drawn from a shared pool of random values), so speed is realistic and the
outputs are finite but meaningless.  The tokenizer files (vocab.json,
merges.txt: OpenAI's full 49408-token BPE) and preprocessor config are copied
from the clip-tiny fixture.  No numpy needed.
"""
import json
import os
import random
import shutil
import struct
import sys

SHAPES = {
    "ViT-B/32": dict(embed=512, vw=768, vl=12, vh=12, patch=32, tw=512, tl=12, th=8),
    "ViT-B/16": dict(embed=512, vw=768, vl=12, vh=12, patch=16, tw=512, tl=12, th=8),
}


def main():
    if len(sys.argv) < 3:
        print(__doc__)
        return 2
    fix, out = sys.argv[1], sys.argv[2]
    shape = sys.argv[4] if len(sys.argv) > 4 and sys.argv[3] == "--shape" else "ViT-B/32"
    s = SHAPES[shape]
    os.makedirs(out, exist_ok=True)
    for f in ("vocab.json", "merges.txt", "preprocessor_config.json", "special_tokens_map.json",
              "tokenizer_config.json"):
        if os.path.exists(os.path.join(fix, f)):
            shutil.copy(os.path.join(fix, f), os.path.join(out, f))
    cfg = json.load(open(os.path.join(fix, "config.json")))
    cfg["projection_dim"] = s["embed"]
    tc, vc = cfg["text_config"], cfg["vision_config"]
    tc.update(hidden_size=s["tw"], intermediate_size=4 * s["tw"], num_attention_heads=s["th"],
              num_hidden_layers=s["tl"], projection_dim=s["embed"])
    vc.update(hidden_size=s["vw"], intermediate_size=4 * s["vw"], num_attention_heads=s["vh"],
              num_hidden_layers=s["vl"], patch_size=s["patch"], projection_dim=s["embed"])
    cfg["torch_dtype"] = "float16"
    json.dump(cfg, open(os.path.join(out, "config.json"), "w"), indent=2)

    vocab, ctx = tc["vocab_size"], tc["max_position_embeddings"]
    npos = (vc["image_size"] // s["patch"]) ** 2 + 1
    tensors = [("logit_scale", "F32", []),
               ("text_model.embeddings.position_embedding.weight", "F16", [ctx, s["tw"]]),
               ("text_model.embeddings.token_embedding.weight", "F16", [vocab, s["tw"]]),
               ("text_model.final_layer_norm.bias", "F16", [s["tw"]]),
               ("text_model.final_layer_norm.weight", "F16", [s["tw"]]),
               ("text_projection.weight", "F16", [s["embed"], s["tw"]]),
               ("vision_model.embeddings.class_embedding", "F16", [s["vw"]]),
               ("vision_model.embeddings.patch_embedding.weight", "F16", [s["vw"], 3, s["patch"], s["patch"]]),
               ("vision_model.embeddings.position_embedding.weight", "F16", [npos, s["vw"]]),
               ("vision_model.post_layernorm.bias", "F16", [s["vw"]]),
               ("vision_model.post_layernorm.weight", "F16", [s["vw"]]),
               ("vision_model.pre_layrnorm.bias", "F16", [s["vw"]]),
               ("vision_model.pre_layrnorm.weight", "F16", [s["vw"]]),
               ("visual_projection.weight", "F16", [s["embed"], s["vw"]])]
    for tower, w, layers in (("text_model", s["tw"], s["tl"]), ("vision_model", s["vw"], s["vl"])):
        for i in range(layers):
            p = "%s.encoder.layers.%d." % (tower, i)
            for ln in ("layer_norm1", "layer_norm2"):
                tensors += [(p + ln + ".bias", "F16", [w]), (p + ln + ".weight", "F16", [w])]
            tensors += [(p + "mlp.fc1.bias", "F16", [4 * w]), (p + "mlp.fc1.weight", "F16", [4 * w, w]),
                        (p + "mlp.fc2.bias", "F16", [w]), (p + "mlp.fc2.weight", "F16", [w, 4 * w])]
            for m in ("q_proj", "k_proj", "v_proj", "out_proj"):
                tensors += [(p + "self_attn.%s.bias" % m, "F16", [w]), (p + "self_attn.%s.weight" % m, "F16", [w, w])]
    tensors.sort()
    header, off = {"__metadata__": {"format": "pt"}}, 0
    for name, dt, shp in tensors:
        n = 1
        for d in shp:
            n *= d
        size = n * (4 if dt == "F32" else 2)
        header[name] = {"dtype": dt, "shape": shp, "data_offsets": [off, off + size]}
        off += size
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    rnd = random.Random(42)
    pool = struct.pack("<%de" % 65536, *[rnd.gauss(0, 1) for _ in range(65536)])  # unit normal, f16
    ones = struct.pack("<e", 1.0)
    with open(os.path.join(out, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for name, dt, shp in tensors:
            n = 1
            for d in shp:
                n *= d
            if dt == "F32":
                f.write(struct.pack("<f", 4.6052))
            elif name.endswith("bias"):
                f.write(b"\0\0" * n)
            elif "layer_norm" in name or "layernorm" in name or "layrnorm" in name:
                f.write(ones * n)
            else:
                # scale ~ 1/sqrt(fan_in): pick a pool of pre-scaled values per fan-in
                fan_in = shp[-1] if len(shp) == 2 else (3 * s["patch"] * s["patch"] if len(shp) == 4 else 1)
                sc = fan_in ** -0.5 if len(shp) > 1 and "embedding" not in name else 0.02
                scaled = struct.pack("<%de" % 65536, *[v * sc for v in struct.unpack("<%de" % 65536, pool)])
                left = n * 2
                while left:
                    start = rnd.randrange(0, 65536) * 2
                    chunk = scaled[start:start + min(left, len(scaled) - start)]
                    f.write(chunk)
                    left -= len(chunk)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
