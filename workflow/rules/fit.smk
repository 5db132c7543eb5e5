rule fit:
    input:
        session="results/sessions/{session}.nc",
    output:
        fit="results/fits/{session}.nc",
    log:
        "logs/fit/{session}.log",
    benchmark:
        "benchmarks/out/fit/{session}.tsv"
    shell:
        "gazeem fit {input.session} {output.fit} --config config/config.yaml > {log} 2>&1"
