//! RecBole atomic files (`.inter`, `.item`, `.user`): tab-separated, a header of `name:type`
//! fields (`token`, `token_seq`, `float`, `float_seq`), CRLF tolerated. Columns other than the
//! ones read here are kept as text (`.item`) or ignored (`.inter`'s `rating`).

use std::collections::HashMap;
use std::path::Path;

use crate::error::{lines, read_text};
use crate::{DataError, Event, ItemInfo, Result, SequenceDataset};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    Token,
    TokenSeq,
    Float,
    FloatSeq,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub kind: FieldType,
}

/// A parsed atomic file: columns from the header, rows of raw strings with their line numbers.
#[derive(Debug, Clone)]
pub struct AtomicTable {
    pub columns: Vec<Column>,
    /// `(1-based line number, fields)`; every row has exactly `columns.len()` fields.
    pub rows: Vec<(usize, Vec<String>)>,
}

impl AtomicTable {
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }
}

/// Reads and checks an atomic file: header fields must be `name:type` with a known type and
/// unique names, every data row must have as many fields as the header. Blank lines are skipped.
pub fn read_table(path: &Path) -> Result<AtomicTable> {
    let text = read_text(path)?;
    let mut it = lines(&text).filter(|(_, l)| !l.trim().is_empty());
    let (_, header) = it
        .next()
        .ok_or_else(|| DataError::format(path, "empty file: expected a `name:type` header line"))?;
    let mut columns = Vec::new();
    for field in header.split('\t') {
        let (name, kind) = field
            .split_once(':')
            .ok_or_else(|| DataError::parse(path, 1, format!("header field `{field}` is not `name:type`")))?;
        let kind = match kind {
            "token" => FieldType::Token,
            "token_seq" => FieldType::TokenSeq,
            "float" => FieldType::Float,
            "float_seq" => FieldType::FloatSeq,
            other => {
                return Err(DataError::parse(
                    path,
                    1,
                    format!("header field `{name}` has unknown type `{other}` (token, token_seq, float, float_seq)"),
                ))
            }
        };
        if columns.iter().any(|c: &Column| c.name == name) {
            return Err(DataError::parse(path, 1, format!("header names column `{name}` twice")));
        }
        columns.push(Column {
            name: name.to_string(),
            kind,
        });
    }
    let mut rows = Vec::new();
    for (line, l) in it {
        let fields: Vec<String> = l.split('\t').map(str::to_string).collect();
        if fields.len() != columns.len() {
            return Err(DataError::parse(
                path,
                line,
                format!("{} fields, but the header has {} columns", fields.len(), columns.len()),
            ));
        }
        rows.push((line, fields));
    }
    if rows.is_empty() {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(AtomicTable { columns, rows })
}

fn require(table: &AtomicTable, path: &Path, name: &str) -> Result<usize> {
    table.column(name).ok_or_else(|| {
        let have: Vec<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();
        DataError::format(path, format!("missing column `{name}` (columns: {})", have.join(", ")))
    })
}

/// Interactions of a `.inter` file in file order. `timestamp` is optional; without it the
/// position in the file is the time. Empty ids and non-numeric or non-finite timestamps are errors.
pub fn load_interactions(path: &Path) -> Result<Vec<Event>> {
    let table = read_table(path)?;
    let user = require(&table, path, "user_id")?;
    let item = require(&table, path, "item_id")?;
    let time = table.column("timestamp");
    let mut events = Vec::with_capacity(table.rows.len());
    for (pos, (line, fields)) in table.rows.iter().enumerate() {
        for (col, name) in [(user, "user_id"), (item, "item_id")] {
            if fields[col].trim().is_empty() {
                return Err(DataError::parse(path, *line, format!("field `{name}` is empty")));
            }
        }
        let timestamp = match time {
            Some(t) => {
                let raw = fields[t].trim();
                match raw.parse::<f64>() {
                    Ok(v) if v.is_finite() => v,
                    _ => {
                        return Err(DataError::parse(
                            path,
                            *line,
                            format!("field `timestamp`: `{raw}` is not a finite number"),
                        ))
                    }
                }
            }
            None => pos as f64,
        };
        events.push(Event {
            user: fields[user].clone(),
            item: fields[item].clone(),
            timestamp,
        });
    }
    Ok(events)
}

/// Item side information of a `.item` file, keyed by raw `item_id`. Every other column becomes a
/// text field; the genre column (`class` in ML-100K, `genre` in ML-1M) also becomes attribute ids,
/// numbered by first appearance.
pub fn load_items(path: &Path) -> Result<HashMap<String, ItemInfo>> {
    let table = read_table(path)?;
    let id = require(&table, path, "item_id")?;
    let genre = table.column("class").or_else(|| table.column("genre"));
    let mut vocab: HashMap<String, u32> = HashMap::new();
    let mut out = HashMap::with_capacity(table.rows.len());
    for (line, fields) in &table.rows {
        let mut info = ItemInfo::default();
        for (c, column) in table.columns.iter().enumerate() {
            if c != id {
                info.fields.insert(column.name.clone(), fields[c].clone());
            }
        }
        if let Some(g) = genre {
            for tok in fields[g].split_whitespace() {
                let next = vocab.len() as u32;
                info.attributes.push(*vocab.entry(tok.to_string()).or_insert(next));
            }
        }
        if out.insert(fields[id].clone(), info).is_some() {
            return Err(DataError::parse(
                path,
                *line,
                format!("item_id `{}` appears twice", fields[id]),
            ));
        }
    }
    Ok(out)
}

/// Loads `dir/name.inter` and, if present, `dir/name.item`.
pub fn load_dir(dir: &Path, name: &str) -> Result<SequenceDataset> {
    let events = load_interactions(&dir.join(format!("{name}.inter")))?;
    let mut dataset = SequenceDataset::from_events(name, events);
    let item_path = dir.join(format!("{name}.item"));
    if item_path.exists() {
        dataset.attach_item_info(load_items(&item_path)?);
    }
    dataset.validate()?;
    Ok(dataset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.path().join(name);
        std::fs::File::create(&p).unwrap().write_all(text.as_bytes()).unwrap();
        p
    }

    #[test]
    fn reads_crlf_and_orders_by_time() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            &dir,
            "x.inter",
            "user_id:token\titem_id:token\trating:float\ttimestamp:float\r\n1\ta\t5\t30\r\n1\tb\t3\t10\r\n2\ta\t1\t5\r\n\r\n",
        );
        let ev = load_interactions(&p).unwrap();
        assert_eq!(ev.len(), 3);
        let d = SequenceDataset::from_events("x", ev);
        assert_eq!(d.sequences[0].len(), 2);
        assert_eq!(d.item_tokens[d.sequences[0][0] as usize], "b");
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let bad_count = write(&dir, "a.inter", "user_id:token\titem_id:token\n1\t2\n3\n");
        let e = load_interactions(&bad_count).unwrap_err().to_string();
        assert!(e.contains("a.inter:3") && e.contains("1 fields"), "{e}");

        let bad_type = write(&dir, "b.inter", "user_id:token\titem_id:int\n1\t2\n");
        let e = load_interactions(&bad_type).unwrap_err().to_string();
        assert!(
            e.contains("b.inter:1") && e.contains("item_id") && e.contains("unknown type"),
            "{e}"
        );

        let no_type = write(&dir, "c.inter", "user_id\titem_id:token\n1\t2\n");
        assert!(load_interactions(&no_type)
            .unwrap_err()
            .to_string()
            .contains("not `name:type`"));

        let missing = write(&dir, "d.inter", "user:token\titem_id:token\n1\t2\n");
        let e = load_interactions(&missing).unwrap_err().to_string();
        assert!(e.contains("missing column `user_id`"), "{e}");

        let bad_time = write(
            &dir,
            "e.inter",
            "user_id:token\titem_id:token\ttimestamp:float\n1\t2\t3\n1\t2\tnoon\n",
        );
        let e = load_interactions(&bad_time).unwrap_err().to_string();
        assert!(
            e.contains("e.inter:3") && e.contains("timestamp") && e.contains("noon"),
            "{e}"
        );

        let empty = write(&dir, "f.inter", "");
        assert!(load_interactions(&empty)
            .unwrap_err()
            .to_string()
            .contains("empty file"));
        let header_only = write(&dir, "g.inter", "user_id:token\titem_id:token\n");
        assert!(load_interactions(&header_only)
            .unwrap_err()
            .to_string()
            .contains("no data rows"));

        let empty_id = write(&dir, "h.inter", "user_id:token\titem_id:token\n1\t\n");
        let e = load_interactions(&empty_id).unwrap_err().to_string();
        assert!(e.contains("h.inter:2") && e.contains("item_id"), "{e}");

        let dup = write(&dir, "i.inter", "user_id:token\tuser_id:token\n1\t2\n");
        assert!(load_interactions(&dup).unwrap_err().to_string().contains("twice"));

        let missing_file = dir.path().join("nope.inter");
        let e = load_interactions(&missing_file).unwrap_err().to_string();
        assert!(e.contains("nope.inter"), "{e}");
    }

    #[test]
    fn duplicate_timestamps_keep_file_order() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            &dir,
            "x.inter",
            "user_id:token\titem_id:token\ttimestamp:float\nu\t9\t1\nu\t1\t1\nu\t5\t1\n",
        );
        let d = SequenceDataset::from_events("x", load_interactions(&p).unwrap());
        let raw: Vec<&str> = d.sequences[0]
            .iter()
            .map(|&i| d.item_tokens[i as usize].as_str())
            .collect();
        assert_eq!(raw, ["9", "1", "5"]);
    }

    #[test]
    fn item_fields_and_genres() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            &dir,
            "x.item",
            "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n1\tToy Story\t1995\tAnimation Comedy\n2\tHeat\t1995\tAction Comedy\n",
        );
        let items = load_items(&p).unwrap();
        assert_eq!(items["1"].field("movie_title"), Some("Toy Story"));
        assert_eq!(items["1"].attributes, [0, 1]);
        assert_eq!(items["2"].attributes, [2, 1]);
    }
}
