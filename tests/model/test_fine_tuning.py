"""Beyond the paper (issue 14, item 5): class weights in the loss, and a fine-tuning phase after the frozen one.

Runs use tiny backbones (model_stage_fixtures.TINY_BACKBONE, and here one with BatchNormalization) on the
synthetic 32 px dataset; one check builds the real EfficientNet-B3, whose base is full of BatchNormalization.
"""

import json
import signal
from pathlib import Path

import keras
import numpy as np
import pytest
import yaml

from conftest import REPO
from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.fileio import read_tsv
from leukemia_dtl.data.splits import read_split
from leukemia_dtl.model import classifiers
from leukemia_dtl.model.classifiers import base_position, layers_to_fine_tune, unfreeze_for_fine_tuning
from leukemia_dtl.model.inputs import ImageCache, class_indices
from leukemia_dtl.model.resume import BACKUP_STATE_DIR, ResumableBackup
from leukemia_dtl.model.training import build_seeded_classifier, class_weights, read_training_subsets, train_model
from model_stage_fixtures import vgg19_head
from training_runs import epochs_logged, launch_training, training_arguments

# The synthetic train subset: 96 images, two ALL to one HEM; balanced weights are n / (2 * n_class).
BALANCED_WEIGHTS = {0: 96 / (2 * 32), 1: 96 / (2 * 64)}
# One layer with weights from the top of the tiny BatchNormalization backbone: conv2.
FINE_TUNE = {"layers": 1, "learning_rate": 0.005, "epochs": 2}


def tiny_convnet_with_batch_normalization(include_top=False, weights=None, input_shape=None, pooling=None):
    """Seven layers under the ``keras.applications`` signature; the top four are conv2, bn2, relu2, pool."""
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(8, 3, strides=2, kernel_initializer="he_normal", name="conv1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.Activation("relu", name="relu1")(x)
    x = keras.layers.Conv2D(16, 3, strides=2, kernel_initializer="he_normal", name="conv2")(x)
    x = keras.layers.BatchNormalization(name="bn2")(x)
    x = keras.layers.Activation("relu", name="relu2")(x)
    x = keras.layers.GlobalMaxPooling2D(name="pool")(x)
    return keras.Model(inputs, x, name="tiny_bn_convnet")


@pytest.fixture
def tiny_bn_backbone(monkeypatch):
    monkeypatch.setitem(
        classifiers.BACKBONES,
        "tiny_bn",
        classifiers.Backbone(
            application=tiny_convnet_with_batch_normalization,
            model_normalization=lambda: [keras.layers.Rescaling(1 / 255, name="unit_rescaling")],
            head=vgg19_head,
            imagenet_notop=classifiers.ImagenetWeightsFile(file_name="", origin="", md5=""),
        ),
    )


def base_of(model: keras.Model) -> keras.Model:
    return model.layers[base_position(model)].layer


def base_weights(model: keras.Model) -> list[list[np.ndarray]]:
    """Each base layer's weights, in layer order (layer names differ between processes)."""
    return [layer.get_weights() for layer in base_of(model).layers]


def assert_same_weights(weights: list[list[np.ndarray]], expected: list[list[np.ndarray]]) -> None:
    assert len(weights) == len(expected)
    for layer, (layer_weights, layer_expected) in enumerate(zip(weights, expected, strict=True)):
        assert len(layer_weights) == len(layer_expected)
        for weight, weight_expected in zip(layer_weights, layer_expected, strict=True):
            np.testing.assert_array_equal(weight, weight_expected, err_msg=f"base layer {layer}")


def initial_classifier(arguments: dict, dataset) -> keras.Model:
    """The classifier train_model starts from: same options, seed, calibration images and augmentation."""
    split_path, cache_dir = dataset
    options = arguments["options"]
    return build_seeded_classifier(
        options.model_name,
        options.classifier_options,
        ImageCache.open(cache_dir),
        read_training_subsets(split_path),
        arguments["image_size"],
        arguments["augmentation"],
        arguments["seed"],
    )


# Class weights


def test_balanced_class_weights_are_n_over_twice_the_class_count(dataset):
    train = read_training_subsets(dataset[0])["train"]["label"]
    assert class_weights("m", "balanced", train) == pytest.approx(BALANCED_WEIGHTS)
    assert class_weights("m", "none", train) is None
    assert class_weights("m", None, train) is None
    with pytest.raises(UserError, match=r"no \['HEM'\] images"):
        class_weights("m", "balanced", train[train == "ALL"])


@pytest.mark.parametrize(
    ("class_weight", "expected_weights"),
    [("balanced", BALANCED_WEIGHTS), ("none", None), (None, None)],
    ids=["balanced", "none", "absent"],
)
def test_the_training_loss_is_weighted_by_class_and_the_validation_loss_is_not(
    tmp_path, dataset, tiny_backbone, class_weight, expected_weights
):
    # Learning rate 0 and no dropout or augmentation: the epoch's loss is that of the saved model on every
    # train image, which the cross-entropy by hand gives.
    extra = {} if class_weight is None else {"class_weight": class_weight}
    arguments = {
        **training_arguments(tmp_path, dataset, epochs=1, learning_rate=0.0, dropout=0.0, **extra),
        "augmentation": None,
    }
    stats = train_model(**arguments)
    split_path, cache_dir = dataset
    split, cache = read_split(split_path), ImageCache.open(cache_dir)
    model = keras.saving.load_model(arguments["model_path"])
    losses = {}
    for subset in ("train", "val"):
        frame = split[split["subset"] == subset]
        labels = class_indices(frame["label"])
        # Each image's softmax cross-entropy of the model's logits, unweighted.
        logits = model(np.asarray(cache.images[cache.rows_for(frame["path"])]), training=False)
        per_image = keras.losses.CategoricalCrossentropy(from_logits=True, reduction=None)(np.eye(2)[labels], logits)
        losses[subset] = (keras.ops.convert_to_numpy(per_image), labels)

    cross_entropy, labels = losses["train"]
    weights = np.array([(expected_weights or {0: 1.0, 1: 1.0})[label] for label in labels])
    history = read_tsv(arguments["history_path"]).astype(float)
    assert history["loss"].iloc[0] == pytest.approx(np.mean(weights * cross_entropy), rel=1e-4)
    assert history["val_loss"].iloc[0] == pytest.approx(np.mean(losses["val"][0]), rel=1e-4)
    recorded = None if expected_weights is None else {"HEM": expected_weights[0], "ALL": expected_weights[1]}
    assert stats["class_weights"] == pytest.approx(recorded)


# Fine-tuning


def test_fine_tuning_trains_the_top_layers_with_weights_of_the_base_and_never_batch_normalization():
    model = classifiers.build_classifier("efficientnetb3", image_size=32, weights="none", dropout=0.5, dense_units=8)
    head = {id(weight) for weight in model.trainable_weights}
    base = base_of(model)
    countable = [
        layer for layer in base.layers if layer.weights and not isinstance(layer, keras.layers.BatchNormalization)
    ]
    layers = layers_to_fine_tune(model, 12)
    assert layers == countable[-12:]
    # The 12 reach below BatchNormalization, activation and pooling layers, none of them counted.
    below = base.layers[base.layers.index(layers[0]) :]
    assert any(isinstance(layer, keras.layers.BatchNormalization) for layer in below)
    assert len(below) > 12

    unfreeze_for_fine_tuning(model, layers)
    trainable = {layer.name for layer in base.layers if layer.trainable_weights}
    assert trainable == {layer.name for layer in layers}
    assert not any(layer.trainable for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization))
    expected = head | {id(weight) for layer in layers for weight in layer.weights}
    assert {id(weight) for weight in model.trainable_weights} == expected


def test_a_fine_tuning_layer_count_the_base_cannot_serve_is_a_user_error(tiny_bn_backbone):
    model = classifiers.build_classifier("tiny_bn", image_size=32, weights="none", dropout=0.5)
    # conv1 and conv2 hold weights; bn1 and bn2 stay frozen, the activations and the pooling hold none.
    message = r"models.tiny_bn.fine_tune.layers is {}, but the base .* has 2 layers with weights to fine-tune"
    for layers in (3, 0):
        with pytest.raises(UserError, match=message.format(layers)):
            layers_to_fine_tune(model, layers, setting="models.tiny_bn.fine_tune.layers")
    assert [layer.name for layer in layers_to_fine_tune(model, 2)] == ["conv1", "conv2"]


# What config/beyond.yaml's fine_tune.layers unfreeze, as its comment and config/README.md describe them: VGG-19's
# block 5 (four convolutions), EfficientNet-B3's top convolution and its last MBConv block, block7b.
BEYOND_FINE_TUNED_LAYERS = {
    "vgg19": ["block5_conv1", "block5_conv2", "block5_conv3", "block5_conv4"],
    "efficientnetb3": [
        "block7b_expand_conv",
        "block7b_dwconv",
        "block7b_se_reduce",
        "block7b_se_expand",
        "block7b_project_conv",
        "top_conv",
    ],
}


@pytest.mark.parametrize("name", list(BEYOND_FINE_TUNED_LAYERS))
def test_the_beyond_overlay_fine_tunes_the_layers_it_documents(name):
    setting = yaml.safe_load((REPO / "config" / "beyond.yaml").read_text())["models"][name]["fine_tune"]["layers"]
    model = classifiers.build_classifier(name, image_size=32, weights="none", dropout=0.5)
    layers = layers_to_fine_tune(model, setting)
    assert [layer.name for layer in layers] == BEYOND_FINE_TUNED_LAYERS[name]


@pytest.mark.slow
def test_fine_tuning_changes_only_the_layers_it_names_and_continues_the_history(tmp_path, dataset, tiny_bn_backbone):
    arguments = training_arguments(
        tmp_path, dataset, model_name="tiny_bn", epochs=2, freeze_base=True, fine_tune=FINE_TUNE
    )
    stats = train_model(**arguments)

    history = read_tsv(arguments["history_path"])
    assert history["epoch"].astype(int).tolist() == [1, 2, 3, 4]
    assert (stats["fine_tune_epochs"], stats["epochs_run"], stats["resumed_from_epoch"]) == (2, 4, 0)
    head_parameters = 16 * 2 + 2  # Dense(2) on the 16 pooled features
    assert stats["params_trainable"] == head_parameters
    assert stats["params_trainable_fine_tune"] == head_parameters + 3 * 3 * 8 * 16 + 16  # and conv2

    trained = keras.saving.load_model(arguments["model_path"])
    assert type(trained.optimizer).__name__ == "Adamax"
    assert float(trained.optimizer.learning_rate) == pytest.approx(FINE_TUNE["learning_rate"])
    initial = initial_classifier(arguments, dataset)
    before, after = (
        {layer.name: layer.get_weights() for layer in base_of(model).layers} for model in (initial, trained)
    )
    assert not any(np.array_equal(old, new) for old, new in zip(before["conv2"], after["conv2"], strict=True))
    # Below the top layer with weights, or BatchNormalization (its statistics included): as built.
    frozen = ("conv1", "bn1", "bn2")
    assert_same_weights([after[name] for name in frozen], [before[name] for name in frozen])


def test_a_fine_tuning_phase_that_diverges_names_its_learning_rate(tmp_path, dataset, tiny_backbone):
    fine_tune = {"layers": 1, "learning_rate": 1e30, "epochs": 2}
    arguments = training_arguments(tmp_path, dataset, epochs=2, freeze_base=True, fine_tune=fine_tune)
    with pytest.raises(UserError) as failure:
        train_model(**arguments)
    message = str(failure.value)
    assert "tiny seed 0: training diverged in epoch 3/4" in message
    assert "Lower models.tiny.fine_tune.learning_rate (1e+30) and rerun." in message
    assert not Path(arguments["model_path"]).exists()


def kill_after_epoch(run_dir: Path, arguments: dict, kill_after: int) -> int:
    """Train in a subprocess, SIGKILLed once it logs epoch ``kill_after``; the last epoch it finished."""
    child = launch_training(run_dir, arguments)
    log = []
    for line in child.stderr:
        log.append(line)
        if epochs_logged([line]) == [kill_after]:
            child.send_signal(signal.SIGKILL)
            break
    log += child.stderr.readlines()
    assert child.wait(timeout=60) == -signal.SIGKILL, "".join(log)
    return epochs_logged(log)[-1]


def resume(run_dir: Path, arguments: dict) -> tuple[str, dict]:
    """Run the same training to its end in a subprocess: its log and stats."""
    (run_dir / "resume").mkdir()
    child = launch_training(run_dir / "resume", arguments)
    log = child.stderr.read()
    assert child.wait(timeout=120) == 0, log
    return log, json.loads(Path(arguments["stats_path"]).read_text())


@pytest.mark.slow
def test_a_run_killed_while_fine_tuning_resumes_there_without_the_frozen_phase(tmp_path, dataset, tiny_backbone):
    epochs, fine_tune = 2, {"layers": 1, "learning_rate": 0.005, "epochs": 5}
    total = epochs + fine_tune["epochs"]
    arguments = training_arguments(tmp_path, dataset, epochs=epochs, freeze_base=True, fine_tune=fine_tune)
    done = kill_after_epoch(tmp_path, arguments, kill_after=epochs + 1)
    assert epochs < done < total

    # The frozen phase's result, kept in the backup for the resume: a trained head on the untouched base.
    frozen_phase = initial_classifier(arguments, dataset)
    initial_base, initial_head = base_weights(frozen_phase), frozen_phase.get_layer("predictions").get_weights()
    classifiers.compile_classifier(frozen_phase, optimizer="adamax", learning_rate=0.01)
    restore = ResumableBackup(Path(arguments["backup_dir"]) / BACKUP_STATE_DIR, "frozen phase")
    assert restore.restore(frozen_phase) == epochs
    assert [row["epoch"] for row in restore.history] == list(range(1, epochs + 1))
    assert_same_weights(base_weights(frozen_phase), initial_base)
    assert not np.array_equal(frozen_phase.get_layer("predictions").get_weights()[0], initial_head[0])

    log, stats = resume(tmp_path, arguments)
    assert f"resuming after epoch {done}" in log
    assert epochs_logged(log.splitlines()) == list(range(done + 1, total + 1))
    assert (stats["resumed_from_epoch"], stats["epochs_run"]) == (done, total - done)
    assert read_tsv(arguments["history_path"])["epoch"].astype(int).tolist() == list(range(1, total + 1))
    # The second convolution (the top two layers: it and the pooling) trained in the fine-tuning phase only.
    fine_tuned = base_weights(keras.saving.load_model(arguments["model_path"]))
    assert not np.array_equal(fine_tuned[-2][0], initial_base[-2][0])
    assert_same_weights(fine_tuned[:-2], initial_base[:-2])


@pytest.mark.slow
def test_a_run_killed_in_the_frozen_phase_resumes_it_and_then_fine_tunes(tmp_path, dataset):
    epochs, fine_tune = 5, {"layers": 2, "learning_rate": 0.005, "epochs": 2}
    total = epochs + fine_tune["epochs"]
    arguments = training_arguments(tmp_path, dataset, epochs=epochs, freeze_base=True, fine_tune=fine_tune)
    done = kill_after_epoch(tmp_path, arguments, kill_after=1)
    assert done < epochs

    log, stats = resume(tmp_path, arguments)
    assert f"resuming after epoch {done}" in log
    assert epochs_logged(log.splitlines()) == list(range(done + 1, total + 1))
    assert (stats["resumed_from_epoch"], stats["epochs_run"]) == (done, total - done)
    assert read_tsv(arguments["history_path"])["epoch"].astype(int).tolist() == list(range(1, total + 1))
