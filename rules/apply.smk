# Use stage: what the trained models are for beyond the tables. Always: Grad-CAM panels, model cards, the run
# overview and provenance tables. On request: `export` (SavedModel and ONNX per trained model) and `classify`
# (a folder of new images, config classify).


localrules:
    model_card,
    runs_table,
    export,


rule plot_gradcam:
    input:
        model=first_seed_files(MODEL),
        predictions=first_seed_files(SET_PREDICTIONS),
        cache_images=cache_images(),
        cache_index=cache_index(),
    output:
        png=report(
            figure_file("gradcam_{model}", "png"),
            category="Figures",
            subcategory="{scheme} split",
            labels={"figure": "Grad-CAM: {model}", "split": "{scheme}"},
        ),
        pdf=figure_file("gradcam_{model}", "pdf"),
    log:
        log_file("plot_gradcam/{scheme}/{model}"),
    benchmark:
        benchmark_file("plot_gradcam/{scheme}/{model}")
    conda:
        "../envs/train.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        cells_per_outcome=config["gradcam"]["cells_per_outcome"],
        seed=config["gradcam"]["seed"],
        threshold=config["statistics"]["threshold"],
        title=lambda wildcards: f"{wildcards.model}, {wildcards.scheme} split, seed {config['seeds'][0]}, test subset",
    script:
        "../scripts/plot_gradcam.py"


rule model_card:
    input:
        **held_out_results(),
        split=SPLIT,
        train_stats=seed_files(TRAIN_STATS),
        provenance=seed_files(PROVENANCE),
    output:
        card=report(
            MODEL_CARD,
            category="Model cards",
            subcategory="{scheme} split",
            labels={"model": "{model}", "split": "{scheme}"},
        ),
    log:
        log_file("model_card/{scheme}/{model}"),
    conda:
        "../envs/evaluate.yaml"
    params:
        scheme="{scheme}",
        model="{model}",
        model_files=seed_files(MODEL),
        export_folders=seed_files(EXPORT),
        model_options=lambda wildcards: config["models"][wildcards.model],
        hyperparameters=config["hyperparameters"],
        augmentation=config["augmentation"],
        image_size=config["image_size"],
        precision=config["precision"],
        min_subjects_per_class=config["statistics"]["min_subjects_per_class"],
    script:
        "../scripts/model_card.py"


rule runs_table:
    input:
        **{
            f"{subset}_metrics": all_run_files(METRICS, subset)
            for subset in REPORTED_SUBSETS
        },
        train_stats=all_run_files(TRAIN_STATS),
        provenance=all_run_files(PROVENANCE),
    output:
        runs_tsv=report(
            RUNS_TABLE.format(ext="tsv"),
            category="Tables",
            labels={"table": "Run overview", "split": "all"},
        ),
        runs_md=RUNS_TABLE.format(ext="md"),
        provenance_tsv=report(
            PROVENANCE_TABLE.format(ext="tsv"),
            category="Tables",
            labels={"table": "Provenance of each run", "split": "all"},
        ),
        provenance_md=PROVENANCE_TABLE.format(ext="md"),
    log:
        log_file("runs_table"),
    conda:
        "../envs/evaluate.yaml"
    script:
        "../scripts/runs_table.py"


rule export_model:
    input:
        model=MODEL,
        split=SPLIT,
        cache_images=cache_images(),
        cache_index=cache_index(),
    output:
        saved_model=directory(EXPORT_SAVED_MODEL),
        onnx=EXPORT_ONNX,
        check=EXPORT_CHECK,
    log:
        log_file(f"export_model/{RUN}"),
    benchmark:
        benchmark_file(f"export_model/{RUN}")
    conda:
        "../envs/train.yaml"
    threads: 2
    resources:
        mem_mb=16000,
        runtime=60,
    script:
        "../scripts/export_model.py"


rule export:
    input:
        export_targets(),


rule classify:
    input:
        models=classify_models,
        folder=classify_folder,
    output:
        predictions=CLASSIFY_PREDICTIONS,
        rejected=CLASSIFY_REJECTED,
    log:
        log_file("classify"),
    benchmark:
        benchmark_file("classify")
    conda:
        "../envs/train.yaml"
    threads: 8
    resources:
        **gpu_resources(),
        require_gpu=gpu_requirement(),
        mem_mb=16000,
        runtime=120,
    params:
        model=config["classify"]["model"],
        threshold=config["statistics"]["threshold"],
    script:
        "../scripts/classify_images.py"
