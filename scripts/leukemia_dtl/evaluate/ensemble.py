"""Seed ensembles: the mean of the seeds' P(ALL) per image, and how it compares with each seed (DeLong); and the
grouped cross-validation's rotations pooled into one prediction table per seed.

Every top entry of the C-NMC 2019 challenge pooled models; the workflow trains several seeds per model, so
their mean ``p_all`` is the ensemble that costs no extra training.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import pandas as pd

from leukemia_dtl.core.decisions import class_calls
from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.fileio import write_tsv
from leukemia_dtl.core.run_paths import files_by
from leukemia_dtl.core.vocabulary import CLASS_NAMES, PREDICTION_COLUMNS
from leukemia_dtl.evaluate.delong import delong_roc_test
from leukemia_dtl.evaluate.result_files import align_predictions, is_all, read_predictions
from leukemia_dtl.evaluate.significance import holm

ENSEMBLE_DELONG_COLUMNS = (
    "model",
    "kind",
    "subset",
    "seed",
    "n_images",
    "auc_ensemble",
    "auc_seed",
    "diff",
    "z",
    "p_value",
    "p_holm",
    "independent_unit",
)


def seed_ensemble(prediction_files: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """One prediction table from the seeds' tables of one subset: the first file's images in its order,
    ``p_all`` the mean of the seeds' ``p_all`` per image and ``pred`` from it.

    Files that do not cover the same images with the same labels are a UserError naming them.
    """
    if not prediction_files:
        raise UserError("A seed ensemble needs at least one seed's prediction file; configure at least one seed.")
    first_path = prediction_files[0]
    first = read_predictions(first_path)
    seed_p_all = []
    for path in prediction_files:
        _, aligned = align_predictions(first, read_predictions(path), first_path, path)
        seed_p_all.append(aligned.set_index("path")["p_all"])
    p_all = pd.concat(seed_p_all, axis=1).mean(axis=1).loc[first["path"]].to_numpy()
    return first.assign(p_all=p_all, pred=class_calls(p_all))[list(PREDICTION_COLUMNS)]


def write_seed_ensembles(
    seed_files: Mapping[str, Sequence[str | os.PathLike]], out_paths: Mapping[str, str | os.PathLike]
) -> None:
    """Write the :func:`seed_ensemble` of ``seed_files[subset]`` (the seeds' prediction files of that subset, at
    the workflow's paths, which name their seed) to ``out_paths[subset]`` for every subset, once all of them are
    computed. Every subset must come from the same seeds."""
    ensembles, seeds_of = {}, {}
    for subset, out_path in out_paths.items():
        by_seed = files_by(seed_files[subset], "seed")
        seeds_of[subset] = [seed for (seed,) in by_seed]
        if seeds_of[subset] != next(iter(seeds_of.values())):
            raise UserError(
                f"The {subset} ensemble {out_path} got the predictions of seeds {seeds_of[subset]}, other subsets "
                f"those of seeds {next(iter(seeds_of.values()))}; give every subset the same seeds' files."
            )
        ensembles[subset] = seed_ensemble(list(by_seed.values()))
    for subset, frame in ensembles.items():
        write_tsv(frame, out_paths[subset])


def pooled_rotations(prediction_files: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """One prediction table from the grouped cross-validation's rotations (one file each, of one subset): every
    image any rotation predicted, in order of first appearance, ``p_all`` the mean over the rotations that
    predicted it and ``pred`` from it.

    Each test image comes from the one rotation that held its fold out, so its ``p_all`` is that model's, which
    never saw its subject; an external image is predicted by every rotation, and a validation image by each
    rotation that validated on it. An image whose label or subject differs between files is a UserError.
    """
    if not prediction_files:
        raise UserError("Pooling the cross-validation needs the prediction files of its rotations; none were given.")
    stacked = pd.concat([read_predictions(path).assign(file=str(path)) for path in prediction_files], ignore_index=True)
    for column in ("label", "subject"):
        inconsistent = stacked.groupby("path", sort=False)[column].nunique() > 1
        if inconsistent.any():
            examples = list(inconsistent[inconsistent].index[:3])
            raise UserError(
                f"The rotations' prediction files {', '.join(map(str, prediction_files))} give image(s) {examples} "
                f"different {column}s; all rotations must come from one inventory. Rerun their splits and predictions."
            )
    pooled = stacked.groupby("path", sort=False).agg(subject=("subject", "first"), label=("label", "first"))
    p_all = stacked.groupby("path", sort=False)["p_all"].mean().to_numpy()
    pooled = pooled.assign(p_all=p_all, pred=class_calls(p_all)).reset_index()
    return pooled[list(PREDICTION_COLUMNS)]


def write_pooled_rotations(
    rotation_files: Mapping[str, Sequence[str | os.PathLike]], out_paths: Mapping[str, str | os.PathLike]
) -> None:
    """Write the :func:`pooled_rotations` of ``rotation_files[subset]`` to ``out_paths[subset]`` for every subset,
    once all of them are computed."""
    pooled = {subset: pooled_rotations(rotation_files[subset]) for subset in out_paths}
    for subset, frame in pooled.items():
        write_tsv(frame, out_paths[subset])


def ensemble_vs_seeds(
    ensemble_files: Mapping[tuple[str, str, str], str | os.PathLike],
    seed_files: Mapping[tuple[str, str, int, str], str | os.PathLike],
) -> pd.DataFrame:
    """DeLong's paired test of the ensemble's ROC-AUC against each seed's on the same images.

    ``ensemble_files`` are keyed by (model, kind, subset), ``seed_files`` by (model, kind, seed, subset); a row
    per seed file in their order, with ``p_holm`` adjusted over the whole table. Images are the unit the test
    treats as independent (``independent_unit``): on subject-clustered data its p-values are optimistic.
    """
    rows = []
    for (model, kind, seed, subset), seed_path in seed_files.items():
        key = (model, kind, subset)
        if key not in ensemble_files:
            raise UserError(
                f"No {kind} ensemble predictions of {model} on {subset} to compare seed {seed} with "
                f"({seed_path}); give the ensemble file of every model, kind and subset the seeds cover."
            )
        ensemble_path = ensemble_files[key]
        ensemble, single = align_predictions(
            read_predictions(ensemble_path), read_predictions(seed_path), ensemble_path, seed_path
        )
        truth = is_all(ensemble)
        if truth.min() == truth.max():
            raise UserError(
                f"{ensemble_path} holds images of one class only ({CLASS_NAMES[truth[0]]}); ROC-AUC needs both "
                "ALL and HEM images. Check the split."
            )
        test = delong_roc_test(truth, ensemble["p_all"], single["p_all"])
        rows.append(
            {
                "model": model,
                "kind": kind,
                "subset": subset,
                "seed": seed,
                "n_images": len(truth),
                "auc_ensemble": test["auc_a"],
                "auc_seed": test["auc_b"],
                "diff": test["diff"],
                "z": test["z"],
                "p_value": test["p_value"],
                "independent_unit": "image",
            }
        )
    table = pd.DataFrame(rows, columns=[column for column in ENSEMBLE_DELONG_COLUMNS if column != "p_holm"])
    table.insert(ENSEMBLE_DELONG_COLUMNS.index("p_holm"), "p_holm", holm(table["p_value"].astype(float)))
    return table
