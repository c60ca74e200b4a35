//! SASRec's training: (input, target) sequences of every user, the configured loss (full softmax,
//! sampled softmax with popularity negatives and log-Q correction, or BCE with one uniform
//! negative), early stopping on the validation split through genrec-train's loop.

use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use genrec_data::{ItemId, LeaveOneOut};
use genrec_eval::{evaluate, EvalConfig, Recommender};
use genrec_train::{train_model, Run, Task, TrainConfig, Trained, ValidationError};
use rand::distr::weighted::WeightedIndex;
use rand::distr::Distribution;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::sasrec::{Loss, SasRec, SasRecConfig, SeqBatch};
use crate::SeqRecError;

/// SASRec behind the [`Recommender`] trait: scores every item from the last position.
pub struct SasRecRecommender<B: Backend> {
    pub model: SasRec<B>,
}

impl<B: Backend> Recommender for SasRecRecommender<B> {
    fn name(&self) -> String {
        "sasrec".into()
    }

    fn n_items(&self) -> usize {
        self.model.n_items()
    }

    fn recommend(&self, histories: &[&[ItemId]], k: usize) -> Vec<Vec<ItemId>> {
        let scores = self.scores(histories).unwrap_or_default();
        genrec_eval::ranking::top_k_rows(&scores, self.n_items(), k)
    }

    fn scores(&self, histories: &[&[ItemId]]) -> Option<Vec<f32>> {
        Some(
            self.model
                .score(histories)
                .into_data()
                .convert::<f32>()
                .to_vec::<f32>()
                .expect("f32 scores"),
        )
    }
}

/// Popularity-proportional negative sampling (counts + 1, so every item can be drawn) with the
/// log-probabilities the sampled softmax needs for its log-Q correction.
struct NegativeSampler {
    dist: WeightedIndex<f64>,
    /// `log_q[token]`; token 0 (padding) gets 0.
    log_q: Vec<f32>,
}

impl NegativeSampler {
    fn new(counts: &[u32]) -> Self {
        let weights: Vec<f64> = counts.iter().map(|&c| c as f64 + 1.0).collect();
        let total: f64 = weights.iter().sum();
        let mut log_q = vec![0f32];
        log_q.extend(weights.iter().map(|w| (w / total).ln() as f32));
        NegativeSampler {
            dist: WeightedIndex::new(&weights).expect("positive weights"),
            log_q,
        }
    }
}

/// The configured loss on one batch of (input, target) sequences over `n_items` items.
fn batch_loss<B: AutodiffBackend>(
    model: &SasRec<B>,
    config: &SasRecConfig,
    batch: &SeqBatch<B>,
    n_items: usize,
    sampler: &NegativeSampler,
    rng: &mut ChaCha8Rng,
) -> Tensor<B, 1> {
    let device = &batch.targets.device();
    match config.loss {
        Loss::Ce => model.loss_full_softmax(batch, rng),
        Loss::Sampled => {
            let negs: Vec<i64> = (0..config.negatives)
                .map(|_| sampler.dist.sample(rng) as i64 + 1)
                .collect();
            let log_q_neg: Vec<f32> = negs.iter().map(|&t| sampler.log_q[t as usize]).collect();
            let log_q_t: Vec<f32> = batch.target_tokens.iter().map(|&t| sampler.log_q[t as usize]).collect();
            let n = log_q_t.len();
            model.loss_sampled_softmax(
                batch,
                Tensor::from_data(TensorData::new(negs, [config.negatives]), device),
                Tensor::from_data(TensorData::new(log_q_t, [n]), device),
                Tensor::from_data(TensorData::new(log_q_neg, [config.negatives]), device),
                rng,
            )
        }
        Loss::Bce => {
            // One uniform negative token per item position, never the target itself.
            let n = n_items as i64;
            let negatives: Vec<i64> = batch
                .target_tokens
                .iter()
                .map(|&target| loop {
                    let c = rng.random_range(1..=n);
                    if c != target || n == 1 {
                        break c;
                    }
                })
                .collect();
            let count = negatives.len();
            model.loss_bce(
                batch,
                Tensor::from_data(TensorData::new(negatives, [count]), device),
                rng,
            )
        }
    }
}

/// Trains SASRec with the configured loss and early stopping on the validation split
/// (`train.metric` on a seeded sample of `train.valid_users` validation users, or all).
pub fn train_sasrec<B: AutodiffBackend>(
    model_config: &SasRecConfig,
    config: &TrainConfig,
    eval: &EvalConfig,
    split: &LeaveOneOut,
    device: &B::Device,
    run: Run,
) -> Result<Trained<SasRec<B::InnerBackend>>, SeqRecError> {
    model_config.validate()?;
    config.validate(&eval.ks)?;
    model_config.check_size(split.n_items, split.max_history)?;
    let seed = run.seed;
    let model: SasRec<B> = model_config.init_seeded(split.n_items, split.max_history, seed, device);
    let data = split.shifted_pairs();
    let sampler = NegativeSampler::new(&split.train_item_counts());
    if data.is_empty() {
        return Err(SeqRecError::NoSequences);
    }
    let loss = |model: &SasRec<B>, batch: &[usize], rng: &mut ChaCha8Rng| {
        let inputs: Vec<&[ItemId]> = batch.iter().map(|&i| data[i].0.as_slice()).collect();
        let targets: Vec<&[ItemId]> = batch.iter().map(|&i| data[i].1.as_slice()).collect();
        let batch = SeqBatch::new(&inputs, &targets, split.max_history, device);
        batch_loss(model, model_config, &batch, split.n_items, &sampler, rng)
    };
    let valid = split.valid_sample(config.valid_users, seed);
    let validate = |model: &SasRec<B::InnerBackend>| -> Result<f64, ValidationError> {
        let rec = SasRecRecommender { model: model.clone() };
        Ok(evaluate(&rec, &valid, None, eval, seed)?.metrics[&config.metric])
    };
    let task = Task {
        examples: data.len(),
        loss: &loss,
        validate: &validate,
        model_config: serde_json::to_value(model_config).expect("a SASRec config is plain data"),
    };
    Ok(train_model(model, task, config, device, run)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use genrec_data::synthetic::SyntheticConfig;
    use genrec_data::SplitConfig;
    use genrec_train::Checkpoints;
    use std::path::Path;

    #[test]
    fn learns_topic_transitions_and_is_deterministic() {
        type B = burn::backend::Autodiff<burn::backend::Flex>;
        let device = Default::default();
        let data = SyntheticConfig {
            users: 400,
            items: 60,
            topics: 6,
            stay: 0.2,
            ..SyntheticConfig::default()
        }
        .generate();
        let split = LeaveOneOut::new(&data, &SplitConfig { max_history: 10 });
        let model = SasRecConfig {
            d_model: 32,
            n_layers: 1,
            n_heads: 2,
            dropout: 0.1,
            ..SasRecConfig::default()
        };
        let train = TrainConfig {
            epochs: 8,
            batch_size: 64,
            lr: 5e-3,
            eval_every: 4,
            ..TrainConfig::default()
        };
        let eval = EvalConfig {
            ks: vec![10],
            ..EvalConfig::default()
        };
        let train_with =
            |cfg: &SasRecConfig| train_sasrec::<B>(cfg, &train, &eval, &split, &device, Run::quiet(1)).unwrap();
        let run = || train_with(&model);
        let a = run();
        let b = run();
        assert_eq!(a.best_valid, b.best_valid, "same seed, same backend, same metrics");
        let rec = SasRecRecommender { model: a.model };
        let sas = evaluate(&rec, &split.test, None, &eval, 0).unwrap().metrics["ndcg@10"];
        let pop = crate::Popularity::fit(&split);
        let pop = evaluate(&pop, &split.test, None, &eval, 0).unwrap().metrics["ndcg@10"];
        // Topics change 80% of the time along a fixed cycle: the sequence model must beat popularity.
        assert!(sas > pop * 1.3, "sasrec {sas} vs pop {pop}");

        // The cheaper losses learn the same structure.
        for loss in [Loss::Sampled, Loss::Bce] {
            let cfg = SasRecConfig {
                loss,
                negatives: 20,
                ..model.clone()
            };
            let t = train_with(&cfg);
            let v = evaluate(&SasRecRecommender { model: t.model }, &split.test, None, &eval, 0)
                .unwrap()
                .metrics["ndcg@10"];
            assert!(v > pop * 1.3, "{loss:?}: {v} vs pop {pop}");
        }
    }

    #[test]
    fn resume_continues_exactly() {
        type B = burn::backend::Autodiff<burn::backend::Flex>;
        let device = Default::default();
        let data = SyntheticConfig::small().generate();
        let split = LeaveOneOut::new(&data, &SplitConfig { max_history: 8 });
        let model = SasRecConfig {
            d_model: 16,
            n_layers: 1,
            ..SasRecConfig::default()
        };
        let eval = EvalConfig {
            ks: vec![10],
            ..EvalConfig::default()
        };
        let train = |epochs| TrainConfig {
            epochs,
            batch_size: 32,
            lr: 5e-3,
            patience: 100,
            ..TrainConfig::default()
        };
        let run = |epochs, dir: &Path, resume| {
            let checkpoints = Checkpoints { dir: Some(dir), resume };
            train_sasrec::<B>(
                &model,
                &train(epochs),
                &eval,
                &split,
                &device,
                Run::new(3, checkpoints, |_| {}),
            )
            .unwrap()
        };
        let straight = tempfile::tempdir().unwrap();
        let whole = run(4, straight.path(), false);
        let parts = tempfile::tempdir().unwrap();
        run(2, parts.path(), false);
        let resumed = run(4, parts.path(), true);
        let losses = |t: &Trained<_>| t.curves.iter().map(|p| (p.epoch, p.loss, p.valid)).collect::<Vec<_>>();
        assert_eq!(losses(&whole), losses(&resumed));
        assert_eq!(whole.best_valid, resumed.best_valid);
        assert!(parts.path().join("resume/state.json").exists());
        assert!(!parts.path().join("resume.tmp").exists());
        // A resumed run that has nothing left to do returns its best model unchanged.
        let again = run(4, parts.path(), true);
        assert_eq!(again.best_valid, whole.best_valid);
        // A different model or batch size cannot continue these weights.
        let other = SasRecConfig {
            d_model: 32,
            ..model.clone()
        };
        let checkpoints = Checkpoints {
            dir: Some(parts.path()),
            resume: true,
        };
        let err = train_sasrec::<B>(
            &other,
            &train(4),
            &eval,
            &split,
            &device,
            Run::new(3, checkpoints, |_| {}),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("[model] table differs"), "{err}");
    }
}
