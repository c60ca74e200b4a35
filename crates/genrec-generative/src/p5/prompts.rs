//! P5's sequential-recommendation prompts as data (Geng et al., RecSys 2022; OpenP5's layout:
//! several *seen* templates for training, one or more *unseen* ones held out for evaluation), in
//! our own wording, and the word-level vocabulary a from-scratch T5 reads them with: special
//! tokens and every index level's code tokens first (genrec-tokenize's [`TokenLayout`], so the
//! decoder's trie is the index's), then the templates' words, then hashed user tokens.
//!
//! A filled prompt carries *whole-word ids* (P5): every word gets the next id, and all the code
//! tokens of one item (or the one token of a user) share theirs, so a model can tell which
//! sub-tokens make up one identifier. Id 0 is padding.
//!
//! The item identifiers come from any [`ItemIndex`] (random, sequential, collaborative, semantic,
//! hybrid): one token per code, as genrec-tokenize writes every index.

use std::collections::HashMap;

use genrec_data::{ItemId, UserId};
use genrec_tokenize::{ItemIndex, TokenLayout};

use crate::GenerativeError;

/// Training templates. Placeholders: `{user}` (the user's token), `{history}` (the history's item
/// identifiers, oldest first, separated by `,`).
pub const SEEN: &[&str] = &[
    "User {user} has interacted with {history} . What is the next item ?",
    "Here are the items user {user} chose , in order : {history} . Predict the item they choose next .",
    "Given the history {history} of user {user} , recommend the next item .",
    "User {user} bought {history} . Which item will user {user} buy next ?",
    "Sequence of user {user} : {history} . The following item is ?",
    "After {history} , what does user {user} want next ?",
];

/// Evaluation templates, never seen in training.
pub const UNSEEN: &[&str] =
    &["Knowing that user {user} went through {history} in this order , name the item that comes next ."];

/// One piece of a filled prompt.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    Word(String),
    Item(ItemId),
    User(UserId),
}

/// Splits a template into words and placeholders; `history` expands to its items separated by
/// `,` words.
pub fn fill(template: &str, user: UserId, history: &[ItemId]) -> Vec<Piece> {
    let mut pieces = Vec::new();
    for word in template.split_whitespace() {
        match word {
            "{user}" => pieces.push(Piece::User(user)),
            "{history}" => {
                for (i, &item) in history.iter().enumerate() {
                    if i > 0 {
                        pieces.push(Piece::Word(",".into()));
                    }
                    pieces.push(Piece::Item(item));
                }
            }
            w => pieces.push(Piece::Word(w.to_string())),
        }
    }
    pieces
}

/// The T5 vocabulary of a P5 model: special tokens and code tokens ([`TokenLayout`]), the words of
/// every template, then `user_tokens` hashed user tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct WordVocabulary {
    pub layout: TokenLayout,
    words: HashMap<String, u32>,
    first_user: u32,
    user_tokens: u32,
}

impl WordVocabulary {
    /// Words of `templates` (placeholders excluded) after `index`'s code tokens.
    pub fn new(index: &ItemIndex, templates: &[&str], user_tokens: u32) -> Self {
        let layout = TokenLayout::new(&index.codebook_sizes);
        let mut words = HashMap::new();
        let mut next = layout.vocab_size();
        for t in templates {
            for w in t.split_whitespace().chain([","]) {
                if !w.starts_with('{') && !words.contains_key(w) {
                    words.insert(w.to_string(), next);
                    next += 1;
                }
            }
        }
        WordVocabulary {
            layout,
            words,
            first_user: next,
            user_tokens,
        }
    }

    /// Tokens in all.
    pub fn size(&self) -> u32 {
        self.first_user + self.user_tokens
    }

    /// The token of user `user`'s hash bucket (multiplicative hashing), or none without user tokens.
    pub fn user_token(&self, user: UserId) -> Option<u32> {
        (self.user_tokens > 0).then(|| {
            self.first_user + ((user as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as u32 % self.user_tokens
        })
    }

    /// Tokens and whole-word ids of a filled prompt; a user piece without user tokens is left
    /// out. Errors name a word no template has.
    pub fn encode(&self, pieces: &[Piece], index: &ItemIndex) -> Result<(Vec<u32>, Vec<u32>), GenerativeError> {
        let (mut tokens, mut whole) = (Vec::new(), Vec::new());
        let mut word = 0u32;
        for piece in pieces {
            let ids: Vec<u32> = match piece {
                Piece::Word(w) => vec![*self.words.get(w).ok_or_else(|| {
                    GenerativeError::config(
                        "model.templates",
                        format!("the word `{w}` is in no template's vocabulary"),
                    )
                })?],
                Piece::Item(item) => self.layout.tokens(index.codes(*item)),
                Piece::User(user) => self.user_token(*user).into_iter().collect(),
            };
            if ids.is_empty() {
                continue;
            }
            word += 1;
            whole.extend(std::iter::repeat_n(word, ids.len()));
            tokens.extend(ids);
        }
        Ok((tokens, whole))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use genrec_data::synthetic::SyntheticConfig;
    use genrec_data::{LeaveOneOut, SplitConfig};

    fn index() -> ItemIndex {
        ItemIndex::new("t", vec![3, 4], (0..12u32).map(|i| vec![i / 4, i % 4]).collect()).unwrap()
    }

    #[test]
    fn prompts_encode_with_whole_word_ids_by_hand() {
        let index = index();
        let vocab = WordVocabulary::new(&index, &[SEEN[4]], 4);
        // Specials 0..4, codes 4..11 (3 + 4), then "Sequence", "of", "user", ":", ".", "The",
        // "following", "item", "is", "?", "," from 11, then 4 user tokens from 22.
        assert_eq!(vocab.size(), 4 + 7 + 11 + 4);
        let pieces = fill(SEEN[4], 9, &[5, 2]);
        assert_eq!(pieces[3], Piece::User(9), "{pieces:?}");
        let (tokens, whole) = vocab.encode(&pieces, &index).unwrap();
        let user = vocab.user_token(9).unwrap();
        assert!((22..26).contains(&user));
        // Sequence of user <u> : <a1><b1> , <a0><b2> . The following item is ?
        assert_eq!(tokens, [11, 12, 13, user, 14, 5, 8, 21, 4, 9, 15, 16, 17, 18, 19, 20]);
        assert_eq!(whole, [1, 2, 3, 4, 5, 6, 6, 7, 8, 8, 9, 10, 11, 12, 13, 14]);
        let bare = WordVocabulary::new(&index, &[SEEN[4]], 0);
        let (tokens, _) = bare.encode(&pieces, &index).unwrap();
        assert_eq!(tokens.len(), 15, "no user tokens: the user piece is left out");
        let err = bare
            .encode(&[Piece::Word("hello".into())], &index)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`hello`"), "{err}");
    }

    #[test]
    fn every_template_has_a_history_and_unseen_ones_are_new() {
        for t in SEEN.iter().chain(UNSEEN) {
            assert!(t.contains("{history}"), "{t}");
        }
        assert!(UNSEEN.iter().all(|u| !SEEN.contains(u)));
        assert!(SEEN.len() >= 5);
    }

    /// P5's consecutive-id leak (jeykigung/P5 PR #3): items numbered by first appearance over
    /// whole sequences, test items included, make a user's test item often "the largest id in the
    /// history + 1". Numbered over training sequences only (genrec-tokenize's `sequential`, what
    /// the `sid` index does), the target is no longer given away.
    #[test]
    fn sequential_ids_from_training_data_do_not_leak_the_target() {
        let data = SyntheticConfig {
            users: 300,
            items: 3000,
            min_length: 5,
            max_length: 12,
            ..SyntheticConfig::default()
        }
        .generate();
        let split = LeaveOneOut::new(&data, &SplitConfig { max_history: 50 });
        let number =
            |codes: &[Vec<u32>], item: ItemId| codes[item as usize].iter().fold(0u64, |n, &d| n * 10 + d as u64);
        let leaked = |codes: &[Vec<u32>]| -> f64 {
            let hits = split
                .test
                .iter()
                .filter(|c| {
                    let top = c.history.iter().map(|&i| number(codes, i)).max().unwrap_or(0);
                    number(codes, c.target) == top + 1
                })
                .count();
            hits as f64 / split.test.len() as f64
        };
        let (_, leaky) = genrec_tokenize::simple::sequential(&data.sequences, data.n_items(), 10).unwrap();
        let (_, ours) = genrec_tokenize::simple::sequential(&split.train, data.n_items(), 10).unwrap();
        let (leaky, ours) = (leaked(&leaky), leaked(&ours));
        eprintln!("target = max history id + 1: leaky numbering {leaky:.3}, training-only {ours:.3}");
        assert!(
            leaky > 0.3,
            "the leaky numbering gives the target away for {leaky:.2} of users"
        );
        assert!(
            ours < 0.05,
            "training-only numbering still gives {ours:.2} of targets away"
        );
    }
}
