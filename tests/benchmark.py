"""Benchmarks of the workflow's hot paths against plain baselines, side by side in one run.

    python tests/benchmark.py cache --images 600 --size 224
    python tests/benchmark.py evaluation --seeds 5 --images 1600 --resamples 2000
    python tests/benchmark.py training --model efficientnetb3 --images 256 --size 64
    python tests/benchmark.py prediction --model efficientnetb3 --images 512 --size 224
    python tests/benchmark.py tuning --model efficientnetb3 --images 512 --size 64 --epochs 5
    python tests/benchmark.py phases --sizes 1344:192 7462:1599 --size 224 --precision float32 mixed --out DIR
    python tests/benchmark.py paper-run --epochs 100 --out DIR
    python tests/benchmark.py checkpoint --model efficientnetb3 --size 224
    python tests/benchmark.py dryrun --seeds 10

Not a test: numbers depend on the machine. Each section prints the workflow's rate, the baseline's and
their ratio; training and prediction also print the device and an efficiency line (workflow over the
model-only limit: the same model fed from memory), best of --repeats runs taken round-robin. phases and
paper-run time every phase of train_model's epochs (tests/benchmark_gpu.sh runs them on a GPU); checkpoint
times one epoch's resume checkpoint against Keras's BackupAndRestore.

Every figure a section prints also goes to RESULTS/<section>-<UTC start, YYYYmmddTHHMMSSZ>.json (``--results
RESULTS`` before the section, default results/benchmarks/), with the command line, the git commit, the machine,
the Keras backend and the package versions that measured it: the files that documented numbers cite.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from leukemia_dtl.core.decisions import class_calls
from leukemia_dtl.core.fileio import write_json, write_tsv
from leukemia_dtl.core.provenance import canonical_params, git_state, installed_packages, package_version
from leukemia_dtl.core.vocabulary import CLASS_NAMES, POSITIVE_CLASS
from leukemia_dtl.data.demo_archive import bmp_bytes, render_cell
from leukemia_dtl.data.image_cache import build_image_cache
from leukemia_dtl.evaluate.metrics import evaluate_prediction_file
from leukemia_dtl.evaluate.model_comparison import compare_models
from leukemia_dtl.evaluate.result_files import write_metrics

# The packages whose versions the figures depend on, each with the distributions that install it (TensorFlow's CPU
# build is a distribution of its own).
VERSIONED_PACKAGES = {
    "keras": ("keras",),
    "tensorflow": ("tensorflow", "tensorflow-cpu"),
    "jax": ("jax",),
    "torch": ("torch",),
    "numpy": ("numpy",),
    "snakemake": ("snakemake",),
}
# Every figure the running section has printed, in that order: main() writes them to the section's results file.
FIGURES: list[dict] = []


def record_figure(name: str, value: float, unit: str, **context) -> None:
    """Keep a printed figure for the results file; ``context`` (contender, precision, image counts, the runs
    behind a best-of) tells apart figures of the same name."""
    FIGURES.append({"name": name, "value": float(value), "unit": unit, **context})


def cpu_model() -> str:
    """The CPU's model name. leukemia_dtl.model.backend.cpu_name says the same, but importing it loads Keras and
    its backend, which the cache, evaluation and dryrun sections never need."""
    with open("/proc/cpuinfo") as cpuinfo:
        names = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
    return names[0] if names else platform.processor() or platform.machine()


def gpu_names() -> list[str] | str | None:
    """Each NVIDIA GPU as "name, driver version"; None without nvidia-smi, and nvidia-smi's complaint when it
    cannot answer (a driver problem the figures should not hide)."""
    if shutil.which("nvidia-smi") is None:
        return None
    query = ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"]
    try:
        answer = subprocess.run(query, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as error:
        # Asked after the section has run: its figures are written whatever nvidia-smi does.
        return f"nvidia-smi failed: {error}"
    if answer.returncode:
        return f"nvidia-smi failed: {' '.join((answer.stderr or answer.stdout).split())}"
    return answer.stdout.strip().splitlines()


def machine() -> dict:
    """What the figures were measured on: host, operating system, CPU, cores, memory and NVIDIA GPUs."""
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "logical_cores": os.cpu_count(),
        "memory_total_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "gpus": gpu_names(),
    }


def keras_backend() -> str | None:
    """The backend Keras ran on; None for a section that never loaded Keras (loading it now would only start
    TensorFlow to name it)."""
    if "keras" not in sys.modules:
        return None
    import keras

    return keras.backend.backend()


def write_record(results: Path, section: str, options: dict, started: datetime, git: dict) -> Path:
    """Write FIGURES with what measured them to ``results``/<section>-<UTC start>.json (atomically: a run killed
    while writing leaves no partial file) and return its path."""
    packages = installed_packages()
    record = {
        "section": section,
        "command_line": sys.argv[1:],
        "options": canonical_params(options),
        "started_utc": started.isoformat(timespec="seconds"),
        "git": git,
        "machine": machine(),
        "python": platform.python_version(),
        "keras_backend": keras_backend(),
        "versions": {name: package_version(packages, *names) for name, names in VERSIONED_PACKAGES.items()},
        "figures": FIGURES,
    }
    path = results / f"{section}-{started:%Y%m%dT%H%M%SZ}.json"
    write_json(record, path)
    return path


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
    record_figure("plain PIL loop (1 process)", images / plain_seconds, "images/s")
    record_figure(f"build_image_cache ({workers} workers)", images / cache_seconds, "images/s")
    record_figure("speed-up", plain_seconds / cache_seconds, "x")


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
                        # Subjects of about 25 images, each of one class, as C-NMC's are.
                        "subject": [f"{label}_{image // 25}" for image, label in enumerate(labels)],
                        "label": labels,
                        "p_all": p_all,
                        "pred": class_calls(p_all),
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
            write_metrics(evaluate_prediction_file(path, 0.5, resamples, 0, 0.95), metrics_files[key])
        metrics_seconds = time.perf_counter() - started
        compare_models(metrics_files, predictions, models, threshold=0.5, mcnemar_exact_below=25)
        total_seconds = time.perf_counter() - started
    print(
        f"evaluation: {len(models)} models x {seeds} seeds x {len(subsets)} subsets of {images} images, "
        f"{resamples} bootstrap resamples"
    )
    print(f"  metrics with CIs ({len(predictions)} files): {metrics_seconds:6.1f} s")
    print(f"  + model comparisons          : {total_seconds:6.1f} s in all (target < 60 s)")
    record_figure(f"metrics with CIs ({len(predictions)} files)", metrics_seconds, "s")
    record_figure("metrics with CIs + model comparisons", total_seconds, "s")


def steady_rate(train_seconds, images: int) -> float:
    """Training images/s of the fastest epoch after the first (which also compiles the step): on a shared
    machine, the epoch least disturbed by other work, for every contender alike."""
    return images / min(list(train_seconds)[1:] or train_seconds)


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
    record_figure("whole classifier on the image cache", on_images, "s")
    record_figure("head on features (fast path)", on_features, "s")
    record_figure("feature extraction, once per scheme and model", extraction, "s")
    record_figure("ratio per configuration", on_images / on_features, "x")
    record_figure(f"grid of {grid} configurations, whole classifier", whole_grid[0], "s")
    record_figure(f"grid of {grid} configurations, head on features", whole_grid[1], "s")
    record_figure(f"grid of {grid} configurations, ratio", whole_grid[0] / whole_grid[1], "x")


REPO = Path(__file__).resolve().parents[1]
PAPER_CONFIG = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
PAPER_AUGMENTATION = PAPER_CONFIG["augmentation"]


def paper_options(model_name: str, batch_size: int, epochs: int) -> dict:
    """The paper config's options for ``model_name`` with random weights (no download here) and the
    benchmark's batch size and epochs."""
    return {**PAPER_CONFIG["models"][model_name], "weights": "none", "batch_size": batch_size, "epochs": epochs}


def run_header(section: str, model_name: str, size: int, batch_size: int, jit_compile) -> str:
    from leukemia_dtl.model import backend

    return (
        f"{section} {model_name} at {size}px, batch {batch_size}; device: {backend.device_description()}; "
        f"keras {backend.backend_name()} backend, {keras_policy()}, jit_compile={jit_compile}"
    )


def keras_policy() -> str:
    import keras

    return keras.mixed_precision.global_policy().name


def best_of(rates: dict[str, list[float]]) -> dict[str, float]:
    return {name: max(values) for name, values in rates.items() if values}


def print_rates(rates: dict[str, list[float]], unit: str, **context) -> None:
    """Print and record each contender's best run, with all its runs."""
    for name, values in rates.items():
        if values:
            print(f"  {name:34}: best {max(values):9.1f} {unit}  (runs: {', '.join(f'{v:.1f}' for v in values)})")
            record_figure(name, max(values), unit, runs=values, **context)


class TrainingBenchmark:
    """One synthetic dataset and three ways of training the same seeded classifier on it."""

    def __init__(self, folder: Path, model_name: str, size: int, batch_size: int, epochs: int):
        """``folder`` holds the dataset: split.tsv and the image cache (``write_training_dataset`` or
        ``write_rendered_dataset``)."""
        from leukemia_dtl.model.inputs import ImageCache
        from leukemia_dtl.model.training import read_training_subsets

        self.folder, self.model_name, self.size, self.epochs = folder, model_name, size, epochs
        self.batch_size = batch_size
        self.options = paper_options(model_name, batch_size, epochs)
        self.cache = ImageCache.open(folder, size)
        self.subsets = read_training_subsets(folder / "split.tsv")
        self.train_images = len(self.subsets["train"])

    @functools.cached_property
    def in_memory(self) -> tuple[np.ndarray, np.ndarray]:
        """The workflow's first-epoch train batches (images, labels), decoded and in memory."""
        from leukemia_dtl.model.training import training_batches

        train_batches, _ = training_batches(self.cache, self.subsets, self.batch_size, seed=0)
        served = [train_batches[index] for index in range(len(train_batches))]
        return tuple(np.concatenate(parts) for parts in zip(*served, strict=True))

    def seeded_model(self, jit_compile="auto"):
        from leukemia_dtl.core.vocabulary import builder_options
        from leukemia_dtl.model.classifiers import compile_classifier
        from leukemia_dtl.model.training import build_seeded_classifier

        build_options = builder_options(self.options)
        model = build_seeded_classifier(
            self.model_name, build_options, self.cache, self.subsets, self.size, PAPER_AUGMENTATION, seed=0
        )
        compile_classifier(model, jit_compile=jit_compile)
        return model

    def steady_fit_rate(self, model, data, **fit_arguments) -> float:
        from leukemia_dtl.model.callbacks import TrainingProgress

        progress = TrainingProgress("benchmark", self.epochs, self.train_images)
        logs = []
        model.fit(
            data,
            epochs=self.epochs,
            verbose=0,
            callbacks=[progress.timing_callback(), keras_logs_callback(logs)],
            **fit_arguments,
        )
        return steady_rate([epoch["train_seconds"] for epoch in logs], self.train_images)

    def model_only_limit(self, jit_compile="auto") -> float:
        """The model fed batches already in memory: Keras's own array path, no shuffling, same batches."""
        images, labels = self.in_memory
        return self.steady_fit_rate(
            self.seeded_model(jit_compile), images, y=labels, batch_size=self.batch_size, shuffle=False
        )

    def workflow(self, precision: str) -> float:
        """``train_model`` as the train rule calls it: memory-mapped cache, backups, history, stats."""
        history = pd.read_csv(self.workflow_run(precision) / "history.tsv", sep="\t")
        return steady_rate(history["train_seconds"], self.train_images)

    def workflow_run(self, precision: str) -> Path:
        """One ``train_model`` run; the folder of its model, history and stats."""
        from leukemia_dtl.model.training import TrainingOptions, train_model

        out = Path(tempfile.mkdtemp(prefix="workflow", dir=self.folder))
        train_model(
            TrainingOptions.from_config(self.model_name, self.options),
            augmentation=PAPER_AUGMENTATION,
            image_size=self.size,
            seed=0,
            split_path=self.folder / "split.tsv",
            cache_dir=self.folder,
            backup_dir=out / "resume",
            model_path=out / "model.keras",
            history_path=out / "history.tsv",
            stats_path=out / "stats.json",
            precision=precision,
        )
        return out

    def plain_keras_pipeline(self) -> float:
        """``image_dataset_from_directory`` over the BMPs with the augmentation mapped over the dataset."""
        import keras

        from leukemia_dtl.model.augmentation import augmentation_layers

        dataset = keras.utils.image_dataset_from_directory(
            self.folder / "bmp",
            label_mode="categorical",
            class_names=list(CLASS_NAMES),
            image_size=(self.size, self.size),
            batch_size=self.batch_size,
            interpolation="bilinear",
            shuffle=True,
            seed=0,
            verbose=False,
        )
        augment = keras.Sequential(augmentation_layers(PAPER_AUGMENTATION))
        dataset = dataset.map(lambda x, y: (augment(x, training=True), y)).prefetch(2)
        model = self.seeded_model()
        images = sum(1 for _ in (self.folder / "bmp").rglob("*.bmp"))
        return self.steady_fit_rate(model, dataset, shuffle=False) * images / self.train_images


def keras_logs_callback(logs: list):
    import keras

    return keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, epoch_logs: logs.append(dict(epoch_logs)))


def benchmark_training(
    model_name: str,
    images: int,
    size: int,
    batch_size: int,
    epochs: int,
    repeats: int,
    precisions: list[str],
    jit: str,
) -> None:
    """The workflow's training (``train_model``) against the model-only limit (the same model, batches and
    augmentation, fed from memory) and Keras's plain pipeline, round-robin, best of ``repeats`` each; once
    per precision, on one dataset."""
    from leukemia_dtl.model import backend

    with tempfile.TemporaryDirectory() as tmp:
        write_training_dataset(Path(tmp), images, size)
        bench = TrainingBenchmark(Path(tmp), model_name, size, batch_size, epochs)
        for precision in precisions:
            backend.set_precision(precision)
            print(run_header("training", model_name, size, batch_size, bench.seeded_model().jit_compile), flush=True)
            plain_skip = None if backend.backend_name() == "tensorflow" else "needs tf.data (TensorFlow backend)"
            contenders = {
                "model-only limit": bench.model_only_limit,
                "workflow (train_model)": functools.partial(bench.workflow, precision),
                "plain Keras pipeline": None if plain_skip else bench.plain_keras_pipeline,
            }
            rates = {name: [] for name in contenders}
            for run in range(repeats):
                for name, measure in contenders.items():
                    if measure:
                        rates[name].append(measure())
                        print(f"  run {run + 1}/{repeats}: {name} {rates[name][-1]:.1f} img/s", flush=True)
            if jit != "auto":
                # Without XLA a step can take many times longer: once is enough.
                rates[f"model-only limit, jit_compile={jit}"] = [bench.model_only_limit(jit == "true")]
            print(f"  images/s of the fastest of epochs 2-{epochs}, {bench.train_images} training images:")
            print_rates(rates, "img/s", precision=precision)
            if plain_skip:
                print(f"  plain Keras pipeline              : skipped ({plain_skip})")
            best = best_of(rates)
            efficiency = best["workflow (train_model)"] / best["model-only limit"]
            print(f"efficiency (workflow / model-only limit): {efficiency:.2f}", flush=True)
            record_figure("efficiency (workflow / model-only limit)", efficiency, "ratio", precision=precision)


def _render_rows(rows, first_row: int, labels: list[str], size: int) -> list[int]:
    rng = np.random.default_rng(first_row)
    stain = np.ones(3, np.float32)
    return rows.write(first_row, np.stack([render_cell(rng, label, stain, size) for label in labels]))


def write_rendered_dataset(folder: Path, train_images: int, val_images: int, size: int, workers: int) -> None:
    """split.tsv and the image cache of synthetic cells drawn at ``size`` straight into the cache (no BMPs),
    by ``workers`` processes: the paper's 7,462 + 1,599 images in seconds, where drawing BMPs one by one and
    caching them takes minutes. Two ALL images to one HEM, as in C-NMC."""
    from leukemia_dtl.core.fileio import write_cache_index, write_verified_npy
    from leukemia_dtl.core.vocabulary import CACHE_IMAGES_FILE, INDEX_FILE

    total = train_images + val_images
    labels = ["HEM" if row % 3 == 2 else POSITIVE_CLASS for row in range(total)]
    split = pd.DataFrame(
        {
            "path": [f"{label}/UID_{row % 80}_{row}_1_{label.lower()}.bmp" for row, label in enumerate(labels)],
            "subject": [f"{label}{row % 80}" for row, label in enumerate(labels)],
            "label": labels,
            "subset": ["train"] * train_images + ["val"] * val_images,
        }
    )
    chunk = 64

    def fill(rows) -> list[int]:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers) as pool:
            parts = [
                pool.submit(_render_rows, rows, start, labels[start : start + chunk], size)
                for start in range(0, total, chunk)
            ]
            return [checksum for part in parts for checksum in part.result()]

    started = time.perf_counter()
    checksums = write_verified_npy(folder / CACHE_IMAGES_FILE, np.uint8, (total, size, size, 3), fill)
    write_cache_index(split["path"].tolist(), folder / INDEX_FILE, checksums)
    write_tsv(split, folder / "split.tsv")
    seconds = time.perf_counter() - started
    print(f"  {total} synthetic {size} px images rendered in {seconds:.1f} s", flush=True)
    record_figure("synthetic images rendered", seconds, "s", images=total, size=size)


def timed_callbacks(callbacks: list, rows: list[dict]) -> list:
    """``callbacks`` behind a ``PhaseTimer`` that appends one row per epoch to ``rows``: ``epoch`` (0-based), the
    seconds of each callback's on_epoch_begin and on_epoch_end (named after its class) and of the phases:
    training steps (on_epoch_begin to the last step's result: evaluate's entry, or on_epoch_end without
    validation), validation set-up (to on_test_begin), validation steps (to on_test_end), validation
    tear-down (to evaluate's return) and after validation (to on_epoch_end). Every boundary is read after the
    device has run everything queued before it, so a phase is charged only its own work; "training steps,
    host" ends when the host began the last step: close to "training steps", the device waited for the host;
    far below it, the host waited for the device. Batch ends are left alone: a callback acting on them makes
    Keras dispatch every batch end synchronously, which would change what is measured."""
    import keras

    def device_clock(model) -> float:
        # The optimizer's step count is the last output of the last train step queued.
        keras.ops.convert_to_numpy(model.optimizer.iterations)
        return time.perf_counter()

    class PhaseTimer(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            fit_evaluate = self.model.evaluate

            def evaluate(*args, **kwargs):
                self.marks["evaluate entry"] = device_clock(self.model)
                answer = fit_evaluate(*args, **kwargs)
                self.marks["evaluate return"] = device_clock(self.model)
                return answer

            self.model.evaluate = evaluate

        def on_train_end(self, logs=None):
            del self.model.evaluate

        def on_epoch_begin(self, epoch, logs=None):
            self.marks = {"epoch begin": device_clock(self.model)}
            self.row = {"epoch": epoch}
            rows.append(self.row)

        def on_test_begin(self, logs=None):
            self.marks["test begin"] = device_clock(self.model)

        def on_test_end(self, logs=None):
            self.marks["test end"] = device_clock(self.model)

        def on_train_batch_begin(self, batch, logs=None):
            # Called in the training loop itself (batch ends may run later, in a thread): the last one is when
            # the host began the epoch's last step.
            self.marks["last step begun"] = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            end = device_clock(self.model)
            marks = self.marks
            self.row["training steps, host"] = marks["last step begun"] - marks["epoch begin"]
            self.row["training steps"] = marks.get("evaluate entry", end) - marks["epoch begin"]
            if "evaluate entry" in marks:
                self.row["validation set-up"] = marks["test begin"] - marks["evaluate entry"]
                self.row["validation steps"] = marks["test end"] - marks["test begin"]
                self.row["validation tear-down"] = marks["evaluate return"] - marks["test end"]
                self.row["after validation"] = end - marks["evaluate return"]

    class TimedCallback(keras.callbacks.Callback):
        def __init__(self, inner, timer: PhaseTimer):
            super().__init__()
            self.inner, self.timer = inner, timer
            self.async_safe = True
            self.name = type(inner).__name__

        def set_model(self, model):
            super().set_model(model)
            self.inner.set_model(model)

        def set_params(self, params):
            super().set_params(params)
            self.inner.set_params(params)

        def _timed(self, hook: str, *args):
            started = device_clock(self.model)
            getattr(self.inner, hook)(*args)
            seconds = device_clock(self.model) - started
            self.timer.row[f"{self.name}.{hook}"] = self.timer.row.get(f"{self.name}.{hook}", 0.0) + seconds

        def on_train_begin(self, logs=None):
            self.inner.on_train_begin(logs)

        def on_train_end(self, logs=None):
            self.inner.on_train_end(logs)

        def on_epoch_begin(self, epoch, logs=None):
            self._timed("on_epoch_begin", epoch, logs)

        def on_epoch_end(self, epoch, logs=None):
            self._timed("on_epoch_end", epoch, logs)

        def on_test_begin(self, logs=None):
            self.inner.on_test_begin(logs)

        def on_test_end(self, logs=None):
            self.inner.on_test_end(logs)

    timer = PhaseTimer()
    return [timer, *(TimedCallback(callback, timer) for callback in callbacks)]


def workflow_phases(bench: TrainingBenchmark, precision: str) -> tuple[list[dict], Path]:
    """``bench.workflow`` with every epoch's phases timed: the rows of ``timed_callbacks`` and the run's folder
    (history.tsv, stats.json)."""
    from leukemia_dtl.model import training

    rows: list[dict] = []
    plain_callbacks = training.training_callbacks
    training.training_callbacks = lambda *args, **kwargs: timed_callbacks(plain_callbacks(*args, **kwargs), rows)
    try:
        return rows, bench.workflow_run(precision)
    finally:
        training.training_callbacks = plain_callbacks


def fit_phases(bench: TrainingBenchmark, name: str, data, callbacks=(), **fit_arguments) -> list[dict]:
    """``fit`` of ``bench``'s seeded model on ``data`` (plus the epoch timer and ``callbacks``) with every epoch's
    phases timed (``timed_callbacks``)."""
    from leukemia_dtl.model.callbacks import TrainingProgress

    rows: list[dict] = []
    progress = TrainingProgress(name, bench.epochs, bench.train_images)
    bench.seeded_model().fit(
        data,
        shuffle=False,
        epochs=bench.epochs,
        verbose=0,
        callbacks=timed_callbacks([*callbacks, progress.timing_callback()], rows),
        **fit_arguments,
    )
    return rows


def model_only_phases(bench: TrainingBenchmark) -> list[dict]:
    """``bench.model_only_limit`` with every epoch's phases timed."""
    images, labels = bench.in_memory
    return fit_phases(bench, "model-only", images, y=labels, batch_size=bench.batch_size)


def cached_batches_phases(bench: TrainingBenchmark) -> list[dict]:
    """The model fed by the workflow's input path (``CachedImageBatches`` over the memory-mapped cache, a new
    draw each epoch) without the rest of the workflow's epoch (validation, divergence check, backup), every
    epoch's phases timed: between the model-only path and the workflow, it tells the input path's share from
    the epoch framing's."""
    import keras

    from leukemia_dtl.model.training import training_batches

    train_batches, _ = training_batches(bench.cache, bench.subsets, bench.batch_size, seed=0)
    epoch_draw = keras.callbacks.LambdaCallback(on_epoch_begin=train_batches.set_epoch)
    return fit_phases(bench, "cached batches", train_batches, callbacks=[epoch_draw])


def append_phases(path: Path, rows: list[dict], **context) -> None:
    """Append ``rows`` to the TSV ``path`` in long form (epoch, phase, seconds) with ``context`` columns."""
    frame = pd.DataFrame(rows).melt(id_vars="epoch", var_name="phase", value_name="seconds").dropna()
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.assign(**context).to_csv(path, sep="\t", mode="a", index=False, header=not path.exists())


def report_phases(rows: list[dict], out: Path | None, **context) -> None:
    """Print the median milliseconds of each phase over the epochs after the first; with ``out``, append every
    epoch's row to ``out``/phases.tsv with ``context`` and the device."""
    from leukemia_dtl.model import backend

    for phase, seconds in steady_phases(rows).items():
        print(f"    {phase:42}: {1000 * seconds:9.1f} ms", flush=True)
        record_figure(phase, 1000 * seconds, "ms", statistic="median of epochs after the first", **context)
    if out:
        append_phases(out / "phases.tsv", rows, **context, device=backend.device_description())


def steady_phases(rows: list[dict]) -> pd.Series:
    """Median seconds of each phase over the epochs after the first (which compiles)."""
    frame = pd.DataFrame(rows).set_index("epoch")
    return frame.iloc[1:].median()


def benchmark_phases(
    model_name: str,
    sizes: list[tuple[int, int]],
    size: int,
    batch_size: int,
    epochs: int,
    precisions: list[str],
    workers: int,
    out: Path | None,
) -> None:
    """Per-phase seconds of an epoch of ``train_model`` against the model-only path and the model fed by the
    workflow's input path alone, per (train, val) size and precision: the first epoch (compilation
    included), then the median of the later epochs per phase and per callback, with the training images/s of
    each and their ratio to the model-only path's. With ``out``, every epoch's row is appended to
    ``out``/phases.tsv as it is measured."""
    from leukemia_dtl.model import backend

    for train_images, val_images in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            write_rendered_dataset(Path(tmp), train_images, val_images, size, workers)
            bench = TrainingBenchmark(Path(tmp), model_name, size, batch_size, epochs)
            for precision in precisions:
                backend.set_precision(precision)
                print(run_header("phases", model_name, size, batch_size, "auto"), flush=True)
                print(f"  {train_images} training, {val_images} validation images, {epochs} epochs", flush=True)
                measured = {"model-only": model_only_phases(bench), "cached batches": cached_batches_phases(bench)}
                measured["workflow"], run_folder = workflow_phases(bench, precision)
                history = pd.read_csv(run_folder / "history.tsv", sep="\t")
                steady = {name: steady_phases(rows) for name, rows in measured.items()}
                case = {"precision": precision, "train_images": train_images, "val_images": val_images}
                for name, rows in measured.items():
                    first = sum(value for key, value in rows[0].items() if key != "epoch")
                    print(f"  {name}: epoch 1 (compiles) {first:.2f} s; median of epochs 2-{epochs}:", flush=True)
                    record_figure("epoch 1 (compiles)", first, "s", contender=name, **case)
                    report_phases(rows, out, contender=name, model=model_name, size=size, batch_size=batch_size, **case)
                limit = train_images / steady["model-only"]["training steps"]
                for name in measured:
                    rate = train_images / steady[name]["training steps"]
                    print(f"  training steps, {name}: {rate:.0f} img/s, {rate / limit:.2f} of the model-only path")
                    record_figure("training steps", rate, "img/s", contender=name, **case)
                    record_figure(
                        "training steps, ratio to the model-only path", rate / limit, "ratio", contender=name, **case
                    )
                recorded = steady_rate(history["train_seconds"], train_images)
                print(f"  workflow history's train_seconds: {recorded:.0f} img/s, {recorded / limit:.2f}", flush=True)
                record_figure("workflow history's train_seconds", recorded, "img/s", **case)
                record_figure(
                    "workflow history's train_seconds, ratio to the model-only path", recorded / limit, "ratio", **case
                )


def benchmark_paper_run(
    model_name: str, train_images: int, val_images: int, size: int, epochs: int, workers: int, out: Path | None
) -> None:
    """``train_model`` end to end with the paper config's options for ``model_name`` (random weights, ``epochs``)
    on synthetic images of the paper's training and validation sizes: wall-clock time, the run's stats and the
    median seconds of each phase of its epochs after the first (``timed_callbacks``; with ``out``, every epoch's
    row is appended to ``out``/phases.tsv)."""
    import json
    import logging

    # train_model's line per epoch, time-stamped as it ends: a run stopped at a time limit still shows how far it
    # got and at what pace (a 100-epoch run on a fresh GPU machine once printed nothing in 390 s).
    logging.basicConfig(stream=sys.stdout, format="  %(asctime)s %(message)s")
    logging.getLogger("leukemia_dtl").setLevel(logging.INFO)
    with tempfile.TemporaryDirectory() as tmp:
        write_rendered_dataset(Path(tmp), train_images, val_images, size, workers)
        bench = TrainingBenchmark(Path(tmp), model_name, size, PAPER_CONFIG["models"][model_name]["batch_size"], epochs)
        precision = PAPER_CONFIG["precision"]
        print(run_header("paper run", model_name, size, bench.batch_size, "auto"), flush=True)
        started = time.perf_counter()
        rows, run_folder = workflow_phases(bench, precision)
        seconds = time.perf_counter() - started
        stats = json.loads((run_folder / "stats.json").read_text())
        history = pd.read_csv(run_folder / "history.tsv", sep="\t")
    print(
        f"  {epochs} epochs of {train_images} training and {val_images} validation images: {seconds:.1f} s end to end"
    )
    record_figure("end to end", seconds, "s")
    stats_units = {
        "wall_seconds": "s",
        "training_seconds": "s",
        "seconds_per_epoch": "s",
        "images_per_second": "img/s",
        "peak_accelerator_memory_mb": "MB",
    }
    for key, unit in stats_units.items():
        print(f"  {key:28}: {stats[key]}")
        # Stats without a value (no accelerator's memory peak on a CPU) are printed as None, not recorded.
        if stats[key] is not None:
            record_figure(key, stats[key], unit)
    epoch_seconds, last = history["epoch_seconds"], history.iloc[-1]
    print(f"  epoch 1: {epoch_seconds.iloc[0]:.2f} s; later epochs: median {epoch_seconds.iloc[1:].median():.3f} s")
    print(f"  last epoch: accuracy {last['accuracy']:.4f}, val_accuracy {last['val_accuracy']:.4f}")
    record_figure("epoch 1", epoch_seconds.iloc[0], "s")
    record_figure("later epochs, median", epoch_seconds.iloc[1:].median(), "s")
    record_figure("last epoch accuracy", last["accuracy"], "fraction")
    record_figure("last epoch val_accuracy", last["val_accuracy"], "fraction")
    print(f"  median of epochs 2-{epochs}:")
    report_phases(
        rows,
        out,
        contender="paper run",
        model=model_name,
        precision=precision,
        train_images=train_images,
        val_images=val_images,
        size=size,
        batch_size=bench.batch_size,
    )


def benchmark_checkpoint(model_name: str, size: int, repeats: int) -> None:
    """One epoch's resume checkpoint of the paper config's ``model_name`` (random weights, frozen base) as
    ``train_model`` writes it (``ResumableBackup``: the variables training changes in one ``.npz``, the previous
    checkpoint copied, the epoch file) against the plain Keras baseline, ``BackupAndRestore``'s own checkpoint of
    the same model (every weight with ``save_weights`` to HDF5, its epoch file, the previous copied):
    milliseconds per checkpoint."""
    import keras

    from leukemia_dtl.core.vocabulary import HISTORY_COLUMNS, builder_options
    from leukemia_dtl.model.classifiers import build_classifier, compile_classifier
    from leukemia_dtl.model.resume import ResumableBackup

    model = build_classifier(model_name, image_size=size, **builder_options(paper_options(model_name, 32, 1)))
    compile_classifier(model)
    model.optimizer.build(model.trainable_variables)
    logs = dict.fromkeys(HISTORY_COLUMNS[1:], 0.0)
    milliseconds = {"Keras BackupAndRestore (HDF5 weights file)": [], "workflow ResumableBackup (.npz)": []}
    with tempfile.TemporaryDirectory() as tmp:
        checkpoints = [
            keras.callbacks.BackupAndRestore(Path(tmp) / "keras", double_checkpoint=True, delete_checkpoint=False),
            ResumableBackup(Path(tmp) / "workflow", "benchmark"),
        ]
        checkpoints[0].set_model(model)
        checkpoints[0].on_train_begin()
        checkpoints[1].restore(model)
        print(run_header("checkpoint", model_name, size, 32, model.jit_compile), flush=True)
        print(f"  {len(model.variables)} model and {len(model.optimizer.variables)} optimizer variables", flush=True)
        record_figure("model variables", len(model.variables), "variables")
        record_figure("optimizer variables", len(model.optimizer.variables), "variables")
        for epoch in range(repeats):
            for name, checkpoint in zip(milliseconds, checkpoints, strict=True):
                started = time.perf_counter()
                checkpoint.on_epoch_end(epoch, logs)
                milliseconds[name].append(1000 * (time.perf_counter() - started))
        sizes = {folder.name: sum(f.stat().st_size for f in folder.iterdir()) / 2**20 for folder in Path(tmp).iterdir()}
    for name, values in milliseconds.items():
        # The first of each writes no previous checkpoint: the median of the rest is one epoch's cost.
        print(f"  {name:44}: median {np.median(values[1:]):7.1f} ms  (runs: {', '.join(f'{v:.0f}' for v in values)})")
        record_figure(name, np.median(values[1:]), "ms", statistic="median of runs 2 on", runs=values)
    print(f"  both checkpoints on disk, MB: {sizes}", flush=True)
    for folder, megabytes in sizes.items():
        record_figure(f"both checkpoints on disk, {folder}", megabytes, "MB")


def benchmark_prediction(model_name: str, images: int, size: int, batch_size: int, repeats: int) -> None:
    """The workflow's prediction (``model.predict`` over the memory-mapped cache, as predict_model runs it)
    against the model-only limit: ``predict_on_batch`` over batches in memory (Table 2's timing)."""
    from leukemia_dtl.model.classifiers import load_model, save_model
    from leukemia_dtl.model.inference import inference_ms_per_image, predict_probability_of_all

    rates = {"model-only limit (predict_on_batch)": [], "workflow (predict_model)": []}
    with tempfile.TemporaryDirectory() as tmp:
        write_training_dataset(Path(tmp), images, size)
        bench = TrainingBenchmark(Path(tmp), model_name, size, batch_size, epochs=1)
        # Predict from a saved model, as the predict rule does.
        save_model(bench.seeded_model(), Path(tmp) / "model.keras")
        model = load_model(Path(tmp) / "model.keras")
        paths = bench.subsets["train"]["path"]
        in_memory = np.asarray(bench.cache.images[np.sort(bench.cache.rows_for(paths))])
        print(run_header("prediction", model_name, size, batch_size, model.jit_compile), flush=True)
        predict_probability_of_all(model, bench.cache, paths, batch_size)  # builds the predict step
        for _ in range(repeats):
            rates["model-only limit (predict_on_batch)"].append(
                1000 / inference_ms_per_image(model, in_memory, batch_size)
            )
            started = time.perf_counter()
            predict_probability_of_all(model, bench.cache, paths, batch_size)
            rates["workflow (predict_model)"].append(len(paths) / (time.perf_counter() - started))
    print(f"  images/s over {len(paths)} images:")
    print_rates(rates, "img/s")
    best = best_of(rates)
    efficiency = best["workflow (predict_model)"] / best["model-only limit (predict_on_batch)"]
    print(f"efficiency (workflow / model-only limit): {efficiency:.2f}")
    record_figure("efficiency (workflow / model-only limit)", efficiency, "ratio")


def benchmark_dry_run(seeds: int) -> None:
    """`snakemake -n` of the paper config with both split schemes, as CI and users run it."""
    with tempfile.TemporaryDirectory() as tmp:
        overlay = Path(tmp) / "study.yaml"
        overlay.write_text(f"seeds: {list(range(seeds))}\nsplit: {{schemes: [random, patient]}}\n")
        command = [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(REPO / "Snakefile"),
            "-d",
            tmp,
            "-n",
            "--quiet",
            "--configfile",
            str(REPO / "config/config.yaml"),
            str(overlay),
        ]
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        seconds = time.perf_counter() - started
    print(f"dry-run of the paper config, {seeds} seeds x 2 schemes x 2 models: {seconds:.1f} s (target < 10 s)")
    record_figure("dry-run of the paper config", seconds, "s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--results",
        type=Path,
        default=REPO / "results" / "benchmarks",
        help="folder of the JSON file of the section's figures (default: results/benchmarks)",
    )
    sections = parser.add_subparsers(dest="section", required=True)
    cache = sections.add_parser("cache", help="decode+resize cache builder vs a plain PIL loop")
    cache.add_argument("--images", type=int, default=600)
    cache.add_argument("--size", type=int, default=224)
    cache.add_argument("--workers", type=int, default=os.cpu_count())
    evaluation = sections.add_parser("evaluation", help="the evaluation stage of a full study")
    evaluation.add_argument("--seeds", type=int, default=5)
    evaluation.add_argument("--images", type=int, default=1600)
    evaluation.add_argument("--resamples", type=int, default=2000)
    training = sections.add_parser("training", help="train_model vs the model-only limit and plain Keras")
    training.add_argument("--model", default="efficientnetb3", choices=["vgg19", "efficientnetb3"])
    training.add_argument("--images", type=int, default=256)
    training.add_argument("--size", type=int, default=64)
    training.add_argument("--batch-size", type=int, default=32)
    training.add_argument("--epochs", type=int, default=2)
    training.add_argument("--repeats", type=int, default=3)
    training.add_argument("--precision", nargs="+", default=["float32"], choices=["float32", "mixed"])
    training.add_argument(
        "--jit-compile", default="auto", choices=["auto", "true", "false"], help="also time the limit with this"
    )
    prediction = sections.add_parser("prediction", help="predict_model vs predict_on_batch over memory")
    prediction.add_argument("--model", default="efficientnetb3", choices=["vgg19", "efficientnetb3"])
    prediction.add_argument("--images", type=int, default=512)
    prediction.add_argument("--size", type=int, default=64)
    prediction.add_argument("--batch-size", type=int, default=32)
    prediction.add_argument("--repeats", type=int, default=3)
    tuning = sections.add_parser("tuning", help="one tuning configuration: on images vs on precomputed features")
    tuning.add_argument("--model", default="efficientnetb3", choices=["vgg19", "efficientnetb3"])
    tuning.add_argument("--images", type=int, default=512)
    tuning.add_argument("--size", type=int, default=64)
    tuning.add_argument("--batch-size", type=int, default=32)
    tuning.add_argument("--epochs", type=int, default=5)
    tuning.add_argument("--grid", type=int, default=108)
    phases = sections.add_parser("phases", help="per-phase seconds of train_model epochs vs the model-only path")
    phases.add_argument("--model", default="efficientnetb3", choices=["vgg19", "efficientnetb3"])
    phases.add_argument(
        "--sizes", nargs="+", default=["1344:192"], help="TRAIN:VAL image counts, e.g. 1344:192 7462:1599"
    )
    phases.add_argument("--size", type=int, default=64)
    phases.add_argument("--batch-size", type=int, default=32)
    phases.add_argument("--epochs", type=int, default=4)
    phases.add_argument("--precision", nargs="+", default=["float32"], choices=["float32", "mixed"])
    phases.add_argument("--workers", type=int, default=os.cpu_count())
    phases.add_argument("--out", type=Path, help="append every epoch's phases to OUT/phases.tsv")
    paper_run = sections.add_parser("paper-run", help="train_model end to end with the paper's options")
    paper_run.add_argument("--model", default="efficientnetb3", choices=["vgg19", "efficientnetb3"])
    paper_run.add_argument("--train-images", type=int, default=7462)
    paper_run.add_argument("--val-images", type=int, default=1599)
    paper_run.add_argument("--size", type=int, default=224)
    paper_run.add_argument("--epochs", type=int, default=100)
    paper_run.add_argument("--workers", type=int, default=os.cpu_count())
    paper_run.add_argument("--out", type=Path, help="append every epoch's phases to OUT/phases.tsv")
    checkpoint = sections.add_parser("checkpoint", help="train_model's resume checkpoint vs Keras's BackupAndRestore")
    checkpoint.add_argument("--model", default="efficientnetb3", choices=["vgg19", "efficientnetb3"])
    checkpoint.add_argument("--size", type=int, default=224)
    checkpoint.add_argument("--repeats", type=int, default=6)
    dryrun = sections.add_parser("dryrun", help="snakemake -n of the full paper config")
    dryrun.add_argument("--seeds", type=int, default=10)
    args = parser.parse_args()
    started, git = datetime.now(UTC), git_state(REPO)
    if args.section == "cache":
        benchmark_cache(args.images, args.size, args.workers)
    elif args.section == "evaluation":
        benchmark_evaluation(args.seeds, args.images, args.resamples)
    elif args.section == "dryrun":
        benchmark_dry_run(args.seeds)
    elif args.section == "tuning":
        benchmark_tuning(args.model, args.images, args.size, args.batch_size, args.epochs, args.grid)
    elif args.section == "training":
        benchmark_training(
            args.model,
            args.images,
            args.size,
            args.batch_size,
            args.epochs,
            args.repeats,
            args.precision,
            args.jit_compile,
        )
    elif args.section == "phases":
        sizes = [tuple(map(int, pair.split(":"))) for pair in args.sizes]
        benchmark_phases(
            args.model, sizes, args.size, args.batch_size, args.epochs, args.precision, args.workers, args.out
        )
    elif args.section == "paper-run":
        benchmark_paper_run(
            args.model, args.train_images, args.val_images, args.size, args.epochs, args.workers, args.out
        )
    elif args.section == "checkpoint":
        benchmark_checkpoint(args.model, args.size, args.repeats)
    elif args.section == "prediction":
        benchmark_prediction(args.model, args.images, args.size, args.batch_size, args.repeats)
    print(f"figures written to {write_record(args.results, args.section, vars(args), started, git)}")


if __name__ == "__main__":
    main()
