import math

import pytest
import torch

from ecl_lightning.models import CosineHead, LinearHead, build_head


def test_cosine_head_matches_hand_computation():
    head = CosineHead(2, 2, scale=16.0)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [1.0, 1.0]]))
    x = torch.tensor([[3.0, 4.0]])
    # cos with (1, 0): 3/5; with (1, 1): 7 / (5 * sqrt(2))
    expected = 16.0 * torch.tensor([[0.6, 7.0 / (5.0 * math.sqrt(2.0))]])
    torch.testing.assert_close(head(x), expected)


def test_cosine_head_scale_respected():
    x = torch.randn(4, 8)
    a, b = CosineHead(8, 5, scale=16.0), CosineHead(8, 5, scale=32.0)
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(b(x), 2 * a(x))
    assert a(x).abs().max() <= 16.0 + 1e-5


def test_build_head():
    assert isinstance(build_head("linear", 8, 3), LinearHead)
    cos = build_head("cosine", 8, 3, scale=32.0)
    assert isinstance(cos, CosineHead) and cos.scale == 32.0
    assert build_head("linear", 8, 3)(torch.randn(2, 8)).shape == (2, 3)
    with pytest.raises(ValueError, match="cosine"):
        build_head("arcface", 8, 3)
