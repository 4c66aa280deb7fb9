"""Post-hoc prior correction: closed form on a uniform model, EM recovering a known prior."""

from __future__ import annotations

import torch

from ecl_lightning.posthoc.prior import em_prior, prior_correction


def test_a_uniform_model_under_a_known_prior_predicts_the_prior():
    prior = torch.tensor([0.6, 0.3, 0.1])
    logits = torch.full((5, 3), 2.0)  # a model that knows nothing: uniform balanced posterior
    probs = prior_correction(logits, prior, tau=1.0).softmax(-1)
    assert torch.allclose(probs, prior.expand(5, 3), atol=1e-6)
    # tau = 0.5: p proportional to sqrt(prior)
    half = prior_correction(logits, prior, tau=0.5).softmax(-1)[0]
    assert torch.allclose(half, prior.sqrt() / prior.sqrt().sum(), atol=1e-6)


def test_em_recovers_the_prior_from_balanced_posteriors():
    # Two classes with likelihood ratio 3 : 1 on two kinds of input; balanced posteriors (0.75, 0.25) / (0.25, 0.75).
    # Test prior (0.8, 0.2): inputs of kind a occur with 0.8 * 0.75 + 0.2 * 0.25 = 0.65.
    a, b = torch.tensor([0.75, 0.25]).log(), torch.tensor([0.25, 0.75]).log()
    logits = torch.cat([a.expand(65, 2), b.expand(35, 2)])
    prior = em_prior(logits, max_iter=2000, tol=1e-10)
    assert torch.allclose(prior, torch.tensor([0.8, 0.2]), atol=1e-3)
    assert torch.allclose(em_prior(torch.zeros(4, 3)), torch.full((3,), 1 / 3))  # nothing to learn: stays uniform
