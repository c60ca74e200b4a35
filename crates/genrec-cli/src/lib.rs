//! # genrec (the library behind the `genrec` command)
//!
//! Everything the command line does is a call here, so a researcher can run it from Rust:
//!
//! ```no_run
//! use genrec::config::ExperimentConfig;
//! use genrec::experiment::run;
//! use genrec::rundir::RunOptions;
//!
//! let config = ExperimentConfig::load("experiments/pop-ml100k.toml".as_ref(), &["seed=1".into()])?;
//! let options = RunOptions {
//!     out: "runs".into(),
//!     device: genrec::backend::DeviceKind::Flex,
//!     resume: None,
//! };
//! let dir = run(&config, &options)?; // runs/pop-ml100k-<time>/ with metrics.json, log.txt, …
//! # Ok::<(), anyhow::Error>(())
//! ```
//!
//! - [`config`]: the experiment TOML schema, `--set` overrides, checks, data preparation;
//! - [`registry`]: every model kind and its protocol; how a model plugs in ([`registry::LooModel`]);
//! - [`experiment`]: `run` one experiment end to end; [`loo`] and [`graph_run`]: the two protocol jobs;
//! - [`rundir`]: the run directory, its reports and plots;
//! - [`backend`]: `--device` → a Burn backend; [`features`], [`tokenize`], [`llm`]: the other commands.
//!
//! `docs/architecture.md` has the map of the crates and how to add a model.

pub mod backend;
pub mod config;
pub mod experiment;
pub mod features;
pub mod graph_run;
pub mod llm;
pub mod loo;
pub mod plot;
pub mod registry;
pub mod rundir;
pub mod tokenize;
