"""The vocabulary module is the one definition of the names the config schema, the Snakefile and the
package share: the schema's enums and the workflow's wildcard constraints agree with it."""

import re
from pathlib import Path

import pytest
import yaml

from code_imports import third_party_imports
from conftest import REPO, run_snakemake
from leukemia_dtl.core.vocabulary import (
    AUGMENTATION_OPTIONS,
    CLASS_WEIGHTS,
    DATA_SOURCES,
    GPU_REQUESTS,
    GPU_REQUIREMENTS,
    MODEL_OPTION_GROUPS,
    MODELS,
    NORMALIZATIONS,
    OPTIMIZERS,
    PRECISIONS,
    SPLIT_SCHEMES,
    TRAINING_SPLITS,
    TUNING_METRICS,
    WEIGHTS,
    builder_options,
    drop_model_options,
)

SCHEMA = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())["properties"]
MODEL_ENTRY = SCHEMA["models"]["additionalProperties"]["properties"]


@pytest.mark.parametrize(
    "schema_values, vocabulary_values",
    [
        (SCHEMA["data"]["properties"]["source"]["enum"], DATA_SOURCES),
        (SCHEMA["split"]["properties"]["schemes"]["items"]["enum"], SPLIT_SCHEMES),
        (SCHEMA["models"]["propertyNames"]["enum"], MODELS),
        (MODEL_ENTRY["optimizer"]["enum"], OPTIMIZERS),
        (MODEL_ENTRY["class_weight"]["enum"], CLASS_WEIGHTS),
        (SCHEMA["tuning"]["properties"]["grid"]["properties"]["optimizer"]["items"]["enum"], OPTIMIZERS),
        (MODEL_ENTRY["weights"]["enum"], WEIGHTS),
        (MODEL_ENTRY["normalization"]["enum"], NORMALIZATIONS),
        (SCHEMA["precision"]["enum"], PRECISIONS),
        ([str(value).lower() for value in SCHEMA["require_gpu"]["enum"]], GPU_REQUIREMENTS),
        (SCHEMA["gpu_request"]["enum"], GPU_REQUESTS),
        (SCHEMA["tuning"]["properties"]["metric"]["enum"], TUNING_METRICS),
        (list(SCHEMA["augmentation"]["properties"]), AUGMENTATION_OPTIONS),
        (list(MODEL_ENTRY), [name for group in MODEL_OPTION_GROUPS.values() for name in group]),
    ],
)
def test_schema_enums_agree_with_the_vocabulary(schema_values, vocabulary_values):
    assert sorted(schema_values) == sorted(vocabulary_values)


def test_the_tuning_grid_takes_only_model_options():
    grid_keys = set(SCHEMA["tuning"]["properties"]["grid"]["properties"])
    assert grid_keys <= set(MODEL_ENTRY)


def test_the_schema_defaults_name_only_known_models():
    assert set(SCHEMA["models"]["default"]) == set(MODELS)


def test_what_the_snakefile_imports_needs_only_the_standard_library():
    """rules/common.smk imports package modules into the Snakemake process, whatever environment that is."""
    common = (REPO / "rules" / "common.smk").read_text()
    modules = re.findall(r"^from (leukemia_dtl[\w.]*) import", common, re.MULTILINE)
    assert "leukemia_dtl.core.vocabulary" in modules
    for module in modules:
        assert third_party_imports(REPO / "scripts" / Path(*module.split(".")).with_suffix(".py")) == set(), module


def test_drop_model_options_splits_a_models_block_by_who_reads_it():
    block = {
        "batch_size": 30,
        "epochs": 100,
        "optimizer": "adamax",
        "learning_rate": 0.001,
        "dropout": 0.5,
        "dense_units": 256,
        "weights": "imagenet",
        "normalization": "model",
        "freeze_base": True,
        "class_weight": "balanced",
        "fine_tune": {"layers": 4, "learning_rate": 1e-05, "epochs": 20},
    }
    builder = builder_options(block)
    assert builder == {
        "dropout": 0.5,
        "dense_units": 256,
        "weights": "imagenet",
        "normalization": "model",
        "freeze_base": True,
    }
    assert drop_model_options(builder, ["base"]) == {"dropout": 0.5, "dense_units": 256}
    assert drop_model_options(block, names=["epochs", "dropout"]).keys() == block.keys() - {"epochs", "dropout"}
    # An option of no group passes on, so the builder that receives it rejects it by name.
    assert drop_model_options({"dropuot": 0.5}, ["training", "base"]) == {"dropuot": 0.5}


@pytest.mark.workflow
def test_wildcard_constraints_accept_exactly_the_training_splits(tmp_path):
    targets = [f"results/splits/{scheme}.tsv" for scheme in TRAINING_SPLITS]
    planned = run_snakemake("-n", *targets, "--cores", "1", "--configfile", "config/demo.yaml", workdir=tmp_path)
    assert planned.returncode == 0, planned.stdout + planned.stderr
    assert planned.stdout.count("rule split_dataset:") == len(TRAINING_SPLITS)
    refused = run_snakemake(
        "-n", "results/splits/bogus.tsv", "--cores", "1", "--configfile", "config/demo.yaml", workdir=tmp_path
    )
    assert refused.returncode != 0
    assert "MissingRuleException" in refused.stdout + refused.stderr
