"""A trained classifier for people who do not use Keras: a TensorFlow SavedModel and an ONNX file, each loaded
back by its own runtime and checked against the ``.keras`` model before either is published.

Both take what the ``.keras`` model takes, float32 RGB images with pixel values 0..255, shape [batch, H, W, 3]
(the ONNX input is named ``image``), and give the class probabilities softmax(z) of its logits, in class order
[HEM, ALL]: the second is P(ALL), the probability the workflow reports (``inference.class_probabilities``).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.fileio import atomic_folder, atomic_path, write_json
from leukemia_dtl.data.splits import read_split
from leukemia_dtl.model import backend
from leukemia_dtl.model.augmentation import RandomAffineAugmentation
from leukemia_dtl.model.classifiers import load_model
from leukemia_dtl.model.inference import class_probabilities
from leukemia_dtl.model.inputs import ImageCache

log = logging.getLogger("leukemia_dtl")

# Largest |difference| allowed between an export's probabilities and those of the .keras model's logits.
EXPORT_TOLERANCE = 1e-4
# The endpoint Model.export writes into the SavedModel, and the signature tf2onnx converts.
SERVING_ENDPOINT = "serve"
ONNX_INPUT_NAME = "image"
CHECKED_SUBSET = "test"


def inference_model(model: keras.Model) -> keras.Model:
    """The classifier without its augmentation layer, sharing every other layer and weight, with a softmax
    after its logits: the exports output the probability pair the workflow reports, so a user without Keras
    reads P(ALL) off them.

    A SavedModel traces the functional graph as saved, and models saved before the augmentation's ``call``
    defaulted to ``training=False`` recorded it with ``training=True``: exported as they are, they would
    augment every image they classify. Rebuilding the chain of layers (as :func:`classifiers.build_classifier`
    makes it) from a new input without that layer holds for every saved model.
    """
    images = keras.Input(shape=model.input_shape[1:], name=ONNX_INPUT_NAME)
    outputs = images
    for layer in model.layers[1:]:
        if not isinstance(layer, RandomAffineAugmentation):
            outputs = layer(outputs)
    probabilities = keras.layers.Softmax(dtype="float32", name="probabilities")(outputs)
    return keras.Model(images, probabilities, name=f"{model.name}_inference")


def _require_packages(*modules: str) -> None:
    """UserError naming what to install when one of ``modules`` (tf2onnx, onnx, onnxruntime: each its own pip
    package's name) is missing."""
    missing = [module for module in modules if importlib.util.find_spec(module) is None]
    if missing:
        raise UserError(
            f"Exporting to ONNX needs the Python package(s) {', '.join(missing)}, which this environment lacks. "
            f"Install them with the versions pinned in requirements.txt (pip install {' '.join(missing)}), or use "
            "the workflow's train environment (envs/train.yaml)."
        )


def _write_saved_model(model: keras.Model, folder: Path) -> None:
    inference_model(model).export(str(folder), format="tf_saved_model", verbose=False)


def _convert_to_onnx(saved_model_folder: str | os.PathLike, onnx_path: str | os.PathLike) -> None:
    """tf2onnx's documented command line on the SavedModel (converting the Keras model directly turns
    EfficientNet-B3's normalisation constants into graph inputs); its output goes to the log."""
    _require_packages("tf2onnx", "onnx")
    command = [
        sys.executable,
        "-m",
        "tf2onnx.convert",
        "--saved-model",
        str(saved_model_folder),
        "--tag",
        "serve",
        "--signature_def",
        SERVING_ENDPOINT,
        "--output",
        str(onnx_path),
    ]
    environment = {
        **os.environ,
        # TensorFlow's C++ info lines (oneDNN, CPU features) would bury the converter's own in the log.
        "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "1"),
        # tf2onnx converts on the CPU; hiding the GPU keeps its TensorFlow off the memory this job holds there.
        "CUDA_VISIBLE_DEVICES": "",
    }
    converted = subprocess.run(command, capture_output=True, text=True, env=environment)
    chatter = [line for line in (converted.stdout + converted.stderr).splitlines() if line.strip()]
    for line in chatter:
        log.info("tf2onnx: %s", line)
    if converted.returncode != 0:
        raise UserError(
            f"tf2onnx could not convert {saved_model_folder} to ONNX (exit status {converted.returncode}; last "
            f"message: {chatter[-1] if chatter else 'none'}); its full output is in the log above. Check that "
            "tf2onnx, onnx and tensorflow have the versions pinned in requirements.txt."
        )


def _max_abs_diff(expected: np.ndarray, outputs: np.ndarray) -> float:
    """Largest |difference| of the class probabilities (P(ALL) among them); NaN when either is not finite,
    infinite when the shapes differ."""
    outputs = np.asarray(outputs, dtype=np.float64)
    if outputs.shape != expected.shape:
        return float("inf")
    if not (np.isfinite(outputs).all() and np.isfinite(expected).all()):
        return float("nan")
    return float(np.abs(outputs - expected).max())


def _onnx_opset(onnx_path: str | os.PathLike) -> int:
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    (opset,) = [entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")]
    return int(opset)


def check_exports(
    model: keras.Model, saved_model_folder: str | os.PathLike, onnx_path: str | os.PathLike, images: np.ndarray
) -> dict:
    """Load the SavedModel with TensorFlow and the ONNX file with onnxruntime, run both on ``images`` (0..255
    RGB) and compare their class probabilities with those of ``model.predict``'s logits
    (:func:`inference.class_probabilities`, float64); UserError when either differs by more than
    :data:`EXPORT_TOLERANCE` (or is not finite). Returns what ``export_check.json`` records. Turns TensorFlow's
    TensorFloat-32 off for the process, so all three compute in float32 also on a GPU."""
    _require_packages("onnx", "onnxruntime")
    import onnxruntime
    import tensorflow as tf

    # On Ampere and newer GPUs TensorFlow runs float32 convolutions and matrix products in TensorFloat-32 (a
    # 10-bit mantissa) unless told otherwise: the reference would then differ from onnxruntime's float32 on the
    # CPU by more than the tolerance, whatever the export. Left off for the rest of the process.
    tf.config.experimental.enable_tensor_float_32_execution(False)
    images = np.asarray(images, dtype="float32")
    expected = class_probabilities(model.predict(images, verbose=0))
    saved_model = tf.saved_model.load(str(saved_model_folder))
    saved_model_outputs = getattr(saved_model, SERVING_ENDPOINT)(tf.constant(images)).numpy()
    try:
        session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime's own exception types differ between its versions
        raise UserError(
            f"onnxruntime cannot load the ONNX file tf2onnx wrote ({' '.join(str(error).split())[:500]}), so "
            "nothing is published. The converter left an operation ONNX lacks: check that tensorflow, tf2onnx, "
            "onnx and onnxruntime have the versions pinned in requirements.txt."
        ) from None
    (onnx_outputs,) = session.run(None, {ONNX_INPUT_NAME: images})
    differences = {
        "saved_model": _max_abs_diff(expected, saved_model_outputs),
        "onnx": _max_abs_diff(expected, onnx_outputs),
    }
    failed = {name: difference for name, difference in differences.items() if not difference <= EXPORT_TOLERANCE}
    if failed:
        found = ", ".join(f"{name} {difference:.3g}" for name, difference in failed.items())
        raise UserError(
            f"The exported model differs from the .keras model on {len(images)} images by more than "
            f"{EXPORT_TOLERANCE:g} (largest |difference| of the class probabilities: {found}; nan means an output "
            "is not finite), so nothing is published. A model whose training diverged outputs NaN: retrain it. "
            "Otherwise check that tensorflow, keras, tf2onnx, onnx and onnxruntime have the versions pinned in "
            "requirements.txt."
        )
    return {
        "images": len(images),
        "tolerance": EXPORT_TOLERANCE,
        "saved_model_max_abs_diff": differences["saved_model"],
        "onnx_max_abs_diff": differences["onnx"],
        "onnx_opset": _onnx_opset(onnx_path),
        "onnx_input": ONNX_INPUT_NAME,
        "versions": {
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "tf2onnx": importlib.metadata.version("tf2onnx"),
            "onnx": importlib.metadata.version("onnx"),
            "onnxruntime": onnxruntime.__version__,
        },
    }


def check_images_of(split_path: str | os.PathLike, cache_dir: str | os.PathLike, image_size: int, count: int):
    """The first ``count`` test images of the split, in split order, from the image cache."""
    split = read_split(split_path)
    paths = split.loc[split["subset"] == CHECKED_SUBSET, "path"].head(count)
    if paths.empty:
        raise UserError(
            f"Split {split_path} has no {CHECKED_SUBSET} images to check the exported model on; rebuild the split."
        )
    cache = ImageCache.open(cache_dir, image_size)
    return cache.images_for(paths)


def export_run(
    model_path: str | os.PathLike,
    split_path: str | os.PathLike,
    cache_dir: str | os.PathLike,
    saved_model_folder: str | os.PathLike,
    onnx_path: str | os.PathLike,
    check_path: str | os.PathLike,
    check_images: int = 16,
    threads: int | None = None,
) -> dict:
    """Export the ``.keras`` model at ``model_path`` as a SavedModel and an ONNX file, check both on the
    first ``check_images`` test images of the split (:func:`check_exports`) and only then publish them, with
    the check's record at ``check_path``. ``threads`` limits the backend's CPU threads (the rule's threads)."""
    if threads:
        backend.limit_cpu_threads(threads)
    model = load_model(model_path)
    images = check_images_of(split_path, cache_dir, model.input_shape[1], check_images)
    with atomic_folder(saved_model_folder) as staged_saved_model, atomic_path(onnx_path) as staged_onnx:
        _write_saved_model(model, staged_saved_model)
        _convert_to_onnx(staged_saved_model, staged_onnx)
        check = check_exports(model, staged_saved_model, staged_onnx, images)
    write_json(check, check_path)
    log.info(
        "Exported %s: SavedModel %s (max |diff| %.2g), ONNX %s (opset %d, max |diff| %.2g), on %d test images",
        model_path,
        saved_model_folder,
        check["saved_model_max_abs_diff"],
        onnx_path,
        check["onnx_opset"],
        check["onnx_max_abs_diff"],
        check["images"],
    )
    return check
