import numpy as np
import pandas as pd
import pytest
from scipy.stats import chi2, t

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.vocabulary import COMPARISON_TABLES, TTEST_COLUMNS
from leukemia_dtl.evaluate.metrics import evaluate_prediction_file
from leukemia_dtl.evaluate.model_comparison import compare_models
from leukemia_dtl.evaluate.result_files import write_metrics
from leukemia_dtl.evaluate.significance import inter_model_kappa, mcnemar_test, paired_ttests

MODELS = ["vgg19", "efficientnet_b3"]


def _per_seed(values: dict) -> pd.DataFrame:
    """values: {(subset, metric, model): [value for seed 0, 1, ...]} -> long frame."""
    return pd.DataFrame(
        [
            {"subset": subset, "metric": metric, "model": model, "seed": seed, "value": value}
            for (subset, metric, model), by_seed in values.items()
            for seed, value in enumerate(by_seed)
        ]
    )


VALUES = {
    ("test", "accuracy", "vgg19"): [0.80, 0.78, 0.83],
    ("test", "accuracy", "efficientnet_b3"): [0.95, 0.96, 0.94],
    ("test", "f1_hem", "vgg19"): [0.60, 0.66, 0.61],
    ("test", "f1_hem", "efficientnet_b3"): [0.62, 0.65, 0.66],
}


def _hand_ttest(a, b):
    """Paired t by formula: d = a - b, t = mean(d) / (sd(d) / sqrt(n)), df = n - 1."""
    d = np.subtract(a, b)
    n = len(d)
    standard_error = np.sqrt(((d - d.mean()) ** 2).sum() / (n - 1)) / np.sqrt(n)
    t_value = d.mean() / standard_error
    half_width = t.ppf(0.975, n - 1) * standard_error
    return d.mean(), t_value, 2 * t.sf(abs(t_value), n - 1), d.mean() - half_width, d.mean() + half_width


def test_paired_ttest_matches_hand_calculation_and_holm():
    result = paired_ttests(_per_seed(VALUES), MODELS).set_index("metric")
    p_values = {}
    for metric in ("accuracy", "f1_hem"):
        a, b = VALUES[("test", metric, "vgg19")], VALUES[("test", metric, "efficientnet_b3")]
        diff, t_value, p_value, ci_low, ci_high = _hand_ttest(a, b)
        row = result.loc[metric]
        assert (row["subset"], row["model_a"], row["model_b"], row["n_seeds"]) == ("test", *MODELS, 3)
        assert row[["mean_a", "mean_b", "diff", "ci_low", "ci_high", "t", "p_value"]].tolist() == pytest.approx(
            [np.mean(a), np.mean(b), diff, ci_low, ci_high, t_value, p_value]
        )
        p_values[metric] = p_value
    # Holm over two tests: the smaller p doubled, the larger kept but never below the first.
    smaller, larger = sorted(p_values.values())
    holm = {metric: (2 * smaller if p == smaller else max(larger, 2 * smaller)) for metric, p in p_values.items()}
    assert result["p_holm"].to_dict() == pytest.approx({metric: min(1.0, p) for metric, p in holm.items()})


def test_accuracy_gap_has_known_values():
    """accuracy: d = (-.15, -.18, -.11), mean -0.14667, sd 0.035119, t = -7.2336 on 2 df."""
    row = paired_ttests(_per_seed(VALUES), MODELS).query("metric == 'accuracy'").iloc[0]
    assert row["diff"] == pytest.approx(-0.146667, abs=1e-6)
    assert row["t"] == pytest.approx(-7.2336, abs=1e-4)


def test_output_columns_and_model_pair_order():
    values = dict(VALUES)
    values[("test", "accuracy", "resnet50")] = [0.9, 0.91, 0.92]
    values[("test", "f1_hem", "resnet50")] = [0.7, 0.72, 0.69]
    models = ["vgg19", "efficientnet_b3", "resnet50"]
    result = paired_ttests(_per_seed(values), models)
    assert list(result.columns) == list(TTEST_COLUMNS)
    pairs = list(dict.fromkeys(zip(result["model_a"], result["model_b"], strict=True)))
    assert pairs == [("vgg19", "efficientnet_b3"), ("vgg19", "resnet50"), ("efficientnet_b3", "resnet50")]


def test_string_values_from_a_tsv_are_accepted():
    frame = _per_seed(VALUES).astype(str)
    assert paired_ttests(frame, MODELS)["n_seeds"].tolist() == [3, 3]


def test_missing_seed_names_model_and_seed():
    frame = _per_seed(VALUES)
    frame = frame[~((frame["model"] == "efficientnet_b3") & (frame["seed"] == 2))]
    with pytest.raises(UserError, match=r"efficientnet_b3 .*seed 2"):
        paired_ttests(frame, MODELS)


def test_seed_evaluated_twice_is_a_user_error():
    frame = _per_seed(VALUES)
    frame = pd.concat([frame, frame.iloc[[0]]])
    with pytest.raises(UserError, match="vgg19 has more than one accuracy value for seed 0"):
        paired_ttests(frame, MODELS)


def test_model_without_results_is_a_user_error():
    with pytest.raises(UserError, match="resnet50"):
        paired_ttests(_per_seed(VALUES), [*MODELS, "resnet50"])


def test_zero_variance_difference_gives_nan_without_failing():
    values = dict(VALUES)
    # 0.1 apart every seed; in floats 0.3 - 0.4 and 0.6 - 0.7 differ by 1e-16, which SciPy turns into t = -3e15.
    values[("test", "f1_hem", "vgg19")] = [0.3, 0.6, 0.7]
    values[("test", "f1_hem", "efficientnet_b3")] = [0.4, 0.7, 0.8]
    result = paired_ttests(_per_seed(values), MODELS).set_index("metric")
    assert np.isnan(result.loc["f1_hem", ["t", "p_value", "p_holm"]].astype(float)).all()
    assert result.loc["f1_hem", "diff"] == pytest.approx(-0.10)
    # The untestable metric does not count towards Holm: the accuracy p stays unadjusted.
    assert result.loc["accuracy", "p_holm"] == pytest.approx(result.loc["accuracy", "p_value"])


def _correctness_from_table(both, only_a, only_b, neither):
    correct_a = np.repeat([True, True, False, False], [both, only_a, only_b, neither])
    correct_b = np.repeat([True, False, True, False], [both, only_a, only_b, neither])
    return correct_a, correct_b


def test_mcnemar_on_agresti_table():
    """Agresti A. Categorical Data Analysis, 2nd ed. (Wiley, 2002), Section 10.1, Table 10.1:
    the same 1600 people rated a head of government's performance in two surveys,
    approve/approve 794, approve/disapprove 150, disapprove/approve 86, disapprove/disapprove 570.
    Agresti reports McNemar's z = (86 - 150) / sqrt(86 + 150) = -4.17 (z^2 = 17.36, no correction).
    With continuity correction: (|150 - 86| - 1)^2 / 236 = 16.818."""
    result = mcnemar_test(*_correctness_from_table(794, 150, 86, 570))
    assert (result["b"], result["c"], result["method"]) == (150, 86, "chi2_cc")
    assert (result["b"] - result["c"]) ** 2 / (result["b"] + result["c"]) == pytest.approx(17.36, abs=0.005)
    assert result["statistic"] == pytest.approx(3969 / 236)
    assert result["p_value"] == pytest.approx(chi2.sf(3969 / 236, 1))
    assert result["p_value"] == pytest.approx(4.11e-5, rel=1e-2)


def test_mcnemar_exact_for_few_discordant_pairs():
    """b = 1, c = 7: two-sided binomial p = 2 * P(X <= 1 | n=8, 1/2) = 2 * (1 + 8) / 256."""
    result = mcnemar_test(*_correctness_from_table(30, 1, 7, 5))
    assert result["method"] == "exact"
    assert result["p_value"] == pytest.approx(18 / 256)
    assert result["statistic"] == 1


def test_mcnemar_threshold_switches_method():
    table = _correctness_from_table(30, 1, 7, 5)
    assert mcnemar_test(*table, exact_threshold=8)["method"] == "chi2_cc"
    assert mcnemar_test(*table, exact_threshold=9)["method"] == "exact"


def test_mcnemar_without_disagreement():
    result = mcnemar_test([True, False, True], [True, False, True])
    assert (result["b"], result["c"], result["p_value"]) == (0, 0, 1.0)


def test_inter_model_kappa_by_hand():
    """Agreement 3/4; both models call ALL half/quarter of the time:
    p_e = 1/2 * 1/4 + 1/2 * 3/4 = 1/2 -> kappa = (3/4 - 1/2) / (1 - 1/2) = 1/2."""
    assert inter_model_kappa(["ALL", "ALL", "HEM", "HEM"], ["ALL", "HEM", "HEM", "HEM"]) == pytest.approx(0.5)


def _write_predictions(path, p_all) -> None:
    labels = ["ALL", "ALL", "HEM", "HEM", "ALL", "HEM"]
    pd.DataFrame(
        {
            "path": [f"img_{index}.bmp" for index in range(6)],
            "subject": ["a", "a", "h1", "h1", "b", "h2"],
            "label": labels,
            "p_all": p_all,
            "pred": ["ALL" if p >= 0.5 else "HEM" for p in p_all],
        }
    ).to_csv(path, sep="\t", index=False)


def test_every_comparison_table_names_its_independent_unit(tmp_path):
    scores = {
        "vgg19": [[0.9, 0.4, 0.6, 0.2, 0.7, 0.3], [0.8, 0.6, 0.3, 0.4, 0.9, 0.6]],
        "efficientnet_b3": [[0.9, 0.8, 0.1, 0.2, 0.7, 0.4], [0.7, 0.9, 0.2, 0.3, 0.8, 0.1]],
    }
    predictions, metrics = {}, {}
    for model, by_seed in scores.items():
        for seed, p_all in enumerate(by_seed):
            predictions[model, seed, "test"] = tmp_path / f"{model}_{seed}.tsv"
            _write_predictions(predictions[model, seed, "test"], p_all)
            metrics[model, seed, "test"] = tmp_path / f"{model}_{seed}.json"
            write_metrics(
                evaluate_prediction_file(predictions[model, seed, "test"], 0.5, 20, 0, 0.95),
                metrics[model, seed, "test"],
            )
    tables = compare_models(metrics, predictions, MODELS, threshold=0.5, mcnemar_exact_below=25)
    assert list(tables) == list(COMPARISON_TABLES)
    assert list(tables["paired_ttests"].columns) == [*TTEST_COLUMNS, "independent_unit"]
    assert {name: set(table["independent_unit"]) for name, table in tables.items()} == {
        "paired_ttests": {"seed"},
        "mcnemar": {"image"},
        "delong": {"image"},
        "agreement": {"image"},
    }
    # One McNemar row per seed, each counting the 6 images as independent pairs.
    assert tables["mcnemar"]["n"].tolist() == [6, 6]
    assert (tables["paired_ttests"]["n_seeds"] == 2).all()
