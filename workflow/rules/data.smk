# Data: the built-in demo set, the input check, stratified folds.


rule demo_data:
    output:
        labels="data/demo/labels.csv",
        sample="data/demo/sample_submission.csv",
        answers="data/demo/test_labels.csv",
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


rule check_inputs:
    input:
        labels=f"{DATA}/labels.csv",
        sample=f"{DATA}/sample_submission.csv",
    output:
        report=f"{RESULTS}/inputs/report.json",
    params:
        data=data_dir,
        k=config["folds"]["k"],
    threads: 4
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/check_inputs.log",
    benchmark:
        f"{RESULTS}/benchmarks/check_inputs.tsv"
    shell:
        "python -m ensemble check-inputs --data {params.data:q} --k {params.k} --threads {threads}"
        " --out {output.report:q} > {log:q} 2>&1"


rule folds:
    input:
        labels=rules.check_inputs.input.labels,
        report=rules.check_inputs.output.report,
    output:
        folds=f"{RESULTS}/folds/folds.csv",
    params:
        k=config["folds"]["k"],
        seed=config["folds"]["seed"],
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/folds.log",
    benchmark:
        f"{RESULTS}/benchmarks/folds.tsv"
    shell:
        "python -m ensemble folds --labels {input.labels:q} --k {params.k} --seed {params.seed}"
        " --out {output.folds:q} > {log:q} 2>&1"


rule cache:
    input:
        labels=rules.check_inputs.input.labels,
        sample=rules.check_inputs.input.sample,
        report=rules.check_inputs.output.report,
    output:
        train=f"{RESULTS}/cache/{{side}}px/train.npy",
        test=f"{RESULTS}/cache/{{side}}px/test.npy",
        train_ids=f"{RESULTS}/cache/{{side}}px/train_ids.txt",
        test_ids=f"{RESULTS}/cache/{{side}}px/test_ids.txt",
        train_shapes=f"{RESULTS}/cache/{{side}}px/train_shapes.npy",
        test_shapes=f"{RESULTS}/cache/{{side}}px/test_shapes.npy",
    params:
        data=data_dir,
        out=output_dir,
        layout=CACHE_FORMAT,  # a new stored layout rebuilds old caches (the params rerun trigger)
    threads: 4
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/cache/{{side}}px.log",
    benchmark:
        f"{RESULTS}/benchmarks/cache/{{side}}px.tsv"
    shell:
        "python -m ensemble cache --data {params.data:q} --side {wildcards.side} --threads {threads}"
        " --out {params.out:q} > {log:q} 2>&1"
