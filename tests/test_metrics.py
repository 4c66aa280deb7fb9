import math

import pytest
import torch
from torchmetrics.classification import MulticlassAccuracy, MulticlassCalibrationError

from ecl_lightning.metrics import SPLITS, LongTailMetrics, shot_masks


def predict(classes, num_classes):
    """Confident logits that predict the given classes."""
    return 10.0 * torch.nn.functional.one_hot(torch.tensor(classes), num_classes).float()


def conf_logits(conf, cls, num_classes=2):
    """Logits of a 2-class sample whose softmax puts probability `conf` on class `cls`."""
    p = [1 - conf] * num_classes
    p[cls] = conf
    return torch.log(torch.tensor(p))


def test_shot_masks_thresholds_are_inclusive_for_medium():
    masks = shot_masks([200, 101, 100, 50, 20, 19, 5])
    assert list(masks) == list(SPLITS)
    assert masks["many"].tolist() == [True, True, False, False, False, False, False]
    assert masks["medium"].tolist() == [False, False, True, True, True, False, False]
    assert masks["few"].tolist() == [False, False, False, False, False, True, True]
    custom = shot_masks(torch.tensor([10, 5, 1]), many_threshold=8, few_threshold=2)
    assert custom["many"].tolist() == [True, False, False] and custom["few"].tolist() == [False, False, True]
    with pytest.raises(ValueError, match="few_threshold"):
        shot_masks([1, 2], many_threshold=10, few_threshold=20)


def test_split_accuracy_with_empty_split_and_unsupported_class():
    # training counts: class 0 many, classes 1-3 medium, no few-shot class
    metric = LongTailMetrics(num_classes=4, class_counts=[500, 50, 60, 30])
    # class 0: 1/2 right; class 1: 3/4 right; class 2: no test samples; class 3: 0/1 right
    target = torch.tensor([0, 0, 1, 1, 1, 1, 3])
    metric.update(predict([0, 1, 1, 1, 1, 0, 2], 4), target)
    out = metric.compute()
    assert out["acc"].item() == pytest.approx((0.5 + 0.75 + 0.0) / 3)
    assert out["acc_many"].item() == pytest.approx(0.5)
    assert out["acc_medium"].item() == pytest.approx((0.75 + 0.0) / 2)  # class 2 (no support) not averaged as 0
    assert "acc_few" not in out and "ece_few" not in out
    assert out["count"].item() == 7
    per_class = metric.per_class_accuracy()
    assert per_class[[0, 1, 3]].tolist() == [0.5, 0.75, 0.0] and math.isnan(per_class[2].item())
    assert all(torch.isfinite(v) for v in out.values())
    # cross-check against torchmetrics on the supported classes
    ref = MulticlassAccuracy(num_classes=4, average=None)(predict([0, 1, 1, 1, 1, 0, 2], 4), target)
    assert torch.allclose(per_class[[0, 1, 3]], ref[[0, 1, 3]])


def test_split_with_classes_but_no_test_samples_is_absent():
    metric = LongTailMetrics(num_classes=3, class_counts=[500, 50, 5])
    metric.update(predict([0, 1], 3), torch.tensor([0, 1]))  # few-shot class 2 never appears in the test data
    out = metric.compute()
    assert {"acc_many", "acc_medium"} <= set(out) and "acc_few" not in out


def test_ece_and_nll_hand_example():
    metric = LongTailMetrics(num_classes=2, class_counts=[200, 5])
    # (confidence, predicted class, true class): 0.9 right, 0.9 wrong, 0.7 right
    logits = torch.stack([conf_logits(0.9, 0), conf_logits(0.9, 0), conf_logits(0.7, 1)])
    target = torch.tensor([0, 1, 1])
    metric.update(logits, target)
    out = metric.compute()
    # bin (13/15, 14/15]: 2 samples, acc .5, conf .9; bin (10/15, 11/15]: 1 sample, acc 1, conf .7
    assert out["ece"].item() == pytest.approx((2 * 0.4 + 1 * 0.3) / 3, rel=1e-5)
    assert out["nll"].item() == pytest.approx(-(math.log(0.9) + math.log(0.1) + math.log(0.7)) / 3, rel=1e-5)
    # per split by true class: many = sample 1 (|1 - .9|), few = samples 2 and 3 (|0 - .9| and |1 - .7|)
    assert out["ece_many"].item() == pytest.approx(0.1, rel=1e-4)
    assert out["ece_few"].item() == pytest.approx((0.9 + 0.3) / 2, rel=1e-5)
    ref = MulticlassCalibrationError(num_classes=2, n_bins=15, norm="l1")(logits.softmax(-1), target)
    assert out["ece"].item() == pytest.approx(ref.item(), rel=1e-5)


def test_ece_matches_torchmetrics_on_random_data():
    torch.manual_seed(0)
    logits, target = 3 * torch.randn(200, 5), torch.randint(0, 5, (200,))
    metric = LongTailMetrics(num_classes=5)
    metric.update(logits, target)
    ref = MulticlassCalibrationError(num_classes=5, n_bins=15, norm="l1")(logits.softmax(-1), target)
    assert metric.compute()["ece"].item() == pytest.approx(ref.item(), rel=1e-4)


def test_without_class_counts_only_overall_keys_then_set_later():
    metric = LongTailMetrics(num_classes=3)
    metric.update(predict([0, 1, 2], 3), torch.tensor([0, 1, 2]))
    assert set(metric.compute()) == {"acc", "ece", "nll", "count"}
    metric.set_class_counts(torch.tensor([500, 50, 5]))
    assert {"acc_many", "acc_medium", "acc_few"} <= set(metric.compute())
    assert "class_counts" not in metric.state_dict()  # non-persistent buffer
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        metric.set_class_counts([1, 2])


@pytest.mark.filterwarnings("ignore:The ``compute`` method")
def test_no_samples_and_bad_logits():
    metric = LongTailMetrics(num_classes=3, class_counts=[500, 50, 5])
    assert metric.compute() == {"count": 0}
    with pytest.raises(ValueError, match=r"\[B, 3\]"):
        metric.update(torch.zeros(2, 4), torch.tensor([0, 1]))


def test_halves_merged_equal_one_metric_on_everything():
    torch.manual_seed(1)
    counts = [300, 120, 80, 40, 10, 3]
    logits, target = torch.randn(64, 6), torch.randint(0, 6, (64,))
    full = LongTailMetrics(num_classes=6, class_counts=counts)
    full.update(logits, target)
    a, b = LongTailMetrics(6, class_counts=counts), LongTailMetrics(6, class_counts=counts)
    a.update(logits[:40], target[:40])
    b.update(logits[40:], target[40:].to(torch.int32))  # any integer dtype is accepted
    # simulate the DDP "sum" reduction by hand ...
    summed = LongTailMetrics(6, class_counts=counts)
    for name in summed._defaults:
        setattr(summed, name, getattr(a, name) + getattr(b, name))
    summed._update_count = 1
    # ... and with torchmetrics' own merge
    a.merge_state(b)
    expected = full.compute()
    assert expected["count"].item() == 64
    for merged in (summed.compute(), a.compute()):
        assert set(merged) == set(expected)
        for key, value in expected.items():
            assert torch.allclose(merged[key].float(), value.float(), atol=1e-6), key


@pytest.mark.filterwarnings("ignore:The ``compute`` method")
def test_reset_and_bf16_logits():
    metric = LongTailMetrics(num_classes=3, class_counts=[500, 50, 5])
    metric.update(predict([0, 1, 2], 3).to(torch.bfloat16), torch.tensor([0, 1, 2]))
    out = metric.compute()
    assert out["acc"].item() == 1.0 and out["count"].item() == 3
    metric.reset()
    assert metric.compute() == {"count": 0}
    assert metric.class_counts.tolist() == [500, 50, 5]  # reset keeps the class counts


def test_reliability_bins_sum_to_samples():
    m = LongTailMetrics(num_classes=3, class_counts=[200, 50, 5], n_bins=5)
    logits = torch.tensor([[4.0, 0.0, 0.0], [0.0, 0.1, 0.0], [0.0, 0.0, 3.0], [2.0, 0.0, 0.0]])
    m.update(logits, torch.tensor([0, 2, 2, 1]))
    rel = m.reliability()
    assert sum(rel["count"]) == 4 and len(rel["accuracy"]) == 5
    top = max(range(5), key=lambda b: rel["confidence"][b])
    assert rel["accuracy"][top] == 1.0  # the two most confident predictions (0.96, 0.91) are right
    assert torch.equal(m.synced_per_class_accuracy().isnan(), m.per_class_accuracy().isnan())


def test_wandb_report_counts_the_confusion_matrix_from_the_test_step_outputs():
    """No second forward pass: the callback counts what test_step returns; the pairs rebuild each sample."""
    from types import SimpleNamespace

    from ecl_lightning.callbacks import WandbTestReport, confusion_pairs

    report = WandbTestReport()
    report._confusion = torch.zeros(3, 3, dtype=torch.long)
    trainer = SimpleNamespace(loggers=[])
    batches = [(torch.tensor([0, 1, 2, 2]), torch.tensor([0, 2, 2, 1])), (torch.tensor([1]), torch.tensor([1]))]
    for target, preds in batches:
        report.on_test_batch_end(trainer, None, {"preds": preds, "target": target}, None, 0)
    expected = torch.tensor([[1, 0, 0], [0, 1, 1], [0, 1, 1]])
    assert torch.equal(report._confusion, expected)
    y_true, preds = confusion_pairs(expected)
    assert sorted(zip(y_true, preds, strict=True)) == [(0, 0), (1, 1), (1, 2), (2, 1), (2, 2)]
