//! A hostile chat template is stopped before it holds much more memory than a rendering's
//! budget (16 MiB of text built; a growing `String` doubles and moves, so up to about three
//! times that): measured with a counting allocator, which is why this test has a binary of its
//! own (and one test, so nothing else allocates meanwhile).

use cqa_studio::error::Error;
use cqa_studio::tokenizer::{ChatMessage, TextTokenizer};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let live = LIVE.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

// SAFETY: every call goes to the system allocator unchanged; only sizes are counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        unsafe { System.dealloc(p, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, layout, new_size) };
        if !q.is_null() {
            // Counted as the old block and the new one at once, as a moving realloc holds.
            grew(new_size);
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        q
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn with_template(template: &str) -> TextTokenizer {
    let json = r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],"normalizer":null,"pre_tokenizer":null,"post_processor":null,"decoder":null,
        "model":{"type":"WordLevel","vocab":{"a":0,"<unk>":1},"unk_token":"<unk>"}}"#;
    TextTokenizer::from_hf(json.as_bytes(), Some(&serde_json::json!({ "chat_template": template }).to_string())).unwrap()
}

#[test]
fn hostile_templates_hold_about_the_budget_at_most() {
    let doubling = |step: &str| {
        format!("{{% set ns = namespace(s='x', l=['x']) %}}{{% for i in range(64) %}}{{% set ns.s = {step} %}}{{% endfor %}}{{{{ ns.s|length }}}}")
    };
    let literal = format!("{{% for i in range(100000) %}}{{% for j in range(100000) %}}{}{{% endfor %}}{{% endfor %}}", "L".repeat(2000));
    let bombs = [
        ("~ doubling", doubling("ns.s ~ ns.s")),
        ("+ doubling", doubling("ns.s + ns.s")),
        ("* by a large count", "{% set n = 90000000 %}{{ ('x' * n)|length }}".to_string()),
        ("* folded while compiling", "{{ ('x' * 90000000)|length }}".to_string()),
        ("format doubling", doubling("'%s%s'|format(ns.s, ns.s)")),
        ("replace growth", doubling("ns.s|replace('x', 'xx')")),
        ("capture doubling", "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set y %}{{ ns.s }}{{ ns.s }}{% endset %}{% set ns.s = y %}{% endfor %}".to_string()),
        ("Fibonacci", "{% set ns = namespace(a='x', b='x') %}{% for i in range(200) %}{% set c = ns.a ~ ns.b %}{% set ns.a = ns.b %}{% set ns.b = c %}{% endfor %}".to_string()),
        ("list doubling", "{% set ns = namespace(l=['x']) %}{% for i in range(64) %}{% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l|join }}".to_string()),
        ("recursive macro doubling", "{% macro d(n) %}{% if n == 0 %}x{% else %}{% set s = d(n - 1) %}{{ s }}{{ s }}{% endif %}{% endmacro %}{{ d(64)|length }}".to_string()),
        ("a large literal, many times", literal),
        ("copies kept in variables", "{% set n = 10000000 %}{% set s = 'x' * n %}{% set a = s[1:] %}{% set b = s[2:] %}{% set c = s[3:] %}{% set d = s[4:] %}{{ a ~ b ~ c ~ d }}".to_string()),
    ];
    const MIB: usize = 1 << 20;
    for (name, template) in bombs {
        let tokenizer = with_template(&template);
        let before = LIVE.load(Ordering::Relaxed);
        PEAK.store(before, Ordering::Relaxed);
        let result = tokenizer.apply_chat_template(&[ChatMessage::new("user", "hi")], true);
        let held = PEAK.load(Ordering::Relaxed) - before;
        assert!(matches!(result, Err(Error::Template(_))), "{name}: {result:?}");
        // Three times the budget (a `String` that doubles, while it moves), and some slack.
        assert!(held < 56 * MIB, "{name}: held {:.1} MiB", held as f64 / MIB as f64);
    }
}
