# genrec recipes. Everything here is plain cargo underneath; `cargo install just` or
# `pip install rust-just` gets `just`.

export CARGO_TARGET_DIR := env_var_or_default("CARGO_TARGET_DIR", env_var("HOME") + "/.cache/genrec-target")
export GENREC_DATA_DIR := env_var_or_default("GENREC_DATA_DIR", justfile_directory() + "/../shared/data")

genrec := "cargo run --quiet --release -p genrec --"

# List recipes.
default:
    @just --list

# The test suite (the README's test command).
test:
    cargo test --workspace

# What CI runs on a clean clone.
ci:
    bash .ci/run

# Run any experiment TOML, e.g. `just run experiments/pop-ml100k.toml --set eval.ks=[10]`.
run EXP *ARGS:
    {{genrec}} run {{EXP}} {{ARGS}}

# Fetch a dataset into GENREC_HOME (ml-100k, ml-1m, amazon-p5:Beauty, …).
fetch NAME:
    {{genrec}} data fetch {{NAME}}

# Dataset statistics.
stats NAME:
    {{genrec}} data stats {{NAME}}

# Popularity baselines.
pop-ml100k:
    {{genrec}} run experiments/pop-ml100k.toml
pop-beauty:
    {{genrec}} run experiments/pop-beauty.toml
pop-toys:
    {{genrec}} run experiments/pop-toys.toml

# SASRec (full-softmax CE) on ML-100K.
sasrec-ml100k:
    {{genrec}} run experiments/sasrec-ml100k.toml

# Markdown table of finished runs, e.g. `just report runs/pop-*`.
report *RUNS:
    {{genrec}} report {{RUNS}}

# All criterion benches.
bench:
    cargo bench -p genrec-benches

# Full-ranking evaluation bench (10,000 users x 100,000 items).
bench-eval:
    cargo bench -p genrec-benches --bench eval_fullrank

# One SASRec training step in the shape of the torch_seqrec.py anchor.
bench-sasrec:
    cargo bench -p genrec-benches --bench sasrec_train_step

# The PyTorch anchor of bench-sasrec.
anchor-sasrec:
    /tmp/torchenv/bin/python ../shared/anchors/torch_seqrec.py

# The PyTorch anchor of bench-eval (needs /tmp/torchenv, see ../shared/anchors/README.md).
anchor-eval:
    /tmp/torchenv/bin/python ../shared/anchors/torch_fullsort_eval.py
