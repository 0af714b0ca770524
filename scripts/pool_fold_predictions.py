"""Rule pool_fold_predictions: one seed's predictions of the folds scheme, pooled from the three rotations of
grouped cross-validation (leukemia_dtl.evaluate.ensemble.write_pooled_rotations).

input:  val, test, external (each a list: the rotations' prediction TSVs of that subset and prediction set)
output: val, test, external (the pooled prediction TSVs: per image the mean p_all of the rotations that predicted it)
"""

from leukemia_dtl.core.rule_runner import run_rule
from leukemia_dtl.core.vocabulary import PREDICTED_SUBSETS
from leukemia_dtl.evaluate.ensemble import write_pooled_rotations


def main(snakemake):
    write_pooled_rotations(
        rotation_files={subset: list(snakemake.input[subset]) for subset in PREDICTED_SUBSETS},
        out_paths={subset: snakemake.output[subset] for subset in PREDICTED_SUBSETS},
    )


run_rule(snakemake, main)
