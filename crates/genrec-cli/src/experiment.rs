//! Experiment configs (one TOML per run, nesting the component configs) and `genrec run`.
//!
//! ```toml
//! name = "pop-ml100k"
//! seed = 42
//! [data]
//! dataset = "ml-100k"
//! max_history = 50
//! [model]
//! kind = "pop"
//! [eval]
//! ks = [5, 10, 20]
//! ```
//! `--set data.max_history=20` overrides any field before the config is checked; unknown keys
//! and impossible values fail before any work, naming the field.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use genrec_data::{DatasetSpec, HoldOutConfig, LeaveOneOut, SequenceDataset, SplitConfig};
use genrec_eval::multi::MaskMode;
use genrec_eval::report::{markdown_table, MetricsReport, Row};
use genrec_eval::{evaluate, EvalConfig, Evaluation};
use genrec_generative::{train_tiger, TigerConfig};
use genrec_graph::{Backbone, GraphCfConfig};
use genrec_seqrec::{train_sasrec, Popularity, SasRecConfig, SasRecRecommender};
use genrec_tokenize::ItemIndex;
use genrec_train::{Checkpoints, CurvePoint, Run, TrainConfig};
use serde::{Deserialize, Serialize};

use crate::backend::{dispatch, BackendJob, DeviceKind};
use crate::features::{BuildOptions, FeatureKind};
use crate::graph_run::ProfilesConfig;
use crate::tokenize::{build_index, write_usage_plots};
use genrec_tokenize::{BuiltIndex, Collisions, IndexConfig, IndexMethod};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentConfig {
    /// Run name; the run directory is `<out>/<name>-<UTC timestamp>`.
    pub name: String,
    /// Seed of everything random in the run (default 42).
    #[serde(default = "default_seed")]
    pub seed: u64,
    pub data: DataConfig,
    pub model: ModelConfig,
    /// Item index (generative models over code tuples: TIGER).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<IndexConfig>,
    /// Training loop settings (learned models only).
    #[serde(default)]
    pub train: TrainConfig,
    #[serde(default)]
    pub eval: EvalConfig,
    /// Semantic user/item profiles for RLMRec alignment (graph CF models with `model.align`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profiles: Option<ProfilesConfig>,
}

fn default_seed() -> u64 {
    42
}

/// How item ids are assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Renumber {
    /// Keep the ids of reference splits (the P5/S3-Rec Amazon files), shuffle all others.
    Auto,
    /// Seeded shuffle (leakage-free).
    Shuffle,
    /// Keep the order of first appearance in the file.
    Keep,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Dataset name (`ml-100k`, `ml-1m`, `amazon-p5:Beauty`, `synthetic:…`) or file path.
    pub dataset: String,
    /// Drop users with fewer interactions, iterated with `item_kcore` (default 0: off).
    #[serde(default)]
    pub user_kcore: usize,
    /// Drop items with fewer interactions (default 0: off).
    #[serde(default)]
    pub item_kcore: usize,
    /// `auto` (default), `shuffle` or `keep`.
    #[serde(default = "default_renumber")]
    pub renumber: Renumber,
    /// Last items of each history the model sees (default 50; 20 for the Amazon recipes).
    #[serde(default = "default_max_history")]
    pub max_history: usize,
    /// Graph CF models: the seeded random ratio split of a dataset that is not already split
    /// (ratios 3:1:1, seed 0 by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holdout: Option<HoldOutConfig>,
}

fn default_renumber() -> Renumber {
    Renumber::Auto
}
fn default_max_history() -> usize {
    50
}

/// The model and its settings; `kind` picks the model.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum ModelConfig {
    /// Popularity over training interactions.
    Pop {},
    /// SASRec, full-softmax cross-entropy.
    Sasrec(SasRecConfig),
    /// TIGER: T5 encoder–decoder over the `[index]` code tuples, trie-constrained beam search.
    Tiger(TigerConfig),
    /// LightGCN under the hold-out protocol (graph CF; optional RLMRec alignment).
    Lightgcn(GraphCfConfig),
    /// GCCF (concatenated layers).
    Gccf(GraphCfConfig),
    /// SGL, edge-drop views + InfoNCE.
    Sgl(GraphCfConfig),
    /// SimGCL, noise-perturbed views + InfoNCE.
    Simgcl(GraphCfConfig),
}

impl ModelConfig {
    pub fn name(&self) -> &'static str {
        match self {
            ModelConfig::Pop {} => "pop",
            ModelConfig::Sasrec(_) => "sasrec",
            ModelConfig::Tiger(_) => "tiger",
            ModelConfig::Lightgcn(_) => "lightgcn",
            ModelConfig::Gccf(_) => "gccf",
            ModelConfig::Sgl(_) => "sgl",
            ModelConfig::Simgcl(_) => "simgcl",
        }
    }

    /// The backbone and settings of a graph CF model (hold-out protocol); `None` otherwise.
    pub fn graph(&self) -> Option<(Backbone, &GraphCfConfig)> {
        match self {
            ModelConfig::Lightgcn(c) => Some((Backbone::LightGcn, c)),
            ModelConfig::Gccf(c) => Some((Backbone::Gccf, c)),
            ModelConfig::Sgl(c) => Some((Backbone::Sgl, c)),
            ModelConfig::Simgcl(c) => Some((Backbone::SimGcl, c)),
            _ => None,
        }
    }
}

/// Parses a `--set` value as a TOML value (number, bool, array, quoted string), falling back to a
/// bare string so `--set data.dataset=ml-1m` works unquoted.
fn parse_value(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

/// Applies `path.to.key=value` overrides to a parsed TOML table.
pub fn apply_overrides(table: &mut toml::Table, overrides: &[String]) -> Result<()> {
    for o in overrides {
        let (path, raw) = o
            .split_once('=')
            .with_context(|| format!("--set `{o}`: expected path.to.key=value"))?;
        let keys: Vec<&str> = path.trim().split('.').collect();
        if keys.iter().any(|k| k.is_empty()) {
            bail!("--set `{o}`: empty key in `{path}`");
        }
        let mut node = &mut *table;
        for k in &keys[..keys.len() - 1] {
            let entry = node
                .entry(k.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            node = entry
                .as_table_mut()
                .with_context(|| format!("--set `{o}`: `{k}` is not a table"))?;
        }
        node.insert(keys[keys.len() - 1].to_string(), parse_value(raw.trim()));
    }
    Ok(())
}

impl ExperimentConfig {
    /// Reads a TOML file, applies overrides and checks every field that can be checked without data.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut table: toml::Table =
            toml::from_str(&text).with_context(|| format!("{}: invalid TOML", path.display()))?;
        apply_overrides(&mut table, overrides)?;
        // Parse the merged document as text so errors quote the offending key and line.
        let merged = toml::to_string(&table)?;
        let config: ExperimentConfig = toml::from_str(&merged).map_err(|e| {
            anyhow::anyhow!(
                "{} (with --set overrides applied): {}",
                path.display(),
                e.to_string().trim_end()
            )
        })?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<()> {
        if self.name.trim().is_empty() || self.name.contains(['/', '\\']) {
            bail!("name: `{}` must be non-empty and contain no path separators", self.name);
        }
        if self.data.max_history == 0 {
            bail!("data.max_history must be at least 1");
        }
        let presplit = crate::graph_run::presplit_dir(&self.data.dataset)
            .ok()
            .flatten()
            .is_some()
            || self.data.dataset.starts_with("rlmrec:");
        if !(presplit && self.model.graph().is_some()) {
            self.data
                .dataset
                .parse::<DatasetSpec>()
                .map_err(|e| anyhow::anyhow!("data.dataset: {e}"))?;
        }
        genrec_eval::MetricSet::new(self.eval.ks.clone()).map_err(|e| anyhow::anyhow!("eval.ks: {e}"))?;
        if let Some((backbone, m)) = self.model.graph() {
            m.resolve(backbone).map_err(anyhow::Error::msg)?;
            self.train.validate(&self.eval.ks)?;
            if let Some(h) = &self.data.holdout {
                h.validate().map_err(|e| anyhow::anyhow!("data.{e}"))?;
            }
            match (&m.align, &self.profiles) {
                (Some(_), None) => bail!("model.align needs a [profiles] table (source = \"text\" or \"file\")"),
                (None, Some(_)) => bail!("[profiles] is only used with model.align"),
                (_, Some(p)) => p.validate()?,
                _ => {}
            }
            return Ok(());
        }
        if self.data.holdout.is_some() || self.profiles.is_some() || self.eval.mask != MaskMode::Train {
            bail!(
                "data.holdout, [profiles] and eval.mask belong to the hold-out protocol of graph CF models (lightgcn, gccf, sgl, simgcl), not `{}`",
                self.model.name()
            );
        }
        match &self.model {
            ModelConfig::Sasrec(m) => {
                m.validate()?;
                self.train.validate(&self.eval.ks)?;
            }
            ModelConfig::Tiger(m) => {
                let max_k = self.eval.ks.iter().copied().max().unwrap_or(1);
                m.validate(max_k)?;
                self.train.validate(&self.eval.ks)?;
                let index = self.index.clone().unwrap_or_default();
                index
                    .features
                    .parse::<FeatureKind>()
                    .map_err(|e| anyhow::anyhow!("index.features: {e}"))?;
                index.validate()?;
                if index.method != IndexMethod::Hybrid && index.collisions == Collisions::None {
                    bail!("index.collisions = \"none\" cannot give TIGER a conflict-free index: use dedup or sinkhorn");
                }
            }
            ModelConfig::Pop {} => {}
            _ => unreachable!("graph models returned above"),
        }
        Ok(())
    }
}

/// Loads the dataset and applies the configured k-core filter, logging both.
pub fn load_filtered(config: &ExperimentConfig, log: &mut Log) -> Result<(DatasetSpec, SequenceDataset)> {
    let spec: DatasetSpec = config.data.dataset.parse()?;
    let raw = spec.load()?;
    log.line(&format!(
        "loaded {}: {} users, {} items, {} interactions",
        config.data.dataset,
        raw.n_users(),
        raw.n_items(),
        raw.n_interactions()
    ));
    let (data, report) = raw.kcore(config.data.user_kcore, config.data.item_kcore);
    if report.removed_interactions > 0 {
        log.line(&format!(
            "k-core ({}, {}): removed {} users, {} items, {} interactions in {} rounds",
            config.data.user_kcore,
            config.data.item_kcore,
            report.removed_users,
            report.removed_items,
            report.removed_interactions,
            report.rounds
        ));
    }
    Ok((spec, data))
}

/// Loads, filters, renumbers and splits the dataset as the config says.
pub fn prepare_data(config: &ExperimentConfig, log: &mut Log) -> Result<(SequenceDataset, LeaveOneOut)> {
    let (spec, mut data) = load_filtered(config, log)?;
    let shuffle = match config.data.renumber {
        Renumber::Auto => !spec.is_reference_split(),
        Renumber::Shuffle => true,
        Renumber::Keep => false,
    };
    if shuffle {
        data = data.renumber_items(config.seed);
    }
    let split = LeaveOneOut::new(
        &data,
        &SplitConfig {
            max_history: config.data.max_history,
        },
    );
    if split.skipped_short_users > 0 {
        log.line(&format!(
            "skipped {} users with fewer than 3 interactions",
            split.skipped_short_users
        ));
    }
    if split.test.is_empty() {
        bail!(
            "data.dataset `{}`: no user has the 3 interactions leave-one-out needs; the test split is empty",
            config.data.dataset
        );
    }
    Ok((data, split))
}

/// log.txt plus stderr.
pub struct Log {
    file: Option<std::fs::File>,
}

impl Log {
    /// `append` keeps what a resumed run already logged.
    pub fn new(path: Option<&Path>, append: bool) -> Result<Self> {
        let open = |p: &Path| {
            std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .append(append)
                .truncate(!append)
                .open(p)
                .with_context(|| format!("opening {}", p.display()))
        };
        let file = path.map(open).transpose()?;
        Ok(Log { file })
    }

    pub fn line(&mut self, msg: &str) {
        eprintln!("{msg}");
        if let Some(f) = &mut self.file {
            let _ = writeln!(f, "{msg}");
        }
    }
}

/// `YYYYMMDD-HHMMSS` in UTC, from the system clock (civil-from-days, Howard Hinnant's algorithm).
pub fn utc_stamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + (month <= 2) as i64;
    format!(
        "{year:04}{month:02}{day:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

pub fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(value)? + "\n")
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Options of `genrec run` beyond the config file.
pub struct RunOptions {
    pub out: PathBuf,
    pub device: DeviceKind,
    /// Continue this run directory from its `resume/` state instead of starting a new run.
    pub resume: Option<PathBuf>,
}

/// Runs one experiment end to end and returns its run directory.
pub fn run(config: &ExperimentConfig, options: &RunOptions) -> Result<PathBuf> {
    let dir = match &options.resume {
        Some(dir) => {
            if !dir.join("resume/state.json").exists() {
                bail!(
                    "{}: no resume/state.json (only runs that completed at least one epoch of training can be resumed)",
                    dir.display()
                );
            }
            // Overrides given with --resume (e.g. more epochs) become part of the run's config.
            std::fs::write(dir.join("config.toml"), toml::to_string_pretty(config)?)?;
            dir.clone()
        }
        None => {
            let mut dir = options.out.join(format!("{}-{}", config.name, utc_stamp()));
            // Two runs in the same second get distinct directories.
            let mut n = 1;
            while dir.exists() {
                n += 1;
                dir = options.out.join(format!("{}-{}-{n}", config.name, utc_stamp()));
            }
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            std::fs::write(dir.join("config.toml"), toml::to_string_pretty(config)?)?;
            dir
        }
    };
    let mut log = Log::new(Some(&dir.join("log.txt")), options.resume.is_some())?;
    log.line(&format!(
        "{} {} (seed {}, device {}) -> {}",
        if options.resume.is_some() { "resume" } else { "run" },
        config.name,
        config.seed,
        options.device,
        dir.display()
    ));

    if let Some((backbone, model)) = config.model.graph() {
        crate::graph_run::run(config, backbone, model, &dir, options, &mut log)?;
        return Ok(dir);
    }
    let (data, split) = prepare_data(config, &mut log)?;
    config.eval.validate(split.n_items).map_err(|e| anyhow::anyhow!(e))?;

    let counts = split.train_item_counts();
    let outcome = match &config.model {
        ModelConfig::Pop {} => {
            let started = Instant::now();
            let pop = Popularity::fit(&split);
            pop.save(&dir.join("model.json"))?;
            let train_seconds = started.elapsed().as_secs_f64();
            let started = Instant::now();
            let valid =
                evaluate(&pop, &split.valid, Some(&counts), &config.eval, config.seed).map_err(anyhow::Error::msg)?;
            let test =
                evaluate(&pop, &split.test, Some(&counts), &config.eval, config.seed).map_err(anyhow::Error::msg)?;
            Outcome {
                valid,
                test,
                train_seconds,
                eval_seconds: started.elapsed().as_secs_f64(),
                curves: Vec::new(),
            }
        }
        ModelConfig::Tiger(model) => {
            let index = item_index(config, &data, &dir, options.device, &mut log)?;
            dispatch(
                options.device,
                TigerJob {
                    model,
                    index: &index,
                    run: RunContext {
                        config,
                        split: &split,
                        counts: &counts,
                        dir: &dir,
                        resume: options.resume.is_some(),
                        log: &mut log,
                    },
                },
            )?
        }
        ModelConfig::Lightgcn(_) | ModelConfig::Gccf(_) | ModelConfig::Sgl(_) | ModelConfig::Simgcl(_) => {
            unreachable!("graph models ran above")
        }
        ModelConfig::Sasrec(model) => dispatch(
            options.device,
            SasRecJob {
                model,
                run: RunContext {
                    config,
                    split: &split,
                    counts: &counts,
                    dir: &dir,
                    resume: options.resume.is_some(),
                    log: &mut log,
                },
            },
        )?,
    };
    let Outcome {
        valid,
        test,
        train_seconds,
        eval_seconds,
        curves,
    } = outcome;
    log.line(&format!(
        "trained {} in {train_seconds:.1}s, evaluated in {eval_seconds:.1}s",
        config.model.name()
    ));
    write_curves_and_plots(&dir, &curves, &config.train.metric)?;

    let report = |split_name: &str, e: &Evaluation| MetricsReport {
        experiment: config.name.clone(),
        dataset: config.data.dataset.clone(),
        model: config.model.name().into(),
        split: split_name.into(),
        seed: config.seed,
        users: e.users,
        metrics: e.metrics.clone(),
        invalid: e.invalid.clone().unwrap_or_default(),
        ranking: e.ranking.clone(),
        exclude_history: config.eval.exclude_history,
        mask: None,
        train_seconds,
        eval_seconds,
        device: options.device.to_string(),
        groups: e.groups.clone(),
    };
    let test_report = report("test", &test);
    let valid_report = report("valid", &valid);
    write_json(&dir.join("metrics.json"), &test_report)?;
    write_json(&dir.join("metrics_valid.json"), &valid_report)?;
    write_per_user(&dir.join("per_user.jsonl"), &test)?;
    let table = markdown_table(
        &[
            Row {
                label: "valid".into(),
                report: valid_report,
            },
            Row {
                label: "test".into(),
                report: test_report,
            },
        ],
        None,
    );
    log.line(&format!("\n{table}"));
    Ok(dir)
}

/// What a model run hands back for reporting.
struct Outcome {
    valid: Evaluation,
    test: Evaluation,
    train_seconds: f64,
    eval_seconds: f64,
    curves: Vec<CurvePoint>,
}

/// What every learned model's job shares: the experiment, its split, and where to write.
struct RunContext<'a> {
    config: &'a ExperimentConfig,
    split: &'a LeaveOneOut,
    counts: &'a [u32],
    dir: &'a Path,
    resume: bool,
    log: &'a mut Log,
}

impl<'a> RunContext<'a> {
    fn checkpoints(&self) -> Checkpoints<'a> {
        Checkpoints {
            dir: Some(self.dir),
            resume: self.resume,
        }
    }

    /// Logs the selected epoch and evaluates the selected model on every validation and test user.
    fn finish(
        self,
        started: Instant,
        rec: &dyn genrec_eval::Recommender,
        best_epoch: usize,
        best_valid: f64,
        curves: Vec<CurvePoint>,
    ) -> Result<Outcome> {
        let c = self.config;
        // The curves' clock continues across `--resume`, so a resumed run reports its whole
        // training time, not just the part after the restart.
        let train_seconds = started.elapsed().as_secs_f64();
        let train_seconds = curves.last().map_or(train_seconds, |p| p.seconds.max(train_seconds));
        self.log.line(&format!(
            "best epoch {best_epoch} (valid {} {best_valid:.4})",
            c.train.metric
        ));
        let started = Instant::now();
        let valid = evaluate(rec, &self.split.valid, Some(self.counts), &c.eval, c.seed).map_err(anyhow::Error::msg)?;
        let test = evaluate(rec, &self.split.test, Some(self.counts), &c.eval, c.seed).map_err(anyhow::Error::msg)?;
        Ok(Outcome {
            valid,
            test,
            train_seconds,
            eval_seconds: started.elapsed().as_secs_f64(),
            curves,
        })
    }
}

/// SASRec training and evaluation on the chosen backend.
struct SasRecJob<'a> {
    model: &'a SasRecConfig,
    run: RunContext<'a>,
}

impl BackendJob for SasRecJob<'_> {
    type Output = Result<Outcome>;

    fn run<B: burn::tensor::backend::AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let RunContext { config: c, split, .. } = self.run;
        let checkpoints = self.run.checkpoints();
        let started = Instant::now();
        let log = &mut *self.run.log;
        let run = Run::new(c.seed, checkpoints, |m: &str| log.line(m));
        let trained = train_sasrec::<B>(self.model, &c.train, &c.eval, split, &device, run)?;
        let rec = SasRecRecommender { model: trained.model };
        self.run
            .finish(started, &rec, trained.best_epoch, trained.best_valid, trained.curves)
    }
}

/// Builds the `[index]` of the prepared dataset (item ids as the split numbers them) and writes
/// `index.json`, `index_stats.json` and the per-level usage plots into the run directory. On
/// `--resume` the saved index.json is reused, so the model keeps the codes it was trained on.
fn item_index(
    config: &ExperimentConfig,
    data: &SequenceDataset,
    dir: &Path,
    device: DeviceKind,
    log: &mut Log,
) -> Result<ItemIndex> {
    let path = dir.join("index.json");
    if path.exists() {
        let index = ItemIndex::load(&path).map_err(anyhow::Error::msg)?;
        if index.n_items() != data.n_items() {
            bail!(
                "{}: {} items, the dataset has {}",
                path.display(),
                index.n_items(),
                data.n_items()
            );
        }
        log.line(&format!("item index: reusing {}", path.display()));
        return Ok(index);
    }
    let index_config = config.index.clone().unwrap_or_default();
    let features = if index_config.needs_features() {
        let kind = index_config.features.parse().map_err(|e: String| anyhow::anyhow!(e))?;
        let options = BuildOptions::in_memory(&config.data.dataset, kind, device, config.seed);
        Some(crate::features::vectors(&options, data)?.matrix)
    } else {
        None
    };
    let BuiltIndex { index, report, codes } = build_index(
        &index_config,
        &config.data.dataset,
        data,
        features.as_ref(),
        device,
        config.seed,
    )?;
    write_json(&dir.join("index_stats.json"), &report)?;
    write_usage_plots(dir, &codes)?;
    let index = index.context("the item index has collisions: set index.collisions to dedup or sinkhorn")?;
    let stats = index.stats();
    log.line(&format!(
        "item index {}: {} levels {:?}, collisions before handling {:.4}, fit {:.1}s",
        index.method, stats.levels, stats.codebook_sizes, report.before.collision_rate, report.fit_seconds
    ));
    index.save(&path).map_err(anyhow::Error::msg)?;
    Ok(index)
}

/// TIGER training and evaluation on the chosen backend.
struct TigerJob<'a> {
    model: &'a TigerConfig,
    index: &'a ItemIndex,
    run: RunContext<'a>,
}

impl BackendJob for TigerJob<'_> {
    type Output = Result<Outcome>;

    fn run<B: burn::tensor::backend::AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let RunContext { config: c, split, .. } = self.run;
        let checkpoints = self.run.checkpoints();
        let started = Instant::now();
        let log = &mut *self.run.log;
        let run = Run::new(c.seed, checkpoints, |m: &str| log.line(m));
        let trained = train_tiger::<B>(self.model, self.index, &c.train, &c.eval, split, &device, run)?;
        self.run.finish(
            started,
            &trained.model,
            trained.best_epoch,
            trained.best_valid,
            trained.curves,
        )
    }
}

/// curves.csv, loss.svg and valid.svg of a trained model (nothing for an untrained one).
pub fn write_curves_and_plots(dir: &Path, curves: &[CurvePoint], metric: &str) -> Result<()> {
    if curves.is_empty() {
        return Ok(());
    }
    write_curves(&dir.join("curves.csv"), curves)?;
    let loss: Vec<(f64, f64)> = curves.iter().map(|p| (p.epoch as f64, p.loss)).collect();
    let valid: Vec<(f64, f64)> = curves
        .iter()
        .filter_map(|p| p.valid.map(|v| (p.epoch as f64, v)))
        .collect();
    std::fs::write(
        dir.join("loss.svg"),
        crate::plot::line_chart("training loss", "epoch", "loss", &loss),
    )?;
    std::fs::write(
        dir.join("valid.svg"),
        crate::plot::line_chart(&format!("validation {metric}"), "epoch", metric, &valid),
    )?;
    Ok(())
}

fn write_curves(path: &Path, curves: &[CurvePoint]) -> Result<()> {
    let mut text = String::from("epoch,step,loss,valid,seconds\n");
    for p in curves {
        let valid = p.valid.map(|v| v.to_string()).unwrap_or_default();
        text += &format!("{},{},{},{},{:.3}\n", p.epoch, p.step, p.loss, valid, p.seconds);
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// One JSON object per test user (`user`, `target`, `rank`): the input of `genrec compare`.
fn write_per_user(path: &Path, e: &Evaluation) -> Result<()> {
    let mut text = String::new();
    for o in &e.outcomes {
        text += &serde_json::to_string(o)?;
        text.push('\n');
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    const BASE: &str = "name = \"t\"\n[data]\ndataset = \"synthetic\"\n[model]\nkind = \"pop\"\n";

    #[test]
    fn overrides_and_defaults() {
        let f = write(BASE);
        let c = ExperimentConfig::load(
            f.path(),
            &[
                "data.max_history=7".into(),
                "eval.ks=[1, 3]".into(),
                "data.dataset=synthetic:users=50".into(),
            ],
        )
        .unwrap();
        assert_eq!(c.data.max_history, 7);
        assert_eq!(c.eval.ks, [1, 3]);
        assert_eq!(c.data.dataset, "synthetic:users=50");
        assert_eq!(c.seed, 42);
    }

    #[test]
    fn bad_configs_name_the_field() {
        let f = write(BASE);
        for (set, want) in [
            ("data.colour=1", "unknown field `colour`"),
            ("model.kind=gpt", "unknown variant `gpt`"),
            ("model.depth=3", "unknown field `depth`"),
            ("data.max_history=0", "data.max_history"),
            ("data.max_history=-1", "max_history"),
            ("eval.ks=[]", "eval.ks"),
            ("data.dataset=ml-20m", "data.dataset: unknown dataset `ml-20m`"),
            ("nonsense", "expected path.to.key=value"),
            ("name.x=1", "`name` is not a table"),
        ] {
            let e = format!("{:#}", ExperimentConfig::load(f.path(), &[set.into()]).unwrap_err());
            assert!(e.contains(want), "{set}: {e}");
        }
    }

    #[test]
    fn stamp_shape() {
        let s = utc_stamp();
        assert_eq!(s.len(), 15);
        assert!(s.starts_with("20"));
    }
}
