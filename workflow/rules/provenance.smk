# Provenance: the resolved config and the software versions behind results/{run}/.


rule provenance:
    output:
        config=provenance_outputs()[0],
        versions=provenance_outputs()[1],
    params:
        config=config_json(),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/provenance.log",
    benchmark:
        f"{RESULTS}/benchmarks/provenance.tsv"
    shell:
        "python -m ensemble provenance --config-json {params.config:q} --out-config {output.config:q}"
        " --out-versions {output.versions:q} > {log:q} 2>&1"
