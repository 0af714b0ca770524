"""Rule subject_table: per model and held-out subset, how many subjects and images, and subject-level scores
from each subject's mean p_all (seeds and ensemble); and per subject, the ensemble's scores.

input: predictions (the seeds' files), ensemble (the ensembles' files); each file's model, seed and subset are read
from its path. output: tsv, md, per_subject. params: models, threshold, min_subjects_per_class.
"""

from leukemia_dtl.core.fileio import write_tsv
from leukemia_dtl.core.rule_runner import run_rule
from leukemia_dtl.core.run_paths import files_by
from leukemia_dtl.evaluate.formatting import write_table
from leukemia_dtl.evaluate.subjects import per_subject_table, subject_table


def main(snakemake):
    params, inputs, output = snakemake.params, snakemake.input, snakemake.output
    seed_files = files_by(inputs.predictions, "model", "seed", "subset")
    ensemble_files = files_by(inputs.ensemble, "model", "subset")
    table = subject_table(seed_files, ensemble_files, params.models, params.threshold, params.min_subjects_per_class)
    write_table(table, output.tsv, output.md, f"Subjects ({snakemake.wildcards.scheme} split)")
    write_tsv(per_subject_table(ensemble_files, params.models, params.threshold), output.per_subject)


run_rule(snakemake, main)
