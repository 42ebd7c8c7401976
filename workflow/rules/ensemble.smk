# Combine: average each model's folds, blend the models, clip into a submission, score it when a key exists.


rule average:
    input:
        oof=fold_predictions("oof"),
        test=fold_predictions("test"),
        fold_scores=fold_predictions("scores"),
        refit=refit_test,
    output:
        oof=f"{RESULTS}/ensemble/{{model}}/oof.csv",
        test=f"{RESULTS}/ensemble/{{model}}/test.csv",
        scores=f"{RESULTS}/ensemble/{{model}}/scores.json",
    params:
        refit=refit_flag,
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/average/{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/average/{{model}}.tsv"
    shell:
        "python -m ensemble average --oof {input.oof:q} --test {input.test:q}"
        " --fold-scores {input.fold_scores:q} {params.refit} --out-oof {output.oof:q}"
        " --out-test {output.test:q} --out-scores {output.scores:q} > {log:q} 2>&1"


rule blend:
    input:
        oof=expand(unflagged(rules.average.output.oof), model=MODELS),
        test=expand(unflagged(rules.average.output.test), model=MODELS),
    output:
        oof=f"{RESULTS}/blend/oof.csv",
        test=f"{RESULTS}/blend/test.csv",
        scores=f"{RESULTS}/blend/scores.json",
    conda:
        CONDA_ENV
    params:
        weights=config["blend"]["weights"],
        groups=member_groups(),
    log:
        f"{LOGS}/blend.log",
    benchmark:
        f"{RESULTS}/benchmarks/blend.tsv"
    shell:
        "python -m ensemble blend --weights {params.weights} --groups {params.groups:q} --oof {input.oof:q}"
        " --test {input.test:q}"
        " --out-oof {output.oof:q}"
        " --out-test {output.test:q} --out-scores {output.scores:q} > {log:q} 2>&1"


rule postprocess:
    input:
        oof=expand(unflagged(rules.predict.output.oof), model=MODELS, fold=FOLDS),
        test=expand(unflagged(rules.predict.output.test), model=MODELS, fold=FOLDS),
        blend=rules.blend.output.scores,
        answers=ANSWERS or [],
        refits=expand(unflagged(rules.predict_refit.output.test), model=REFITS),
    output:
        oof=f"{RESULTS}/postprocess/oof.csv",
        test=f"{RESULTS}/postprocess/test.csv",
        params=f"{RESULTS}/postprocess/params.json",
        table=report(f"{RESULTS}/postprocess/table.csv", caption="../report/table.rst", category="Scores"),
    params:
        models=MODELS,
        refit_models=REFITS,
        method=config["postprocess"]["method"],
        scope=config["postprocess"]["scope"],
        answers=answers_flag,
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/postprocess.log",
    benchmark:
        f"{RESULTS}/benchmarks/postprocess.tsv"
    shell:
        "python -m ensemble postprocess --models {params.models:q} --oof {input.oof:q} --test {input.test:q}"
        " --blend-scores {input.blend:q} --refit-models {params.refit_models:q} --refit-test {input.refits:q}"
        " --method {params.method} --scope {params.scope} {params.answers}"
        " --out-oof {output.oof:q} --out-test {output.test:q} --out-params {output.params:q}"
        " --out-table {output.table:q} > {log:q} 2>&1"


rule plots:
    input:
        histories=expand(unflagged(rules.train.output.history), model=MODELS, fold=FOLDS),
        raw=rules.blend.output.oof,
        post=rules.postprocess.output.oof,
    output:
        curves=report(f"{RESULTS}/plots/training_curves.png", caption="../report/curves.rst", category="Training"),
        reliability=report(f"{RESULTS}/plots/reliability.png", caption="../report/reliability.rst",
                           category="Post-processing"),
        sweep=report(f"{RESULTS}/plots/clip_sweep.png", caption="../report/sweep.rst", category="Post-processing"),
        confusion=report(f"{RESULTS}/plots/confusion.png", caption="../report/confusion.rst", category="Errors"),
        per_class=report(f"{RESULTS}/plots/per_class_log_loss.png", caption="../report/per_class.rst",
                         category="Errors"),
        per_class_csv=report(f"{RESULTS}/plots/per_class_log_loss.csv", caption="../report/per_class.rst",
                             category="Errors"),
    params:
        models=MODELS,
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/plots.log",
    benchmark:
        f"{RESULTS}/benchmarks/plots.tsv"
    shell:
        "python -m ensemble plots --models {params.models:q} --histories {input.histories:q}"
        " --raw-oof {input.raw:q} --post-oof {input.post:q} --out-curves {output.curves:q}"
        " --out-reliability {output.reliability:q} --out-sweep {output.sweep:q} --out-confusion {output.confusion:q}"
        " --out-per-class {output.per_class:q} --out-per-class-csv {output.per_class_csv:q} > {log:q} 2>&1"


rule submit:
    input:
        probs=rules.postprocess.output.test,
        stamp=rules.fingerprint.output.test,
        **data_files("sample"),
    output:
        submission=f"{RESULTS}/submission/submission.csv",
    params:
        sample=sample_csv,
        floor=config["clip"]["floor"],
        ceiling=config["clip"]["ceiling"],
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/submit.log",
    benchmark:
        f"{RESULTS}/benchmarks/submit.tsv"
    shell:
        "python -m ensemble submit --probs {input.probs:q} --sample {params.sample:q} --floor {params.floor}"
        " --ceiling {params.ceiling} --out {output.submission:q} > {log:q} 2>&1"


rule score:
    input:
        submission=rules.submit.output.submission,
        answers=ANSWERS or [],
        members=expand(unflagged(rules.predict.output.test), model=MODELS, fold=FOLDS),
        refits=expand(unflagged(rules.predict_refit.output.test), model=REFITS),
    output:
        scores=f"{RESULTS}/score/scores.json",
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/score.log",
    benchmark:
        f"{RESULTS}/benchmarks/score.tsv"
    shell:
        "python -m ensemble score {input.submission:q} {input.answers:q} --members {input.members:q}"
        " {input.refits:q}"
        " --out {output.scores:q} > {log:q} 2>&1"
