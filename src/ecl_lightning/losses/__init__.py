"""ECL losses: pure tensor functions (see docs/method.md for each formula)."""

from ecl_lightning.losses.classification import (
    HCM_MASKS,
    balanced_softmax_loss,
    hard_category_mining_loss,
    hcm_keep_mask,
    hcm_logits,
)
from ecl_lightning.losses.contrastive import moco_loss, supcon_loss
from ecl_lightning.losses.distillation import (
    KD_TARGETS,
    REWEIGHT_RULES,
    class_ema_update,
    class_ema_weights,
    distillation_weights,
    ensemble_teacher,
    kd_loss,
    normalize_weights,
    online_teachers,
    peer_teachers,
)
from ecl_lightning.losses.experts import (
    EXPERT_REDUCTIONS,
    LABEL_LOSSES,
    drw_class_weights,
    expert_label_biases,
    expert_label_loss,
    inverse_prior,
    ldam_margins,
    mixup_batch,
    ride_diversity_loss,
    ride_diversity_temperature,
)
from ecl_lightning.losses.feature import FEAT_DISTANCES, FEAT_TARGETS, feature_distillation_loss
from ecl_lightning.losses.schedules import linear_ramp

__all__ = [
    "EXPERT_REDUCTIONS",
    "LABEL_LOSSES",
    "drw_class_weights",
    "expert_label_biases",
    "expert_label_loss",
    "inverse_prior",
    "ldam_margins",
    "mixup_batch",
    "ride_diversity_loss",
    "ride_diversity_temperature",
    "FEAT_DISTANCES",
    "FEAT_TARGETS",
    "HCM_MASKS",
    "KD_TARGETS",
    "REWEIGHT_RULES",
    "balanced_softmax_loss",
    "class_ema_update",
    "class_ema_weights",
    "distillation_weights",
    "ensemble_teacher",
    "feature_distillation_loss",
    "hard_category_mining_loss",
    "hcm_keep_mask",
    "hcm_logits",
    "kd_loss",
    "linear_ramp",
    "moco_loss",
    "normalize_weights",
    "online_teachers",
    "peer_teachers",
    "supcon_loss",
]
