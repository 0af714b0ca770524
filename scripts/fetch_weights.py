"""Rule script: put the ImageNet weights into the Keras cache (leukemia_dtl.keras_weights).

Run it where the internet is reachable (a localrule on a cluster); training jobs then find the files
offline through KERAS_HOME.

snakemake.output: the weight files, <keras_home>/models/<file> (vgg19:
                  vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5; efficientnetb3: efficientnetb3_notop.h5)
snakemake.params: model_names (list of config model names); the Keras cache is the folder above
                  the outputs' models/ folder
Snakemake injects the ``snakemake`` object.
"""

from pathlib import Path

from leukemia_dtl.keras_weights import fetch_imagenet_weights
from leukemia_dtl.rule_runner import run_rule

keras_home = Path(snakemake.output.weights[0]).parent.parent
run_rule(snakemake, lambda: fetch_imagenet_weights(snakemake.params.model_names, keras_home))
