"""Resumable training: a run's full state saved in the cache while it trains, so a killed run continues where
it stopped and ends with the same weights as an uninterrupted one.

A checkpoint holds the model's trainable state, AdamW's moments and step counts, the data order of the current
epoch, the shuffling generator's state, and the position in the epoch. It is written as one cache entry
(safetensors + JSON, checksummed, atomic) under a key derived from the key of the artifact the run will produce,
so only a run of the very same artifact can resume from it; it is removed when that artifact is stored. A
damaged checkpoint is a cache miss: the run starts over.

Checkpoints are written at most every ``BDBENCH_CHECKPOINT_SECONDS`` seconds (default 300) and at the end of
each epoch; saving never changes what the run computes.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import torch

from bench_core.cache import Cache, content_key

CHECKPOINT_VERSION = "1"
DEFAULT_INTERVAL_S = 300.0


def checkpoint_key(artifact_key: str) -> str:
    """The key a run that produces ``artifact_key`` checkpoints under."""
    return content_key("checkpoint", "train", CHECKPOINT_VERSION, None, (artifact_key,))


def interval_seconds() -> float:
    raw = os.environ.get("BDBENCH_CHECKPOINT_SECONDS")
    if raw is None:
        return DEFAULT_INTERVAL_S
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"BDBENCH_CHECKPOINT_SECONDS={raw!r} is not a number of seconds") from None
    if value < 0:
        raise ValueError(f"BDBENCH_CHECKPOINT_SECONDS={raw!r} is negative; allowed: 0 (every step) or more")
    return value


@dataclass
class TrainingState:
    """Where a run stands: ``epoch`` (0-based, the one in progress), ``batch`` (batches of it done), the global
    ``step``, the epoch's data ``order``, the generator state, the last loss and the seconds spent so far."""

    epoch: int
    batch: int
    step: int
    order: torch.Tensor
    generator_state: torch.Tensor
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    last_loss: float
    seconds: float


class Checkpointer:
    """Saves and restores one run's :class:`TrainingState` in the cache (see the module docstring)."""

    def __init__(self, cache: Cache, artifact_key: str, interval_s: float | None = None):
        self.cache = cache
        self.key = checkpoint_key(artifact_key)
        self.interval_s = interval_seconds() if interval_s is None else interval_s
        self._last_save = time.monotonic()

    def due(self, end_of_epoch: bool) -> bool:
        return end_of_epoch or time.monotonic() - self._last_save >= self.interval_s

    def save(self, state: TrainingState) -> None:
        tensors = {f"model.{k}": v for k, v in state.model.items()}
        tensors["order"] = state.order
        tensors["generator_state"] = state.generator_state
        opt_tensors, opt_meta = _split_optimizer(state.optimizer)
        tensors.update({f"optim.{k}": v for k, v in opt_tensors.items()})
        self.cache.save(self.key, tensors, {
            "epoch": state.epoch, "batch": state.batch, "step": state.step, "last_loss": state.last_loss,
            "seconds": state.seconds, "optimizer": opt_meta})
        self._last_save = time.monotonic()

    def load(self) -> TrainingState | None:
        hit = self.cache.load(self.key)
        if hit is None:
            return None
        tensors, meta = hit
        try:
            model = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
            optim = _join_optimizer({k[len("optim."):]: v for k, v in tensors.items() if k.startswith("optim.")},
                                    meta["optimizer"])
            return TrainingState(int(meta["epoch"]), int(meta["batch"]), int(meta["step"]), tensors["order"],
                                 tensors["generator_state"], model, optim, float(meta["last_loss"]),
                                 float(meta["seconds"]))
        except (KeyError, TypeError, ValueError) as exc:
            self.cache.log(f"checkpoint {self.key[:12]} is unusable ({type(exc).__name__}: {exc}); starting over")
            self.discard()
            return None

    def discard(self) -> None:
        self.cache.discard(self.key)


def _split_optimizer(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """An optimizer's state dict as tensors (per parameter id and name) plus JSON (groups, scalar state)."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, float]] = {}
    for pid, values in state_dict["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{pid}.{name}"] = value
            else:
                scalars.setdefault(str(pid), {})[name] = float(value)
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in state_dict["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def _join_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    for pid, values in meta["scalars"].items():
        state.setdefault(int(pid), {}).update(values)
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}
