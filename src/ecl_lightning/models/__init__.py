"""Models: backbone trunks, heads, the multi-expert network, and the MoCo momentum encoder and queue."""

from .backbones import BACKBONES, Trunk, build_trunk
from .experts import MultiExpertNet
from .heads import CosineHead, LinearHead, build_head
from .moco import KeyQueue, MomentumEncoder, concat_all_gather

__all__ = [
    "BACKBONES",
    "CosineHead",
    "KeyQueue",
    "LinearHead",
    "MomentumEncoder",
    "MultiExpertNet",
    "Trunk",
    "build_head",
    "build_trunk",
    "concat_all_gather",
]
