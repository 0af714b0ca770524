"""Rule script: put the ImageNet weights into the Keras cache (leukemia_dtl.keras_weights).

Run it where the internet is reachable (a localrule on a cluster); training jobs then find the files
offline through KERAS_HOME.

snakemake.output: the weight files, <keras_home>/models/<file> (vgg19:
                  vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5; efficientnetb3: efficientnetb3_notop.h5)
snakemake.params: model_names (list of config model names), keras_home
Snakemake injects the ``snakemake`` object.
"""

from leukemia_dtl.keras_weights import fetch_imagenet_weights
from leukemia_dtl.rule_runner import run_rule

run_rule(
    snakemake,
    lambda: fetch_imagenet_weights(snakemake.params.model_names, snakemake.params.keras_home),
)
