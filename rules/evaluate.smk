# Evaluation stage: seed ensembles -> metrics per prediction set and subset -> model and ensemble comparisons ->
# Tables 1-2, subject and challenge tables, leakage table, figures.


localrules:
    ensemble_predictions,
    pool_fold_predictions,
    performance_tables,
    subject_table,
    challenge_table,
    leakage_table,
    plot_training_curves,
    plot_subset_figures,
    plot_forest,
    plot_rulegraph,


rule ensemble_predictions:
    input:
        **{subset: ensemble_members(subset) for subset in PREDICTED_SUBSETS},
    output:
        **per_subset(ENSEMBLE_PREDICTIONS),
    log:
        log_file("ensemble_predictions/{scheme}/{model}/{ensemble}"),
    wildcard_constraints:
        ensemble="|".join(ENSEMBLE_SETS),
    conda:
        "../envs/evaluate.yaml"
    script:
        "../scripts/ensemble_predictions.py"


# The folds scheme's predictions per seed: each image's mean p_all over the rotations that predicted it (a test
# image's from the one rotation that held its fold out). Ensembles, metrics and tables then read them as any
# scheme's.
rule pool_fold_predictions:
    input:
        **{subset: rotation_files(subset) for subset in PREDICTED_SUBSETS},
    output:
        **per_subset(SET_PREDICTIONS.replace("{scheme}", FOLDS_SPLIT)),
    log:
        log_file(f"pool_fold_predictions/{FOLDS_SPLIT}/{{model}}/{{prediction_set}}"),
    wildcard_constraints:
        prediction_set=rf"seed\d+(/{TTA})?",
    conda:
        "../envs/evaluate.yaml"
    script:
        "../scripts/pool_fold_predictions.py"


rule evaluate_predictions:
    input:
        **per_subset(SET_PREDICTIONS),
    output:
        **per_subset(SET_METRICS),
    log:
        log_file(f"evaluate_predictions/{PREDICTION_SET}"),
    conda:
        "../envs/evaluate.yaml"
    params:
        statistics=config["statistics"],
    script:
        "../scripts/evaluate_predictions.py"


rule compare_models:
    input:
        metrics=lambda wildcards: run_files(
            METRICS, wildcards.scheme, PREDICTED_SUBSETS
        ),
        predictions=lambda wildcards: run_files(
            PREDICTIONS, wildcards.scheme, REPORTED_SUBSETS
        ),
    output:
        **{name: stats_file(name) for name in COMPARISON_TABLES},
    log:
        log_file("compare_models/{scheme}"),
    benchmark:
        benchmark_file("compare_models/{scheme}")
    conda:
        "../envs/evaluate.yaml"
    params:
        models=list(config["models"]),
        statistics=config["statistics"],
    script:
        "../scripts/compare_models.py"


rule compare_ensembles:
    input:
        ensemble=lambda wildcards: [
            path
            for kind in prediction_kinds()
            for path in ensemble_files(
                SET_PREDICTIONS, wildcards.scheme, REPORTED_SUBSETS, kind
            )
        ],
        seeds=lambda wildcards: [
            path
            for kind in prediction_kinds()
            for path in run_files(
                SET_PREDICTIONS, wildcards.scheme, REPORTED_SUBSETS, kind
            )
        ],
    output:
        tsv=report(
            stats_file("ensemble_delong"),
            category="Statistical tests",
            subcategory="{scheme} split",
            labels={
                "table": "Seed ensemble vs single seeds (DeLong)",
                "split": "{scheme}",
            },
        ),
    log:
        log_file("compare_ensembles/{scheme}"),
    conda:
        "../envs/evaluate.yaml"
    script:
        "../scripts/compare_ensembles.py"


# Each model against the first configured one with the subject as the unit (the paired t-tests of compare_models
# pair seeds on one test set: training noise): every Table 1 metric's difference with a paired subject-cluster
# bootstrap interval and p-value per held-out subset and prediction set, and McNemar on the seed ensembles' calls.
rule compare_subjects:
    input:
        ensemble=lambda wildcards: [
            path
            for kind in prediction_kinds()
            for path in ensemble_files(
                SET_PREDICTIONS, wildcards.scheme, REPORTED_SUBSETS, kind
            )
        ],
        seeds=lambda wildcards: [
            path
            for kind in prediction_kinds()
            for path in run_files(
                SET_PREDICTIONS, wildcards.scheme, REPORTED_SUBSETS, kind
            )
        ],
    output:
        subject_comparison=report(
            stats_file("subject_comparison"),
            category="Statistical tests",
            subcategory="{scheme} split",
            labels={
                "table": "Model differences, subject bootstrap",
                "split": "{scheme}",
            },
        ),
        ensemble_mcnemar=report(
            stats_file("ensemble_mcnemar"),
            category="Statistical tests",
            subcategory="{scheme} split",
            labels={"table": "Seed ensembles, McNemar", "split": "{scheme}"},
        ),
    log:
        log_file("compare_subjects/{scheme}"),
    benchmark:
        benchmark_file("compare_subjects/{scheme}")
    conda:
        "../envs/evaluate.yaml"
    params:
        models=list(config["models"]),
        statistics=config["statistics"],
    script:
        "../scripts/compare_subjects.py"


rule performance_tables:
    input:
        metrics=lambda wildcards: run_files(METRICS, wildcards.scheme, REPORTED_SUBSETS),
        ttests=stats_file("paired_ttests"),
        subject_comparison=stats_file("subject_comparison"),
        ensemble_mcnemar=stats_file("ensemble_mcnemar"),
        train_stats=lambda wildcards: scheme_run_files(TRAIN_STATS, wildcards.scheme),
        predict_stats=lambda wildcards: scheme_run_files(
            PREDICT_STATS, wildcards.scheme
        ),
        ensemble_metrics=lambda wildcards: ensemble_files(
            SET_METRICS, wildcards.scheme, REPORTED_SUBSETS
        ),
        tta_metrics=lambda wildcards: tta_files(
            SET_METRICS, wildcards.scheme, REPORTED_SUBSETS
        ),
        tta_ensemble_metrics=lambda wildcards: tta_files(
            SET_METRICS, wildcards.scheme, REPORTED_SUBSETS, ensemble=True
        ),
    output:
        table1_tsv=report(
            table_file("table1_performance", "tsv"),
            category="Tables",
            subcategory="{scheme} split",
            labels={"table": "Table 1: performance", "split": "{scheme}"},
        ),
        table1_md=table_file("table1_performance", "md"),
        table1_extended_tsv=report(
            table_file("table1_extended", "tsv"),
            category="Tables",
            subcategory="{scheme} split",
            labels={
                "table": "Table 1, beyond the paper: ensemble, validation thresholds, TTA",
                "split": "{scheme}",
            },
        ),
        table1_extended_md=table_file("table1_extended", "md"),
        table2_tsv=report(
            table_file("table2_compute", "tsv"),
            category="Tables",
            subcategory="{scheme} split",
            labels={"table": "Table 2: computation", "split": "{scheme}"},
        ),
        table2_md=table_file("table2_compute", "md"),
    log:
        log_file("performance_tables/{scheme}"),
    conda:
        "../envs/evaluate.yaml"
    params:
        models=list(config["models"]),
        subsets=REPORTED_SUBSETS,
        subject_ci_subsets=lambda wildcards: subject_ci_subsets(wildcards.scheme),
    script:
        "../scripts/performance_tables.py"


rule subject_table:
    input:
        predictions=lambda wildcards: run_files(
            PREDICTIONS, wildcards.scheme, REPORTED_SUBSETS
        ),
        ensemble=lambda wildcards: ensemble_files(
            SET_PREDICTIONS, wildcards.scheme, REPORTED_SUBSETS
        ),
    output:
        tsv=report(
            table_file("subjects", "tsv"),
            category="Tables",
            subcategory="{scheme} split",
            labels={
                "table": "Subjects: how many, and subject-level scores",
                "split": "{scheme}",
            },
        ),
        md=table_file("subjects", "md"),
        per_subject=report(
            table_file("subject_scores", "tsv"),
            category="Tables",
            subcategory="{scheme} split",
            labels={
                "table": "Per subject: the ensemble's scores",
                "split": "{scheme}",
            },
        ),
    log:
        log_file("subject_table/{scheme}"),
    conda:
        "../envs/evaluate.yaml"
    params:
        models=list(config["models"]),
        threshold=config["statistics"]["threshold"],
        min_subjects_per_class=config["statistics"]["min_subjects_per_class"],
    script:
        "../scripts/subject_table.py"


rule challenge_table:
    input:
        seed_metrics=lambda wildcards: [
            path
            for kind in prediction_kinds()
            for path in run_files(SET_METRICS, wildcards.scheme, ["external"], kind)
        ],
        ensemble_metrics=lambda wildcards: [
            path
            for kind in prediction_kinds()
            for path in ensemble_files(
                SET_METRICS, wildcards.scheme, ["external"], kind
            )
        ],
    output:
        tsv=report(
            table_file("challenge", "tsv"),
            category="Tables",
            subcategory="{scheme} split",
            labels={"table": "C-NMC 2019 challenge yardstick", "split": "{scheme}"},
        ),
        md=table_file("challenge", "md"),
    log:
        log_file("challenge_table/{scheme}"),
    conda:
        "../envs/evaluate.yaml"
    params:
        models=list(config["models"]),
        data_source=config["data"]["source"],
    script:
        "../scripts/challenge_table.py"


rule leakage_table:
    input:
        **{
            scheme: run_files(METRICS, scheme, REPORTED_SUBSETS)
            for scheme in (RANDOM_SPLIT, PATIENT_SPLIT)
        },
    output:
        tsv=report(
            LEAKAGE_TABLE.format(ext="tsv"),
            category="Tables",
            labels={
                "table": "Cost of the image-level split",
                "split": "random vs patient",
            },
        ),
        md=LEAKAGE_TABLE.format(ext="md"),
    log:
        log_file("leakage_table"),
    conda:
        "../envs/evaluate.yaml"
    script:
        "../scripts/leakage_table.py"


rule plot_training_curves:
    input:
        histories=lambda wildcards: run_files(HISTORY, wildcards.scheme),
    output:
        png=report(
            figure_file("training_curves", "png"),
            category="Figures",
            subcategory="{scheme} split",
            labels={"figure": "Training curves (Figs. 4-5)", "split": "{scheme}"},
        ),
        pdf=figure_file("training_curves", "pdf"),
    log:
        log_file("plot_training_curves/{scheme}"),
    conda:
        "../envs/evaluate.yaml"
    script:
        "../scripts/plot_training_curves.py"


rule plot_subset_figures:
    input:
        predictions=lambda wildcards: run_files(
            PREDICTIONS, wildcards.scheme, [wildcards.subset]
        ),
        metrics=lambda wildcards: run_files(
            METRICS, wildcards.scheme, [wildcards.subset]
        ),
        ensemble_metrics=lambda wildcards: ensemble_files(
            SET_METRICS, wildcards.scheme, [wildcards.subset]
        ),
    output:
        **{
            f"{kind}_png": report(
                figure_file(f"{kind}_{{subset}}", "png"),
                category="Figures",
                subcategory="{scheme} split",
                labels={"figure": f"{kind} ({{subset}})", "split": "{scheme}"},
            )
            for kind in SUBSET_FIGURES
        },
        **{
            f"{kind}_pdf": figure_file(f"{kind}_{{subset}}", "pdf")
            for kind in SUBSET_FIGURES
        },
    log:
        log_file("plot_subset_figures/{scheme}/{subset}"),
    conda:
        "../envs/evaluate.yaml"
    params:
        threshold=config["statistics"]["threshold"],
    script:
        "../scripts/plot_subset_figures.py"


rule plot_forest:
    input:
        metrics=lambda wildcards: run_files(
            METRICS, wildcards.scheme, [wildcards.subset]
        ),
        ensemble_metrics=lambda wildcards: ensemble_files(
            SET_METRICS, wildcards.scheme, [wildcards.subset]
        ),
        tta_metrics=lambda wildcards: tta_files(
            SET_METRICS, wildcards.scheme, [wildcards.subset]
        ),
        tta_ensemble_metrics=lambda wildcards: tta_files(
            SET_METRICS, wildcards.scheme, [wildcards.subset], ensemble=True
        ),
    output:
        png=report(
            figure_file("forest_{subset}", "png"),
            category="Figures",
            subcategory="{scheme} split",
            labels={
                "figure": "Forest plot of Table 1 ({subset})",
                "split": "{scheme}",
            },
        ),
        pdf=figure_file("forest_{subset}", "pdf"),
    log:
        log_file("plot_forest/{scheme}/{subset}"),
    conda:
        "../envs/evaluate.yaml"
    params:
        models=list(config["models"]),
        subject_ci_subsets=lambda wildcards: subject_ci_subsets(wildcards.scheme),
    script:
        "../scripts/plot_forest.py"


# The rule graph is drawn for this run's config: its files in the order Snakemake applied them.
from leukemia_dtl.evaluate.rulegraph import applied_configfiles


rule plot_rulegraph:
    output:
        png=report(
            RULEGRAPH.format(ext="png"),
            category="Figures",
            labels={"figure": "Method: the workflow's rule graph (Fig. 1)"},
        ),
        pdf=RULEGRAPH.format(ext="pdf"),
    log:
        log_file("plot_rulegraph"),
    conda:
        "../envs/evaluate.yaml"
    params:
        # Relative to the workflow's directory, so that a moved project keeps its params (they trigger reruns).
        snakefile=Path(workflow.main_snakefile).name,
        configfiles=applied_configfiles(
            workflow.configfiles,
            workflow.config_settings.configfiles,
            workflow.basedir,
            workflow.config_settings.replace_workflow_config,
        ),
        config_args=list(workflow.config_settings.config_args),
    script:
        "../scripts/plot_rulegraph.py"
