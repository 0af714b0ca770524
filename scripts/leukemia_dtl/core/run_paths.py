"""The paths of the result files that belong to one run or prediction set, and the run a path belongs to.

The one contract between a rule that reads several runs' files and its script: the path itself. ``rules/common.smk``
builds these files' paths from the templates below, and a rule script takes each file's run back from its path
with :func:`parse_run_file` (or keys a whole input list with :func:`files_by`), so no parallel list of keys
travels beside the files. The templates are written here once, for both directions; standard library only,
because ``rules/common.smk`` imports this module into the Snakemake process.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from string import Formatter

from leukemia_dtl.core.vocabulary import ENSEMBLE, PLAIN, PROVENANCE_FILE, TTA

RESULTS = "results"
SEED_FOLDER = "seed{seed}"
RUN = f"{{scheme}}/{{model}}/{SEED_FOLDER}"
MODEL = f"{RESULTS}/models/{RUN}/model.keras"
HISTORY = f"{RESULTS}/models/{RUN}/history.tsv"
TRAIN_STATS = f"{RESULTS}/models/{RUN}/train_stats.json"
PROVENANCE = f"{RESULTS}/models/{RUN}/{PROVENANCE_FILE}"
PREDICT_STATS = f"{RESULTS}/predictions/{RUN}/predict_stats.json"
# Each trained model for other runtimes (target `export`): a folder.
EXPORT = f"{RESULTS}/export/{RUN}"
# A prediction set: one run's predictions (seed<N>) or the mean of the seeds' (ensemble), each also with
# test-time augmentation (seed<N>/tta, ensemble/tta); evaluate_predictions scores every set alike.
PREDICTION_SET = "{scheme}/{model}/{prediction_set}"
SET_PREDICTIONS = f"{RESULTS}/predictions/{PREDICTION_SET}/{{subset}}.tsv"
SET_METRICS = f"{RESULTS}/metrics/{PREDICTION_SET}/{{subset}}.json"
# The folder of a prediction set under its model, by kind: the plain predictions or test-time augmented.
PREDICTION_KIND_FOLDERS = {PLAIN: "{members}", TTA: f"{{members}}/{TTA}"}

# The templates whose files parse_run_file knows: every per-run or per-set file a rule reads for several runs.
RUN_FILE_TEMPLATES = (MODEL, HISTORY, TRAIN_STATS, PROVENANCE, PREDICT_STATS, EXPORT, SET_PREDICTIONS, SET_METRICS)


def prediction_set(kind: str = PLAIN, seed: int | str | None = "{seed}") -> str:
    """The set's folder: seed<seed> (``seed`` None: the ensemble), with /tta for kind tta."""
    members = ENSEMBLE if seed is None else SEED_FOLDER.format(seed=seed)
    return PREDICTION_KIND_FOLDERS[kind].format(members=members)


def in_set(pattern: str, kind: str = PLAIN, seed: int | str | None = "{seed}") -> str:
    """A SET_ template with its {prediction_set} filled in: one seed's set, or the ensemble's (``seed`` None)."""
    return pattern.replace("{prediction_set}", prediction_set(kind, seed))


@dataclass(frozen=True)
class RunFile:
    """What a result file belongs to: the split it was trained on (``scheme``: a fold rotation for the folds'
    models), the model, the seed (None: the seed ensemble), the prediction kind (plain or tta) and the subset
    ("" for a run's own files: history, training and prediction stats, provenance)."""

    scheme: str
    model: str
    seed: int | None
    kind: str = PLAIN
    subset: str = ""

    def run_name(self, scheme: str) -> int | str:
        """The run's name among the runs behind ``scheme``'s results: its seed, or "seed N, foldK" for the
        folds scheme's run trained on rotation foldK."""
        return self.seed if self.scheme == scheme else f"seed {self.seed}, {self.scheme}"


def _template_regex(template: str, wildcards: dict[str, str], named: bool = True) -> str:
    """``template`` as a regular expression: its text literal, each {name} a group (``named``: of that name)
    matching ``wildcards[name]``."""
    parts = []
    for literal, name, _, _ in Formatter().parse(template):
        parts.append(re.escape(literal))
        if name is not None:
            parts.append(f"(?P<{name}>{wildcards[name]})" if named else f"(?:{wildcards[name]})")
    return "".join(parts)


def _members_regex(named: bool) -> str:
    return _template_regex(SEED_FOLDER, {"seed": r"\d+"}, named) + f"|{re.escape(ENSEMBLE)}"


_SET_FOLDERS = {
    kind: re.compile(_template_regex(folder, {"members": _members_regex(named=True)}))
    for kind, folder in PREDICTION_KIND_FOLDERS.items()
}
_NAME = "[^/]+"
_WILDCARDS = {
    "scheme": _NAME,
    "model": _NAME,
    "seed": r"\d+",
    "subset": _NAME,
    "prediction_set": "|".join(
        _template_regex(folder, {"members": _members_regex(named=False)}, named=False)
        for folder in PREDICTION_KIND_FOLDERS.values()
    ),
}
# A path may carry a prefix before results/ (a storage provider's local copy, an absolute path).
_RUN_FILE_PATTERNS = [re.compile("(?:.*/)?" + _template_regex(template, _WILDCARDS)) for template in RUN_FILE_TEMPLATES]


def _kind_and_seed(folder: str) -> tuple[str, str | None]:
    """The kind and seed (None: the ensemble) of a prediction set's folder."""
    for kind, pattern in _SET_FOLDERS.items():
        match = pattern.fullmatch(folder)
        if match:
            return kind, match.group("seed")
    raise ValueError(f"{folder} is not a prediction set's folder")


def parse_run_file(path: str | os.PathLike) -> RunFile:
    """The run or prediction set of a file that a template of RUN_FILE_TEMPLATES names; ValueError otherwise."""
    text = os.fspath(path)
    for pattern in _RUN_FILE_PATTERNS:
        match = pattern.fullmatch(text)
        if match:
            fields = match.groupdict()
            kind, seed = PLAIN, fields.get("seed")
            if "prediction_set" in fields:
                kind, seed = _kind_and_seed(fields["prediction_set"])
            return RunFile(
                scheme=fields["scheme"],
                model=fields["model"],
                seed=None if seed is None else int(seed),
                kind=kind,
                subset=fields.get("subset", ""),
            )
    raise ValueError(f"{text} is not the path of a run's or prediction set's result file")


def files_by(paths: Iterable[str | os.PathLike], *fields: str) -> dict[tuple, str]:
    """Each path keyed by the tuple of its RunFile's ``fields`` (e.g. "model", "seed", "subset"), in the paths'
    order; ValueError if two paths share a key. How every rule script that reads several runs' files keys them:
    the path is the contract, with no list of keys beside the input list and no manifest file."""
    keyed = {}
    for path in paths:
        run_file = parse_run_file(path)
        key = tuple(getattr(run_file, field) for field in fields)
        if key in keyed:
            raise ValueError(f"{keyed[key]} and {path} are both the file of {dict(zip(fields, key, strict=True))}")
        keyed[key] = path
    return keyed
