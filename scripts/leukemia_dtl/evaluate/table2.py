"""Table 2 (computation) from the training and prediction stats: per model the seeds' mean ± sd of each quantity
beside the paper's value, a table in two parts (:mod:`formatting`) whose caption names, once, the device(s) and Keras
backend(s) its numbers were measured on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.evaluate import paper_values
from leukemia_dtl.evaluate.formatting import CAPTION, model_columns, paper_value_columns, two_part_table


@dataclass(frozen=True)
class _Quantity:
    """A Table 2 row: ``stats_key`` of the training or prediction stats, times ``scale``."""

    key: str
    label: str
    stage: str
    stats_key: str
    scale: float
    digits: int
    paper_key: str | None


_MIB = 2**20
TABLE2_QUANTITIES = (
    _Quantity("training_hours", "Training time (hours)", "training", "training_seconds", 1 / 3600, 2, "training_hours"),
    _Quantity("seconds_per_epoch", "Training time per epoch (s)", "training", "seconds_per_epoch", 1, 1, None),
    # The paper does not give its inference batch size, so its value stands beside both.
    _Quantity(
        "inference_ms_per_image_batched",
        "Inference time, batched (ms/image)",
        "prediction",
        "inference_ms_per_image_at_batch_size",
        1,
        2,
        "inference_ms_per_image",
    ),
    _Quantity(
        "inference_ms_per_image_batch_1",
        "Inference time, one image per call (ms/image)",
        "prediction",
        "inference_ms_per_image_at_batch_1",
        1,
        2,
        "inference_ms_per_image",
    ),
    # The paper's "Memory usage (GB)" does not say which memory, so it stands beside both.
    _Quantity(
        "peak_host_memory_gb",
        "Peak host memory, training (GB)",
        "training",
        "peak_host_memory_mb",
        _MIB / 1e9,
        2,
        "memory_gb",
    ),
    _Quantity(
        "peak_accelerator_memory_gb",
        "Peak accelerator memory, training (GB)",
        "training",
        "peak_accelerator_memory_mb",
        _MIB / 1e9,
        2,
        "memory_gb",
    ),
    # The paper's 574 MB for VGG-19 is its 143.7 M float32 weights in decimal megabytes.
    _Quantity("model_size_mb", "Model size (MB)", "training", "model_file_mb", _MIB / 1e6, 1, "model_size_mb"),
)


def _stage_values(stats: Mapping[tuple[str, int], Mapping], model: str, stage: str, key: str) -> list:
    """``key`` of every seed's stats of ``model``; None (e.g. no accelerator) stays None."""
    runs = {seed: run for (run_model, seed), run in stats.items() if run_model == model}
    if not runs:
        raise UserError(f"No {stage} stats for model {model}; train and evaluate it, or leave it out of the table.")
    for seed, run in runs.items():
        if key not in run:
            raise UserError(
                f"The {stage} stats of {model} seed {seed} lack {key!r}; they come from another version of "
                f"the {stage} step. Delete that run's {stage} stats file and re-run it."
            )
    return [runs[seed][key] for seed in sorted(runs)]


def _measured_on(stats: Mapping[tuple[str, int], Mapping], models: Sequence[str], stage: str) -> list[tuple]:
    """The (device, Keras backend) pairs of ``stage``'s stats, in model then seed order, each once. Stats written
    before they recorded the backend are refused like any stats that lack a key (:func:`_stage_values`)."""
    pairs = {}
    for model in models:
        devices = _stage_values(stats, model, stage, "device")
        backends = _stage_values(stats, model, stage, "keras_backend")
        for device, backend in zip(devices, backends, strict=True):
            pairs[" ".join(str(device).split()), backend] = None
    return list(pairs)


def _devices_text(pairs: list[tuple], scope: str | None = None) -> str:
    """ "A, B (scope, jax backend)" when the devices share a backend, else "A (jax backend), B (torch backend)"."""
    backends = {backend for _, backend in pairs}
    if len(backends) == 1:
        (backend,) = backends
        notes = [note for note in (scope, f"{backend} backend") if note]
        return f"{', '.join(device for device, _ in pairs)} ({', '.join(notes)})"
    text = ", ".join(f"{device} ({backend} backend)" for device, backend in pairs)
    return f"{scope}: {text}" if scope else text


def table2_caption(
    train_stats: Mapping[tuple[str, int], Mapping],
    predict_stats: Mapping[tuple[str, int], Mapping],
    models: Sequence[str],
) -> str:
    """One line naming the device(s) and Keras backend(s) Table 2 was measured on, e.g. "Measured on: NVIDIA H100
    80GB HBM3 (training and inference, jax backend)", or "Measured on: training: A (jax backend); inference: B
    (jax backend)" when the stages ran on different devices."""
    training = _measured_on(train_stats, models, "training")
    inference = _measured_on(predict_stats, models, "prediction")
    if set(training) == set(inference):
        return f"Measured on: {_devices_text(training, 'training and inference')}"
    return f"Measured on: training: {_devices_text(training)}; inference: {_devices_text(inference)}"


def table2_compute(
    train_stats: Mapping[tuple[str, int], Mapping],
    predict_stats: Mapping[tuple[str, int], Mapping],
    models: Sequence[str],
) -> pd.DataFrame:
    """The paper's Table 2: per model, mean ± sd over seeds of each quantity and the paper's value, with the
    device(s) that measured them in ``attrs["caption"]`` (:func:`table2_caption`). Stats are keyed by
    (model, seed), as the stats JSONs hold them."""
    stats_by_stage = {"training": train_stats, "prediction": predict_stats}
    rows = []
    for quantity in TABLE2_QUANTITIES:
        stats = stats_by_stage[quantity.stage]
        paper_row = paper_values.TABLE2.get(quantity.paper_key)
        row = [({"Metric": quantity.label}, {"quantity": quantity.key})]
        for model in models:
            raw = _stage_values(stats, model, quantity.stage, quantity.stats_key)
            row += [
                model_columns(
                    [math.nan if value is None else value * quantity.scale for value in raw], model, quantity.digits
                ),
                paper_value_columns(paper_row, model, "g"),
            ]
        rows.append(row)
    table = two_part_table(rows)
    table.attrs[CAPTION] = table2_caption(train_stats, predict_stats, models)
    return table
