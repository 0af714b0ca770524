import re

import pytest
import yaml

from conftest import REPO, run_snakemake
from leukemia_dtl.core.run_paths import (
    EXPORT,
    HISTORY,
    MODEL,
    PREDICT_STATS,
    PROVENANCE,
    SET_METRICS,
    SET_PREDICTIONS,
    TRAIN_STATS,
    RunFile,
    files_by,
    in_set,
    parse_run_file,
)
from leukemia_dtl.core.vocabulary import FOLD_ROTATIONS, FOLDS_SPLIT, PLAIN, PREDICTED_SUBSETS, TTA

# The rules that read several runs' files and key them by the run read from each path.
MULTI_RUN_RULES = {
    "compare_models",
    "compare_ensembles",
    "compare_subjects",
    "performance_tables",
    "subject_table",
    "challenge_table",
    "leakage_table",
    "plot_training_curves",
    "plot_subset_figures",
    "plot_forest",
    "runs_table",
}


def demo_runs():
    """(training split, model, seed) of every run of the demo with the folds scheme added."""
    demo = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    schemes = [*demo["split"]["schemes"], FOLDS_SPLIT]
    splits = [split for scheme in schemes for split in (FOLD_ROTATIONS if scheme == FOLDS_SPLIT else [scheme])]
    return [(split, model, seed) for split in splits for model in demo["models"] for seed in demo["seeds"]]


def demo_run_files():
    """Each path the workflow builds for the demo's runs and prediction sets (common.smk's way), with its key."""
    for scheme, model, seed in demo_runs():
        for template in (MODEL, HISTORY, TRAIN_STATS, PROVENANCE, PREDICT_STATS, EXPORT):
            yield template.format(scheme=scheme, model=model, seed=seed), RunFile(scheme, model, seed)
        for template in (SET_PREDICTIONS, SET_METRICS):
            for kind in (PLAIN, TTA):
                for subset in PREDICTED_SUBSETS:
                    path = in_set(template, kind, seed).format(scheme=scheme, model=model, subset=subset)
                    yield path, RunFile(scheme, model, seed, kind, subset)
                    ensemble = in_set(template, kind, seed=None).format(scheme=scheme, model=model, subset=subset)
                    yield ensemble, RunFile(scheme, model, None, kind, subset)


def test_every_run_file_of_the_demo_parses_back_to_its_run():
    built = list(demo_run_files())
    assert len(built) == len(demo_runs()) * (6 + 2 * 2 * len(PREDICTED_SUBSETS) * 2)
    assert {path: parse_run_file(path) for path, _ in built} == dict(built)


def test_a_path_under_another_folder_parses_alike(tmp_path):
    path = in_set(SET_METRICS, TTA, seed=None).format(scheme="fold1", model="vgg19", subset="val")
    assert parse_run_file(tmp_path / path) == RunFile("fold1", "vgg19", None, TTA, "val")


@pytest.mark.parametrize(
    "path",
    [
        "results/models/random/vgg19/seed0/model.h5",
        "results/predictions/random/vgg19/seed0/tta/predict_stats.json",
        "results/stats/random/delong.tsv",
        "results/metrics/random/vgg19/seedX/test.json",
    ],
)
def test_a_file_of_no_run_template_is_refused(path):
    with pytest.raises(ValueError, match="is not the path of a run's"):
        parse_run_file(path)


def test_files_by_keys_the_paths_in_their_order_and_refuses_a_shared_key():
    paths = [
        in_set(SET_METRICS, seed=seed).format(scheme="patient", model=model, subset="test")
        for model, seed in (("vgg19", 1), ("vgg19", 0), ("efficientnetb3", 0))
    ]
    assert files_by(paths, "model", "seed") == {
        ("vgg19", 1): paths[0],
        ("vgg19", 0): paths[1],
        ("efficientnetb3", 0): paths[2],
    }
    assert list(files_by(paths, "model", "seed")) == [("vgg19", 1), ("vgg19", 0), ("efficientnetb3", 0)]
    with pytest.raises(ValueError, match="are both the file of"):
        files_by(paths, "model")


def test_a_fold_rotations_run_is_named_with_its_rotation():
    assert RunFile("fold2", "vgg19", 1).run_name(FOLDS_SPLIT) == "seed 1, fold2"
    assert RunFile("patient", "vgg19", 1).run_name("patient") == 1


def dry_run_jobs(output: str):
    """(rule, inputs) of every job a dry-run lists."""
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", output):
        rule = re.match(r"(?:local)?rule (\w+):", block)
        inputs = re.search(r"^\s+input: (.*)$", block, re.MULTILINE)
        if rule and inputs:
            yield rule.group(1), inputs.group(1).split(", ")


@pytest.mark.workflow
def test_every_run_file_a_multi_run_rule_reads_keys_uniquely(tmp_path):
    """The demo with the folds scheme added and test-time augmentation on: each input of the rules that read
    several runs is a run's file, and no two of a job share a run."""
    overlay = tmp_path / "folds.yaml"
    overlay.write_text(yaml.safe_dump({"split": {"schemes": ["random", "patient", FOLDS_SPLIT]}}))
    result = run_snakemake(
        "-n", "-F", "--cores", "2", "--configfile", "config/demo.yaml", str(overlay), workdir=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = [(rule, paths) for rule, paths in dry_run_jobs(result.stdout) if rule in MULTI_RUN_RULES]
    assert {rule for rule, _ in jobs} == MULTI_RUN_RULES
    for rule, paths in jobs:
        run_files = {path for path in paths if not path.startswith("results/stats/")}
        # Distinct files keep distinct keys; the file's name tells a run's history, stats and provenance apart.
        keys = {(parse_run_file(path), path.rsplit("/", 1)[-1]) for path in run_files}
        assert len(keys) == len(run_files), rule
