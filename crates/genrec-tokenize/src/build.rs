//! [`build_index`]: every index method behind one [`IndexConfig`] — the `[index]` table of an
//! experiment and the options of `genrec tokenize` — from a dataset (and item vectors for the
//! semantic methods) to a conflict-free [`ItemIndex`] with its report.
//!
//! Methods: `rqvae` (TIGER's RQ-VAE), `rqkmeans` (residual k-means), `opq` (RPG's product
//! quantisation with a learned rotation: unordered digits), `cid` (collaborative,
//! spectral clustering of co-occurrence), `sid` (sequential), `random`, `hybrid` (a base method
//! plus one item token). The semantic methods' collisions are resolved by TIGER's dedup digit or
//! LC-Rec's Sinkhorn mapping (or left, `none`, to measure them).

use std::str::FromStr;
use std::time::Instant;

use burn::tensor::backend::AutodiffBackend;
use genrec_data::{LeaveOneOut, SequenceDataset, SplitConfig};
use serde::{Deserialize, Serialize};

use crate::collision::{dedup_digit, uniform_semantic_mapping, MappingReport, SinkhornConfig};
use crate::opq::{fit_opq, OpqConfig, OpqReport};
use crate::rq::{rq_kmeans, LevelReport, ResidualCodebooks};
use crate::rqvae::{fit_rqvae, EpochReport, RqVaeConfig, RqVaeTrainConfig};
use crate::{cid, simple, IndexStats, ItemIndex, TokenizeError};

/// How item codes are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IndexMethod {
    /// TIGER's RQ-VAE on item vectors.
    Rqvae,
    /// Residual k-means on item vectors.
    Rqkmeans,
    /// Collaborative indexing: recursive spectral clustering of co-occurrence.
    Cid,
    /// Sequential: items numbered by first appearance in training.
    #[serde(alias = "sequential")]
    Sid,
    Random,
    /// `hybrid_base` plus one independent token per item.
    Hybrid,
    /// RPG: PCA (optional) + OPQ + PQ on item vectors, `pq_subspaces` unordered digits per item.
    Opq,
}

impl IndexMethod {
    pub fn name(self) -> &'static str {
        match self {
            IndexMethod::Rqvae => "rqvae",
            IndexMethod::Rqkmeans => "rqkmeans",
            IndexMethod::Cid => "cid",
            IndexMethod::Sid => "sid",
            IndexMethod::Random => "random",
            IndexMethod::Hybrid => "hybrid",
            IndexMethod::Opq => "opq",
        }
    }

    /// Whether the method quantises item vectors.
    pub fn is_semantic(self) -> bool {
        matches!(self, IndexMethod::Rqvae | IndexMethod::Rqkmeans | IndexMethod::Opq)
    }
}

impl FromStr for IndexMethod {
    type Err = TokenizeError;

    fn from_str(s: &str) -> Result<Self, TokenizeError> {
        Ok(match s {
            "rqvae" => IndexMethod::Rqvae,
            "rqkmeans" => IndexMethod::Rqkmeans,
            "cid" => IndexMethod::Cid,
            "sid" | "sequential" => IndexMethod::Sid,
            "random" => IndexMethod::Random,
            "hybrid" => IndexMethod::Hybrid,
            "opq" => IndexMethod::Opq,
            _ => {
                return Err(TokenizeError::config(
                    "index.method",
                    format!("`{s}`: expected rqvae, rqkmeans, opq, cid, sid, random or hybrid"),
                ))
            }
        })
    }
}

/// How colliding semantic codes are made unique.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Collisions {
    /// TIGER: one extra digit numbering the items that share a tuple.
    Dedup,
    /// LC-Rec: Sinkhorn re-assignment of the last level (uniform semantic mapping).
    Sinkhorn,
    /// Leave them (to measure the collision rate; no index is made when codes collide).
    None,
}

impl Collisions {
    pub fn name(self) -> &'static str {
        match self {
            Collisions::Dedup => "dedup",
            Collisions::Sinkhorn => "sinkhorn",
            Collisions::None => "none",
        }
    }
}

impl FromStr for Collisions {
    type Err = TokenizeError;

    fn from_str(s: &str) -> Result<Self, TokenizeError> {
        Ok(match s {
            "dedup" => Collisions::Dedup,
            "sinkhorn" => Collisions::Sinkhorn,
            "none" => Collisions::None,
            _ => {
                return Err(TokenizeError::config(
                    "index.collisions",
                    format!("`{s}`: expected dedup, sinkhorn or none"),
                ))
            }
        })
    }
}

/// How to index items: `genrec tokenize`'s options and the `[index]` table of an experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IndexConfig {
    /// rqvae (default), rqkmeans, cid, sid (sequential), random or hybrid.
    pub method: IndexMethod,
    /// hybrid: the index the item token is appended to (default cid).
    pub hybrid_base: IndexMethod,
    /// Item vectors for rqvae / rqkmeans in an experiment: `text` (MiniLM, default), `attributes`
    /// or `file:PATH` (`genrec tokenize` takes `--features FILE` instead). Built by genrec-text.
    pub features: String,
    /// rqvae / rqkmeans: levels (default 3) and codes per level (default 256).
    pub levels: usize,
    pub codes: usize,
    /// rqvae / rqkmeans: dedup (default), sinkhorn or none.
    pub collisions: Collisions,
    /// sid / random: digit base (default 10).
    pub base: u32,
    /// cid: clusters per split (default 20) and the largest cluster left unsplit (default 20).
    pub n_clusters: usize,
    pub max_leaf: usize,
    /// rqvae: training epochs (default 200).
    pub epochs: usize,
    /// opq: sub-spaces = digits per item (default 32; must divide the PCA or vector dimension).
    /// `codes` is the codebook size of each.
    pub pq_subspaces: usize,
    /// opq: PCA to this many dimensions first (default 0 = no PCA) and whether to whiten.
    pub pca_dim: usize,
    pub whiten: bool,
    /// opq: rotation iterations (default 20; 0 = plain PQ).
    pub opq_iterations: usize,
}

impl Default for IndexConfig {
    fn default() -> Self {
        IndexConfig {
            method: IndexMethod::Rqvae,
            hybrid_base: IndexMethod::Cid,
            features: "text".into(),
            levels: 3,
            codes: 256,
            collisions: Collisions::Dedup,
            base: 10,
            n_clusters: 20,
            max_leaf: 20,
            epochs: 200,
            pq_subspaces: 32,
            pca_dim: 0,
            whiten: false,
            opq_iterations: 20,
        }
    }
}

impl IndexConfig {
    /// The method that makes the codes (`hybrid_base` for hybrid).
    pub fn base_method(&self) -> IndexMethod {
        if self.method == IndexMethod::Hybrid {
            self.hybrid_base
        } else {
            self.method
        }
    }

    /// Whether the method reads item vectors.
    pub fn needs_features(&self) -> bool {
        self.base_method().is_semantic()
    }

    /// The fields that can be checked without data.
    pub fn validate(&self) -> Result<(), TokenizeError> {
        // Bounds before any allocation follows from them: codebooks of levels × codes rows.
        for (field, value, most) in [
            ("index.levels", self.levels, 64),
            ("index.codes", self.codes, 1 << 20),
            ("index.pq_subspaces", self.pq_subspaces, 4096),
        ] {
            if value > most {
                return Err(TokenizeError::config(field, format!("= {value} is above {most}")));
            }
        }
        if self.method == IndexMethod::Hybrid && self.hybrid_base == IndexMethod::Hybrid {
            return Err(TokenizeError::config(
                "index.hybrid_base",
                "= hybrid: pick rqvae, rqkmeans, cid, sid or random",
            ));
        }
        if self.base_method() == IndexMethod::Opq {
            // The dimension checks need the vectors: OpqConfig::validate at fit time.
            if self.pq_subspaces == 0 || self.codes < 2 {
                return Err(TokenizeError::config(
                    "index.pq_subspaces",
                    format!(
                        "= {} must be ≥ 1 and index.codes = {} ≥ 2",
                        self.pq_subspaces, self.codes
                    ),
                ));
            }
        } else if self.needs_features() && (self.levels == 0 || self.codes < 2) {
            return Err(TokenizeError::config(
                "index.levels",
                format!("= {} must be ≥ 1 and index.codes = {} ≥ 2", self.levels, self.codes),
            ));
        }
        Ok(())
    }
}

/// Item vectors, row `i` = item `i`.
#[derive(Debug, Clone, Copy)]
pub struct ItemVectors<'a> {
    /// Row-major, `rows × dim`.
    pub data: &'a [f32],
    pub dim: usize,
}

/// What [`build_index`] reports (`stats.json` / `index_stats.json`).
#[derive(Debug, Clone, Serialize)]
pub struct IndexReport {
    pub dataset: String,
    pub method: String,
    pub collisions: String,
    pub fit_seconds: f64,
    /// Before collision handling.
    pub before: IndexStats,
    /// The index made (absent with `collisions = none` when codes collide).
    pub after: Option<IndexStats>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub levels: Vec<LevelReport>,
    /// rqvae: mean squared reconstruction error (summed over input dims) of the quantised latents.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reconstruction: Option<f64>,
    /// rqvae: per-epoch loss, usage and re-seeded codes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub epochs: Vec<EpochReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sinkhorn: Option<MappingReport>,
    /// opq: PCA, the rotation's error curve, quantisation error, separated items.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opq: Option<OpqReport>,
}

/// An index, its report and its final codes.
pub struct BuiltIndex {
    /// `None` when the codes collide and `collisions = none`.
    pub index: Option<ItemIndex>,
    pub report: IndexReport,
    /// Each item's final code tuple (also when they collide).
    pub codes: Vec<Vec<u32>>,
}

/// Codes of a base method, before collision handling.
struct Base {
    sizes: Vec<u32>,
    codes: Vec<Vec<u32>>,
    /// Semantic methods: the quantised space (rows and codebooks), for Sinkhorn costs.
    space: Option<(Vec<f32>, ResidualCodebooks)>,
    levels: Vec<LevelReport>,
    reconstruction: Option<f64>,
    epochs: Vec<EpochReport>,
    opq: Option<OpqReport>,
}

impl Base {
    fn plain(sizes: Vec<u32>, codes: Vec<Vec<u32>>) -> Base {
        Base {
            sizes,
            codes,
            space: None,
            levels: Vec::new(),
            reconstruction: None,
            epochs: Vec::new(),
            opq: None,
        }
    }
}

fn base_codes<B: AutodiffBackend>(
    o: &IndexConfig,
    method: IndexMethod,
    data: &SequenceDataset,
    features: Option<ItemVectors>,
    device: &B::Device,
    seed: u64,
) -> Result<Base, TokenizeError> {
    let n = data.n_items();
    // The methods' messages gain the method's name.
    let fit = |e: TokenizeError| TokenizeError::Fit {
        method: method.name(),
        message: e.to_string(),
    };
    let features = || -> Result<ItemVectors, TokenizeError> {
        let m = features.ok_or(TokenizeError::MissingFeatures { method: method.name() })?;
        let rows = m.data.len() / m.dim.max(1);
        if m.dim == 0 || rows != n || m.data.len() != rows * m.dim {
            return Err(TokenizeError::FeatureRows { rows, items: n });
        }
        Ok(m)
    };
    let train_split = || LeaveOneOut::new(data, &SplitConfig::default()).train;
    Ok(match method {
        IndexMethod::Rqkmeans => {
            let m = features()?;
            let sizes = vec![o.codes; o.levels];
            let result = rq_kmeans(m.data, m.dim, &sizes, 100, seed).map_err(fit)?;
            Base {
                sizes: sizes.iter().map(|&k| k as u32).collect(),
                codes: result.codes,
                space: Some((m.data.to_vec(), result.codebooks)),
                levels: result.levels,
                reconstruction: None,
                epochs: Vec::new(),
                opq: None,
            }
        }
        IndexMethod::Opq => {
            let m = features()?;
            // Fitted on the items of training sequences only (RPG); every item is encoded.
            let mut in_train = vec![false; n];
            for s in train_split() {
                s.iter().for_each(|&i| in_train[i as usize] = true);
            }
            let rows: Vec<usize> = (0..n).filter(|&i| in_train[i]).collect();
            let config = OpqConfig {
                subspaces: o.pq_subspaces,
                codes: o.codes,
                pca_dim: o.pca_dim,
                whiten: o.whiten,
                iterations: o.opq_iterations,
                ..OpqConfig::default()
            };
            let fit = fit_opq(m.data, m.dim, &rows, &config, seed).map_err(fit)?;
            Base {
                sizes: vec![o.codes as u32; o.pq_subspaces],
                codes: fit.codes,
                space: None,
                levels: fit.subspaces,
                reconstruction: None,
                epochs: Vec::new(),
                opq: Some(fit.report),
            }
        }
        IndexMethod::Rqvae => {
            let m = features()?;
            let model = RqVaeConfig::new().with_levels(o.levels).with_codes(o.codes);
            let train = RqVaeTrainConfig::new().with_epochs(o.epochs).with_seed(seed);
            let result = fit_rqvae::<B>(m.data, m.dim, &model, &train, device, true).map_err(fit)?;
            Base {
                sizes: vec![o.codes as u32; o.levels],
                codes: result.codes,
                space: Some((result.latents, result.codebooks)),
                levels: result.levels,
                reconstruction: Some(result.reconstruction),
                epochs: result.epochs,
                opq: None,
            }
        }
        IndexMethod::Cid => {
            let config = cid::CidConfig {
                n_clusters: o.n_clusters,
                max_leaf: o.max_leaf,
                seed,
                ..cid::CidConfig::default()
            };
            let codes = cid::cid_codes(&train_split(), n, &config).map_err(fit)?;
            let depth = codes.iter().map(Vec::len).max().unwrap_or(1);
            let width = o.n_clusters.max(o.max_leaf) as u32;
            Base::plain(vec![width; depth], codes)
        }
        IndexMethod::Sid => {
            let (sizes, codes) = simple::sequential(&train_split(), n, o.base).map_err(fit)?;
            Base::plain(sizes, codes)
        }
        IndexMethod::Random => {
            let (sizes, codes) = simple::random(n, o.base, seed).map_err(fit)?;
            Base::plain(sizes, codes)
        }
        IndexMethod::Hybrid => {
            return Err(TokenizeError::config(
                "index.hybrid_base",
                "= hybrid: pick rqvae, rqkmeans, cid, sid or random",
            ))
        }
    })
}

/// Indexes `data`'s items as `o` says (item vectors from `features` for the semantic methods;
/// RQ-VAE trains on `device`). `dataset` names the data in the report.
pub fn build_index<B: AutodiffBackend>(
    o: &IndexConfig,
    dataset: &str,
    data: &SequenceDataset,
    features: Option<ItemVectors>,
    device: &B::Device,
    seed: u64,
) -> Result<BuiltIndex, TokenizeError> {
    o.validate()?;
    let started = Instant::now();
    let mut sinkhorn = None;
    let hybrid = o.method == IndexMethod::Hybrid;
    let base_method = o.base_method();
    let Base {
        mut sizes,
        mut codes,
        space,
        levels,
        reconstruction,
        epochs,
        opq,
    } = base_codes::<B>(o, base_method, data, features, device, seed)?;
    let before = ItemIndex::stats_of(&sizes, &codes);
    let method =
        if hybrid {
            (sizes, codes) = simple::hybrid(&sizes, &codes).map_err(|e| TokenizeError::Fit {
                method: "hybrid",
                message: e.to_string(),
            })?;
            format!("hybrid({})", base_method.name())
        } else if let Some((rows, books)) = &space {
            match o.collisions {
                Collisions::Dedup => {
                    let (deduped, extra) = dedup_digit(&codes);
                    codes = deduped;
                    sizes.push(extra);
                }
                Collisions::Sinkhorn => {
                    let last = o.levels - 1;
                    let dim = books.dim;
                    let residuals: Vec<Vec<f32>> = (0..codes.len())
                        .map(|i| books.residual(&rows[i * dim..(i + 1) * dim], &codes[i], last))
                        .collect();
                    let centroids = &books.levels[last];
                    let cost = |i: usize, c: u32| -> f32 {
                        let centroid = &centroids[c as usize * dim..(c as usize + 1) * dim];
                        residuals[i].iter().zip(centroid).map(|(a, b)| (a - b) * (a - b)).sum()
                    };
                    let report = uniform_semantic_mapping(&mut codes, o.codes, &cost, &SinkhornConfig::default())
                        .map_err(|e| TokenizeError::Fit {
                            method: "sinkhorn",
                            message: e.to_string(),
                        })?;
                    sinkhorn = Some(report);
                }
                Collisions::None => {}
            }
            format!("{}+{}", base_method.name(), o.collisions.name())
        } else if base_method == IndexMethod::Opq {
            format!("opq{}x{}", o.pq_subspaces, o.codes)
        } else {
            base_method.name().to_string()
        };
    let fit_seconds = started.elapsed().as_secs_f64();
    let collides = ItemIndex::stats_of(&sizes, &codes).collision_rate > 0.0;
    let index = if collides {
        None
    } else {
        let index = ItemIndex::new(method.clone(), sizes, codes.clone())?;
        Some(index.with_unordered(base_method == IndexMethod::Opq && !hybrid))
    };
    let report = IndexReport {
        dataset: dataset.to_string(),
        method,
        collisions: if base_method == IndexMethod::Opq && !hybrid {
            "separated (nearest free tuple)".into()
        } else if hybrid || space.is_none() {
            "none needed".into()
        } else {
            o.collisions.name().into()
        },
        fit_seconds,
        before,
        after: index.as_ref().map(ItemIndex::stats),
        levels,
        reconstruction,
        epochs,
        sinkhorn,
        opq,
    };
    Ok(BuiltIndex { index, report, codes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use genrec_data::synthetic::SyntheticConfig;

    type B = burn::backend::Autodiff<burn::backend::Flex>;

    #[test]
    fn every_method_builds_a_conflict_free_index_or_says_why() {
        let data = SyntheticConfig::small().generate();
        let n = data.n_items();
        let dim = 8;
        let vectors: Vec<f32> = (0..n * dim).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect();
        let features = ItemVectors { data: &vectors, dim };
        let device = Default::default();
        let build = |o: &IndexConfig, f: Option<ItemVectors>| build_index::<B>(o, "synthetic", &data, f, &device, 1);
        for method in [
            IndexMethod::Rqkmeans,
            IndexMethod::Cid,
            IndexMethod::Sid,
            IndexMethod::Random,
            IndexMethod::Hybrid,
        ] {
            let o = IndexConfig {
                method,
                levels: 2,
                codes: 4,
                base: 4,
                ..IndexConfig::default()
            };
            let built = build(&o, Some(features)).unwrap();
            let index = built.index.expect("conflict-free");
            assert_eq!(index.n_items(), n, "{method:?}");
            assert_eq!(built.report.after.as_ref().unwrap().collision_rate, 0.0);
        }
        // OPQ: unordered digits, one per sub-space, separated where they collide.
        let opq = IndexConfig {
            method: IndexMethod::Opq,
            pq_subspaces: 2,
            codes: 16,
            opq_iterations: 3,
            ..IndexConfig::default()
        };
        let built = build(&opq, Some(features)).unwrap();
        let index = built.index.expect("OPQ separates collisions itself");
        assert!(index.unordered && index.codes.iter().all(|c| c.len() == 2));
        assert_eq!(built.report.method, "opq2x16");
        assert_eq!(built.report.levels.len(), 2, "a report per sub-space");
        assert!(built.report.opq.as_ref().unwrap().fit_items <= n);
        let odd = IndexConfig {
            pq_subspaces: 3,
            ..opq.clone()
        };
        let err = build(&odd, Some(features)).err().unwrap().to_string();
        assert!(err.contains("index.pq_subspaces = 3 does not divide"), "{err}");
        // 4 × 4 codes for more items than that must collide; dedup makes them unique.
        let semantic = IndexConfig {
            method: IndexMethod::Rqkmeans,
            levels: 2,
            codes: 4,
            ..IndexConfig::default()
        };
        let built = build(&semantic, Some(features)).unwrap();
        assert!(built.report.before.collision_rate > 0.0);
        assert_eq!(built.report.method, "rqkmeans+dedup");
        let none = IndexConfig {
            collisions: Collisions::None,
            ..semantic.clone()
        };
        assert!(build(&none, Some(features)).unwrap().index.is_none());
        // Named errors, before any fitting.
        let err = build(&semantic, None).err().unwrap().to_string();
        assert!(err.contains("needs --features"), "{err}");
        let short = ItemVectors {
            data: &vectors[..dim * 3],
            dim,
        };
        assert!(build(&semantic, Some(short))
            .err()
            .unwrap()
            .to_string()
            .contains("3 rows"));
        let looped = IndexConfig {
            method: IndexMethod::Hybrid,
            hybrid_base: IndexMethod::Hybrid,
            ..IndexConfig::default()
        };
        assert!(build(&looped, None)
            .err()
            .unwrap()
            .to_string()
            .starts_with("index.hybrid_base"));
        assert!("bogus"
            .parse::<IndexMethod>()
            .unwrap_err()
            .to_string()
            .contains("expected rqvae"));
        assert_eq!("sequential".parse::<IndexMethod>().unwrap(), IndexMethod::Sid);
        let deep = IndexConfig {
            levels: 1 << 40,
            ..IndexConfig::default()
        };
        assert!(build(&deep, None)
            .err()
            .unwrap()
            .to_string()
            .starts_with("index.levels = 1099511627776 is above 64"));
    }
}
