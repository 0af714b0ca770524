# Tuning (section 2.3.2): frozen-base features -> one job per grid configuration -> selection.
# `snakemake tune` runs it alone; with hyperparameters: tuned, training takes the selection.


localrules:
    select_hyperparameters,
    tune,


rule tune:
    input:
        tuning_targets(),


rule extract_features:
    input:
        split=SPLIT,
        cache_images=cache_images(),
        cache_index=cache_index(),
        weights=model_weight_files,
    output:
        features=FEATURES,
        index=FEATURES_INDEX,
    log:
        log_file("extract_features/{scheme}/{model}/{size}px"),
    benchmark:
        benchmark_file("extract_features/{scheme}/{model}/{size}px")
    priority: TRAINING_CHAIN_PRIORITY
    conda:
        "../envs/train.yaml"
    threads: 8
    resources:
        **gpu_resources(),
        require_gpu=gpu_requirement(),
        mem_mb=32000,
        runtime=60,
    params:
        model_name="{model}",
        model_options=lambda wildcards: feature_options(wildcards.model),
        image_size=config["image_size"],
        seed=config["tuning"]["seed"],
        keras_home=KERAS_HOME,
    script:
        "../scripts/extract_features.py"


rule tune_model:
    input:
        unpack(tuning_inputs),
    output:
        result=tune_result(),
    log:
        log_file(f"tune_model/{{scheme}}/{{model}}/{TUNING_GRID.wildcard_pattern}"),
    priority: TRAINING_CHAIN_PRIORITY
    group:
        tuning_group
    conda:
        "../envs/train.yaml"
    threads: 1
    resources:
        **tuning_resources(),
        require_gpu=gpu_requirement(),
    params:
        model_name="{model}",
        model_options=lambda wildcards: untuned_options(wildcards.model),
        hyperparameters=grid_point,
        epochs=config["tuning"]["epochs"],
        classifier_output=CLASSIFIER_OUTPUT,
        seed=config["tuning"]["seed"],
        augmentation=config["augmentation"] if config["tuning"]["augmentation"] else {},
        image_size=config["image_size"],
        keras_home=KERAS_HOME,
    script:
        "../scripts/tune_model.py"


rule select_hyperparameters:
    input:
        results=tuning_results,
    output:
        selected=SELECTED,
        ranking=RANKING,
        heatmap_png=report(
            TUNING_HEATMAP.replace("{ext}", "png"),
            category="Tuning",
            subcategory="{scheme} split",
            labels={"model": "{model}", "split": "{scheme}"},
        ),
        heatmap_pdf=TUNING_HEATMAP.replace("{ext}", "pdf"),
    log:
        log_file("select_hyperparameters/{scheme}/{model}"),
    priority: TRAINING_CHAIN_PRIORITY
    conda:
        "../envs/evaluate.yaml"
    params:
        axes=list(config["tuning"]["grid"]),
        metric=config["tuning"]["metric"],
    script:
        "../scripts/select_hyperparameters.py"
