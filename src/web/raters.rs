//! Agreement among annotators and the study report in the browser: the engine's `raters` and
//! `report` modules, the same output `cqa agreement --json` and `cqa report` write.

use super::{JsResult, from_js, required_from_js, to_js};
use crate::data::Annotation;
use crate::raters::chart::raters_chart_svg;
use crate::raters::{AgreementOptions, ModelScores, StudyAgreement, study_agreement};
use wasm_bindgen::prelude::*;

/// Agreement over `records` (annotation objects, several annotators' records of the same works)
/// with `models` as more raters (`[{name, scores: {record id: expected score}, trained_on:
/// [records]}]`, may be empty) and `options` (`{bootstrap, seed, level}`, all optional).
/// Resolves to `{agreement, chart_svg}`: the report `cqa agreement --json` prints, and the chart
/// of every rater against the others as an SVG string (the HTML report draws the same one).
#[wasm_bindgen(js_name = studyAgreement)]
pub fn study_agreement_js(records: JsValue, models: JsValue, options: JsValue) -> JsResult<JsValue> {
    let records: Vec<Annotation> = required_from_js(records, "annotation records")?;
    let models: Vec<ModelScores> = from_js(models, "model scores")?;
    let options: AgreementOptions = from_js(options, "agreement options")?;
    options.check()?;
    let agreement = study_agreement(&records, &models, &options);
    let chart_svg = raters_chart_svg(&agreement);
    #[derive(serde::Serialize)]
    struct WithChart {
        agreement: StudyAgreement,
        chart_svg: String,
    }
    to_js(&WithChart { agreement, chart_svg })
}

/// The study report: one self-contained HTML file from a study document (the JSON text of
/// `study.json`), the same bytes `cqa report` writes.
#[wasm_bindgen(js_name = studyReportHtml)]
pub fn study_report_html(study_json: &str) -> JsResult<String> {
    let study = crate::study::Study::parse(study_json.as_bytes())?;
    Ok(crate::report::render_html(&study))
}

/// Checks a study document (the JSON text of `study.json`) as the engine reads it: its format,
/// version, bounds and every record. Resolves to the number of records.
#[wasm_bindgen(js_name = checkStudy)]
pub fn check_study(study_json: &str) -> JsResult<usize> {
    Ok(crate::study::Study::parse(study_json.as_bytes())?.records.len())
}
