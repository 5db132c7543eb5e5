rule aggregate:
    input:
        fits=expand("results/fits/{session}.nc", session=SESSIONS),
    output:
        nc="results/summary/params.nc",
        tsv=report(
            "results/summary/params.tsv",
            caption="../report/params.rst",
            category="Across sessions",
        ),
        units="results/summary/units.tsv",
    log:
        "logs/aggregate/aggregate.log",
    benchmark:
        "benchmarks/out/aggregate/aggregate.tsv"
    params:
        version=GAZEEM_VERSION,
    conda:
        "../envs/gazeem.yaml"
    shell:
        "gazeem aggregate {input.fits:q} --params-nc {output.nc:q} --params-tsv {output.tsv:q} "
        "--units-tsv {output.units:q} > {log:q} 2>&1"
