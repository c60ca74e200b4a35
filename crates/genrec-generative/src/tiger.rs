//! TIGER (Rajput et al., "Recommender Systems with Generative Retrieval", NeurIPS 2023): a T5
//! encoder–decoder reads the semantic-ID tokens of a user's last items and generates the next
//! item's code tuple; beam search constrained by the [`ItemIndex`] prefix trie only ever produces
//! existing items, ranked by sequence log-probability.
//!
//! - Input: the code tokens of the last `max_items` history items, oldest first (`L` tokens per
//!   item, token layout of [`TokenLayout`]); no user token (the [`Recommender`] trait sees
//!   histories, not user ids — the paper's hashed user token is not built).
//! - Target: the next item's tuple, decoder input `[BOS, c_1 … c_{L−1}]`, cross-entropy over the
//!   whole vocabulary at every level. Tuples of different lengths (CID) are padded and masked;
//!   the index is prefix-free, so decoding needs no end token.
//! - Training examples: every (prefix, next item) pair of each user's training sequence
//!   (`positions_per_user = 0`), or that many random positions per user and epoch (a budget knob
//!   for CPUs).
//! - Decoding: exact beam search, the encoder run once per user, decoder self-attention K/V
//!   cached and re-ordered with the beams, cross-attention K/V computed once per user; batched
//!   over users; deterministic. `constrained = false` searches the full code vocabulary and
//!   reports tuples that are no item as invalid ids (`n_items + j`), for the invalid@K ablation.
//!
//! Run: `genrec run experiments/tiger-ml100k.toml` (see experiments/README.md).

use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use burn::tensor::backend::AutodiffBackend;
use genrec_data::{ItemId, LeaveOneOut, UserId};
use genrec_decode::{beam_search, Constraint, StepDecoder};
use genrec_eval::{evaluate, EvalConfig, Recommender};
use genrec_tokenize::{Collisions, IndexConfig, IndexMethod, ItemIndex, TokenLayout, Trie};
use genrec_train::{train_model, Run, Task, TrainConfig, Trained, ValidationError};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::t5::{CrossCache, SelfCache, T5Config, T5};
use crate::GenerativeError;

/// The `[model]` table of a TIGER experiment (`kind = "tiger"`; the encoder–decoder in
/// `[model.t5]`). Defaults are the paper's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TigerConfig {
    /// The T5 (default TIGER's: 4 + 4 blocks, d_model 128, 6 heads × d_kv 64, d_ff 1024,
    /// dropout 0.1, ReLU); its vocabulary comes from the index's token layout.
    pub t5: T5Config,
    /// History items the encoder reads (default 20).
    pub max_items: usize,
    /// Beam width (default 20; must be ≥ the largest eval K).
    pub beam: usize,
    /// Trie-constrained decoding (default true).
    pub constrained: bool,
    /// Training examples per user and epoch: 0 = every position (default), n = n random ones.
    pub positions_per_user: usize,
    /// Users decoded together (default 256).
    pub decode_batch: usize,
    /// Hashed user tokens (the paper: 2,000; default 0 = none): user `u`'s bucket token is
    /// prepended to the encoder input, in training and in evaluation. Left out of the written
    /// config when 0, so runs from before the option still resume.
    #[serde(skip_serializing_if = "is_zero")]
    pub user_tokens: usize,
}

impl Default for TigerConfig {
    fn default() -> Self {
        TigerConfig {
            t5: T5Config::default(),
            max_items: 20,
            beam: 20,
            constrained: true,
            positions_per_user: 0,
            decode_batch: 256,
            user_tokens: 0,
        }
    }
}

impl TigerConfig {
    /// The T5 this config describes over `layout`'s vocabulary (and the user tokens after it).
    pub fn t5(&self, layout: &TokenLayout) -> T5Config {
        T5Config {
            vocab_size: layout.vocab_size() as usize + self.user_tokens,
            ..self.t5.clone()
        }
    }

    /// The token of user `user`'s hash bucket (after the code tokens), when `user_tokens > 0`.
    /// The hash is SplitMix64's finaliser, so bucket sizes do not follow the user numbering.
    pub fn user_token(&self, layout: &TokenLayout, user: UserId) -> Option<u32> {
        (self.user_tokens > 0).then(|| {
            let mut z = (user as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            layout.vocab_size() + (z % self.user_tokens as u64) as u32
        })
    }

    pub fn validate(&self, max_k: usize) -> Result<(), GenerativeError> {
        for (field, value) in [
            ("model.max_items", self.max_items),
            ("model.decode_batch", self.decode_batch),
        ] {
            if value == 0 {
                return Err(GenerativeError::config(field, "must be positive"));
            }
        }
        if self.user_tokens > 1_000_000 {
            return Err(GenerativeError::config(
                "model.user_tokens",
                format!("= {} is above 1,000,000 hash buckets", self.user_tokens),
            ));
        }
        if self.beam < max_k {
            return Err(GenerativeError::config(
                "model.beam",
                format!(
                    "= {} is below the largest eval K ({max_k}): beam search returns at most `beam` items",
                    self.beam
                ),
            ));
        }
        self.t5(&TokenLayout::new(&[1])).validate()
    }
}

/// Whether `index` can give TIGER its item IDs: trie-constrained decoding needs a conflict-free,
/// prefix-free index, so semantic codes need their collisions handled (dedup digit or Sinkhorn).
pub fn check_index_config(index: &IndexConfig) -> Result<(), GenerativeError> {
    if index.method != IndexMethod::Hybrid && index.collisions == Collisions::None {
        return Err(GenerativeError::config(
            "index.collisions",
            "= \"none\" cannot give a trie-decoded model (TIGER, LC-Rec) one tuple per item: use dedup or sinkhorn",
        ));
    }
    Ok(())
}

/// TIGER: the T5 plus the item index it generates over.
#[derive(Debug)]
pub struct Tiger<B: Backend> {
    pub model: T5<B>,
    pub index: ItemIndex,
    pub layout: TokenLayout,
    pub config: TigerConfig,
    /// The index's tuples as token sequences: the constraint of trie-constrained decoding.
    token_trie: Trie,
    /// Each level's token range: the constraint of unconstrained decoding.
    level_tokens: Vec<std::ops::Range<u32>>,
}

/// One training batch: encoder tokens and padding, decoder inputs, targets and their mask.
pub struct TigerBatch<B: Backend> {
    /// `[batch, src]` history code tokens, right-padded with PAD.
    pub src: Tensor<B, 2, Int>,
    /// `[batch, src]` true at padding.
    pub src_pad: Tensor<B, 2, Bool>,
    /// `[batch, src]` whole-word numbers of the encoder tokens (P5's prompts); `None` for TIGER.
    pub src_words: Option<Tensor<B, 2, Int>>,
    /// `[batch, levels]` `[BOS, c_1 … c_{L−1}]`.
    pub dec: Tensor<B, 2, Int>,
    /// `[batch * levels]` target tokens (PAD where the tuple is shorter).
    pub target: Tensor<B, 1, Int>,
    /// `[batch * levels]` 1 at real targets, 0 at padding.
    pub target_mask: Tensor<B, 1>,
}

/// Encoder tokens of histories: each history's last `max_items` items, oldest first, as code
/// tokens, after row `i`'s `prefix[i]` token when given (the user token), right-padded to the
/// longest. Returns (`[n, src]` tokens, `[n, src]` pad mask).
pub fn history_tokens<B: Backend>(
    histories: &[&[ItemId]],
    prefix: Option<&[u32]>,
    index: &ItemIndex,
    layout: &TokenLayout,
    max_items: usize,
    device: &B::Device,
) -> (Tensor<B, 2, Int>, Tensor<B, 2, Bool>) {
    let rows: Vec<Vec<u32>> = histories
        .iter()
        .enumerate()
        .map(|(r, h)| {
            let recent = &h[h.len().saturating_sub(max_items)..];
            let first = prefix.map(|p| p[r]);
            first
                .into_iter()
                .chain(recent.iter().flat_map(|&i| layout.tokens(index.codes(i))))
                .collect()
        })
        .collect();
    // An empty history still needs one (padding-only) column; it is attended as a real token
    // so the softmax stays defined.
    let width = rows.iter().map(Vec::len).max().unwrap_or(0).max(1);
    let mut tokens = Vec::with_capacity(rows.len() * width);
    let mut pad = Vec::with_capacity(rows.len() * width);
    for row in &rows {
        for j in 0..width {
            tokens.push(row.get(j).map_or(TokenLayout::PAD as i64, |&t| t as i64));
            pad.push(j >= row.len() && !(row.is_empty() && j == 0));
        }
    }
    let n = rows.len();
    (
        Tensor::from_data(TensorData::new(tokens, [n, width]), device),
        Tensor::from_data(TensorData::new(pad, [n, width]), device),
    )
}

impl<B: Backend> TigerBatch<B> {
    /// `prefix`: one token per row put before its history (the user tokens), or none.
    pub fn new(
        histories: &[&[ItemId]],
        prefix: Option<&[u32]>,
        targets: &[ItemId],
        index: &ItemIndex,
        layout: &TokenLayout,
        max_items: usize,
        device: &B::Device,
    ) -> Self {
        let (src, src_pad) = history_tokens(histories, prefix, index, layout, max_items, device);
        let (dec, target, target_mask) = decoder_targets(targets, index, layout, device);
        TigerBatch {
            src,
            src_pad,
            src_words: None,
            dec,
            target,
            target_mask,
        }
    }
}

/// Teacher-forcing tensors of target items: decoder inputs `[n, levels]` (`[BOS, c_1 …
/// c_{L−1}]`), targets `[n · levels]` (PAD where a tuple is shorter) and their mask.
pub(crate) fn decoder_targets<B: Backend>(
    targets: &[ItemId],
    index: &ItemIndex,
    layout: &TokenLayout,
    device: &B::Device,
) -> (Tensor<B, 2, Int>, Tensor<B, 1, Int>, Tensor<B, 1>) {
    let levels = index.levels();
    let n = targets.len();
    let mut dec = Vec::with_capacity(n * levels);
    let mut target = Vec::with_capacity(n * levels);
    let mut mask = Vec::with_capacity(n * levels);
    for &t in targets {
        let tokens = layout.tokens(index.codes(t));
        for l in 0..levels {
            dec.push(if l == 0 {
                TokenLayout::BOS
            } else {
                tokens.get(l - 1).copied().unwrap_or(TokenLayout::PAD)
            } as i64);
            target.push(tokens.get(l).copied().unwrap_or(TokenLayout::PAD) as i64);
            mask.push(if l < tokens.len() { 1.0f32 } else { 0.0 });
        }
    }
    (
        Tensor::from_data(TensorData::new(dec, [n, levels]), device),
        Tensor::from_data(TensorData::new(target, [n * levels]), device),
        Tensor::from_data(TensorData::new(mask, [n * levels]), device),
    )
}

impl<B: Backend> Tiger<B> {
    pub fn new(model: T5<B>, index: ItemIndex, config: TigerConfig) -> Self {
        let layout = TokenLayout::new(&index.codebook_sizes);
        let tuples: Vec<Vec<u32>> = (0..index.n_items())
            .map(|i| layout.tokens(index.codes(i as ItemId)))
            .collect();
        let token_trie = Trie::build(&tuples).expect("an ItemIndex is prefix-free, in tokens as in codes");
        let level_tokens = (0..index.levels())
            .map(|l| layout.token(l, 0)..layout.token(l, index.codebook_sizes[l]))
            .collect();
        Tiger {
            model,
            index,
            layout,
            config,
            token_trie,
            level_tokens,
        }
    }

    /// Mean cross-entropy of the target tokens (padding masked out).
    pub fn loss(&self, batch: &TigerBatch<B>) -> Tensor<B, 1> {
        tiger_loss(&self.model, batch, None)
    }

    /// Beam search for a batch of histories: up to `k` items each, best first. With
    /// `constrained = false`, tuples that are no item come back as ids `n_items + j`. A model
    /// trained with user tokens reads `users` (`users[i]` owns `histories[i]`); without them
    /// (`recommend`, not `recommend_users`) it sees the histories alone, an input it never saw in
    /// training: evaluation always passes the users.
    pub fn generate(&self, users: Option<&[UserId]>, histories: &[&[ItemId]], k: usize) -> Vec<Vec<ItemId>> {
        let device = self.model.devices()[0].clone();
        let prefix: Option<Vec<u32>> = users.filter(|_| self.config.user_tokens > 0).map(|users| {
            users
                .iter()
                .filter_map(|&u| self.config.user_token(&self.layout, u))
                .collect()
        });
        let (src, pad) = history_tokens(
            histories,
            prefix.as_deref(),
            &self.index,
            &self.layout,
            self.config.max_items,
            &device,
        );
        let memory = self.model.encode(src, pad.clone());
        let constraint = if self.config.constrained {
            Constraint::Tree(&self.token_trie)
        } else {
            Constraint::Ranges(&self.level_tokens)
        };
        let vocab = self.layout.vocab_size() as usize + self.config.user_tokens;
        let beam = self.config.beam.max(k);
        decode_items(
            &self.model,
            memory,
            pad,
            vocab,
            constraint,
            beam,
            k,
            &self.index,
            &self.layout,
        )
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// `generate` over chunks of `size` histories (with their users when known), the lists in order.
pub(crate) fn in_chunks(
    size: usize,
    users: Option<&[UserId]>,
    histories: &[&[ItemId]],
    generate: impl Fn(Option<&[UserId]>, &[&[ItemId]]) -> Vec<Vec<ItemId>>,
) -> Vec<Vec<ItemId>> {
    histories
        .chunks(size)
        .enumerate()
        .flat_map(|(c, chunk)| generate(users.map(|u| &u[c * size..c * size + chunk.len()]), chunk))
        .collect()
}

/// Beam search from encoder memory to item lists, best first, at most `k` each: what TIGER and
/// P5's T5 share. Code tuples that are no item (possible only under `Constraint::Ranges`) become
/// invalid ids `n_items + j`.
///
/// # Shapes
/// - `memory`: `[users, src, d_model]`; `pad`: `[users, src]`
#[allow(clippy::too_many_arguments)]
pub(crate) fn decode_items<B: Backend>(
    model: &T5<B>,
    memory: Tensor<B, 3>,
    pad: Tensor<B, 2, Bool>,
    vocab: usize,
    constraint: Constraint,
    beam: usize,
    k: usize,
    index: &ItemIndex,
    layout: &TokenLayout,
) -> Vec<Vec<ItemId>> {
    let groups = memory.dims()[0];
    let device = memory.device();
    let mut steps = T5Steps {
        model,
        cross: model.cross_cache(memory, pad),
        cache: SelfCache::new(model.decoder_layers()),
        groups,
        vocab,
        device,
    };
    let found = beam_search(&mut steps, &vec![constraint; groups], beam);
    found
        .into_iter()
        .map(|finished| {
            let mut out = Vec::with_capacity(k);
            let mut invalid = 0;
            for hyp in finished {
                if out.len() == k {
                    break;
                }
                let codes: Vec<u32> = hyp
                    .tokens
                    .iter()
                    .map(|&t| layout.code(t).expect("decoded tokens are code tokens").1)
                    .collect();
                let item = index.item(&codes).unwrap_or_else(|| {
                    invalid += 1;
                    (index.n_items() + invalid - 1) as ItemId
                });
                if !out.contains(&item) {
                    out.push(item);
                }
            }
            out
        })
        .collect()
}

/// TIGER's T5 decoder over one batch of users, for the shared beam search: the encoder ran once,
/// cross-attention keys/values are computed once per user, self-attention keys/values are cached
/// and follow the beams. Decoding starts from BOS.
struct T5Steps<'a, B: Backend> {
    model: &'a T5<B>,
    cross: CrossCache<B>,
    cache: SelfCache<B>,
    groups: usize,
    vocab: usize,
    device: B::Device,
}

impl<B: Backend> T5Steps<'_, B> {
    /// Log-probabilities after feeding `[groups, width]` tokens.
    fn next(&mut self, tokens: Vec<i64>, width: usize) -> Vec<f32> {
        let tokens = Tensor::from_data(TensorData::new(tokens, [self.groups, width]), &self.device);
        let logits = self.model.decode_step(tokens, &self.cross, &mut self.cache);
        log_softmax(logits, 2)
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .expect("f32 log-probs")
    }
}

impl<B: Backend> StepDecoder for T5Steps<'_, B> {
    fn vocab(&self) -> usize {
        self.vocab
    }

    fn start(&mut self) -> Vec<f32> {
        self.cache = SelfCache::new(self.model.decoder_layers());
        self.next(vec![TokenLayout::BOS as i64; self.groups], 1)
    }

    fn step(&mut self, parents: &[usize], tokens: &[u32], width: usize) -> Vec<f32> {
        let parents: Vec<i64> = parents.iter().map(|&p| p as i64).collect();
        self.cache.reorder(Tensor::from_data(
            TensorData::new(parents, [self.groups, width]),
            &self.device,
        ));
        self.next(tokens.iter().map(|&t| t as i64).collect(), width)
    }
}

impl<B: Backend> Recommender for Tiger<B> {
    fn name(&self) -> String {
        "tiger".into()
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

/// Training examples: (user, position) pairs, position `t` meaning "predict `train[u][t]` from
/// the items before it". With `positions_per_user = n > 0` there are `n` slots per user whose
/// positions are drawn per batch instead.
pub fn training_examples(split: &LeaveOneOut, positions_per_user: usize) -> Vec<(usize, usize)> {
    split
        .train
        .iter()
        .enumerate()
        .filter(|(_, s)| s.len() >= 2)
        .flat_map(|(u, s)| {
            let slots: Vec<(usize, usize)> = if positions_per_user == 0 {
                (1..s.len()).map(|t| (u, t)).collect()
            } else {
                (0..positions_per_user).map(|_| (u, 0)).collect()
            };
            slots
        })
        .collect()
}

/// The (history, target) of example slot `slot`; position 0 means "draw one".
pub fn example<'a>(split: &'a LeaveOneOut, slot: (usize, usize), rng: &mut ChaCha8Rng) -> (&'a [ItemId], ItemId) {
    let (u, t) = slot;
    let seq = &split.train[u];
    let t = if t == 0 { rng.random_range(1..seq.len()) } else { t };
    (&seq[..t], seq[t])
}

/// Trains TIGER over `index` with the shared loop (early stopping on the validation split) and
/// returns the best model on the inference backend.
pub fn train_tiger<B: AutodiffBackend>(
    config: &TigerConfig,
    index: &ItemIndex,
    train: &TrainConfig,
    eval: &EvalConfig,
    split: &LeaveOneOut,
    device: &B::Device,
    run: Run,
) -> Result<Trained<Tiger<B::InnerBackend>>, GenerativeError> {
    config.validate(eval.ks.iter().copied().max().unwrap_or(1))?;
    train.validate(&eval.ks)?;
    if index.n_items() != split.n_items {
        return Err(GenerativeError::IndexMismatch {
            index: index.n_items(),
            dataset: split.n_items,
        });
    }
    let seed = run.seed;
    let layout = TokenLayout::new(&index.codebook_sizes);
    let t5_config = config.t5(&layout);
    let (d, inner, ff) = (
        t5_config.d_model as f64,
        (t5_config.n_heads * t5_config.d_kv) as f64,
        t5_config.d_ff as f64,
    );
    // Embeddings and output layer, 4 attention projections per self-attention (8 in a decoder
    // block with cross-attention), two (three gated) feed-forward matrices per block.
    let ffn = if t5_config.gated_ffn { 3.0 } else { 2.0 } * d * ff;
    let params = 2.0 * t5_config.vocab_size as f64 * d
        + t5_config.encoder_layers as f64 * (4.0 * d * inner + ffn)
        + t5_config.decoder_layers as f64 * (8.0 * d * inner + ffn);
    if let Some(excess) = genrec_kernels::nn::training_memory_excess(params) {
        return Err(GenerativeError::config(
            "model.t5.d_model",
            format!(
                "= {} (d_ff {}, {} heads of {}) would {excess}",
                t5_config.d_model, t5_config.d_ff, t5_config.n_heads, t5_config.d_kv
            ),
        ));
    }
    let t5: T5<B> = t5_config.init_seeded(seed, device);
    let examples = training_examples(split, config.positions_per_user);
    let loss = |model: &T5<B>, batch: &[usize], rng: &mut ChaCha8Rng| {
        let pairs: Vec<(&[ItemId], ItemId)> = batch.iter().map(|&i| example(split, examples[i], rng)).collect();
        let histories: Vec<&[ItemId]> = pairs.iter().map(|p| p.0).collect();
        let targets: Vec<ItemId> = pairs.iter().map(|p| p.1).collect();
        let users: Option<Vec<u32>> = (config.user_tokens > 0).then(|| {
            batch
                .iter()
                .filter_map(|&i| config.user_token(&layout, examples[i].0 as UserId))
                .collect()
        });
        let batch = TigerBatch::new(
            &histories,
            users.as_deref(),
            &targets,
            index,
            &layout,
            config.max_items,
            device,
        );
        tiger_loss(model, &batch, Some(rng))
    };
    let valid = split.valid_sample(train.valid_users, seed);
    let validate = |model: &T5<B::InnerBackend>| -> Result<f64, ValidationError> {
        let tiger = Tiger::new(model.clone(), index.clone(), config.clone());
        Ok(evaluate(&tiger, &valid, None, eval, seed)?.metrics[&train.metric])
    };
    let task = Task {
        examples: examples.len(),
        loss: &loss,
        validate: &validate,
        model_config: serde_json::to_value(config).expect("a TIGER config is plain data"),
    };
    let trained = train_model(t5, task, train, device, run)?;
    Ok(trained.map(|t5| Tiger::new(t5, index.clone(), config.clone())))
}

/// Mean cross-entropy of the target tokens of `batch` (padding masked out), with dropout masks
/// from `rng` (training) or none.
pub fn tiger_loss<B: Backend>(model: &T5<B>, batch: &TigerBatch<B>, rng: Option<&mut ChaCha8Rng>) -> Tensor<B, 1> {
    let rng = &mut { rng };
    let memory = model.encode_words_with(batch.src.clone(), batch.src_words.clone(), batch.src_pad.clone(), rng);
    let logits = model.decode_with(memory, batch.src_pad.clone(), batch.dec.clone(), rng);
    let [n, levels, vocab] = logits.dims();
    let logp = log_softmax(logits.reshape([n * levels, vocab]), 1);
    let picked = logp
        .gather(1, batch.target.clone().reshape([n * levels, 1]))
        .reshape([n * levels]);
    let mask = batch.target_mask.clone();
    -(picked * mask.clone()).sum() / mask.sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use genrec_data::synthetic::SyntheticConfig;
    use genrec_data::SplitConfig;

    type B = burn::backend::Flex;
    type AB = burn::backend::Autodiff<B>;

    fn small() -> TigerConfig {
        TigerConfig {
            t5: T5Config {
                d_model: 16,
                d_kv: 8,
                n_heads: 2,
                d_ff: 32,
                encoder_layers: 1,
                decoder_layers: 2,
                dropout: 0.0,
                ..T5Config::default()
            },
            beam: 12,
            ..TigerConfig::default()
        }
    }

    /// 12 items on 2 levels of (3, 4) codes, two of them with a third (dedup) level.
    fn index() -> ItemIndex {
        let mut codes: Vec<Vec<u32>> = (0..10u32).map(|i| vec![i / 4, i % 4]).collect();
        codes.push(vec![2, 2, 0]);
        codes.push(vec![2, 2, 1]);
        ItemIndex::new("t", vec![3, 4, 2], codes).unwrap()
    }

    /// Teacher-forced log-probability of an item's whole tuple.
    fn sequence_logp(tiger: &Tiger<B>, history: &[ItemId], item: ItemId) -> f32 {
        let device = Default::default();
        let batch = TigerBatch::<B>::new(&[history], None, &[item], &tiger.index, &tiger.layout, 20, &device);
        let memory = tiger.model.encode(batch.src.clone(), batch.src_pad.clone());
        let logits = tiger.model.decode(memory, batch.src_pad, batch.dec);
        let [_, levels, vocab] = logits.dims();
        let logp = log_softmax(logits, 2).into_data().to_vec::<f32>().unwrap();
        let target = batch.target.into_data().convert::<i64>().to_vec::<i64>().unwrap();
        let n = tiger.index.codes(item).len();
        (0..n.min(levels)).map(|l| logp[l * vocab + target[l] as usize]).sum()
    }

    #[test]
    fn constrained_beam_search_is_exact_when_the_beam_holds_every_item() {
        let device = Default::default();
        let index = index();
        let config = small();
        let layout = TokenLayout::new(&index.codebook_sizes);
        let tiger = Tiger::new(config.t5(&layout).init_seeded::<B>(3, &device), index, config);
        let histories: [&[ItemId]; 3] = [&[1, 5, 7], &[11], &[]];
        let lists = tiger.generate(None, &histories, 12);
        for (h, list) in histories.iter().zip(&lists) {
            // All 12 items, each once, in the order of their teacher-forced log-probability.
            let mut sorted = list.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..12).collect::<Vec<_>>());
            let scores: Vec<f32> = list.iter().map(|&i| sequence_logp(&tiger, h, i)).collect();
            for w in scores.windows(2) {
                assert!(w[0] >= w[1] - 1e-5, "{scores:?}");
            }
        }
        // Top-3 is the head of the full list; decoding in a batch or alone gives the same lists.
        assert_eq!(tiger.generate(None, &histories[1..2], 3)[0], lists[1][..3]);
    }

    #[test]
    fn unconstrained_search_reports_invalid_tuples() {
        let device = Default::default();
        let index = index();
        let config = TigerConfig {
            constrained: false,
            ..small()
        };
        let layout = TokenLayout::new(&index.codebook_sizes);
        let tiger = Tiger::new(config.t5(&layout).init_seeded::<B>(3, &device), index, config);
        let lists = tiger.generate(None, &[&[1, 2]], 12);
        // Unconstrained 3-level tuples: items 0..10 have 2 codes, so every full-length tuple except
        // (2, 2, 0|1) is no item and comes back as an id ≥ 12.
        assert_eq!(lists[0].len(), 12);
        assert!(lists[0].iter().any(|&i| i >= 12), "{:?}", lists[0]);
        assert!(lists[0].iter().all(|&i| i < 12 + 24));
    }

    #[test]
    fn hashed_user_tokens_reach_the_encoder() {
        let device = Default::default();
        let config = TigerConfig {
            user_tokens: 8,
            ..small()
        };
        let index = index();
        let layout = TokenLayout::new(&index.codebook_sizes);
        let v = layout.vocab_size();
        assert_eq!(
            config.t5(&layout).vocab_size,
            v as usize + 8,
            "user tokens follow the code tokens"
        );
        let tokens: Vec<u32> = (0..1000).map(|u| config.user_token(&layout, u).unwrap()).collect();
        assert!(tokens.iter().all(|t| (v..v + 8).contains(t)));
        let mut seen = tokens.clone();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 8, "1,000 users fill every bucket");
        assert_eq!(config.user_token(&layout, 17), config.user_token(&layout, 17));
        assert_eq!(small().user_token(&layout, 17), None, "off by default");
        let history: &[ItemId] = &[1, 5];
        let (src, pad) = history_tokens::<B>(&[history], Some(&[tokens[3]]), &index, &layout, 20, &device);
        let src = src.into_data().convert::<i64>().to_vec::<i64>().unwrap();
        assert_eq!(src[0], tokens[3] as i64);
        assert_eq!(src.len(), 1 + 4, "the user token, then two items of two codes");
        assert!(!pad.into_data().to_vec::<bool>().unwrap()[0]);
        // The same history under two users' tokens: different encoder input, different scores.
        let tiger = Tiger::new(
            config.t5(&layout).init_seeded::<B>(3, &device),
            index.clone(),
            config.clone(),
        );
        let logits = |user: u32| {
            let batch = TigerBatch::<B>::new(&[history], Some(&[user]), &[4], &index, &layout, 20, &device);
            let memory = tiger.model.encode(batch.src.clone(), batch.src_pad.clone());
            tiger
                .model
                .decode(memory, batch.src_pad, batch.dec)
                .into_data()
                .to_vec::<f32>()
                .unwrap()
        };
        let (a, b) = (logits(tokens[0]), logits(tokens[1]));
        assert!(tokens[0] != tokens[1] && a != b);
        let lists = tiger.recommend_users(&[0, 1], &[history, history], 5);
        assert!(lists.iter().all(|l| l.len() == 5));
    }

    #[test]
    fn learns_synthetic_sequences_and_is_deterministic() {
        let device = Default::default();
        let data = SyntheticConfig {
            users: 200,
            items: 30,
            ..SyntheticConfig::default()
        }
        .generate();
        let split = LeaveOneOut::new(&data, &SplitConfig { max_history: 10 });
        let codes: Vec<Vec<u32>> = (0..30u32).map(|i| vec![i / 6, i % 6]).collect();
        let index = ItemIndex::new("grid", vec![5, 6], codes).unwrap();
        let small = small();
        let config = TigerConfig {
            t5: T5Config {
                dropout: 0.1,
                ..small.t5.clone()
            },
            beam: 10,
            ..small
        };
        let train = TrainConfig {
            epochs: 6,
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
        let run = || train_tiger::<AB>(&config, &index, &train, &eval, &split, &device, Run::quiet(7)).unwrap();
        let trained = run();
        let first = trained.curves[0].loss;
        let last = trained.curves.last().unwrap().loss;
        assert!(last < 0.8 * first, "loss {first} → {last}");
        let pop = genrec_seqrec::Popularity::fit(&split);
        let ours = evaluate(&trained.model, &split.test, None, &eval, 0).unwrap();
        let base = evaluate(&pop, &split.test, None, &eval, 0).unwrap();
        assert!(
            ours.metrics["ndcg@10"] > base.metrics["ndcg@10"],
            "tiger {:?} vs pop {:?}",
            ours.metrics,
            base.metrics
        );
        assert_eq!(ours.invalid.as_ref().map(|v| v.values().sum::<f64>()), Some(0.0));
        let again = run();
        let points =
            |t: &Trained<Tiger<B>>| -> Vec<(f64, Option<f64>)> { t.curves.iter().map(|p| (p.loss, p.valid)).collect() };
        assert_eq!(points(&trained), points(&again));
    }

    #[test]
    fn config_checks_name_the_field() {
        assert!(TigerConfig {
            beam: 5,
            ..TigerConfig::default()
        }
        .validate(10)
        .unwrap_err()
        .to_string()
        .contains("model.beam"));
        assert!(TigerConfig {
            t5: T5Config {
                n_heads: 0,
                ..T5Config::default()
            },
            ..TigerConfig::default()
        }
        .validate(10)
        .unwrap_err()
        .to_string()
        .contains("model.t5.n_heads"));
        // The T5 sits in its own table; its fields are not TIGER's.
        let err = serde_json::from_str::<TigerConfig>(r#"{"d_model": 64}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `d_model`"), "{err}");
        let nested: TigerConfig = serde_json::from_str(r#"{"t5": {"d_model": 64}}"#).unwrap();
        assert_eq!(nested.t5.d_model, 64);
        assert_eq!(nested.t5.n_heads, 6, "the other fields keep TIGER's defaults");
    }
}
