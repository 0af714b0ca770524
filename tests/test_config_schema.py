"""The config schema is the one gate for what a config can be checked for on its own: the training code no longer
checks these values (issue 24), so the schema must refuse each of them, naming the key."""

import copy

import jsonschema
import pytest
import yaml

from conftest import REPO

SCHEMA = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())
DEMO = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())


def test_the_demo_config_passes():
    jsonschema.Draft202012Validator(SCHEMA).validate(DEMO)


@pytest.mark.parametrize(
    ("model", "option", "value", "key"),
    [
        ("vgg19", "class_weight", "balance", "class_weight"),
        ("vgg19", "optimizer", "sgd", "optimizer"),
        ("vgg19", "normalization", "imagenet", "normalization"),
        ("efficientnetb3", "weights", "random", "weights"),
        ("vgg19", "batch_size", None, "batch_size"),
        ("vgg19", "dense_units", 64, "dense_units"),
    ],
    ids=["class_weight", "optimizer", "normalization", "weights", "a missing training option", "dense_units of vgg19"],
)
def test_a_model_option_the_training_cannot_take_is_refused_naming_it(model, option, value, key):
    config = copy.deepcopy(DEMO)
    if value is None:
        del config["models"][model][option]
    else:
        config["models"][model][option] = value
    with pytest.raises(jsonschema.ValidationError) as refused:
        jsonschema.Draft202012Validator(SCHEMA).validate(config)
    assert key in str(refused.value)
    assert list(refused.value.absolute_path)[:2] == ["models", model]


def test_a_precision_the_backend_cannot_set_is_refused():
    config = copy.deepcopy(DEMO) | {"precision": "float16"}
    with pytest.raises(jsonschema.ValidationError) as refused:
        jsonschema.Draft202012Validator(SCHEMA).validate(config)
    assert "'float16' is not one of" in str(refused.value)
