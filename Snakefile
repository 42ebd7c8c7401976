# k-fold ensemble for image classification: stamps, input check, folds, cache -> train + predict per (member,
# fold) -> average each member's folds -> blend the members -> post-process -> clip into the submission.
# Read results/{run}/ stage by stage; each rule is a thin call into the `ensemble` package (README: which rule
# calls which verb and which function).
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
include: "workflow/rules/tracking.smk"


rule all:
    input:
        rules.submit.output.submission,
        rules.blend.output.scores,
        rules.postprocess.output.table,
        rules.plots.output,
        provenance_outputs(),
        answer_scores(),
        lr_find_outputs(),
        tracking_outputs(),
    default_target: True
