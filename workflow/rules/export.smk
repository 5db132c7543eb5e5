rule export_nwb:
    input:
        source=source_file,
        fit="results/fits/{session}.nc",
    output:
        nwb="results/export/{session}.nwb",
    log:
        "logs/export_nwb/{session}.log",
    benchmark:
        "benchmarks/out/export_nwb/{session}.tsv"
    params:
        version=GAZEEM_VERSION,
    conda:
        "../envs/gazeem.yaml"
    shell:
        "gazeem export-nwb {input.source:q} {input.fit:q} {output.nwb:q} > {log:q} 2>&1"
