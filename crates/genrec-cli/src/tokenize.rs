//! `genrec tokenize`: build an item index (code tuples) for a dataset with
//! [`genrec_tokenize::build_index`] and write `index.json`, `stats.json` (collision rate
//! before/after, per-level usage and entropy, mean code length, fit time) and one SVG per level of
//! code usage (codes sorted by how many items use them).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::tensor::backend::AutodiffBackend;
use genrec_data::{DatasetSpec, SequenceDataset};
use genrec_text::Matrix;
use genrec_tokenize::{BuiltIndex, IndexConfig, ItemVectors, TokenizeError};

use crate::backend::{dispatch, BackendJob, DeviceKind};

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

/// [`genrec_tokenize::build_index`] on the chosen backend (RQ-VAE trains there).
struct BuildJob<'a> {
    config: &'a IndexConfig,
    dataset: &'a str,
    data: &'a SequenceDataset,
    features: Option<&'a Matrix>,
    seed: u64,
}

impl BackendJob for BuildJob<'_> {
    type Output = Result<BuiltIndex, TokenizeError>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let features = self.features.map(|m| ItemVectors {
            data: &m.data,
            dim: m.cols,
        });
        genrec_tokenize::build_index::<B>(self.config, self.dataset, self.data, features, &device, self.seed)
    }
}

/// Indexes `data`'s items as `config` says, RQ-VAE on `device`.
pub fn build_index(
    config: &IndexConfig,
    dataset: &str,
    data: &SequenceDataset,
    features: Option<&Matrix>,
    device: DeviceKind,
    seed: u64,
) -> Result<BuiltIndex> {
    let job = BuildJob {
        config,
        dataset,
        data,
        features,
        seed,
    };
    Ok(dispatch(device, job)?)
}

/// `genrec tokenize`: builds the index and writes index.json, stats.json and the usage plots.
pub fn run(o: &TokenizeOptions) -> Result<PathBuf> {
    let spec: DatasetSpec = o.dataset.parse()?;
    let data = spec.load()?;
    let features = match &o.features {
        Some(path) => Some(Matrix::load_checked(path, data.n_items(), None)?),
        None => None,
    };
    let BuiltIndex { index, report, codes } =
        build_index(&o.index, &o.dataset, &data, features.as_ref(), o.device, o.seed)?;
    std::fs::create_dir_all(&o.out).with_context(|| format!("creating {}", o.out.display()))?;
    match &index {
        Some(index) => index.save(&o.out.join("index.json"))?,
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
