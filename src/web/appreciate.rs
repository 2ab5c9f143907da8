//! Appreciation in the browser: verdict distributions after a prefix, one record's appraisal,
//! and the agreement report, all computed by the engine's `appreciate` module.

use super::{JsResult, WebModel, from_js, promise, required_from_js, to_js};
use crate::appreciate::{AppraiseOptions, AppreciationReport, ModelAppraisal, PrefixMode, appraise_record, judge};
use crate::data::Annotation;
use crate::prompt::AppreciationInput;
use js_sys::Promise;
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
impl WebModel {
    /// The verdict distribution for `input` (`{brief, audience, genre, work}`) after the `mode`
    /// prefix: `direct`, `critique` (`assistant` is the model's critique; it is cut before its
    /// own verdict) or `reasoning` (`assistant` is the expert's reasoning text). Resolves to
    /// `{prefix, continuations, logprobs, p, expected, mode, entropy_bits, verdict_mass}`.
    #[wasm_bindgen(js_name = verdictDistribution)]
    pub fn verdict_distribution(&self, input: JsValue, mode: String, assistant: Option<String>) -> Promise {
        let lm = self.lm.clone();
        promise(async move {
            let input: AppreciationInput = required_from_js(input, "appreciation input ({brief, audience, genre, work})")?;
            let mode: PrefixMode = mode.parse()?;
            if mode == PrefixMode::Critique && assistant.is_none() {
                return Err(JsError::new("the critique prefix needs the critique text"));
            }
            let (distribution, _) = judge(&lm, &input, mode, assistant.as_deref(), 0).await?;
            to_js(&distribution)
        })
    }

    /// Appraises one annotation record with this model (`AppraiseOptions` fields, all optional):
    /// its verdict distribution, the NLL of the expert's response and, in critique mode, the
    /// critique. Resolves to one model's entry of `cqa appreciate --json`'s records.
    #[wasm_bindgen(js_name = appraiseRecord)]
    pub fn appraise_record(&self, record: JsValue, options: JsValue) -> Promise {
        let lm = self.lm.clone();
        promise(async move {
            let record: Annotation = required_from_js(record, "annotation record")?;
            let options: AppraiseOptions = from_js(options, "appreciation options")?;
            options.validate()?;
            to_js(&appraise_record(&lm, &record, &options).await?)
        })
    }
}

/// The agreement report over records and their appraisals (`appraiseRecord` results, base and
/// optionally tuned, in record order): `{records, summary}` as `cqa appreciate --json` prints it.
#[wasm_bindgen(js_name = appreciationReport)]
pub fn appreciation_report(records: JsValue, base: JsValue, tuned: JsValue, options: JsValue) -> JsResult<JsValue> {
    let records: Vec<Annotation> = required_from_js(records, "annotation records")?;
    let base: Vec<ModelAppraisal> = required_from_js(base, "base appraisals")?;
    let tuned: Option<Vec<ModelAppraisal>> = from_js(tuned, "tuned appraisals")?;
    let options: AppraiseOptions = from_js(options, "appreciation options")?;
    options.validate()?;
    if base.len() != records.len() || tuned.as_ref().is_some_and(|t| t.len() != records.len()) {
        return Err(JsError::new("there must be one appraisal per record"));
    }
    to_js(&AppreciationReport::new(&records, base, tuned, &options))
}
