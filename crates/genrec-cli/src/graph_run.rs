//! `genrec run` for graph CF models (LightGCN, GCCF, SGL, SimGCL, each with optional RLMRec
//! alignment) under the hold-out protocol.
//!
//! Data: `data.dataset = "rlmrec:amazon-book"` reads the pre-split files under
//! `$GENREC_DATA_DIR/rlmrec/amazon-book`; a directory holding `train.tsv` / `valid.tsv` /
//! `test.tsv` is read the same way; any other dataset is loaded as usual and split at random by
//! `[data.holdout]` (ratios 3:1:1, seed 0 by default).
//!
//! Profiles (`[profiles]`, needed by `model.align`): `source = "text"` embeds each item's own
//! text with MiniLM (cached under GENREC_HOME) and gives each user the mean of their *training*
//! items' vectors; `source = "file"` reads `user_file` / `item_file` (`.npy` / `.safetensors`
//! matrices, one row per user / item id); `permute = true` shuffles either among the users and
//! among the items (a control: same profiles, none describing its own node).

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use burn::tensor::backend::AutodiffBackend;
use genrec_data::HoldOut;
use genrec_eval::multi::{HoldOutEvalConfig, HoldOutEvaluation, HoldOutSplit};
use genrec_eval::report::MetricsReport;
use genrec_graph::train::validation_eval;
use genrec_graph::{
    evaluate_graph_cf, file_profiles, llm_profiles, text_profiles, train_graph_cf, Backbone, Graph, GraphCfConfig,
    HostProfiles, LlmProfileOptions,
};
use genrec_train::{Checkpoints, CurvePoint, Run};

use crate::backend::{dispatch, BackendJob, DeviceKind};
use crate::config::{load_filtered, presplit_dir, ExperimentConfig, ProfileSource};
use crate::features::{BuildOptions, FeatureKind};
use crate::rundir::{train_seconds, write_curves_and_plots, write_reports, Log, RunOptions};

/// The hold-out of the experiment's dataset, and the dataset itself when it was loaded whole
/// (item text for profiles comes from it).
fn load_holdout(config: &ExperimentConfig, log: &mut Log) -> Result<(HoldOut, Option<genrec_data::SequenceDataset>)> {
    let name = &config.data.dataset;
    let presplit = presplit_dir(name)?;
    if let Some(dir) = presplit {
        if config.data.holdout.is_some() {
            bail!("data.holdout: `{name}` is already split; remove the [data.holdout] table");
        }
        let data = HoldOut::load_dir(&dir)?;
        let [tr, va, te] = data.interactions();
        log.line(&format!(
            "loaded {name} ({}): {} users, {} items, train {tr} / valid {va} / test {te}",
            dir.display(),
            data.n_users,
            data.n_items
        ));
        return Ok((data, None));
    }
    let (_, dataset) = load_filtered(config, log)?;
    let split = config.data.holdout.clone().unwrap_or_default();
    let data = HoldOut::from_dataset(&dataset, &split)?;
    let [tr, va, te] = data.interactions();
    log.line(&format!(
        "{name}: {} users, {} items; hold-out {:?} seed {}: train {tr} / valid {va} / test {te}",
        data.n_users, data.n_items, split.ratios, split.seed
    ));
    Ok((data, Some(dataset)))
}

/// Semantic profiles for `data`, as `[profiles]` says.
fn build_profiles<'a>(
    config: &ExperimentConfig,
    data: &HoldOut,
    dataset: Option<&'a genrec_data::SequenceDataset>,
    device: DeviceKind,
    log: &mut Log,
) -> Result<HostProfiles> {
    let profiles = config
        .profiles
        .as_ref()
        .context("model.align needs a [profiles] table (source = \"text\" or \"file\")")?;
    // Text and LLM profiles need the item text of a dataset loaded whole (not a pre-split one).
    let with_text = |d: Option<&'a genrec_data::SequenceDataset>, source: &str| {
        d.with_context(|| {
            format!(
                "profiles.source = \"{source}\": `{}` has no item text here; use source = \"file\"",
                config.data.dataset
            )
        })
    };
    match profiles.source {
        ProfileSource::File => {
            let (uf, itf) = (
                profiles
                    .user_file
                    .as_ref()
                    .expect("checked by ProfilesConfig::validate"),
                profiles
                    .item_file
                    .as_ref()
                    .expect("checked by ProfilesConfig::validate"),
            );
            let p = file_profiles(uf, itf, data)?;
            log.line(&format!(
                "profiles: {} users × {} and {} items from files",
                data.n_users, p.dim, data.n_items
            ));
            Ok(p)
        }
        ProfileSource::Llm => {
            let dataset = with_text(dataset, "llm")?;
            let options = LlmProfileOptions {
                batch_size: profiles.batch_size.unwrap_or(16),
                max_new: profiles.max_new.unwrap_or(48),
                user_titles: profiles.user_titles.unwrap_or(10),
            };
            let split = config.data.holdout.clone().unwrap_or_default();
            let key = format!(
                "{}-{}-{}-seed{}",
                split.ratios[0], split.ratios[1], split.ratios[2], split.seed
            );
            let name = &config.data.dataset;
            let dir = profile_dir(name);
            let (items, users) = dispatch(
                device,
                LlmProfilesJob {
                    dir: &dir,
                    dataset,
                    data,
                    key: &key,
                    options: &options,
                    log: &mut *log,
                },
            )?;
            let items = crate::features::encode_texts(&items, &format!("{name}-smollm2-items"), device)?;
            let users = crate::features::encode_texts(&users, &format!("{name}-smollm2-users-{key}"), device)?;
            log.line(&format!(
                "profiles: SmolLM2-written, MiniLM-embedded ({} items, {} users × {})",
                items.rows, users.rows, items.cols
            ));
            Ok(HostProfiles {
                dim: items.cols,
                user: users.data,
                item: items.data,
            })
        }
        ProfileSource::Text => {
            let dataset = with_text(dataset, "text")?;
            let options = BuildOptions::in_memory(&config.data.dataset, FeatureKind::Text, device, config.seed);
            let items = crate::features::vectors(&options, dataset)?.matrix;
            log.line(&format!(
                "profiles: MiniLM item text ({} × {}); users = mean of their training items",
                items.rows, items.cols
            ));
            Ok(text_profiles(&items, data))
        }
    }
}

/// genrec-graph's [`llm_profiles`] on the chosen backend (SmolLM2 inference).
struct LlmProfilesJob<'a> {
    dir: &'a Path,
    dataset: &'a genrec_data::SequenceDataset,
    data: &'a HoldOut,
    key: &'a str,
    options: &'a LlmProfileOptions,
    log: &'a mut Log,
}

impl BackendJob for LlmProfilesJob<'_> {
    type Output = Result<(Vec<String>, Vec<String>), genrec_graph::GraphError>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let log = self.log;
        llm_profiles::<B::InnerBackend>(
            self.dir,
            self.dataset,
            self.data,
            self.key,
            self.options,
            &device,
            &mut |m| log.line(m),
        )
    }
}

/// Where a dataset's SmolLM2 profiles are kept: `GENREC_HOME/profiles/<dataset>-smollm2/`.
fn profile_dir(name: &str) -> std::path::PathBuf {
    genrec_data::assets::genrec_home()
        .join("profiles")
        .join(format!("{}-smollm2", name.replace([':', '/'], "_")))
}

struct GraphJob<'a> {
    config: &'a ExperimentConfig,
    backbone: Backbone,
    model: &'a GraphCfConfig,
    data: &'a HoldOut,
    profiles: Option<&'a HostProfiles>,
    dir: &'a Path,
    resume: bool,
    log: &'a mut Log,
}

struct GraphOutcome {
    valid: HoldOutEvaluation,
    test: HoldOutEvaluation,
    train_seconds: f64,
    eval_seconds: f64,
    curves: Vec<CurvePoint>,
}

impl BackendJob for GraphJob<'_> {
    type Output = Result<GraphOutcome>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let c = self.config;
        let eval = holdout_eval(c);
        let started = Instant::now();
        let log = &mut *self.log;
        let settings = self.model.resolve(self.backbone)?;
        let checkpoints = Checkpoints {
            dir: Some(self.dir),
            resume: self.resume,
        };
        let run = Run::new(c.seed, checkpoints, |m: &str| log.line(m));
        let trained = train_graph_cf::<B>(&settings, &c.train, &eval, self.data, self.profiles, &device, run)?;
        let train_seconds = train_seconds(started.elapsed().as_secs_f64(), &trained.curves);
        log.line(&format!(
            "best epoch {} (valid {} {:.4})",
            trained.best_epoch, c.train.metric, trained.best_valid
        ));
        let graph = Graph::<B::InnerBackend>::new(self.data, &device);
        let started = Instant::now();
        let valid_eval = validation_eval(&eval);
        let valid = evaluate_graph_cf(
            &trained.model,
            &settings,
            &graph,
            self.data,
            HoldOutSplit::Valid,
            &valid_eval,
        )?;
        let test = evaluate_graph_cf(&trained.model, &settings, &graph, self.data, HoldOutSplit::Test, &eval)?;
        Ok(GraphOutcome {
            valid,
            test,
            train_seconds,
            eval_seconds: started.elapsed().as_secs_f64(),
            curves: trained.curves,
        })
    }
}

/// `[eval]` as the hold-out evaluator reads it.
fn holdout_eval(config: &ExperimentConfig) -> HoldOutEvalConfig {
    HoldOutEvalConfig {
        ks: config.eval.ks.clone(),
        mask: config.eval.mask,
        batch_size: config.eval.batch_size,
    }
}

/// Trains and evaluates a graph CF experiment into `dir`.
pub fn run(
    config: &ExperimentConfig,
    backbone: Backbone,
    model: &GraphCfConfig,
    dir: &Path,
    options: &RunOptions,
    log: &mut Log,
) -> Result<()> {
    let (data, dataset) = load_holdout(config, log)?;
    let profiles = match &model.align {
        Some(_) => {
            let mut profiles = build_profiles(config, &data, dataset.as_ref(), options.device, log)?;
            if config.profiles.as_ref().is_some_and(|p| p.permute) {
                log.line(&format!(
                    "profiles: permuted among users and among items (seed {}), a control",
                    config.seed
                ));
                profiles = profiles.permuted(config.seed);
            }
            Some(profiles)
        }
        None => None,
    };
    let outcome = dispatch(
        options.device,
        GraphJob {
            config,
            backbone,
            model,
            data: &data,
            profiles: profiles.as_ref(),
            dir,
            resume: options.resume.is_some(),
            log,
        },
    )?;
    log.line(&format!(
        "trained {} in {:.1}s, evaluated in {:.1}s",
        config.model.name(),
        outcome.train_seconds,
        outcome.eval_seconds
    ));
    write_curves_and_plots(dir, &outcome.curves, &config.train.metric)?;
    let report = |split: &str, e: &HoldOutEvaluation| MetricsReport {
        experiment: config.name.clone(),
        dataset: config.data.dataset.clone(),
        model: config.model.name().into(),
        split: split.into(),
        seed: config.seed,
        users: e.users,
        metrics: e.metrics.clone(),
        invalid: Default::default(),
        ranking: e.ranking.clone(),
        exclude_history: true,
        mask: Some(e.mask.label().into()),
        train_seconds: outcome.train_seconds,
        eval_seconds: outcome.eval_seconds,
        device: options.device.to_string(),
        groups: Default::default(),
    };
    let table = write_reports(
        dir,
        report("valid", &outcome.valid),
        report("test", &outcome.test),
        &outcome.test.outcomes,
    )?;
    log.line(&format!("\n{table}"));
    Ok(())
}
