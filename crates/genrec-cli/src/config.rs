//! Experiment configs: one TOML per run, nesting the component configs (the schema of every
//! table, its checks, `--set` overrides) and the data it prepares.
//!
//! ```toml
//! name = "pop-ml100k"
//! seed = 42
//! [data]
//! dataset = "ml-100k"
//! max_history = 50
//! [model]
//! kind = "pop"
//! [eval]
//! ks = [5, 10, 20]
//! ```
//! `--set data.max_history=20` overrides any field before the config is checked; unknown keys
//! and impossible values fail before any work, naming the field.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use genrec_data::{DatasetSpec, HoldOutConfig, LeaveOneOut, SequenceDataset, SplitConfig};
use genrec_eval::multi::MaskMode;
use genrec_eval::EvalConfig;
use genrec_graph::{Backbone, GraphCfConfig};
use genrec_tokenize::IndexConfig;
use genrec_train::TrainConfig;
use serde::{Deserialize, Serialize};

use crate::registry::{Checks, LooModel, ModelConfig, ModelVisitor};
use crate::rundir::Log;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentConfig {
    /// Run name; the run directory is `<out>/<name>-<UTC timestamp>`.
    pub name: String,
    /// Seed of everything random in the run (default 42).
    #[serde(default = "default_seed")]
    pub seed: u64,
    pub data: DataConfig,
    pub model: ModelConfig,
    /// Item index (generative models over code tuples: TIGER).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<IndexConfig>,
    /// Training loop settings (learned models only).
    #[serde(default)]
    pub train: TrainConfig,
    #[serde(default)]
    pub eval: EvalConfig,
    /// Semantic user/item profiles for RLMRec alignment (graph CF models with `model.align`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profiles: Option<ProfilesConfig>,
}

fn default_seed() -> u64 {
    42
}

/// How item ids are assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Renumber {
    /// Keep the ids of reference splits (the P5/S3-Rec Amazon files), shuffle all others.
    Auto,
    /// Seeded shuffle (leakage-free).
    Shuffle,
    /// Keep the order of first appearance in the file.
    Keep,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Dataset name (`ml-100k`, `ml-1m`, `amazon-p5:Beauty`, `synthetic:…`) or file path.
    pub dataset: String,
    /// Drop users with fewer interactions, iterated with `item_kcore` (default 0: off).
    #[serde(default)]
    pub user_kcore: usize,
    /// Drop items with fewer interactions (default 0: off).
    #[serde(default)]
    pub item_kcore: usize,
    /// `auto` (default), `shuffle` or `keep`.
    #[serde(default = "default_renumber")]
    pub renumber: Renumber,
    /// Last items of each history the model sees (default 50; 20 for the Amazon recipes).
    #[serde(default = "default_max_history")]
    pub max_history: usize,
    /// Graph CF models: the seeded random ratio split of a dataset that is not already split
    /// (ratios 3:1:1, seed 0 by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holdout: Option<HoldOutConfig>,
}

fn default_renumber() -> Renumber {
    Renumber::Auto
}
fn default_max_history() -> usize {
    50
}

/// Parses a `--set` value as a TOML value (number, bool, array, quoted string), falling back to a
/// bare string so `--set data.dataset=ml-1m` works unquoted.
fn parse_value(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

/// The deepest `--set` key path accepted (`model.align.x` is 3).
const MAX_SET_DEPTH: usize = 16;

/// Applies `path.to.key=value` overrides to a parsed TOML table.
pub fn apply_overrides(table: &mut toml::Table, overrides: &[String]) -> Result<()> {
    for o in overrides {
        let (path, raw) = o
            .split_once('=')
            .with_context(|| format!("--set `{o}`: expected path.to.key=value"))?;
        let keys: Vec<&str> = path.trim().split('.').collect();
        if keys.iter().any(|k| k.is_empty()) {
            bail!("--set `{o}`: empty key in `{path}`");
        }
        // No table nests this deep; a longer path is a mistake (and would recurse unboundedly).
        if keys.len() > MAX_SET_DEPTH {
            bail!(
                "--set: key path of {} levels (`{}…`): config tables nest at most {MAX_SET_DEPTH} deep",
                keys.len(),
                keys[..3].join(".")
            );
        }
        let mut node = &mut *table;
        for k in &keys[..keys.len() - 1] {
            let entry = node
                .entry(k.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            node = entry
                .as_table_mut()
                .with_context(|| format!("--set `{o}`: `{k}` is not a table"))?;
        }
        node.insert(keys[keys.len() - 1].to_string(), parse_value(raw.trim()));
    }
    Ok(())
}

/// The error's text, plus the line of the field at fault: inside a tagged table (`[model]` with
/// its `kind`) the TOML reader can only point at the table's header, so an unknown field's line,
/// or the line whose value has the wrong type or range, is looked up in the table's lines of
/// `text` (its sub-tables such as `[model.t5]` included).
fn pinpoint(text: &str, error: &toml::de::Error) -> String {
    let message = error.to_string();
    let Some(span) = error.span() else {
        return message;
    };
    let at = text[..span.start.min(text.len())].matches('\n').count();
    let Some(header) = text.lines().nth(at).filter(|l| l.trim_start().starts_with('[')) else {
        return message;
    };
    // `[model]` -> `model`: its own lines and those of `[model.…]` sub-tables.
    let table = header.trim().trim_matches(|c| c == '[' || c == ']').trim().to_string();
    let mut lines: Vec<(usize, &str)> = Vec::new();
    let mut inside = true;
    for (i, line) in text.lines().enumerate().skip(at + 1) {
        let t = line.trim_start();
        if t.starts_with('[') {
            let name = t.trim_matches(|c| c == '[' || c == ']').trim();
            inside = name.starts_with(&format!("{table}."));
            continue;
        }
        if inside && t.contains('=') && !t.starts_with('#') {
            lines.push((i, line));
        }
    }
    let key = |l: &str| l.split('=').next().unwrap_or("").trim().trim_matches('"').to_string();
    let unknown = message
        .split("unknown field `")
        .nth(1)
        .and_then(|rest| rest.split('`').next());
    let found: Vec<&(usize, &str)> = match unknown {
        Some(field) => lines.iter().filter(|(_, l)| key(l) == field).collect(),
        // "invalid type: string \"big\", expected usize": the lines holding that value.
        None => lines
            .iter()
            .filter(|(_, l)| {
                let value = l.split_once('=').map_or("", |(_, v)| v);
                toml::from_str::<toml::Table>(&format!("v = {value}"))
                    .ok()
                    .and_then(|t| t.get("v").map(unexpected))
                    .is_some_and(|u| {
                        message.contains(&format!("invalid type: {u}"))
                            || message.contains(&format!("invalid value: {u}"))
                    })
            })
            .collect(),
    };
    match found.as_slice() {
        [(i, line)] => format!(
            "{}\nthe field `{}` is at line {}: {}",
            message.trim_end(),
            key(line),
            i + 1,
            line.trim()
        ),
        _ => message,
    }
}

/// How serde describes a TOML value it did not expect (`string "x"`, ``integer `3` ``, …).
fn unexpected(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => format!("string {s:?}"),
        toml::Value::Integer(i) => format!("integer `{i}`"),
        toml::Value::Float(f) => format!("floating point `{f}`"),
        toml::Value::Boolean(b) => format!("boolean `{b}`"),
        toml::Value::Array(_) => "sequence".into(),
        toml::Value::Table(_) => "map".into(),
        toml::Value::Datetime(d) => format!("{d}"),
    }
}

impl ExperimentConfig {
    /// Reads a TOML file, applies overrides and checks every field that can be checked without data.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut table: toml::Table =
            toml::from_str(&text).with_context(|| format!("{}: invalid TOML", path.display()))?;
        // The user's own file first, so that its errors cite the user's lines (the merged
        // document below is re-serialised: its line numbers are nobody's).
        let own = toml::from_str::<ExperimentConfig>(&text).map_err(|e| pinpoint(&text, &e));
        if overrides.is_empty() {
            return own
                .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.trim_end()))
                .and_then(|config| config.validate().map(|()| config));
        }
        apply_overrides(&mut table, overrides)?;
        let merged = toml::to_string(&table)?;
        let config: ExperimentConfig = match (own, toml::from_str(&merged)) {
            (_, Ok(config)) => config,
            (Err(e), Err(_)) => bail!("{}: {}", path.display(), e.trim_end()),
            (Ok(_), Err(e)) => bail!(
                "{}: the --set overrides {} make it invalid: {}",
                path.display(),
                overrides.join(" "),
                e.to_string().trim_end()
            ),
        };
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<()> {
        if self.name.trim().is_empty() || self.name.contains(['/', '\\']) {
            bail!("name: `{}` must be non-empty and contain no path separators", self.name);
        }
        if self.data.max_history == 0 {
            bail!("data.max_history must be at least 1");
        }
        let presplit =
            presplit_dir(&self.data.dataset).ok().flatten().is_some() || self.data.dataset.starts_with("rlmrec:");
        if !(presplit && self.model.is_hold_out()) {
            self.data
                .dataset
                .parse::<DatasetSpec>()
                .map_err(|e| anyhow::anyhow!("data.dataset: {e}"))?;
        }
        genrec_eval::MetricSet::new(self.eval.ks.clone()).map_err(|e| anyhow::anyhow!("eval.ks: {e}"))?;
        self.model.visit(Validate(self))
    }
}

/// The model's own checks, by protocol.
struct Validate<'a>(&'a ExperimentConfig);

impl ModelVisitor for Validate<'_> {
    type Output = Result<()>;

    fn leave_one_out<M: LooModel>(self, kind: &'static str, model: &M) -> Result<()> {
        let c = self.0;
        if c.data.holdout.is_some() || c.profiles.is_some() || c.eval.mask != MaskMode::Train {
            bail!(
                "data.holdout, [profiles] and eval.mask belong to the hold-out protocol of graph CF models (lightgcn, gccf, sgl, simgcl), not `{kind}`"
            );
        }
        model.validate(&Checks {
            train: &c.train,
            eval: &c.eval,
            index: c.index.as_ref(),
        })
    }

    fn hold_out(self, _: &'static str, backbone: Backbone, m: &GraphCfConfig) -> Result<()> {
        let c = self.0;
        m.resolve(backbone)?;
        c.train.validate(&c.eval.ks)?;
        if let Some(h) = &c.data.holdout {
            h.validate().map_err(|e| anyhow::anyhow!("data.{e}"))?;
        }
        match (&m.align, &c.profiles) {
            (Some(_), None) => bail!("model.align needs a [profiles] table (source = \"text\" or \"file\")"),
            (None, Some(_)) => bail!("[profiles] is only used with model.align"),
            (_, Some(p)) => p.validate(),
            _ => Ok(()),
        }
    }
}

/// Loads the dataset and applies the configured k-core filter, logging both.
pub fn load_filtered(config: &ExperimentConfig, log: &mut Log) -> Result<(DatasetSpec, SequenceDataset)> {
    let spec: DatasetSpec = config.data.dataset.parse()?;
    let raw = spec.load()?;
    log.line(&format!(
        "loaded {}: {} users, {} items, {} interactions",
        config.data.dataset,
        raw.n_users(),
        raw.n_items(),
        raw.n_interactions()
    ));
    let (data, report) = raw.kcore(config.data.user_kcore, config.data.item_kcore);
    if report.removed_interactions > 0 {
        log.line(&format!(
            "k-core ({}, {}): removed {} users, {} items, {} interactions in {} rounds",
            config.data.user_kcore,
            config.data.item_kcore,
            report.removed_users,
            report.removed_items,
            report.removed_interactions,
            report.rounds
        ));
    }
    Ok((spec, data))
}

/// Loads, filters, renumbers and splits the dataset as the config says.
pub fn prepare_data(config: &ExperimentConfig, log: &mut Log) -> Result<(SequenceDataset, LeaveOneOut)> {
    let (spec, mut data) = load_filtered(config, log)?;
    let shuffle = match config.data.renumber {
        Renumber::Auto => !spec.is_reference_split(),
        Renumber::Shuffle => true,
        Renumber::Keep => false,
    };
    if shuffle {
        data = data.renumber_items(config.seed);
    }
    let split = LeaveOneOut::new(
        &data,
        &SplitConfig {
            max_history: config.data.max_history,
        },
    );
    if split.skipped_short_users > 0 {
        log.line(&format!(
            "skipped {} users with fewer than 3 interactions",
            split.skipped_short_users
        ));
    }
    if split.test.is_empty() {
        bail!(
            "data.dataset `{}`: no user has the 3 interactions leave-one-out needs; the test split is empty",
            config.data.dataset
        );
    }
    Ok((data, split))
}

/// Where user and item profiles come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProfileSource {
    /// MiniLM vectors of the items' own text; users = mean of their training items' vectors.
    Text,
    /// Matrices computed elsewhere (`user_file`, `item_file`).
    File,
    /// Profiles written by SmolLM2-135M-Instruct, embedded with MiniLM (see `profiles.rs`).
    Llm,
}

/// The `[profiles]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfilesConfig {
    pub source: ProfileSource,
    /// `file` only: `[n_users, d]` matrix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_file: Option<PathBuf>,
    /// `file` only: `[n_items, d]` matrix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_file: Option<PathBuf>,
    /// `llm` only: prompts per generation batch (default 16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<usize>,
    /// `llm` only: most new tokens per profile (default 48).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_new: Option<usize>,
    /// `llm` only: training-item titles listed in a user's prompt (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_titles: Option<usize>,
    /// A control (default false): shuffle the profiles among the users and among the items with
    /// the run's seed, so each node gets another node's profile. Whatever gain survives it does
    /// not come from what the profiles say.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub permute: bool,
}

impl ProfilesConfig {
    pub fn validate(&self) -> Result<()> {
        let files = self.user_file.is_some() || self.item_file.is_some();
        match self.source {
            ProfileSource::File if self.user_file.is_none() || self.item_file.is_none() => {
                bail!("profiles: source = \"file\" needs both user_file and item_file")
            }
            ProfileSource::Text | ProfileSource::Llm if files => {
                bail!("profiles.user_file / item_file: only source = \"file\" reads files")
            }
            _ => {}
        }
        let llm_only = self.batch_size.is_some() || self.max_new.is_some() || self.user_titles.is_some();
        if llm_only && self.source != ProfileSource::Llm {
            bail!("profiles.batch_size / max_new / user_titles: only source = \"llm\" generates text");
        }
        if self.batch_size == Some(0) || self.max_new == Some(0) {
            bail!("profiles.batch_size and profiles.max_new must be at least 1");
        }
        Ok(())
    }
}

/// `rlmrec:NAME` → `$GENREC_DATA_DIR/rlmrec/NAME`; a directory with the three split files →
/// itself; anything else → `None` (a dataset to load and split).
pub fn presplit_dir(name: &str) -> Result<Option<PathBuf>> {
    if let Some(rest) = name.strip_prefix("rlmrec:") {
        let root = std::env::var_os("GENREC_DATA_DIR")
            .filter(|d| !d.is_empty())
            .with_context(|| {
                format!("data.dataset `{name}`: set GENREC_DATA_DIR to the folder holding rlmrec/{rest}")
            })?;
        let dir = Path::new(&root).join("rlmrec").join(rest);
        if !dir.join("train.tsv").exists() {
            bail!("data.dataset `{name}`: {} has no train.tsv", dir.display());
        }
        return Ok(Some(dir));
    }
    let path = Path::new(name);
    Ok((path.is_dir() && path.join("train.tsv").exists()).then(|| path.to_path_buf()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    const BASE: &str = "name = \"t\"\n[data]\ndataset = \"synthetic\"\n[model]\nkind = \"pop\"\n";

    #[test]
    fn overrides_and_defaults() {
        let f = write(BASE);
        let c = ExperimentConfig::load(
            f.path(),
            &[
                "data.max_history=7".into(),
                "eval.ks=[1, 3]".into(),
                "data.dataset=synthetic:users=50".into(),
            ],
        )
        .unwrap();
        assert_eq!(c.data.max_history, 7);
        assert_eq!(c.eval.ks, [1, 3]);
        assert_eq!(c.data.dataset, "synthetic:users=50");
        assert_eq!(c.seed, 42);
    }

    #[test]
    fn bad_configs_name_the_field() {
        let f = write(BASE);
        for (set, want) in [
            ("data.colour=1", "unknown field `colour`"),
            ("model.kind=gpt", "unknown variant `gpt`"),
            ("model.depth=3", "unknown field `depth`"),
            ("data.max_history=0", "data.max_history"),
            ("data.max_history=-1", "max_history"),
            ("eval.ks=[]", "eval.ks"),
            ("data.dataset=ml-20m", "data.dataset: unknown dataset `ml-20m`"),
            ("nonsense", "expected path.to.key=value"),
            ("name.x=1", "`name` is not a table"),
            (&format!("{}=1", vec!["a"; 5000].join(".")), "5000 levels"),
        ] {
            let e = format!("{:#}", ExperimentConfig::load(f.path(), &[set.into()]).unwrap_err());
            assert!(e.contains(want), "{set}: {e}");
        }
        // NaN and inf in every model's float fields are named errors, never a panic later (a NaN
        // T5 norm epsilon reached Burn's RMSNorm constructor, which panics).
        for (kind, set, want) in [
            ("tiger", "model.t5.norm_eps=nan", "model.t5.norm_eps = NaN"),
            ("tiger", "model.t5.dropout=nan", "model.t5.dropout"),
            ("sasrec", "model.dropout=inf", "model.dropout"),
            ("rpg", "model.temperature=nan", "model.temperature"),
            ("rpg", "model.resid_dropout=nan", "model.resid_dropout"),
            ("lightgcn", "model.reg=nan", "model.reg"),
            ("simgcl", "model.noise_eps=nan", "model.noise_eps"),
            ("simgcl", "model.cl_temperature=inf", "model.cl_temperature"),
        ] {
            let overrides = [format!("model.kind=\"{kind}\""), set.to_string()];
            let e = format!("{:#}", ExperimentConfig::load(f.path(), &overrides).unwrap_err());
            assert!(e.contains(want), "{kind} {set}: {e}");
        }
    }
}
