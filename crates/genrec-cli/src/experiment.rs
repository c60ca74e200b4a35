//! `genrec run`: one experiment end to end — the run directory, then the model's protocol
//! (the generic leave-one-out job, or the hold-out job of graph CF models) as the registry says.

use std::path::PathBuf;

use anyhow::Result;
use genrec_graph::{Backbone, GraphCfConfig};

use crate::config::ExperimentConfig;
use crate::registry::{LooModel, ModelVisitor};
use crate::rundir::{self, Log, RunOptions};

/// Runs one experiment end to end and returns its run directory.
pub fn run(config: &ExperimentConfig, options: &RunOptions) -> Result<PathBuf> {
    let dir = rundir::create(&options.out, &config.name, options.resume.as_deref(), config)?;
    let mut log = Log::new(Some(&dir.join("log.txt")), options.resume.is_some())?;
    log.line(&format!(
        "{} {} (seed {}, device {}) -> {}",
        if options.resume.is_some() { "resume" } else { "run" },
        config.name,
        config.seed,
        options.device,
        dir.display()
    ));
    config.model.visit(Job {
        config,
        dir: &dir,
        options,
        log: &mut log,
    })?;
    Ok(dir)
}

/// Runs the model under its protocol.
struct Job<'a> {
    config: &'a ExperimentConfig,
    dir: &'a std::path::Path,
    options: &'a RunOptions,
    log: &'a mut Log,
}

impl ModelVisitor for Job<'_> {
    type Output = Result<()>;

    fn leave_one_out<M: LooModel>(self, kind: &'static str, model: &M) -> Result<()> {
        crate::loo::run(self.config, kind, model, self.dir, self.options, self.log)
    }

    fn hold_out(self, _: &'static str, backbone: Backbone, model: &GraphCfConfig) -> Result<()> {
        crate::graph_run::run(self.config, backbone, model, self.dir, self.options, self.log)
    }
}
