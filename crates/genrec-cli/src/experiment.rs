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
    let outcome = config.model.visit(Job {
        config,
        dir: &dir,
        options,
        log: &mut log,
    });
    if let Err(e) = outcome {
        // Say what the failed run left behind rather than leave a silent half-made directory.
        log.line(&format!("failed: {e:#}"));
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|f| f.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        return Err(anyhow::anyhow!(
            "{e:#}\n(the run directory {} is left holding {}: `genrec run --resume` it if training had begun, \
             or delete it)",
            dir.display(),
            files.join(", ")
        ));
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::DeviceKind;
    use crate::config::{DataConfig, Renumber};
    use crate::registry::{ModelConfig, PopConfig};
    use genrec_seqrec::SasRecConfig;
    use genrec_train::TrainConfig;

    /// An experiment built as a value in Rust (no TOML file) runs end to end through the library.
    #[test]
    fn an_experiment_value_runs_from_rust() {
        let out = tempfile::tempdir().unwrap();
        let data = DataConfig {
            dataset: "synthetic:users=80,items=30".into(),
            user_kcore: 0,
            item_kcore: 0,
            renumber: Renumber::Auto,
            max_history: 10,
            holdout: None,
        };
        let options = RunOptions {
            out: out.path().to_path_buf(),
            device: DeviceKind::Flex,
            resume: None,
        };
        let pop = ExperimentConfig {
            name: "lib-pop".into(),
            seed: 3,
            data: data.clone(),
            model: ModelConfig::Pop(PopConfig {}),
            index: None,
            train: TrainConfig::default(),
            eval: genrec_eval::EvalConfig {
                ks: vec![5, 10],
                ..Default::default()
            },
            profiles: None,
        };
        pop.validate().unwrap();
        let dir = run(&pop, &options).unwrap();
        let metrics: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("metrics.json")).unwrap()).unwrap();
        assert_eq!(metrics["model"], "pop");
        assert!(dir.join("model.json").exists() && dir.join("per_user.jsonl").exists());
        // A learned model through the same generic job: curves and a checkpoint appear.
        let sasrec = ExperimentConfig {
            name: "lib-sasrec".into(),
            model: ModelConfig::Sasrec(SasRecConfig {
                d_model: 16,
                n_layers: 1,
                ..SasRecConfig::default()
            }),
            train: TrainConfig {
                epochs: 2,
                batch_size: 32,
                ..TrainConfig::default()
            },
            ..pop
        };
        let dir = run(&sasrec, &options).unwrap();
        for f in [
            "curves.csv",
            "model.safetensors",
            "metrics_valid.json",
            "resume/state.json",
        ] {
            assert!(dir.join(f).exists(), "missing {f}");
        }
    }
}
