//! `cqa agreement`: several annotators' records of the same works, their agreement, and models
//! placed among them (the engine's `raters` module; JSON in docs/study-format.md).

use crate::files::{read, read_annotations};
use clap::Args;
use cqa_studio::raters::{AgreementOptions, Estimate, StudyAgreement, parse_model_scores, study_agreement};
use cqa_studio::{Error, Result};
use std::path::PathBuf;

#[derive(Args)]
pub struct AgreementArgs {
    /// Annotation JSONL with several annotators' (`provenance.expert`) records of the same works.
    #[arg(long)]
    data: PathBuf,
    /// Models as raters: `cqa appreciate --json` output over the same records (its base and
    /// tuned expected scores), or a JSON list of {name, scores: {record id: score}, trained_on}.
    #[arg(long)]
    model_ratings: Option<PathBuf>,
    /// The records the adapter was trained on (JSONL): their works do not count towards the
    /// `tuned` model's agreement.
    #[arg(long)]
    trained_on: Option<PathBuf>,
    /// Bootstrap resamples of the works.
    #[arg(long, default_value_t = AgreementOptions::default().bootstrap)]
    bootstrap: usize,
    #[arg(long, default_value_t = AgreementOptions::default().seed)]
    seed: u64,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn agreement_command(a: &AgreementArgs) -> Result<()> {
    let records = read_annotations(&a.data, false)?;
    let mut models = match &a.model_ratings {
        Some(path) => parse_model_scores(&String::from_utf8_lossy(&read(path)?)).map_err(|e| Error::Input(format!("{}: {e}", path.display())))?,
        None => vec![],
    };
    if let Some(path) = &a.trained_on {
        let trained = read_annotations(path, false)?;
        let Some(tuned) = models.iter_mut().find(|m| m.name == "tuned") else {
            return Err(Error::Input("--trained-on names the tuned model's training records, but --model-ratings has no `tuned` model".into()));
        };
        tuned.trained_on = trained;
    }
    let options = AgreementOptions { bootstrap: a.bootstrap, seed: a.seed, ..AgreementOptions::default() };
    options.check()?;
    let report = study_agreement(&records, &models, &options);
    if a.json {
        println!("{}", serde_json::to_string(&report).map_err(|e| Error::Input(format!("the report could not be written as JSON: {e}")))?);
    } else {
        print_report(&report);
    }
    Ok(())
}

fn fmt(e: &Estimate, level: f64) -> String {
    let x = |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or_else(|| "n/a".into());
    format!("{:>6}  {:.0}% CI [{}, {}]", x(e.value), level * 100.0, x(e.ci_low), x(e.ci_high))
}

fn print_report(r: &StudyAgreement) {
    let t = &r.table;
    println!("{} works, {} annotators ({}); {} works rated by two or more", t.items.len(), t.raters.len(), t.raters.join(", "), r.shared_items);
    for w in &t.warnings {
        println!("warning: {w}");
    }
    println!("Krippendorff's α (bootstrap over works, {} resamples, seed {}):", r.bootstrap, r.seed);
    println!("  interval {}", fmt(&r.alpha_interval, r.level));
    println!("  ordinal  {}", fmt(&r.alpha_ordinal, r.level));
    println!("pairs (works both rated): Spearman ρ, mean |difference|");
    for p in &r.pairs {
        println!("  {} ~ {} (n={}): ρ {}   MAE {}", p.a, p.b, p.n, fmt(&p.spearman, r.level), fmt(&p.mae, r.level));
    }
    println!("each rater against the mean of the other humans:");
    for v in r.humans_vs_rest.iter().chain(r.models.iter().map(|m| &m.vs_humans)) {
        println!("  {:<12} (n={:>3}): ρ {}   MAE {}", v.rater, v.n, fmt(&v.spearman, r.level), fmt(&v.mae, r.level));
    }
    for m in &r.models {
        println!("{}: rates {} works ({} left out: trained on them)", m.name, m.items, m.excluded_trained);
        for l in &m.leave_one_out {
            println!(
                "  without {} (n={}): ρ to the others, model {} vs {} {}; model − human {}",
                l.left_out,
                l.n,
                fmt(&l.model_spearman, r.level),
                l.left_out,
                fmt(&l.human_spearman, r.level),
                fmt(&l.spearman_model_minus_human, r.level)
            );
        }
    }
}
