rule simulate:
    output:
        source="resources/demo/{session}.{ext}",
    log:
        "logs/simulate/{session}.{ext}.log",
    benchmark:
        "benchmarks/out/simulate/{session}.{ext}.tsv"
    wildcard_constraints:
        ext="nwb|h5",
    params:
        version=GAZEEM_VERSION,
        seed=simulate_seed,
        settings=cli_settings("simulate", exclude=["seed", "rf_offset_px"]),
        fields=simulated_fields,
    conda:
        "../envs/gazeem.yaml"
    shell:
        "gazeem simulate {output.source:q} --seed {params.seed} {params.settings} {params.fields} "
        "--session {wildcards.session:q} > {log:q} 2>&1"
