//! Reading a verdict score out of free text: the fallback for critiques, kept next to the
//! distribution so both can be shown.

use regex::Regex;
use std::sync::OnceLock;

/// The 1–10 verdict score in a model's critique, if one can be found.
///
/// Preference order: a score after the last "verdict"/"score"/"rating"/"grade" label, then the
/// last `N/10` or `N out of 10` anywhere, then a number word ("seven out of ten"). Decimals
/// round half up (7.5 → 8); anything outside 1–10 is ignored.
pub fn parse_verdict_score(text: &str) -> Option<u8> {
    static LABELLED: OnceLock<Regex> = OnceLock::new();
    static OUT_OF_TEN: OnceLock<Regex> = OnceLock::new();
    static WORDS: OnceLock<Regex> = OnceLock::new();
    // `\b` keeps "11/10" from reading as "1/10".
    let number = r"\b(10|[0-9](?:[.,][0-9]+)?)";
    let labelled = LABELLED.get_or_init(|| {
        Regex::new(&format!(
            r"(?i)\b(?:verdict|overall score|score|rating|grade|mark)\b[^0-9\n]{{0,40}}?{number}(?:\s*(?:/|out of)\s*10\b)?(?:[^0-9]|$)"
        ))
        .expect("valid regex")
    });
    let out_of_ten = OUT_OF_TEN
        .get_or_init(|| Regex::new(&format!(r"(?i){number}\s*(?:/|out of|of)\s*10\b")).expect("valid regex"));
    let words = WORDS.get_or_init(|| {
        Regex::new(r"(?i)\b(one|two|three|four|five|six|seven|eight|nine|ten)\s+(?:/|out of)\s+(?:10|ten)\b").expect("valid regex")
    });
    let to_score = |s: &str| -> Option<u8> {
        let v: f64 = s.replace(',', ".").parse().ok()?;
        let r = (v + 0.5).floor();
        (1.0..=10.0).contains(&r).then_some(r as u8)
    };
    // A labelled score wins; the last one, as models often restate it at the end.
    if let Some(s) = labelled.captures_iter(text).filter_map(|c| to_score(&c[1])).last() {
        return Some(s);
    }
    if let Some(s) = out_of_ten.captures_iter(text).filter_map(|c| to_score(&c[1])).last() {
        return Some(s);
    }
    let word = words.captures_iter(text).last()?;
    let names = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"];
    names.iter().position(|n| n.eq_ignore_ascii_case(&word[1])).map(|i| i as u8 + 1)
}

#[cfg(test)]
mod tests {
    use super::parse_verdict_score as p;

    #[test]
    fn verdicts_in_the_trained_format() {
        assert_eq!(p("Reasoning:\n1. [craft] ...\n\nVerdict: 7/10. Solid."), Some(7));
        assert_eq!(p("Verdict: 10/10. Perfect."), Some(10));
        assert_eq!(p("**Verdict:** 3 / 10 — flat."), Some(3));
    }

    #[test]
    fn messy_model_outputs() {
        assert_eq!(p("I would rate this passage 8 out of 10 because..."), Some(8));
        assert_eq!(p("Score: 6\nThe imagery is strong."), Some(6));
        assert_eq!(p("Overall score - 7.5/10"), Some(8));
        assert_eq!(p("Rating: 4,5 out of 10"), Some(5));
        assert_eq!(p("It deserves a solid seven out of ten."), Some(7));
        assert_eq!(p("Verdict: 6/10.\n\nOn reflection, verdict: 5/10."), Some(5));
        // A labelled score beats an incidental fraction elsewhere.
        assert_eq!(p("In 3/10 of the lines the rhythm falters. Verdict: 8/10"), Some(8));
        // Years, counts and list numbers are not scores.
        assert_eq!(p("Written in 1843, in 5 parts; 2 characters."), None);
        assert_eq!(p("1. [craft] The rhythm is off.\n2. [reality] Odd."), None);
        assert_eq!(p("Verdict: 11/10!"), None);
        assert_eq!(p("Verdict: 0/10"), None);
        assert_eq!(p(""), None);
        assert_eq!(p("The verdict is clear: 9."), Some(9));
    }
}
