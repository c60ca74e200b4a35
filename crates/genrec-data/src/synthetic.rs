//! A deterministic synthetic dataset with the structure real data has, so tests and benches need
//! no download: items belong to latent topics and carry text-like titles and attribute ids (topic
//! category + brand); each user walks a topic-level Markov chain (mostly staying on a topic,
//! sometimes jumping to a "neighbouring" one) and picks items within a topic by a Zipf-like
//! popularity. A sequence model can learn the transitions; popularity alone cannot.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::{ItemInfo, SequenceDataset};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyntheticConfig {
    /// Number of users (default 1000).
    pub users: usize,
    /// Number of items (default 500).
    pub items: usize,
    /// Number of latent topics (default 10).
    pub topics: usize,
    /// Shortest sequence (default 5).
    pub min_length: usize,
    /// Longest sequence (default 30).
    pub max_length: usize,
    /// Probability of staying on the current topic at each step (default 0.7); otherwise the user
    /// moves to the next topic (`(t + 1) mod topics`) with probability 0.8 or a random one.
    pub stay: f64,
    /// Seed of the generator (default 0).
    pub seed: u64,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        SyntheticConfig {
            users: 1000,
            items: 500,
            topics: 10,
            min_length: 5,
            max_length: 30,
            stay: 0.7,
            seed: 0,
        }
    }
}

const WORDS: [&str; 16] = [
    "red", "soft", "mini", "classic", "deluxe", "travel", "organic", "matte", "glow", "pure", "bold", "daily", "fresh",
    "silk", "pro", "ultra",
];
const NOUNS: [&str; 10] = [
    "lipstick", "serum", "puzzle", "novel", "lamp", "kettle", "shampoo", "sneaker", "robot", "candle",
];

impl SyntheticConfig {
    /// A small configuration for unit tests (200 users, 100 items).
    pub fn small() -> Self {
        SyntheticConfig {
            users: 200,
            items: 100,
            topics: 5,
            ..Self::default()
        }
    }

    pub fn validate(&self) -> crate::Result<()> {
        let bad = |m: &str| Err(crate::DataError::Invalid(format!("synthetic config: {m}")));
        if self.users == 0 || self.items == 0 {
            return bad("`users` and `items` must be positive");
        }
        if self.topics == 0 || self.topics > self.items {
            return bad("`topics` must be between 1 and `items`");
        }
        if self.min_length < 1 || self.min_length > self.max_length {
            return bad("need 1 <= `min_length` <= `max_length`");
        }
        if !(0.0..=1.0).contains(&self.stay) {
            return bad("`stay` must be a probability in [0, 1]");
        }
        Ok(())
    }

    /// Generates the dataset; the same config always gives the same result.
    pub fn generate(&self) -> SequenceDataset {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let topic_of = |i: usize| i % self.topics;
        // Items of each topic, with Zipf-like weights 1/(rank+1).
        let by_topic: Vec<Vec<usize>> = (0..self.topics)
            .map(|t| (0..self.items).filter(|&i| topic_of(i) == t).collect())
            .collect();
        let items: Vec<ItemInfo> = (0..self.items)
            .map(|i| {
                let t = topic_of(i);
                let brand = rng.random_range(0..self.topics * 3);
                let title = format!(
                    "{} {} {} {}",
                    WORDS[rng.random_range(0..WORDS.len())],
                    WORDS[(t * 3) % WORDS.len()],
                    NOUNS[t % NOUNS.len()],
                    i
                );
                let mut info = ItemInfo {
                    attributes: vec![t as u32, (self.topics + brand) as u32],
                    ..ItemInfo::default()
                };
                info.fields.insert("title".into(), title);
                info.fields.insert("brand".into(), format!("brand{brand}"));
                info.fields.insert("categories".into(), format!("topic{t}"));
                info
            })
            .collect();
        let pick = |rng: &mut ChaCha8Rng, t: usize| -> u32 {
            let pool = &by_topic[t];
            let total: f64 = (1..=pool.len()).map(|r| 1.0 / r as f64).sum();
            let mut x = rng.random::<f64>() * total;
            for (r, &i) in pool.iter().enumerate() {
                x -= 1.0 / (r + 1) as f64;
                if x <= 0.0 {
                    return i as u32;
                }
            }
            *pool.last().unwrap() as u32
        };
        let mut sequences = Vec::with_capacity(self.users);
        for _ in 0..self.users {
            let len = rng.random_range(self.min_length..=self.max_length);
            let mut topic = rng.random_range(0..self.topics);
            let mut seq = Vec::with_capacity(len);
            for _ in 0..len {
                seq.push(pick(&mut rng, topic));
                if rng.random::<f64>() >= self.stay {
                    topic = if rng.random::<f64>() < 0.8 {
                        (topic + 1) % self.topics
                    } else {
                        rng.random_range(0..self.topics)
                    };
                }
            }
            sequences.push(seq);
        }
        SequenceDataset {
            name: "synthetic".into(),
            user_tokens: (0..self.users).map(|u| format!("u{u}")).collect(),
            item_tokens: (0..self.items).map(|i| format!("i{i}")).collect(),
            sequences,
            items,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_valid() {
        let c = SyntheticConfig::small();
        let a = c.generate();
        assert_eq!(a, c.generate());
        a.validate().unwrap();
        let other = SyntheticConfig { seed: 1, ..c.clone() }.generate();
        assert_ne!(a.sequences, other.sequences);
        assert!(a.sequences.iter().all(|s| (5..=30).contains(&s.len())));
    }

    #[test]
    fn transitions_follow_topics() {
        let c = SyntheticConfig::small();
        let d = c.generate();
        let (mut same, mut total) = (0, 0);
        for s in &d.sequences {
            for w in s.windows(2) {
                total += 1;
                same += (w[0] as usize % c.topics == w[1] as usize % c.topics) as usize;
            }
        }
        // Stay 0.7 plus random jumps landing on the same topic: well above the 1/5 of chance.
        let rate = same as f64 / total as f64;
        assert!(rate > 0.6 && rate < 0.85, "{rate}");
    }

    #[test]
    fn bad_config_named() {
        let c = SyntheticConfig {
            topics: 0,
            ..SyntheticConfig::small()
        };
        assert!(c.validate().unwrap_err().to_string().contains("`topics`"));
    }
}
