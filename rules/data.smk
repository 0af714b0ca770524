# Data stage: archive -> extracted tree -> inventory -> subset exclusion -> splits; images -> cache.


localrules:
    download_kaggle,
    generate_demo_archive,


rule download_kaggle:
    output:
        archive=KAGGLE_ARCHIVE,
        checksum=KAGGLE_CHECKSUM,
    log:
        log_file("download_kaggle"),
    conda:
        "../envs/data.yaml"
    params:
        dataset=config["data"]["kaggle_dataset"],
    script:
        "../scripts/download_kaggle.py"


rule generate_demo_archive:
    output:
        archive=DEMO_ARCHIVE,
    log:
        log_file("generate_demo_archive"),
    benchmark:
        benchmark_file("generate_demo_archive")
    conda:
        "../envs/data.yaml"
    params:
        spec=config["data"]["demo"],
    script:
        "../scripts/generate_demo_archive.py"


rule extract_archive:
    input:
        archive=archive_file(),
    output:
        folder=directory(EXTRACTED),
        checksum=ARCHIVE_CHECKSUM,
    log:
        log_file("extract_archive"),
    benchmark:
        benchmark_file("extract_archive")
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/extract_archive.py"


rule inventory:
    input:
        dataset=dataset_folder(),
    output:
        inventory=INVENTORY,
        rejected=REJECTED,
    log:
        log_file("inventory"),
    benchmark:
        benchmark_file("inventory")
    conda:
        "../envs/data.yaml"
    threads: 8
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        dataset_root=dataset_root(),
        listing=dataset_listing(),
        max_rejected_fraction=config["data"]["max_rejected_fraction"],
    script:
        "../scripts/inventory.py"


rule exclude_subsets:
    input:
        inventory=INVENTORY,
    output:
        kept=KEPT,
        excluded=EXCLUDED,
        summary=EXCLUSION_SUMMARY,
    log:
        log_file("exclude_subsets"),
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/exclude_subsets.py"


rule split_dataset:
    input:
        kept=KEPT,
        excluded=EXCLUDED,
    output:
        split=SPLIT,
        leakage=LEAKAGE,
    log:
        log_file("split_dataset/{scheme}"),
    conda:
        "../envs/data.yaml"
    params:
        scheme="{scheme}",
        seed=config["split"]["seed"],
    script:
        "../scripts/split_dataset.py"


rule build_image_cache:
    input:
        dataset=dataset_folder(),
        inventory=INVENTORY,
    output:
        images=CACHE_IMAGES,
        index=CACHE_INDEX,
    log:
        log_file("build_image_cache/{size}px"),
    benchmark:
        benchmark_file("build_image_cache/{size}px")
    conda:
        "../envs/data.yaml"
    threads: 8
    resources:
        mem_mb=8000,
        runtime=120,
    params:
        dataset_root=dataset_root(),
        size=lambda wildcards: int(wildcards.size),
    script:
        "../scripts/build_image_cache.py"


use rule build_image_cache as build_final_phase_cache with:
    output:
        images=FINAL_PHASE_IMAGES,
        index=FINAL_PHASE_INDEX,
    log:
        log_file("build_final_phase_cache/{size}px"),
    benchmark:
        benchmark_file("build_final_phase_cache/{size}px")
    params:
        dataset_root=dataset_root(),
        size=lambda wildcards: int(wildcards.size),
        images="final_phase",
