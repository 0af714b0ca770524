"""Table 2: the seeds' compute measurements beside the paper's, and the devices they were measured on."""

import numpy as np
import pytest

from evaluation_results import MODELS, SEEDS
from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.fileio import read_tsv
from leukemia_dtl.evaluate.formatting import write_table
from leukemia_dtl.evaluate.table2 import table2_caption, table2_compute


def _stats(model, seed):
    train = {
        "training_seconds": 3600.0 * (seed + (model == "vgg19")),
        "seconds_per_epoch": 36.0 * seed,
        "peak_host_memory_mb": 1000.0 * seed,
        "peak_accelerator_memory_mb": None,
        "model_file_mb": 80.0 if model == "vgg19" else 43.0,
        "device": "CPU: test (4 cores usable)",
        "keras_backend": "jax",
    }
    predict = {
        "inference_ms_per_image_at_batch_size": 2.0 * seed,
        "inference_ms_per_image_at_batch_1": 5.0 * seed,
        "device": f"GPU {seed % 2}",
        "keras_backend": "jax",
    }
    return train, predict


def _split(runs):
    return {key: train for key, (train, _) in runs.items()}, {key: predict for key, (_, predict) in runs.items()}


def test_table2_summarises_seeds_beside_the_paper():
    runs = {(model, seed): _stats(model, seed) for model in MODELS for seed in SEEDS}
    table = table2_compute(*_split(runs), MODELS).set_index("quantity")
    hours = [seed + 1 for seed in SEEDS]
    assert table.loc["training_hours", "vgg19_mean"] == pytest.approx(np.mean(hours))
    assert table.loc["training_hours", "vgg19_sd"] == pytest.approx(np.std(hours, ddof=1))
    assert table.loc["training_hours", "VGG-19 (mean ± sd)"] == "3.00 ± 1.00"
    assert table.loc["training_hours", "paper_vgg19"] == 4.2
    assert table.loc["model_size_mb", "efficientnetb3_mean"] == pytest.approx(43 * 2**20 / 1e6)
    assert table.loc["model_size_mb", "Paper EfficientNet-B3"] == "48"
    assert table.loc["peak_host_memory_gb", "vgg19_mean"] == pytest.approx(2000 * 2**20 / 1e9)
    accelerator = table.loc["peak_accelerator_memory_gb"]
    assert accelerator["VGG-19 (mean ± sd)"] == "n/a" and accelerator["vgg19_n_seeds"] == 0
    assert accelerator["paper_vgg19"] == 2.1
    assert table.loc["inference_ms_per_image_batched", "vgg19_mean"] == pytest.approx(4.0)
    assert table.loc["inference_ms_per_image_batch_1", "vgg19_mean"] == pytest.approx(10.0)
    assert table.loc["inference_ms_per_image_batch_1", "paper_vgg19"] == 12.3
    assert table.loc["seconds_per_epoch", "Paper VGG-19"] == ""


def test_table2_names_its_devices_once_in_a_caption_not_per_row(tmp_path):
    runs = {(model, seed): _stats(model, seed) for model in MODELS for seed in SEEDS}
    table = table2_compute(*_split(runs), MODELS)
    assert not any("device" in column.lower() for column in table.columns)
    caption = "Measured on: training: CPU: test (4 cores usable) (jax backend); inference: GPU 1, GPU 0 (jax backend)"
    assert table.attrs["caption"] == caption
    write_table(table, tmp_path / "table2.tsv", tmp_path / "table2.md", "Table 2: computation")
    title, blank, caption_line, blank_too, header, _, *rows = (tmp_path / "table2.md").read_text().splitlines()
    assert (title, blank, caption_line, blank_too) == ("## Table 2: computation", "", caption, "")
    assert header.count(" | ") == len(table.attrs["markdown_columns"]) - 1 and "device" not in header.lower()
    assert len(rows) == len(table) and not any("GPU" in row or "CPU" in row for row in rows)
    # The TSV keeps every machine column, and no device column per row.
    assert read_tsv(tmp_path / "table2.tsv").columns.tolist() == table.columns.tolist()


def test_table2_caption_names_one_device_once_and_refuses_stats_without_a_backend():
    train, predict = _stats("vgg19", 1)
    for stats in (train, predict):
        stats["device"] = "NVIDIA H100 80GB HBM3"
    runs = {(model, seed): (train, predict) for model in MODELS for seed in SEEDS}
    assert table2_caption(*_split(runs), MODELS) == (
        "Measured on: NVIDIA H100 80GB HBM3 (training and inference, jax backend)"
    )
    # Stats from before the backend was recorded: one policy for every older output, rebuild it.
    old = {key: {name: value for name, value in train.items() if name != "keras_backend"} for key in runs}
    with pytest.raises(UserError, match=r"training stats of vgg19 seed 1 lack 'keras_backend'.*re-run it"):
        table2_caption(old, old, MODELS)


def test_table2_caption_lists_each_models_device_per_stage():
    runs = {(model, seed): _stats(model, seed) for model in MODELS for seed in SEEDS}
    for seed in SEEDS:
        train, predict = runs["efficientnetb3", seed]
        train |= {"device": "NVIDIA H100 80GB HBM3", "keras_backend": "tensorflow"}
        predict |= {"device": "NVIDIA H100 80GB HBM3", "keras_backend": "tensorflow"}
    assert table2_caption(*_split(runs), MODELS) == (
        "Measured on: training: CPU: test (4 cores usable) (jax backend), NVIDIA H100 80GB HBM3 (tensorflow backend); "
        "inference: GPU 1 (jax backend), GPU 0 (jax backend), NVIDIA H100 80GB HBM3 (tensorflow backend)"
    )


def test_table2_names_the_run_whose_stats_lack_a_key():
    train, predict = _stats("vgg19", 1)
    del predict["inference_ms_per_image_at_batch_1"]
    with pytest.raises(UserError, match="prediction stats of vgg19 seed 1 lack 'inference_ms_per_image_at_batch_1'"):
        table2_compute({("vgg19", 1): train}, {("vgg19", 1): predict}, ["vgg19"])
