# gazeem: eye-tracker correction by grid-latent EM. See README.md.
configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/simulate.smk"
include: "workflow/rules/fit.smk"


rule all:
    input:
        expand("results/fits/{session}.nc", session=SESSIONS),
    default_target: True
