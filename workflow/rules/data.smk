# Data: the built-in demo set, the data's content stamps, the input check, stratified folds, the decode-once
# cache. Rules declare the stamp of the split they read (ensemble/fingerprint.py), not the data files, so a
# changed image reruns what reads that split, and a copied or moved folder reruns nothing.


rule demo_data:
    output:
        labels=f"{DEMO}/labels.csv",
        sample=f"{DEMO}/sample_submission.csv",
        answers=f"{DEMO}/test_labels.csv",
        **demo_folders(),
    params:
        out=output_dir,
        classes=config["demo"]["classes"],
        train=config["demo"]["train"],
        test=config["demo"]["test"],
        size=config["demo"]["size"],
        seed=config["demo"]["seed"],
    conda:
        CONDA_ENV
    log:
        "logs/demo_data.log",
    benchmark:
        "logs/benchmarks/demo_data.tsv"
    shell:
        "python -m ensemble demo-data --out {params.out:q} --classes {params.classes} --train {params.train}"
        " --test {params.test} --size {params.size} --seed {params.seed} > {log:q} 2>&1"


rule fingerprint:
    input:
        **fingerprint_inputs(),
    output:
        **STAMPS,
    params:
        data=data_dir,
        store=HASH_STORE,
    threads: 4
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/fingerprint.log",
    benchmark:
        f"{RESULTS}/benchmarks/fingerprint.tsv"
    shell:
        "python -m ensemble fingerprint --data {params.data:q} --store {params.store:q} --threads {threads}"
        " --out-train {output.train:q} --out-test {output.test:q} > {log:q} 2>&1"


rule check_inputs:
    input:
        stamp=split_stamp,
        **data_files("labels", "sample", "train_images", "test_images"),
    output:
        report=f"{RESULTS}/inputs/{{split}}_report.json",
    params:
        data=data_dir,
        k=config["folds"]["k"],
    threads: 4
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/check_inputs/{{split}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/check_inputs/{{split}}.tsv"
    shell:
        "python -m ensemble check-inputs --data {params.data:q} --k {params.k} --split {wildcards.split}"
        " --threads {threads} --out {output.report:q} > {log:q} 2>&1"


rule folds:
    input:
        stamp=rules.fingerprint.output.train,
        report=expand(unflagged(rules.check_inputs.output.report), split="train"),
        **data_files("labels"),
    output:
        folds=f"{RESULTS}/folds/folds.csv",
    params:
        labels=labels_csv,
        k=config["folds"]["k"],
        seed=config["folds"]["seed"],
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/folds.log",
    benchmark:
        f"{RESULTS}/benchmarks/folds.tsv"
    shell:
        "python -m ensemble folds --labels {params.labels:q} --k {params.k} --seed {params.seed}"
        " --out {output.folds:q} > {log:q} 2>&1"


rule cache:
    input:
        stamp=split_stamp,
        report=rules.check_inputs.output.report,  # of the same split
        **data_files("labels", "sample", "train_images", "test_images"),
    output:
        array=f"{RESULTS}/cache/{{side}}px-{{interpolation}}/{{split}}.npy",
        ids=f"{RESULTS}/cache/{{side}}px-{{interpolation}}/{{split}}_ids.txt",
        shapes=f"{RESULTS}/cache/{{side}}px-{{interpolation}}/{{split}}_shapes.npy",
    params:
        data=data_dir,
        out=output_dir,
        layout=CACHE_FORMAT,  # a new stored layout or decoding rebuilds old caches (the params rerun trigger)
    threads: 4
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/cache/{{side}}px-{{interpolation}}/{{split}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/cache/{{side}}px-{{interpolation}}/{{split}}.tsv"
    shell:
        "python -m ensemble cache --data {params.data:q} --side {wildcards.side}"
        " --interpolation {wildcards.interpolation} --split {wildcards.split}"
        " --threads {threads} --out {params.out:q} > {log:q} 2>&1"
