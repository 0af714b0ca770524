"""Rule subject_table: per model and held-out subset, how many subjects and images, and subject-level scores
from each subject's mean p_all (seeds and ensemble); and per subject, the ensemble's scores.

input: predictions (seed files, keys params.run_keys = (model, seed, subset)), ensemble (files, keys
params.ensemble_keys = (model, subset)). output: tsv, md, per_subject. params: run_keys, ensemble_keys, models,
threshold, min_subjects_per_class.
"""

from leukemia_dtl.core.fileio import write_tsv
from leukemia_dtl.core.rule_runner import run_rule
from leukemia_dtl.evaluate.subjects import per_subject_table, subject_table
from leukemia_dtl.evaluate.tables import write_table


def main(snakemake):
    params, inputs, output = snakemake.params, snakemake.input, snakemake.output
    seed_files = dict(zip(map(tuple, params.run_keys), inputs.predictions, strict=True))
    ensemble_files = dict(zip(map(tuple, params.ensemble_keys), inputs.ensemble, strict=True))
    table = subject_table(seed_files, ensemble_files, params.models, params.threshold, params.min_subjects_per_class)
    write_table(table, output.tsv, output.md, f"Subjects ({snakemake.wildcards.scheme} split)")
    write_tsv(per_subject_table(ensemble_files, params.models, params.threshold), output.per_subject)


run_rule(snakemake, main)
