# k-fold ensemble for image classification: folds -> one model per (model, fold) -> average -> clip -> submit.
# Read results/{run}/ stage by stage; each rule is a thin call into the `ensemble` package.
from snakemake.utils import min_version, validate

min_version("8.0")


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/ensemble.smk"
include: "workflow/rules/provenance.smk"
include: "workflow/rules/ablation.smk"


rule all:
    input:
        rules.submit.output.submission,
        rules.blend.output.scores,
        rules.postprocess.output.table,
        rules.plots.output,
        provenance_outputs(),
        answer_scores(),
        lr_find_outputs(),
    default_target: True
