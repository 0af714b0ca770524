"""The C-NMC 2019 challenge as a yardstick: its published results beside this project's external-subset metrics.
(The final-phase submission file is written by the model stage: leukemia_dtl.model.challenge_submission.)

The published numbers are transcribed once, here, as printed (percentages for weighted F1 and balanced
accuracy, a fraction for ROC-AUC). The challenge's prelim-phase test set is the Kaggle archive's
``validation_data`` (1,867 images): this project's external subset. Its final-phase labels (2,586 images) are not
in the Kaggle archive, so final-phase results are listed only.

Sources:
- Pan Y, Liu M, Xia Y, Shen D (2019). Neighborhood-correction algorithm for classification of normal and
  malignant cells. In: Gupta A, Gupta R (eds), ISBI 2019 C-NMC Challenge: Classification in Cancer Cell
  Imaging. Lecture Notes in Bioengineering, Springer, Singapore. The challenge's winner.
- Mondal C, Hasan MK, Jawad MT, Dutta A, Islam MR, Awal MA, Ahmad M (2021). Acute lymphoblastic leukemia
  detection from microscopic images using weighted ensemble of convolutional neural networks. Informatics in
  Medicine Unlocked 27:100794. https://doi.org/10.1016/j.imu.2021.100794
- Prellberg J, Kramer O (2019). Acute lymphoblastic leukemia classification from microscopic images using
  convolutional neural networks. In: ISBI 2019 C-NMC Challenge (as above). arXiv:1906.09020.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.vocabulary import DATA_SOURCES, PLAIN, TTA
from leukemia_dtl.evaluate.formatting import CAPTION, MARKDOWN_COLUMNS, mean_sd, mean_sd_text
from leukemia_dtl.evaluate.paper_values import model_name
from leukemia_dtl.evaluate.result_files import metric_entry, read_metrics

log = logging.getLogger(__name__)

PRELIM_PHASE = "prelim"
FINAL_PHASE = "final"
# The labelled images each phase's published results were scored on.
PHASE_IMAGES = {PRELIM_PHASE: 1867, FINAL_PHASE: 2586}
# The labelled training images the challenge's entrants trained on: the archive's three training folds.
CHALLENGE_TRAINING_IMAGES = 10661
# Sources whose external subset is the challenge's prelim-phase test set; the demo's synthetic one is smaller.
REAL_DATA_SOURCES = tuple(source for source in DATA_SOURCES if source != "demo")
# Metric key of metrics.classification_metrics -> (column label, printed as a percentage).
CHALLENGE_METRICS = {
    "weighted_f1": ("Weighted F1 (%)", True),
    "balanced_accuracy": ("Balanced accuracy (%)", True),
    "roc_auc": ("ROC-AUC", False),
}
# Kinds of prediction sets, in table order, and how the table names them.
PREDICTION_KINDS = {PLAIN: "", TTA: ", 8-fold dihedral TTA"}


@dataclass(frozen=True)
class PublishedResult:
    """One published challenge result: its values as printed (see CHALLENGE_METRICS for the units), and which
    version of the publication they come from where there are several."""

    entry: str
    phase: str
    printed: dict[str, str]
    method: str
    source: str
    version: str = ""

    @property
    def citation(self) -> str:
        return f"{self.source} ({self.version})" if self.version else self.source

    def value(self, metric: str) -> float:
        """The printed value as a fraction, NaN where the publication gives none."""
        text = self.printed.get(metric)
        if text is None:
            return math.nan
        return float(text) / (100 if CHALLENGE_METRICS[metric][1] else 1)


_PAN = "Pan et al. 2019, ISBI 2019 C-NMC Challenge (Springer LNBE)"
_MONDAL = "Mondal et al. 2021, Informatics in Medicine Unlocked 27:100794"
_PRELLBERG = "Prellberg & Kramer 2019, ISBI 2019 C-NMC Challenge; arXiv:1906.09020"
PUBLISHED_RESULTS = (
    PublishedResult(
        "Pan et al. 2019 (challenge winner)",
        PRELIM_PHASE,
        {"weighted_f1": "92.50", "balanced_accuracy": "91.73"},
        "neighbourhood-correction algorithm",
        _PAN,
    ),
    PublishedResult(
        "Mondal et al. 2021",
        PRELIM_PHASE,
        {"weighted_f1": "89.7", "balanced_accuracy": "88.3", "roc_auc": "0.948"},
        "weighted ensemble of CNNs",
        _MONDAL,
        "journal version; its preprint's 88.6 / 86.2 / 0.941 are not used",
    ),
    PublishedResult(
        "Pan et al. 2019 (challenge winner)",
        FINAL_PHASE,
        {"weighted_f1": "91.04"},
        "neighbourhood-correction algorithm",
        _PAN,
    ),
    PublishedResult(
        "Prellberg & Kramer 2019",
        FINAL_PHASE,
        {"weighted_f1": "88.91"},
        "ResNeXt50 with squeeze-and-excitation, 8-fold dihedral TTA",
        _PRELLBERG,
    ),
)
OWN_SOURCE = "this workflow"
OWN_PHASE = f"{PRELIM_PHASE} (our external subset)"


def _scaled(metric: str, value: float) -> float:
    return 100 * value if CHALLENGE_METRICS[metric][1] else value


def _digits(metric: str) -> int:
    return 2 if CHALLENGE_METRICS[metric][1] else 3


# A metrics file as read: its path (for messages) and its contents.
Loaded = tuple[str | os.PathLike, dict]


def _load(files: Mapping[tuple, str | os.PathLike]) -> dict[tuple, Loaded]:
    loaded = {}
    for key, path in files.items():
        kind = key[1]
        if kind not in PREDICTION_KINDS:
            raise UserError(
                f"Metrics file {path} is keyed with prediction kind {kind!r}; kinds are {list(PREDICTION_KINDS)}. "
                "Fix the rule's keys."
            )
        loaded[key] = (path, read_metrics(path))
    return loaded


def _image_count(runs: Sequence[Loaded]) -> int:
    """The number of labelled images the metrics files were scored on (their support), the same in each."""
    counts = {}
    for path, metrics in runs:
        if "support" not in metrics:
            raise UserError(
                f"Metrics file {path} has no support (images per class); rerun it: "
                "snakemake --forcerun evaluate_predictions."
            )
        counts[str(path)] = sum(metrics["support"].values())
    if len(set(counts.values())) > 1:
        raise UserError(
            f"One row's metrics files were scored on different numbers of external images ({counts}); rerun them: "
            "snakemake --forcerun evaluate_predictions."
        )
    return next(iter(counts.values()))


def _images_columns(n_images: int) -> tuple[dict, dict]:
    return {"Images": f"{n_images:,}"}, {"n_images": n_images}


def _single_seeds_row(model: str, kind: str, runs: Sequence[Loaded]) -> dict:
    """Mean ± sd over the seeds' metrics of one model and kind."""
    shown_images, images = _images_columns(_image_count(runs))
    row = {
        "Entry": f"{model_name(model)}, single seeds{PREDICTION_KINDS[kind]} (n = {len(runs)})",
        "Phase": OWN_PHASE,
    } | shown_images
    data = {"model": model, "kind": kind, "aggregate": "seeds", "phase": PRELIM_PHASE, "n_seeds": len(runs)} | images
    for metric, (label, _) in CHALLENGE_METRICS.items():
        mean, sd, _ = mean_sd([metric_entry(metrics, metric, path)["value"] for path, metrics in runs])
        row[label] = mean_sd_text(_scaled(metric, mean), _scaled(metric, sd), _digits(metric))
        data |= {metric: mean, f"{metric}_sd": sd, f"{metric}_ci_low": math.nan, f"{metric}_ci_high": math.nan}
    return row | {"Source": OWN_SOURCE} | data


def _ensemble_row(model: str, kind: str, n_seeds: int, ensemble: Loaded, interval: str) -> dict:
    """The ensemble's value and its ``interval`` ("ci" or "subject_ci") bounds."""
    path, metrics = ensemble
    shown_images, images = _images_columns(_image_count([ensemble]))
    row = {
        "Entry": f"{model_name(model)}, seed ensemble{PREDICTION_KINDS[kind]} (mean of {n_seeds})",
        "Phase": OWN_PHASE,
    } | shown_images
    data = {"model": model, "kind": kind, "aggregate": "ensemble", "phase": PRELIM_PHASE, "n_seeds": n_seeds} | images
    for metric, (label, _) in CHALLENGE_METRICS.items():
        entry = metric_entry(metrics, metric, path)
        low, high = entry[f"{interval}_low"], entry[f"{interval}_high"]
        value, shown_low, shown_high = (_scaled(metric, number) for number in (entry["value"], low, high))
        digits = _digits(metric)
        row[label] = f"{value:.{digits}f} [{shown_low:.{digits}f}, {shown_high:.{digits}f}]"
        data |= {metric: entry["value"], f"{metric}_sd": math.nan, f"{metric}_ci_low": low, f"{metric}_ci_high": high}
    return row | {"Source": OWN_SOURCE} | data


def _published_row(result: PublishedResult) -> dict:
    shown_images, images = _images_columns(PHASE_IMAGES[result.phase])
    row = {"Entry": f"{result.entry}: {result.method}", "Phase": result.phase} | shown_images
    data = {"model": "", "kind": "", "aggregate": "published", "phase": result.phase, "n_seeds": math.nan} | images
    for metric, (label, _) in CHALLENGE_METRICS.items():
        row[label] = result.printed.get(metric, "")
        data |= {
            metric: result.value(metric),
            f"{metric}_sd": math.nan,
            f"{metric}_ci_low": math.nan,
            f"{metric}_ci_high": math.nan,
        }
    return row | {"Source": result.citation} | data


def _interval_of(ensembles: Sequence[Loaded]) -> str:
    """Subject-level intervals where every ensemble's metrics have them (the subject is the unit of
    independence on the external subset), else (too few subjects of a class to resample) the image-level ones."""
    entries = [metric_entry(metrics, metric, path) for path, metrics in ensembles for metric in CHALLENGE_METRICS]
    return "subject_ci" if entries and all(entry.get("subject_ci_low") is not None for entry in entries) else "ci"


def image_count_warning(own_counts: Sequence[int], data_source: str) -> str:
    """A warning when a real data source's external subset is not the challenge's prelim-phase test set (the
    rows would then be scored on other images than the published ones); empty otherwise and for the demo."""
    expected = PHASE_IMAGES[PRELIM_PHASE]
    if data_source not in REAL_DATA_SOURCES or set(own_counts) <= {expected}:
        return ""
    counts = " / ".join(f"{count:,}" for count in sorted(set(own_counts)))
    return (
        f"Warning: our external subset has {counts} images, not the challenge's {expected:,} prelim-phase test images "
        f"(data.source: {data_source}), so ours and the published prelim-phase results are not scored on the same "
        "images (the inventory's rejected list names any images it left out)."
    )


def _caption(runs: Sequence[Loaded], interval: str, warning: str) -> str:
    thresholds = sorted({metrics["threshold"] for _, metrics in runs if "threshold" in metrics})
    confidence = next((metrics["confidence"] for _, metrics in runs if "confidence" in metrics), 0.95)
    resampled = "subjects" if interval == "subject_ci" else "images"
    citations = " ".join(dict.fromkeys(f"{result.citation}." for result in PUBLISHED_RESULTS))
    return (
        f"{warning + ' ' if warning else ''}"
        "Prelim phase = this project's external subset (the Kaggle validation_data: subjects never trained on). "
        f"Images = the labelled images each row was scored on (the challenge's: {PHASE_IMAGES[PRELIM_PHASE]:,} "
        f"prelim phase, {PHASE_IMAGES[FINAL_PHASE]:,} final phase). "
        f"Ours call ALL at p_all >= {' / '.join(f'{t:g}' for t in thresholds)} (the configured threshold); "
        f"an ensemble is the mean p_all of its seeds, in brackets its {100 * confidence:g} % bootstrap interval "
        f"resampling {resampled}. Final-phase results are listed only: its labels are not in the Kaggle archive. "
        f"Not like for like: the challenge's entrants trained on all {CHALLENGE_TRAINING_IMAGES:,} labelled "
        "training images, while this workflow trains on its split's train subset only (about 70 % of them); and "
        "leaderboard entries could be resubmitted, so a published score may be the best of several tries, while "
        f"each of ours is scored once. Published values as printed in: {citations}"
    )


def challenge_table(
    seed_metrics_files: Mapping[tuple[str, str, int], str | os.PathLike],
    ensemble_metrics_files: Mapping[tuple[str, str], str | os.PathLike],
    models: Sequence[str],
    data_source: str,
) -> pd.DataFrame:
    """This project's external-subset weighted F1, balanced accuracy and ROC-AUC beside the published challenge
    results. Per model and kind (plain, then TTA where given): the single seeds' mean ± sd from
    ``seed_metrics_files`` keyed (model, kind, seed), then the ensemble's value with its interval from
    ``ensemble_metrics_files`` keyed (model, kind); then the published entries with phase and source. Each row
    counts the images it was scored on; with a real ``data_source`` (config data.source) an external subset of
    another size than the challenge's is logged and noted in the caption (``image_count_warning``).
    The reading columns come first (``attrs["markdown_columns"]``), then the numbers as fractions."""
    seed_runs, ensembles = _load(seed_metrics_files), _load(ensemble_metrics_files)
    interval = _interval_of(list(ensembles.values()))
    rows = []
    for model in models:
        if (model, PLAIN) not in {key[:2] for key in seed_runs}:
            raise UserError(
                f"No external-subset metrics of {model}'s seeds for the challenge table; evaluate {model} or "
                "leave it out of the configured models."
            )
        for kind in PREDICTION_KINDS:
            runs = [run for key, run in seed_runs.items() if key[:2] == (model, kind)]
            if runs:
                rows.append(_single_seeds_row(model, kind, runs))
            if (model, kind) in ensembles:
                rows.append(_ensemble_row(model, kind, len(runs), ensembles[model, kind], interval))
    warning = image_count_warning([row["n_images"] for row in rows], data_source)
    if warning:
        log.warning("%s", warning)
    rows += [_published_row(result) for result in PUBLISHED_RESULTS]
    table = pd.DataFrame(rows)
    table.attrs[MARKDOWN_COLUMNS] = [
        "Entry",
        "Phase",
        "Images",
        *(label for label, _ in CHALLENGE_METRICS.values()),
        "Source",
    ]
    table.attrs[CAPTION] = _caption([*seed_runs.values(), *ensembles.values()], interval, warning)
    return table
