# Experiment tracking with MLflow (tracking.mlflow; ensemble/tracking.py). The training jobs find the parent
# run through results/{run}/tracking/mlflow.json by their own paths, never as an input, so no tracking setting
# reruns a job. tracking_start runs first (priority) and needs nothing; tracking_finish logs the run's scores,
# plots and submission when they exist.


rule tracking_start:
    output:
        tracking=f"{RESULTS}/tracking/mlflow.json",
    params:
        name=RUN,
        uri=mlflow_uri_flag(),
        experiment=MLFLOW["experiment"] if MLFLOW else "",
    priority: 100
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/tracking_start.log",
    shell:
        "python -m ensemble tracking-start --name {params.name:q} {params.uri} --experiment {params.experiment:q}"
        " --out {output.tracking:q} > {log:q} 2>&1"


rule tracking_finish:
    input:
        tracking=rules.tracking_start.output.tracking,
        blend=rules.blend.output.scores,
        postprocess=rules.postprocess.output.params,
        table=rules.postprocess.output.table,
        submission=rules.submit.output.submission,
        plots=rules.plots.output,
        config=ancient(rules.provenance.output.config),  # read when the scores change; an edit alone logs nothing
        scores=answer_scores(),
    output:
        logged=f"{RESULTS}/tracking/logged.json",
    params:
        scores=test_scores_flag,
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/tracking_finish.log",
    shell:
        "python -m ensemble tracking-finish --tracking {input.tracking:q} --blend-scores {input.blend:q}"
        " --postprocess-params {input.postprocess:q} {params.scores} --config {input.config:q}"
        " --artifacts {input.table:q} {input.submission:q} {input.plots:q} --out {output.logged:q} > {log:q} 2>&1"
