"""The workflow's vocabulary: every name that more than one stage, the rules or the config schema share.

Standard library only: ``rules/common.smk`` imports this module into the Snakemake process, whatever
environment that runs in, and tests compare it with ``config/schema.yaml``. Nothing else defines these
values; a new class, subset, column or option starts here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

# Classes, in the order of the models' two output units: HEM is unit 0, ALL (the blasts) unit 1, and ALL
# is the positive class of every metric.
NEGATIVE_CLASS = "HEM"
POSITIVE_CLASS = "ALL"
CLASS_NAMES = (NEGATIVE_CLASS, POSITIVE_CLASS)
# What the classifiers output: their logits, from which every probability is read as softmax(z). The training
# and tuning rules pass it as a param, so that Snakemake retrains models (and rescores tuning configurations) of
# the earlier format, whose output layers applied sigmoid or softmax; the training stats record it.
CLASSIFIER_OUTPUT = "logits"

# Subsets of a split table: the model trains on train, picks epochs and hyperparameters on val, and is
# scored on the held-out test subset and the external prelim-phase images (subjects never in training).
SUBSETS = ("train", "val", "test", "external")
TRAINING_SUBSETS = ("train", "val")
PREDICTED_SUBSETS = ("val", "test", "external")
# The held-out subsets that tables and figures report.
REPORTED_SUBSETS = ("test", "external")

# Folders of prediction sets beside the seeds' seed<N>/: the mean of the seeds' p_all, and the
# test-time-augmented predictions (seed<N>/tta/, ensemble/tta/).
ENSEMBLE = "ensemble"
TTA = "tta"
# Kinds of prediction sets: the plain predictions, and the test-time augmented ones (TTA).
PLAIN = "plain"
# The inventory's source of the unlabelled final-phase images, and the challenge's submission file.
FINAL_PHASE_SOURCE = "final"
SUBMISSION_FILE = "isbi_valid.predict"

# Split schemes (config split.schemes): the paper's image-level split, the subject-disjoint one, and grouped
# cross-validation over the organisers' three subject-disjoint training folds.
RANDOM_SPLIT = "random"
PATIENT_SPLIT = "patient"
FOLDS_SPLIT = "folds"
SPLIT_SCHEMES = (RANDOM_SPLIT, PATIENT_SPLIT, FOLDS_SPLIT)
# The cross-validation's rotations: rotation k tests on the training data's fold_k and trains (and validates) on
# the other two. Each is a split of its own that models train on; the folds scheme pools their predictions.
FOLD_ROTATIONS = ("fold0", "fold1", "fold2")
# The splits models train on, each with its own split file: what a {scheme} of a training run can be.
TRAINING_SPLITS = (RANDOM_SPLIT, PATIENT_SPLIT, *FOLD_ROTATIONS)

DATA_SOURCES = ("kaggle", "archive", "directory", "demo")
# The top folder of the Kaggle archive (andrewmvd/leukemia-classification).
DATASET_DIR = "C-NMC_Leukemia"

# Columns of the TSV files the stages hand each other.
INVENTORY_COLUMNS = ("path", "subject", "label", "source")
REJECTED_COLUMNS = ("path", "source", "reason")
SPLIT_COLUMNS = ("path", "subject", "label", "subset")
CACHE_INDEX_COLUMNS = ("row", "path")
# The index column after CACHE_INDEX_COLUMNS: each row's CRC-32, which catches zeroed, shifted and truncated
# rows at several GB/s (indexes written before it existed lack it).
CHECKSUM_COLUMN = "crc32"
PREDICTION_COLUMNS = ("path", "subject", "label", "p_all", "pred")
HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "epoch_seconds", "train_seconds")
# The history columns a training curve plots.
CURVE_COLUMNS = HISTORY_COLUMNS[:5]
PER_SEED_COLUMNS = ("subset", "metric", "model", "seed", "value")
# results/classify/: the scores of a folder of new images (path relative to the folder; model as the config's
# classify.model names it), and the files that could not be read.
CLASSIFY_COLUMNS = ("path", "p_all", "pred", "model")
CLASSIFY_REJECTED_COLUMNS = ("path", "reason")
# Image files that classify reads, by suffix (any case).
CLASSIFY_SUFFIXES = (".bmp", ".png", ".jpg", ".jpeg", ".tif", ".tiff")
# Grad-CAM panels: one group of test cells per outcome of the model's own call (the prediction files' pred column).
GRADCAM_OUTCOMES = ("TP", "FP", "TN", "FN")
# results/stats/{scheme}/paired_ttests.tsv: one row per subset, metric and model pair.
TTEST_COLUMNS = (
    "subset",
    "metric",
    "model_a",
    "model_b",
    "mean_a",
    "mean_b",
    "diff",
    "ci_low",
    "ci_high",
    "t",
    "p_value",
    "p_holm",
    "n_seeds",
)

# File names inside a cache folder: the uint8 images or float32 features, and their row index.
CACHE_IMAGES_FILE = "images.npy"
FEATURES_FILE = "features.npy"
INDEX_FILE = "index.tsv"
# Beside each trained model: what produced it (code, config, data, software, device, Slurm job).
PROVENANCE_FILE = "provenance.json"
# An exported model's folder: the TensorFlow SavedModel, the ONNX file, and the check of both against .keras.
SAVED_MODEL_DIR = "saved_model"
ONNX_FILE = "model.onnx"
EXPORT_CHECK_FILE = "export_check.json"

# The models: config keys under `models:`, and the ImageNet "notop" files keras.applications loads from
# $KERAS_HOME/models/ (the names in keras/src/applications/vgg19.py and efficientnet.py).
VGG19 = "vgg19"
EFFICIENTNETB3 = "efficientnetb3"
MODELS = (VGG19, EFFICIENTNETB3)
KERAS_CACHE_SUBDIR = "models"
IMAGENET_WEIGHT_FILES = {
    VGG19: "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
    EFFICIENTNETB3: "efficientnetb3_notop.h5",
}

# Options of a `models:` block by who reads them: the base's builder, the head's builder, or only the
# training loop.
MODEL_OPTION_GROUPS = {
    "base": ("weights", "normalization", "freeze_base"),
    "head": ("dropout", "dense_units"),
    "training": ("batch_size", "epochs", "optimizer", "learning_rate"),
    # Beyond the paper, both off unless set: a second phase that fine-tunes the top of the base, and
    # class weights in the loss.
    "training_extras": ("fine_tune", "class_weight"),
}
WEIGHTS = ("imagenet", "none")
# Config `models.<name>.class_weight`: none, or balanced (scikit-learn's n / (2 * n_class) per class).
CLASS_WEIGHTS = ("none", "balanced")
NORMALIZATIONS = ("model", "unit")
# Config name -> class name in keras.optimizers.
OPTIMIZERS = {"adamax": "Adamax", "adam": "Adam", "rmsprop": "RMSprop"}
AUGMENTATION_OPTIONS = ("horizontal_flip", "rotation_degrees", "shift", "zoom")
# Config `gpu_request`: how the GPU rules ask for a GPU (resource gpu -> --gpus, resource gres -> --gres).
GPU_REQUESTS = ("gpus", "gres")
# Config `require_gpu`, as the GPU rules receive it (a resource string).
GPU_REQUIREMENTS = ("auto", "true", "false")
# Config `precision` -> Keras dtype policy.
PRECISIONS = {"float32": "float32", "mixed": "mixed_float16"}

# Validation scores of a tuning configuration; selection takes the highest (lowest for val_loss).
TUNING_METRICS = ("val_accuracy", "val_auc", "val_loss")
# Tables compare_models writes per scheme.
COMPARISON_TABLES = ("paired_ttests", "mcnemar", "delong", "agreement")


def drop_model_options(options: Mapping, groups: Iterable[str] = (), names: Iterable[str] = ()) -> dict:
    """A `models:` block without the options of ``groups`` (keys of MODEL_OPTION_GROUPS) and ``names``: the
    one place that decides which options reach which builder and rule. Options of no group pass on, so the
    builder they reach rejects them by name."""
    dropped = {name for group in groups for name in MODEL_OPTION_GROUPS[group]} | set(names)
    return {name: value for name, value in options.items() if name not in dropped}


def builder_options(options: Mapping) -> dict:
    """The options of a `models:` block that the classifier's builder takes: all but the training loop's."""
    return drop_model_options(options, ["training", "training_extras"])
