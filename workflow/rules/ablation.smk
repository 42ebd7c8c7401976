# `snakemake --cores all ablation`: one model's recipe taken apart on the same folds (ensemble/ablation.py).
# The trained rows are members of their own (ablation-baseline ... ablation-augment) that reuse the train and
# predict rules; they never join the submission.


rule ablation_table:
    input:
        scores=expand(unflagged(rules.predict.output.scores), member=ABLATION, fold=FOLDS),
        train_benchmarks=expand(f"{RESULTS}/benchmarks/train/{{member}}/fold{{fold}}.tsv", member=ABLATION,
                                fold=FOLDS),
        oof=expand(unflagged(rules.predict.output.oof), member=ABLATION[-1], fold=FOLDS),
    output:
        table=report(f"{RESULTS}/ablation/table.csv", caption="../report/ablation.rst", category="Ablation"),
        markdown=f"{RESULTS}/ablation/table.md",
    params:
        scores=member_flags("--scores", "scores", ablation.TRAINED, FOLDS),  # by step: ABLATION's order
        train_benchmarks=member_flags("--train-benchmarks", "train_benchmarks", ablation.TRAINED, FOLDS),
        changes=lambda wildcards: ablation_changes(),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/ablation.log",
    benchmark:
        f"{RESULTS}/benchmarks/ablation.tsv"
    shell:
        "python -m ensemble ablation {params.scores} {params.train_benchmarks}"
        " --oof {input.oof:q} --changes-json {params.changes:q} --out-table {output.table:q}"
        " --out-markdown {output.markdown:q} > {log:q} 2>&1"


rule ablation:
    input:
        rules.ablation_table.output,
