import numpy as np
import pytest
from scipy.stats import mannwhitneyu, norm

from leukemia_dtl.evaluate.delong import delong_auc_variance, delong_roc_test

# Tiny example worked by hand from DeLong et al. (1988), eq. for the structural components:
# psi(x, y) = 1 if x > y, 1/2 if x == y, 0 otherwise;
# V10(X_i) = mean_j psi(X_i, Y_j), V01(Y_j) = mean_i psi(X_i, Y_j);
# var(AUC) = S10 / m + S01 / n with S the sample (co)variances (ddof=1) of the components.
Y_TRUE = np.array([1, 1, 1, 0, 0])
SCORES_A = np.array([0.8, 0.6, 0.4, 0.6, 0.3])
SCORES_B = np.array([0.9, 0.2, 0.7, 0.5, 0.1])


def test_single_curve_matches_hand_worked_components():
    """Positives 0.8, 0.6, 0.4; negatives 0.6, 0.3 (one tie).

    V10 = (1, 3/4, 1/2), V01 = (1/2, 1) -> AUC = 3/4;
    S10 = var(1, .75, .5) = 1/16, S01 = var(.5, 1) = 1/8 -> var = (1/16)/3 + (1/8)/2 = 1/12.
    """
    auc, variance = delong_auc_variance(Y_TRUE, SCORES_A)
    assert auc == pytest.approx(3 / 4)
    assert variance == pytest.approx(1 / 12)


def test_paired_test_matches_hand_worked_components():
    """Curve B: V10 = (1, 1/2, 1), V01 = (2/3, 1) -> AUC = 5/6.

    Positive components: var_A = 1/16, var_B = 1/12, cov_AB = 0.
    Negative components: var_A = 1/8, var_B = 1/18, cov_AB = 1/12.
    var(A - B) = (1/16 + 1/12) / 3 + (1/8 + 1/18 - 2/12) / 2 = 1/18,
    z = (3/4 - 5/6) / sqrt(1/18) = -sqrt(2) / 4.
    """
    result = delong_roc_test(Y_TRUE, SCORES_A, SCORES_B)
    z = -np.sqrt(2) / 4
    assert result["auc_a"] == pytest.approx(3 / 4)
    assert result["auc_b"] == pytest.approx(5 / 6)
    assert result["diff"] == pytest.approx(-1 / 12)
    assert result["z"] == pytest.approx(z)
    assert result["p_value"] == pytest.approx(2 * norm.sf(abs(z)))
    assert result["p_value"] == pytest.approx(0.7237, abs=1e-4)


def _structural_components(y_true, scores):
    """DeLong's components straight from the pairwise definition, O(m n)."""
    pos, neg = scores[y_true == 1], scores[y_true == 0]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    return psi.mean(axis=1), psi.mean(axis=0)


def test_paired_test_matches_pairwise_definition_with_ties():
    rng = np.random.default_rng(3)
    y_true = (rng.random(120) < 0.6).astype(int)
    # Rounding makes many ties within and across classes.
    scores_a = np.round(rng.normal(y_true * 0.8, 1.0), 1)
    scores_b = np.round(scores_a + rng.normal(0, 0.7, 120), 1)
    pos_a, neg_a = _structural_components(y_true, scores_a)
    pos_b, neg_b = _structural_components(y_true, scores_b)
    m, n = len(pos_a), len(neg_a)
    pos_cov, neg_cov = np.cov(pos_a, pos_b), np.cov(neg_a, neg_b)
    contrast = np.array([1, -1])
    diff_variance = contrast @ pos_cov @ contrast / m + contrast @ neg_cov @ contrast / n
    expected_z = (pos_a.mean() - pos_b.mean()) / np.sqrt(diff_variance)

    result = delong_roc_test(y_true, scores_a, scores_b)
    assert result["auc_a"] == pytest.approx(pos_a.mean())
    assert result["auc_b"] == pytest.approx(pos_b.mean())
    assert result["z"] == pytest.approx(expected_z)
    _, variance_a = delong_auc_variance(y_true, scores_a)
    assert variance_a == pytest.approx(pos_cov[0, 0] / m + neg_cov[0, 0] / n)


def test_auc_equals_mann_whitney_u_over_pairs():
    rng = np.random.default_rng(7)
    y_true = (rng.random(300) < 0.3).astype(int)
    scores = np.round(rng.normal(y_true, 1.0), 1)
    pos, neg = scores[y_true == 1], scores[y_true == 0]
    u_statistic = mannwhitneyu(pos, neg).statistic
    auc, _ = delong_auc_variance(y_true, scores)
    assert auc == pytest.approx(u_statistic / (len(pos) * len(neg)))


def test_hanley_mcneil_ct_ratings_area():
    """Hanley JA, McNeil BJ. The meaning and use of the area under a receiver operating
    characteristic (ROC) curve. Radiology 1982;143(1):29-36, Table 1: 109 CT images rated
    1 (definitely normal) to 5 (definitely abnormal); 58 normal rated 33/6/6/11/2, 51 abnormal
    rated 3/2/2/11/33. Published trapezoidal (Wilcoxon) area: 0.893."""
    ratings = np.arange(1, 6)
    normal = np.repeat(ratings, [33, 6, 6, 11, 2])
    abnormal = np.repeat(ratings, [3, 2, 2, 11, 33])
    y_true = np.r_[np.ones(len(abnormal), int), np.zeros(len(normal), int)]
    auc, _ = delong_auc_variance(y_true, np.r_[abnormal, normal])
    assert round(auc, 3) == 0.893


def test_variance_matches_bootstrap_variance_in_large_sample():
    rng = np.random.default_rng(11)
    n_pos, n_neg, n_resamples = 600, 400, 2000
    pos, neg = rng.normal(1.0, 1.0, n_pos), rng.normal(0.0, 1.0, n_neg)
    y_true = np.r_[np.ones(n_pos, int), np.zeros(n_neg, int)]
    _, variance = delong_auc_variance(y_true, np.r_[pos, neg])

    pos_draws = pos[rng.integers(0, n_pos, (n_resamples, n_pos))]
    neg_draws = neg[rng.integers(0, n_neg, (n_resamples, n_neg))]
    boot_aucs = mannwhitneyu(pos_draws, neg_draws, axis=1).statistic / (n_pos * n_neg)
    assert variance == pytest.approx(boot_aucs.var(ddof=1), rel=0.1)


def test_needs_both_classes():
    with pytest.raises(ValueError, match="positive and one negative"):
        delong_auc_variance([1, 1, 1], [0.2, 0.5, 0.9])
