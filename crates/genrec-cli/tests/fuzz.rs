//! Property tests of every text and binary input parser (issue 26): seeded random mutations of a
//! valid input — byte flips, truncations, deleted ranges, repeated lines and inserted troublemakers
//! (BOM, CR, NUL, NaN, numbers beyond u64 / f64, brackets, quotes) — fed to the parser, which must
//! return `Ok` or an error and never panic. 1,500 cases per input kind, 15,000 in all (atomic
//! `.inter` and `.item`, GGUF, CSV, P5 `.txt`, ranked-list JSONL, `.npy`, `.safetensors`, experiment TOML with `--set`
//! overrides, `index.json`), about two seconds.
//!
//! A case that panics is written to `target/fuzz-crashers/` (with the seed that made it) and the
//! test fails naming it: keep such a file as a regression test beside the parser's own tests.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use genrec::config::ExperimentConfig;
use genrec_eval::EvalConfig;
use genrec_text::Matrix;
use genrec_tokenize::ItemIndex;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const CASES: u64 = 1_500;

const TROUBLE: &[&str] = &[
    "\u{feff}",
    "\r",
    "\n",
    "\r\n",
    "\t",
    ",",
    "\"",
    "\0",
    "nan",
    "NaN",
    "inf",
    "-inf",
    "-1",
    "1e309",
    "18446744073709551616",
    "4294967296",
    "99999999999999999999999999",
    "[",
    "]",
    "{",
    "}",
    ":",
    "=",
    " ",
    "é",
    "user_id:token",
    "[[",
    "a.b.c.d",
];

/// One to four random edits of `input`.
fn mutate(input: &[u8], rng: &mut ChaCha8Rng) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        let at = rng.random_range(0..=out.len());
        match rng.random_range(0..6) {
            0 if !out.is_empty() => {
                let i = rng.random_range(0..out.len());
                out[i] ^= 1 << rng.random_range(0..8);
            }
            1 => out.truncate(at),
            2 if at < out.len() => {
                let end = rng.random_range(at..=out.len());
                out.drain(at..end);
            }
            3 => {
                // Repeat a line (a header, say) somewhere else.
                let text = String::from_utf8_lossy(&out).into_owned();
                let lines: Vec<&str> = text.lines().collect();
                if !lines.is_empty() {
                    let line = format!("{}\n", lines[rng.random_range(0..lines.len())]);
                    out.splice(at..at, line.into_bytes());
                }
            }
            4 => {
                let word = TROUBLE[rng.random_range(0..TROUBLE.len())];
                out.splice(at..at, word.bytes());
            }
            _ => {
                // Overwrite 8 bytes with a large little-endian integer (binary length fields).
                let big: u64 = if rng.random_bool(0.5) {
                    u64::MAX
                } else {
                    rng.random::<u64>()
                };
                let end = (at + 8).min(out.len());
                out.splice(at..end, big.to_le_bytes());
            }
        }
    }
    out
}

/// Runs `parse` (true when the input was accepted) on `CASES` mutations of `seed_input` written to
/// `file_name`; fails on a panic.
fn fuzz(name: &str, file_name: &str, seed_input: &[u8], parse: impl Fn(&Path) -> bool) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(file_name);
    // The unmutated input parses (a harness whose seed input is already broken tests nothing).
    std::fs::write(&path, seed_input).unwrap();
    assert!(parse(&path), "{name}: the unmutated input is refused");
    let mut crashers = Vec::new();
    for case in 0..CASES {
        let mut rng = ChaCha8Rng::seed_from_u64(case);
        let input = mutate(seed_input, &mut rng);
        std::fs::write(&path, &input).unwrap();
        if catch_unwind(AssertUnwindSafe(|| parse(&path))).is_err() {
            let keep = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fuzz-crashers");
            std::fs::create_dir_all(&keep).unwrap();
            let file = keep.join(format!("{name}-case{case}-{file_name}"));
            std::fs::write(&file, &input).unwrap();
            crashers.push(file);
        }
    }
    assert!(
        crashers.is_empty(),
        "{name}: {} panics, inputs kept in {crashers:?}",
        crashers.len()
    );
}

#[test]
fn atomic_inter_files() {
    let seed = b"user_id:token\titem_id:token\trating:float\ttimestamp:float\n\
                 1\t10\t5\t100\n1\t11\t4\t101\n1\t12\t3\t102\n2\t10\t3\t103\n2\t12\t1\t104\n2\t13\t2\t105\n";
    fuzz("inter", "d.inter", seed, |p| {
        genrec_data::atomic::load_interactions(p).is_ok()
    });
}

#[test]
fn csv_files() {
    let seed = b"user,item,timestamp\nu1,a,1\nu1,b,2\nu1,c,3\nu2,a,4\nu2,c,5\nu2,d,6\n";
    fuzz("csv", "d.csv", seed, |p| genrec_data::csv::load(p).is_ok());
}

#[test]
fn p5_sequence_files() {
    let seed = b"1 2 3 4\n2 3 5 6\n3 1 2 6 7\n4 8 9 10\n";
    fuzz("p5", "sequential_data.txt", seed, |p| {
        genrec_data::amazon::load_sequences(p, "t").is_ok()
    });
}

#[test]
fn ranked_list_files() {
    let seed = b"{\"user\": 0, \"target\": 3, \"ranked\": [3, 1, 2], \"history\": [0, 1]}\n\
                 {\"user\": 1, \"target\": 5, \"ranked\": [4, 2, 7]}\n";
    let config = EvalConfig {
        ks: vec![1, 2],
        ..EvalConfig::default()
    };
    fuzz("lists", "lists.jsonl", seed, |p| {
        let free = genrec_eval::lists::evaluate_lists_file(p, None, &config).is_ok();
        genrec_eval::lists::evaluate_lists_file(p, Some(8), &config).is_ok() && free
    });
}

#[test]
fn matrix_files() {
    let dir = tempfile::tempdir().unwrap();
    let matrix = Matrix::new(3, 4, (0..12).map(|i| i as f32 * 0.5).collect());
    for ext in ["npy", "safetensors"] {
        let path = dir.path().join(format!("m.{ext}"));
        matrix.save(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        fuzz(ext, &format!("m.{ext}"), &bytes, |p| {
            let loaded = Matrix::load(p).is_ok();
            Matrix::load_checked(p, 3, Some(4)).is_ok() && loaded
        });
    }
}

#[test]
fn experiment_tomls_and_overrides() {
    let seed = b"name = \"e\"\nseed = 3\n[data]\ndataset = \"synthetic:users=50,items=30\"\nmax_history = 10\n\
                 [model]\nkind = \"sasrec\"\nd_model = 16\n[train]\nepochs = 2\nlr = 0.001\n[eval]\nks = [1, 10]\n";
    let overrides = [
        "train.lr=nan",
        "model.d_model=99999999999999999999",
        "a.b.c.d.e=1",
        "eval.ks=[]",
        "train.patience=0",
        "model.kind=\"tiger\"",
        "data.max_history=-1",
        "=",
    ];
    let case = std::sync::atomic::AtomicUsize::new(0);
    fuzz("toml", "exp.toml", seed, |p| {
        let i = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // The first call (the unmutated file) without overrides, then each override in turn.
        let set: Vec<String> = overrides
            .iter()
            .skip(i % 9)
            .take((i > 0) as usize)
            .map(|s| s.to_string())
            .collect();
        ExperimentConfig::load(p, &set).is_ok()
    });
}

#[test]
fn atomic_item_files() {
    let seed = b"item_id:token\ttitle:token_seq\tcategories:token_seq\tbrand:token\n\
                 10\tA red lipstick\tBeauty Makeup\tAcme\n11\tShampoo\tBeauty Hair\tBrandB\n";
    fuzz("item", "d.item", seed, |p| genrec_data::atomic::load_items(p).is_ok());
}

/// A GGUF v3 file with one metadata entry (`general.alignment` = 32) and one 4-element F32
/// tensor, laid out by hand from the format's description.
fn tiny_gguf() -> Vec<u8> {
    let mut b = Vec::new();
    let string = |b: &mut Vec<u8>, s: &str| {
        b.extend((s.len() as u64).to_le_bytes());
        b.extend(s.as_bytes());
    };
    b.extend(b"GGUF");
    b.extend(3u32.to_le_bytes());
    b.extend(1u64.to_le_bytes()); // tensors
    b.extend(1u64.to_le_bytes()); // metadata entries
    string(&mut b, "general.alignment");
    b.extend(4u32.to_le_bytes()); // UINT32
    b.extend(32u32.to_le_bytes());
    string(&mut b, "w");
    b.extend(1u32.to_le_bytes()); // dimensions
    b.extend(4u64.to_le_bytes());
    b.extend(0u32.to_le_bytes()); // F32
    b.extend(0u64.to_le_bytes()); // offset in the data section
    b.resize(b.len().div_ceil(32) * 32, 0);
    for v in [1.0f32, -2.0, 0.5, 4.0] {
        b.extend(v.to_le_bytes());
    }
    b
}

#[test]
fn gguf_files() {
    fuzz("gguf", "m.gguf", &tiny_gguf(), |p| {
        let Ok(file) = genrec_llm::GgufFile::open(p) else {
            return false;
        };
        let names: Vec<String> = file.tensors().iter().map(|t| t.name.clone()).collect();
        names.iter().all(|n| file.tensor_f32(n).is_ok())
    });
}

#[test]
fn item_index_files() {
    let seed = b"{\"method\":\"opq2x4\",\"codebook_sizes\":[4,4],\"codes\":[[0,1],[1,2],[3,3]],\"unordered\":true}";
    fuzz("index", "index.json", seed, |p| {
        let Ok(index) = ItemIndex::load(p) else { return false };
        // What a loaded index promises: every tuple is found again.
        for item in 0..index.n_items() as u32 {
            assert_eq!(index.item(index.codes(item)), Some(item));
        }
        true
    });
}

#[test]
#[should_panic(expected = "panics, inputs kept")]
fn the_harness_catches_a_panic() {
    // A parser that panics on a NUL byte: some mutations insert one, and the harness must say so.
    fuzz("probe", "probe.txt", b"a,b\nc,d\n", |p| {
        assert!(!std::fs::read(p).unwrap().contains(&0), "NUL");
        true
    });
}
