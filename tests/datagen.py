"""Write tiny datasets in the real on-disk formats (IDX gz, CIFAR pickle batches) for tests.

Each image carries a class-dependent signal (a bright patch whose position, and for CIFAR colour, depends on
the class) plus noise, so a tiny model can learn something. Classes are interleaved in file order.
"""

from __future__ import annotations

import gzip as gzip_module
import io
import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np

FMNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def _labels(per_class: int | Sequence[int], num_classes: int, rng: np.random.Generator) -> np.ndarray:
    counts = [per_class] * num_classes if isinstance(per_class, int) else list(per_class)
    labels = np.repeat(np.arange(len(counts)), counts)
    return labels[rng.permutation(len(labels))].astype(np.uint8 if len(counts) <= 256 else np.int64)


def write_idx_file(path: str | Path, array: np.ndarray, gzip: bool = True) -> Path:
    """Write a uint8 array as an IDX file (magic 0x08, ndim; big-endian int32 dims), gzipped if asked."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with (gzip_module.open if gzip else open)(path, "wb") as f:
        f.write(header + array.tobytes())
    return path


def grey_images(labels: np.ndarray, rng: np.random.Generator, size: int = 28) -> np.ndarray:
    """(N, size, size) uint8: noise plus a bright 6x6 patch at a class-specific place (10 places)."""
    images = rng.integers(0, 60, size=(len(labels), size, size), dtype=np.uint8)
    for i, c in enumerate(labels):
        y, x = 2 + 12 * (int(c) // 5 % 2), 1 + 5 * (int(c) % 5)
        images[i, y : y + 6, x : x + 6] = 220
    return images


def write_idx_dataset(
    root: str | Path,
    n_train_per_class: int | Sequence[int],
    n_test_per_class: int | Sequence[int],
    gzip: bool = True,
    seed: int = 0,
) -> Path:
    """Write the four Fashion-MNIST IDX files (10 classes unless a train list says otherwise) into root."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    num_classes = 10 if isinstance(n_train_per_class, int) else len(n_train_per_class)
    suffix = ".gz" if gzip else ""
    for split, per_class in (("train", n_train_per_class), ("test", n_test_per_class)):
        labels = _labels(per_class, num_classes, rng)
        write_idx_file(root / (FMNIST_FILES[f"{split}_images"] + suffix), grey_images(labels, rng), gzip)
        write_idx_file(root / (FMNIST_FILES[f"{split}_labels"] + suffix), labels, gzip)
    return root


def colour_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(N, 3072) uint8 rows in CIFAR's layout (R plane, G plane, B plane): noise + a coloured 8x8 patch."""
    palette = np.array([[230, 40, 40], [40, 230, 40], [40, 40, 230], [230, 230, 40], [230, 40, 230], [40, 230, 230]])
    images = rng.integers(0, 80, size=(len(labels), 3, 32, 32), dtype=np.uint8)
    for i, c in enumerate(labels):
        c = int(c)
        cell = c % 16
        y, x = 8 * (cell // 4), 8 * (cell % 4)
        images[i, :, y : y + 8, x : x + 8] = palette[(c // 16) % len(palette)][:, None, None]
    return images.reshape(len(labels), -1)


def _dump(path: Path, entry: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(entry, f, protocol=2)


def write_cifar_dataset(
    root: str | Path,
    num_classes: int,
    n_train_per_class: int | Sequence[int],
    n_test_per_class: int,
    seed: int = 0,
) -> Path:
    """Write CIFAR-10 (5 train batches, test_batch) or CIFAR-100 (train, test) in torchvision's layout."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    train_labels = _labels(n_train_per_class, num_classes, rng).astype(np.int64)
    test_labels = _labels(n_test_per_class, num_classes, rng).astype(np.int64)
    train_data, test_data = colour_images(train_labels, rng), colour_images(test_labels, rng)

    def entry(data: np.ndarray, labels: np.ndarray, batch_label: str, key: bytes) -> dict:
        out = {
            b"batch_label": batch_label.encode(),
            key: labels.tolist(),
            b"data": data,
            b"filenames": [f"img_{i:05d}.png".encode() for i in range(len(labels))],
        }
        if key == b"fine_labels":
            out[b"coarse_labels"] = (labels // 5).tolist()
        return out

    if num_classes == 10:
        folder = root / "cifar-10-batches-py"
        chunks = np.array_split(np.arange(len(train_labels)), 5)
        for i, idx in enumerate(chunks, start=1):
            _dump(
                folder / f"data_batch_{i}",
                entry(train_data[idx], train_labels[idx], f"batch {i} of 5", b"labels"),
            )
        _dump(folder / "test_batch", entry(test_data, test_labels, "testing batch 1 of 1", b"labels"))
        _dump(folder / "batches.meta", {b"label_names": [f"class{c}".encode() for c in range(10)]})
    else:
        folder = root / "cifar-100-python"
        _dump(folder / "train", entry(train_data, train_labels, "training batch 1 of 1", b"fine_labels"))
        _dump(folder / "test", entry(test_data, test_labels, "testing batch 1 of 1", b"fine_labels"))
        _dump(folder / "meta", {b"fine_label_names": [f"class{c}".encode() for c in range(num_classes)]})
    return root


# ---- split-file benchmarks (ImageNet-LT, Places-LT, iNaturalist 2018) ---------------------------------------------
SPLIT_TREE_TRAIN = [12, 8, 5, 3, 2]  # train images per class of the conftest split-tree fixtures
PLACES_CLASSES = ("abbey", "airfield", "alley", "apartment_building/outdoor", "bakery/shop", "beach", "canyon")
INAT_SUPERCATEGORIES = ("Plantae", "Insecta", "Aves", "Fungi")
SPLIT_TREE_NAMES = {
    "imagenet_lt": {s: f"ImageNet_LT_{s}.txt" for s in ("train", "val", "test")},
    "places_lt": {s: f"Places_LT_{s}.txt" for s in ("train", "val", "test")},
    "inat2018": {"train": "iNaturalist18_train.txt", "val": "iNaturalist18_val.txt"},
}


def write_jpeg(path: Path, label: int, rng: np.random.Generator, size: int = 40) -> None:
    """A small RGB JPEG: noise plus a class-coloured square at a class-specific place."""
    from PIL import Image

    palette = np.array([[230, 40, 40], [40, 230, 40], [40, 40, 230], [230, 230, 40], [230, 40, 230], [40, 230, 230]])
    pixels = rng.integers(0, 80, size=(size, size, 3), dtype=np.uint8)
    cell, half = label % 4, size // 2
    y, x = half * (cell // 2), half * (cell % 2)
    pixels[y : y + half, x : x + half] = palette[label % len(palette)]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format="JPEG", quality=90)


def natural_image(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """(height, width, 3) uint8 noise with the 1/f amplitude spectrum of natural photos and correlated channels; saved
    at 500x375, JPEG quality 90, about 120 KB, as ILSVRC-2012's photos (~110 KB on average: 140 GB / 1.28 M files)."""
    fy, fx = np.fft.fftfreq(height)[:, None], np.fft.rfftfreq(width)[None, :]
    f = np.sqrt(fx**2 + fy**2)
    f[0, 0] = 1.0
    mix = np.array([[1.0, 0.6, 0.4], [0.6, 1.0, 0.6], [0.4, 0.6, 1.0]])
    noise = np.einsum("ij,jhw->ihw", mix, rng.standard_normal((3, height, width)))
    img = np.fft.irfft2(np.fft.rfft2(noise) / f, s=(height, width))
    img = (img - img.mean((1, 2), keepdims=True)) / img.std((1, 2), keepdims=True)
    img = img * 55 + rng.uniform(90, 150, (3, 1, 1))
    return img.transpose(1, 2, 0).clip(0, 255).astype(np.uint8)


def _split_tree_paths(dataset: str, label: int, k: int, split: str) -> str:
    """The relative path of the k-th image of class `label` in the dataset's real directory layout."""
    if dataset == "imagenet_lt":
        wnid = f"n{1440764 + 17 * label:08d}"
        if split == "test":  # ImageNet-LT's test images come from ILSVRC-2012 val (sorted into class folders)
            return f"val/{wnid}/ILSVRC2012_val_{1000 * label + k + 1:08d}.JPEG"
        return f"train/{wnid}/{wnid}_{k + 1}.JPEG"
    if dataset == "places_lt":
        if split == "test":
            return f"val_256/Places365_val_{1000 * label + k + 1:08d}.jpg"
        name = PLACES_CLASSES[label % len(PLACES_CLASSES)] + ("" if label < len(PLACES_CLASSES) else f"_{label}")
        return f"data_256/{name[0]}/{name}/{k + 1:08d}.jpg"
    if dataset == "inat2018":
        import hashlib

        digest = hashlib.md5(f"{label}-{k}".encode()).hexdigest()
        return f"train_val2018/{INAT_SUPERCATEGORIES[label % len(INAT_SUPERCATEGORIES)]}/{label}/{digest}.jpg"
    raise ValueError(f"unknown dataset {dataset!r}")


def write_split_tree(
    root: str | Path,
    dataset: str,
    num_classes: int,
    per_class_train: Sequence[int],
    per_class_eval: int,
    size: int | tuple[int, int] = 40,
    seed: int = 0,
    natural: bool = False,
    quality: int = 90,
    distinct: int | None = None,
) -> Path:
    """Write JPEGs under root/images in the dataset's layout and its split files under root/splits.

    dataset: imagenet_lt | places_lt (train, val, test splits) | inat2018 (train, val; also train2018.json and
    val2018.json). Val images of ImageNet-LT / Places-LT / iNat come from the train folders, after the train ones.
    Lines are in a random order (classes interleaved). size: the side of the square test images, or (width,
    height) with natural=True: photo-like content (`natural_image`) saved at `quality`, for realistic file sizes;
    `distinct` photos, cycled, when given (a large tree written fast: each file still decodes as a photo does).
    """
    from PIL import Image

    if len(per_class_train) != num_classes:
        raise ValueError(f"per_class_train has {len(per_class_train)} entries, expected {num_classes}")
    root = Path(root)
    images, splits = root / "images", root / "splits"
    splits.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = SPLIT_TREE_NAMES[dataset]
    width, height = (size, size) if isinstance(size, int) else size
    if not natural and width != height:
        raise ValueError(f"the class-pattern images are square; got size {size} (use natural=True)")
    offsets = {"train": 0, "val": max(per_class_train), "test": 0}  # val images follow the train ones in a folder
    photos: list[bytes] = []  # with `distinct`: the photos written so far, reused in turn

    def photo(k: int) -> bytes:
        if distinct is not None and k >= distinct:
            return photos[k % distinct]
        buf = io.BytesIO()
        Image.fromarray(natural_image(rng, width, height)).save(buf, format="JPEG", quality=quality)
        photos.append(buf.getvalue())
        return photos[-1]

    written = 0
    for split, file_name in names.items():
        counts = per_class_train if split == "train" else [per_class_eval] * num_classes
        items = [
            (_split_tree_paths(dataset, c, offsets[split] + k, split), c)
            for c in range(num_classes)
            for k in range(counts[c])
        ]
        items = [items[i] for i in rng.permutation(len(items))]
        for rel, label in items:
            if natural:
                (images / rel).parent.mkdir(parents=True, exist_ok=True)
                (images / rel).write_bytes(photo(written))
                written += 1
            else:
                write_jpeg(images / rel, label, rng, size)
        (splits / file_name).write_text("".join(f"{rel} {label}\n" for rel, label in items))
        if dataset == "inat2018":
            _write_inat_json(
                splits / f"{split}2018.json", items, num_classes, (width, height), 0 if split == "train" else 100_000
            )
    return root


def _write_inat_json(
    path: Path, items: list[tuple[str, int]], num_classes: int, size: tuple[int, int], id_start: int
) -> None:
    """The official iNat 2018 json: images [{id, file_name, width, height}], annotations, categories."""
    import json

    images = [
        {"id": id_start + i, "file_name": rel, "width": size[0], "height": size[1]} for i, (rel, _) in enumerate(items)
    ]
    annotations = [{"id": i, "image_id": id_start + i, "category_id": label} for i, (_, label) in enumerate(items)]
    categories = [{"id": c, "name": f"species {c}", "supercategory": "Plantae"} for c in range(num_classes)]
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))


# A user's own data: class folders of mixed formats and sizes, some images in nested folders.
IMAGE_FOLDER_CLASSES = ("cat", "dog", "fox", "owl")
IMAGE_FOLDER_FORMATS = ("PNG", "JPEG", "BMP")


def write_image_folder(root: Path, counts: Sequence[int], names: Sequence[str] = IMAGE_FOLDER_CLASSES, seed: int = 0):
    """root/<name>/<k>.<png|jpg|bmp> with counts[c] images of class c, sizes 20-40 px (some grey), every third
    image in a nested folder root/<name>/more/; returns root."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c, (name, n) in enumerate(zip(names, counts, strict=False)):
        (root / name).mkdir(parents=True, exist_ok=True)
        for k in range(n):
            fmt = IMAGE_FOLDER_FORMATS[k % len(IMAGE_FOLDER_FORMATS)]
            ext = {"PNG": "png", "JPEG": "jpg", "BMP": "bmp"}[fmt]
            path = root / name / ("more" if k % 3 == 2 else "") / f"{k:03d}.{ext}"
            size = int(rng.integers(20, 41))
            write_jpeg(path, c, rng, size=size)  # then re-saved in its own format (and mode)
            img = Image.open(path)
            img = img.convert("L") if k % 4 == 3 else img
            img.save(path, format=fmt)
    return root
