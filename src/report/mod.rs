//! The study report: one self-contained HTML file, written from a study document
//! ([`crate::study::Study`]) so that the page's `Report` button and `cqa report` produce the same
//! bytes. Charts are inline SVG, styles inline; the file makes no request of its own (its
//! Content-Security-Policy forbids any), so it reads the same offline and years later.
//!
//! Sections: the data and its craft / audience / reality coverage; the training curves;
//! agreement among the annotators with the models placed among them; calibration per group with
//! the Wilcoxon test; three base-vs-tuned comparisons picked by the largest verdict shift; the
//! settings and versions behind every number.

pub mod svg;

use crate::data::{Dimension, coverage};
use crate::raters::chart::{escape, raters_chart_svg};
use crate::raters::{Estimate, StudyAgreement, study_agreement};
use crate::study::{AppraisedRecord, Study};
use std::fmt::Write;

/// How many base-vs-tuned comparisons the report shows.
pub const COMPARISONS: usize = 3;

const STYLE: &str = "body{font:15px/1.5 system-ui,sans-serif;color:#1d2330;max-width:60rem;margin:2rem auto;padding:0 1rem}\
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2.2rem;border-bottom:1px solid #d9dde7;padding-bottom:.2rem}\
table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem}th,td{border:1px solid #d9dde7;padding:.25rem .5rem;text-align:left;vertical-align:top}\
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}.ci{color:#5b6275;font-size:.85em}.note{color:#5b6275;font-size:.9rem}\
figure{margin:.8rem 0}blockquote{margin:.4rem 0;padding:.3rem .8rem;border-left:3px solid #d9dde7;color:#333;white-space:pre-wrap}\
pre{background:#f5f6f9;padding:.6rem;overflow:auto;font-size:.8rem}";

fn num(x: Option<f64>, digits: usize) -> String {
    match x {
        Some(v) if v.is_finite() => format!("{v:.digits$}"),
        _ => "–".into(),
    }
}

fn estimate(e: &Estimate, level: f64) -> String {
    let ci = match (e.ci_low, e.ci_high) {
        (Some(a), Some(b)) => format!("{:.0}% CI [{a:.3}, {b:.3}]", level * 100.0),
        _ => "no interval".into(),
    };
    format!("{} <span class=\"ci\">{ci}</span>", num(e.value, 3))
}

fn p_value(p: Option<f64>) -> String {
    match p {
        Some(p) if p < 0.001 => format!("{p:.1e}"),
        other => num(other, 3),
    }
}

/// The report as one HTML document.
pub fn render_html(study: &Study) -> String {
    let mut h = String::new();
    let title = if study.title.trim().is_empty() { "A cqa-studio study" } else { study.title.trim() };
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{t}</title><style>{STYLE}</style></head><body>\
         <h1>{t}</h1><p class=\"note\">Created {created}. Written by cqa-studio from the study file; every number below is recomputed from it.</p>",
        t = escape(title),
        created = escape(&study.created)
    );
    data_section(&mut h, study);
    training_section(&mut h, study);
    let agreement = study_agreement(&study.records, &study.model_scores(), &study.agreement_options);
    agreement_section(&mut h, &agreement);
    calibration_section(&mut h, study);
    comparisons_section(&mut h, study);
    settings_section(&mut h, study, &agreement);
    h.push_str("</body></html>\n");
    h
}

fn data_section(h: &mut String, study: &Study) {
    let c = coverage(&study.records);
    let table = crate::raters::RatingTable::from_records(&study.records);
    let _ = write!(
        h,
        "<h2 id=\"data\">The data</h2><p>{} records by {} annotator{} of {} works; {} works rated by two or more. {} reasoning steps.</p>",
        c.records,
        table.raters.len(),
        if table.raters.len() == 1 { "" } else { "s" },
        table.items.len(),
        table.shared_items(),
        c.steps
    );
    let colors = [(Dimension::Craft, "#4f46e5"), (Dimension::Audience, "#0e7490"), (Dimension::Reality, "#b45309")];
    let bars: Vec<(&str, &str, f64)> = colors.iter().map(|(d, color)| (d.name(), *color, c.dimensions.get(d.name()).map_or(0.0, |x| x.share))).collect();
    let _ = write!(
        h,
        "<figure>{}<figcaption class=\"note\">Share of reasoning steps per dimension; the dashed line is the {:.0}% under which a dimension is flagged.</figcaption></figure>",
        svg::share_bars("Share of reasoning steps per dimension", &bars, Some(crate::data::COVERAGE_WARNING_SHARE)),
        crate::data::COVERAGE_WARNING_SHARE * 100.0
    );
    h.push_str("<table><tr><th>Dimension</th><th class=\"num\">Steps</th><th class=\"num\">Share</th></tr>");
    for (name, d) in &c.dimensions {
        let _ = write!(h, "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{:.1}%</td></tr>", escape(name), d.steps, d.share * 100.0);
    }
    h.push_str("</table>");
    for w in &c.warnings {
        let _ = write!(h, "<p class=\"note\">Warning: {}</p>", escape(w));
    }
}

fn training_section(h: &mut String, study: &Study) {
    h.push_str("<h2 id=\"training\">Training</h2>");
    if study.adapters.is_empty() {
        h.push_str("<p class=\"note\">The study holds no adapter.</p>");
        return;
    }
    for a in &study.adapters {
        let train: Vec<(f64, f64)> = a.history.steps.iter().map(|p| (p.step as f64, p.loss)).collect();
        let held: Vec<(f64, f64)> = a.history.held_out.iter().map(|p| (p.step as f64, p.loss)).collect();
        let chart = svg::line_chart(
            &format!("Loss of {}", a.name),
            "step",
            "loss (nats/token)",
            &[svg::Series { label: "training", color: "#2b59c3", points: train }, svg::Series { label: "held-out", color: "#c2410c", points: held }],
        );
        let last = |v: &[crate::study::LossPoint]| v.last().map(|p| format!("{:.4} at step {}", p.loss, p.step)).unwrap_or_else(|| "–".into());
        let _ = write!(
            h,
            "<h3>{}</h3><figure>{chart}<figcaption class=\"note\">Last training loss {}; last held-out loss {}. Trained on {} records, {} held out.</figcaption></figure>",
            escape(&a.name),
            last(&a.history.steps),
            last(&a.history.held_out),
            a.trained_ids.len(),
            a.held_out_ids.len()
        );
    }
}

fn agreement_section(h: &mut String, a: &StudyAgreement) {
    h.push_str("<h2 id=\"agreement\">Agreement: annotators and models</h2>");
    let _ = write!(
        h,
        "<p>{} annotators; {} works rated by two or more. Intervals: percentile bootstrap over the works, {} resamples (seed {}).</p>",
        a.table.raters.len(),
        a.shared_items,
        a.bootstrap,
        a.seed
    );
    let _ = write!(
        h,
        "<table><tr><th>Krippendorff’s α</th><th>Value</th></tr><tr><td>interval</td><td class=\"num\">{}</td></tr><tr><td>ordinal</td><td class=\"num\">{}</td></tr></table>",
        estimate(&a.alpha_interval, a.level),
        estimate(&a.alpha_ordinal, a.level)
    );
    let _ = write!(h, "<figure>{}</figure>", raters_chart_svg(a));
    if !a.pairs.is_empty() {
        h.push_str("<table><tr><th>Pair</th><th class=\"num\">Works</th><th>Spearman ρ</th><th>Mean |difference|</th></tr>");
        for p in &a.pairs {
            let _ = write!(
                h,
                "<tr><td>{} ~ {}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                escape(&p.a),
                escape(&p.b),
                p.n,
                estimate(&p.spearman, a.level),
                estimate(&p.mae, a.level)
            );
        }
        h.push_str("</table>");
    }
    for m in &a.models {
        let _ = write!(
            h,
            "<h3>{} among the annotators</h3><p>It rated {} works; {} left out because it trained on them.</p>",
            escape(&m.name),
            m.items,
            m.excluded_trained
        );
        if m.leave_one_out.is_empty() {
            continue;
        }
        h.push_str("<table><tr><th>Left out</th><th class=\"num\">Works</th><th>Model ρ to the others</th><th>Human ρ to the others</th><th>Model − human</th></tr>");
        for l in &m.leave_one_out {
            let _ = write!(
                h,
                "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                escape(&l.left_out),
                l.n,
                estimate(&l.model_spearman, a.level),
                estimate(&l.human_spearman, a.level),
                estimate(&l.spearman_model_minus_human, a.level)
            );
        }
        h.push_str("</table>");
    }
    for w in &a.table.warnings {
        let _ = write!(h, "<p class=\"note\">{}</p>", escape(w));
    }
}

fn calibration_section(h: &mut String, study: &Study) {
    h.push_str("<h2 id=\"calibration\">Calibration</h2>");
    let Some(c) = &study.reports.calibration else {
        h.push_str("<p class=\"note\">The study holds no calibration report.</p>");
        return;
    };
    let what = if c.adapter.is_some() { "Δ(ΔI) = ΔI(tuned) − ΔI(base)" } else { "ΔI (base)" };
    let _ = write!(
        h,
        "<p>{what}, bits, per group; one-sided Wilcoxon signed-rank test (H1: &gt; 0) and Cohen’s d.{}</p>",
        c.adapter.as_deref().map(|a| format!(" Adapter: {}.", escape(a))).unwrap_or_default()
    );
    h.push_str("<table><tr><th>Group</th><th class=\"num\">n</th><th class=\"num\">Mean</th><th class=\"num\">Median</th><th class=\"num\">SD</th><th class=\"num\">Wilcoxon p</th><th class=\"num\">Cohen’s d</th></tr>");
    for (name, g) in &c.groups {
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{} <span class=\"ci\">{}</span></td><td class=\"num\">{}</td></tr>",
            escape(name),
            g.n,
            num(g.mean, 3),
            num(g.median, 3),
            num(g.sd, 3),
            p_value(g.wilcoxon_p),
            escape(&g.wilcoxon_method),
            num(g.cohens_d, 3)
        );
    }
    h.push_str("</table>");
}

/// The records whose expected verdict moved most between base and tuned, largest first (ties by
/// id, so the choice is the same every time).
pub fn largest_shifts(records: &[AppraisedRecord], count: usize) -> Vec<&AppraisedRecord> {
    let mut with_shift: Vec<(&AppraisedRecord, f64)> =
        records.iter().filter_map(|r| r.tuned.as_ref().map(|t| (r, (t.expected - r.base.expected).abs()))).collect();
    with_shift.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.id.cmp(&b.0.id)));
    with_shift.into_iter().take(count).map(|(r, _)| r).collect()
}

fn comparisons_section(h: &mut String, study: &Study) {
    h.push_str("<h2 id=\"comparisons\">Base and tuned: the largest verdict shifts</h2>");
    let Some(doc) = &study.reports.appreciation else {
        h.push_str("<p class=\"note\">The study holds no appreciation report.</p>");
        return;
    };
    let picked = largest_shifts(&doc.records, COMPARISONS);
    if picked.is_empty() {
        h.push_str("<p class=\"note\">The appreciation report has no tuned model to compare.</p>");
        return;
    }
    for r in picked {
        let record = study.records.iter().find(|x| x.id == r.id);
        let tuned = r.tuned.as_ref().expect("picked records have a tuned appraisal");
        let _ = write!(
            h,
            "<h3>{}</h3><p>Expert {}; expected verdict base {:.2}, tuned {:.2} (shift {:+.2}).</p>",
            escape(&r.id),
            r.expert_score.map(|s| format!("{s}/10")).unwrap_or_else(|| "–".into()),
            r.base.expected,
            tuned.expected,
            tuned.expected - r.base.expected
        );
        if let Some(rec) = record {
            let excerpt: String = rec.work.chars().take(600).collect();
            let more = if rec.work.chars().count() > 600 { "…" } else { "" };
            let _ = write!(h, "<blockquote>{}{more}</blockquote>", escape(&excerpt));
        }
        for (who, a) in [("Base", &r.base), ("Tuned", tuned)] {
            if let Some(c) = &a.critique {
                let _ = write!(h, "<p><b>{who}’s critique:</b></p><blockquote>{}</blockquote>", escape(c));
            }
        }
    }
}

fn settings_section(h: &mut String, study: &Study, a: &StudyAgreement) {
    h.push_str("<h2 id=\"settings\">Settings and versions</h2><table>");
    let app = study.app.as_ref().map(|a| format!("{} {}", a.name, a.version)).unwrap_or_else(|| "–".into());
    let _ = write!(h, "<tr><th>Study written by</th><td>{}</td></tr>", escape(&app));
    let _ = write!(h, "<tr><th>Report written by</th><td>cqa-studio {}</td></tr>", env!("CARGO_PKG_VERSION"));
    match &study.model {
        Some(m) => {
            let _ = write!(h, "<tr><th>Model</th><td>{}</td></tr>", escape(&model_words(m)));
        }
        None => h.push_str("<tr><th>Model</th><td>not recorded</td></tr>"),
    }
    let _ = write!(
        h,
        "<tr><th>Agreement bootstrap</th><td>{} resamples of the works, seed {}, {:.0}% percentile intervals</td></tr>",
        a.bootstrap,
        a.seed,
        a.level * 100.0
    );
    if let Some(doc) = &study.reports.appreciation {
        let _ = write!(h, "<tr><th>Appreciation summary</th><td><pre>{}</pre></td></tr>", escape(&pretty(&doc.summary)));
    }
    h.push_str("</table>");
    for ad in &study.adapters {
        let model = ad.model.as_ref().map(model_words).unwrap_or_else(|| "not recorded".into());
        let _ = write!(h, "<h3>{}</h3><p>Created {}; model {}.</p><pre>{}</pre>", escape(&ad.name), escape(&ad.created), escape(&model), escape(&pretty(&ad.settings)));
    }
}

fn model_words(m: &crate::study::ModelRef) -> String {
    let size = if m.size > 0 { format!(", {} bytes", m.size) } else { String::new() };
    let sha = m.sha256.as_deref().map(|s| format!(", SHA-256 {s}")).unwrap_or_default();
    format!("{}{size}{sha}", m.name)
}

fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::study::Appraised;

    #[test]
    fn largest_shifts_are_picked_in_order_with_ties_by_id() {
        let r = |id: &str, base: f64, tuned: Option<f64>| AppraisedRecord {
            id: id.into(),
            expert_score: Some(5),
            base: Appraised { expected: base, critique: None },
            tuned: tuned.map(|t| Appraised { expected: t, critique: None }),
        };
        let records = [r("a", 5.0, Some(5.5)), r("b", 5.0, Some(2.0)), r("c", 4.0, Some(7.0)), r("d", 5.0, None), r("e", 6.0, Some(7.0))];
        let ids: Vec<&str> = largest_shifts(&records, 3).iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["b", "c", "e"]);
    }
}
