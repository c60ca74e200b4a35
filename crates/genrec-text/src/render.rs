//! Item text from a dataset's item fields through a template such as
//! `"{title}. Brand: {brand}. Categories: {categories}"` (the fields the TIGER paper used, less
//! price, which the shared splits lack). genrec-data loads the fields; this module renders them.
//!
//! A template is a list of `. `-separated parts; a part whose placeholders are all missing for an
//! item is dropped, so an item without a brand reads `"Title. Categories: …"` and one without a
//! title falls back to brand and categories (counted in the report). Within a kept part a missing
//! field renders empty, and the `()` it leaves is removed.

use crate::TextError;
use genrec_data::SequenceDataset;

/// Amazon P5 splits with brands (Beauty).
pub const AMAZON_TEMPLATE: &str = "{title}. Brand: {brand}. Categories: {categories}";
/// Amazon P5 splits without brands (Toys and Games).
pub const AMAZON_NO_BRAND_TEMPLATE: &str = "{title}. Categories: {categories}";
/// MovieLens-100K (`class` holds the genres).
pub const ML_100K_TEMPLATE: &str = "{movie_title} ({release_year}). Genres: {class}";
/// MovieLens-1M (`genre` holds the genres).
pub const ML_1M_TEMPLATE: &str = "{movie_title} ({release_year}). Genres: {genre}";

/// What rendering found.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RenderReport {
    pub template: String,
    pub items: usize,
    /// Items without the template's first field (the title), rendered from the rest.
    pub missing_first_field: usize,
    /// Items with none of the template's fields: their text is empty.
    pub empty: usize,
}

/// The default template for a dataset, chosen by which item fields it has.
pub fn default_template(dataset: &SequenceDataset) -> Result<&'static str, TextError> {
    let has = |f: &str| dataset.items.iter().any(|i| i.field(f).is_some());
    if has("title") {
        Ok(if has("brand") {
            AMAZON_TEMPLATE
        } else {
            AMAZON_NO_BRAND_TEMPLATE
        })
    } else if has("movie_title") && has("class") {
        Ok(ML_100K_TEMPLATE)
    } else if has("movie_title") && has("genre") {
        Ok(ML_1M_TEMPLATE)
    } else {
        Err(TextError::Render(format!(
            "dataset `{}` has no item text (fields: {}); use attribute features or pass a template",
            dataset.name,
            field_names(dataset).join(", ")
        )))
    }
}

fn field_names(dataset: &SequenceDataset) -> Vec<String> {
    let mut names: Vec<String> = dataset.items.iter().flat_map(|i| i.fields.keys().cloned()).collect();
    names.sort();
    names.dedup();
    if names.is_empty() {
        names.push("none".into());
    }
    names
}

/// One piece of a template part: literal text or a field placeholder.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    Field(String),
}

fn parse_part(part: &str, template: &str) -> Result<Vec<Piece>, TextError> {
    let mut pieces = Vec::new();
    let mut rest = part;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            pieces.push(Piece::Text(rest[..open].to_string()));
        }
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| TextError::Render(format!("template `{template}`: `{{` without a closing `}}`")))?;
        let name = &rest[open + 1..open + close];
        if name.is_empty() || name.contains('{') {
            return Err(TextError::Render(format!(
                "template `{template}`: bad placeholder `{{{name}}}`"
            )));
        }
        pieces.push(Piece::Field(name.to_string()));
        rest = &rest[open + close + 1..];
    }
    if rest.contains('}') {
        return Err(TextError::Render(format!(
            "template `{template}`: `}}` without an opening `{{`"
        )));
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest.to_string()));
    }
    Ok(pieces)
}

/// Renders every item's text (row i = item i). Placeholders must name fields that at least one
/// item has.
pub fn render(dataset: &SequenceDataset, template: &str) -> Result<(Vec<String>, RenderReport), TextError> {
    let parts: Vec<Vec<Piece>> = template
        .split(". ")
        .map(|p| parse_part(p, template))
        .collect::<Result<_, _>>()?;
    let fields: Vec<&str> = parts
        .iter()
        .flatten()
        .filter_map(|p| match p {
            Piece::Field(f) => Some(f.as_str()),
            Piece::Text(_) => None,
        })
        .collect();
    if fields.is_empty() {
        return Err(TextError::Render(format!(
            "template `{template}` has no {{field}} placeholder"
        )));
    }
    for f in &fields {
        if !dataset.items.iter().any(|i| i.field(f).is_some()) {
            return Err(TextError::Render(format!(
                "template `{template}`: no item of `{}` has field `{f}` (fields: {})",
                dataset.name,
                field_names(dataset).join(", ")
            )));
        }
    }
    let mut report = RenderReport {
        template: template.to_string(),
        items: dataset.items.len(),
        missing_first_field: 0,
        empty: 0,
    };
    let texts = dataset
        .items
        .iter()
        .map(|item| {
            let value = |f: &str| item.field(f).map(str::trim).filter(|v| !v.is_empty());
            if value(fields[0]).is_none() {
                report.missing_first_field += 1;
            }
            let rendered: Vec<String> = parts
                .iter()
                .filter(|part| part.iter().any(|p| matches!(p, Piece::Field(f) if value(f).is_some())))
                .map(|part| {
                    part.iter()
                        .map(|p| match p {
                            Piece::Text(t) => t.as_str(),
                            Piece::Field(f) => value(f).unwrap_or(""),
                        })
                        .collect::<String>()
                        .replace(" ()", "")
                        .replace("()", "")
                })
                .collect();
            if rendered.is_empty() {
                report.empty += 1;
            }
            rendered.join(". ")
        })
        .collect();
    Ok((texts, report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use genrec_data::ItemInfo;

    fn dataset(items: &[&[(&str, &str)]]) -> SequenceDataset {
        let mut d = SequenceDataset {
            name: "t".into(),
            user_tokens: vec!["u".into()],
            item_tokens: (0..items.len()).map(|i| i.to_string()).collect(),
            sequences: vec![(0..items.len() as u32).collect()],
            items: vec![ItemInfo::default(); items.len()],
        };
        for (info, fields) in d.items.iter_mut().zip(items) {
            for (k, v) in *fields {
                info.fields.insert(k.to_string(), v.to_string());
            }
        }
        d
    }

    #[test]
    fn renders_and_drops_missing_parts() {
        let d = dataset(&[
            &[
                ("title", "OPI Lacquer"),
                ("brand", "OPI"),
                ("categories", "Beauty, Nails"),
            ],
            &[("title", "Red Ball"), ("categories", "Toys")],
            &[("brand", "Lego"), ("categories", "Toys")],
            &[],
        ]);
        assert_eq!(default_template(&d).unwrap(), AMAZON_TEMPLATE);
        let (texts, report) = render(&d, AMAZON_TEMPLATE).unwrap();
        assert_eq!(
            texts,
            [
                "OPI Lacquer. Brand: OPI. Categories: Beauty, Nails",
                "Red Ball. Categories: Toys",
                "Brand: Lego. Categories: Toys",
                ""
            ]
        );
        assert_eq!((report.missing_first_field, report.empty), (2, 1));
    }

    #[test]
    fn movielens_template_and_errors() {
        let d = dataset(&[&[
            ("movie_title", "Toy Story"),
            ("release_year", "1995"),
            ("class", "Animation Comedy"),
        ]]);
        assert_eq!(default_template(&d).unwrap(), ML_100K_TEMPLATE);
        assert_eq!(
            render(&d, ML_100K_TEMPLATE).unwrap().0,
            ["Toy Story (1995). Genres: Animation Comedy"]
        );
        assert!(render(&d, "{title}")
            .unwrap_err()
            .to_string()
            .contains("no item of `t` has field `title`"));
        assert!(render(&d, "{movie_title")
            .unwrap_err()
            .to_string()
            .contains("without a closing"));
        assert!(render(&d, "plain")
            .unwrap_err()
            .to_string()
            .contains("no {field} placeholder"));
        let none = dataset(&[&[]]);
        assert!(default_template(&none)
            .unwrap_err()
            .to_string()
            .contains("has no item text"));
    }
}
