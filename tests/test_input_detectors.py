"""Input-level detectors (STRIP, SCALE-UP, TeCo) and TeCo's torch corruptions.

The detectors run on small fake classifiers (objects with ``.model``, ``.class_weights`` and ``.logits``, the
Classifier protocol), so what each test asserts is known by construction:

- ``Constant`` ignores its input: no detector can tell anything apart (AUROC 0.5).
- ``CornerTrigger`` predicts class 0 whenever a bright 4x4 patch sits in the top-left corner and otherwise a
  label from a fixed random linear map of the pixels: a trigger that fixes the prediction.
"""

from __future__ import annotations

import pytest
import torch

from bench_core.interfaces import RunContext
from bench_core.metrics import auroc
from bench_core.registry import default_registry
from bench_core.suite import WorldData
from bench_core.data.bundle import DataBundle

from bdbench_input_detectors import corruptions
from bdbench_input_detectors.corruptions import CORRUPTIONS, MAX_SEVERITY
from bdbench_input_detectors.scale_up import ScaleUp
from bdbench_input_detectors.strip import Strip
from bdbench_input_detectors.teco import TeCo

K, SIZE, PATCH = 10, 16, 4
DETECTORS = {"strip": lambda: Strip({"n_blends": 16}), "scale_up": ScaleUp, "teco": TeCo}


# --- fake classifiers -------------------------------------------------------------------------------------

class Constant:
    """Logits that ignore the input."""

    model = None
    class_weights = torch.zeros(K, 1)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        return torch.linspace(1.0, 0.0, K).expand(len(images), K).clone()


class CornerTrigger:
    """Class 0 (logit margin 20) when the top-left patch is bright (mean >= 0.7), else a fixed random linear
    map of the pixels (logits of order 1, so clean predictions are uncertain and content-dependent)."""

    model = None
    class_weights = torch.zeros(K, 1)

    def __init__(self) -> None:
        self.weight = torch.randn(K, 3 * SIZE * SIZE, generator=torch.Generator().manual_seed(0))

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        content = 3 * (images.flatten(1) - 0.5) @ self.weight.T / self.weight.shape[1] ** 0.5
        present = images[:, :, :PATCH, :PATCH].mean(dim=(1, 2, 3)) >= 0.7
        fixed = torch.zeros_like(content)
        fixed[:, 0] = 20.0
        return torch.where(present[:, None], fixed, content)


class BrightnessThreshold:
    """Label 1 when the image mean exceeds 0.5, else 0 (for hand-computed scores)."""

    model = None
    class_weights = torch.zeros(2, 1)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        bright = (images.mean(dim=(1, 2, 3)) > 0.5).float()
        return torch.stack([1 - bright, bright], dim=1)


class Counting:
    """Wraps a classifier and counts the images it is asked to classify."""

    def __init__(self, inner) -> None:
        self.inner, self.images_seen = inner, 0
        self.model, self.class_weights = inner.model, inner.class_weights

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        self.images_seen += len(images)
        return self.inner.logits(images)


def context(seed: int = 0) -> RunContext:
    reference = torch.rand(32, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    return RunContext(seed=seed, device=torch.device("cpu"), classnames=tuple(str(k) for k in range(K)),
                      templates=("a photo of a {}.",), write_caption=lambda *_: "", clean_reference=reference)


def fitted(name: str, classifier, **config):
    detector = DETECTORS[name]() if not config else type(DETECTORS[name]())(config)
    detector.fit(classifier, context().restricted_to(detector.threat_model.reads))
    return detector



@pytest.fixture(scope="module")
def clean_and_triggered() -> tuple[torch.Tensor, torch.Tensor]:
    clean = torch.rand(48, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    triggered = clean.clone()
    triggered[:, :, :PATCH, :PATCH] = 1.0
    return clean, triggered


@pytest.fixture(scope="module")
def world_images() -> torch.Tensor:
    """Generated shape images at the default suite's 32 px (structured, unlike uniform noise)."""
    data = DataBundle(WorldData(kind="world", image_size=32, n_pretrain=10, n_finetune=10, n_test=60,
                                n_heldout=10), 32)
    return data.reference


# --- registration and configs -----------------------------------------------------------------------------

def test_registered_through_the_entry_point():
    detectors = default_registry().detectors
    assert {"strip", "scale_up", "teco"} <= set(detectors.names())
    assert detectors.get("scale_up") is ScaleUp and detectors.get("teco") is TeCo
    for cls in (ScaleUp, TeCo):
        assert cls.threat_model.reads == frozenset() and not cls.threat_model.oracle


@pytest.mark.parametrize("cls, bad", [(ScaleUp, {"scales": []}), (ScaleUp, {"scale": [3]}),
                                      (TeCo, {"corruptions": ["rain", "fog"]}), (TeCo, {"max_severity": 6}),
                                      (TeCo, {"corruptions": ["fog"]})])
def test_configs_reject_bad_values(cls, bad):
    with pytest.raises(ValueError):
        cls(bad)


def test_configs_are_frozen():
    with pytest.raises(ValueError):
        TeCo().config.max_severity = 3


# --- what the detectors catch -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_input_blind_classifier_gives_chance_auroc(name, clean_and_triggered):
    clean, triggered = (images[:16] if name == "teco" else images for images in clean_and_triggered)
    detector = fitted(name, Constant())
    s_clean, s_trig = detector.score(clean), detector.score(triggered)
    assert s_clean.shape == (len(clean),) and s_clean.dtype == torch.float32 and s_clean.device.type == "cpu"
    assert auroc(s_clean, s_trig) == pytest.approx(0.5)


@pytest.mark.parametrize("name", ["strip", "scale_up"])
def test_trigger_that_fixes_the_prediction_is_caught(name, clean_and_triggered):
    clean, triggered = clean_and_triggered
    detector = fitted(name, CornerTrigger())
    assert auroc(detector.score(clean), detector.score(triggered)) > 0.9


def test_teco_sees_the_trigger_robust_to_some_corruptions_and_fragile_to_others(clean_and_triggered):
    """TeCo's premise on the corner trigger: the patch survives corruptions that keep it bright, so those never
    flip a triggered image, while contrast (pulling the patch towards the image mean) flips it at severity 2; that
    unevenness is what the score measures, so every triggered image scores > 0.

    We assert only this mechanism, not an AUROC: on this fake TeCo does NOT separate (AUROC about 0.2),
    because the random-linear-map classifier is itself unevenly robust on clean noise images (contrast and
    blur rarely flip it, fog, elastic and jpeg flip it at severity 1), which breaks TeCo's assumption that
    clean images are about equally robust to every corruption.
    """
    clean, triggered = (images[:24] for images in clean_and_triggered)
    detector = fitted("teco", CornerTrigger())
    names = detector.config.corruptions
    never = MAX_SEVERITY + 1
    flips_trig, flips_clean = detector.flip_severities(triggered), detector.flip_severities(clean)
    assert flips_trig.shape == (len(triggered), len(names))
    assert flips_trig.min() >= 1 and flips_trig.max() <= never

    def column(flips, name):
        return flips[:, names.index(name)]

    for name in ("gaussian_noise", "impulse_noise", "motion_blur", "brightness", "elastic_transform", "pixelate",
                 "jpeg_compression"):
        assert (column(flips_trig, name) == never).all(), name
    for name in ("gaussian_noise", "impulse_noise", "elastic_transform"):
        assert column(flips_clean, name).float().mean() < never - 2, name  # ... where clean predictions flip
    # contrast 0.3 pulls the patch below 0.7; the label stays only where the content map says 0 anyway
    assert (column(flips_trig, "contrast") == 2).float().mean() >= 0.9
    scores = detector.score(triggered)
    assert (scores > 0).all()
    torch.testing.assert_close(scores, flips_trig.float().std(dim=1, unbiased=False))


# --- hand-computed scores ---------------------------------------------------------------------------------

def test_scale_up_score_is_the_fraction_of_scales_keeping_the_prediction():
    # label = mean > 0.5; a constant image v stays label 0 under scale n while n * v <= 0.5
    images = torch.stack([torch.full((3, 4, 4), v) for v in (0.01, 0.05, 0.2, 0.6)])
    detector = fitted("scale_up", BrightnessThreshold())
    # 0.01: n*v > 0.5 never (0.11 at most) -> 1; 0.05: 0.15, 0.25, 0.35, 0.45 keep, 0.55 flips -> 4/5;
    # 0.2: 0.6 at n = 3 already -> 0; 0.6 is label 1 and so is every amplification -> 1
    torch.testing.assert_close(detector.score(images), torch.tensor([1.0, 0.8, 0.0, 1.0]))


def test_teco_score_is_the_spread_of_first_flip_severities():
    # label = mean > 0.5. Brightness adds c = 0.1 s to the value of a grey image; contrast leaves a constant
    # image unchanged (never flips: S + 1 = 6).
    images = torch.stack([torch.full((3, 4, 4), v) for v in (0.45, 0.25, 0.7)])
    detector = fitted("teco", BrightnessThreshold(), corruptions=["brightness", "contrast"], seed=0)
    # 0.45 flips at s = 1 (0.55); 0.25 at s = 3 (0.55); 0.7 is label 1 and only gets brighter: never
    expected = torch.tensor([[1, 6], [3, 6], [6, 6]])
    assert torch.equal(detector.flip_severities(images), expected)
    torch.testing.assert_close(detector.score(images), torch.tensor([2.5, 1.5, 0.0]))


def test_teco_corrupts_the_original_image_at_every_severity(monkeypatch, clean_and_triggered):
    """SPEC §7: the reference code feeds each severity the previous severity's output; we must not."""
    images = clean_and_triggered[1][:6]
    seen: list[tuple[str, int, torch.Tensor]] = []

    def spy(name, fn):
        def recording(x, severity, generator):
            seen.append((name, severity, x.clone()))
            return fn(x, severity, generator)
        return recording

    for name, fn in list(CORRUPTIONS.items()):
        monkeypatch.setitem(CORRUPTIONS, name, spy(name, fn))
    detector = fitted("teco", CornerTrigger())
    detector.score(images)
    grid = {(n, s) for n in detector.config.corruptions for s in range(1, detector.config.max_severity + 1)}
    assert sorted((n, s) for n, s, _ in seen) == sorted(grid)  # each (corruption, severity) exactly once
    for name, severity, given in seen:
        assert torch.equal(given, images), (name, severity)


def test_teco_is_deterministic_given_the_run_seed(clean_and_triggered):
    images = clean_and_triggered[0][:8]
    a, b = fitted("teco", CornerTrigger()), fitted("teco", CornerTrigger())
    assert a.seed == b.seed
    assert torch.equal(a.flip_severities(images), b.flip_severities(images))
    assert torch.equal(a.flip_severities(images), a.flip_severities(images))  # restarts the noise per call


# --- cost -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, config", [("strip", {"n_blends": 16, "batch_size": 40}),
                                          ("scale_up", {"batch_size": 20}), ("scale_up", {"scales": [2, 4]}),
                                          ("teco", {"batch_size": 25}),
                                          ("teco", {"corruptions": ["fog", "contrast"], "max_severity": 3})])
def test_forward_passes_per_image_matches_what_score_runs(name, config, clean_and_triggered):
    images = clean_and_triggered[0][:7]
    counting = Counting(CornerTrigger())
    detector = fitted(name, counting, **config)
    counting.images_seen = 0
    scores = detector.score(images)
    assert scores.shape == (len(images),)
    assert counting.images_seen == detector.forward_passes_per_image() * len(images)


def test_empty_batch_scores_nothing():
    for name in DETECTORS:
        assert fitted(name, Constant()).score(torch.empty(0, 3, SIZE, SIZE)).shape == (0,)


# --- corruptions ------------------------------------------------------------------------------------------

def _corrupt(name: str, images: torch.Tensor, severity: int, seed: int = 0) -> torch.Tensor:
    return CORRUPTIONS[name](images, severity, torch.Generator().manual_seed(seed))


def _distortion(name: str, images: torch.Tensor, severity: int) -> float:
    return float((_corrupt(name, images, severity) - images).abs().mean())


RANDOM = {"gaussian_noise", "shot_noise", "impulse_noise", "motion_blur", "snow", "frost", "fog",
          "elastic_transform"}
# Mean absolute change is not monotone in severity for these, by construction of ImageNet-C's tables:
NOT_MONOTONE = {
    "snow": "severity 3 raises the flake threshold (0.5 -> 0.9): fewer, larger flakes than severity 2",
    "frost": "severity 3 -> 4 only dims the image (0.7 -> 0.65) under the same frost amount, which partly "
             "cancels the added frost in mean absolute terms; each draw is a new texture",
    "fog": "severities 3 and 4 have the same fog amount and differ only in texture roughness",
    "pixelate": "on small images the box sizes do not tile evenly (32 px: 19, 16, 12, 9, 8 px), and uneven "
                "blocks can change more pixels than a coarser even grid",
}


def test_every_spec_corruption_is_implemented():
    assert set(CORRUPTIONS) == {"gaussian_noise", "shot_noise", "impulse_noise", "motion_blur", "snow", "frost",
                                "fog", "brightness", "contrast", "elastic_transform", "pixelate",
                                "jpeg_compression"}


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_corruption_contract(name, world_images):
    """Shape, dtype and [0, 1] range kept; the image changes; the same generator state gives the same output."""
    x = world_images
    for severity in range(1, MAX_SEVERITY + 1):
        y = _corrupt(name, x, severity)
        assert y.shape == x.shape and y.dtype == x.dtype and y.device == x.device
        assert y.min() >= 0 and y.max() <= 1
        assert (y - x).abs().mean() > 5e-4, severity
        assert torch.equal(y, _corrupt(name, x, severity))
        if name in RANDOM:
            assert not torch.equal(y, _corrupt(name, x, severity, seed=1))
    assert torch.equal(x, world_images)  # inputs untouched
    with pytest.raises(ValueError):
        _corrupt(name, x, MAX_SEVERITY + 1)


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_severity_increases_the_distortion(name, world_images):
    d = [_distortion(name, world_images, s) for s in range(1, MAX_SEVERITY + 1)]
    assert d[-1] > d[0]
    if name not in NOT_MONOTONE:
        assert all(later >= earlier for earlier, later in zip(d, d[1:])), d


def test_corruptions_are_per_image():
    """Each image gets its own noise: two copies of one image in a batch are corrupted differently."""
    x = torch.rand(1, 3, 8, 8).expand(2, 3, 8, 8).contiguous()
    for name in RANDOM - {"motion_blur"}:  # motion blur of a noise image is random only in its angle
        y = _corrupt(name, x, 3)
        assert not torch.equal(y[0], y[1]), name


def test_pixelate_matches_pil_box_resampling():
    from PIL import Image
    import numpy as np

    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    pixels = (x[0] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    for severity, factor in enumerate((0.6, 0.5, 0.4, 0.3, 0.25), start=1):
        small = int(32 * factor)
        ref = Image.fromarray(pixels).resize((small, small), Image.BOX).resize((32, 32), Image.BOX)
        ours = corruptions.pixelate(torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255, severity, None)
        diff = np.abs(np.asarray(ref, dtype=np.float64) / 255 - ours[0].permute(1, 2, 0).numpy())
        assert diff.max() <= 1.01 / 255  # PIL rounds its intermediate image to 8 bits


# --- numerics ---------------------------------------------------------------------------------------------

def test_bf16_forwards_still_give_fp32_logits(tiny_model):
    from bench_core.zeroshot import ZeroShotClassifier
    from bdbench_input_detectors.inference import classifier_logits

    clf = ZeroShotClassifier.build(tiny_model, ["circle", "square", "star"], ["a {}."])
    images = torch.rand(32, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    fp32 = classifier_logits(clf, images, "fp32")
    bf16 = classifier_logits(clf, images, "bf16")
    assert fp32.dtype == bf16.dtype == torch.float32
    assert torch.equal(fp32, clf.logits(images))  # fp32 is the classifier's own output
    # bf16 perturbs the image embedding, not the logits' resolution: no 0.25-unit steps from a bf16 matmul
    assert (bf16 - fp32).abs().max() < 0.05 * fp32.abs().max()
    assert not torch.equal(bf16, bf16.to(torch.bfloat16).float())


@pytest.fixture(scope="module")
def trained_tiny_classifier(tiny_data):
    """A miniature CLIP trained for a few seconds: its predictions depend on the input (an untrained one's
    barely do, which would make any precision comparison vacuous)."""
    from bench_core.models import build_model
    from bench_core.training import TrainConfig, train_contrastive
    from bench_core.zeroshot import ZeroShotClassifier
    from conftest import TINY_SPEC

    torch.manual_seed(0)
    model = build_model(TINY_SPEC)
    pairs = tiny_data.pretrain
    train_contrastive(model, pairs.images, list(pairs.captions), TrainConfig(epochs=40, batch_size=30, lr=2e-3,
                                                                             precision="fp32"), seed=0)
    return ZeroShotClassifier.build(model, tiny_data.classnames, tiny_data.templates)


@pytest.mark.parametrize("name", ["strip", "scale_up", "teco"])
def test_bf16_scores_rank_images_as_fp32_does(name, trained_tiny_classifier, tiny_data):
    """bf16 and fp32 scores separate clean from brightened images the same way (AUROC within 0.05), on a
    model where fp32 does separate them."""
    from conftest import make_context

    ctx = make_context(tiny_data)
    images = tiny_data.evaluation.images[:40]
    clean, bright = images[:20], (images[20:] * 3).clamp(0, 1)
    result = {}
    for precision in ("fp32", "bf16"):
        config = {"precision": precision} | ({"n_blends": 8} if name == "strip" else {})
        det = default_registry().detectors.get(name)(config)
        det.fit(trained_tiny_classifier, ctx.restricted_to(det.threat_model.reads))
        result[precision] = auroc(det.score(clean), det.score(bright))
    assert abs(result["fp32"] - 0.5) > 0.1, result  # the comparison is not vacuous
    assert abs(result["bf16"] - result["fp32"]) < 0.05, result
