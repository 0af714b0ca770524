"""Benchmarks of the workflow's hot paths against plain baselines, side by side in one run.

    python tests/benchmark.py cache --images 600 --size 224
    python tests/benchmark.py evaluation --seeds 5 --images 1600 --resamples 2000
    python tests/benchmark.py training --model efficientnetb3 --images 256 --size 64
    python tests/benchmark.py tuning --model efficientnetb3 --images 512 --size 64 --epochs 5
    python tests/benchmark.py dryrun --seeds 10

Not a test: numbers depend on the machine. Each section prints the workflow's rate, the baseline's and
their ratio.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from leukemia_dtl.core.fileio import write_json, write_tsv
from leukemia_dtl.core.vocabulary import CLASS_NAMES, POSITIVE_CLASS
from leukemia_dtl.data.demo_archive import bmp_bytes, render_cell
from leukemia_dtl.data.image_cache import build_image_cache
from leukemia_dtl.evaluate.metrics import evaluate_prediction_file
from leukemia_dtl.evaluate.model_comparison import compare_models


def write_bmps(folder: Path, count: int, side: int) -> list[str]:
    rng = np.random.default_rng(0)
    stain = np.ones(3, np.float32)
    names = []
    for number in range(count):
        name = f"UID_{number % 40}_{number}_1_all.bmp"
        (folder / name).write_bytes(bmp_bytes(render_cell(rng, POSITIVE_CLASS, stain, side)))
        names.append(name)
    return names


def plain_pil_load(path: Path, size: int) -> np.ndarray:
    """The textbook way: open, convert to RGB, resize bilinearly, one image after the other."""
    return np.asarray(Image.open(path).convert("RGB").resize((size, size), Image.Resampling.BILINEAR))


def benchmark_cache(images: int, size: int, workers: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        names = write_bmps(folder, images, 450)
        # Read every file once so both contenders start from the page cache.
        for name in names:
            (folder / name).read_bytes()

        started = time.perf_counter()
        baseline = np.stack([plain_pil_load(folder / name, size) for name in names])
        plain_seconds = time.perf_counter() - started

        started = time.perf_counter()
        build_image_cache(folder, names, size, folder / "cache.npy", folder / "index.tsv", workers=workers)
        cache_seconds = time.perf_counter() - started

        assert np.array_equal(np.load(folder / "cache.npy"), baseline), "cache differs from the plain loop"
    print(f"image cache: {images} BMPs 450x450 -> {size}x{size}, {os.cpu_count()} CPUs")
    print(f"  plain PIL loop (1 process) : {images / plain_seconds:8.1f} images/s")
    print(f"  build_image_cache ({workers} workers): {images / cache_seconds:8.1f} images/s")
    print(f"  speed-up                   : {plain_seconds / cache_seconds:8.2f}x")


def write_prediction_files(folder: Path, models, seeds, subsets, images: int) -> dict:
    """Prediction TSVs in the workflow's format, with each model a little better than chance."""
    rng = np.random.default_rng(0)
    labels = np.where(rng.random(images) < 0.68, "ALL", "HEM")
    files = {}
    for strength, model in enumerate(models, start=1):
        for seed in seeds:
            for subset in subsets:
                signal = (labels == "ALL") * strength + rng.normal(0, 1.5, images)
                p_all = 1 / (1 + np.exp(-(signal - strength / 2)))
                frame = pd.DataFrame(
                    {
                        "path": [f"img{i}.bmp" for i in range(images)],
                        "subject": "S",
                        "label": labels,
                        "p_all": p_all,
                        "pred": np.where(p_all >= 0.5, "ALL", "HEM"),
                    }
                )
                files[(model, seed, subset)] = folder / f"{model}_{seed}_{subset}.tsv"
                write_tsv(frame, files[(model, seed, subset)])
    return files


def benchmark_evaluation(seeds: int, images: int, resamples: int) -> None:
    models, subsets = ["vgg19", "efficientnetb3"], ["val", "test", "external"]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        predictions = write_prediction_files(folder, models, range(seeds), subsets, images)
        started = time.perf_counter()
        metrics_files = {}
        for key, path in predictions.items():
            metrics_files[key] = path.with_suffix(".json")
            write_json(evaluate_prediction_file(path, 0.5, resamples, 0, 0.95), metrics_files[key])
        metrics_seconds = time.perf_counter() - started
        compare_models(metrics_files, predictions, models, threshold=0.5, mcnemar_exact_below=25)
        total_seconds = time.perf_counter() - started
    print(
        f"evaluation: {len(models)} models x {seeds} seeds x {len(subsets)} subsets of {images} images, "
        f"{resamples} bootstrap resamples"
    )
    print(f"  metrics with CIs ({len(predictions)} files): {metrics_seconds:6.1f} s")
    print(f"  + model comparisons          : {total_seconds:6.1f} s in all (target < 60 s)")


def _steady_rate(history: pd.DataFrame, images: int) -> float:
    """Training images/s of the last epoch: the first one also builds the graph."""
    return images / float(history["train_seconds"].iloc[-1])


def write_training_dataset(folder: Path, images: int, size: int) -> int:
    """BMPs in ``folder/bmp/{ALL,HEM}``, ``split.tsv`` (1 in 8 to val) and the image cache in ``folder``;
    returns the number of training images."""
    rows = []
    for label in ("ALL", "HEM"):
        (folder / "bmp" / label).mkdir(parents=True)
        for name in write_bmps(folder / "bmp" / label, images // 2, 450):
            rows.append({"path": f"{label}/{name}", "subject": name.split("_")[1], "label": label, "subset": "train"})
    split = pd.DataFrame(rows)
    split.loc[split.index % 8 == 0, "subset"] = "val"
    write_tsv(split, folder / "split.tsv")
    build_image_cache(folder / "bmp", split["path"].tolist(), size, folder / "images.npy", folder / "index.tsv")
    return int((split["subset"] == "train").sum())


def benchmark_tuning(model_name: str, images: int, size: int, batch_size: int, epochs: int, grid: int) -> None:
    """One tuning configuration of a frozen base without augmentation: the whole classifier on the image
    cache against the head alone on features computed once (the workflow's fast path)."""
    from leukemia_dtl.model import backend
    from leukemia_dtl.tuning.grid_search import extract_features, train_configuration

    options = {"weights": "none", "normalization": "model", "freeze_base": True, "dropout": 0.5}
    configuration = {
        "model_name": model_name,
        "model_options": {**options, "batch_size": batch_size},
        "hyperparameters": {"learning_rate": 0.001, "optimizer": "adamax"},
        "epochs": epochs,
        "seed": 0,
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_training_dataset(folder, images, size)
        split = folder / "split.tsv"
        started = time.perf_counter()
        train_configuration(**configuration, split_path=split, cache_dir=folder, image_size=size)
        on_images = time.perf_counter() - started
        started = time.perf_counter()
        extract_features(
            model_name=model_name,
            model_options=options,
            image_size=size,
            seed=0,
            split_path=split,
            cache_dir=folder,
            out_dir=folder / "features",
        )
        extraction = time.perf_counter() - started
        started = time.perf_counter()
        train_configuration(**configuration, split_path=split, features_dir=folder / "features")
        on_features = time.perf_counter() - started
    print(
        f"tuning {model_name} at {size}px, {images} images, batch {batch_size}, {epochs} epochs, "
        f"{backend.device_description()} ({backend.backend_name()}), seconds per configuration"
    )
    whole_grid = (grid * on_images, extraction + grid * on_features)
    print(f"  whole classifier on the image cache : {on_images:8.1f} s")
    print(
        f"  head on features (fast path)        : {on_features:8.1f} s, + {extraction:.1f} s once per scheme and model"
    )
    print(f"  ratio per configuration             : {on_images / on_features:8.1f}x")
    print(
        f"  {f'grid of {grid} configurations':36}: {whole_grid[0]:8.0f} s vs {whole_grid[1]:.0f} s, "
        f"{whole_grid[0] / whole_grid[1]:.1f}x"
    )


def benchmark_training(model_name: str, images: int, size: int, batch_size: int, epochs: int) -> None:
    """The workflow's input pipeline (memmapped cache, augmentation inside the model) against Keras's
    image_dataset_from_directory over the BMPs with the same augmentation mapped over the dataset."""
    import keras

    from leukemia_dtl.model import backend
    from leukemia_dtl.model.classifiers import augmentation_layers, build_classifier, compile_classifier
    from leukemia_dtl.model.training import train_model

    augmentation = {"horizontal_flip": True, "rotation_degrees": 15, "shift": 0.1, "zoom": 0.1}
    options = {
        "batch_size": batch_size,
        "epochs": epochs,
        "optimizer": "adamax",
        "learning_rate": 0.001,
        "dropout": 0.5,
        "weights": "none",
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        train_images = write_training_dataset(folder, images, size)
        train_model(
            model_name=model_name,
            model_options=options,
            augmentation=augmentation,
            image_size=size,
            seed=0,
            split_path=folder / "split.tsv",
            cache_dir=folder,
            backup_dir=folder / "resume",
            model_path=folder / "model.keras",
            history_path=folder / "history.tsv",
            stats_path=folder / "stats.json",
        )
        workflow_rate = _steady_rate(pd.read_csv(folder / "history.tsv", sep="\t"), train_images)

        dataset = keras.utils.image_dataset_from_directory(
            folder / "bmp",
            label_mode="categorical",
            class_names=list(CLASS_NAMES),
            image_size=(size, size),
            batch_size=batch_size,
            interpolation="bilinear",
            shuffle=True,
            seed=0,
        )
        augment = keras.Sequential(augmentation_layers(augmentation))
        dataset = dataset.map(lambda x, y: (augment(x, training=True), y)).prefetch(2)
        model = build_classifier(model_name, image_size=size, weights="none", dropout=0.5)
        compile_classifier(model)
        epoch_seconds = []
        timer = keras.callbacks.LambdaCallback(
            on_epoch_begin=lambda epoch, logs: epoch_seconds.append(time.perf_counter()),
            on_epoch_end=lambda epoch, logs: epoch_seconds.__setitem__(-1, time.perf_counter() - epoch_seconds[-1]),
        )
        model.fit(dataset, epochs=epochs, callbacks=[timer], verbose=0)
        baseline_rate = images / epoch_seconds[-1]
    print(
        f"training {model_name} at {size}px, batch {batch_size}, {backend.device_description()} "
        f"({backend.backend_name()}), images/s of the last of {epochs} epochs"
    )
    print(f"  image_dataset_from_directory + augmentation map: {baseline_rate:8.1f} images/s")
    print(f"  workflow (memmapped cache, augmentation in model): {workflow_rate:8.1f} images/s")
    print(f"  ratio                                           : {workflow_rate / baseline_rate:8.2f}x")
    if backend.accelerator_name() is None:
        print("  GPU: skipped (no GPU visible to Keras on this machine)")


def benchmark_dry_run(seeds: int) -> None:
    """`snakemake -n` of the paper config with both split schemes, as CI and users run it."""
    import subprocess

    repo = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        overlay = Path(tmp) / "study.yaml"
        overlay.write_text(f"seeds: {list(range(seeds))}\nsplit: {{schemes: [random, patient]}}\n")
        command = [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(repo / "Snakefile"),
            "-d",
            tmp,
            "-n",
            "--quiet",
            "--configfile",
            str(repo / "config/config.yaml"),
            str(overlay),
        ]
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        seconds = time.perf_counter() - started
    print(f"dry-run of the paper config, {seeds} seeds x 2 schemes x 2 models: {seconds:.1f} s (target < 10 s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sections = parser.add_subparsers(dest="section", required=True)
    cache = sections.add_parser("cache", help="decode+resize cache builder vs a plain PIL loop")
    cache.add_argument("--images", type=int, default=600)
    cache.add_argument("--size", type=int, default=224)
    cache.add_argument("--workers", type=int, default=os.cpu_count())
    evaluation = sections.add_parser("evaluation", help="the evaluation stage of a full study")
    evaluation.add_argument("--seeds", type=int, default=5)
    evaluation.add_argument("--images", type=int, default=1600)
    evaluation.add_argument("--resamples", type=int, default=2000)
    training = sections.add_parser("training", help="training input pipeline vs image_dataset_from_directory")
    training.add_argument("--model", default="efficientnetb3", choices=["vgg19", "efficientnetb3"])
    training.add_argument("--images", type=int, default=256)
    training.add_argument("--size", type=int, default=64)
    training.add_argument("--batch-size", type=int, default=32)
    training.add_argument("--epochs", type=int, default=2)
    tuning = sections.add_parser("tuning", help="one tuning configuration: on images vs on precomputed features")
    tuning.add_argument("--model", default="efficientnetb3", choices=["vgg19", "efficientnetb3"])
    tuning.add_argument("--images", type=int, default=512)
    tuning.add_argument("--size", type=int, default=64)
    tuning.add_argument("--batch-size", type=int, default=32)
    tuning.add_argument("--epochs", type=int, default=5)
    tuning.add_argument("--grid", type=int, default=108)
    dryrun = sections.add_parser("dryrun", help="snakemake -n of the full paper config")
    dryrun.add_argument("--seeds", type=int, default=10)
    args = parser.parse_args()
    if args.section == "cache":
        benchmark_cache(args.images, args.size, args.workers)
    elif args.section == "evaluation":
        benchmark_evaluation(args.seeds, args.images, args.resamples)
    elif args.section == "dryrun":
        benchmark_dry_run(args.seeds)
    elif args.section == "tuning":
        benchmark_tuning(args.model, args.images, args.size, args.batch_size, args.epochs, args.grid)
    elif args.section == "training":
        benchmark_training(args.model, args.images, args.size, args.batch_size, args.epochs)


if __name__ == "__main__":
    main()
