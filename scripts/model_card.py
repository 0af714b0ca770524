"""Rule model_card: the Markdown model card of one model on one split scheme, its seeds and their seed ensemble
(leukemia_dtl.evaluate.model_cards.write_model_card).

input:  split (split TSV); train_stats, provenance (per seed); test_metrics, external_metrics, test_predictions,
        external_predictions (per seed); ensemble_test_metrics, ensemble_external_metrics,
        ensemble_test_predictions, ensemble_external_predictions (the seed ensemble's)
output: card (results/model_cards/{scheme}/{model}.md)
params: scheme, model, model_files, export_folders (per seed),
        model_options (the config's models.<model> block), hyperparameters (configured | tuned), augmentation,
        image_size, precision, min_subjects_per_class (the config's statistics.min_subjects_per_class)
"""

from leukemia_dtl.core.rule_runner import run_rule
from leukemia_dtl.core.run_paths import files_by
from leukemia_dtl.core.vocabulary import REPORTED_SUBSETS
from leukemia_dtl.evaluate.model_cards import write_model_card


def main(snakemake):
    inputs, params = snakemake.input, snakemake.params
    # The seeds are those of the training stats; every per-seed list is put in their order by its paths.
    seeds = [seed for (seed,) in files_by(inputs.train_stats, "seed")]

    def in_seed_order(paths):
        by_seed = files_by(paths, "seed")
        return [by_seed[(seed,)] for seed in seeds]

    write_model_card(
        snakemake.output.card,
        split_path=inputs.split,
        train_stats_paths=in_seed_order(inputs.train_stats),
        provenance_paths=in_seed_order(inputs.provenance),
        metrics_paths={subset: in_seed_order(inputs[f"{subset}_metrics"]) for subset in REPORTED_SUBSETS},
        prediction_paths={subset: in_seed_order(inputs[f"{subset}_predictions"]) for subset in REPORTED_SUBSETS},
        ensemble_metrics_paths={subset: inputs[f"ensemble_{subset}_metrics"] for subset in REPORTED_SUBSETS},
        ensemble_prediction_paths={subset: inputs[f"ensemble_{subset}_predictions"] for subset in REPORTED_SUBSETS},
        scheme=params.scheme,
        model=params.model,
        seeds=seeds,
        model_files=in_seed_order(params.model_files),
        export_folders=in_seed_order(params.export_folders),
        model_options=dict(params.model_options),
        hyperparameters=params.hyperparameters,
        augmentation=dict(params.augmentation),
        image_size=int(params.image_size),
        precision=params.precision,
        min_subjects_per_class=int(params.min_subjects_per_class),
    )


run_rule(snakemake, main)
