rule ingest:
    input:
        source=source_file,
    output:
        session="results/sessions/{session}.nc",
    log:
        "logs/ingest/{session}.log",
    benchmark:
        "benchmarks/out/ingest/{session}.tsv"
    params:
        version=GAZEEM_VERSION,
        table=config["sessions"],
        row=session_row,
        settings=cli_settings("ingest"),
    conda:
        "../envs/gazeem.yaml"
    shell:
        "gazeem ingest {output.session:q} --sessions {params.table:q} "
        "--session {wildcards.session:q} {params.settings} > {log:q} 2>&1"
