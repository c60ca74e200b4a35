//! `genrec features build`: item content vectors for a dataset (MiniLM text, attributes, or an
//! imported file), written as a matrix (row i = item i in the dataset's load order; the raw item
//! ids are listed in `<out>.items.txt`) with a short report.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use burn::tensor::backend::AutodiffBackend;
use genrec_data::{DatasetSpec, SequenceDataset};
pub use genrec_text::FeatureKind;
use genrec_text::{FeatureOptions, ItemFeatures, Matrix};
use serde::Serialize;

use crate::backend::{dispatch, BackendJob, DeviceKind};

pub struct BuildOptions {
    pub dataset: String,
    pub kind: FeatureKind,
    /// Text template (default: per dataset, see genrec_text::render).
    pub template: Option<String>,
    /// Attribute features: reduce to this many dimensions (0 = one per attribute).
    pub dim: usize,
    pub tfidf: bool,
    pub batch_size: usize,
    /// Reuse (and fill) the text-vector cache under GENREC_HOME/features.
    pub cache: bool,
    pub out: Option<PathBuf>,
    pub device: DeviceKind,
    pub seed: u64,
}

impl BuildOptions {
    /// Defaults of a run that builds features in memory for `dataset` (cached text vectors,
    /// default template, TF-IDF attributes at full width, nothing written out).
    pub fn in_memory(dataset: &str, kind: FeatureKind, device: DeviceKind, seed: u64) -> Self {
        BuildOptions {
            dataset: dataset.to_string(),
            kind,
            template: None,
            dim: 0,
            tfidf: true,
            batch_size: 64,
            cache: true,
            out: None,
            device,
            seed,
        }
    }
}

#[derive(Debug, Serialize)]
struct Neighbour {
    item: usize,
    title: String,
    cosine: f32,
}

#[derive(Debug, Serialize)]
struct Probe {
    item: usize,
    title: String,
    neighbours: Vec<Neighbour>,
}

#[derive(Debug, Serialize)]
struct FeaturesReport {
    dataset: String,
    kind: String,
    items: usize,
    dim: usize,
    norm_min: f32,
    norm_mean: f32,
    norm_max: f32,
    zero_rows: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<genrec_text::RenderReport>,
    seconds: f64,
    items_per_second: f64,
    nearest: Vec<Probe>,
}

/// A short human label for item `i`: its title if it has one, else its raw id.
fn title(data: &SequenceDataset, i: usize) -> String {
    let info = &data.items[i];
    info.field("title")
        .or_else(|| info.field("movie_title"))
        .map(str::to_string)
        .unwrap_or_else(|| format!("item {}", data.item_tokens[i]))
}

/// genrec-text's [`build_features`](genrec_text::build_features) on the chosen backend
/// (inference only: the inner backend records no autodiff graph).
struct FeaturesJob<'a> {
    dataset: &'a str,
    data: &'a SequenceDataset,
    kind: &'a FeatureKind,
    options: FeatureOptions,
}

impl BackendJob for FeaturesJob<'_> {
    type Output = Result<ItemFeatures, genrec_text::TextError>;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        genrec_text::build_features::<B::InnerBackend>(self.dataset, self.data, self.kind, &self.options, &device)
    }
}

/// MiniLM vectors of arbitrary texts, through the text-vector cache (keyed by `label` and the
/// texts' content).
pub fn encode_texts(texts: &[String], label: &str, device: DeviceKind) -> Result<Matrix> {
    struct EncodeJob<'a> {
        texts: &'a [String],
        label: &'a str,
    }
    impl BackendJob for EncodeJob<'_> {
        type Output = Result<(Matrix, Option<PathBuf>), genrec_text::TextError>;
        fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
            genrec_text::encode_texts::<B::InnerBackend>(self.texts, self.label, 64, true, &device)
        }
    }
    let (matrix, cache) = dispatch(device, EncodeJob { texts, label })?;
    if let Some(path) = cache {
        eprintln!("text vectors cached at {}", path.display());
    }
    Ok(matrix)
}

/// Computes the vectors `options` asks for (MiniLM text through the cache, attributes, or a file),
/// reporting what the text kind rendered and where it cached the vectors.
pub fn vectors(options: &BuildOptions, data: &SequenceDataset) -> Result<ItemFeatures> {
    let job = FeaturesJob {
        dataset: &options.dataset,
        data,
        kind: &options.kind,
        options: FeatureOptions {
            template: options.template.clone(),
            dim: options.dim,
            tfidf: options.tfidf,
            batch_size: options.batch_size,
            cache: options.cache,
            seed: options.seed,
        },
    };
    let features = dispatch(options.device, job)?;
    if let (Some(report), Some(template)) = (&features.render, &features.template) {
        eprintln!(
            "{} item texts ({} without a title, {} empty) from `{template}`",
            report.items, report.missing_first_field, report.empty
        );
    }
    if let Some(path) = &features.cache {
        eprintln!("text vectors cached at {}", path.display());
    }
    Ok(features)
}

pub fn build(options: &BuildOptions) -> Result<PathBuf> {
    let target = out_path(options);
    if !matches!(target.extension().and_then(|e| e.to_str()), Some("npy" | "safetensors")) {
        bail!(
            "--out {}: the file name must end in .npy or .safetensors",
            target.display()
        );
    }
    let spec: DatasetSpec = options.dataset.parse()?;
    let data = spec.load()?;
    let started = Instant::now();
    let ItemFeatures {
        matrix,
        texts,
        render: text,
        kind,
        ..
    } = vectors(options, &data)?;
    if let Some(texts) = texts {
        // What was encoded, one item per line (the sentence-transformers anchor reads it).
        let texts_path = sidecar(&out_path(options), "texts.txt");
        if let Some(parent) = texts_path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        let lines: Vec<String> = texts.iter().map(|t| t.replace(['\n', '\r'], " ")).collect();
        std::fs::write(&texts_path, lines.join("\n") + "\n")
            .with_context(|| format!("writing {}", texts_path.display()))?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let out = out_path(options);
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    matrix.save(&out)?;
    let items_path = sidecar(&out, "items.txt");
    std::fs::write(&items_path, data.item_tokens.join("\n") + "\n")
        .with_context(|| format!("writing {}", items_path.display()))?;

    let norms = matrix.row_norms();
    let n = matrix.rows;
    if n == 0 {
        bail!("dataset `{}` has no items", options.dataset);
    }
    let probes: Vec<usize> = {
        let mut p: Vec<usize> = [0, n / 4, n / 2, 3 * n / 4, n - 1].into();
        p.dedup();
        p
    };
    let report = FeaturesReport {
        dataset: options.dataset.clone(),
        kind,
        items: n,
        dim: matrix.cols,
        norm_min: norms.iter().copied().fold(f32::INFINITY, f32::min),
        norm_mean: norms.iter().sum::<f32>() / n as f32,
        norm_max: norms.iter().copied().fold(0.0, f32::max),
        zero_rows: norms.iter().filter(|&&v| v == 0.0).count(),
        text,
        seconds,
        items_per_second: n as f64 / seconds.max(1e-9),
        nearest: probes
            .iter()
            .map(|&i| Probe {
                item: i,
                title: title(&data, i),
                neighbours: matrix
                    .nearest(i, 5)
                    .into_iter()
                    .map(|(j, cosine)| Neighbour {
                        item: j,
                        title: title(&data, j),
                        cosine,
                    })
                    .collect(),
            })
            .collect(),
    };
    let report_path = sidecar(&out, "report.json");
    std::fs::write(&report_path, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("writing {}", report_path.display()))?;
    eprintln!(
        "{} × {} ({}), norms {:.3}–{:.3} (mean {:.3}), {} zero rows, {:.1}s ({:.0} items/s)",
        report.items,
        report.dim,
        report.kind,
        report.norm_min,
        report.norm_max,
        report.norm_mean,
        report.zero_rows,
        report.seconds,
        report.items_per_second
    );
    for p in &report.nearest {
        eprintln!("nearest to [{}] {}:", p.item, p.title);
        for nb in &p.neighbours {
            eprintln!("  {:.3}  [{}] {}", nb.cosine, nb.item, nb.title);
        }
    }
    Ok(out)
}

/// `--out`, or `features/<dataset>-<kind>.safetensors`.
fn out_path(options: &BuildOptions) -> PathBuf {
    options.out.clone().unwrap_or_else(|| {
        let safe = genrec_text::encoder::file_label(&options.dataset);
        let kind = match options.kind {
            FeatureKind::Text => "text",
            FeatureKind::Attributes => "attributes",
            FeatureKind::File(_) => "file",
        };
        PathBuf::from("features").join(format!("{safe}-{kind}.safetensors"))
    })
}

/// `features/x.safetensors` → `features/x.<suffix>`.
fn sidecar(out: &Path, suffix: &str) -> PathBuf {
    out.with_extension(suffix)
}
