//! `capsule_grammar::parse_condition` on arbitrary UTF-8.
//!
//! Besides "no panic, no hang, bounded memory", two properties hold for every input:
//! spans point inside the input on character boundaries, and the canonical printing
//! of a parsed condition parses again to the same canonical text.
#![no_main]

use capsule_grammar::{MAX_CONDITION_LEN, Span, parse_condition};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|src: &str| {
    match parse_condition(src) {
        Ok(expr) => {
            assert_span_in(src, expr.span());
            let canonical = expr.to_string();
            match parse_condition(&canonical) {
                Ok(again) => assert_eq!(again.to_string(), canonical, "canonical text of {src:?} is not stable"),
                // Canonical text adds spaces and makes `!a == 1` into `!(a == 1)`, so an
                // input at a limit may print past it; anything else is a bug.
                Err(e) => assert!(
                    canonical.len() > MAX_CONDITION_LEN || e.message.contains("nested too deeply"),
                    "canonical text {canonical:?} of {src:?} does not parse: {e:?}"
                ),
            }
        }
        Err(e) => {
            assert_span_in(src, e.span);
            assert!(!e.message.is_empty());
        }
    }
});

fn assert_span_in(src: &str, span: Span) {
    assert!(
        span.start <= span.end && span.end <= src.len(),
        "span {span:?} outside {} bytes of input",
        src.len()
    );
    assert!(
        src.is_char_boundary(span.start) && src.is_char_boundary(span.end),
        "span {span:?} splits a character"
    );
}
