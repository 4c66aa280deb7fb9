"""The split-file DataModules through the lead's entry point: compose `data=<name>`, build, fast_dev_run."""

import json

import pytest
from omegaconf import OmegaConf

from ecl_lightning.data import DatasetFormatError
from ecl_lightning.train import build, train
from helpers import compose_cfg

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def overrides(dataset: str, tree) -> list[str]:
    return [
        f"data={dataset}",
        f"data.split_dir={tree / 'splits'}",
        f"data.image_root={tree / 'images'}",
        "data.num_classes=5",
        "data.image_size=32",
        "data.resize_size=36",
        "data.batch_size=4",
        "data.eval_batch_size=8",
        "data.num_workers=0",
        "data.persistent_workers=false",
        "model.net.backbone=resnet32",
        "model.loss.queue_size=16",
        "debug=fdr",
        "trainer.enable_progress_bar=false",
    ]


@pytest.mark.parametrize("dataset", ["imagenet_lt", "places_lt", "inat2018"])
def test_fast_dev_run(dataset, request, tmp_path):
    tree = request.getfixturevalue(f"{dataset}_tree")
    cfg = compose_cfg(overrides(dataset, tree), tmp_path)
    metrics = train(cfg)
    assert metrics["test/count"] == 8  # fast_dev_run: one test batch of eval_batch_size
    subset = json.loads((tmp_path / "data_subset.json").read_text())
    assert subset["dataset"] == dataset and subset["class_counts"] == [12, 8, 5, 3, 2]
    if dataset == "inat2018":  # no val split: validation off
        assert OmegaConf.load(tmp_path / "config.yaml").trainer.limit_val_batches == 0


def test_configs_compose_with_the_spec_defaults():
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="ecl_lightning.conf", version_base="1.3"):
        cfgs = {d: compose("train", overrides=[f"data={d}"]).data for d in ("imagenet_lt", "places_lt", "inat2018")}
    assert cfgs["imagenet_lt"].num_classes == 1000 and cfgs["places_lt"].num_classes == 365
    assert cfgs["inat2018"].num_classes == 8142 and cfgs["inat2018"].split_format == "auto"
    for cfg in cfgs.values():
        assert cfg.image_size == 224 and cfg.resize_size == 256 and cfg.verify_images is False


def test_bad_split_line_fails_in_build(imagenet_lt_tree, tmp_path):
    splits = tmp_path / "splits"
    splits.mkdir()
    for s in ("train", "val", "test"):
        text = (imagenet_lt_tree / "splits" / f"ImageNet_LT_{s}.txt").read_text()
        (splits / f"ImageNet_LT_{s}.txt").write_text(text + ("missing/file.JPEG 0\n" if s == "train" else ""))
    cfg = compose_cfg(overrides("imagenet_lt", imagenet_lt_tree) + [f"data.split_dir={splits}"], tmp_path / "run")
    with pytest.raises(DatasetFormatError, match=r"ImageNet_LT_train\.txt:31: image file not found"):
        build(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()
