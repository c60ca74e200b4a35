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
use serde::Serialize;

use crate::backend::{dispatch, BackendJob, DeviceKind};

pub struct TokenizeOptions {
    pub dataset: String,
    /// rqvae, rqkmeans, cid, sid (sequential), random or hybrid.
    pub method: String,
    /// hybrid: the index the item token is appended to.
    pub hybrid_base: String,
    /// Item vectors for rqvae / rqkmeans: a .npy / .safetensors file from `genrec features build`.
    pub features: Option<PathBuf>,
    pub levels: usize,
    pub codes: usize,
    /// dedup, sinkhorn or none.
    pub collisions: String,
    pub base: u32,
    pub n_clusters: usize,
    pub max_leaf: usize,
    /// rqvae training epochs.
    pub epochs: usize,
    /// rqvae backend.
    pub device: DeviceKind,
    pub out: PathBuf,
    pub seed: u64,
}

#[derive(Serialize)]
struct TokenizeReport {
    dataset: String,
    method: String,
    collisions: String,
    fit_seconds: f64,
    /// Before collision handling.
    before: IndexStats,
    /// The written index (absent with `--collisions none` when codes collide).
    after: Option<IndexStats>,
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

fn base_codes(o: &TokenizeOptions, method: &str, data: &SequenceDataset) -> Result<Base> {
    let n = data.n_items();
    let features = || -> Result<Matrix> {
        let path = o.features.as_ref().with_context(|| {
            format!(
                "--method {method} needs --features FILE (item vectors: `genrec features build DATASET --out FILE`)"
            )
        })?;
        if o.levels == 0 || o.codes < 2 {
            bail!("--levels must be ≥ 1 and --codes ≥ 2");
        }
        Matrix::load_checked(path, n, None).map_err(anyhow::Error::msg)
    };
    let train_split = || LeaveOneOut::new(data, &SplitConfig::default()).train;
    Ok(match method {
        "rqkmeans" => {
            let m = features()?;
            let sizes = vec![o.codes; o.levels];
            let fit = rq_kmeans(&m.data, m.cols, &sizes, 100, o.seed).map_err(anyhow::Error::msg)?;
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
                train: RqVaeTrainConfig::new().with_epochs(o.epochs).with_seed(o.seed),
            };
            let fit = dispatch(o.device, job).map_err(anyhow::Error::msg)?;
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
                seed: o.seed,
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
            let (sizes, codes) = simple::random(n, o.base, o.seed).map_err(anyhow::Error::msg)?;
            Base::plain(sizes, codes)
        }
        other => bail!("--method `{other}`: expected rqvae, rqkmeans, cid, sid, random or hybrid"),
    })
}

pub fn run(o: &TokenizeOptions) -> Result<PathBuf> {
    let spec: DatasetSpec = o.dataset.parse()?;
    let data = spec.load()?;
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
    } = base_codes(o, base_method, &data)?;
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
    std::fs::create_dir_all(&o.out).with_context(|| format!("creating {}", o.out.display()))?;
    let collides = ItemIndex::stats_of(&sizes, &codes).collision_rate > 0.0;
    let after = if collides {
        eprintln!(
            "collision rate {:.4}: not conflict-free, so no index.json (use --collisions dedup or sinkhorn)",
            before.collision_rate
        );
        None
    } else {
        let index = ItemIndex::new(method.clone(), sizes, codes.clone()).map_err(anyhow::Error::msg)?;
        index.save(&o.out.join("index.json")).map_err(anyhow::Error::msg)?;
        Some(index.stats())
    };
    let report = TokenizeReport {
        dataset: o.dataset.clone(),
        method,
        collisions: if hybrid || space.is_none() {
            "none needed".into()
        } else {
            o.collisions.clone()
        },
        fit_seconds,
        before,
        after,
        levels,
        reconstruction,
        epochs,
        sinkhorn,
    };
    std::fs::write(o.out.join("stats.json"), serde_json::to_string_pretty(&report)?)?;
    write_usage_plots(&o.out, &codes)?;
    let mut brief = serde_json::to_value(&report)?;
    brief.as_object_mut().map(|m| m.remove("epochs"));
    eprintln!("{}", serde_json::to_string_pretty(&brief)?);
    Ok(o.out.clone())
}

/// `usage_l<l>.svg`: items per code at level `l`, codes sorted from most to least used.
fn write_usage_plots(dir: &Path, codes: &[Vec<u32>]) -> Result<()> {
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
