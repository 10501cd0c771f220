"""One contrastive training loop (AdamW, warmup + cosine, progress bar) shared by pretraining, poisoned
fine-tunes and training-stage defenses.

Callers hand in image tensors in [0, 1] and captions; the loop tokenizes once, shuffles with its own seeded
generator and leaves the model in eval mode. ``extra_loss`` lets a defense add a term (CleanCLIP's unimodal
losses) without a second loop.

Speed (measured on the 2-core AVX512-BF16 CPU, tiny ViT, batch 256; ``make bench`` reports the ratio): the
forward and backward run under bf16 autocast (weights, AdamW state and the contrastive logits stay fp32),
attention uses the plain-math kernel on the CPU (faster than the flash kernel for 17-token sequences), and only
the token-embedding rows the run's captions use are handed to AdamW — the other rows never receive a gradient,
so with a fresh optimiser and no weight decay on embeddings their update is exactly zero anyway.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from typing import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from tqdm.auto import tqdm

from bench_core.checkpoints import Checkpointer, TrainingState
from bench_core.data.images import Images, batches
from bench_core.faults import crash_point
from bench_core.models import ClipModel
from bench_core.numerics import Precision, autocast_numerics, clip_temperature, full_precision


class TrainingDiverged(ArithmeticError):
    """A training run's loss became NaN or infinite: the run fails, and nothing it made is cached."""


class TrainConfig(BaseModel):
    """Optimiser settings of one contrastive training run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(10, ge=0)  # SPEC §3 study: 10 fine-tune epochs where 5 left BadNet weak
    lr: float = Field(1e-3, gt=0)  # SPEC §3 study: 1e-3 for the tiny model (paper: 1e-5 on pretrained ViT-B-32)
    batch_size: int = Field(256, ge=2)  # SPEC §3 study; the paper uses 128
    weight_decay: float = Field(0.1, ge=0)  # open_clip's default for ViT training
    warmup_fraction: float = Field(0.05, ge=0, lt=1)  # short linear warmup before the cosine decay
    augment: bool = True  # random crop-shift + flip-free jitter; keeps the small model from memorising
    # bf16 autocast for forward/backward; fp32 master weights, optimiser and loss. On CPUs without native bf16
    # (no AVX512-BF16 / AMX) bf16 is emulated and slower: set "fp32" there.
    precision: Precision = "bf16"


ExtraLoss = Callable[..., torch.Tensor]
"""``(model, images, tokens, image_features, text_features, *, rows) -> scalar`` added to the contrastive loss;
``rows`` (a (B,) long tensor) are the batch's indices into the training pairs."""


def clip_loss(image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE over the batch (CLIP's loss), computed in fp32 even under autocast."""
    logits = contrastive_logits(image_features, text_features, logit_scale)
    target = torch.arange(len(logits), device=logits.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def contrastive_logits(a: torch.Tensor, b: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """(len(a), len(b)) fp32 cosine similarities times CLIP's learned scale (capped at 100), even under autocast."""
    with full_precision(a.device):
        a = F.normalize(a.float(), dim=-1)
        b = F.normalize(b.float(), dim=-1)
        return clip_temperature(logit_scale) * a @ b.T


class _UsedRowsEmbedding(nn.Module):
    """Stands in for a token embedding during one run: only the rows of ``used`` token ids are parameters."""

    def __init__(self, full: nn.Embedding, used: torch.Tensor):
        super().__init__()
        self.rows = nn.Parameter(full.weight.detach()[used].clone())
        lookup = torch.full((full.num_embeddings,), -1, dtype=torch.long, device=full.weight.device)
        lookup[used] = torch.arange(len(used), device=full.weight.device)
        self.register_buffer("lookup", lookup, persistent=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        index = self.lookup[tokens]
        if bool((index < 0).any()):
            raise ValueError("a token outside the run's captions reached the text tower during training")
        return F.embedding(index, self.rows)


@contextlib.contextmanager
def used_token_rows(model: ClipModel, tokens: torch.Tensor) -> Iterator[None]:
    """Train only the token-embedding rows that ``tokens`` use; written back into the full table on exit.

    Exact for AdamW with a fresh state and no weight decay on embeddings: a row that never gets a gradient
    keeps zero moments, hence a zero update. Saves the dense 49k x width gradient and its optimiser step.
    """
    full = model.clip.token_embedding
    used = torch.unique(tokens).to(full.weight.device)
    model.clip.token_embedding = _UsedRowsEmbedding(full, used)
    try:
        yield
    finally:
        with torch.no_grad():
            full.weight[used] = model.clip.token_embedding.rows.to(full.weight.dtype)
        model.clip.token_embedding = full


def random_shift(images: torch.Tensor, generator: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Translate each image by up to ``max_shift`` pixels (reflect padding): cheap augmentation."""
    n, _, h, w = images.shape
    padded = F.pad(images, (max_shift,) * 4, mode="reflect")
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator)
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h)[None]).to(images.device)
    cols = (dx[:, None] + torch.arange(w)[None]).to(images.device)
    idx = torch.arange(n, device=images.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[idx, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def train_contrastive(model: ClipModel, images: Images, captions: Sequence[str], config: TrainConfig,
                      seed: int, *, extra_loss: ExtraLoss | None = None, desc: str = "train",
                      repeat: torch.Tensor | None = None, loader_workers: int = 0,
                      checkpoint: Checkpointer | None = None) -> dict[str, float]:
    """Train ``model`` in place on (image, caption) pairs; returns summary stats (final loss, seconds, steps).

    ``repeat`` optionally gives a per-pair integer count: a pair with count k appears k times per epoch
    (PDB repeats its defensive pairs). ``images`` is a tensor or a lazy column: each batch is read (decoded, for
    a column, in ``loader_workers`` DataLoader processes, pinned on CUDA) and moved to the model's device, so
    memory is bounded by the batch, not by the data set. ``captions`` is a list or tuple (tokenized once) or a
    lazy sequence (tokenized per batch: the scene world's pretraining captions), with the same tokens either way.
    ``checkpoint``: the run saves its state there as it goes and, when a saved state exists, resumes from it; the
    weights it ends with are those of an uninterrupted run (:mod:`bench_core.checkpoints`).
    """
    if len(images) != len(captions):
        raise ValueError(f"{len(images)} images but {len(captions)} captions")
    started = time.perf_counter()
    device = model.device
    eager = isinstance(captions, (list, tuple))
    tokens = model.tokenize(list(captions)).cpu() if eager else None

    def batch_tokens(rows: torch.Tensor) -> torch.Tensor:
        if eager:
            return tokens[rows]
        picked = captions.take(rows.tolist()) if hasattr(captions, "take") else [captions[i] for i in rows.tolist()]
        return model.tokenize(picked).cpu()

    generator = torch.Generator().manual_seed(seed)
    index = torch.arange(len(images))
    if repeat is not None:
        index = torch.repeat_interleave(index, repeat.long())
    steps_per_epoch = max(1, len(index) // config.batch_size)
    total = steps_per_epoch * config.epochs
    warmup = int(total * config.warmup_fraction)

    def lr_at(step: int) -> float:
        if step < warmup:
            return config.lr * (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return config.lr * 0.5 * (1 + math.cos(math.pi * progress))

    # An extra loss may tokenize new text (CleanCLIP's augmented captions): then the whole table trains.
    sparse_rows = extra_loss is None and model.clip.token_embedding.weight.requires_grad
    used = (tokens if eager else _streamed_token_ids(model, captions)) if sparse_rows else None
    last_loss = float("nan")
    step, first_epoch, first_batch, spent_before = 0, 0, 0, 0.0
    resume_order: torch.Tensor | None = None
    with used_token_rows(model, used) if sparse_rows else contextlib.nullcontext():
        optimizer = _adamw(model, config)
        saved = checkpoint.load() if checkpoint is not None else None
        if saved is not None:
            model.clip.load_state_dict(saved.model)
            optimizer.load_state_dict(saved.optimizer)
            generator.set_state(saved.generator_state)
            step, first_epoch, first_batch = saved.step, saved.epoch, saved.batch
            last_loss, spent_before = saved.last_loss, saved.seconds
            resume_order = saved.order if first_batch else None  # at an epoch's end the next order is drawn
            print(f"{desc}: resuming at step {step} of {total} (epoch {first_epoch + 1}, "
                  f"batch {first_batch})", file=sys.stderr, flush=True)
        model.train()
        bar = tqdm(total=total, initial=step, desc=desc, leave=False, disable=not sys.stderr.isatty(), unit="step")
        for epoch in range(first_epoch, config.epochs):
            if resume_order is not None:
                order, resume_order = resume_order, None
            else:
                order, first_batch = index[torch.randperm(len(index), generator=generator)], 0
            rows = [order[b * config.batch_size:(b + 1) * config.batch_size] for b in range(steps_per_epoch)]
            loaded = batches(images, [r.tolist() for r in rows[first_batch:]], workers=loader_workers,
                             pin_memory=device.type == "cuda" and not isinstance(images, torch.Tensor))
            for done, (batch, x) in enumerate(zip(rows[first_batch:], loaded), start=first_batch + 1):
                if config.augment:
                    x = random_shift(x, generator)
                x = x.to(device, non_blocking=True)
                t = batch_tokens(batch).to(device)
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(step)
                with autocast_numerics(device, config.precision):
                    image_features = model.encode_image(x)
                    text_features = model.encode_text(t)
                    loss = clip_loss(image_features, text_features, model.logit_scale)
                    if extra_loss is not None:
                        loss = loss + extra_loss(model, x, t, image_features, text_features, rows=batch)
                last_loss = float(loss.detach())
                if not math.isfinite(last_loss):
                    raise TrainingDiverged(f"{desc}: the loss is {last_loss} at step {step + 1} of {total} "
                                           f"(lr {config.lr:g}); nothing was stored")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
                if checkpoint is not None and step < total and checkpoint.due(done == steps_per_epoch):
                    at_end = done == steps_per_epoch
                    checkpoint.save(TrainingState(
                        epoch + at_end, 0 if at_end else done, step, order, generator.get_state(),
                        {k: v.detach().clone() for k, v in model.clip.state_dict().items()},
                        optimizer.state_dict(), last_loss, spent_before + time.perf_counter() - started))
                crash_point("train")
                bar.update(1)
                bar.set_postfix(loss=f"{last_loss:.3f}")
        bar.close()
    model.eval()
    return {"loss": last_loss, "seconds": spent_before + time.perf_counter() - started, "steps": float(step)}


def _streamed_token_ids(model: ClipModel, captions: Sequence[str], chunk: int = 50_000) -> torch.Tensor:
    """The distinct token ids of a lazy caption sequence, tokenizing ``chunk`` captions at a time."""
    seen = torch.empty(0, dtype=torch.long)
    for start in range(0, len(captions), chunk):
        part = model.tokenize(list(captions[start:start + chunk]))
        seen = torch.unique(torch.cat([seen, part.flatten().long()]))
    return seen


def _adamw(model: ClipModel, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; no weight decay on gains, biases, embeddings and the logit scale."""
    decay, no_decay = [], []
    for name, p in model.clip.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "embedding" in name or "logit_scale" in name else decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=config.lr)
