"""Post-hoc correction of balanced logits for a test class prior: known (BalPoE) or estimated by EM (Saerens 2002)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def prior_correction(logits: Tensor, test_prior: Tensor, tau: float = 1.0) -> Tensor:
    """z + tau * log(pi_test): balanced logits [N, C] adjusted to a test prior [C] (BalPoE's logit adjustment)."""
    return logits + tau * test_prior.clamp_min(1e-12).log().to(logits)


def em_prior(logits: Tensor, train_prior: Tensor | None = None, max_iter: int = 100, tol: float = 1e-6) -> Tensor:
    """Estimate the test prior [C] from unlabeled logits [N, C] by EM (Saerens, Latinne & Decaestecker 2002).

    The model's posteriors p(y|x) assume `train_prior` (uniform for balanced logits). Each step re-weights them by
    pi / train_prior, renormalises, and sets pi to their mean, until pi moves less than `tol` (L1).
    """
    log_p = F.log_softmax(logits.double(), dim=-1)
    c = logits.shape[-1]
    log_train = (
        torch.full((c,), -torch.log(torch.tensor(float(c))).item(), dtype=torch.float64)
        if train_prior is None
        else train_prior.double().clamp_min(1e-12).log()
    )
    prior = log_train.exp()
    for _ in range(max_iter):
        post = F.softmax(log_p + prior.clamp_min(1e-300).log() - log_train, dim=-1)
        new = post.mean(0)
        done = (new - prior).abs().sum() < tol
        prior = new
        if done:
            break
    return prior.float()
