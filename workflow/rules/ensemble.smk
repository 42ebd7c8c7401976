# Combine (ensemble/combine.py): average each member's folds, blend the members, post-process the blend (fitted
# on out-of-fold rows only), clip into a submission, score it when a key exists.


rule average:
    input:
        oof=fold_predictions("oof"),
        test=fold_predictions("test"),
        fold_scores=fold_predictions("scores"),
        refit=refit_test,
    output:
        oof=f"{RESULTS}/average/{{member}}/oof.csv",
        test=f"{RESULTS}/average/{{member}}/test.csv",
        tempered_oof=f"{RESULTS}/average/{{member}}/tempered_oof.csv",
        tempered_test=f"{RESULTS}/average/{{member}}/tempered_test.csv",
        temperatures=f"{RESULTS}/average/{{member}}/temperatures.json",
        scores=f"{RESULTS}/average/{{member}}/scores.json",
    params:
        refit=refit_flag,
        pooling=config["blend"]["pooling"],
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/average/{{member}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/average/{{member}}.tsv"
    shell:
        "python -m ensemble average --member {wildcards.member:q} --pooling {params.pooling}"
        " --oof {input.oof:q} --test {input.test:q}"
        " --fold-scores {input.fold_scores:q} {params.refit} --out-oof {output.oof:q} --out-test {output.test:q}"
        " --out-tempered-oof {output.tempered_oof:q} --out-tempered-test {output.tempered_test:q}"
        " --out-temperatures {output.temperatures:q} --out-scores {output.scores:q} > {log:q} 2>&1"


rule blend:
    input:
        oof=expand(unflagged(rules.average.output.oof), member=MEMBER_NAMES),
        test=expand(unflagged(rules.average.output.test), member=MEMBER_NAMES),
        tempered_oof=expand(unflagged(rules.average.output.tempered_oof), member=MEMBER_NAMES),
        tempered_test=expand(unflagged(rules.average.output.tempered_test), member=MEMBER_NAMES),
    output:
        oof=f"{RESULTS}/blend/oof.csv",
        test=f"{RESULTS}/blend/test.csv",
        tempered_oof=f"{RESULTS}/blend/tempered_oof.csv",
        tempered_test=f"{RESULTS}/blend/tempered_test.csv",
        scores=f"{RESULTS}/blend/scores.json",
    conda:
        CONDA_ENV
    params:
        weights=config["blend"]["weights"],
        pooling=config["blend"]["pooling"],
        members=MEMBER_NAMES,
        groups=member_groups(),
    log:
        f"{LOGS}/blend.log",
    benchmark:
        f"{RESULTS}/benchmarks/blend.tsv"
    shell:
        "python -m ensemble blend --weights {params.weights} --pooling {params.pooling}"
        " --members {params.members:q} --groups {params.groups:q}"
        " --oof {input.oof:q} --test {input.test:q} --tempered-oof {input.tempered_oof:q}"
        " --tempered-test {input.tempered_test:q} --out-oof {output.oof:q} --out-test {output.test:q}"
        " --out-tempered-oof {output.tempered_oof:q} --out-tempered-test {output.tempered_test:q}"
        " --out-scores {output.scores:q} > {log:q} 2>&1"


rule postprocess:
    input:
        blend_oof=rules.blend.output.oof,
        blend_test=rules.blend.output.test,
        blend_tempered_oof=rules.blend.output.tempered_oof,
        blend_tempered_test=rules.blend.output.tempered_test,
        blend_scores=rules.blend.output.scores,
        temperatures=expand(unflagged(rules.average.output.temperatures), member=MEMBER_NAMES),
        answers=ANSWERS or [],
    output:
        oof=f"{RESULTS}/postprocess/oof.csv",
        test=f"{RESULTS}/postprocess/test.csv",
        params=f"{RESULTS}/postprocess/params.json",
        table=report(f"{RESULTS}/postprocess/table.csv", caption="../report/table.rst", category="Scores"),
    params:
        temperatures=member_flags("--temperatures", "temperatures", MEMBER_NAMES),
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
        "python -m ensemble postprocess --blend-oof {input.blend_oof:q} --blend-test {input.blend_test:q}"
        " --blend-tempered-oof {input.blend_tempered_oof:q} --blend-tempered-test {input.blend_tempered_test:q}"
        " --blend-scores {input.blend_scores:q} {params.temperatures}"
        " --method {params.method} --scope {params.scope} {params.answers}"
        " --out-oof {output.oof:q} --out-test {output.test:q} --out-params {output.params:q}"
        " --out-table {output.table:q} > {log:q} 2>&1"


rule plots:
    input:
        histories=expand(unflagged(rules.train.output.history), member=MEMBER_NAMES, fold=FOLDS),
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
        histories=member_flags("--histories", "histories", MEMBER_NAMES, FOLDS),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/plots.log",
    benchmark:
        f"{RESULTS}/benchmarks/plots.tsv"
    shell:
        "python -m ensemble plots {params.histories}"
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
        members=expand(unflagged(rules.predict.output.test), member=MEMBER_NAMES, fold=FOLDS),
        refits=expand(unflagged(rules.predict_refit.output.test), member=REFITS),
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
