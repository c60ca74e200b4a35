//! P5 / OpenP5 ("How to Index Item IDs for Recommendation Foundation Models", Hua et al., SIGIR-AP
//! 2023): recommendation as text-to-text over any item index. Built so far: the prompts, the
//! word-level vocabulary with whole-word ids, and the guard against the consecutive-id leak
//! ([`prompts`]); the T5 and SmolLM2 models that read them are not built yet.

pub mod prompts;
