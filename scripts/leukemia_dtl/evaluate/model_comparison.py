"""Every model pair of one split scheme compared: paired t-tests over seeds, and per seed and held-out subset
McNemar's test, DeLong's test and the models' agreement.

The paired t-tests are the paper's, and they are training-noise tests: they pair the models' scores on one fixed
test set by training seed, so they ask whether one model beats the other more than retraining moves either, not
whether it would on new subjects. :mod:`subject_comparison` compares the models with the subject as the unit.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from leukemia_dtl.core.decisions import called_all
from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.vocabulary import COMPARISON_TABLES
from leukemia_dtl.evaluate.delong import delong_roc_test
from leukemia_dtl.evaluate.result_files import align_predictions, is_all, per_seed_metrics, read_predictions
from leukemia_dtl.evaluate.significance import inter_model_kappa, mcnemar_test, paired_ttests

RunKey = tuple[str, int, str]  # (model, seed, subset)

# What each comparison table treats as independent: the t-tests (training-noise tests) pair the models' metrics by
# training seed on one test set, the others count images of one seed's predictions (not subjects: C-NMC images
# cluster by subject).
UNIT_COLUMN = "independent_unit"
INDEPENDENT_UNITS = {"paired_ttests": "seed", "mcnemar": "image", "delong": "image", "agreement": "image"}


def _per_seed_pairs(prediction_files: Mapping[RunKey, str | os.PathLike], models: Sequence[str]):
    """Every (subset, seed, model_a, model_b) with the two models' aligned predictions."""
    seeds = sorted({seed for _, seed, _ in prediction_files})
    subsets = sorted({subset for _, _, subset in prediction_files})
    for subset, seed, (model_a, model_b) in itertools.product(subsets, seeds, itertools.combinations(models, 2)):
        files = [prediction_files.get((model, seed, subset)) for model in (model_a, model_b)]
        missing = [model for model, path in zip((model_a, model_b), files, strict=True) if path is None]
        if missing:
            raise UserError(f"no {subset} predictions of {missing} for seed {seed}: every model needs every seed")
        a, b = align_predictions(read_predictions(files[0]), read_predictions(files[1]), files[0], files[1])
        yield {"subset": subset, "seed": seed, "model_a": model_a, "model_b": model_b}, a, b


def compare_models(
    metrics_files: Mapping[RunKey, str | os.PathLike],
    prediction_files: Mapping[RunKey, str | os.PathLike],
    models: Sequence[str],
    threshold: float,
    mcnemar_exact_below: int,
) -> dict[str, pd.DataFrame]:
    """Paired t-tests over seeds (training-noise tests, Holm over the metrics of one subset and model pair), and per
    seed McNemar, DeLong and inter-model kappa, for each model pair; each table's last column,
    ``independent_unit``, names the unit its test treats as independent.

    McNemar and the agreement compare the models' calls at ``threshold`` (:func:`metrics.called_all`), the
    calls behind the metrics files; the prediction tables' ``pred`` column (the argmax) is not used."""
    mcnemar_rows, delong_rows, agreement_rows = [], [], []
    for key, a, b in _per_seed_pairs(prediction_files, models):
        truth = is_all(a).astype(bool)
        called_a, called_b = called_all(a["p_all"], threshold), called_all(b["p_all"], threshold)
        mcnemar_rows.append(
            key | {"n": len(a)} | mcnemar_test(called_a == truth, called_b == truth, mcnemar_exact_below)
        )
        delong_rows.append(key | delong_roc_test(truth, a["p_all"], b["p_all"]))
        agreement_rows.append(
            key | {"agreement": float(np.mean(called_a == called_b)), "kappa": inter_model_kappa(called_a, called_b)}
        )
    tables = (
        paired_ttests(per_seed_metrics(metrics_files), list(models)),
        pd.DataFrame(mcnemar_rows),
        pd.DataFrame(delong_rows),
        pd.DataFrame(agreement_rows),
    )
    return {
        name: table.assign(**{UNIT_COLUMN: INDEPENDENT_UNITS[name]})
        for name, table in zip(COMPARISON_TABLES, tables, strict=True)
    }
