//! Training and evaluating a graph CF model on a [`HoldOut`]: BPR triples with uniform negatives
//! drawn in Rust (rejecting the user's training items), the shared training loop of
//! `genrec-models` (Adam, seeded shuffling, NaN/inf stop, validation every `eval_every` epochs
//! with early stopping, best model restored, atomic checkpoints, `--resume`), and full-ranking
//! hold-out evaluation from cached final embeddings.

use crate::GraphError;
use burn::tensor::backend::{AutodiffBackend, Backend};
use genrec_data::{HoldOut, ItemId, UserId};
use genrec_eval::multi::{evaluate_holdout_with, HoldOutEvalConfig, HoldOutEvaluation, HoldOutSplit, MaskMode};
use genrec_train::{train_model, Run, Task, TrainConfig, Trained, ValidationError};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::graph::Graph;
use crate::model::{batch_loss, GraphCf, Settings, Triples};
use crate::rlmrec::Profiles;

/// Host-side semantic profiles: row-major `[n_users, dim]` and `[n_items, dim]`.
#[derive(Debug, Clone, PartialEq)]
pub struct HostProfiles {
    pub user: Vec<f32>,
    pub item: Vec<f32>,
    pub dim: usize,
}

impl HostProfiles {
    /// The same profile rows, shuffled among the users and, separately, among the items (seeded).
    ///
    /// A control for the alignment: the profiles keep their distribution (norms, spread, how
    /// similar they are to one another) and the run keeps everything else, but no profile
    /// describes its node any more. If an RLMRec gain survives this, it does not come from the
    /// text's content.
    pub fn permuted(&self, seed: u64) -> HostProfiles {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut shuffle = |rows: &[f32]| -> Vec<f32> {
            let mut order: Vec<usize> = (0..rows.len() / self.dim).collect();
            order.shuffle(&mut rng);
            order
                .iter()
                .flat_map(|&r| &rows[r * self.dim..(r + 1) * self.dim])
                .copied()
                .collect()
        };
        HostProfiles {
            user: shuffle(&self.user),
            item: shuffle(&self.item),
            dim: self.dim,
        }
    }
}

/// Uniform negative items for BPR: any item outside the user's training set.
pub struct NegativeSampler<'a> {
    data: &'a HoldOut,
}

impl<'a> NegativeSampler<'a> {
    /// Fails when a user has interacted with every item (there is no negative to draw).
    pub fn new(data: &'a HoldOut) -> Result<Self, GraphError> {
        if let Some(u) = data.train.iter().position(|items| items.len() >= data.n_items) {
            return Err(GraphError::Data(format!(
                "user {u} has a training interaction with all {} items: no negative item to sample",
                data.n_items
            )));
        }
        Ok(NegativeSampler { data })
    }

    /// A uniform item that `user` has not trained on (rejection sampling on the sorted row).
    pub fn sample(&self, user: UserId, rng: &mut ChaCha8Rng) -> ItemId {
        let seen = &self.data.train[user as usize];
        loop {
            let item = rng.random_range(0..self.data.n_items as ItemId);
            if seen.binary_search(&item).is_err() {
                return item;
            }
        }
    }
}

/// Every training pair, in user order: the examples an epoch shuffles.
pub fn training_pairs(data: &HoldOut) -> Vec<(UserId, ItemId)> {
    data.train
        .iter()
        .enumerate()
        .flat_map(|(u, items)| items.iter().map(move |&i| (u as UserId, i)))
        .collect()
}

/// Final embeddings on the host, scoring users against every item.
pub struct Scorer {
    n_items: usize,
    dim: usize,
    /// `[n_users, dim]`
    users: Vec<f32>,
    /// `[dim, n_items]`: transposed so scoring a user is `dim` contiguous axpy passes.
    items_t: Vec<f32>,
}

impl Scorer {
    /// The ranking embeddings of `model` (full adjacency, no dropout or noise).
    pub fn new<B: Backend>(model: &GraphCf<B>, settings: &Settings, graph: &Graph<B>) -> Result<Self, GraphError> {
        let nodes = model.embed(settings, graph);
        let [_, dim] = nodes.dims();
        let values = nodes
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .map_err(|e| GraphError::Config(format!("reading embeddings: {e:?}")))?;
        if let Some(k) = values.iter().position(|v| !v.is_finite()) {
            return Err(GraphError::Config(format!(
                "embedding of node {} is not finite",
                k / dim
            )));
        }
        let split = graph.n_users * dim;
        let n_items = graph.n_items;
        let mut items_t = vec![0f32; dim * n_items];
        for (i, row) in values[split..].chunks(dim).enumerate() {
            for (k, &v) in row.iter().enumerate() {
                items_t[k * n_items + i] = v;
            }
        }
        Ok(Scorer {
            n_items,
            dim,
            users: values[..split].to_vec(),
            items_t,
        })
    }

    /// Row-major `[users.len(), n_items]` dot-product scores.
    pub fn scores(&self, users: &[UserId]) -> Vec<f32> {
        let n = self.n_items;
        let mut out = vec![0f32; users.len() * n];
        for (row, &u) in out.chunks_mut(n).zip(users) {
            let e = &self.users[u as usize * self.dim..(u as usize + 1) * self.dim];
            for (k, &w) in e.iter().enumerate() {
                let column = &self.items_t[k * n..(k + 1) * n];
                row.iter_mut().zip(column).for_each(|(s, &c)| *s += w * c);
            }
        }
        out
    }
}

/// Full-ranking evaluation of `model` on a split of `data`.
pub fn evaluate_graph_cf<B: Backend>(
    model: &GraphCf<B>,
    settings: &Settings,
    graph: &Graph<B>,
    data: &HoldOut,
    split: HoldOutSplit,
    eval: &HoldOutEvalConfig,
) -> Result<HoldOutEvaluation, GraphError> {
    let scorer = Scorer::new(model, settings, graph)?;
    Ok(evaluate_holdout_with(data, split, eval, |users| {
        Ok(scorer.scores(users))
    })?)
}

/// The settings for scoring the validation split: `mask = "train+valid"` only applies to test
/// (it would hide the very items being scored), so validation always masks the training items.
pub fn validation_eval(eval: &HoldOutEvalConfig) -> HoldOutEvalConfig {
    HoldOutEvalConfig {
        mask: MaskMode::Train,
        ..eval.clone()
    }
}

/// Trains the model `settings` describe on `data` with early stopping on the validation split
/// (`train.metric`, e.g. `recall@20`) and returns the best model on the inference backend.
pub fn train_graph_cf<B: AutodiffBackend>(
    settings: &Settings,
    train: &TrainConfig,
    eval: &HoldOutEvalConfig,
    data: &HoldOut,
    profiles: Option<&HostProfiles>,
    device: &B::Device,
    mut run: Run,
) -> Result<Trained<GraphCf<B::InnerBackend>>, GraphError> {
    let backbone = settings.backbone;
    let seed = run.seed;
    train.validate(&eval.ks)?;
    data.validate().map_err(|e| GraphError::Data(e.to_string()))?;
    let eval = &validation_eval(eval);
    eval.validate(data.n_items, HoldOutSplit::Valid)?;
    let sampler = NegativeSampler::new(data)?;
    let pairs = training_pairs(data);
    let graph = Graph::<B>::new(data, device);
    let inner_graph = Graph::<B::InnerBackend>::new(data, device);
    // Profiles only feed the alignment head; `GraphCf::new` refuses an alignment without them.
    let profiles = match (profiles, &settings.align) {
        (Some(p), Some(_)) => Some(Profiles::<B>::new(
            p.user.clone(),
            p.item.clone(),
            p.dim,
            data.n_users,
            data.n_items,
            device,
        )?),
        _ => None,
    };
    let model = GraphCf::<B>::new(
        settings,
        data.n_users,
        data.n_items,
        profiles.as_ref().map(|p| p.dim()),
        seed,
        device,
    )?;
    (run.log)(&format!(
        "{}: {} users, {} items, {} training pairs, {} adjacency entries, output width {}",
        backbone.name(),
        data.n_users,
        data.n_items,
        pairs.len(),
        graph.nnz(),
        settings.output_dim()
    ));
    let loss = |model: &GraphCf<B>, batch: &[usize], rng: &mut ChaCha8Rng| {
        let mut users = Vec::with_capacity(batch.len());
        let mut pos = Vec::with_capacity(batch.len());
        let mut neg = Vec::with_capacity(batch.len());
        for &k in batch {
            let (u, i) = pairs[k];
            users.push(u as i64);
            pos.push(i as i64);
            neg.push(sampler.sample(u, rng) as i64);
        }
        let triples = Triples::new(users, pos, neg, device);
        batch_loss(model, settings, &graph, profiles.as_ref(), &triples, rng)
    };
    let metric = train.metric.clone();
    let validate = |model: &GraphCf<B::InnerBackend>| -> Result<f64, ValidationError> {
        let e = evaluate_graph_cf(model, settings, &inner_graph, data, HoldOutSplit::Valid, eval)?;
        Ok(e.metrics
            .get(&metric)
            .copied()
            .ok_or_else(|| format!("train.metric `{metric}` is not among the hold-out metrics (recall@K, ndcg@K)"))?)
    };
    let task = Task {
        examples: pairs.len(),
        loss: &loss,
        validate: &validate,
        model_config: serde_json::to_value(settings).expect("graph settings are plain data"),
    };
    Ok(train_model(model, task, train, device, run)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rlmrec::{AlignConfig, AlignMethod};
    use crate::{Backbone, GraphCfConfig};
    use burn::backend::{Autodiff, Flex};
    use genrec_data::synthetic::SyntheticConfig;
    use genrec_data::HoldOutConfig;

    type A = Autodiff<Flex>;

    #[test]
    fn permuted_profiles_move_whole_rows_within_users_and_within_items() {
        // Row r of users is [r, r + .5], of items [-r, -r - .5]: every row is recognisable.
        let (n_users, n_items) = (40, 30);
        let row = |r: usize, sign: f32| [sign * r as f32, sign * (r as f32 + 0.5)];
        let profiles = HostProfiles {
            user: (0..n_users).flat_map(|r| row(r, 1.0)).collect(),
            item: (0..n_items).flat_map(|r| row(r, -1.0)).collect(),
            dim: 2,
        };
        let permuted = profiles.permuted(7);
        assert_eq!(permuted, profiles.permuted(7), "same seed, same permutation");
        assert_ne!(permuted, profiles.permuted(8), "another seed, another permutation");
        for (rows, n, sign) in [(&permuted.user, n_users, 1.0), (&permuted.item, n_items, -1.0)] {
            assert_eq!(rows.len(), n * 2);
            let mut origins: Vec<usize> = rows
                .chunks(2)
                .map(|r| {
                    let origin = (r[0] * sign) as usize;
                    assert_eq!(r, &row(origin, sign)[..], "a row moved whole");
                    origin
                })
                .collect();
            let moved = origins.iter().enumerate().filter(|(i, &o)| *i != o).count();
            assert!(moved > n / 2, "most rows leave their node ({moved} of {n} moved)");
            origins.sort_unstable();
            assert_eq!(origins, (0..n).collect::<Vec<_>>(), "each row exactly once");
        }
    }

    fn data() -> HoldOut {
        let seqs = SyntheticConfig {
            users: 300,
            items: 120,
            topics: 6,
            stay: 0.9,
            ..SyntheticConfig::default()
        }
        .generate();
        HoldOut::from_dataset(&seqs, &HoldOutConfig::default()).unwrap()
    }

    fn train_config(epochs: usize) -> TrainConfig {
        TrainConfig {
            epochs,
            batch_size: 512,
            lr: 1e-2,
            grad_clip: 0.0,
            eval_every: 5,
            patience: 3,
            metric: "recall@20".into(),
            ..TrainConfig::default()
        }
    }

    fn eval() -> HoldOutEvalConfig {
        HoldOutEvalConfig {
            ks: vec![10, 20],
            ..HoldOutEvalConfig::default()
        }
    }

    fn run(
        backbone: Backbone,
        config: &GraphCfConfig,
        epochs: usize,
        data: &HoldOut,
        profiles: Option<&HostProfiles>,
    ) -> Trained<GraphCf<Flex>> {
        let settings = config.resolve(backbone).unwrap();
        train_graph_cf::<A>(
            &settings,
            &train_config(epochs),
            &eval(),
            data,
            profiles,
            &Default::default(),
            Run::quiet(7),
        )
        .unwrap()
    }

    /// Recall@20 on test of ranking every user's list by training popularity.
    fn popularity(data: &HoldOut) -> f64 {
        let counts: Vec<f32> = data.train_item_counts().iter().map(|&c| c as f32).collect();
        let e = evaluate_holdout_with(data, HoldOutSplit::Test, &eval(), |users| {
            Ok(users.iter().flat_map(|_| counts.iter().copied()).collect())
        })
        .unwrap();
        e.metrics["recall@20"]
    }

    #[test]
    fn lightgcn_learns_the_topics_and_is_deterministic() {
        let data = data();
        let config = GraphCfConfig::default();
        let a = run(Backbone::LightGcn, &config, 30, &data, None);
        let b = run(Backbone::LightGcn, &config, 30, &data, None);
        let losses =
            |t: &Trained<GraphCf<Flex>>| t.curves.iter().map(|p| (p.epoch, p.loss, p.valid)).collect::<Vec<_>>();
        assert_eq!(losses(&a), losses(&b), "same seed, same backend, same curves");
        let settings = config.resolve(Backbone::LightGcn).unwrap();
        let graph = Graph::<Flex>::new(&data, &Default::default());
        let test = evaluate_graph_cf(&a.model, &settings, &graph, &data, HoldOutSplit::Test, &eval()).unwrap();
        let pop = popularity(&data);
        let lgcn = test.metrics["recall@20"];
        assert!(lgcn > pop * 1.3, "lightgcn recall@20 {lgcn} vs popularity {pop}");
    }

    #[test]
    fn every_backbone_and_alignment_trains() {
        let data = data();
        // Profiles that carry the co-occurrence structure: an item's vector is a fixed random
        // projection of its training users; a user's is the mean of its items' vectors.
        let dim = 24;
        let mut item = vec![0f32; data.n_items * dim];
        for (u, items) in data.train.iter().enumerate() {
            for &i in items {
                for k in 0..dim {
                    item[i as usize * dim + k] += ((u * 31 + k * 17) % 13) as f32 - 6.0;
                }
            }
        }
        let mut user = vec![0f32; data.n_users * dim];
        for (u, items) in data.train.iter().enumerate() {
            for &i in items {
                for k in 0..dim {
                    user[u * dim + k] += item[i as usize * dim + k] / items.len() as f32;
                }
            }
        }
        let profiles = HostProfiles { user, item, dim };
        let pop = popularity(&data);
        let graph = Graph::<Flex>::new(&data, &Default::default());
        for backbone in [Backbone::Gccf, Backbone::Sgl, Backbone::SimGcl, Backbone::LightGcn] {
            for method in [None, Some(AlignMethod::Con), Some(AlignMethod::Gen)] {
                if method.is_some() && backbone == Backbone::Sgl {
                    continue; // SGL + alignment runs the same code paths as LightGCN + alignment
                }
                let config = GraphCfConfig {
                    align: method.map(|method| AlignConfig {
                        method,
                        weight: None,
                        temperature: None,
                        mask_ratio: None,
                    }),
                    ..GraphCfConfig::default()
                };
                let t = run(backbone, &config, 10, &data, method.map(|_| &profiles));
                assert!(t.curves.iter().all(|p| p.loss.is_finite()));
                assert!(
                    t.curves[9].loss < t.curves[0].loss,
                    "{backbone:?} {method:?}: {:?}",
                    t.curves
                );
                let settings = config.resolve(backbone).unwrap();
                let test = evaluate_graph_cf(&t.model, &settings, &graph, &data, HoldOutSplit::Test, &eval()).unwrap();
                let r = test.metrics["recall@20"];
                assert!(r > pop, "{backbone:?} {method:?}: recall@20 {r} vs popularity {pop}");
            }
        }
    }

    #[test]
    fn bad_input_is_a_clear_error() {
        let data = data();
        let config = GraphCfConfig {
            align: Some(AlignConfig {
                method: AlignMethod::Con,
                weight: None,
                temperature: None,
                mask_ratio: None,
            }),
            ..GraphCfConfig::default()
        };
        let short = HostProfiles {
            user: vec![0.5; (data.n_users - 1) * 4],
            item: vec![0.5; data.n_items * 4],
            dim: 4,
        };
        let go = |p: Option<&HostProfiles>| {
            let settings = config.resolve(Backbone::LightGcn).unwrap();
            train_graph_cf::<A>(
                &settings,
                &train_config(1),
                &eval(),
                &data,
                p,
                &Default::default(),
                Run::quiet(0),
            )
            .err()
            .unwrap()
            .to_string()
        };
        assert!(go(Some(&short)).contains("user profiles"), "{}", go(Some(&short)));
        assert!(go(None).contains("no profiles"));
        // A user who has every item leaves nothing to sample.
        let full = HoldOut {
            n_users: 2,
            n_items: 2,
            train: vec![vec![0, 1], vec![1]],
            valid: vec![vec![], vec![0]],
            test: vec![vec![], vec![]],
        };
        assert!(NegativeSampler::new(&full)
            .err()
            .unwrap()
            .to_string()
            .contains("user 0"));
    }

    #[test]
    fn scorer_is_the_dot_product() {
        let data = HoldOut {
            n_users: 2,
            n_items: 3,
            train: vec![vec![0, 1], vec![1, 2]],
            valid: vec![vec![2], vec![]],
            test: vec![vec![], vec![0]],
        };
        let settings = GraphCfConfig {
            dim: Some(4),
            ..GraphCfConfig::default()
        }
        .resolve(Backbone::LightGcn)
        .unwrap();
        let device = Default::default();
        let model = GraphCf::<Flex>::new(&settings, 2, 3, None, 3, &device).unwrap();
        let graph = Graph::<Flex>::new(&data, &device);
        let nodes = model.embed(&settings, &graph).into_data().to_vec::<f32>().unwrap();
        let scores = Scorer::new(&model, &settings, &graph).unwrap().scores(&[1, 0]);
        for (row, u) in [1usize, 0].iter().enumerate() {
            for i in 0..3 {
                let want: f32 = (0..4).map(|k| nodes[u * 4 + k] * nodes[(2 + i) * 4 + k]).sum();
                assert!((scores[row * 3 + i] - want).abs() < 1e-6);
            }
        }
    }
}
