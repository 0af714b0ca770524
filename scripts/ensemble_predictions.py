"""Rule ensemble_predictions: the seed ensemble of one model's val, test and external predictions, p_all the mean
of the seeds' p_all per image (leukemia_dtl.evaluate.ensemble.write_seed_ensembles).

input:  val, test, external (each a list: the seeds' prediction TSVs of that subset; their paths name the seeds)
output: val, test, external (the ensemble's prediction TSVs)
"""

from leukemia_dtl.core.rule_runner import run_rule
from leukemia_dtl.core.vocabulary import PREDICTED_SUBSETS
from leukemia_dtl.evaluate.ensemble import write_seed_ensembles


def main(snakemake):
    write_seed_ensembles(
        seed_files={subset: list(snakemake.input[subset]) for subset in PREDICTED_SUBSETS},
        out_paths={subset: snakemake.output[subset] for subset in PREDICTED_SUBSETS},
    )


run_rule(snakemake, main)
