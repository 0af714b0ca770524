"""What the image-level (random) split costs: each metric's mean over seeds under the random and the patient
split, on the test and external subsets, and their differences, as one table."""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import pandas as pd

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.vocabulary import PATIENT_SPLIT, RANDOM_SPLIT, REPORTED_SUBSETS
from leukemia_dtl.evaluate.formatting import MARKDOWN_COLUMNS
from leukemia_dtl.evaluate.table1 import METRIC_LABELS, TABLE1_METRICS


def _metric_order(metrics) -> list[str]:
    """Table 1's metrics in the paper's order, then any others in their given order."""
    present = list(dict.fromkeys(metrics))
    return [metric for metric in TABLE1_METRICS if metric in present] + [
        metric for metric in present if metric not in TABLE1_METRICS
    ]


def leakage_table(per_seed_by_scheme: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """What the image-level (random) split costs: per model and metric, the mean over seeds on the test
    and external subsets under each split scheme, and the differences
    ``test_random_minus_test_patient`` (optimism of the leaky split) and
    ``test_<scheme>_minus_external_<scheme>`` (how far each internal test overstates external data)."""
    missing = [scheme for scheme in (RANDOM_SPLIT, PATIENT_SPLIT) if scheme not in per_seed_by_scheme]
    if missing:
        raise UserError(
            f"The leakage table compares the random and patient split schemes, but {' and '.join(missing)} "
            "has no results; add both to split.schemes in the config."
        )
    long = pd.concat([frame.assign(scheme=scheme) for scheme, frame in per_seed_by_scheme.items()], ignore_index=True)
    long = long[long["subset"].isin(REPORTED_SUBSETS)]
    means = (
        long.groupby(["model", "metric", "subset", "scheme"], sort=False)["value"].mean().unstack(["subset", "scheme"])
    )
    means.columns = [f"{subset}_{scheme}" for subset, scheme in means.columns]
    for column in ("test_random", "test_patient"):
        if column not in means:
            raise UserError(
                f"The {column.split('_')[1]} split scheme has no test-subset results for the leakage table."
            )
    schemes = [scheme for scheme in per_seed_by_scheme if f"external_{scheme}" in means]
    columns = ["test_random", "test_patient", *(f"external_{scheme}" for scheme in schemes)]
    table = means[columns].copy()
    table["test_random_minus_test_patient"] = table["test_random"] - table["test_patient"]
    for scheme in schemes:
        table[f"test_{scheme}_minus_external_{scheme}"] = table[f"test_{scheme}"] - table[f"external_{scheme}"]

    order = itertools.product(dict.fromkeys(long["model"]), _metric_order(long["metric"]))
    table = table.loc[[key for key in order if key in table.index]].reset_index()
    table.insert(1, "Metric", table["metric"].map(lambda metric: METRIC_LABELS.get(metric, metric)))
    table.attrs[MARKDOWN_COLUMNS] = [column for column in table.columns if column != "metric"]
    return table
