"""Synthetic results for the evaluation-stage tests: prediction tables as the prediction step writes them and
metrics files as the evaluation step writes them, for a few models and seeds."""

import numpy as np
import pandas as pd

from leukemia_dtl.evaluate.metrics import classification_metrics
from leukemia_dtl.evaluate.result_files import write_metrics

MODELS = ["vgg19", "efficientnetb3"]
SEEDS = [1, 2, 3]
SUBSETS = ["test", "external"]
# How far apart the classes' scores lie: the better model separates them more.
SEPARATION = {"vgg19": 1.0, "efficientnetb3": 2.5, "resnet50": 1.5}


def synthetic_predictions(model: str, seed: int, n_images: int = 120) -> pd.DataFrame:
    """A prediction table as read_predictions returns it: two ALL per HEM, p_all from a logistic score."""
    rng = np.random.default_rng([seed, int(10 * SEPARATION[model])])
    is_all = np.arange(n_images) % 3 != 0
    score = rng.normal(np.where(is_all, SEPARATION[model] / 2, -SEPARATION[model] / 2), 1.0)
    p_all = 1 / (1 + np.exp(-score))
    return pd.DataFrame(
        {
            "path": [f"img_{index}.bmp" for index in range(n_images)],
            # Five ALL patients and five HEM donors, each with many images.
            "subject": [f"{'UID' if is_all[index] else 'UID_H'}{index % 5}" for index in range(n_images)],
            "label": np.where(is_all, "ALL", "HEM"),
            "p_all": p_all,
            "pred": np.where(p_all >= 0.5, "ALL", "HEM"),
        }
    )


def write_metrics_files(folder, models=MODELS, seeds=SEEDS, subsets=SUBSETS) -> dict:
    """Metrics JSONs of every (model, seed, subset), as the evaluation step writes them."""
    files = {}
    for model in models:
        for seed in seeds:
            for offset, subset in enumerate(subsets):
                frame = synthetic_predictions(model, 10 * seed + offset)
                metrics = classification_metrics(
                    frame["label"] == "ALL",
                    frame["p_all"],
                    subjects=frame["subject"],
                    n_bootstrap=20,
                    seed=seed,
                    validation_threshold=0.4 + 0.05 * seed,
                )
                files[model, seed, subset] = folder / f"{model}_{seed}_{subset}.json"
                write_metrics(metrics, files[model, seed, subset])
    return files


def seed_values(per_seed: pd.DataFrame, subset: str, metric: str, model: str) -> np.ndarray:
    """The seeds' values of one subset, metric and model in a per-seed frame (result_files.per_seed_metrics)."""
    return per_seed.query("subset == @subset and metric == @metric and model == @model")["value"].to_numpy()
