# Model stage: ImageNet weights -> one training job per scheme, model and seed -> one prediction job per run
# (held-out subsets and final-phase images, plain and test-time augmented, from one load of the model) -> the
# challenge's final-phase submission.


localrules:
    fetch_weights,


rule fetch_weights:
    output:
        weights=imagenet_weight_files(),
    log:
        log_file("fetch_weights"),
    conda:
        "../envs/train.yaml"
    params:
        model_names=imagenet_models(),
    script:
        "../scripts/fetch_weights.py"


rule train_model:
    input:
        split=SPLIT,
        cache_images=cache_images(),
        cache_index=cache_index(),
        weights=model_weight_files,
        hyperparameters=selected_hyperparameters,
        archive_checksum=archive_checksum(),
    output:
        **tensorboard_logs(),
        model=MODEL,
        history=HISTORY,
        stats=TRAIN_STATS,
        provenance=PROVENANCE,
    log:
        log_file(f"train_model/{RUN}"),
    benchmark:
        benchmark_file(f"train_model/{RUN}")
    priority: TRAINING_CHAIN_PRIORITY
    conda:
        "../envs/train.yaml"
    threads: 8
    resources:
        **gpu_resources(),
        require_gpu=gpu_requirement(),
        mem_mb=32000,
        runtime=720,
    params:
        model_name="{model}",
        model_options=lambda wildcards: config["models"][wildcards.model],
        augmentation=config["augmentation"],
        image_size=config["image_size"],
        seed=lambda wildcards: int(wildcards.seed),
        precision=config["precision"],
        deterministic=config["deterministic"],
        backup_dir=RESUME,
        classifier_output=CLASSIFIER_OUTPUT,
        keras_home=KERAS_HOME,
    script:
        "../scripts/train_model.py"


rule predict_model:
    input:
        model=MODEL,
        train_stats=TRAIN_STATS,
        split=SPLIT,
        cache_images=cache_images(),
        cache_index=cache_index(),
        final_phase_images=FINAL_PHASE_IMAGES.format(size=config["image_size"]),
        final_phase_index=FINAL_PHASE_INDEX.format(size=config["image_size"]),
    output:
        **prediction_outputs(),
    log:
        log_file(f"predict_model/{RUN}"),
    benchmark:
        benchmark_file(f"predict_model/{RUN}")
    # The folds scheme's predictions are pooled from its rotations' (pool_fold_predictions), not predicted.
    wildcard_constraints:
        scheme="|".join(TRAINING_SPLITS),
    priority: PREDICTION_PRIORITY
    conda:
        "../envs/train.yaml"
    threads: 8
    resources:
        **gpu_resources(),
        require_gpu=gpu_requirement(),
        mem_mb=16000,
        runtime=120,
    params:
        kinds=prediction_kinds(),
        timing_images=config["evaluation"]["timing_images"],
    script:
        "../scripts/predict_model.py"


# Averages the seeds' final-phase predictions: no model is loaded again.
rule challenge_submission:
    input:
        probabilities=submission_inputs,
    output:
        submission=report(
            SUBMISSION,
            category="Challenge",
            subcategory="{scheme} split",
            labels={"file": "final-phase submission", "model": "{model}"},
        ),
        probabilities=FINAL_PHASE_PREDICTIONS,
    log:
        log_file("challenge_submission/{scheme}/{model}"),
    conda:
        "../envs/train.yaml"
    params:
        threshold=config["statistics"]["threshold"],
    script:
        "../scripts/challenge_submission.py"
