import math

import pytest
import torch

from ecl_lightning.losses import (
    class_ema_update,
    class_ema_weights,
    distillation_weights,
    ensemble_teacher,
    kd_loss,
    normalize_weights,
)

UNIFORM2 = torch.log(torch.tensor([0.5, 0.5]))


def lg(*xs):
    """Logits whose softmax is proportional to xs."""
    return torch.log(torch.tensor(xs, dtype=torch.float32))


def test_ensemble_teacher_is_mean_of_the_other_experts():
    logits = torch.stack([lg(1, 3), lg(1, 1), lg(3, 1)])[:, None, :]  # [K=3, B=1, C=2]: .25/.75, .5/.5, .75/.25
    teacher = ensemble_teacher(logits, UNIFORM2)
    expected = torch.tensor([[[0.625, 0.375]], [[0.5, 0.5]], [[0.375, 0.625]]])
    assert teacher.shape == (3, 1, 2)
    assert torch.allclose(teacher, expected, atol=1e-6)


def test_ensemble_teacher_uses_prior_and_temperature():
    logits = torch.stack([lg(1, 1), lg(1, 3)])[:, None, :]
    prior = torch.log(torch.tensor([0.25, 0.75]))
    # expert 1 with prior: proportional to (1*.25, 3*.75) -> (0.1, 0.9); it is expert 0's teacher
    assert torch.allclose(ensemble_teacher(logits, prior)[0, 0], torch.tensor([0.1, 0.9]), atol=1e-6)
    # T = 2: softmax(log(0.25, 2.25) / 2) = softmax(log(0.5, 1.5)) = (0.25, 0.75)
    assert torch.allclose(ensemble_teacher(logits, prior, temperature=2.0)[0, 0], torch.tensor([0.25, 0.75]))


def test_ensemble_teacher_detach_and_errors():
    logits = torch.randn(2, 4, 3, requires_grad=True)
    assert not ensemble_teacher(logits, torch.zeros(3)).requires_grad
    assert ensemble_teacher(logits, torch.zeros(3), detach=False).requires_grad
    with pytest.raises(ValueError, match="K >= 2"):
        ensemble_teacher(logits[:1], torch.zeros(3))


def test_distillation_weights_rules():
    label = torch.stack([lg(1, 3), lg(99, 1)])  # p[y=1] = 0.75, 0.01
    dist = torch.stack([lg(1, 1), lg(1, 1)])  # q[y=1] = 0.5
    target = torch.tensor([1, 1])
    ratio = distillation_weights(label, dist, target, UNIFORM2)
    assert torch.allclose(ratio, torch.tensor([1.5, 0.1]))  # 0.02 clamped up to w_min
    sq = distillation_weights(label, dist, target, UNIFORM2, gamma=2.0, w_max=2.0, w_min=0.0)
    assert torch.allclose(sq, torch.tensor([2.0, 0.0004]), atol=1e-6)  # 2.25 clamped to w_max
    diff = distillation_weights(label, dist, target, UNIFORM2, rule="difference")
    assert torch.allclose(diff, torch.tensor([1.25, 1.0]))
    assert torch.equal(distillation_weights(label, dist, target, UNIFORM2, rule="none"), torch.ones(2))


def test_distillation_weights_prior_temperature_and_eps_guard():
    prior = torch.log(torch.tensor([0.25, 0.75]))
    label, target = torch.zeros(1, 2), torch.tensor([1])  # p = prior = (0.25, 0.75)
    dist = (2 * lg(3, 1) - prior)[None]  # (s + log_prior) / 2 = log(3, 1): q[1] = 0.25
    w = distillation_weights(label, dist, target, prior, temperature=2.0)
    assert w.item() == pytest.approx(3.0, rel=1e-5)
    huge = distillation_weights(lg(1, 3)[None], torch.tensor([[0.0, -1e4]]), target, UNIFORM2)
    assert huge.item() == pytest.approx(10.0)  # q[y] ~ 0: guarded, then clamped to w_max


def test_distillation_weights_are_detached_and_bad_rule_raises():
    label, dist = torch.randn(3, 2, requires_grad=True), torch.randn(3, 2, requires_grad=True)
    for rule in ("ratio", "difference", "none"):
        assert not distillation_weights(label, dist, torch.tensor([0, 1, 0]), UNIFORM2, rule=rule).requires_grad
    with pytest.raises(ValueError, match="ratio.*difference.*none"):
        distillation_weights(label, dist, torch.tensor([0, 1, 0]), UNIFORM2, rule="class_ema")


def test_class_ema_update_hand_example_and_absent_class_unchanged():
    ema = torch.tensor([1.0, 1.0, 0.7])
    lp = torch.zeros(3)
    label = torch.stack([lg(2, 1, 1), lg(1, 1, 2), lg(1, 2, 1)])  # p[y] = .5, .25, .5
    dist = torch.stack([lg(1, 1, 2)] * 3)  # q[y] = .25 each
    target = torch.tensor([0, 0, 1])  # class 2 absent
    new = class_ema_update(ema, label, dist, target, lp, momentum=0.9)
    # class 0: mean p .375 / mean q .25 = 1.5; class 1: .5 / .25 = 2
    assert torch.allclose(new, torch.tensor([0.9 + 0.15, 0.9 + 0.2, 0.7]))
    assert torch.equal(ema, torch.tensor([1.0, 1.0, 0.7]))  # input not mutated
    assert not class_ema_update(ema, label.requires_grad_(), dist, target, lp).requires_grad


def test_class_ema_weights_and_normalize():
    ema = torch.tensor([0.05, 2.0, 20.0])
    w = class_ema_weights(ema, torch.tensor([0, 1, 2, 1]))
    assert torch.allclose(w, torch.tensor([0.1, 2.0, 10.0, 2.0]))
    assert torch.allclose(normalize_weights(torch.tensor([1.0, 2.0, 3.0])), torch.tensor([0.5, 1.0, 1.5]))
    got = normalize_weights(torch.tensor([1.0, 2.0, 3.0]), mean=torch.tensor(3.0))
    assert torch.allclose(got, torch.tensor([1 / 3, 2 / 3, 1.0]))


def test_kd_loss_hand_computation_with_temperature_and_weights():
    teacher = torch.tensor([[0.5, 0.5], [0.9, 0.1]])
    student = torch.stack([lg(1, 3), lg(1, 1)])  # q = (.25, .75), (.5, .5)
    kl0 = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    kl1 = 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)
    assert kd_loss(student, teacher, UNIFORM2).item() == pytest.approx((kl0 + kl1) / 2, rel=1e-5)
    # T = 2 with logits doubled gives the same q, so the loss is T^2 times larger
    assert kd_loss(2 * student, teacher, UNIFORM2, temperature=2.0).item() == pytest.approx(
        4 * (kl0 + kl1) / 2, rel=1e-5
    )
    w = torch.tensor([2.0, 0.5])
    got = kd_loss(student, teacher, UNIFORM2, weights=w).item()
    assert got == pytest.approx((2 * kl0 + 0.5 * kl1) / 2, rel=1e-5)


def test_kd_loss_zero_when_student_equals_teacher_and_zero_teacher_entries():
    prior = torch.log(torch.tensor([0.2, 0.3, 0.5]))
    student = torch.randn(4, 3, requires_grad=True)
    teacher = torch.softmax(student.detach() + prior, dim=-1)
    loss = kd_loss(student, teacher, prior)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    loss.backward()
    assert student.grad.abs().max() < 1e-6
    one_hot = torch.tensor([[1.0, 0.0, 0.0]])
    assert torch.isfinite(kd_loss(torch.zeros(1, 3), one_hot, torch.zeros(3)))


def test_kd_gradients_reach_teacher_only_when_not_detached():
    label = torch.randn(3, 4, 5, requires_grad=True)
    student = torch.randn(4, 5, requires_grad=True)
    lp = torch.zeros(5)
    kd_loss(student, ensemble_teacher(label, lp)[0], lp).backward()
    assert label.grad is None and student.grad is not None
    kd_loss(student, ensemble_teacher(label, lp, detach=False)[0], lp).backward()
    assert label.grad[1:].abs().sum() > 0  # the other experts (expert 0's teacher) receive gradient
    assert label.grad[0].abs().sum() == 0


def test_kd_loss_float32_under_bf16():
    s = torch.tensor([[50.0, -50.0]], dtype=torch.bfloat16)
    t = torch.tensor([[0.5, 0.5]], dtype=torch.bfloat16)
    loss = kd_loss(s, t, UNIFORM2)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
