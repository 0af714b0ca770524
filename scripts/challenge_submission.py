"""Rule challenge_submission: the C-NMC 2019 final-phase submission of one model's seeds
(leukemia_dtl.model.challenge_submission.challenge_submission).

input:   probabilities (each seed's final-phase P(ALL) from predict_model: with evaluation.tta the TTA ones)
output:  submission (isbi_valid.predict: one 0/1 line per image, 1.bmp first, 1 = ALL),
         probabilities (final_phase.tsv: image, p_all, call)
params:  threshold (ALL where the seeds' mean p_all >= threshold)
"""

from leukemia_dtl.core.rule_runner import run_rule


def main(snakemake):
    from leukemia_dtl.model.challenge_submission import challenge_submission

    challenge_submission(
        probability_paths=list(snakemake.input.probabilities),
        threshold=snakemake.params.threshold,
        submission_path=snakemake.output.submission,
        probabilities_path=snakemake.output.probabilities,
    )


run_rule(snakemake, main)
