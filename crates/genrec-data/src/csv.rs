//! Plain delimited interactions: `user,item,timestamp` per line (comma or tab, chosen from the
//! first line), an optional header line naming those three columns, timestamp optional.

use std::path::Path;

use crate::error::{lines, read_text};
use crate::{DataError, Event, Result, SequenceDataset};

/// Reads events in file order. A first line whose third field is not a number (e.g.
/// `user,item,timestamp`) is taken as a header and must name the columns `user`, `item` and
/// optionally `timestamp`/`time`.
pub fn load_events(path: &Path) -> Result<Vec<Event>> {
    let text = read_text(path)?;
    let mut rows = lines(&text).filter(|(_, l)| !l.trim().is_empty()).peekable();
    let Some(&(_, first)) = rows.peek() else {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
        });
    };
    let delim = if first.contains('\t') { '\t' } else { ',' };
    let head: Vec<&str> = first.split(delim).map(str::trim).collect();
    let looks_like_header =
        head.len() >= 2 && (head[0].eq_ignore_ascii_case("user") || head[0].eq_ignore_ascii_case("user_id"));
    let width = head.len();
    if looks_like_header {
        let ok = head[1].to_ascii_lowercase().starts_with("item")
            && (width == 2 || matches!(head[2].to_ascii_lowercase().as_str(), "timestamp" | "time"));
        if !ok || width > 3 {
            return Err(DataError::parse(
                path,
                1,
                format!("unknown columns `{}`: expected user,item[,timestamp]", head.join(",")),
            ));
        }
        rows.next();
    } else if !(2..=3).contains(&width) {
        return Err(DataError::parse(
            path,
            1,
            format!("{width} fields: expected user,item[,timestamp]"),
        ));
    }
    let mut events = Vec::new();
    for (pos, (line, l)) in rows.enumerate() {
        let f: Vec<&str> = l.split(delim).map(str::trim).collect();
        // A header line after the first (files concatenated with their headers) would become a
        // user named `user`.
        if f.len() >= 2 && is_header(&f) {
            return Err(DataError::parse(
                path,
                line,
                format!("a repeated header line `{}`", f.join(",")),
            ));
        }
        if f.len() != width {
            return Err(DataError::parse(
                path,
                line,
                format!("{} fields, expected {width}", f.len()),
            ));
        }
        if f[0].is_empty() || f[1].is_empty() {
            return Err(DataError::parse(path, line, "empty user or item field"));
        }
        let timestamp = if width == 3 {
            match f[2].parse::<f64>() {
                Ok(v) if v.is_finite() => v,
                _ => {
                    return Err(DataError::parse(
                        path,
                        line,
                        format!("field `timestamp`: `{}` is not a finite number", f[2]),
                    ))
                }
            }
        } else {
            pos as f64
        };
        events.push(Event {
            user: f[0].to_string(),
            item: f[1].to_string(),
            timestamp,
        });
    }
    if events.is_empty() {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(events)
}

/// A line naming the columns (`user`/`user_id`, then `item…`) rather than holding data.
fn is_header(f: &[&str]) -> bool {
    (f[0].eq_ignore_ascii_case("user") || f[0].eq_ignore_ascii_case("user_id"))
        && f[1].to_ascii_lowercase().starts_with("item")
}

pub fn load(path: &Path) -> Result<SequenceDataset> {
    let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("csv");
    let dataset = SequenceDataset::from_events(name, load_events(path)?);
    dataset.validate()?;
    Ok(dataset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_delimiters() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.csv");
        std::fs::write(&p, "user,item,timestamp\nu1,a,2\nu1,b,1\n").unwrap();
        let d = load(&p).unwrap();
        assert_eq!(d.item_tokens[d.sequences[0][0] as usize], "b");
        // A byte-order mark and old Mac line endings read like plain text.
        std::fs::write(&p, "\u{FEFF}u1,a\ru1,b\ru2,a\r").unwrap();
        let d = load(&p).unwrap();
        assert_eq!((d.n_users(), d.n_interactions()), (2, 3));
        assert!(d.user_tokens.iter().all(|u| u.starts_with('u')), "{:?}", d.user_tokens);
        let t = dir.path().join("y.tsv");
        std::fs::write(&t, "u1\ta\nu2\tb\n").unwrap();
        assert_eq!(load(&t).unwrap().n_users(), 2);
    }

    #[test]
    fn bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.csv");
        for (text, want) in [
            ("user,product,rating\nu,a,1\n", "unknown columns"),
            ("u,a,1\nu,b\n", "x.csv:2: 2 fields, expected 3"),
            ("u,a,1\nu,b,late\n", "x.csv:2: field `timestamp`"),
            ("u,a,1\n,b,2\n", "x.csv:2: empty user"),
            ("", "no data rows"),
            ("user,item\n", "no data rows"),
            ("a,b,c,d\n", "4 fields"),
            ("user,item\nu,a\nuser,item\nv,b\n", "x.csv:3: a repeated header line"),
            ("u,a\nuser_id,item_id\nv,b\n", "x.csv:2: a repeated header line"),
        ] {
            std::fs::write(&p, text).unwrap();
            let e = load(&p).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }
}
