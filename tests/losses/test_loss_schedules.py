import pytest

from ecl_lightning.losses import linear_ramp


@pytest.mark.parametrize(
    ("epoch", "warmup", "expected"),
    [(0, 5, 0.0), (2.5, 5, 0.5), (5, 5, 1.0), (40, 5, 1.0), (0, 0, 1.0), (3, -1, 1.0)],
)
def test_linear_ramp(epoch, warmup, expected):
    assert linear_ramp(epoch, warmup) == pytest.approx(expected)
