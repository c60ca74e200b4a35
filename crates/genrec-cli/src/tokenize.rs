//! `genrec tokenize`: build an item index (code tuples) for a dataset and write `index.json`,
//! `stats.json` (collision rate before/after, per-level usage and entropy, mean code length, fit
//! time) and one SVG per level of code usage (codes sorted by how many items use them).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use burn::tensor::backend::AutodiffBackend;
use genrec_data::{DatasetSpec, LeaveOneOut, SequenceDataset, SplitConfig};
use genrec_text::Matrix;
use genrec_tokenize::collision::{dedup_digit, uniform_semantic_mapping, MappingReport, SinkhornConfig};
use genrec_tokenize::rq::{rq_kmeans, LevelReport, ResidualCodebooks};
use genrec_tokenize::rqvae::{fit_rqvae, EpochReport, RqVaeConfig, RqVaeFit, RqVaeTrainConfig};
use genrec_tokenize::{cid, simple, IndexStats, ItemIndex};
use serde::{Deserialize, Serialize};

use crate::backend::{dispatch, BackendJob, DeviceKind};

/// How to index items: `genrec tokenize`'s options and the `[index]` table of an experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexConfig {
    /// rqvae (default), rqkmeans, cid, sid (sequential), random or hybrid.
    #[serde(default = "rqvae")]
    pub method: String,
    /// hybrid: the index the item token is appended to (default cid).
    #[serde(default = "cid")]
    pub hybrid_base: String,
    /// Item vectors for rqvae / rqkmeans in an experiment: `text` (MiniLM, default), `attributes`
    /// or `file:PATH` (`genrec tokenize` takes `--features FILE` instead).
    #[serde(default = "text")]
    pub features: String,
    /// rqvae / rqkmeans: levels (default 3) and codes per level (default 256).
    #[serde(default = "three")]
    pub levels: usize,
    #[serde(default = "k256")]
    pub codes: usize,
    /// rqvae / rqkmeans: dedup (default), sinkhorn or none.
    #[serde(default = "dedup")]
    pub collisions: String,
    /// sid / random: digit base (default 10).
    #[serde(default = "ten")]
    pub base: u32,
    /// cid: clusters per split (default 20) and the largest cluster left unsplit (default 20).
    #[serde(default = "twenty")]
    pub n_clusters: usize,
    #[serde(default = "twenty")]
    pub max_leaf: usize,
    /// rqvae: training epochs (default 200).
    #[serde(default = "two_hundred")]
    pub epochs: usize,
}

fn rqvae() -> String {
    "rqvae".into()
}
fn cid() -> String {
    "cid".into()
}
fn text() -> String {
    "text".into()
}
fn dedup() -> String {
    "dedup".into()
}
fn three() -> usize {
    3
}
fn k256() -> usize {
    256
}
fn ten() -> u32 {
    10
}
fn twenty() -> usize {
    20
}
fn two_hundred() -> usize {
    200
}

impl Default for IndexConfig {
    fn default() -> Self {
        serde_json::from_str("{}").expect("every field has a default")
    }
}

impl IndexConfig {
    /// Whether the method reads item vectors.
    pub fn needs_features(&self) -> bool {
        let method = if self.method == "hybrid" {
            &self.hybrid_base
        } else {
            &self.method
        };
        matches!(method.as_str(), "rqvae" | "rqkmeans")
    }
}

pub struct TokenizeOptions {
    pub dataset: String,
    pub index: IndexConfig,
    /// Item vectors for rqvae / rqkmeans: a .npy / .safetensors file from `genrec features build`.
    pub features: Option<PathBuf>,
    /// rqvae backend.
    pub device: DeviceKind,
    pub out: PathBuf,
    pub seed: u64,
}

#[derive(Debug, Serialize)]
pub struct TokenizeReport {
    pub dataset: String,
    pub method: String,
    pub collisions: String,
    pub fit_seconds: f64,
    /// Before collision handling.
    pub before: IndexStats,
    /// The written index (absent with `--collisions none` when codes collide).
    pub after: Option<IndexStats>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    levels: Vec<LevelReport>,
    /// rqvae: mean squared reconstruction error (summed over input dims) of the quantised latents.
    #[serde(skip_serializing_if = "Option::is_none")]
    reconstruction: Option<f64>,
    /// rqvae: per-epoch loss, usage and re-seeded codes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    epochs: Vec<EpochReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sinkhorn: Option<MappingReport>,
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
        }
    }
}

struct RqVaeJob<'a> {
    data: &'a [f32],
    dim: usize,
    model: RqVaeConfig,
    train: RqVaeTrainConfig,
}

impl BackendJob for RqVaeJob<'_> {
    type Output = Result<RqVaeFit, String>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        fit_rqvae::<B>(self.data, self.dim, &self.model, &self.train, &device, true)
    }
}

fn base_codes(
    o: &IndexConfig,
    method: &str,
    data: &SequenceDataset,
    features: Option<&Matrix>,
    device: DeviceKind,
    seed: u64,
) -> Result<Base> {
    let n = data.n_items();
    let features = || -> Result<Matrix> {
        let m = features.with_context(|| {
            format!(
                "--method {method} needs --features FILE (item vectors: `genrec features build DATASET --out FILE`)"
            )
        })?;
        if o.levels == 0 || o.codes < 2 {
            bail!("--levels must be ≥ 1 and --codes ≥ 2");
        }
        if m.rows != n {
            bail!("the item vectors have {} rows for {n} items", m.rows);
        }
        Ok(m.clone())
    };
    let train_split = || LeaveOneOut::new(data, &SplitConfig::default()).train;
    Ok(match method {
        "rqkmeans" => {
            let m = features()?;
            let sizes = vec![o.codes; o.levels];
            let fit = rq_kmeans(&m.data, m.cols, &sizes, 100, seed).map_err(anyhow::Error::msg)?;
            Base {
                sizes: sizes.iter().map(|&k| k as u32).collect(),
                codes: fit.codes,
                space: Some((m.data, fit.codebooks)),
                levels: fit.levels,
                reconstruction: None,
                epochs: Vec::new(),
            }
        }
        "rqvae" => {
            let m = features()?;
            let job = RqVaeJob {
                data: &m.data,
                dim: m.cols,
                model: RqVaeConfig::new().with_levels(o.levels).with_codes(o.codes),
                train: RqVaeTrainConfig::new().with_epochs(o.epochs).with_seed(seed),
            };
            let fit = dispatch(device, job).map_err(anyhow::Error::msg)?;
            Base {
                sizes: vec![o.codes as u32; o.levels],
                codes: fit.codes,
                space: Some((fit.latents, fit.codebooks)),
                levels: fit.levels,
                reconstruction: Some(fit.reconstruction),
                epochs: fit.epochs,
            }
        }
        "cid" => {
            let config = cid::CidConfig {
                n_clusters: o.n_clusters,
                max_leaf: o.max_leaf,
                seed,
                ..cid::CidConfig::default()
            };
            let codes = cid::cid_codes(&train_split(), n, &config).map_err(anyhow::Error::msg)?;
            let depth = codes.iter().map(Vec::len).max().unwrap_or(1);
            let width = o.n_clusters.max(o.max_leaf) as u32;
            Base::plain(vec![width; depth], codes)
        }
        "sid" | "sequential" => {
            let (sizes, codes) = simple::sequential(&train_split(), n, o.base).map_err(anyhow::Error::msg)?;
            Base::plain(sizes, codes)
        }
        "random" => {
            let (sizes, codes) = simple::random(n, o.base, seed).map_err(anyhow::Error::msg)?;
            Base::plain(sizes, codes)
        }
        other => bail!("--method `{other}`: expected rqvae, rqkmeans, cid, sid, random or hybrid"),
    })
}

/// Indexes `data`'s items as `o` says. Returns the index (`None` when the codes collide and
/// collision handling is `none`), the report and the final codes.
pub fn build_index(
    o: &IndexConfig,
    dataset: &str,
    data: &SequenceDataset,
    features: Option<&Matrix>,
    device: DeviceKind,
    seed: u64,
) -> Result<(Option<ItemIndex>, TokenizeReport, Vec<Vec<u32>>)> {
    let started = Instant::now();
    let mut sinkhorn = None;
    let hybrid = o.method == "hybrid";
    let base_method = if hybrid {
        o.hybrid_base.as_str()
    } else {
        o.method.as_str()
    };
    if hybrid && base_method == "hybrid" {
        bail!("--hybrid-base hybrid: pick rqvae, rqkmeans, cid, sid or random");
    }
    let Base {
        mut sizes,
        mut codes,
        space,
        levels,
        reconstruction,
        epochs,
    } = base_codes(o, base_method, data, features, device, seed)?;
    let before = ItemIndex::stats_of(&sizes, &codes);
    let method = if hybrid {
        (sizes, codes) = simple::hybrid(&sizes, &codes).map_err(anyhow::Error::msg)?;
        format!("hybrid({base_method})")
    } else if let Some((rows, books)) = &space {
        match o.collisions.as_str() {
            "dedup" => {
                let (deduped, extra) = dedup_digit(&codes);
                codes = deduped;
                sizes.push(extra);
            }
            "sinkhorn" => {
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
                    .map_err(anyhow::Error::msg)?;
                sinkhorn = Some(report);
            }
            "none" => {}
            other => bail!("--collisions `{other}`: expected dedup, sinkhorn or none"),
        }
        format!("{base_method}+{}", o.collisions)
    } else {
        if base_method == "sequential" {
            "sid".into()
        } else {
            base_method.to_string()
        }
    };
    let fit_seconds = started.elapsed().as_secs_f64();
    let collides = ItemIndex::stats_of(&sizes, &codes).collision_rate > 0.0;
    let index = if collides {
        None
    } else {
        Some(ItemIndex::new(method.clone(), sizes, codes.clone()).map_err(anyhow::Error::msg)?)
    };
    let report = TokenizeReport {
        dataset: dataset.to_string(),
        method,
        collisions: if hybrid || space.is_none() {
            "none needed".into()
        } else {
            o.collisions.clone()
        },
        fit_seconds,
        before,
        after: index.as_ref().map(ItemIndex::stats),
        levels,
        reconstruction,
        epochs,
        sinkhorn,
    };
    Ok((index, report, codes))
}

/// `genrec tokenize`: builds the index and writes index.json, stats.json and the usage plots.
pub fn run(o: &TokenizeOptions) -> Result<PathBuf> {
    let spec: DatasetSpec = o.dataset.parse()?;
    let data = spec.load()?;
    let features = match &o.features {
        Some(path) => Some(Matrix::load_checked(path, data.n_items(), None).map_err(anyhow::Error::msg)?),
        None => None,
    };
    let (index, report, codes) = build_index(&o.index, &o.dataset, &data, features.as_ref(), o.device, o.seed)?;
    std::fs::create_dir_all(&o.out).with_context(|| format!("creating {}", o.out.display()))?;
    match &index {
        Some(index) => index.save(&o.out.join("index.json")).map_err(anyhow::Error::msg)?,
        None => eprintln!(
            "collision rate {:.4}: not conflict-free, so no index.json (use --collisions dedup or sinkhorn)",
            report.before.collision_rate
        ),
    }
    std::fs::write(o.out.join("stats.json"), serde_json::to_string_pretty(&report)?)?;
    write_usage_plots(&o.out, &codes)?;
    let mut brief = serde_json::to_value(&report)?;
    brief.as_object_mut().map(|m| m.remove("epochs"));
    eprintln!("{}", serde_json::to_string_pretty(&brief)?);
    Ok(o.out.clone())
}

/// `usage_l<l>.svg`: items per code at level `l`, codes sorted from most to least used.
pub fn write_usage_plots(dir: &Path, codes: &[Vec<u32>]) -> Result<()> {
    let depth = codes.iter().map(Vec::len).max().unwrap_or(0);
    for l in 0..depth {
        let mut counts = std::collections::HashMap::<u32, usize>::new();
        for c in codes.iter().filter_map(|c| c.get(l)) {
            *counts.entry(*c).or_default() += 1;
        }
        let mut sorted: Vec<usize> = counts.into_values().collect();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        let points: Vec<(f64, f64)> = sorted.iter().enumerate().map(|(r, &c)| (r as f64, c as f64)).collect();
        let svg = crate::plot::line_chart(&format!("level {l} code usage"), "code rank", "items", &points);
        std::fs::write(dir.join(format!("usage_l{l}.svg")), svg)?;
    }
    Ok(())
}
