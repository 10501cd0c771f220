"""CLIP models: open_clip architectures by name + pretrained tag or local weights, and the tiny CPU ViT.

Every plugin sees a :class:`ClipModel`: images go in as float tensors in [0, 1] (pixel space, where triggers
live) and the wrapper applies the model's own normalisation, so attacks and detectors never deal with it.
"""

from __future__ import annotations

import os
from pathlib import Path

import open_clip
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


class ModelSpec(BaseModel):
    """Which CLIP to build. ``arch="tiny"`` builds the CPU ViT below; any other name is an open_clip model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    arch: str = "tiny"  # "tiny" or an open_clip name such as "ViT-B-32" (the paper's backbone)
    pretrained: str | None = None  # open_clip tag ("openai") or a local weights file; None = train from scratch
    image_size: int = Field(32, ge=8)  # tiny: the generated world's 32 px; ViT-B-32: 224
    patch_size: int = Field(8, ge=1)  # tiny: 4x4 = 16 tokens + CLS keeps CPU training in minutes
    width: int = Field(128, ge=8)  # tiny vision width (SPEC §3)
    layers: int = Field(6, ge=1)  # tiny vision depth (SPEC §3); Decomp-Rep repairs the last five MLPs
    heads: int = Field(8, ge=1)  # tiny: 8 heads so the paper's fixed-head ablations (3 of 12) have room
    text_width: int = Field(128, ge=8)
    text_layers: int = Field(3, ge=1)  # a 3-layer text tower suffices for template captions (SPEC §3)
    text_heads: int = Field(4, ge=1)
    context_length: int = Field(16, ge=8)  # generated captions are at most 14 BPE tokens with SOT/EOT; 16 cuts text cost
    embed_dim: int = Field(128, ge=8)

    @model_validator(mode="after")
    def _check_geometry(self) -> "ModelSpec":
        if self.arch == "tiny":
            if self.image_size % self.patch_size:
                raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
            if self.width % self.heads:
                raise ValueError(f"width {self.width} is not divisible by heads {self.heads}")
            if self.text_width % self.text_heads:
                raise ValueError(f"text_width {self.text_width} is not divisible by text_heads {self.text_heads}")
        return self

    @property
    def label(self) -> str:
        """Short human name, e.g. ``tiny-vit-6x128`` or ``ViT-B-32/openai``."""
        if self.arch == "tiny":
            return f"tiny-vit-{self.layers}x{self.width}-p{self.patch_size}"
        return f"{self.arch}/{self.pretrained or 'scratch'}"


class ClipModel(nn.Module):
    """An open_clip CLIP with pixel-space inputs and its tokenizer attached."""

    def __init__(self, clip: nn.Module, tokenizer, image_size: int,
                 mean: tuple[float, ...] = OPENAI_MEAN, std: tuple[float, ...] = OPENAI_STD):
        super().__init__()
        self.clip = clip
        self.tokenizer = tokenizer
        self.image_size = image_size
        self.register_buffer("pixel_mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    @property
    def visual(self) -> nn.Module:
        return self.clip.visual

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """[0, 1] pixels -> the tensor the vision tower was trained on."""
        return (images.to(self.device) - self.pixel_mean) / self.pixel_std

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Unnormalised image embeddings (N, D) for [0, 1] images (N, 3, H, W)."""
        return self.clip.encode_image(self.normalize(images))

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        return self.tokenizer(texts).to(self.device)

    def encode_text(self, texts: list[str] | torch.Tensor) -> torch.Tensor:
        tokens = texts if isinstance(texts, torch.Tensor) else self.tokenize(texts)
        return self.clip.encode_text(tokens.to(self.device))

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.clip.logit_scale


def _tiny_clip(spec: ModelSpec) -> nn.Module:
    vision_cfg = dict(image_size=spec.image_size, patch_size=spec.patch_size, width=spec.width,
                      layers=spec.layers, head_width=spec.width // spec.heads, mlp_ratio=4.0)
    text_cfg = dict(context_length=spec.context_length, vocab_size=49408, width=spec.text_width,
                    heads=spec.text_heads, layers=spec.text_layers)
    return open_clip.CLIP(embed_dim=spec.embed_dim, vision_cfg=vision_cfg, text_cfg=text_cfg)


def build_model(spec: ModelSpec, device: str | torch.device = "cpu") -> ClipModel:
    """Build the model ``spec`` names; pretrained weights come from a local file or open_clip's own cache.

    A local ``pretrained`` path loads offline (safetensors or a torch state dict saved by open_clip).
    A tag such as ``openai`` goes through open_clip, which downloads when online unless the file is cached.
    """
    if spec.arch == "tiny":
        clip = _tiny_clip(spec)
        if spec.pretrained:
            load_weights(clip, spec.pretrained)
        tokenizer = _Tokenizer(spec.context_length)
        image_size = spec.image_size
    else:
        if spec.arch not in open_clip.list_models():
            from bench_core.errors import unknown_name_error
            raise unknown_name_error("open_clip architecture", spec.arch, open_clip.list_models())
        local = spec.pretrained is not None and Path(spec.pretrained).expanduser().is_file()
        # a local file loads through load_weights (safetensors, or torch with weights_only): never a pickle
        clip = open_clip.create_model(spec.arch, pretrained=None if local else spec.pretrained, device="cpu")
        if local:
            load_weights(clip, Path(spec.pretrained).expanduser())
        tokenizer = open_clip.get_tokenizer(spec.arch)
        image_size = clip.visual.image_size[0] if isinstance(clip.visual.image_size, tuple) else clip.visual.image_size
    return ClipModel(clip, tokenizer, int(image_size)).to(device)


class _Tokenizer:
    """open_clip's BPE tokenizer at a short context length, memoised: captions repeat a lot."""

    def __init__(self, context_length: int):
        self.context_length = context_length
        self._memo: dict[str, torch.Tensor] = {}

    def __call__(self, texts: list[str] | str) -> torch.Tensor:
        if isinstance(texts, str):
            texts = [texts]
        missing = [t for t in dict.fromkeys(texts) if t not in self._memo]
        if missing:
            for text, row in zip(missing, open_clip.tokenize(missing, context_length=self.context_length)):
                self._memo[text] = row
        return torch.stack([self._memo[t] for t in texts])


def load_weights(module: nn.Module, path: str | os.PathLike) -> None:
    """Load a local state dict (``.safetensors``, or a torch file read with ``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights file {str(path)!r} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    module.load_state_dict(state)


def pick_device(requested: str = "auto") -> torch.device:
    """``auto`` -> CUDA when present, CPU otherwise."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)
