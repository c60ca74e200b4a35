//! `genrec tokenize`: build an item index (code tuples) for a dataset and write `index.json`,
//! `stats.json` (collision rate before/after, per-level usage and entropy, mean code length, fit
//! time) and one SVG per level of code usage (codes sorted by how many items use them).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use genrec_data::{DatasetSpec, LeaveOneOut, SplitConfig};
use genrec_text::Matrix;
use genrec_tokenize::collision::{dedup_digit, uniform_semantic_mapping, MappingReport, SinkhornConfig};
use genrec_tokenize::rq::{rq_kmeans, LevelReport};
use genrec_tokenize::{cid, simple, IndexStats, ItemIndex};
use serde::Serialize;

pub struct TokenizeOptions {
    pub dataset: String,
    /// rqkmeans, cid, sid (sequential), random.
    pub method: String,
    /// Item vectors for rqkmeans: a .npy / .safetensors file from `genrec features build`.
    pub features: Option<PathBuf>,
    pub levels: usize,
    pub codes: usize,
    /// dedup, sinkhorn or none.
    pub collisions: String,
    pub base: u32,
    pub n_clusters: usize,
    pub max_leaf: usize,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    sinkhorn: Option<MappingReport>,
}

pub fn run(o: &TokenizeOptions) -> Result<PathBuf> {
    let spec: DatasetSpec = o.dataset.parse()?;
    let data = spec.load()?;
    let n = data.n_items();
    let started = Instant::now();
    let mut levels = Vec::new();
    let mut sinkhorn = None;
    let (method, sizes, codes, before) = match o.method.as_str() {
        "rqkmeans" => {
            let path = o.features.as_ref().context(
                "--method rqkmeans needs --features FILE (item vectors: `genrec features build DATASET --out FILE`)",
            )?;
            let m = Matrix::load_checked(path, n, None).map_err(anyhow::Error::msg)?;
            if o.levels == 0 || o.codes < 2 {
                bail!("--levels must be ≥ 1 and --codes ≥ 2");
            }
            let sizes = vec![o.codes; o.levels];
            let fit = rq_kmeans(&m.data, m.cols, &sizes, 100, o.seed).map_err(anyhow::Error::msg)?;
            let (books, mut codes) = (fit.codebooks, fit.codes);
            levels = fit.levels;
            let mut sizes: Vec<u32> = sizes.iter().map(|&k| k as u32).collect();
            let before = ItemIndex::stats_of(&sizes, &codes);
            match o.collisions.as_str() {
                "dedup" => {
                    let (deduped, extra) = dedup_digit(&codes);
                    codes = deduped;
                    sizes.push(extra);
                }
                "sinkhorn" => {
                    let last = o.levels - 1;
                    let dim = m.cols;
                    let residuals: Vec<Vec<f32>> = (0..n).map(|i| books.residual(m.row(i), &codes[i], last)).collect();
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
            (format!("rqkmeans+{}", o.collisions), sizes, codes, before)
        }
        "cid" => {
            let split = LeaveOneOut::new(&data, &SplitConfig::default());
            let config = cid::CidConfig {
                n_clusters: o.n_clusters,
                max_leaf: o.max_leaf,
                seed: o.seed,
                ..cid::CidConfig::default()
            };
            let codes = cid::cid_codes(&split.train, n, &config).map_err(anyhow::Error::msg)?;
            let depth = codes.iter().map(Vec::len).max().unwrap_or(1);
            let width = o.n_clusters.max(o.max_leaf) as u32;
            let sizes = vec![width; depth];
            let before = ItemIndex::stats_of(&sizes, &codes);
            ("cid".to_string(), sizes, codes, before)
        }
        "sid" | "sequential" => {
            let split = LeaveOneOut::new(&data, &SplitConfig::default());
            let (sizes, codes) = simple::sequential(&split.train, n, o.base).map_err(anyhow::Error::msg)?;
            let before = ItemIndex::stats_of(&sizes, &codes);
            ("sequential".to_string(), sizes, codes, before)
        }
        "random" => {
            let (sizes, codes) = simple::random(n, o.base, o.seed).map_err(anyhow::Error::msg)?;
            let before = ItemIndex::stats_of(&sizes, &codes);
            ("random".to_string(), sizes, codes, before)
        }
        "rqvae" | "hybrid" => bail!(
            "--method {}: not built yet in genrec-tokenize (available: rqkmeans, cid, sid, random)",
            o.method
        ),
        other => bail!("--method `{other}`: expected rqkmeans, cid, sid or random"),
    };
    let fit_seconds = started.elapsed().as_secs_f64();
    std::fs::create_dir_all(&o.out).with_context(|| format!("creating {}", o.out.display()))?;
    let after = if o.collisions == "none" && before.collision_rate > 0.0 {
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
        collisions: o.collisions.clone(),
        fit_seconds,
        before,
        after,
        levels,
        sinkhorn,
    };
    std::fs::write(o.out.join("stats.json"), serde_json::to_string_pretty(&report)?)?;
    write_usage_plots(&o.out, &codes)?;
    eprintln!("{}", serde_json::to_string_pretty(&report)?);
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
