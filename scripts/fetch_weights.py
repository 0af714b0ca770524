"""Rule fetch_weights: put the ImageNet weights into the Keras cache (leukemia_dtl.model.imagenet_weights).

Run it where the internet is reachable (a localrule on a cluster); training jobs then find the files
offline through KERAS_HOME.

output: weights, the files <keras_home>/models/<file> (names: leukemia_dtl.core.vocabulary.IMAGENET_WEIGHT_FILES)
params: model_names (config model names); the Keras cache is the folder above the outputs' models/ folder
"""

from pathlib import Path

from leukemia_dtl.core.rule_runner import run_rule
from leukemia_dtl.model.imagenet_weights import fetch_imagenet_weights


def main(snakemake):
    fetch_imagenet_weights(snakemake.params.model_names, Path(snakemake.output.weights[0]).parent.parent)


run_rule(snakemake, main)
