import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    accuracy_score,
    cohen_kappa_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.fileio import read_tsv
from leukemia_dtl.core.run_paths import SET_PREDICTIONS, in_set
from leukemia_dtl.evaluate.metrics import evaluate_prediction_file
from leukemia_dtl.evaluate.paper_values import TABLE1
from leukemia_dtl.evaluate.subject_comparison import (
    bootstrap_p_value,
    ensemble_mcnemar,
    paired_subject_bootstrap,
    subject_comparison,
)
from rule_scripts import run_rule_script

MODELS = ["vgg19", "efficientnetb3"]
# The contract the tables read, in order.
COMPARISON_COLUMNS = [
    "subset",
    "predictions",
    "metric",
    "reference",
    "model",
    "reference_value",
    "model_value",
    "difference",
    "ci_low",
    "ci_high",
    "p_value",
    "p_holm",
    "holm_family",
    "n_subjects_all",
    "n_subjects_hem",
    "n_bootstrap",
    "confidence",
    "independent_unit",
]
MCNEMAR_COLUMNS = [
    "subset",
    "predictions",
    "reference",
    "model",
    "n",
    "b",
    "c",
    "statistic",
    "p_value",
    "method",
    "p_holm",
    "independent_unit",
]
STATISTICS = {"threshold": 0.5, "bootstrap_resamples": 60, "seed": 3, "confidence": 0.9, "min_subjects_per_class": 3}


def sklearn_metrics(y_true, p_all, threshold=0.5) -> dict[str, float]:
    """Table 1's metrics straight from scikit-learn."""
    called = (p_all >= threshold).astype(int)
    return {
        "accuracy": accuracy_score(y_true, called),
        "precision_all": precision_score(y_true, called, zero_division=0),
        "recall_all": recall_score(y_true, called, zero_division=0),
        "f1_all": f1_score(y_true, called, zero_division=0),
        "precision_hem": precision_score(y_true, called, pos_label=0, zero_division=0),
        "recall_hem": recall_score(y_true, called, pos_label=0, zero_division=0),
        "f1_hem": f1_score(y_true, called, pos_label=0, zero_division=0),
        "roc_auc": roc_auc_score(y_true, p_all),
        "cohen_kappa": cohen_kappa_score(y_true, called),
    }


def explicit_paired_bootstrap(y_true, reference_p_all, model_p_all, subjects, n_bootstrap, seed):
    """Per metric, the B differences model - reference, resampled by a loop: the ALL subjects (in order of first
    appearance) drawn with replacement, then the HEM subjects, each drawn subject with all its images, both models
    scored by scikit-learn on the same concatenated images."""
    order = list(dict.fromkeys(subjects))
    images = {subject: np.flatnonzero(np.asarray(subjects) == subject) for subject in order}
    by_class = [[subject for subject in order if y_true[images[subject][0]] == label] for label in (1, 0)]
    rng = np.random.default_rng(seed)
    draws = [rng.integers(0, len(members), size=(n_bootstrap, len(members))) for members in by_class]
    differences = {metric: [] for metric in TABLE1}
    for resample in range(n_bootstrap):
        drawn = np.concatenate(
            [
                images[members[index]]
                for members, drawn in zip(by_class, draws, strict=True)
                for index in drawn[resample]
            ]
        )
        reference = sklearn_metrics(y_true[drawn], reference_p_all[drawn])
        model = sklearn_metrics(y_true[drawn], model_p_all[drawn])
        for metric in TABLE1:
            differences[metric].append(model[metric] - reference[metric])
    return {metric: np.array(values) for metric, values in differences.items()}


def inverted_interval_p_value(differences) -> float:
    """The smallest a whose order-statistic percentile interval d*(k), d*(B + 1 - k), k = floor((B + 1) a / 2),
    excludes 0, found by trying every k; 1 when none does."""
    ordered, count = np.sort(differences), len(differences)
    for k in range(1, (count + 1) // 2 + 1):
        if ordered[k - 1] > 0 or ordered[count - k] < 0:
            return min(1.0, 2 * k / (count + 1))
    return 1.0


def clustered_predictions(seed=0, n_all=6, n_hem=5):
    """Subjects of 1-5 images, ALL and HEM interleaved; the model is better informed than the reference."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation([1] * n_all + [0] * n_hem)
    sizes = rng.integers(1, 6, size=len(labels))
    subjects = np.repeat([f"UID_{index:02d}" for index in rng.permutation(len(labels))], sizes)
    y_true = np.repeat(labels, sizes)
    shift = np.repeat(rng.normal(0, 0.15, len(labels)), sizes)  # a subject effect
    reference = np.clip(0.45 + 0.1 * y_true + shift + rng.normal(0, 0.15, len(y_true)), 0, 1)
    model = np.clip(0.35 + 0.3 * y_true + shift + rng.normal(0, 0.15, len(y_true)), 0, 1)
    return y_true, np.round(reference, 3), np.round(model, 3), subjects


def _bootstrap(y_true, reference, model, subjects, **settings):
    # 30 resamples keep the scikit-learn loops that check them short.
    options = {"threshold": 0.5, "n_bootstrap": 30, "seed": 3, "confidence": 0.9, "min_subjects_per_class": 2}
    return paired_subject_bootstrap(y_true, reference, model, subjects, **options | settings)


def test_paired_subject_bootstrap_equals_an_explicit_resampling_loop():
    y_true, reference, model, subjects = clustered_predictions()
    comparison, support = _bootstrap(y_true, reference, model, subjects)
    assert support == {"ALL": 6, "HEM": 5}
    differences = explicit_paired_bootstrap(y_true, reference, model, subjects, n_bootstrap=30, seed=3)
    reference_values, model_values = sklearn_metrics(y_true, reference), sklearn_metrics(y_true, model)
    assert list(comparison) == list(TABLE1)
    for metric, entry in comparison.items():
        assert entry["reference_value"] == pytest.approx(reference_values[metric]), metric
        assert entry["model_value"] == pytest.approx(model_values[metric]), metric
        assert entry["difference"] == pytest.approx(model_values[metric] - reference_values[metric]), metric
        expected_interval = np.percentile(differences[metric], [5, 95])
        assert [entry["ci_low"], entry["ci_high"]] == pytest.approx(expected_interval, abs=1e-12), metric
        assert entry["p_value"] == pytest.approx(inverted_interval_p_value(differences[metric])), metric
    # The data make the model better: the test has something to find.
    assert comparison["roc_auc"]["difference"] > 0 and comparison["roc_auc"]["p_value"] < 1


def test_with_one_image_per_subject_the_subject_bootstrap_is_the_paired_image_bootstrap():
    y_true, reference, model, _ = clustered_predictions(seed=1)
    # One subject per image, named out of image order, so that only their order of appearance can match.
    subjects = [f"subject_{name}" for name in np.random.default_rng(5).permutation(len(y_true))]
    comparison, support = _bootstrap(y_true, reference, model, subjects)
    assert support == {"ALL": int(y_true.sum()), "HEM": int((1 - y_true).sum())}
    image_differences = explicit_paired_bootstrap(
        y_true, reference, model, np.arange(len(y_true)), n_bootstrap=30, seed=3
    )
    for metric, entry in comparison.items():
        expected_interval = np.percentile(image_differences[metric], [5, 95])
        assert [entry["ci_low"], entry["ci_high"]] == pytest.approx(expected_interval, abs=1e-12), metric
        assert entry["p_value"] == pytest.approx(inverted_interval_p_value(image_differences[metric])), metric


def test_identical_models_differ_by_zero_with_p_one():
    y_true, reference, _, subjects = clustered_predictions(seed=2)
    comparison, _ = _bootstrap(y_true, reference, reference.copy(), subjects)
    for metric, entry in comparison.items():
        assert (entry["difference"], entry["ci_low"], entry["ci_high"], entry["p_value"]) == (0, 0, 0, 1), metric


def test_bootstrap_p_value_by_hand():
    # No resample at or below 0: the least p that 9 resamples can show, 2 / 10.
    assert bootstrap_p_value([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]) == pytest.approx(0.2)
    # One of 9 at or below 0: 2 (1 + 1) / 10.
    assert bootstrap_p_value([-0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]) == pytest.approx(0.4)
    # Ties at 0 count in both tails.
    assert bootstrap_p_value([0, 0, 0, 0.1]) == 1.0
    for differences in ([0.1] * 9, [-0.3, 0.2, 0.3, 0.4, 0, 0.6, -0.7, 0.8, 0.9], np.linspace(-1, 3, 40)):
        assert bootstrap_p_value(differences) == pytest.approx(inverted_interval_p_value(differences))


def test_too_few_subjects_of_a_class_leave_interval_and_p_empty():
    y_true, reference, model, subjects = clustered_predictions(seed=3, n_all=6, n_hem=2)
    comparison, support = _bootstrap(y_true, reference, model, subjects, min_subjects_per_class=3)
    assert support == {"ALL": 6, "HEM": 2}
    for metric, entry in comparison.items():
        assert np.isnan([entry["ci_low"], entry["ci_high"], entry["p_value"]]).all(), metric
        assert entry["difference"] == pytest.approx(entry["model_value"] - entry["reference_value"]), metric
    enough, _ = _bootstrap(y_true, reference, model, subjects, min_subjects_per_class=2)
    assert not np.isnan(enough["accuracy"]["p_value"])


def _write(path, frame: pd.DataFrame):
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, sep="\t", index=False)
    return path


def _frame(y_true, p_all, subjects, prefix=""):
    return pd.DataFrame(
        {
            "path": [f"{prefix}img_{index:03d}.bmp" for index in range(len(y_true))],
            "subject": subjects,
            "label": np.where(y_true == 1, "ALL", "HEM"),
            "p_all": p_all,
            "pred": np.where(p_all >= 0.5, "ALL", "HEM"),
        }
    )


@pytest.fixture(scope="module")
def prediction_files(tmp_path_factory):
    """Seeds 0 and 1 and their ensemble, plain and TTA, of both models on test (11 subjects) and external (6 ALL,
    2 HEM subjects); each efficientnetb3 file lists its images in another order than vgg19's."""
    tmp_path = tmp_path_factory.mktemp("predictions")
    seed_files, ensemble_files = {}, {}
    data = {"test": clustered_predictions(seed=4), "external": clustered_predictions(seed=5, n_all=6, n_hem=2)}
    for subset, (y_true, reference, model, subjects) in data.items():
        for kind, tta_shift in (("plain", 0.0), ("tta", 0.02)):
            for seed, seed_shift in ((0, -0.03), (1, 0.03), (None, 0.0)):
                for name, p_all in zip(MODELS, (reference, model), strict=True):
                    frame = _frame(y_true, np.clip(p_all + tta_shift + seed_shift, 0, 1), subjects, f"{subset}/")
                    if name != MODELS[0]:
                        frame = frame.sample(frac=1, random_state=0)
                    # Where the workflow puts the file: the rule script reads its run from its path.
                    workflow_path = in_set(SET_PREDICTIONS, kind, seed).format(
                        scheme="patient", model=name, subset=subset
                    )
                    path = _write(tmp_path / workflow_path, frame)
                    if seed is None:
                        ensemble_files[name, kind, subset] = path
                    else:
                        seed_files[name, kind, seed, subset] = path
    return seed_files, ensemble_files


def _compare(seed_files, ensemble_files, models=MODELS):
    return subject_comparison(
        seed_files,
        ensemble_files,
        models,
        threshold=0.5,
        n_bootstrap=60,
        seed=3,
        confidence=0.9,
        min_subjects_per_class=3,
    )


@pytest.fixture(scope="module")
def comparison(prediction_files):
    return _compare(*prediction_files)


def test_subject_comparison_rows_columns_and_holm_families(comparison):
    table = comparison
    assert list(table.columns) == COMPARISON_COLUMNS
    sets = ["ensemble", "ensemble/tta", "seed0", "seed1", "seed0/tta", "seed1/tta"]
    assert list(dict.fromkeys(zip(table["subset"], table["predictions"], strict=True))) == [
        (subset, predictions) for subset in ("test", "external") for predictions in sets
    ]
    assert (table.groupby(["subset", "predictions"], sort=False)["metric"].agg(list) == [list(TABLE1)] * 12).all()
    assert set(table["reference"]) == {"vgg19"} and set(table["model"]) == {"efficientnetb3"}
    assert set(table["independent_unit"]) == {"subject"}
    assert (table["n_bootstrap"] == 60).all() and (table["confidence"] == 0.9).all()
    test = table[table["subset"] == "test"]
    assert set(zip(test["n_subjects_all"], test["n_subjects_hem"], strict=True)) == {(6, 5)}
    for (subset, predictions), family in test.groupby(["subset", "predictions"], sort=False):
        assert set(family["holm_family"]) == {f"9 Table 1 metrics of {subset}, {predictions}, efficientnetb3 vs vgg19"}
        assert family["p_holm"].tolist() == pytest.approx(multipletests(family["p_value"], method="holm")[1])
    # external has 2 HEM subjects, fewer than the 3 asked for: values and differences, no interval, no p.
    external = table[table["subset"] == "external"]
    assert external[["ci_low", "ci_high", "p_value", "p_holm"]].isna().all().all()
    assert set(external["holm_family"]) == {"none: fewer than 3 subjects of a class (6 ALL, 2 HEM)"}
    assert external["difference"].notna().all()


def test_the_values_compared_are_the_metrics_files_values(prediction_files, comparison):
    seed_files, _ = prediction_files
    table = comparison.set_index(["subset", "predictions", "metric"])
    for model, column in zip(MODELS, ("reference_value", "model_value"), strict=True):
        metrics = evaluate_prediction_file(seed_files[model, "tta", 1, "test"], 0.5, 10, 0, 0.95)
        for metric in TABLE1:
            assert table.loc[("test", "seed1/tta", metric), column] == pytest.approx(metrics[metric]["value"]), metric


def test_a_single_model_gives_empty_tables_with_their_columns(prediction_files):
    seed_files, ensemble_files = prediction_files
    assert list(_compare(seed_files, ensemble_files, ["vgg19"]).columns) == COMPARISON_COLUMNS
    mcnemar_table = ensemble_mcnemar(ensemble_files, ["vgg19"], threshold=0.5, mcnemar_exact_below=25)
    assert mcnemar_table.empty and list(mcnemar_table.columns) == MCNEMAR_COLUMNS


def test_a_model_without_a_prediction_set_is_a_user_error(prediction_files):
    seed_files, ensemble_files = prediction_files
    seed_files = {key: path for key, path in seed_files.items() if key != ("efficientnetb3", "tta", 1, "external")}
    with pytest.raises(UserError, match="No seed1/tta predictions of efficientnetb3 on external"):
        _compare(seed_files, ensemble_files)


def test_ensemble_mcnemar_rows_equal_statsmodels(prediction_files):
    _, ensemble_files = prediction_files
    table = ensemble_mcnemar(ensemble_files, MODELS, threshold=0.55, mcnemar_exact_below=25)
    assert list(table.columns) == MCNEMAR_COLUMNS
    assert list(zip(table["subset"], table["predictions"], strict=True)) == [
        (subset, predictions) for subset in ("test", "external") for predictions in ("ensemble", "ensemble/tta")
    ]
    for _, row in table.iterrows():
        kind = "tta" if row["predictions"].endswith("/tta") else "plain"
        frames = [
            read_tsv(ensemble_files[model, kind, row["subset"]]).sort_values("path", ignore_index=True)
            for model in MODELS
        ]
        truth = frames[0]["label"] == "ALL"
        reference_right, model_right = ((frame["p_all"].astype(float) >= 0.55) == truth for frame in frames)
        contingency = pd.crosstab(reference_right, model_right).reindex(
            index=[True, False], columns=[True, False], fill_value=0
        )
        exact = contingency.loc[True, False] + contingency.loc[False, True] < 25
        expected = mcnemar(contingency.to_numpy(), exact=exact, correction=True)
        assert (row["b"], row["c"]) == (contingency.loc[True, False], contingency.loc[False, True])
        assert row["n"] == len(truth)
        assert (row["statistic"], row["p_value"]) == pytest.approx((expected.statistic, expected.pvalue))
        assert row["method"] == ("exact" if exact else "chi2_cc")
        assert (row["reference"], row["model"], row["independent_unit"]) == ("vgg19", "efficientnetb3", "image")
    for _, family in table.groupby("predictions"):
        assert family["p_holm"].tolist() == pytest.approx(multipletests(family["p_value"], method="holm")[1])


def test_the_rule_script_writes_both_tables(prediction_files, comparison, tmp_path):
    seed_files, ensemble_files = prediction_files
    outputs = {name: tmp_path / "stats" / f"{name}.tsv" for name in ("subject_comparison", "ensemble_mcnemar")}
    run_rule_script(
        "compare_subjects.py",
        input={"ensemble": list(ensemble_files.values()), "seeds": list(seed_files.values())},
        output={name: str(path) for name, path in outputs.items()},
        params={
            "models": MODELS,
            "statistics": STATISTICS | {"mcnemar_exact_below": 25},
        },
    )
    written = read_tsv(outputs["subject_comparison"])
    assert list(written.columns) == COMPARISON_COLUMNS and len(written) == 2 * 6 * 9
    assert written["p_value"].replace("", np.nan).astype(float).tolist() == pytest.approx(
        comparison["p_value"].tolist(), nan_ok=True
    )
    assert list(read_tsv(outputs["ensemble_mcnemar"]).columns) == MCNEMAR_COLUMNS
