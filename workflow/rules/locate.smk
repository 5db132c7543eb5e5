import os


rule locate_fields:
    input:
        session=rules.ingest.output.session,
    output:
        nc="results/fields/{session}.nc",
    log:
        "logs/locate_fields/{session}.log",
    benchmark:
        "benchmarks/out/locate_fields/{session}.tsv"
    params:
        version=GAZEEM_VERSION,
        settings=cli_settings("locate"),
    conda:
        "../envs/gazeem.yaml"
    shell:
        "gazeem locate-fields {input.session:q} {output.nc:q} {params.settings} > {log:q} 2>&1"


rule figures_fields:
    input:
        nc=rules.locate_fields.output.nc,
    output:
        png=report(
            "results/figures/{session}/fields_location.png",
            caption="../report/fields_location.rst",
            category="Sessions",
            subcategory="{session}",
            labels={"session": "{session}", "figure": "fields_location"},
        ),
        pdf="results/figures/{session}/fields_location.pdf",
    log:
        "logs/figures_fields/{session}.log",
    benchmark:
        "benchmarks/out/figures_fields/{session}.tsv"
    params:
        version=GAZEEM_VERSION,
        outdir=lambda wildcards, output: os.path.dirname(output.png),
    conda:
        "../envs/gazeem.yaml"
    shell:
        "gazeem figures fields {input.nc:q} {params.outdir:q} > {log:q} 2>&1"
