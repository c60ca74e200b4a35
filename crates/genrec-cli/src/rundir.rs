//! The run directory both protocols write: `log.txt`, `config.toml`, `metrics.json` /
//! `metrics_valid.json`, `per_user.jsonl`, `curves.csv` with its plots — and the results table.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use genrec_eval::report::{markdown_table, MetricsReport, Row};
use genrec_train::CurvePoint;
use serde::Serialize;

use crate::backend::DeviceKind;

/// Options of `genrec run` beyond the config file.
pub struct RunOptions {
    pub out: PathBuf,
    pub device: DeviceKind,
    /// Continue this run directory from its `resume/` state instead of starting a new run.
    pub resume: Option<PathBuf>,
}

/// Creates `<out>/<name>-<UTC time>` (a suffix when that exists), or checks that `resume` can be
/// continued; writes the resolved `config` into it either way (overrides given with `--resume`,
/// e.g. more epochs, become part of the run's config).
pub fn create(out: &Path, name: &str, resume: Option<&Path>, config: &impl Serialize) -> Result<PathBuf> {
    let dir = match resume {
        Some(dir) => {
            if genrec_train::resume_state_dir(dir)?.is_none() {
                bail!(
                    "{}: no resume/state.json (only runs that completed at least one epoch of training can be resumed)",
                    dir.display()
                );
            }
            dir.to_path_buf()
        }
        None => {
            let mut dir = out.join(format!("{name}-{}", utc_stamp()));
            // Two runs in the same second get distinct directories.
            let mut n = 1;
            while dir.exists() {
                n += 1;
                dir = out.join(format!("{name}-{}-{n}", utc_stamp()));
            }
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            dir
        }
    };
    std::fs::write(dir.join("config.toml"), toml::to_string_pretty(config)?)?;
    Ok(dir)
}

/// log.txt plus stderr.
pub struct Log {
    file: Option<std::fs::File>,
}

impl Log {
    /// `append` keeps what a resumed run already logged.
    pub fn new(path: Option<&Path>, append: bool) -> Result<Self> {
        let open = |p: &Path| {
            std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .append(append)
                .truncate(!append)
                .open(p)
                .with_context(|| format!("opening {}", p.display()))
        };
        let file = path.map(open).transpose()?;
        Ok(Log { file })
    }

    pub fn line(&mut self, msg: &str) {
        eprintln!("{msg}");
        if let Some(f) = &mut self.file {
            let _ = writeln!(f, "{msg}");
        }
    }
}

/// `YYYYMMDD-HHMMSS` in UTC, from the system clock (civil-from-days, Howard Hinnant's algorithm).
pub fn utc_stamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + (month <= 2) as i64;
    format!(
        "{year:04}{month:02}{day:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

pub fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(value)? + "\n")
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// A run's training time: the curves' clock continues across `--resume`, so a resumed run reports
/// its whole training time (the last curve point), not just the `elapsed` part after the restart.
pub fn train_seconds(elapsed: f64, curves: &[CurvePoint]) -> f64 {
    curves.last().map_or(elapsed, |p| p.seconds.max(elapsed))
}

/// curves.csv, loss.svg and valid.svg of a trained model (nothing for an untrained one).
pub fn write_curves_and_plots(dir: &Path, curves: &[CurvePoint], metric: &str) -> Result<()> {
    if curves.is_empty() {
        return Ok(());
    }
    write_curves(&dir.join("curves.csv"), curves)?;
    let loss: Vec<(f64, f64)> = curves.iter().map(|p| (p.epoch as f64, p.loss)).collect();
    let valid: Vec<(f64, f64)> = curves
        .iter()
        .filter_map(|p| p.valid.map(|v| (p.epoch as f64, v)))
        .collect();
    std::fs::write(
        dir.join("loss.svg"),
        crate::plot::line_chart("training loss", "epoch", "loss", &loss),
    )?;
    std::fs::write(
        dir.join("valid.svg"),
        crate::plot::line_chart(&format!("validation {metric}"), "epoch", metric, &valid),
    )?;
    Ok(())
}

fn write_curves(path: &Path, curves: &[CurvePoint]) -> Result<()> {
    let mut text = String::from("epoch,step,loss,valid,seconds\n");
    for p in curves {
        let valid = p.valid.map(|v| v.to_string()).unwrap_or_default();
        text += &format!("{},{},{},{},{:.3}\n", p.epoch, p.step, p.loss, valid, p.seconds);
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// One JSON object per test user (`user`, `target`, `rank`): the input of `genrec compare`.
fn write_per_user<O: Serialize>(path: &Path, outcomes: &[O]) -> Result<()> {
    let mut text = String::new();
    for o in outcomes {
        text += &serde_json::to_string(o)?;
        text.push('\n');
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// `metrics.json` (test), `metrics_valid.json` and `per_user.jsonl` (the test users' outcomes, for
/// `genrec compare`); returns the valid/test results table.
pub fn write_reports<O: Serialize>(
    dir: &Path,
    valid: MetricsReport,
    test: MetricsReport,
    test_outcomes: &[O],
) -> Result<String> {
    write_json(&dir.join("metrics.json"), &test)?;
    write_json(&dir.join("metrics_valid.json"), &valid)?;
    write_per_user(&dir.join("per_user.jsonl"), test_outcomes)?;
    let rows = [
        Row {
            label: "valid".into(),
            report: valid,
        },
        Row {
            label: "test".into(),
            report: test,
        },
    ];
    Ok(markdown_table(&rows, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_shape() {
        let s = utc_stamp();
        assert_eq!(s.len(), 15);
        assert!(s.starts_with("20"));
    }
}
