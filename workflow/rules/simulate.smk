rule simulate:
    output:
        session="results/sessions/{session}.nc",
    log:
        "logs/simulate/{session}.log",
    benchmark:
        "benchmarks/out/simulate/{session}.tsv"
    params:
        seed=lambda wc: SESSIONS.index(wc.session) + 1,
    shell:
        "gazeem simulate {output.session} --config config/config.yaml --seed {params.seed} > {log} 2>&1"
