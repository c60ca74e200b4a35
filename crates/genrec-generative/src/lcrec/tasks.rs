//! LC-Rec's alignment tasks as data: instruction templates (our own wording, several per task)
//! and the builders that turn a leave-one-out split and an item index into prompt / response
//! pairs. Nothing here needs a model, so every prompt can be checked by hand.
//!
//! An item is written as its code tokens, one per level, `<a_12><b_3><c_200><d_7>` (LC-Rec's
//! spelling); a history as its last `max_history` items joined by `", "`, oldest first. The text
//! tasks use the item's title (`title`, or `movie_title` on MovieLens) and its details (brand and
//! categories on Amazon, year and genres on MovieLens).
//!
//! | task | input | response |
//! |---|---|---|
//! | `seqrec` | history codes | next item's codes |
//! | `item2index` | title and/or details | codes |
//! | `index2item` | codes | title |
//! | `fusion_title` | history codes | next item's title |
//! | `fusion_index` | history titles | next item's codes |
//!
//! LC-Rec's two intention tasks (item search, preference inference) need user intentions that
//! an LLM wrote for the reference's datasets; no split here has them, so they are absent.

use genrec_data::{ItemId, LeaveOneOut, SequenceDataset};
use genrec_tokenize::ItemIndex;
use serde::{Deserialize, Serialize};

use crate::GenerativeError;

/// One alignment task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    SeqRec,
    #[serde(rename = "item2index")]
    ItemToIndex,
    #[serde(rename = "index2item")]
    IndexToItem,
    FusionTitle,
    FusionIndex,
}

impl TaskKind {
    pub const ALL: [TaskKind; 5] = [
        TaskKind::SeqRec,
        TaskKind::ItemToIndex,
        TaskKind::IndexToItem,
        TaskKind::FusionTitle,
        TaskKind::FusionIndex,
    ];

    /// The config / report name.
    pub fn name(self) -> &'static str {
        match self {
            TaskKind::SeqRec => "seqrec",
            TaskKind::ItemToIndex => "item2index",
            TaskKind::IndexToItem => "index2item",
            TaskKind::FusionTitle => "fusion_title",
            TaskKind::FusionIndex => "fusion_index",
        }
    }

    /// The task's instruction templates and responses. Placeholders: `{history}` (codes),
    /// `{history_titles}`, `{item}` (codes), `{title}`, `{details}`.
    pub fn templates(self) -> &'static [Template] {
        match self {
            TaskKind::SeqRec => SEQREC,
            TaskKind::ItemToIndex => ITEM2INDEX,
            TaskKind::IndexToItem => INDEX2ITEM,
            TaskKind::FusionTitle => FUSION_TITLE,
            TaskKind::FusionIndex => FUSION_INDEX,
        }
    }

    /// Whether examples come from interaction histories (else from items).
    fn uses_histories(self) -> bool {
        matches!(self, TaskKind::SeqRec | TaskKind::FusionTitle | TaskKind::FusionIndex)
    }
}

/// An instruction and the response it asks for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Template {
    pub instruction: &'static str,
    pub response: &'static str,
}

const fn t(instruction: &'static str, response: &'static str) -> Template {
    Template { instruction, response }
}

/// Template 0 is the one validation and test prompts use.
pub const SEQREC: &[Template] = &[
    t(
        "A user has interacted with these items, oldest first: {history}. Which item will the user interact with next?",
        "{item}",
    ),
    t(
        "Here is a user's interaction history in order: {history}. Predict the next item.",
        "{item}",
    ),
    t(
        "Given the items {history}, in the order the user chose them, recommend the item they will choose next.",
        "{item}",
    ),
    t(
        "The user's past items are {history}. What should we recommend to this user now?",
        "{item}",
    ),
    t(
        "Based on this sequence of items: {history}, name the user's next item.",
        "{item}",
    ),
];

pub const ITEM2INDEX: &[Template] = &[
    t("Which item is titled \"{title}\"?", "{item}"),
    t("Give the identifier of the item called \"{title}\".", "{item}"),
    t("An item is described as: {details}. What is its identifier?", "{item}"),
    t("Find the item with these details: {details}.", "{item}"),
    t(
        "The item \"{title}\" has these details: {details}. Which item is it?",
        "{item}",
    ),
    t("Name the identifier of \"{title}\" ({details}).", "{item}"),
];

pub const INDEX2ITEM: &[Template] = &[
    t("What is the title of item {item}?", "{title}"),
    t("Tell me the name of the item {item}.", "{title}"),
    t("Item {item}: what is it called?", "{title}"),
    t("Which product or title does {item} stand for?", "{title}"),
];

pub const FUSION_TITLE: &[Template] = &[
    t("A user has interacted with these items, oldest first: {history}. What is the title of the item the user will interact with next?", "{title}"),
    t("Here is a user's history: {history}. Give the title of the next item they will choose.", "{title}"),
    t("After the items {history}, which item, by title, should we recommend?", "{title}"),
];

pub const FUSION_INDEX: &[Template] = &[
    t("A user has interacted with these items, by title, oldest first: {history_titles}. Which item will the user interact with next?", "{item}"),
    t("The user chose {history_titles}, in this order. Predict the identifier of their next item.", "{item}"),
    t("Given the titles {history_titles}, recommend the next item.", "{item}"),
];

/// Examples per epoch of each task, as a multiple of the task's natural size: the training
/// positions of the split for the history tasks, the items with the needed text for the item
/// tasks. `0` leaves a task out; fractions take a seeded subset, `2.0` repeats every example.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TaskMix {
    pub seqrec: f64,
    pub item2index: f64,
    pub index2item: f64,
    pub fusion_title: f64,
    pub fusion_index: f64,
}

impl Default for TaskMix {
    /// Every task once per epoch, as LC-Rec's scripts do (they subsample fusion only on their
    /// largest datasets).
    fn default() -> Self {
        TaskMix {
            seqrec: 1.0,
            item2index: 1.0,
            index2item: 1.0,
            fusion_title: 1.0,
            fusion_index: 1.0,
        }
    }
}

impl TaskMix {
    /// Only the sequential task: the ablation behind LC-Rec's claim that alignment helps.
    pub fn seqrec_only() -> Self {
        TaskMix {
            seqrec: 1.0,
            item2index: 0.0,
            index2item: 0.0,
            fusion_title: 0.0,
            fusion_index: 0.0,
        }
    }

    pub fn weight(&self, task: TaskKind) -> f64 {
        match task {
            TaskKind::SeqRec => self.seqrec,
            TaskKind::ItemToIndex => self.item2index,
            TaskKind::IndexToItem => self.index2item,
            TaskKind::FusionTitle => self.fusion_title,
            TaskKind::FusionIndex => self.fusion_index,
        }
    }

    /// Each weight finite, in `0..=100`, not all zero; the error names the field.
    pub fn validate(&self) -> Result<(), GenerativeError> {
        for task in TaskKind::ALL {
            let w = self.weight(task);
            if !w.is_finite() || !(0.0..=100.0).contains(&w) {
                return Err(GenerativeError::config(
                    format!("model.tasks.{}", task.name()),
                    format!("= {w} must be between 0 and 100"),
                ));
            }
        }
        if TaskKind::ALL.iter().all(|&t| self.weight(t) == 0.0) {
            return Err(GenerativeError::config(
                "model.tasks",
                "gives every task weight 0: nothing to train on",
            ));
        }
        Ok(())
    }
}

/// The text of every item that the tasks use.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemTexts {
    /// Title, trimmed of trailing punctuation as LC-Rec trims it; `None` when the item has none.
    pub titles: Vec<Option<String>>,
    /// Brand and categories (Amazon) or year and genres (MovieLens); `None` when empty.
    pub details: Vec<Option<String>>,
}

impl ItemTexts {
    /// Reads titles and details from the dataset's item fields.
    pub fn from_dataset(dataset: &SequenceDataset) -> Self {
        let titles = dataset
            .items
            .iter()
            .map(|info| {
                let title = info.field("title").or_else(|| info.field("movie_title"))?;
                let title = title
                    .trim()
                    .trim_end_matches(['.', '!', '?', ',', ';', ':', '`'])
                    .trim();
                (!title.is_empty()).then(|| title.to_string())
            })
            .collect();
        let details = dataset
            .items
            .iter()
            .map(|info| {
                let parts: Vec<String> = [
                    ("brand", "brand"),
                    ("categories", "categories"),
                    ("release_year", "year"),
                    ("class", "genres"),
                    ("genre", "genres"),
                ]
                .iter()
                .filter_map(|(field, label)| {
                    let v = info.field(field)?.trim();
                    (!v.is_empty()).then(|| format!("{label}: {v}"))
                })
                .collect();
                (!parts.is_empty()).then(|| parts.join("; "))
            })
            .collect();
        ItemTexts { titles, details }
    }
}

/// What one example is made from: the history before `target` (empty for the item tasks).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Source {
    pub task: TaskKind,
    pub history: Vec<ItemId>,
    pub target: ItemId,
}

/// A prompt and the response the model learns (the loss is on the response only).
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub instruction: String,
    pub response: String,
}

/// Writes items as code tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct CodeWriter {
    /// `names[level][code]`, e.g. `<b_3>`.
    pub names: Vec<Vec<String>>,
}

impl CodeWriter {
    /// Token names for every level and code of `index` (`<a_0>` … for level 0, `<b_0>` … for
    /// level 1, and so on; up to 26 levels).
    pub fn new(index: &ItemIndex) -> Result<Self, GenerativeError> {
        if index.codebook_sizes.len() > 26 {
            return Err(GenerativeError::config(
                "index.levels",
                format!(
                    "= {} is more than the 26 levels LC-Rec's code tokens can name",
                    index.codebook_sizes.len()
                ),
            ));
        }
        let names = index
            .codebook_sizes
            .iter()
            .enumerate()
            .map(|(level, &k)| {
                let letter = (b'a' + level as u8) as char;
                (0..k).map(|c| format!("<{letter}_{c}>")).collect()
            })
            .collect();
        Ok(CodeWriter { names })
    }

    /// Every token name, level by level: what the tokenizer and the model's vocabulary gain.
    pub fn all_names(&self) -> Vec<String> {
        self.names.iter().flatten().cloned().collect()
    }

    pub fn item(&self, index: &ItemIndex, item: ItemId) -> String {
        index
            .codes(item)
            .iter()
            .enumerate()
            .map(|(level, &c)| self.names[level][c as usize].as_str())
            .collect()
    }
}

/// Fills `template` for `source`; `None` when the item text it needs is missing (the caller
/// skips and counts such examples rather than train on an empty prompt).
pub fn fill(
    template: &Template,
    source: &Source,
    texts: &ItemTexts,
    codes: &CodeWriter,
    index: &ItemIndex,
) -> Option<Example> {
    // One left-to-right pass over the template: inserted text (a title with braces in it) is
    // never scanned for placeholders again.
    let value = |name: &str| -> Option<String> {
        Some(match name {
            "history" => {
                let items: Vec<String> = source.history.iter().map(|&i| codes.item(index, i)).collect();
                items.join(", ")
            }
            "history_titles" => {
                // Items without a title are left out of a title history; none left = no example.
                let titles: Vec<String> = source
                    .history
                    .iter()
                    .filter_map(|&i| texts.titles[i as usize].as_ref().map(|t| format!("\"{t}\"")))
                    .collect();
                if titles.is_empty() {
                    return None;
                }
                titles.join(", ")
            }
            "item" => codes.item(index, source.target),
            "title" => texts.titles[source.target as usize].clone()?,
            "details" => texts.details[source.target as usize].clone()?,
            other => unreachable!("template placeholder {{{other}}} (the templates are constants, tested)"),
        })
    };
    let fill_one = |text: &str| -> Option<String> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            let close = open + rest[open..].find('}')?;
            out.push_str(&rest[..open]);
            out.push_str(&value(&rest[open + 1..close])?);
            rest = &rest[close + 1..];
        }
        out.push_str(rest);
        Some(out)
    };
    Some(Example {
        instruction: fill_one(template.instruction)?,
        response: fill_one(template.response)?,
    })
}

/// The sources of one epoch, and what was skipped.
#[derive(Debug, Clone, PartialEq)]
pub struct Sources {
    pub sources: Vec<Source>,
    /// Per task: examples kept and examples skipped for missing item text.
    pub counts: Vec<(TaskKind, usize, usize)>,
}

/// Builds the training sources of every task with a positive weight in `mix`: history tasks
/// from every training position of `split` (the last `positions_per_user` of each user, `0` =
/// all; histories cut to `max_history`), item tasks from every item that occurs in a training
/// sequence. A source any of whose templates cannot be filled (missing title or details) is
/// skipped and counted. Fractional weights take a subset drawn from `seed`.
pub fn build_sources(
    split: &LeaveOneOut,
    texts: &ItemTexts,
    mix: &TaskMix,
    positions_per_user: usize,
    max_history: usize,
    seed: u64,
) -> Sources {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x1C_7A5C);
    let positions: Vec<(Vec<ItemId>, ItemId)> = split
        .train
        .iter()
        .flat_map(|seq| {
            let first = if positions_per_user == 0 {
                1
            } else {
                seq.len().saturating_sub(positions_per_user).max(1)
            };
            (first..seq.len()).map(move |t| (seq[t.saturating_sub(max_history)..t].to_vec(), seq[t]))
        })
        .collect();
    let mut seen = vec![false; split.n_items];
    for &i in split.train.iter().flatten() {
        seen[i as usize] = true;
    }
    let items: Vec<ItemId> = (0..split.n_items as ItemId).filter(|&i| seen[i as usize]).collect();
    let mut sources = Vec::new();
    let mut counts = Vec::new();
    for task in TaskKind::ALL {
        let weight = mix.weight(task);
        if weight == 0.0 {
            continue;
        }
        let needs = |target: ItemId, history: &[ItemId]| -> bool {
            let title = texts.titles[target as usize].is_some();
            match task {
                TaskKind::SeqRec => true,
                // Every template must fill, whichever is drawn.
                TaskKind::ItemToIndex => title && texts.details[target as usize].is_some(),
                TaskKind::IndexToItem | TaskKind::FusionTitle => title,
                TaskKind::FusionIndex => history.iter().any(|&i| texts.titles[i as usize].is_some()),
            }
        };
        let candidates: Vec<Source> = if task.uses_histories() {
            positions
                .iter()
                .map(|(history, target)| Source {
                    task,
                    history: history.clone(),
                    target: *target,
                })
                .collect()
        } else {
            items
                .iter()
                .map(|&target| Source {
                    task,
                    history: Vec::new(),
                    target,
                })
                .collect()
        };
        let total = candidates.len();
        let mut kept: Vec<Source> = candidates.into_iter().filter(|s| needs(s.target, &s.history)).collect();
        let skipped = total - kept.len();
        let whole = weight.floor() as usize;
        let mut picked: Vec<Source> = (0..whole).flat_map(|_| kept.iter().cloned()).collect();
        let part = ((weight - whole as f64) * kept.len() as f64).round() as usize;
        kept.shuffle(&mut rng);
        picked.extend(kept.into_iter().take(part));
        counts.push((task, picked.len(), skipped));
        sources.extend(picked);
    }
    Sources { sources, counts }
}

#[cfg(test)]
mod tests {
    use super::*;
    use genrec_data::{ItemInfo, SplitConfig};
    use std::collections::BTreeMap;

    /// Four items (item 2 has no title, item 3 no details), two users.
    fn dataset() -> SequenceDataset {
        let info = |fields: &[(&str, &str)]| ItemInfo {
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            attributes: Vec::new(),
        };
        SequenceDataset {
            name: "hand".into(),
            user_tokens: vec!["u0".into(), "u1".into()],
            item_tokens: (0..4).map(|i| format!("i{i}")).collect(),
            sequences: vec![vec![0, 1, 2, 3, 0, 1], vec![3, 2, 1, 0]],
            items: vec![
                info(&[
                    ("title", "Rose Lip Balm."),
                    ("brand", "Acme"),
                    ("categories", "Beauty, Lips"),
                ]),
                info(&[("title", "Night Cream"), ("categories", "Beauty, Skin")]),
                info(&[("brand", "Acme")]),
                info(&[("title", "Hair Clip")]),
            ],
        }
    }

    fn index() -> ItemIndex {
        ItemIndex::new(
            "rqvae",
            vec![4, 4, 2],
            vec![vec![0, 1, 0], vec![0, 1, 1], vec![3, 0, 0], vec![2, 2, 1]],
        )
        .unwrap()
    }

    #[test]
    fn item_texts_and_codes() {
        let texts = ItemTexts::from_dataset(&dataset());
        assert_eq!(
            texts.titles[0].as_deref(),
            Some("Rose Lip Balm"),
            "trailing '.' trimmed"
        );
        assert_eq!(texts.titles[2], None);
        assert_eq!(
            texts.details[0].as_deref(),
            Some("brand: Acme; categories: Beauty, Lips")
        );
        assert_eq!(texts.details[3], None);
        let codes = CodeWriter::new(&index()).unwrap();
        assert_eq!(codes.item(&index(), 3), "<a_2><b_2><c_1>");
        assert_eq!(codes.all_names().len(), 10);
        assert_eq!(codes.all_names()[4], "<b_0>");
    }

    #[test]
    fn templates_fill_as_written_by_hand() {
        let (texts, index) = (ItemTexts::from_dataset(&dataset()), index());
        let codes = CodeWriter::new(&index).unwrap();
        let seqrec = Source {
            task: TaskKind::SeqRec,
            history: vec![0, 2],
            target: 1,
        };
        let e = fill(&SEQREC[0], &seqrec, &texts, &codes, &index).unwrap();
        assert_eq!(
            e.instruction,
            "A user has interacted with these items, oldest first: <a_0><b_1><c_0>, <a_3><b_0><c_0>. Which item will the user interact with next?"
        );
        assert_eq!(e.response, "<a_0><b_1><c_1>");
        let fusion = Source {
            task: TaskKind::FusionIndex,
            ..seqrec.clone()
        };
        let e = fill(&FUSION_INDEX[2], &fusion, &texts, &codes, &index).unwrap();
        assert_eq!(
            e.instruction, "Given the titles \"Rose Lip Balm\", recommend the next item.",
            "item 2 has no title"
        );
        let e = fill(&FUSION_TITLE[0], &seqrec, &texts, &codes, &index).unwrap();
        assert_eq!(e.response, "Night Cream");
        let item = |target| Source {
            task: TaskKind::ItemToIndex,
            history: vec![],
            target,
        };
        let e = fill(&ITEM2INDEX[5], &item(0), &texts, &codes, &index).unwrap();
        assert_eq!(
            e.instruction,
            "Name the identifier of \"Rose Lip Balm\" (brand: Acme; categories: Beauty, Lips)."
        );
        assert_eq!(e.response, "<a_0><b_1><c_0>");
        assert_eq!(
            fill(&ITEM2INDEX[2], &item(3), &texts, &codes, &index),
            None,
            "no details"
        );
        assert_eq!(fill(&INDEX2ITEM[0], &item(2), &texts, &codes, &index), None, "no title");
        // Inserted text is not scanned again: a title with a placeholder in it stays as written.
        let mut odd = texts.clone();
        odd.titles[0] = Some("Odd {item} Title".into());
        let e = fill(&FUSION_INDEX[2], &fusion, &odd, &codes, &index).unwrap();
        assert_eq!(
            e.instruction,
            "Given the titles \"Odd {item} Title\", recommend the next item."
        );
        let e = fill(&INDEX2ITEM[0], &item(3), &texts, &codes, &index).unwrap();
        assert_eq!(
            (e.instruction.as_str(), e.response.as_str()),
            ("What is the title of item <a_2><b_2><c_1>?", "Hair Clip")
        );
    }

    #[test]
    fn every_template_names_only_known_placeholders() {
        let known = ["{history}", "{history_titles}", "{item}", "{title}", "{details}"];
        for task in TaskKind::ALL {
            assert!(task.templates().len() >= 3, "{} needs several templates", task.name());
            for t in task.templates() {
                for text in [t.instruction, t.response] {
                    let mut rest = text;
                    while let Some(open) = rest.find('{') {
                        let close = rest[open..].find('}').expect("closed placeholder") + open;
                        assert!(
                            known.contains(&&rest[open..=close]),
                            "{}: {}",
                            task.name(),
                            &rest[open..=close]
                        );
                        rest = &rest[close + 1..];
                    }
                }
            }
        }
    }

    #[test]
    fn sources_per_task_skip_missing_text_and_honour_weights() {
        let data = dataset();
        let split = LeaveOneOut::new(&data, &SplitConfig { max_history: 2 });
        // Training sequences: [0, 1, 2, 3] and [3, 2]: positions (history → target).
        let texts = ItemTexts::from_dataset(&data);
        let built = build_sources(&split, &texts, &TaskMix::default(), 0, 2, 1);
        let count = |task| built.counts.iter().find(|c| c.0 == task).map(|c| (c.1, c.2)).unwrap();
        assert_eq!(count(TaskKind::SeqRec), (4, 0), "3 + 1 training positions");
        assert_eq!(
            count(TaskKind::ItemToIndex),
            (2, 2),
            "items 2 (no title) and 3 (no details) skipped"
        );
        assert_eq!(count(TaskKind::IndexToItem), (3, 1));
        assert_eq!(
            count(TaskKind::FusionTitle),
            (2, 2),
            "the two positions whose target is item 2"
        );
        let seqrec: Vec<&Source> = built.sources.iter().filter(|s| s.task == TaskKind::SeqRec).collect();
        assert_eq!(seqrec[2].history, vec![1, 2], "history cut to max_history");
        assert_eq!(seqrec[2].target, 3);
        let last = build_sources(&split, &texts, &TaskMix::seqrec_only(), 1, 2, 1);
        assert_eq!(last.sources.len(), 2, "the last position of each user");
        let mix = TaskMix {
            seqrec: 2.5,
            ..TaskMix::seqrec_only()
        };
        assert_eq!(build_sources(&split, &texts, &mix, 0, 2, 1).sources.len(), 10);
    }

    #[test]
    fn mix_errors_name_the_field() {
        let bad = TaskMix {
            fusion_index: f64::NAN,
            ..TaskMix::default()
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("model.tasks.fusion_index"));
        let none = TaskMix {
            seqrec: 0.0,
            ..TaskMix::seqrec_only()
        };
        assert!(none.validate().unwrap_err().to_string().contains("nothing to train on"));
    }
}
