"""The numbers Soladoye et al. (2025) report, transcribed as printed, to set beside ours.

Source: Soladoye AA, Olawade D, Adeyanju IA, Adereni T, Olagunju KM, David-Olawade AC (2025).
Enhancing leukemia detection in medical imaging using deep transfer learning. International Journal
of Medical Informatics 203:106023. https://doi.org/10.1016/j.ijmedinf.2025.106023
Table 1 ("Comprehensive performance comparison", section 3.3) and Table 2 ("Computational performance
metrics", section 3.5), from the York St John repository version (/work/shared/paper/).
"""

from __future__ import annotations

from dataclasses import dataclass

from leukemia_dtl.core.vocabulary import EFFICIENTNETB3, VGG19

# Our model keys and the names the paper prints for them.
MODEL_NAMES = {VGG19: "VGG-19", EFFICIENTNETB3: "EfficientNet-B3"}


@dataclass(frozen=True)
class PaperComparison:
    """One row of Table 1: each model's value, the paired t-test p-value and the 95 % CI of the
    difference, as printed."""

    label: str
    values: dict[str, float]
    p_value: str
    ci_difference: tuple[float, float]


# The printed CIs are positive while EfficientNet-B3 scores higher on every row, so the difference
# is EfficientNet-B3 minus VGG-19.
TABLE1_DIFFERENCE = (EFFICIENTNETB3, VGG19)

TABLE1 = {
    "accuracy": PaperComparison("Overall Accuracy", {VGG19: 0.80, EFFICIENTNETB3: 0.96}, "<0.001", (0.14, 0.18)),
    "precision_all": PaperComparison("ALL Precision", {VGG19: 0.80, EFFICIENTNETB3: 0.95}, "<0.001", (0.13, 0.17)),
    "recall_all": PaperComparison("ALL Recall", {VGG19: 0.94, EFFICIENTNETB3: 0.99}, "<0.001", (0.03, 0.07)),
    "f1_all": PaperComparison("ALL F1-Score", {VGG19: 0.87, EFFICIENTNETB3: 0.97}, "<0.001", (0.08, 0.12)),
    "precision_hem": PaperComparison("Hem Precision", {VGG19: 0.79, EFFICIENTNETB3: 0.97}, "<0.001", (0.16, 0.20)),
    "recall_hem": PaperComparison("Hem Recall", {VGG19: 0.51, EFFICIENTNETB3: 0.89}, "<0.001", (0.36, 0.40)),
    "f1_hem": PaperComparison("Hem F1-Score", {VGG19: 0.62, EFFICIENTNETB3: 0.93}, "<0.001", (0.29, 0.33)),
    "roc_auc": PaperComparison("ROC-AUC", {VGG19: 0.85, EFFICIENTNETB3: 0.97}, "<0.001", (0.10, 0.14)),
    "cohen_kappa": PaperComparison("Cohen's Kappa", {VGG19: 0.61, EFFICIENTNETB3: 0.92}, "<0.001", (0.29, 0.33)),
}

# Table 2 as printed; the paper does not say whether memory is host or GPU memory, nor whether it was
# measured in training or inference.
TABLE2 = {
    "training_hours": {VGG19: 4.2, EFFICIENTNETB3: 3.8},
    "inference_ms_per_image": {VGG19: 12.3, EFFICIENTNETB3: 8.7},
    "memory_gb": {VGG19: 2.1, EFFICIENTNETB3: 1.6},
    "model_size_mb": {VGG19: 574, EFFICIENTNETB3: 48},
}


def model_name(model: str) -> str:
    """The paper's name for a model key; other models keep their key."""
    return MODEL_NAMES.get(model, model)


def paper_difference_ci(metric: str, model: str, reference: str) -> tuple[float, float] | None:
    """The paper's 95 % CI of ``model`` minus ``reference`` on a Table 1 metric, or None if the paper
    did not compare those two models."""
    low, high = TABLE1[metric].ci_difference
    if (model, reference) == TABLE1_DIFFERENCE:
        return low, high
    if (reference, model) == TABLE1_DIFFERENCE:
        return -high, -low
    return None
