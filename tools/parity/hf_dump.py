#!/usr/bin/env python3
"""Reference fixtures for tests/model/hf_parity_test.cpp from Hugging Face transformers.

Builds a tiny random Qwen2.5-VL (every architectural feature on: windowed + full-attention vision
blocks, GQA, M-RoPE sections, an untied LM head), saves it with save_pretrained, runs one video + text
forward in float32 with eager attention on CPU, and dumps what our C++ forward must reproduce:

  OUT/model/                    config.json + model.safetensors, as save_pretrained writes them
  OUT/outputs.safetensors       input_ids [1,S] i64, pixel_values_videos [N,1176] f16 (fed as f32),
                                video_grid_thw [1,3] i64, second_per_grid_ts [1] f32,
                                video_embeds [N/4,64] (the merger output, raster order),
                                position_ids [3,1,S] i64 (what the language model received),
                                hidden_states.{i} [1,S,64] (transformers' tuple: embeddings, then after
                                each decoder layer; the last entry is after the final norm),
                                last_hidden_state [1,S,64] (the language model's output, final-normed),
                                logits [1,S,512] f32
  OUT/versions.json             python / torch / transformers versions, seed, the API paths taken

Works with transformers 4.49 - 4.57 and 5.x: each API that moved between those releases is reached
through a small adapter below, and every fixture is checked for shape before it is written.

    python3 tools/parity/hf_dump.py [--out tests/fixtures/hf_parity] [--seed 0]
"""

import argparse
import inspect
import json
import os
import platform
import sys

import torch

try:
    import transformers
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
except ImportError as error:  # pragma: no cover - the message is the point
    sys.exit(f"hf_dump.py needs transformers >= 4.49 with Qwen2.5-VL ({error})")
from safetensors.torch import save_file

# ---- The tiny architecture ----------------------------------------------------------------------
VOCAB = 512
# Special ids remapped into the small vocabulary (the real ones are 151652..151656); text ids stay
# below 500 so they never collide with these.
IDS = {
    "vision_start_token_id": 500,
    "vision_end_token_id": 501,
    "image_token_id": 502,
    "video_token_id": 503,
}
# lvrl's loader reads bos/eos from the top level (default: the real ids, outside this vocabulary).
BOS_EOS = {"bos_token_id": 504, "eos_token_id": 505}
TEXT = {
    "vocab_size": VOCAB,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "hidden_act": "silu",
    "rms_norm_eps": 1e-6,
    "rope_theta": 1000000.0,
    "max_position_embeddings": 4096,
    "tie_word_embeddings": False,
    "use_sliding_window": False,
    "attention_dropout": 0.0,
}
MROPE_SECTION = [2, 3, 3]  # sums to head_dim / 2 = 8
VISION = {
    "depth": 4,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_heads": 2,
    "in_channels": 3,
    "patch_size": 14,
    "temporal_patch_size": 2,
    "spatial_merge_size": 2,
    "window_size": 112,
    "fullatt_block_indexes": [1, 3],
    "out_hidden_size": 64,
    "tokens_per_second": 2,
    "hidden_act": "silu",
}
GRID = (2, 12, 8)  # temporal patches, patch rows, patch columns: 192 patch rows -> 48 video tokens
SECOND_PER_GRID_T = 1.0  # integral, so the int-cast (4.49-4.57) and float (newer) temporal rules agree
TEXT_BEFORE, TEXT_AFTER = 5, 7


def major_version():
    return int(transformers.__version__.split(".")[0])


def build_config():
    """Qwen2_5_VLConfig with the tiny sizes, whichever constructor layout this release takes."""
    rope = {"mrope_section": MROPE_SECTION}
    if major_version() >= 5:
        rope_kwargs = {"rope_parameters": {"rope_type": "default", "rope_theta": TEXT["rope_theta"], **rope}}
    else:
        rope_kwargs = {"rope_scaling": {"type": "mrope", **rope}}
    text = dict(TEXT, **rope_kwargs, **BOS_EOS)
    # Nested text_config (transformers >= 4.53; the only layout of 5.x) first, then the flat layout
    # of 4.49 - 4.52 (whose configs keep an unknown text_config argument as a plain dict attribute,
    # which check_config rejects). A release that refuses extra top-level ids gets them set after.
    attempts = [
        ("text_config", lambda: Qwen2_5_VLConfig(text_config=dict(text), vision_config=dict(VISION),
                                                 tie_word_embeddings=False, **IDS, **BOS_EOS)),
        ("text_config", lambda: Qwen2_5_VLConfig(text_config=dict(text), vision_config=dict(VISION), **IDS)),
        ("flat", lambda: Qwen2_5_VLConfig(vision_config=dict(VISION), **text, **IDS)),
    ]
    errors = []
    for layout, make in attempts:
        try:
            config = make()
        except (TypeError, ValueError, KeyError) as error:
            errors.append(f"{layout}: {type(error).__name__}: {error}")
            continue
        # The head stays untied whatever PretrainedConfig's default (True) would say at the top level.
        for key, value in dict(IDS, **BOS_EOS, tie_word_embeddings=False).items():
            if getattr(config, key, None) != value:
                try:
                    setattr(config, key, value)
                except Exception as error:
                    errors.append(f"{layout}: cannot set {key}: {error}")
        problem = check_config(config)
        if problem is None:
            return config, layout
        errors.append(f"{layout}: {problem}")
    sys.exit("could not build the tiny Qwen2_5_VLConfig:\n  " + "\n  ".join(errors))


def text_config_of(config):
    getter = getattr(config, "get_text_config", None)
    text = getter() if getter is not None else None
    return text if text is not None else getattr(config, "text_config", config)  # may be a plain dict (4.49)


def mrope_section_of(text):
    for name in ("rope_parameters", "rope_scaling"):
        value = getattr(text, name, None)
        if isinstance(value, dict) and "mrope_section" in value:
            return list(value["mrope_section"])
    return None


def check_config(config):
    """None when `config` really has the tiny sizes, else what is wrong."""
    text = text_config_of(config)
    if isinstance(text, dict):
        return "text_config stayed a plain dict (this release takes the flat layout)"
    for key, value in TEXT.items():
        if key in ("rope_theta", "use_sliding_window", "attention_dropout"):
            continue
        if getattr(text, key, None) != value:
            return f"text {key} = {getattr(text, key, None)!r}, expected {value!r}"
    if mrope_section_of(text) != MROPE_SECTION:
        return f"mrope_section {mrope_section_of(text)!r}, expected {MROPE_SECTION}"
    vision = getattr(config, "vision_config", None)
    for key, value in VISION.items():
        actual = getattr(vision, key, None)
        if isinstance(value, list) and actual is not None:
            actual = list(actual)
        if actual != value:
            return f"vision {key} = {actual!r}, expected {value!r}"
    for key, value in IDS.items():
        if getattr(config, key, None) != value:
            return f"{key} = {getattr(config, key, None)!r}, expected {value}"
    return None


def build_model(config):
    """Float32, eager attention in both towers."""
    for owner in (config, text_config_of(config), config.vision_config):
        try:
            owner._attn_implementation = "eager"
        except Exception:  # read-only in some releases; the from_config argument below covers it
            pass
    try:
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, attn_implementation="eager")
        how = "_from_config(attn_implementation='eager')"
    except (TypeError, ValueError) as error:
        print(f"note: _from_config(attn_implementation=...) failed ({error}); constructing directly")
        model = Qwen2_5_VLForConditionalGeneration(config)
        how = "constructor"
    model = model.to(torch.float32).eval()
    attn = getattr(model.config, "_attn_implementation", None)
    if attn not in (None, "eager"):
        print(f"warning: attention implementation is {attn!r}, not eager (fp32 results agree to ~1e-7)")
    return model, how


def randomize(model, seed):
    """Weights at a scale where every part of the network moves the logits (transformers' init,
    std 0.02, leaves attention almost uniform): matrices ~ N(0, 1/fan_in), embeddings ~ N(0, 1),
    norms 1 + N(0, 0.1), biases N(0, 0.1)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() >= 2:
                fan_in = param[0].numel()
                std = 1.0 if "embed_tokens" in name else fan_in ** -0.5
                param.copy_(torch.randn(param.shape, generator=generator) * std)
            elif name.endswith("bias"):
                param.copy_(torch.randn(param.shape, generator=generator) * 0.1)
            else:
                param.copy_(1.0 + torch.randn(param.shape, generator=generator) * 0.1)


def submodules(model):
    """(the module holding visual and get_rope_index, visual, the language model). 4.49 - 4.51:
    model.visual and model.model (the text model); 4.52+: model.model.{visual, language_model}."""
    inner = getattr(model, "model", model)
    if getattr(inner, "visual", None) is not None:
        container, visual = inner, inner.visual
    else:
        container, visual = model, model.visual
    language = getattr(inner, "language_model", None)
    if language is None:
        language = inner
    return container, visual, language


def video_features(model, container, visual, pixels, grid):
    """The vision tower's merged output [N/4, D]: get_video_features where it exists (4.52+;
    a tuple of per-video tensors, or in 5.x an output object), else the tower itself (4.49 - 4.51)."""
    for owner in (container, model):
        function = getattr(owner, "get_video_features", None)
        if function is not None:
            return as_embeddings(call_with_supported(function, pixel_values_videos=pixels, video_grid_thw=grid)), \
                f"{type(owner).__name__}.get_video_features"
    dtype = next(visual.parameters()).dtype
    return as_embeddings(visual(pixels.to(dtype), grid_thw=grid)), "visual(...)"


def as_embeddings(value):
    """get_video_features' result as one [N/4, D] tensor: a tensor, a tuple/list of per-video
    tensors (4.5x), or an output object whose pooler_output holds them (5.x)."""
    if torch.is_tensor(value):
        return value
    if isinstance(value, (tuple, list)):
        if len(value) and all(torch.is_tensor(v) for v in value):
            return torch.cat(list(value), dim=0)
        return as_embeddings(value[0])
    for name in ("pooler_output", "video_embeds", "last_hidden_state"):
        inner = getattr(value, name, None)
        if inner is not None:
            return as_embeddings(inner)
    raise TypeError(f"cannot read video embeddings from {type(value).__name__}")


def call_with_supported(function, **kwargs):
    """Calls `function` with the keyword arguments its signature accepts."""
    parameters = inspect.signature(function).parameters
    if any(p.kind == inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return function(**kwargs)
    return function(**{k: v for k, v in kwargs.items() if k in parameters})


def make_inputs(seed):
    generator = torch.Generator().manual_seed(seed + 1)
    t, h, w = GRID
    tokens = t * h * w // (VISION["spatial_merge_size"] ** 2)
    before = torch.randint(1, 500, (TEXT_BEFORE,), generator=generator)
    after = torch.randint(1, 500, (TEXT_AFTER,), generator=generator)
    ids = torch.cat([
        before,
        torch.tensor([IDS["vision_start_token_id"]]),
        torch.full((tokens,), IDS["video_token_id"]),
        torch.tensor([IDS["vision_end_token_id"]]),
        after,
    ]).long().unsqueeze(0)
    patch_dim = VISION["in_channels"] * VISION["temporal_patch_size"] * VISION["patch_size"] ** 2
    # float16-representable values, stored as float16 (halves the largest fixture) and fed as float32.
    pixels = torch.randn(t * h * w, patch_dim, generator=generator, dtype=torch.float32).half().float()
    return {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "pixel_values_videos": pixels,
        "video_grid_thw": torch.tensor([list(GRID)], dtype=torch.long),
        "second_per_grid_ts": torch.tensor([SECOND_PER_GRID_T], dtype=torch.float32),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures",
                               "hf_parity")
    parser.add_argument("--out", default=os.path.normpath(default_out))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    torch.set_default_dtype(torch.float32)
    config, layout = build_config()
    # Written as "torch_dtype" (4.x) / "dtype" (5.x). Only the release's own name: 4.x would try to
    # serialize an unknown "dtype" attribute holding a torch.dtype and fail.
    try:
        setattr(config, "dtype" if major_version() >= 5 else "torch_dtype", torch.float32)
    except Exception as error:
        print(f"note: could not set the config's dtype ({error}); config.json may say another dtype")
    model, built_with = build_model(config)
    randomize(model, args.seed)
    head, embeddings = model.get_output_embeddings(), model.get_input_embeddings()
    if head is None or head.weight.data_ptr() == embeddings.weight.data_ptr():
        sys.exit("the LM head is tied to the embeddings; the fixture needs an untied head")
    container, visual, language = submodules(model)
    inputs = make_inputs(args.seed)
    ids = inputs["input_ids"]
    seq = ids.shape[1]

    # What the language model receives: its position_ids (3 rows, or 4 with the text row first in
    # newer releases) and its output.
    captured = {}

    def before_language(module, args_, kwargs):
        if kwargs.get("position_ids") is not None:
            captured["position_ids"] = kwargs["position_ids"].detach().clone()

    def after_language(module, args_, output):
        last = output[0] if isinstance(output, tuple) else getattr(output, "last_hidden_state", None)
        if last is not None:
            captured["last_hidden_state"] = last.detach().clone()

    hooks = [language.register_forward_pre_hook(before_language, with_kwargs=True),
             language.register_forward_hook(after_language)]

    forward_kwargs = dict(inputs, output_hidden_states=True, return_dict=True, use_cache=False)
    forward_parameters = inspect.signature(model.forward).parameters
    if "mm_token_type_ids" in forward_parameters:
        # 5.x computes 3-D positions only when told which tokens are vision (0 text, 1 image, 2 video).
        forward_kwargs["mm_token_type_ids"] = (ids == IDS["video_token_id"]).to(torch.int32) * 2
    with torch.no_grad():
        video_embeds, video_source = video_features(model, container, visual, inputs["pixel_values_videos"],
                                                    inputs["video_grid_thw"])
        outputs = call_with_supported(model.forward, **forward_kwargs)
    for hook in hooks:
        hook.remove()

    # Positions: from the language model's input; cross-checked with get_rope_index where it can
    # be called with what we have.
    positions = captured.get("position_ids")
    if positions is not None and positions.dim() == 3 and positions.shape[0] == 4:
        positions = positions[1:].clone()  # newer releases prepend the 1-D text positions
    positions_source = "language_model input" if positions is not None else None
    rope_index = getattr(container, "get_rope_index", None) or getattr(model, "get_rope_index", None)
    if rope_index is not None:
        try:
            rope_kwargs = dict(input_ids=ids, image_grid_thw=None, video_grid_thw=inputs["video_grid_thw"],
                               second_per_grid_ts=inputs["second_per_grid_ts"],
                               attention_mask=inputs["attention_mask"])
            if "mm_token_type_ids" in inspect.signature(rope_index).parameters:
                rope_kwargs["mm_token_type_ids"] = forward_kwargs.get(
                    "mm_token_type_ids", (ids == IDS["video_token_id"]).to(torch.int32) * 2)
            from_rope_index = call_with_supported(rope_index, **rope_kwargs)[0]
            if positions is None:
                positions, positions_source = from_rope_index, "get_rope_index"
            elif not torch.equal(positions.long(), from_rope_index.long()):
                sys.exit("position_ids given to the language model differ from get_rope_index's")
        except Exception as error:  # signature changed again: the captured ids stand alone
            print(f"note: get_rope_index not usable here ({type(error).__name__}: {error})")
    if positions is None:
        print("warning: no position_ids captured; the fixture will not have them")
    else:
        positions = positions.long()
        video = (ids[0] == IDS["video_token_id"])
        if torch.equal(positions[0, 0, video], positions[1, 0, video]):
            sys.exit("the captured positions are 1-D (temporal == height on video tokens): this release "
                     "did not compute M-RoPE ids for the video; fix the call before trusting the fixture")

    hidden_states = outputs.hidden_states
    logits = outputs.logits
    tokens = GRID[0] * GRID[1] * GRID[2] // 4
    expect = {
        "video_embeds": (tokens, TEXT["hidden_size"]),
        "logits": (1, seq, VOCAB),
    }
    tensors = {
        "input_ids": ids.contiguous(),
        "pixel_values_videos": inputs["pixel_values_videos"].half().contiguous(),
        "video_grid_thw": inputs["video_grid_thw"].contiguous(),
        "second_per_grid_ts": inputs["second_per_grid_ts"].contiguous(),
        "video_embeds": video_embeds.float().contiguous(),
        "logits": logits.float().contiguous(),
    }
    if positions is not None:
        expect["position_ids"] = (3, 1, seq)
        tensors["position_ids"] = positions.contiguous()
    for i, state in enumerate(hidden_states or ()):
        tensors[f"hidden_states.{i}"] = state.float().contiguous()
        expect[f"hidden_states.{i}"] = (1, seq, TEXT["hidden_size"])
    if "last_hidden_state" in captured:
        tensors["last_hidden_state"] = captured["last_hidden_state"].float().contiguous()
        expect["last_hidden_state"] = (1, seq, TEXT["hidden_size"])
        if hidden_states and not torch.allclose(hidden_states[-1], captured["last_hidden_state"]):
            print("note: hidden_states[-1] is not the language model's (final-normed) output in this release")
    for name, shape in expect.items():
        if tuple(tensors[name].shape) != shape:
            sys.exit(f"{name} has shape {tuple(tensors[name].shape)}, expected {shape}")

    model_dir = os.path.join(args.out, "model")
    os.makedirs(model_dir, exist_ok=True)
    try:
        model.save_pretrained(model_dir, safe_serialization=True)
    except TypeError:  # 5.x: safetensors is the only format and the argument is gone
        model.save_pretrained(model_dir)
    # What lvrl's QwenConfig::load needs and has no usable default for in this vocabulary.
    with open(os.path.join(model_dir, "config.json")) as file:
        saved = json.load(file)
    for key in ("bos_token_id", "eos_token_id", "video_token_id", "vision_start_token_id"):
        if not isinstance(saved.get(key), int):
            print(f"warning: config.json has no top-level {key}; lvrl's loader falls back to the real id, "
                  f"outside this {VOCAB}-token vocabulary, and will reject the file: report the layout")
    save_file(tensors, os.path.join(args.out, "outputs.safetensors"),
              metadata={"transformers": transformers.__version__, "torch": torch.__version__})
    versions = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "seed": args.seed,
        "config_layout": layout,
        "model_built_with": built_with,
        "attn_implementation": getattr(model.config, "_attn_implementation", None),
        "positions_from": positions_source,
        "video_embeds_from": video_source,
        "grid_thw": list(GRID),
        "second_per_grid_ts": [SECOND_PER_GRID_T],
        "special_ids": dict(IDS, **BOS_EOS),
    }
    with open(os.path.join(args.out, "versions.json"), "w") as out:
        json.dump(versions, out, indent=2)
        out.write("\n")
    total = sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(args.out) for f in files)
    print(f"wrote {args.out} ({total / 1e6:.2f} MB): {', '.join(sorted(tensors))}")


if __name__ == "__main__":
    main()
