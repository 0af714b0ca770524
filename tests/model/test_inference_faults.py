"""A model whose output is NaN (issue #13, item 3), injected for real: the prediction fails and writes no
table, so p_all always comes from the model. Beside test_inference.py."""

import numpy as np
import pytest

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.vocabulary import PLAIN, PREDICTED_SUBSETS
from leukemia_dtl.model import classifiers
from leukemia_dtl.model.inference import PredictionFiles, predict_run
from model_stage_fixtures import TINY_BACKBONE


def test_a_model_that_outputs_nan_fails_the_prediction_and_writes_no_table(tmp_path, dataset):
    split_path, cache_dir = dataset
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(classifiers.BACKBONES, "tiny", TINY_BACKBONE)
        model = classifiers.build_classifier("tiny", image_size=32, weights="none", dropout=0.5)
    kernel, bias = model.get_layer("predictions").get_weights()
    model.get_layer("predictions").set_weights([np.full_like(kernel, np.nan), bias])
    classifiers.save_model(model, tmp_path / "model.keras")

    out_paths = {subset: tmp_path / f"{subset}.tsv" for subset in PREDICTED_SUBSETS}
    with pytest.raises(UserError, match=r"The model outputs \[nan, nan\] for val/.* not finite for 32 of 32"):
        predict_run(
            tmp_path / "model.keras", split_path, cache_dir, 8, {PLAIN: PredictionFiles(out_paths, tmp_path / "s.json")}
        )
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model.keras"]
