//! The generic leave-one-out job: every model of that protocol (popularity, SASRec, TIGER, and
//! the ones the registry gains) is prepared, fitted on the chosen backend, evaluated on every
//! validation and test user and reported the same way.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use burn::tensor::backend::AutodiffBackend;
use genrec_eval::report::MetricsReport;
use genrec_eval::{evaluate, Evaluation};

use crate::backend::{dispatch, BackendJob};
use crate::config::{prepare_data, ExperimentConfig};
use crate::registry::{Fitted, LooContext, LooModel};
use crate::rundir::{train_seconds, write_curves_and_plots, write_reports, Log, RunOptions};

/// Fits `model` (kind `kind`) as `config` says into `dir`, evaluates it and writes the reports.
pub fn run<M: LooModel>(
    config: &ExperimentConfig,
    kind: &str,
    model: &M,
    dir: &Path,
    options: &RunOptions,
    log: &mut Log,
) -> Result<()> {
    let (data, split) = prepare_data(config, log)?;
    config.eval.validate(split.n_items)?;
    let started = Instant::now();
    let ctx = LooContext {
        dataset: &config.data.dataset,
        seed: config.seed,
        train: &config.train,
        eval: &config.eval,
        index: config.index.as_ref(),
        data: &data,
        split: &split,
        dir,
        device: options.device,
        resume: options.resume.is_some(),
        log,
    };
    let Fitted {
        model,
        best,
        curves,
        setup_seconds,
    } = dispatch(options.device, FitJob { model, ctx })?;
    // An item index built first is not training.
    let train_seconds = train_seconds(started.elapsed().as_secs_f64() - setup_seconds, &curves);
    if let Some((epoch, valid)) = best {
        log.line(&format!(
            "best epoch {epoch} (valid {} {valid:.4})",
            config.train.metric
        ));
    }
    let counts = split.train_item_counts();
    let started = Instant::now();
    let valid = evaluate(model.as_ref(), &split.valid, Some(&counts), &config.eval, config.seed)?;
    let test = evaluate(model.as_ref(), &split.test, Some(&counts), &config.eval, config.seed)?;
    let eval_seconds = started.elapsed().as_secs_f64();
    if config.eval.write_lists {
        write_lists(&dir.join("lists_test.jsonl"), &split.test, &test.lists)?;
    }
    log.line(&format!(
        "trained {kind} in {train_seconds:.1}s, evaluated in {eval_seconds:.1}s"
    ));
    write_curves_and_plots(dir, &curves, &config.train.metric)?;
    let report = |split_name: &str, e: &Evaluation| MetricsReport {
        experiment: config.name.clone(),
        dataset: config.data.dataset.clone(),
        model: kind.into(),
        split: split_name.into(),
        seed: config.seed,
        users: e.users,
        metrics: e.metrics.clone(),
        invalid: e.invalid.clone().unwrap_or_default(),
        ranking: e.ranking.clone(),
        exclude_history: config.eval.exclude_history,
        mask: None,
        train_seconds,
        eval_seconds,
        device: options.device.to_string(),
        groups: e.groups.clone(),
    };
    let table = write_reports(dir, report("valid", &valid), report("test", &test), &test.outcomes)?;
    log.line(&format!("\n{table}"));
    Ok(())
}

/// [`LooModel::fit`] on the chosen backend.
struct FitJob<'a, M> {
    model: &'a M,
    ctx: LooContext<'a>,
}

impl<M: LooModel> BackendJob for FitJob<'_, M> {
    type Output = Result<Fitted>;

    fn run<B: AutodiffBackend>(mut self, device: B::Device) -> Self::Output {
        self.model.fit::<B>(&mut self.ctx, &device)
    }
}

/// The test users' top-K lists in the `genrec evaluate --lists` format, one JSON line per user
/// (atomically: a temporary file, then a rename).
fn write_lists(path: &Path, cases: &[genrec_data::EvalCase], lists: &[Vec<genrec_data::ItemId>]) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("jsonl.tmp");
    let mut out =
        std::io::BufWriter::new(std::fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?);
    for (case, ranked) in cases.iter().zip(lists) {
        let line = serde_json::json!({
            "user": case.user,
            "target": case.target,
            "ranked": ranked,
            "history": case.history,
        });
        writeln!(out, "{line}").with_context(|| format!("writing {}", tmp.display()))?;
    }
    out.flush().with_context(|| format!("writing {}", tmp.display()))?;
    drop(out);
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}
