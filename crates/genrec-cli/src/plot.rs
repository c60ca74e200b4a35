//! Minimal SVG line charts for training curves (loss per epoch, validation metric), written
//! beside curves.csv. Plain SVG text: no plotting dependency to build.

use std::fmt::Write;

/// A line chart of `(x, y)` points with axis labels and min/max ticks. Returns the SVG text.
pub fn line_chart(title: &str, x_label: &str, y_label: &str, points: &[(f64, f64)]) -> String {
    let (w, h, pad) = (640.0, 400.0, 60.0);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(svg, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = write!(
        svg,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="16">{}</text>"#,
        w / 2.0,
        escape(title)
    );
    let finite: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    if finite.is_empty() {
        svg += "</svg>\n";
        return svg;
    }
    let (x0, x1) = bounds(finite.iter().map(|p| p.0));
    let (y0, y1) = bounds(finite.iter().map(|p| p.1));
    let sx = |x: f64| pad + (x - x0) / (x1 - x0) * (w - 2.0 * pad);
    let sy = |y: f64| h - pad - (y - y0) / (y1 - y0) * (h - 2.0 * pad);
    let _ = write!(
        svg,
        r#"<path d="M{pad},{} H{} M{pad},{} V{}" stroke="black" fill="none"/>"#,
        h - pad,
        w - pad,
        h - pad,
        pad
    );
    for (v, x, y, anchor) in [
        (x0, sx(x0), h - pad + 16.0, "middle"),
        (x1, sx(x1), h - pad + 16.0, "middle"),
        (y0, pad - 6.0, sy(y0) + 4.0, "end"),
        (y1, pad - 6.0, sy(y1) + 4.0, "end"),
    ] {
        let _ = write!(
            svg,
            r#"<text x="{x:.1}" y="{y:.1}" text-anchor="{anchor}">{}</text>"#,
            tick(v)
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        w / 2.0,
        h - 12.0,
        escape(x_label)
    );
    let _ = write!(
        svg,
        r#"<text x="16" y="{}" text-anchor="middle" transform="rotate(-90 16 {})">{}</text>"#,
        h / 2.0,
        h / 2.0,
        escape(y_label)
    );
    let path: Vec<String> = finite
        .iter()
        .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
        .collect();
    let _ = write!(
        svg,
        r##"<polyline points="{}" fill="none" stroke="#1f77b4" stroke-width="2"/>"##,
        path.join(" ")
    );
    for &(x, y) in &finite {
        let _ = write!(
            svg,
            r##"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="#1f77b4"/>"##,
            sx(x),
            sy(y)
        );
    }
    svg += "</svg>\n";
    svg
}

/// Min and max, widened when equal so the scale never divides by zero.
fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if hi > lo {
        (lo, hi)
    } else {
        (lo - 0.5, hi + 0.5)
    }
}

fn tick(v: f64) -> String {
    if v.abs() >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else {
        format!("{v:.4}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chart_has_one_point_per_finite_value() {
        let svg = line_chart(
            "loss <train>",
            "epoch",
            "loss",
            &[(1.0, 3.0), (2.0, 2.0), (3.0, f64::NAN)],
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(svg.contains("loss &lt;train&gt;"));
        // Flat series do not divide by zero.
        let flat = line_chart("t", "x", "y", &[(1.0, 1.0), (2.0, 1.0)]);
        assert!(!flat.contains("NaN"));
        assert_eq!(line_chart("t", "x", "y", &[]).matches("<circle").count(), 0);
    }
}
