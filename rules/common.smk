# Config validation and every path of the workflow: each path is written here once (the per-run result files'
# templates in the package's run_paths module, which also reads a run back from such a path), and rules and
# targets take them from here. Names shared with the scripts (classes, subsets, schemes, columns, file
# names, model option groups) come from the package's vocabulary module.
import sys
from itertools import product
from pathlib import Path

import pandas as pd
from snakemake.exceptions import WorkflowError
from snakemake.utils import Paramspace, validate

sys.path.insert(0, f"{workflow.basedir}/scripts")
from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.run_paths import (
    EXPORT,
    HISTORY,
    MODEL,
    PREDICT_STATS,
    PREDICTION_SET,
    PROVENANCE,
    RESULTS,
    RUN,
    SET_METRICS,
    SET_PREDICTIONS,
    TRAIN_STATS,
    in_set,
    prediction_set,
)
from leukemia_dtl.core.vocabulary import (
    CACHE_IMAGES_FILE,
    CLASSIFIER_OUTPUT,
    COMPARISON_TABLES,
    DATASET_DIR,
    ENSEMBLE,
    FOLD_ROTATIONS,
    FOLDS_SPLIT,
    EXPORT_CHECK_FILE,
    FEATURES_FILE,
    IMAGENET_WEIGHT_FILES,
    INDEX_FILE,
    KERAS_CACHE_SUBDIR,
    ONNX_FILE,
    PATIENT_SPLIT,
    PLAIN,
    PREDICTED_SUBSETS,
    RANDOM_SPLIT,
    REPORTED_SUBSETS,
    SAVED_MODEL_DIR,
    SPLIT_SCHEMES,
    SUBMISSION_FILE,
    TRAINING_SPLITS,
    TTA,
    builder_options,
    drop_model_options,
)
from leukemia_dtl.data.layout import listing_digest

validate(config, "../config/schema.yaml", set_default=True)


def _check_data_source(data):
    source = data["source"]
    if source == "archive" and not data["archive"]:
        raise WorkflowError(
            "data.source is 'archive' but data.archive is not set: give the path of the Kaggle zip."
        )
    if source == "directory" and not data["directory"]:
        raise WorkflowError(
            "data.source is 'directory' but data.directory is not set: give the folder that holds C-NMC_Leukemia/."
        )


_check_data_source(config["data"])


def _check_fine_tuning(models):
    for name, entry in models.items():
        if entry.get("fine_tune") and not entry.get("freeze_base", True):
            raise WorkflowError(
                f"models.{name} sets fine_tune, which unfreezes the top of a frozen base, and freeze_base: false, "
                f"which trains the whole base from the start: set models.{name}.freeze_base: true or remove "
                f"models.{name}.fine_tune."
            )


_check_fine_tuning(config["models"])

KAGGLE_ARCHIVE = f"{RESULTS}/data/download/leukemia-classification.zip"
KAGGLE_CHECKSUM = f"{RESULTS}/data/download/leukemia-classification.zip.sha256"
DEMO_ARCHIVE = f"{RESULTS}/data/demo/C-NMC_Leukemia-demo.zip"
EXTRACTED = f"{RESULTS}/data/extracted"
ARCHIVE_CHECKSUM = f"{RESULTS}/data/archive.sha256"
INVENTORY = f"{RESULTS}/data/inventory.tsv"
REJECTED = f"{RESULTS}/data/rejected.tsv"
KEPT = f"{RESULTS}/data/kept.tsv"
EXCLUDED = f"{RESULTS}/data/excluded.tsv"
EXCLUSION_SUMMARY = f"{RESULTS}/data/exclusion_summary.tsv"
SPLIT = f"{RESULTS}/splits/{{scheme}}.tsv"
LEAKAGE = f"{RESULTS}/splits/{{scheme}}_leakage.tsv"
CACHE_IMAGES = f"{RESULTS}/cache/{{size}}px/{CACHE_IMAGES_FILE}"
CACHE_INDEX = f"{RESULTS}/cache/{{size}}px/{INDEX_FILE}"
# The unlabelled final-phase images, cached apart so that the labelled cache (and every model) is unchanged.
FINAL_PHASE_CACHE = f"{RESULTS}/cache/{{size}}px/final_phase"
FINAL_PHASE_IMAGES = f"{FINAL_PHASE_CACHE}/{CACHE_IMAGES_FILE}"
FINAL_PHASE_INDEX = f"{FINAL_PHASE_CACHE}/{INDEX_FILE}"
SUBMISSION = f"{RESULTS}/challenge/{{scheme}}/{{model}}/{SUBMISSION_FILE}"
FINAL_PHASE_PREDICTIONS = f"{RESULTS}/challenge/{{scheme}}/{{model}}/final_phase.tsv"
KERAS_HOME = f"{RESULTS}/keras_home"
# RUN, the per-run files that a rule reads for several runs (MODEL, HISTORY, TRAIN_STATS, PROVENANCE, PREDICT_STATS,
# the EXPORT folder) and the prediction sets' files (SET_PREDICTIONS, SET_METRICS) come from the package's run_paths
# module, which parses a path back to its run for the rule scripts.
TENSORBOARD = f"{RESULTS}/tensorboard/{RUN}"
# The export folder's files: both checked against the .keras model.
EXPORT_SAVED_MODEL = f"{EXPORT}/{SAVED_MODEL_DIR}"
EXPORT_ONNX = f"{EXPORT}/{ONNX_FILE}"
EXPORT_CHECK = f"{EXPORT}/{EXPORT_CHECK_FILE}"
# New images scored with a trained model (target `classify`).
CLASSIFY_PREDICTIONS = f"{RESULTS}/classify/predictions.tsv"
CLASSIFY_REJECTED = f"{RESULTS}/classify/rejected.tsv"
MODEL_CARD = f"{RESULTS}/model_cards/{{scheme}}/{{model}}.md"
# Resume state of an interrupted training job: not an output, so Snakemake never deletes it.
RESUME = f"{RESULTS}/resume/{RUN}"
ENSEMBLE_SETS = [prediction_set(kind, seed=None) for kind in (PLAIN, TTA)]
PREDICTIONS = in_set(SET_PREDICTIONS)
TTA_PREDICT_STATS = f"{RESULTS}/predictions/{RUN}/{TTA}/predict_stats.json"
# A run's P(ALL) for the unlabelled final-phase images, plain (seed<N>) and with TTA (seed<N>/tta): the challenge
# submission's inputs.
SET_FINAL_PHASE = f"{RESULTS}/predictions/{PREDICTION_SET}/final_phase.tsv"
ENSEMBLE_PREDICTIONS = (
    f"{RESULTS}/predictions/{{scheme}}/{{model}}/{{ensemble}}/{{subset}}.tsv"
)
METRICS = in_set(SET_METRICS)
STATS = f"{RESULTS}/stats/{{scheme}}/{{name}}.tsv"
TABLE = f"{RESULTS}/tables/{{scheme}}/{{name}}.{{ext}}"
LEAKAGE_TABLE = f"{RESULTS}/tables/leakage.{{ext}}"
RUNS_TABLE = f"{RESULTS}/tables/runs.{{ext}}"
PROVENANCE_TABLE = f"{RESULTS}/tables/provenance.{{ext}}"
FIGURE = f"{RESULTS}/figures/{{scheme}}/{{name}}.{{ext}}"
RULEGRAPH = f"{RESULTS}/figures/rulegraph.{{ext}}"
# The tuning grid: one row per configuration, every combination of the configured values, in config
# order; Paramspace turns a row into the folders name~value/... of its tuning job.
TUNING_GRID = Paramspace(
    pd.DataFrame(
        list(product(*config["tuning"]["grid"].values())),
        columns=list(config["tuning"]["grid"]),
    )
)
TUNING = f"{RESULTS}/tuning/{{scheme}}/{{model}}"
SELECTED = f"{TUNING}/selected.yaml"
RANKING = f"{TUNING}/ranking.tsv"
TUNING_HEATMAP = f"{TUNING}/heatmap.{{ext}}"
FEATURES = f"{RESULTS}/features/{{scheme}}/{{model}}/{{size}}px/{FEATURES_FILE}"
FEATURES_INDEX = f"{RESULTS}/features/{{scheme}}/{{model}}/{{size}}px/{INDEX_FILE}"
SUBSET_FIGURES = ["roc", "confusion", "reliability"]


# Scheduling: the jobs on the way to the trained models, then the predictions, go before the evaluation and the
# figures whenever several are ready, so the longest chain starts first and the short jobs fill the cores around
# it (the demo on 2 cores had its last training waiting behind the first scheme's evaluation, then ran alone).
TRAINING_CHAIN_PRIORITY = 2
PREDICTION_PRIORITY = 1


def log_file(name):
    """Log path; ``name`` is the rule's name with its wildcards as folders, e.g. "split_dataset/{scheme}"."""
    return f"{RESULTS}/logs/{name}.log"


def benchmark_file(name):
    return f"{RESULTS}/benchmarks/{name}.tsv"


def archive_file():
    """The zip that extract_archive unpacks, by data.source; none for a folder (data.source: directory),
    which nothing extracts."""
    archives = {
        "kaggle": KAGGLE_ARCHIVE,
        "demo": DEMO_ARCHIVE,
        "archive": config["data"]["archive"],
    }
    return archives.get(config["data"]["source"], [])


def archive_checksum():
    """The extracted archive's sha256 file, for the provenance of a run; none for a folder (data.source:
    directory), which has no archive."""
    return [] if config["data"]["source"] == "directory" else ARCHIVE_CHECKSUM


def dataset_folder():
    """The folder holding C-NMC_Leukemia/: the user's own copy, or the extracted archive."""
    if config["data"]["source"] == "directory":
        return config["data"]["directory"]
    return EXTRACTED


def dataset_root():
    return f"{dataset_folder()}/{DATASET_DIR}"


def dataset_listing():
    """With data.source: directory, a digest of the user's tree (names, sizes, modification times), so that
    a replaced, added or removed image reruns the inventory; Snakemake sees only the folder itself. An
    extracted archive changes only through extract_archive, which reruns the inventory anyway.
    """
    if config["data"]["source"] != "directory":
        return ""
    if not Path(dataset_root()).is_dir():
        raise WorkflowError(
            f"data.directory is {config['data']['directory']}, which holds no {DATASET_DIR}/ folder: "
            f"point it at the folder that holds {DATASET_DIR}/ (the top folder of the Kaggle archive)."
        )
    try:
        return listing_digest(dataset_root())
    except UserError as error:
        raise WorkflowError(str(error)) from None


def gpu_resources(gpus=1):
    """The GPU request of a GPU rule, the one place that says how: config gpu_request gpus -> resource
    gpu (Slurm --gpus, and the local profile's GPU slot), gres -> resource gres (Slurm --gres=gpu:N).
    """
    if config["gpu_request"] == "gres":
        return {"gres": f"gpu:{gpus}"}
    return {"gpu": gpus}


def gpu_requirement():
    """config require_gpu as the GPU rules' resource "auto", "true" or "false": a resource, not a param,
    because it decides whether a job may run, never what it computes, so changing it reruns nothing.
    """
    return str(config["require_gpu"]).lower()


def cache_images(size=None):
    return CACHE_IMAGES.format(size=size or config["image_size"])


def cache_index(size=None):
    return CACHE_INDEX.format(size=size or config["image_size"])


def imagenet_models():
    return [
        name
        for name, options in config["models"].items()
        if options.get("weights", "imagenet") == "imagenet"
    ]


def imagenet_weight_file(model):
    return f"{KERAS_HOME}/{KERAS_CACHE_SUBDIR}/{IMAGENET_WEIGHT_FILES[model]}"


def imagenet_weight_files():
    """Weight files the configured models need in the Keras cache (none with ``weights: none``)."""
    return [imagenet_weight_file(model) for model in imagenet_models()]


def model_weight_files(wildcards):
    """The weight file one training job needs, if its model starts from ImageNet."""
    return (
        [imagenet_weight_file(wildcards.model)]
        if wildcards.model in imagenet_models()
        else []
    )


def tune_result(point=TUNING_GRID.wildcard_pattern, scheme="{scheme}", model="{model}"):
    """Validation scores of one grid configuration (``point``: its name~value/... folders)."""
    return f"{RESULTS}/tuning/{scheme}/{model}/{point}/validation.json"


def tuning_results(wildcards):
    """Every configuration's scores for one scheme and model, in grid order."""
    return [
        tune_result(point, wildcards.scheme, wildcards.model)
        for point in TUNING_GRID.instance_patterns
    ]


def grid_point(wildcards):
    """The grid values of one tuning job, as plain Python numbers and strings."""
    return {
        name: value.item() if hasattr(value, "item") else value
        for name, value in TUNING_GRID.instance(wildcards).items()
    }


def untuned_options(model):
    """The model's config entry without what tuning sets: the grid's keys and the epochs."""
    tuned = [*config["tuning"]["grid"], "epochs"]
    return drop_model_options(config["models"][model], names=tuned)


def feature_options(model):
    """What builds the model's frozen base, for extract_features. The head options come along only
    because the classifier is built whole; their values do not change the base or its features.
    """
    return builder_options(config["models"][model])


def uses_feature_fast_path(model):
    """Tuning trains only the head on precomputed features when nothing changes the base's output."""
    frozen = config["models"][model].get("freeze_base", True)
    return frozen and not config["tuning"]["augmentation"]


# The group of the fast-path tuning jobs: each fits a small head on features for seconds to minutes on
# one CPU, so a cluster profile submits many as one job (group-components in profiles/slurm).
HEAD_TUNING_GROUP = "head_tuning"


def tuning_group(wildcards):
    """Fast-path configurations go to Slurm in groups; a configuration trained on images stays one GPU job."""
    return HEAD_TUNING_GROUP if uses_feature_fast_path(wildcards.model) else None


def tuning_resources():
    """tune_model's resources per job: the fast path asks for no GPU, one CPU and minutes; the image path
    for a GPU (as gpu_resources asks) and hours."""

    def image_path(value_on_images, value_on_features):
        return lambda wildcards: (
            value_on_features
            if uses_feature_fast_path(wildcards.model)
            else value_on_images
        )

    ((gpu_key, gpu_value),) = gpu_resources().items()
    return {
        gpu_key: image_path(gpu_value, 0 if gpu_key == "gpu" else ""),
        "mem_mb": image_path(16000, 4000),
        "runtime": image_path(240, 30),
    }


def tuning_inputs(wildcards):
    inputs = {"split": SPLIT.format(scheme=wildcards.scheme)}
    if uses_feature_fast_path(wildcards.model):
        size = config["image_size"]
        features = {"scheme": wildcards.scheme, "model": wildcards.model, "size": size}
        inputs["features"] = FEATURES.format(**features)
        inputs["features_index"] = FEATURES_INDEX.format(**features)
    else:
        inputs["cache_images"] = cache_images()
        inputs["cache_index"] = cache_index()
        inputs["weights"] = model_weight_files(wildcards)
    return inputs


def selected_hyperparameters(wildcards):
    """The tuning selection a training job reads (hyperparameters: tuned), else nothing."""
    if config["hyperparameters"] == "tuned":
        return SELECTED.format(scheme=wildcards.scheme, model=wildcards.model)
    return []


def tensorboard_logs():
    """train_model's TensorBoard folder with logging.tensorboard on: turning it on retrains the runs without
    one."""
    if config["logging"]["tensorboard"]:
        return {"tensorboard": directory(TENSORBOARD)}
    return {}


def first_seed_files(pattern, subset="test"):
    """Input function: a file of the first configured seed of the job's scheme and model (the Grad-CAM panel)."""
    return lambda wildcards: in_set(pattern).format(
        scheme=wildcards.scheme,
        model=wildcards.model,
        seed=config["seeds"][0],
        subset=subset,
    )


def held_out_results():
    """A model's results on the held-out subsets, for its model card: per subset the seeds' metrics and
    predictions ({subset}_metrics, {subset}_predictions: one file per seed) and the ensemble's
    (ensemble_{subset}_metrics, ensemble_{subset}_predictions)."""
    results = {}
    for subset in REPORTED_SUBSETS:
        for kind, pattern in (
            ("metrics", SET_METRICS),
            ("predictions", SET_PREDICTIONS),
        ):
            pattern = pattern.replace("{subset}", subset)
            results[f"{subset}_{kind}"] = seed_files(in_set(pattern))
            results[f"ensemble_{subset}_{kind}"] = in_set(pattern, seed=None)
    return results


def classify_choice():
    """The classify config as (scheme, model, seeds): the trained model(s) that score new images."""
    choice = config["classify"]
    if not choice["input"] or not choice["model"]:
        raise WorkflowError(
            "The target classify needs classify.input (a folder of images) and classify.model "
            "(<scheme>/<model>/<seed{N} | ensemble>, e.g. patient/efficientnetb3/ensemble) in the config."
        )
    return trained_classify_model(choice["model"])


def trained_classify_model(name):
    """classify.model as (scheme, model, seeds), checked against what the config trains."""
    scheme, model, members = name.split("/")
    seeds = (
        config["seeds"] if members == ENSEMBLE else [int(members.removeprefix("seed"))]
    )
    unknown = [
        f"{what} {value!r} (configured: {allowed})"
        for what, value, allowed in (
            ("scheme", scheme, configured_training_splits()),
            ("model", model, list(config["models"])),
            *(("seed", seed, config["seeds"]) for seed in seeds),
        )
        if value not in allowed
    ]
    if unknown:
        raise WorkflowError(
            f"classify.model is {name}, but the config trains no {', '.join(unknown)}: "
            "name a trained scheme, model and seed."
        )
    return scheme, model, seeds


def classify_models(wildcards):
    scheme, model, seeds = classify_choice()
    return [MODEL.format(scheme=scheme, model=model, seed=seed) for seed in seeds]


def classify_folder(wildcards):
    classify_choice()
    folder = config["classify"]["input"]
    # The extracted archive is the workflow's own output (config/classify.yaml scores the demo's images).
    if folder != EXTRACTED and not Path(folder).is_dir():
        raise WorkflowError(
            f"classify.input is {folder}, which is not a folder: give the folder that holds the images."
        )
    return folder


def per_subset(pattern):
    """One file per predicted subset, named by the subset: the inputs and outputs of the prediction rules."""
    return {subset: pattern.replace("{subset}", subset) for subset in PREDICTED_SUBSETS}


def prediction_kinds():
    """plain, and tta with evaluation.tta on."""
    return [PLAIN, TTA] if config["evaluation"]["tta"] else [PLAIN]


def prediction_outputs():
    """predict_model's outputs, per kind of prediction_kinds(): <kind>_<subset> (each held-out subset's
    predictions), <kind>_final_phase and <kind>_stats (predict_stats.json)."""
    outputs = {}
    for kind in prediction_kinds():
        outputs.update(
            {
                f"{kind}_{subset}": path
                for subset, path in per_subset(in_set(SET_PREDICTIONS, kind)).items()
            }
        )
        outputs[f"{kind}_final_phase"] = in_set(SET_FINAL_PHASE, kind)
        outputs[f"{kind}_stats"] = TTA_PREDICT_STATS if kind == TTA else PREDICT_STATS
    return outputs


def submission_inputs(wildcards):
    """The seeds' final-phase predictions that a model's submission averages: TTA ones with evaluation.tta."""
    kind = TTA if config["evaluation"]["tta"] else PLAIN
    return seed_files(in_set(SET_FINAL_PHASE, kind))(wildcards)


def ensemble_members(subset):
    """The seeds' prediction files one ensemble set averages, for ensemble_predictions."""

    def members(wildcards):
        kind = PLAIN if wildcards.ensemble == ENSEMBLE else TTA
        return [
            in_set(SET_PREDICTIONS, kind, seed).format(
                scheme=wildcards.scheme, model=wildcards.model, subset=subset
            )
            for seed in config["seeds"]
        ]

    return members


# The rules that read several runs' files get them as plain lists, in the orders below (each the order of a
# table's rows): a script takes each file's run back from its path (leukemia_dtl.core.run_paths.files_by).


def run_files(pattern, scheme, subsets=("",), kind=PLAIN):
    """One file per model, seed and subset (in that nesting, config order) of a run or SET_ pattern."""
    return [
        in_set(pattern, kind).format(
            scheme=scheme, model=model, seed=seed, subset=subset
        )
        for model in config["models"]
        for seed in config["seeds"]
        for subset in subsets
    ]


def seed_files(pattern):
    """Input function: one file per seed of the job's scheme and model, in config seed order."""
    return lambda wildcards: [
        pattern.format(scheme=wildcards.scheme, model=wildcards.model, seed=seed)
        for seed in config["seeds"]
    ]


def ensemble_files(pattern, scheme, subsets, kind=PLAIN):
    """The seeds' ensemble files of a SET_ pattern (SET_PREDICTIONS, SET_METRICS), per model and subset."""
    return [
        in_set(pattern, kind, seed=None).format(
            scheme=scheme, model=model, subset=subset
        )
        for model in config["models"]
        for subset in subsets
    ]


def tta_files(pattern, scheme, subsets, ensemble=False):
    """The TTA sets' files of a SET_ pattern (seeds, or the ensemble); none with evaluation.tta off."""
    if TTA not in prediction_kinds():
        return []
    if ensemble:
        return ensemble_files(pattern, scheme, subsets, TTA)
    return run_files(pattern, scheme, subsets, TTA)


def subject_ci_subsets(scheme):
    """Held-out subsets whose Table 1 rows show subject-level intervals: all on the subject-disjoint split and the
    folds; on the image-level split only external, as its test subjects are also training subjects.
    """
    return ["external"] if scheme == RANDOM_SPLIT else list(REPORTED_SUBSETS)


def stats_file(name, scheme="{scheme}"):
    return STATS.format(scheme=scheme, name=name)


def table_file(name, ext, scheme="{scheme}"):
    return TABLE.format(scheme=scheme, name=name, ext=ext)


def figure_file(name, ext, scheme="{scheme}"):
    return FIGURE.format(scheme=scheme, name=name, ext=ext)


def training_splits(scheme):
    """The splits whose models a scheme's results come from: the scheme's own, or for folds its rotations."""
    return list(FOLD_ROTATIONS) if scheme == FOLDS_SPLIT else [scheme]


def configured_training_splits():
    """Every split a model trains on, in the order of split.schemes."""
    return [
        split
        for scheme in config["split"]["schemes"]
        for split in training_splits(scheme)
    ]


def model_schemes():
    """The configured schemes whose results come from one split's models (every one but the pooled folds): each
    has Grad-CAM panels, model cards, training curves and a challenge submission."""
    return [scheme for scheme in config["split"]["schemes"] if scheme != FOLDS_SPLIT]


def scheme_run_files(pattern, scheme):
    """One file of ``pattern`` (with {scheme}, {model}, {seed}) per trained run behind a scheme's results: its own
    runs, or the folds' rotations', per model and seed."""
    return [
        pattern.format(scheme=split, model=model, seed=seed)
        for model in config["models"]
        for seed in config["seeds"]
        for split in training_splits(scheme)
    ]


def rotation_files(subset):
    """The folds scheme's input function: one prediction set's files of ``subset``, one per rotation."""
    return lambda wildcards: [
        SET_PREDICTIONS.format(
            scheme=rotation,
            model=wildcards.model,
            prediction_set=wildcards.prediction_set,
            subset=subset,
        )
        for rotation in FOLD_ROTATIONS
    ]


def data_targets():
    schemes = configured_training_splits()
    return [
        INVENTORY,
        REJECTED,
        EXCLUSION_SUMMARY,
        *expand(SPLIT, scheme=schemes),
        *expand(LEAKAGE, scheme=schemes),
        cache_images(),
        cache_index(),
    ]


def evaluation_targets():
    targets = []
    for scheme in config["split"]["schemes"]:
        for kind in prediction_kinds():
            targets += run_files(SET_METRICS, scheme, PREDICTED_SUBSETS, kind)
            targets += ensemble_files(SET_METRICS, scheme, PREDICTED_SUBSETS, kind)
        targets += [stats_file(name, scheme) for name in COMPARISON_TABLES]
        targets.append(stats_file("ensemble_delong", scheme))
        targets += [
            stats_file(name, scheme)
            for name in ("subject_comparison", "ensemble_mcnemar")
        ]
        targets += [table_file("subject_scores", "tsv", scheme)]
        targets += [
            table_file(name, ext, scheme)
            for name in ("subjects", "challenge")
            for ext in ("tsv", "md")
        ]
        figures = [
            f"{kind}_{subset}"
            for kind in [*SUBSET_FIGURES, "forest"]
            for subset in REPORTED_SUBSETS
        ]
        if scheme in model_schemes():
            targets += [
                path.format(scheme=scheme, model=model)
                for model in config["models"]
                for path in (SUBMISSION, FINAL_PHASE_PREDICTIONS)
            ]
            figures.append("training_curves")
        for ext in ("tsv", "md"):
            targets += [
                table_file(name, ext, scheme)
                for name in ("table1_performance", "table1_extended", "table2_compute")
            ]
        for ext in ("png", "pdf"):
            targets += [figure_file(name, ext, scheme) for name in figures]
    if {RANDOM_SPLIT, PATIENT_SPLIT} <= set(config["split"]["schemes"]):
        targets += expand(LEAKAGE_TABLE, ext=["tsv", "md"])
    return targets + expand(RULEGRAPH, ext=["png", "pdf"])


def use_targets():
    """Grad-CAM panels and model cards per scheme and model, the run overview and provenance tables, and with
    logging.tensorboard each run's TensorBoard logs (Snakemake reruns a job only for outputs a target asks for).
    """
    targets = []
    for scheme in model_schemes():
        for model in config["models"]:
            targets.append(MODEL_CARD.format(scheme=scheme, model=model))
            targets += [
                figure_file(f"gradcam_{model}", ext, scheme) for ext in ("png", "pdf")
            ]
    if config["logging"]["tensorboard"]:
        targets += all_run_files(TENSORBOARD)
    return (
        targets
        + expand(RUNS_TABLE, ext=["tsv", "md"])
        + expand(PROVENANCE_TABLE, ext=["tsv", "md"])
    )


def all_run_files(pattern, subset=""):
    """One file per trained run (per training split, model and seed) of a pattern with {scheme}, {model} and {seed}
    (and {subset})."""
    return [
        pattern.format(scheme=scheme, model=model, seed=seed, subset=subset)
        for scheme in configured_training_splits()
        for model in config["models"]
        for seed in config["seeds"]
    ]


def export_targets():
    """Every trained model as SavedModel and ONNX, with their checks (target export)."""
    return [
        path
        for pattern in (EXPORT_SAVED_MODEL, EXPORT_ONNX, EXPORT_CHECK)
        for path in all_run_files(pattern)
    ]


def tuning_targets():
    targets = []
    for scheme in configured_training_splits():
        for model in config["models"]:
            targets += [
                path.format(scheme=scheme, model=model) for path in (SELECTED, RANKING)
            ]
            targets += [
                TUNING_HEATMAP.format(scheme=scheme, model=model, ext=ext)
                for ext in ("png", "pdf")
            ]
    return targets


def final_targets():
    tuning = tuning_targets() if config["hyperparameters"] == "tuned" else []
    return data_targets() + tuning + evaluation_targets() + use_targets()


# Checked when the workflow is parsed, so that a dry-run names the key, not a job that waited in a queue.
if config["classify"]["model"]:
    trained_classify_model(config["classify"]["model"])
