"""Reproduce the numbers quoted in the attack configs' comments (not a test; CPU, a minute or two each).

    python plugins/attacks/scripts/measure_attacks.py issba --seeds 0,1,2
    python plugins/attacks/scripts/measure_attacks.py badclip [--small-clip]   # also: lc

Data: the default world (5,000 fine-tune pairs, 32 px). ``issba`` needs no model. ``badclip`` and ``lc`` run
on the default tiny CLIP architecture untrained (timing only), or with ``--small-clip`` on a 2-layer width-64
CLIP pretrained here on 12,000 world pairs for 10 epochs (~2.5 min, ~83% zero-shot), where the effects mean
something. Timings depend on threads: on a shared 2-core machine ``OMP_NUM_THREADS=1`` was 3-20x faster.
"""

from __future__ import annotations

import argparse
import time

import torch

from bench_core.data.bundle import DataBundle
from bench_core.interfaces import RunContext
from bench_core.metrics import psnr
from bench_core.models import ModelSpec, build_model
from bench_core.suite import WorldData
from bench_core.training import TrainConfig, train_contrastive
from bench_core.zeroshot import ZeroShotClassifier, batched_logits

from bdbench_attacks.badclip import BadCLIP
from bdbench_attacks.issba import ISSBA
from bdbench_attacks.label_consistent import LabelConsistent

SMALL = ModelSpec(arch="tiny", image_size=32, patch_size=8, width=64, layers=2, heads=4, text_width=64,
                  text_layers=1, text_heads=2, embed_dim=64, context_length=32)


def clean_model(small: bool):
    if not small:
        torch.manual_seed(0)
        return build_model(ModelSpec()).eval()
    data = DataBundle(WorldData(n_pretrain=12000), 32)
    torch.manual_seed(0)
    model = build_model(SMALL)
    train_contrastive(model, data.pretrain.images, list(data.pretrain.captions),
                      TrainConfig(epochs=10, lr=2e-3, batch_size=128), seed=0, desc="pretrain small CLIP")
    return model.eval()


def context(data: DataBundle, seed: int, model=None) -> RunContext:
    return RunContext(seed=seed, device=torch.device("cpu"), classnames=data.classnames, templates=data.templates,
                      write_caption=data.caption_writer(), finetune_pairs=data.finetune, clean_model=model)


def target_rate(model, data: DataBundle, images: torch.Tensor, target: int) -> float:
    clf = ZeroShotClassifier.build(model, data.classnames, data.templates)
    pred = batched_logits(clf, images, 256).argmax(1)
    return float((pred[data.evaluation.labels != target] == target).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("attack", choices=["issba", "badclip", "lc"])
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--small-clip", action="store_true")
    args = parser.parse_args()
    data = DataBundle(WorldData(), 32)
    model = None if args.attack == "issba" else clean_model(args.small_clip)
    for seed in map(int, args.seeds.split(",")):
        ctx = context(data, seed, model)
        attack = {"issba": ISSBA, "badclip": BadCLIP, "lc": LabelConsistent}[args.attack]()
        started = time.perf_counter()
        state = attack.prepare(ctx)
        attack.load_state(state)
        result = attack.poison(data.finetune, ctx)
        seconds = time.perf_counter() - started
        metrics = {k: round(float(v), 4) for k, v in state.items() if k.startswith("metric_")}
        metrics.update({k: round(v, 4) for k, v in result.stats.items()})
        triggered = attack.apply_trigger(data.evaluation.images, ctx)
        line = f"{args.attack} seed {seed}: prepare+poison {seconds:.1f}s ({torch.get_num_threads()} threads) {metrics}"
        line += f" test-split PSNR {psnr(data.evaluation.images, triggered):.2f} dB"
        if model is not None:
            line += (f" clean-model target rate on non-target test images: triggered "
                     f"{target_rate(model, data, triggered, attack.target_class):.3f}, clean "
                     f"{target_rate(model, data, data.evaluation.images, attack.target_class):.3f}")
        print(line, flush=True)


if __name__ == "__main__":
    main()
