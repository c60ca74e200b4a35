//! `genrec features build`: item content vectors for a dataset (MiniLM text, attributes, or an
//! imported file), written as a matrix (row i = item i in the dataset's load order; the raw item
//! ids are listed in `<out>.items.txt`) with a short report.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use burn::tensor::backend::AutodiffBackend;
use genrec_data::{DatasetSpec, SequenceDataset};
use genrec_text::{attribute_features, default_template, render, AttributeConfig, Matrix, RenderReport, TextEncoder};
use serde::Serialize;

use crate::backend::{dispatch, BackendJob, DeviceKind};

/// What to build.
#[derive(Debug, Clone, PartialEq)]
pub enum FeatureKind {
    Text,
    Attributes,
    File(PathBuf),
}

impl std::str::FromStr for FeatureKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(FeatureKind::Text),
            "attributes" => Ok(FeatureKind::Attributes),
            _ => match s.strip_prefix("file:") {
                Some(p) if !p.is_empty() => Ok(FeatureKind::File(PathBuf::from(p))),
                _ => Err(format!("--kind `{s}`: expected text, attributes or file:PATH")),
            },
        }
    }
}

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

struct EncodeJob<'a> {
    texts: &'a [String],
    label: String,
    batch_size: usize,
    cache: bool,
}

impl BackendJob for EncodeJob<'_> {
    type Output = Result<Matrix>;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        // Inference only: the inner backend records no autodiff graph.
        let encoder = TextEncoder::<B::InnerBackend>::minilm(&device).map_err(anyhow::Error::msg)?;
        if !self.cache {
            return encoder
                .encode(self.texts, self.batch_size, true)
                .map_err(anyhow::Error::msg);
        }
        let (m, path) = encoder
            .encode_cached(&self.label, self.texts, self.batch_size)
            .map_err(anyhow::Error::msg)?;
        eprintln!("text vectors cached at {}", path.display());
        Ok(m)
    }
}

/// MiniLM vectors of arbitrary texts, through the text-vector cache (keyed by `label` and the
/// texts' content).
pub fn encode_texts(texts: &[String], label: &str, device: DeviceKind) -> Result<Matrix> {
    dispatch(
        device,
        EncodeJob {
            texts,
            label: label.to_string(),
            batch_size: 64,
            cache: true,
        },
    )
}

/// Item vectors of `data` in its item order, with the texts encoded (text kind) and how they were
/// rendered.
pub struct Vectors {
    pub matrix: Matrix,
    pub texts: Option<Vec<String>>,
    pub render: Option<RenderReport>,
    /// `text`, `attributes` or `file:PATH`.
    pub kind: String,
}

/// Computes the vectors `options` asks for (MiniLM text through the cache, attributes, or a file).
pub fn vectors(options: &BuildOptions, data: &SequenceDataset) -> Result<Vectors> {
    Ok(match &options.kind {
        FeatureKind::Text => {
            let template = match &options.template {
                Some(t) => t.clone(),
                None => default_template(data).map_err(anyhow::Error::msg)?.to_string(),
            };
            let (texts, report) = render(data, &template).map_err(anyhow::Error::msg)?;
            eprintln!(
                "{} item texts ({} without a title, {} empty) from `{template}`",
                report.items, report.missing_first_field, report.empty
            );
            let job = EncodeJob {
                texts: &texts,
                label: format!("{}-minilm", options.dataset),
                batch_size: options.batch_size,
                cache: options.cache,
            };
            let matrix = dispatch(options.device, job)?;
            Vectors {
                matrix,
                texts: Some(texts),
                render: Some(report),
                kind: "text".into(),
            }
        }
        FeatureKind::Attributes => {
            let config = AttributeConfig {
                tfidf: options.tfidf,
                dim: options.dim,
                seed: options.seed,
                ..AttributeConfig::default()
            };
            let matrix = attribute_features(data, &config).map_err(anyhow::Error::msg)?;
            Vectors {
                matrix,
                texts: None,
                render: None,
                kind: "attributes".into(),
            }
        }
        FeatureKind::File(path) => Vectors {
            matrix: Matrix::load_checked(path, data.n_items(), None).map_err(anyhow::Error::msg)?,
            texts: None,
            render: None,
            kind: format!("file:{}", path.display()),
        },
    })
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
    let Vectors {
        matrix,
        texts,
        render: text,
        kind,
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
    matrix.save(&out).map_err(anyhow::Error::msg)?;
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
