"""Significance tests between two models: paired t-tests over seeds (Holm-adjusted; training-noise tests, as
they pair seeds on one fixed test set), McNemar's test on one test set, and Cohen's kappa of their calls."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pandas as pd
from scipy.stats import ttest_rel
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.vocabulary import TTEST_COLUMNS


def _values_by_seed(per_seed: pd.DataFrame, models: list[str]) -> pd.DataFrame:
    """One row per (subset, metric, seed), one column per model; UserError if a model misses a seed."""
    absent = [model for model in models if model not in set(per_seed["model"])]
    if absent:
        raise UserError(
            f"No per-seed metrics for model(s) {', '.join(absent)}; check that they are trained and "
            "evaluated, or remove them from the configured models."
        )
    rows = per_seed[per_seed["model"].isin(models)]
    keys = ["subset", "metric", "model", "seed"]
    repeated = rows[rows.duplicated(keys)]
    if len(repeated):
        first = repeated.iloc[0]
        raise UserError(
            f"Model {first['model']} has more than one {first['metric']} value for seed {first['seed']} "
            f"on {first['subset']}; each seed must be evaluated once. Remove the duplicate results."
        )
    wide = rows.pivot(index=["subset", "metric", "seed"], columns="model", values="value")
    missing = wide[models].isna().stack()
    if missing.any():
        subset, metric, seed, model = missing[missing].index[0]
        raise UserError(
            f"Model {model} has no {metric} result for seed {seed} on {subset}, but other models do; "
            "paired t-tests need every model run with the same seeds. Train and evaluate the missing seed "
            "or drop it from the configured seeds."
        )
    return wide[models].astype(float)


def holm(p_values: pd.Series) -> pd.Series:
    """Holm-adjusted p-values; NaN (untestable) p-values stay NaN and do not count as tests."""
    adjusted = pd.Series(np.nan, index=p_values.index)
    testable = p_values.notna()
    if testable.any():
        adjusted[testable] = multipletests(p_values[testable], method="holm")[1]
    return adjusted


def paired_ttests(per_seed: pd.DataFrame, models: list[str]) -> pd.DataFrame:
    """Paired t-test per subset, metric and model pair (in ``models`` order), values paired by seed.

    A training-noise test, as the paper ran it: the seeds are the independent unit and the test set is fixed,
    so a small p says the models differ by more than retraining moves them on these images, nothing about new
    subjects. ``per_seed`` has columns subset, metric, model, seed, value. ``p_holm`` adjusts over the metrics
    of one subset and model pair (the Holm family). Zero-variance differences give NaN t and p.
    """
    wide = _values_by_seed(per_seed, models)
    rows = []
    for model_a, model_b in itertools.combinations(models, 2):
        for (subset, metric), group in wide.groupby(level=["subset", "metric"], sort=False):
            values_a, values_b = group[model_a].to_numpy(), group[model_b].to_numpy()
            with warnings.catch_warnings():
                # Zero-variance differences make SciPy warn; they are reported as NaN below.
                warnings.simplefilter("ignore", RuntimeWarning)
                test = ttest_rel(values_a, values_b)
                interval = test.confidence_interval(0.95)
            # A constant difference leaves t undefined, yet SciPy returns +-inf or, after float noise
            # such as 0.3 - 0.4 != 0.6 - 0.7, a t of 1e15: both claim certainty from no spread at all.
            differences = values_a - values_b
            undefined = np.allclose(differences, differences.mean(), rtol=1e-9, atol=1e-12)
            rows.append(
                {
                    "subset": subset,
                    "metric": metric,
                    "model_a": model_a,
                    "model_b": model_b,
                    "mean_a": values_a.mean(),
                    "mean_b": values_b.mean(),
                    "diff": differences.mean(),
                    "ci_low": interval.low,
                    "ci_high": interval.high,
                    "t": np.nan if undefined else test.statistic,
                    "p_value": np.nan if undefined else test.pvalue,
                    "n_seeds": len(values_a),
                }
            )
    result = pd.DataFrame(rows, columns=[c for c in TTEST_COLUMNS if c != "p_holm"])
    result["p_holm"] = result.groupby(["subset", "model_a", "model_b"], sort=False)["p_value"].transform(holm)
    return result[list(TTEST_COLUMNS)]


def mcnemar_test(correct_a, correct_b, exact_threshold: int = 25) -> dict:
    """McNemar's test on per-image correctness of two models: exact binomial below ``exact_threshold``
    discordant pairs, else chi-square with continuity correction."""
    correct_a, correct_b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    only_a = int((correct_a & ~correct_b).sum())
    only_b = int((~correct_a & correct_b).sum())
    exact = only_a + only_b < exact_threshold
    table = [[int((correct_a & correct_b).sum()), only_a], [only_b, int((~correct_a & ~correct_b).sum())]]
    result = mcnemar(table, exact=exact, correction=True)
    return {
        "b": only_a,
        "c": only_b,
        "statistic": float(result.statistic),
        "p_value": float(result.pvalue),
        "method": "exact" if exact else "chi2_cc",
    }


def inter_model_kappa(pred_a, pred_b) -> float:
    """Cohen's kappa between two models' predicted labels."""
    return float(cohen_kappa_score(pred_a, pred_b))
