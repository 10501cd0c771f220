"""Every metric against hand-computed cases (SPEC §5, §7: sign errors and hard-label AUROC are known bugs)."""

import math

import pytest
import torch

from bench_core import metrics as M


def t(*values):
    return torch.tensor(values)


def test_accuracy_hand_case():
    assert M.accuracy(t(0, 1, 2, 2), t(0, 1, 1, 2)) == pytest.approx(0.75)
    assert math.isnan(M.accuracy(t(), t()))
    with pytest.raises(ValueError, match="differ in shape"):
        M.accuracy(t(0, 1), t(0))


def test_asr_excludes_target_class_images():
    labels = t(0, 0, 1, 2, 3)  # target 0: two target-class images must not count
    preds = t(0, 0, 0, 2, 0)
    assert M.asr(preds, labels, target=0) == pytest.approx(2 / 3)
    assert M.asr_all_images(preds, target=0) == pytest.approx(4 / 5)  # the paper's variant counts them


def test_asr_all_target_is_nan_not_zero():
    assert math.isnan(M.asr(t(0, 0), t(0, 0), target=0))


def test_robust_accuracy():
    labels = t(0, 1, 2, 3)
    preds = t(0, 1, 0, 3)
    assert M.robust_accuracy(preds, labels, target=0) == pytest.approx(2 / 3)


def test_auroc_uses_continuous_scores_and_orientation():
    clean = [0.1, 0.2, 0.3]
    trig = [0.25, 0.9, 1.0]
    # pairs (c, t) with t > c: 0.25 beats 0.1, 0.2 (2); 0.9, 1.0 beat all (6) -> 8/9
    assert M.auroc(clean, trig) == pytest.approx(8 / 9)
    assert M.auroc(trig, clean) == pytest.approx(1 / 9)  # reversed sign is reported, not silently flipped


def test_auroc_ties_count_half():
    assert M.auroc([1.0, 1.0], [1.0, 1.0]) == pytest.approx(0.5)


def test_auroc_rejects_empty_and_nan():
    with pytest.raises(ValueError):
        M.auroc([], [1.0])
    with pytest.raises(ValueError):
        M.auroc([float("nan")], [1.0])


def test_tpr_at_fpr_hand_case():
    clean = list(range(20))  # 0..19
    trig = [17.5, 19.5, 30, 40]
    # score >= 19 flags one clean image (FPR 1/20 = 5%) and 19.5, 30, 40 -> TPR 3/4
    assert M.tpr_at_fpr(clean, trig, 0.05) == pytest.approx(0.75)
    # score >= 17.5 flags clean 18, 19 (FPR 10%) and every triggered image
    assert M.tpr_at_fpr(clean, trig, 0.10) == pytest.approx(1.0)


def test_ece_hand_case():
    # two samples, confidences 0.9 (correct) and 0.6 (wrong), different bins
    logits = torch.log(torch.tensor([[0.9, 0.1], [0.6, 0.4]]))
    labels = t(0, 1)
    expected = 0.5 * abs(1 - 0.9) + 0.5 * abs(0 - 0.6)
    assert M.expected_calibration_error(logits, labels, n_bins=10) == pytest.approx(expected, abs=1e-6)


def test_nll_hand_case():
    logits = torch.log(torch.tensor([[0.5, 0.5], [0.25, 0.75]]))
    expected = -(math.log(0.5) + math.log(0.75)) / 2
    assert M.negative_log_likelihood(logits, t(0, 1)) == pytest.approx(expected, abs=1e-6)


def test_mean_interval_single_seed_has_no_interval():
    assert M.mean_interval([0.7]) == (0.7, None)


def test_mean_interval_student_t():
    mean, half = M.mean_interval([0.1, 0.2, 0.3])
    assert mean == pytest.approx(0.2)
    # sd 0.1, sem 0.1/sqrt(3), t_{0.975, 2} = 4.302652729911275
    assert half == pytest.approx(4.302652729911275 * 0.1 / math.sqrt(3), rel=1e-9)


def test_psnr_hand_case():
    a = torch.zeros(1, 3, 2, 2)
    b = torch.full((1, 3, 2, 2), 0.1)
    assert M.psnr(a, b) == pytest.approx(20.0, abs=1e-5)  # 10 log10(1 / 0.01)


def test_recall_at_k_hand_case():
    sim = torch.tensor([[0.9, 0.1, 0.0], [0.8, 0.2, 0.1], [0.0, 0.1, 0.5]])
    assert M.recall_at_k(sim, 1) == pytest.approx(2 / 3)  # row 1 ranks its pair second
    assert M.recall_at_k(sim, 2) == pytest.approx(1.0)


def test_classification_metrics_keys():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    out = M.classification_metrics(logits, t(0, 1), logits, t(0, 1), target=1)
    assert out["cacc"] == 1.0 and out["asr"] == 0.0 and out["ra"] == 1.0
    assert set(out) == {"cacc", "ece", "nll", "asr", "asr_all_images", "ra"}


def test_reliability_bins_sum_to_ece_and_shares_to_one():
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(200, 5, generator=g) * 3, torch.randint(0, 5, (200,), generator=g)
    bins = M.reliability_bins(logits, labels, n_bins=10)
    assert len(bins) == 10 and bins[0]["lo"] == 0.0 and bins[-1]["hi"] == 1.0
    assert sum(b["share"] for b in bins) == pytest.approx(1.0)
    gap = sum(b["share"] * abs(b["accuracy"] - b["confidence"]) for b in bins if b["share"] > 0)
    assert M.expected_calibration_error(logits, labels, n_bins=10) == pytest.approx(gap)
    for b in bins:  # a bin's mean confidence lies inside it; empty bins carry NaN
        if b["share"] > 0:
            assert b["lo"] <= b["confidence"] <= b["hi"]
        else:
            assert math.isnan(b["accuracy"]) and math.isnan(b["confidence"])
