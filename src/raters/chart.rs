//! The one chart that places humans and models on the same scale: each rater's Spearman ρ
//! against the mean of the (other) humans, with its bootstrap interval, and the humans' range
//! shaded as the ceiling a model is measured against. Written as a self-contained SVG string, so
//! the page and the HTML report draw the same picture from the same numbers.

use super::{RaterKind, RaterVsRest, StudyAgreement};

const WIDTH: f64 = 680.0;
const ROW: f64 = 26.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 34.0;
const LABEL_W: f64 = 170.0;
const VALUE_W: f64 = 175.0;
const HUMAN: &str = "#2b59c3";
const MODEL: &str = "#c2410c";

/// Text for XML: names come from the records, so they are escaped.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// A label that fits the left margin: long names (an adapter's) are cut, whole in the tooltip.
fn short(name: &str, kind: &str) -> String {
    const MAX: usize = 24;
    let full = format!("{name}{kind}");
    if full.chars().count() <= MAX { full } else { format!("{}…", full.chars().take(MAX - 1).collect::<String>()) }
}

fn fmt(x: Option<f64>) -> String {
    x.map(|v| format!("{v:.2}")).unwrap_or_else(|| "n/a".into())
}

/// The chart as an `<svg>` element (no script, no external reference).
pub fn raters_chart_svg(report: &StudyAgreement) -> String {
    let rows: Vec<&RaterVsRest> = report.humans_vs_rest.iter().chain(report.models.iter().map(|m| &m.vs_humans)).collect();
    let height = TOP + BOTTOM + ROW * rows.len().max(1) as f64;
    let (x0, x1) = (LABEL_W, WIDTH - VALUE_W);
    let lowest = rows.iter().filter_map(|r| r.spearman.ci_low.or(r.spearman.value)).fold(0.0f64, f64::min);
    let lo = if lowest < 0.0 { -1.0 } else { 0.0 };
    let x = |v: f64| x0 + (v.clamp(lo, 1.0) - lo) / (1.0 - lo) * (x1 - x0);
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" role="img" aria-label="Spearman rho of each rater against the mean of the other humans, with {level:.0}% intervals" font-family="system-ui, sans-serif" font-size="12">"#,
        level = report.level * 100.0
    );
    s.push_str(&format!(r##"<text x="{x0}" y="16" fill="#444">Spearman ρ against the mean of the other humans ({:.0}% CI)</text>"##, report.level * 100.0));
    // The humans' range: where a model would sit among the annotators.
    let human_values: Vec<f64> = report.humans_vs_rest.iter().filter_map(|r| r.spearman.value).collect();
    if human_values.len() >= 2 {
        let (a, b) = human_values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
        s.push_str(&format!(
            r#"<rect x="{:.1}" y="{TOP}" width="{:.1}" height="{:.1}" fill="{HUMAN}" fill-opacity="0.08"><title>range of the humans: {a:.2} to {b:.2}</title></rect>"#,
            x(a),
            (x(b) - x(a)).max(1.0),
            height - TOP - BOTTOM
        ));
    }
    let ticks: Vec<f64> = if lo < 0.0 { vec![-1.0, -0.5, 0.0, 0.5, 1.0] } else { vec![0.0, 0.25, 0.5, 0.75, 1.0] };
    let axis_y = height - BOTTOM + 6.0;
    for t in ticks {
        let tx = x(t);
        s.push_str(&format!(r##"<line x1="{tx:.1}" y1="{TOP}" x2="{tx:.1}" y2="{axis_y}" stroke="#ddd"/>"##));
        s.push_str(&format!(r##"<text x="{tx:.1}" y="{:.1}" text-anchor="middle" fill="#555">{t}</text>"##, axis_y + 14.0));
    }
    if rows.is_empty() {
        s.push_str(&format!(r##"<text x="{x0}" y="{:.1}" fill="#555">No two annotators rated the same work yet.</text>"##, TOP + 18.0));
    }
    for (i, r) in rows.iter().enumerate() {
        let y = TOP + ROW * i as f64 + ROW / 2.0;
        let color = if r.kind == RaterKind::Model { MODEL } else { HUMAN };
        let name = escape(&r.rater);
        let kind = if r.kind == RaterKind::Model { " (model)" } else { "" };
        s.push_str(&format!(r#"<g data-rater="{name}" data-kind="{}">"#, if r.kind == RaterKind::Model { "model" } else { "human" }));
        s.push_str(&format!(
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end" fill="{color}"><title>{name}{kind}</title>{}</text>"#,
            x0 - 8.0,
            y + 4.0,
            escape(&short(&r.rater, kind))
        ));
        if let (Some(a), Some(b)) = (r.spearman.ci_low, r.spearman.ci_high) {
            s.push_str(&format!(r#"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{color}" stroke-width="2"/>"#, x(a), x(b)));
        }
        if let Some(v) = r.spearman.value {
            let mark = if r.kind == RaterKind::Model {
                format!(r#"<rect x="{:.1}" y="{:.1}" width="9" height="9" fill="{color}"/>"#, x(v) - 4.5, y - 4.5)
            } else {
                format!(r#"<circle cx="{:.1}" cy="{y:.1}" r="5" fill="{color}"/>"#, x(v))
            };
            s.push_str(&mark);
        }
        s.push_str(&format!(
            r##"<text x="{:.1}" y="{:.1}" fill="#333">{} [{}, {}] n={}</text></g>"##,
            x1 + 10.0,
            y + 4.0,
            fmt(r.spearman.value),
            fmt(r.spearman.ci_low),
            fmt(r.spearman.ci_high),
            r.n
        ));
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raters::{AgreementOptions, ModelColumn, RatingTable, agreement_of_table};

    #[test]
    fn draws_every_rater_with_escaped_names() {
        let table = RatingTable::from_scores(
            vec!["A<b>".into(), "B & C".into()],
            vec![vec![Some(1.0), Some(2.0)], vec![Some(4.0), Some(3.0)], vec![Some(7.0), Some(8.0)]],
        );
        let model = ModelColumn { name: "tuned".into(), scores: vec![Some(2.0), Some(5.0), Some(6.0)], excluded_trained: 0 };
        let report = agreement_of_table(table, vec![model], &[], &AgreementOptions::default());
        let svg = raters_chart_svg(&report);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("A&lt;b&gt;") && svg.contains("B &amp; C") && !svg.contains("A<b>"));
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(svg.contains(r#"data-rater="tuned" data-kind="model""#));
        assert!(!svg.contains("http://") || svg.matches("http://").count() == 1, "only the SVG namespace");
    }
}
