//! P5 / OpenP5 ("How to Index Item IDs for Recommendation Foundation Models", Hua et al., SIGIR-AP
//! 2023; Geng et al., RecSys 2022): sequential recommendation as text-to-text over any item
//! index. The prompt ([`prompts`]: a template with the user's token and the history's item
//! identifiers) goes into a T5 encoder with P5's whole-word embeddings; the decoder writes the
//! next item's identifier, constrained by the trie of every item's code tokens (the same batched
//! beam search as TIGER). Training draws one of the seen templates per example and access;
//! evaluation uses one template (`eval_template`, an unseen one by default; re-evaluate a
//! finished run with another through `--resume COPY --set model.eval_template=…`). With
//! `report_templates`, the trained model is also scored on the test users with every template
//! ([`evaluate_templates`]): each template's row and the means over the seen, the unseen and all
//! templates go to `templates.json` in the run directory, as OpenP5 reports them.
//!
//! Built: the T5 backbone from scratch. Not built: the SmolLM2 backbone.

pub mod prompts;

use burn::module::Module;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Bool, Int, Tensor, TensorData};
use genrec_data::{ItemId, LeaveOneOut, UserId};
use genrec_decode::Constraint;
use genrec_eval::{evaluate, EvalConfig, Recommender};
use genrec_tokenize::{ItemIndex, Trie};
use genrec_train::{train_model, Run, Task, TrainConfig, Trained, ValidationError};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::t5::{T5Config, T5};
use crate::tiger::{decode_items, decoder_targets, example, in_chunks, tiger_loss, training_examples, TigerBatch};
use crate::GenerativeError;
use prompts::{fill, WordVocabulary, SEEN, UNSEEN};

/// The `[model]` table of a P5 experiment (`kind = "p5"`); the item identifiers come from
/// `[index]` (any method: the indexing study varies it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct P5Config {
    /// The T5, trained from scratch (TIGER's sizes by default, with P5's whole-word table of
    /// 512 positions; `whole_word_ids = 0` turns it off).
    pub t5: T5Config,
    /// History items in a prompt (default 20).
    pub max_items: usize,
    /// Hashed user tokens in the prompt (default 0: the prompt names no user).
    pub user_tokens: usize,
    /// Evaluate with an unseen template (default true) or a seen one.
    pub eval_unseen: bool,
    /// Which template of that group evaluation uses (default 0).
    pub eval_template: usize,
    /// Beam width (default 20; at least the largest eval K).
    pub beam: usize,
    /// Training examples per user and epoch: 0 = every position (default), n = n random ones.
    pub positions_per_user: usize,
    /// Users decoded together (default 256).
    pub decode_batch: usize,
    /// After training, score the test users with every template into `templates.json` (default
    /// false: one decode of the test split per template).
    pub report_templates: bool,
}

impl Default for P5Config {
    fn default() -> Self {
        P5Config {
            t5: T5Config {
                whole_word_ids: 512,
                ..T5Config::default()
            },
            max_items: 20,
            user_tokens: 0,
            eval_unseen: true,
            eval_template: 0,
            beam: 20,
            positions_per_user: 0,
            decode_batch: 256,
            report_templates: false,
        }
    }
}

impl P5Config {
    /// Checks every field; the error names it.
    pub fn validate(&self, max_k: usize) -> Result<(), GenerativeError> {
        for (field, value) in [
            ("model.max_items", self.max_items),
            ("model.decode_batch", self.decode_batch),
        ] {
            if value == 0 {
                return Err(GenerativeError::config(field, "must be positive"));
            }
        }
        if self.beam < max_k || self.beam > 1000 {
            return Err(GenerativeError::config(
                "model.beam",
                format!("= {} must be between the largest eval K ({max_k}) and 1000", self.beam),
            ));
        }
        if self.user_tokens > 1_000_000 {
            return Err(GenerativeError::config(
                "model.user_tokens",
                format!("= {} is above 1,000,000 hash buckets", self.user_tokens),
            ));
        }
        let group = self.eval_group();
        if self.eval_template >= group.len() {
            return Err(GenerativeError::config(
                "model.eval_template",
                format!(
                    "= {} but there are {} {} templates",
                    self.eval_template,
                    group.len(),
                    if self.eval_unseen { "unseen" } else { "seen" }
                ),
            ));
        }
        T5Config {
            vocab_size: 1,
            ..self.t5.clone()
        }
        .validate()
        .map_err(|e| GenerativeError::config("model.t5", e.to_string()))?;
        // Word numbers run from 1 to the longest prompt's piece count (0 is padding).
        let history = vec![0; self.max_items];
        let needed = SEEN
            .iter()
            .chain(UNSEEN)
            .map(|t| fill(t, 0, &history).len())
            .max()
            .unwrap_or(0)
            + 1;
        if self.t5.whole_word_ids > 0 && self.t5.whole_word_ids < needed {
            return Err(GenerativeError::config(
                "model.t5.whole_word_ids",
                format!(
                    "= {} is too few word positions for prompts of {} items (at least {needed})",
                    self.t5.whole_word_ids, self.max_items
                ),
            ));
        }
        Ok(())
    }

    fn eval_group(&self) -> &'static [&'static str] {
        if self.eval_unseen {
            UNSEEN
        } else {
            SEEN
        }
    }

    /// The fields that shape training, as `--resume` compares them: the evaluation template,
    /// beam and decode batch may change on a finished run.
    pub fn trained_part(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        if let Some(map) = value.as_object_mut() {
            for key in [
                "eval_unseen",
                "eval_template",
                "beam",
                "decode_batch",
                "report_templates",
            ] {
                map.remove(key);
            }
        }
        value
    }
}

/// Encoder inputs of a batch of prompts: tokens, whole-word numbers (cut to the table) and
/// padding, each `[n, src]`, right-padded to the longest.
fn prompt_tensors<B: Backend>(
    prompts: &[(Vec<u32>, Vec<u32>)],
    word_ids: usize,
    device: &B::Device,
) -> (Tensor<B, 2, Int>, Tensor<B, 2, Int>, Tensor<B, 2, Bool>) {
    let width = prompts.iter().map(|p| p.0.len()).max().unwrap_or(0).max(1);
    let n = prompts.len();
    let (mut tokens, mut words, mut pad) = (vec![0i64; n * width], vec![0i64; n * width], vec![true; n * width]);
    for (r, (t, w)) in prompts.iter().enumerate() {
        for j in 0..t.len() {
            tokens[r * width + j] = t[j] as i64;
            words[r * width + j] = (w[j] as usize).min(word_ids.saturating_sub(1)) as i64;
            pad[r * width + j] = false;
        }
        if t.is_empty() {
            pad[r * width] = false;
        }
    }
    (
        Tensor::from_data(TensorData::new(tokens, [n, width]), device),
        Tensor::from_data(TensorData::new(words, [n, width]), device),
        Tensor::from_data(TensorData::new(pad, [n, width]), device),
    )
}

/// A trained P5 model behind genrec-eval's [`Recommender`].
pub struct P5<B: Backend> {
    pub model: T5<B>,
    pub index: ItemIndex,
    pub vocab: WordVocabulary,
    pub config: P5Config,
    token_trie: Trie,
}

impl<B: Backend> P5<B> {
    pub fn new(model: T5<B>, index: ItemIndex, config: P5Config) -> Self {
        let vocab = vocabulary(&index, &config);
        let tuples: Vec<Vec<u32>> = (0..index.n_items() as ItemId)
            .map(|i| vocab.layout.tokens(index.codes(i)))
            .collect();
        let token_trie = Trie::build(&tuples).expect("an ItemIndex is prefix-free, in tokens as in codes");
        P5 {
            model,
            index,
            vocab,
            config,
            token_trie,
        }
    }

    /// The evaluation prompt of each (user, history), encoded.
    fn prompts(&self, users: Option<&[UserId]>, histories: &[&[ItemId]]) -> Vec<(Vec<u32>, Vec<u32>)> {
        let template = self.config.eval_group()[self.config.eval_template];
        histories
            .iter()
            .enumerate()
            .map(|(r, h)| {
                let recent = &h[h.len().saturating_sub(self.config.max_items)..];
                // Without users (or user tokens) the user piece is left out of the encoding.
                let user = users.map_or(0, |u| u[r]);
                let mut pieces = fill(template, user, recent);
                if users.is_none() {
                    pieces.retain(|p| !matches!(p, prompts::Piece::User(_)));
                }
                self.vocab
                    .encode(&pieces, &self.index)
                    .expect("templates encode in their own vocabulary")
            })
            .collect()
    }

    fn generate(&self, users: Option<&[UserId]>, histories: &[&[ItemId]], k: usize) -> Vec<Vec<ItemId>> {
        let device = self.model.devices()[0].clone();
        let (src, words, pad) =
            prompt_tensors::<B>(&self.prompts(users, histories), self.config.t5.whole_word_ids, &device);
        let memory = self.model.encode_words_with(src, Some(words), pad.clone(), &mut None);
        let vocab = self.vocab.size() as usize;
        let beam = self.config.beam.max(k);
        let constraint = Constraint::Tree(&self.token_trie);
        decode_items(
            &self.model,
            memory,
            pad,
            vocab,
            constraint,
            beam,
            k,
            &self.index,
            &self.vocab.layout,
        )
    }
}

fn vocabulary(index: &ItemIndex, config: &P5Config) -> WordVocabulary {
    let templates: Vec<&str> = SEEN.iter().chain(UNSEEN).copied().collect();
    WordVocabulary::new(index, &templates, config.user_tokens as u32)
}

impl<B: Backend> Recommender for P5<B> {
    fn name(&self) -> String {
        "p5".into()
    }

    fn n_items(&self) -> usize {
        self.index.n_items()
    }

    fn recommend(&self, histories: &[&[ItemId]], k: usize) -> Vec<Vec<ItemId>> {
        in_chunks(self.config.decode_batch, None, histories, |u, h| self.generate(u, h, k))
    }

    fn recommend_users(&self, users: &[UserId], histories: &[&[ItemId]], k: usize) -> Vec<Vec<ItemId>> {
        in_chunks(self.config.decode_batch, Some(users), histories, |u, h| {
            self.generate(u, h, k)
        })
    }
}

/// One template's test metrics.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TemplateRow {
    /// `seen` or `unseen`.
    pub group: String,
    /// Its number within the group (`model.eval_template`).
    pub template: usize,
    pub metrics: std::collections::BTreeMap<String, f64>,
}

/// Every template's metrics on `cases` and the means over the seen, the unseen and all of them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TemplateReport {
    pub rows: Vec<TemplateRow>,
    pub mean_seen: std::collections::BTreeMap<String, f64>,
    pub mean_unseen: std::collections::BTreeMap<String, f64>,
    pub mean_all: std::collections::BTreeMap<String, f64>,
}

/// Scores `p5` on `cases` with each seen and unseen template in turn (the trained weights are
/// shared; only the prompt changes).
pub fn evaluate_templates<B: Backend>(
    p5: &P5<B>,
    cases: &[genrec_data::EvalCase],
    eval: &EvalConfig,
    seed: u64,
) -> Result<TemplateReport, genrec_eval::EvalError> {
    let mut rows = Vec::new();
    for (unseen, group) in [(false, SEEN), (true, UNSEEN)] {
        for template in 0..group.len() {
            let variant = P5 {
                model: p5.model.clone(),
                index: p5.index.clone(),
                vocab: p5.vocab.clone(),
                config: P5Config {
                    eval_unseen: unseen,
                    eval_template: template,
                    ..p5.config.clone()
                },
                token_trie: p5.token_trie.clone(),
            };
            let e = evaluate(&variant, cases, None, eval, seed)?;
            rows.push(TemplateRow {
                group: if unseen { "unseen" } else { "seen" }.into(),
                template,
                metrics: e.metrics.into_iter().collect(),
            });
        }
    }
    let mean = |keep: &dyn Fn(&TemplateRow) -> bool| {
        let picked: Vec<&TemplateRow> = rows.iter().filter(|r| keep(r)).collect();
        let mut out = std::collections::BTreeMap::new();
        for row in &picked {
            for (k, v) in &row.metrics {
                *out.entry(k.clone()).or_insert(0.0) += v / picked.len() as f64;
            }
        }
        out
    };
    Ok(TemplateReport {
        mean_seen: mean(&|r| r.group == "seen"),
        mean_unseen: mean(&|r| r.group == "unseen"),
        mean_all: mean(&|_| true),
        rows,
    })
}

/// Trains P5 over `index` with the shared loop (a seen template drawn per example and access;
/// early stopping on validation with the evaluation template) and returns the best model.
pub fn train_p5<B: AutodiffBackend>(
    config: &P5Config,
    index: &ItemIndex,
    train: &TrainConfig,
    eval: &EvalConfig,
    split: &LeaveOneOut,
    device: &B::Device,
    run: Run,
) -> Result<Trained<P5<B::InnerBackend>>, GenerativeError> {
    config.validate(eval.ks.iter().copied().max().unwrap_or(1))?;
    train.validate(&eval.ks)?;
    if index.n_items() != split.n_items {
        return Err(GenerativeError::IndexMismatch {
            index: index.n_items(),
            dataset: split.n_items,
        });
    }
    let seed = run.seed;
    let dir = run.checkpoints.dir.map(|d| d.to_path_buf());
    let vocab = vocabulary(index, config);
    let t5_config = T5Config {
        vocab_size: vocab.size() as usize,
        ..config.t5.clone()
    };
    let t5: T5<B> = t5_config.init_seeded(seed, device);
    let examples = training_examples(split, config.positions_per_user);
    let loss = |model: &T5<B>, batch: &[usize], rng: &mut ChaCha8Rng| {
        let mut prompts = Vec::with_capacity(batch.len());
        let mut targets = Vec::with_capacity(batch.len());
        for &i in batch {
            let (history, target) = example(split, examples[i], rng);
            let recent = &history[history.len().saturating_sub(config.max_items)..];
            let template = SEEN[rng.random_range(0..SEEN.len())];
            let pieces = fill(template, examples[i].0 as UserId, recent);
            prompts.push(
                vocab
                    .encode(&pieces, index)
                    .expect("templates encode in their own vocabulary"),
            );
            targets.push(target);
        }
        let (src, words, src_pad) = prompt_tensors::<B>(&prompts, config.t5.whole_word_ids, device);
        let (dec, target, target_mask) = decoder_targets(&targets, index, &vocab.layout, device);
        let batch = TigerBatch {
            src,
            src_pad,
            src_words: Some(words),
            dec,
            target,
            target_mask,
        };
        tiger_loss(model, &batch, Some(rng))
    };
    let valid = split.valid_sample(train.valid_users, seed);
    let validate = |model: &T5<B::InnerBackend>| -> Result<f64, ValidationError> {
        let p5 = P5::new(model.clone(), index.clone(), config.clone());
        Ok(evaluate(&p5, &valid, None, eval, seed)?.metrics[&train.metric])
    };
    let task = Task {
        examples: examples.len(),
        loss: &loss,
        validate: &validate,
        model_config: config.trained_part(),
    };
    let trained = train_model(t5, task, train, device, run)?;
    let trained = trained.map(|t5| P5::new(t5, index.clone(), config.clone()));
    if let (Some(dir), true) = (dir, config.report_templates) {
        let report = evaluate_templates(&trained.model, &split.test, eval, seed)
            .map_err(|e| GenerativeError::config("model.report_templates", e.to_string()))?;
        let path = dir.join("templates.json");
        let tmp = dir.join("templates.json.tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(&report).expect("plain data"))
            .and_then(|_| std::fs::rename(&tmp, &path))
            .map_err(|e| GenerativeError::config("model.report_templates", format!("{}: {e}", path.display())))?;
    }
    Ok(trained)
}

#[cfg(test)]
mod tests {
    use super::*;
    use genrec_data::synthetic::SyntheticConfig;
    use genrec_data::SplitConfig;

    type A = burn::backend::Autodiff<burn::backend::Flex>;

    fn small() -> P5Config {
        P5Config {
            t5: T5Config {
                d_model: 16,
                d_kv: 8,
                n_heads: 2,
                d_ff: 32,
                encoder_layers: 1,
                decoder_layers: 1,
                dropout: 0.0,
                whole_word_ids: 64,
                ..T5Config::default()
            },
            max_items: 5,
            user_tokens: 16,
            beam: 10,
            ..P5Config::default()
        }
    }

    #[test]
    fn learns_over_sequential_ids_and_is_deterministic() {
        let device = Default::default();
        let data = SyntheticConfig {
            users: 120,
            items: 30,
            ..SyntheticConfig::default()
        }
        .generate();
        let split = LeaveOneOut::new(&data, &SplitConfig { max_history: 10 });
        let (sizes, codes) = genrec_tokenize::simple::sequential(&split.train, 30, 6).unwrap();
        let index = ItemIndex::new("sid", sizes, codes).unwrap();
        let train = TrainConfig {
            epochs: 4,
            batch_size: 64,
            lr: 5e-3,
            eval_every: 2,
            patience: 10,
            ..TrainConfig::default()
        };
        let eval = EvalConfig {
            ks: vec![5, 10],
            ..EvalConfig::default()
        };
        let run = || train_p5::<A>(&small(), &index, &train, &eval, &split, &device, Run::quiet(3)).unwrap();
        let trained = run();
        let (first, last) = (trained.curves[0].loss, trained.curves.last().unwrap().loss);
        assert!(last < 0.9 * first, "loss {first} → {last}");
        let ours = evaluate(&trained.model, &split.test, None, &eval, 0).unwrap();
        assert_eq!(ours.invalid.as_ref().map(|v| v.values().sum::<f64>()), Some(0.0));
        let points = |t: &Trained<P5<burn::backend::Flex>>| -> Vec<(f64, Option<f64>)> {
            t.curves.iter().map(|p| (p.loss, p.valid)).collect()
        };
        assert_eq!(points(&trained), points(&run()), "same seed, same curves");
        // The evaluation template matters: a seen one gives other lists than the unseen one.
        let histories: Vec<&[ItemId]> = split.test.iter().take(20).map(|c| c.history.as_slice()).collect();
        let users: Vec<UserId> = split.test.iter().take(20).map(|c| c.user).collect();
        let seen = P5::new(
            trained.model.model.clone(),
            index.clone(),
            P5Config {
                eval_unseen: false,
                ..small()
            },
        );
        assert_ne!(
            seen.recommend_users(&users, &histories, 10),
            trained.model.recommend_users(&users, &histories, 10)
        );
    }

    #[test]
    fn config_errors_name_the_field() {
        let bad = |c: P5Config| c.validate(10).unwrap_err().to_string();
        assert!(bad(P5Config {
            eval_template: 3,
            ..P5Config::default()
        })
        .starts_with("model.eval_template"));
        assert!(bad(P5Config {
            beam: 5,
            ..P5Config::default()
        })
        .starts_with("model.beam"));
        let few = P5Config {
            t5: T5Config {
                whole_word_ids: 8,
                ..T5Config::default()
            },
            ..P5Config::default()
        };
        assert!(bad(few).starts_with("model.t5.whole_word_ids"));
        // Five items: the longest template has 2·5 + 18 pieces, so 29 word numbers (0 = padding).
        let table = |n| P5Config {
            max_items: 5,
            t5: T5Config {
                whole_word_ids: n,
                ..T5Config::default()
            },
            ..P5Config::default()
        };
        assert!(bad(table(28)).contains("at least 29"));
        table(29).validate(10).unwrap();
    }
}
