"""`python -m ecl_lightning.export ckpt_path=... format=torchscript|onnx [heads=label] [output=model.pt]`

Writes a self-contained model: float images in [0, 1] (B, C, H, W) at the training size in, the chosen heads' logits
(B, num_classes) out, with the normalisation inside. The class names and the input it expects are stored in the file
(TorchScript extra file `ecl_export.json`, ONNX metadata `ecl_export`) and beside it in `<output>.json`. With `check`
(the default) the export is reloaded and compared with the checkpoint on a batch.
"""

from __future__ import annotations

import importlib
import json
import logging
import warnings
import zipfile
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig

from ecl_lightning.cli import check_output_file
from ecl_lightning.config import ConfigError
from ecl_lightning.inference import LoadedModel, NormalisedModel, load_for_inference

log = logging.getLogger("ecl_lightning")

FORMATS = {"torchscript": ".pt", "onnx": ".onnx"}
METADATA_KEY = "ecl_export"


def export_metadata(loaded: LoadedModel) -> dict:
    """What a user of the exported file needs: class names, input layout, preprocessing, output."""
    spec = loaded.spec
    return {
        "class_names": loaded.class_names,
        "heads": str(loaded.heads),
        "input": {
            "name": "images",
            "shape": ["batch", spec.channels, spec.image_size, spec.image_size],
            "dtype": "float32",
            "range": [0.0, 1.0],
            "preprocess": (
                f"decode as {'grey (L)' if spec.channels == 1 else 'RGB'}, resize the shorter side to "
                f"{spec.resize_size}, centre-crop {spec.image_size}, scale to [0, 1]; the normalisation "
                "(mean, std) is inside the model"
            ),
            **spec.to_dict(),
        },
        "output": {"name": "logits", "shape": ["batch", len(loaded.class_names)], "softmax": "not applied"},
        "source_checkpoint": str(loaded.ckpt_path),
    }


def example_batch(loaded: LoadedModel, n: int = 4, seed: int = 0) -> torch.Tensor:
    spec = loaded.spec
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, spec.channels, spec.image_size, spec.image_size, generator=generator)


def export_torchscript(wrapper: torch.nn.Module, example: torch.Tensor, path: Path, metadata: dict) -> None:
    with torch.no_grad(), warnings.catch_warnings():
        # The loop over the K experts is unrolled on purpose (K is fixed); the batch size stays free.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        traced = torch.jit.trace(wrapper, example, check_trace=False)
    torch.jit.save(traced, str(path), _extra_files={f"{METADATA_KEY}.json": json.dumps(metadata)})


def require_onnx(check: bool) -> None:
    """format=onnx needs onnx to write the file and, with `check`, onnxruntime to reload it: say so before work."""
    for name, needed_for in (("onnx", "format=onnx"), ("onnxruntime", "format=onnx with check=true")):
        if name == "onnxruntime" and not check:
            continue
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise ConfigError(
                f'{needed_for} needs the {name} package ({err}): pip install "ecl_lightning[onnx]"'
                + (" (or check=false to skip reloading the export)" if name == "onnxruntime" else "")
            ) from None


def export_onnx(wrapper: torch.nn.Module, example: torch.Tensor, path: Path, metadata: dict) -> None:
    require_onnx(check=False)
    import onnx

    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # the legacy exporter: kept for no onnxscript
        torch.onnx.export(  # the TorchScript-based exporter: no onnxscript needed, dynamic batch size
            wrapper,
            (example,),
            str(path),
            dynamo=False,
            input_names=["images"],
            output_names=["logits"],
            dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=17,
        )
    model = onnx.load(str(path))
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(metadata)
    onnx.save(model, str(path))


def load_export(path: str | Path) -> tuple[object, dict]:
    """(callable: float tensor -> logits tensor, metadata) of an exported file, TorchScript or ONNX."""
    path = Path(path)
    if not zipfile.is_zipfile(path):  # TorchScript files are zip archives, ONNX files protobuf
        require_onnx(check=True)
        import onnx
        import onnxruntime

        metadata = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

        def run(images: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(session.run(["logits"], {"images": images.numpy()})[0])

        return run, json.loads(metadata[METADATA_KEY])
    extra = {f"{METADATA_KEY}.json": ""}
    module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return module, json.loads(extra[f"{METADATA_KEY}.json"])


def output_path(output: str, fmt: str) -> Path:
    """`output=`, with the format's suffix added when it has none."""
    path = Path(output).expanduser()
    return path if path.suffix else path.with_name(path.name + FORMATS[fmt])


def export(cfg: DictConfig) -> Path:
    """Write the export (and `<output>.json`); with `cfg.check`, reload it and compare with the checkpoint."""
    if cfg.format not in FORMATS:
        raise ConfigError(f"format must be one of {sorted(FORMATS)}, got {cfg.format!r}")
    if cfg.format == "onnx":
        require_onnx(bool(cfg.check))
    if cfg.output:
        check_output_file(output_path(cfg.output, cfg.format))  # before the checkpoint is read
    loaded = load_for_inference(cfg)
    output = output_path(cfg.output or loaded.ckpt_path.stem, cfg.format)
    check_output_file(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    wrapper = NormalisedModel(loaded.model, loaded.spec).eval()
    metadata = export_metadata(loaded)
    example = example_batch(loaded)
    (export_onnx if cfg.format == "onnx" else export_torchscript)(wrapper, example, output, metadata)
    output.with_name(output.name + ".json").write_text(json.dumps(metadata, indent=2) + "\n")
    log.info(
        "Exported %s (heads=%s, %d classes, input %s) -> %s",
        cfg.format, loaded.heads, len(loaded.class_names), metadata["input"]["shape"], output,
    )  # fmt: skip
    if cfg.check:
        difference = check_export(output, wrapper, example_batch(loaded, n=8, seed=1))
        log.info("Reloaded %s: max |logit difference| to the checkpoint on a batch of 8: %.2e", output, difference)
    return output


def check_export(path: Path, wrapper: torch.nn.Module, images: torch.Tensor, atol: float = 1e-4) -> float:
    """Max absolute difference between the export's logits and the checkpoint's; raise above `atol`."""
    run, _ = load_export(path)
    with torch.no_grad():
        expected, got = wrapper(images), run(images)
    difference = float((expected - got).abs().max())
    if difference > atol:
        raise RuntimeError(f"{path}: the export's logits differ from the checkpoint's by {difference:.2e} (> {atol})")
    return difference


@hydra.main(version_base="1.3", config_path="pkg://ecl_lightning.conf", config_name="export")
def main(cfg: DictConfig) -> None:
    from ecl_lightning.cli import user_errors_as_messages

    with user_errors_as_messages():  # a wrong format, output or checkpoint, a missing extra: message and exit 2
        export(cfg)


if __name__ == "__main__":
    main()
