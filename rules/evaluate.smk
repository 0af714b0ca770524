# Evaluation stage: metrics per run and subset -> model comparisons -> Tables 1-2, leakage table, figures.


localrules:
    performance_tables,
    leakage_table,
    plot_training_curves,
    plot_subset_figures,
    plot_rulegraph,


rule evaluate_predictions:
    input:
        **subset_predictions(),
    output:
        **subset_metrics(),
    log:
        log_file(f"evaluate_predictions/{RUN}"),
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
        metrics_keys=run_keys(PREDICTED_SUBSETS),
        prediction_keys=run_keys(REPORTED_SUBSETS),
        models=list(config["models"]),
        statistics=config["statistics"],
    script:
        "../scripts/compare_models.py"


rule performance_tables:
    input:
        metrics=lambda wildcards: run_files(METRICS, wildcards.scheme, REPORTED_SUBSETS),
        ttests=stats_file("paired_ttests"),
        train_stats=lambda wildcards: run_files(TRAIN_STATS, wildcards.scheme),
        predict_stats=lambda wildcards: run_files(PREDICT_STATS, wildcards.scheme),
    output:
        table1_tsv=report(
            table_file("table1_performance", "tsv"),
            category="Tables",
            subcategory="{scheme} split",
            labels={"table": "Table 1: performance", "split": "{scheme}"},
        ),
        table1_md=table_file("table1_performance", "md"),
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
        metrics_keys=run_keys(REPORTED_SUBSETS),
        run_keys=run_keys(),
        models=list(config["models"]),
        subsets=REPORTED_SUBSETS,
    script:
        "../scripts/performance_tables.py"


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
    params:
        metrics_keys=run_keys(REPORTED_SUBSETS),
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
    params:
        run_keys=run_keys(),
    script:
        "../scripts/plot_training_curves.py"


rule plot_subset_figures:
    input:
        predictions=lambda wildcards: run_files(
            PREDICTIONS, wildcards.scheme, [wildcards.subset]
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
        run_keys=lambda wildcards: run_keys([wildcards.subset]),
        threshold=config["statistics"]["threshold"],
    script:
        "../scripts/plot_subset_figures.py"


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
        snakefile=workflow.main_snakefile,
        configfiles=workflow.configfiles,
    script:
        "../scripts/plot_rulegraph.py"
