"""The leakage table: what the image-level split costs against the patient split and the external subset."""

import numpy as np
import pytest

from evaluation_results import MODELS, seed_values, write_metrics_files
from leukemia_dtl.core.errors import UserError
from leukemia_dtl.evaluate.leakage_table import leakage_table
from leukemia_dtl.evaluate.result_files import per_seed_metrics
from leukemia_dtl.evaluate.table1 import TABLE1_METRICS


@pytest.fixture(scope="module")
def per_seed(tmp_path_factory):
    return per_seed_metrics(write_metrics_files(tmp_path_factory.mktemp("metrics"), models=[*MODELS, "resnet50"]))


def _shifted(per_seed, shift):
    return per_seed.assign(value=per_seed["value"] + np.where(per_seed["subset"] == "test", shift, 0.0))


def test_leakage_table_differences(per_seed):
    by_scheme = {"random": _shifted(per_seed, 0.05), "patient": per_seed}
    table = leakage_table(by_scheme).set_index(["model", "metric"])
    assert list(table.columns) == [
        "Metric",
        "test_random",
        "test_patient",
        "external_random",
        "external_patient",
        "test_random_minus_test_patient",
        "test_random_minus_external_random",
        "test_patient_minus_external_patient",
    ]
    assert len(table) == 3 * len(TABLE1_METRICS)
    row = table.loc[("efficientnetb3", "roc_auc")]
    test_patient = seed_values(per_seed, "test", "roc_auc", "efficientnetb3").mean()
    external = seed_values(per_seed, "external", "roc_auc", "efficientnetb3").mean()
    assert row["test_patient"] == pytest.approx(test_patient)
    assert row["test_random_minus_test_patient"] == pytest.approx(row["test_random"] - row["test_patient"])
    assert row["test_random_minus_test_patient"] == pytest.approx(0.05)
    assert row["test_patient_minus_external_patient"] == pytest.approx(test_patient - external)


def test_leakage_table_needs_both_schemes(per_seed):
    with pytest.raises(UserError, match="patient"):
        leakage_table({"random": per_seed})
