"""The divergence check (model/callbacks.py) on losses that are not finite in other ways than a learning rate
too high (issue #13, item 1; that one, through train_model, is in test_training_faults.py): a validation loss
alone NaN, and an infinite training loss."""

import keras
import numpy as np
import pytest

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.model.callbacks import DivergenceCheck, TrainingProgress


def batch_normalization_with_negative_variance() -> tuple[keras.Model, np.ndarray, np.ndarray]:
    """A model whose BatchNormalization holds a negative moving variance: training normalises with each batch's
    own statistics and stays finite, validation uses the moving ones and takes the square root of a negative."""
    model = keras.Sequential([keras.Input((4,)), keras.layers.BatchNormalization(), keras.layers.Dense(2)])
    model.layers[0].moving_variance.assign(-np.ones(4))
    model.compile("sgd", keras.losses.CategoricalCrossentropy(from_logits=True))
    features = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
    return model, features, np.eye(2, dtype="float32")[np.arange(8) % 2]


def overflowing_regression() -> tuple[keras.Model, np.ndarray, np.ndarray]:
    """Outputs of 4e20 against targets of 0: their square overflows float32 to an infinite, not NaN, loss."""
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(1, kernel_initializer=keras.initializers.Constant(1e20))]
    )
    model.compile("sgd", "mse")
    return model, np.ones((8, 4), "float32"), np.zeros((8, 1), "float32")


@pytest.mark.parametrize(
    ("faulty_model", "named"),
    [(batch_normalization_with_negative_variance, "(val_loss nan)"), (overflowing_regression, "(loss inf")],
    ids=["validation loss alone NaN", "infinite training loss"],
)
def test_a_validation_loss_alone_or_an_infinite_loss_also_stops_the_run(faulty_model, named):
    model, features, targets = faulty_model()
    check = DivergenceCheck(TrainingProgress("tiny seed 0", 2, 8), "Lower models.tiny.learning_rate and rerun.")
    with pytest.raises(UserError) as failure:
        model.fit(
            features, targets, validation_data=(features, targets), batch_size=8, epochs=2, verbose=0, callbacks=[check]
        )
    assert f"tiny seed 0: training diverged in epoch 1/2 {named}" in str(failure.value)
    assert "no model is written. Lower models.tiny.learning_rate and rerun." in str(failure.value)
