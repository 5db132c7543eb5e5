rule fit:
    input:
        session=rules.ingest.output.session,
    output:
        fit="results/fits/{session}.nc",
    log:
        "logs/fit/{session}.log",
    benchmark:
        "benchmarks/out/fit/{session}.tsv"
    params:
        version=GAZEEM_VERSION,
        settings=cli_settings("fit"),
    threads: 2
    resources:
        mem_mb=fit_resource("mem_mb"),
        runtime=fit_resource("runtime"),
    conda:
        "../envs/gazeem.yaml"
    shell:
        "gazeem fit {input.session:q} {output.fit:q} {params.settings} --threads {threads} "
        "--progress > {log:q} 2>&1"
