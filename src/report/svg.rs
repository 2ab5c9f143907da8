//! Inline SVG charts for the HTML report: a line chart (loss curves) and horizontal bars
//! (coverage). Plain strings with every label escaped; no script, no external reference.

use crate::raters::chart::escape;

const W: f64 = 640.0;
const H: f64 = 240.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 40.0;

/// One line: its label, colour and (x, y) points.
pub struct Series<'a> {
    pub label: &'a str,
    pub color: &'a str,
    pub points: Vec<(f64, f64)>,
}

/// About five round tick values covering `lo..hi`.
fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    if !(hi > lo) {
        return vec![lo];
    }
    let raw = (hi - lo) / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * magnitude).find(|s| *s >= raw).unwrap_or(raw);
    // Whole multiples of the step, rounded so 7 × 0.2 reads 1.4.
    let first = (lo / step).ceil() as i64;
    let mut out = Vec::new();
    for k in first.. {
        let t = ((k as f64 * step) * 1e9).round() / 1e9;
        if t > hi + step * 1e-9 {
            break;
        }
        out.push(t);
    }
    out
}

fn label(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e6 { format!("{v:.0}") } else { format!("{v:.3}").trim_end_matches('0').trim_end_matches('.').to_string() }
}

/// Lines over a shared numeric x axis, with a legend.
pub fn line_chart(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> String {
    let all: Vec<(f64, f64)> = series.iter().flat_map(|s| s.points.iter().copied()).filter(|(x, y)| x.is_finite() && y.is_finite()).collect();
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{}" font-family="system-ui, sans-serif" font-size="11">"#,
        escape(title)
    );
    if all.is_empty() {
        s.push_str(&format!(r##"<text x="{LEFT}" y="{}" fill="#555">No points to draw.</text></svg>"##, TOP + 20.0));
        return s;
    }
    let (x0, x1) = all.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (y0, y1) = all.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let (x1, y1) = (if x1 > x0 { x1 } else { x0 + 1.0 }, if y1 > y0 { y1 } else { y0 + 1.0 });
    let px = |x: f64| LEFT + (x - x0) / (x1 - x0) * (W - LEFT - RIGHT);
    let py = |y: f64| H - BOTTOM - (y - y0) / (y1 - y0) * (H - TOP - BOTTOM);
    for t in ticks(y0, y1) {
        s.push_str(&format!(
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e3e3e3"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#555">{}</text>"##,
            W - RIGHT,
            LEFT - 6.0,
            py(t) + 4.0,
            label(t),
            y = py(t)
        ));
    }
    for t in ticks(x0, x1) {
        s.push_str(&format!(r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#555">{}</text>"##, px(t), H - BOTTOM + 14.0, label(t)));
    }
    s.push_str(&format!(r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#333">{}</text>"##, (LEFT + W - RIGHT) / 2.0, H - 6.0, escape(x_label)));
    s.push_str(&format!(r##"<text x="12" y="{:.1}" transform="rotate(-90 12 {:.1})" text-anchor="middle" fill="#333">{}</text>"##, (TOP + H - BOTTOM) / 2.0, (TOP + H - BOTTOM) / 2.0, escape(y_label)));
    for (i, line) in series.iter().enumerate() {
        let pts: Vec<String> = line.points.iter().filter(|(x, y)| x.is_finite() && y.is_finite()).map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y))).collect();
        if pts.len() == 1 {
            let (cx, cy) = pts[0].split_once(',').expect("a point");
            s.push_str(&format!(r#"<circle cx="{cx}" cy="{cy}" r="3" fill="{}"/>"#, line.color));
        } else if !pts.is_empty() {
            s.push_str(&format!(r#"<polyline fill="none" stroke="{}" stroke-width="1.8" points="{}"/>"#, line.color, pts.join(" ")));
        }
        let lx = LEFT + 8.0 + 150.0 * i as f64;
        s.push_str(&format!(
            r##"<rect x="{lx:.1}" y="8" width="12" height="3" fill="{}"/><text x="{:.1}" y="13" fill="#333">{}</text>"##,
            line.color,
            lx + 16.0,
            escape(line.label)
        ));
    }
    s.push_str("</svg>");
    s
}

/// Horizontal bars with values 0–1 shown as percentages, and a dashed line at `threshold`.
pub fn share_bars(title: &str, bars: &[(&str, &str, f64)], threshold: Option<f64>) -> String {
    let row = 26.0;
    let height = 20.0 + row * bars.len() as f64 + 10.0;
    let (x0, x1) = (110.0, W - 60.0);
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {height}" width="{W}" height="{height}" role="img" aria-label="{}" font-family="system-ui, sans-serif" font-size="12">"#,
        escape(title)
    );
    for (i, (name, color, share)) in bars.iter().enumerate() {
        let y = 14.0 + row * i as f64;
        let w = share.clamp(0.0, 1.0) * (x1 - x0);
        s.push_str(&format!(
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end" fill="#333">{}</text><rect x="{x0}" y="{y:.1}" width="{w:.1}" height="16" fill="{color}"/><text x="{:.1}" y="{:.1}" fill="#333">{:.0}%</text>"##,
            x0 - 8.0,
            y + 12.0,
            escape(name),
            x0 + w + 6.0,
            y + 12.0,
            share * 100.0
        ));
    }
    if let Some(t) = threshold {
        let x = x0 + t * (x1 - x0);
        s.push_str(&format!(r##"<line x1="{x:.1}" y1="8" x2="{x:.1}" y2="{:.1}" stroke="#a15c07" stroke-dasharray="5 4"/>"##, height - 4.0));
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round() {
        assert_eq!(ticks(0.0, 10.0), [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(ticks(1.3, 2.1), [1.4, 1.6, 1.8, 2.0]);
    }

    #[test]
    fn line_chart_draws_each_series_and_escapes() {
        let svg = line_chart(
            "loss <run>",
            "step",
            "loss",
            &[Series { label: "train", color: "#123", points: vec![(1.0, 2.0), (2.0, 1.5)] }, Series { label: "held-out", color: "#456", points: vec![(2.0, 1.8)] }],
        );
        assert!(svg.contains("loss &lt;run&gt;"));
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert_eq!(svg.matches("<circle").count(), 1);
    }
}
