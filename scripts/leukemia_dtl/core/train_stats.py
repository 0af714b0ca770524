"""train_stats.json, what a training run measured and the options it trained with: written by the train_model
rule, read by prediction (the batch size) and by the evaluation's tables and model cards. No Keras, so every
stage reads it through here."""

from __future__ import annotations

import os

from leukemia_dtl.core.fileio import read_json, write_json
from leukemia_dtl.core.format_versions import FORMAT_VERSION_KEY, TRAIN_STATS_FORMAT_VERSION, check_format_version

# The rule that writes the file, so the one a refused file names to rerun.
TRAIN_STATS_RULE = "train_model"


def write_train_stats(stats: dict, path: str | os.PathLike) -> dict:
    """Write ``stats`` as train_stats.json, stamped with the format version first; return what was written."""
    stamped = {FORMAT_VERSION_KEY: TRAIN_STATS_FORMAT_VERSION, **stats}
    write_json(stamped, path)
    return stamped


def read_train_stats(path: str | os.PathLike) -> dict:
    """A run's train_stats.json; UserError naming the file and the rule to rerun if another version of the
    workflow wrote it."""
    stats = read_json(path)
    check_format_version(stats.get(FORMAT_VERSION_KEY), TRAIN_STATS_FORMAT_VERSION, path, TRAIN_STATS_RULE)
    return stats
