# One training job and one prediction job per (member, fold). The checkpoint lives outside the declared
# outputs, so Snakemake never deletes it when a job fails: rerunning the same target resumes it. Settings
# that change speed, never results (workers, deterministic kernels, threads, the prediction batch size), come
# from params functions of `input` (speed_flags, predict_batch_size), which Snakemake never records as rerun
# triggers, so editing them reruns nothing.


rule lr_find:
    input:
        folds=rules.folds.output.folds,
        stamp=rules.fingerprint.output.train,
        cache=cache_input("train"),
        **data_files("sample", *uncached("train_images")),
    output:
        table=f"{RESULTS}/lr_find/{{member}}/lr_find.csv",
        plot=report(f"{RESULTS}/lr_find/{{member}}/lr_find.png", caption="../report/lr_find.rst",
                    category="LR finder"),
        suggestion=f"{RESULTS}/lr_find/{{member}}/suggestion.json",
    params:
        data=data_dir,
        flags=train_flags,
        weights=weights_digest,
        device=config["train"]["device"],
        speed=speed_flags,
        cache=cache_flag,
    threads: 4
    resources:
        gpu=gpus_per_job(),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/lr_find/{{member}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/lr_find/{{member}}.tsv"
    shell:
        "python -m ensemble lr-find --data {params.data:q} --folds {input.folds:q} --fold 0 {params.flags}"
        " --device {params.device} --threads {threads} {params.speed} {params.cache}"
        ""
        " --out-table {output.table:q} --out-plot {output.plot:q} --out-json {output.suggestion:q}"
        " > {log:q} 2>&1"


rule features:
    input:
        stamp=rules.fingerprint.output.train,
        cache=cache_input("train"),
        **data_files("labels", "sample", *uncached("train_images")),
    output:
        features=f"{RESULTS}/features/{{member}}/features.pt",
    params:
        data=data_dir,
        flags=feature_settings,
        weights=weights_digest,
        views=feature_views,
        device=config["train"]["device"],
        speed=speed_flags,
        cache=cache_flag,
    threads: 4
    resources:
        gpu=gpus_per_job(),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/features/{{member}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/features/{{member}}.tsv"
    shell:
        "python -m ensemble features --data {params.data:q} {params.flags} --views {params.views}"
        " --device {params.device} --threads {threads} {params.speed} {params.cache}"
        " --out {output.features:q} > {log:q} 2>&1"


rule train:
    input:
        folds=rules.folds.output.folds,
        stamp=rules.fingerprint.output.train,
        lr=lr_finder_result,
        cache=cache_input("train"),
        features=features_input,
        **data_files("sample", *uncached("train_images")),
    output:
        model=f"{RESULTS}/train/{{member}}/fold{{fold}}/model.pt",
        history=f"{RESULTS}/train/{{member}}/fold{{fold}}/history.csv",
        metrics=f"{RESULTS}/train/{{member}}/fold{{fold}}/metrics.json",
    params:
        data=data_dir,
        flags=train_flags,
        weights=weights_digest,
        lr_from=lr_from_flag,
        features=features_flag,
        split="--fold {fold}",
        device=config["train"]["device"],
        speed=train_speed_flags,
        cache=cache_flag,
        checkpoint=f"{RESULTS}/checkpoints/{{member}}/fold{{fold}}/checkpoint.pt",
    threads: fold_threads
    priority: 1  # every fold's training before the predictions: the longest jobs first keep all cores busy
    resources:
        gpu=gpus_per_job(),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/train/{{member}}/fold{{fold}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{{member}}/fold{{fold}}.tsv"
    shell:
        "python -m ensemble train --data {params.data:q} --folds {input.folds:q} {params.split}"
        " {params.flags} {params.lr_from} {params.features} --device {params.device} --threads {threads}"
        " {params.speed} {params.cache}"
        " --checkpoint {params.checkpoint:q} --data-stamp {input.stamp:q}"
        " --out-model {output.model:q} --out-history {output.history:q} --out-metrics {output.metrics:q}"
        " >> {log:q} 2>&1"


rule predict:
    input:
        model=rules.train.output.model,
        folds=rules.folds.output.folds,
        stamps=list(STAMPS.values()),
        checked=expand(unflagged(rules.check_inputs.output.report), split="test"),
        cache=cache_input("train", "test"),
        **data_files("sample", *uncached("train_images", "test_images")),
    output:
        oof=f"{RESULTS}/predict/{{member}}/fold{{fold}}/oof.csv",
        test=f"{RESULTS}/predict/{{member}}/fold{{fold}}/test.csv",
        scores=f"{RESULTS}/predict/{{member}}/fold{{fold}}/scores.json",
    params:
        data=data_dir,
        device=config["train"]["device"],
        speed=speed_flags,
        cache=cache_flag,
        tta=predict_tta,
        batch_size=predict_batch_size,
    threads: fold_threads
    resources:
        gpu=gpus_per_job(),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/predict/{{member}}/fold{{fold}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/predict/{{member}}/fold{{fold}}.tsv"
    shell:
        "python -m ensemble predict --data {params.data:q} --folds {input.folds:q} --fold {wildcards.fold}"
        " --model {input.model:q} --batch-size {params.batch_size} --tta {params.tta:q}"
        " --device {params.device} --threads {threads} {params.speed} {params.cache}"
        ""
        " --out-oof {output.oof:q} --out-test {output.test:q} --out-scores {output.scores:q} > {log:q} 2>&1"


# The full-data refit of a model with `refit: true`: the same job on every labelled image, no validation set.
use rule train as refit with:
    output:
        model=f"{RESULTS}/train/{{member}}/full/model.pt",
        history=f"{RESULTS}/train/{{member}}/full/history.csv",
        metrics=f"{RESULTS}/train/{{member}}/full/metrics.json",
    params:
        split="--full",
        checkpoint=f"{RESULTS}/checkpoints/{{member}}/full/checkpoint.pt",
    log:
        f"{LOGS}/train/{{member}}/full.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{{member}}/full.tsv"


rule predict_refit:
    input:
        model=rules.refit.output.model,
        stamp=rules.fingerprint.output.test,
        checked=expand(unflagged(rules.check_inputs.output.report), split="test"),
        cache=cache_input("test"),
        **data_files("sample", *uncached("test_images")),
    output:
        test=f"{RESULTS}/predict/{{member}}/full/test.csv",
    params:
        data=data_dir,
        device=config["train"]["device"],
        speed=speed_flags,
        cache=cache_flag,
        tta=config["predict"]["tta"],
        batch_size=predict_batch_size,
    threads: fold_threads
    resources:
        gpu=gpus_per_job(),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/predict/{{member}}/full.log",
    benchmark:
        f"{RESULTS}/benchmarks/predict/{{member}}/full.tsv"
    shell:
        "python -m ensemble predict-test --data {params.data:q} --model {input.model:q}"
        " --batch-size {params.batch_size} --tta {params.tta:q} --device {params.device}"
        " --threads {threads}"
        " {params.speed} {params.cache}"
        " --out-test {output.test:q}"
        " > {log:q} 2>&1"
