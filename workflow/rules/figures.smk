import os


rule figures_session:
    input:
        fit=rules.fit.output.fit,
    output:
        png=[
            report(
                f"results/figures/{{session}}/{name}.png",
                caption=f"../report/{name}.rst",
                category="Sessions",
                subcategory="{session}",
                labels={"session": "{session}", "figure": name},
            )
            for name in FIGURES
        ],
        pdf=[f"results/figures/{{session}}/{name}.pdf" for name in FIGURES],
    log:
        "logs/figures/{session}.log",
    benchmark:
        "benchmarks/out/figures/{session}.tsv"
    params:
        version=GAZEEM_VERSION,
        outdir=lambda wildcards, output: os.path.dirname(output.png[0]),
        max_units=config["report"]["max_units_in_rf_figure"],
    conda:
        "../envs/gazeem.yaml"
    shell:
        "gazeem figures session {input.fit:q} {params.outdir:q} --max-units {params.max_units} "
        "> {log:q} 2>&1"


rule figures_summary:
    input:
        params=rules.aggregate.output.nc,
    output:
        png=[
            report(
                f"results/figures/summary/{name}.png",
                caption=f"../report/{name}.rst",
                category="Across sessions",
                labels={"figure": name},
            )
            for name in SUMMARY_FIGURES
        ],
        pdf=[f"results/figures/summary/{name}.pdf" for name in SUMMARY_FIGURES],
    log:
        "logs/figures/summary.log",
    benchmark:
        "benchmarks/out/figures/summary.tsv"
    params:
        version=GAZEEM_VERSION,
        outdir=lambda wildcards, output: os.path.dirname(output.png[0]),
    conda:
        "../envs/gazeem.yaml"
    shell:
        "gazeem figures summary {input.params:q} {params.outdir:q} > {log:q} 2>&1"
