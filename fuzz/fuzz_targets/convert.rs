//! The JSON form, both ways, on arbitrary bytes read as YAML and as JSON:
//! `front::check_source_bytes`, `convert::document_to_json` and `document_to_yaml`.
//!
//! Besides "no panic, no hang, bounded memory": every diagnostic's span lies inside
//! the text on character boundaries; a policy comes back exactly when there are no
//! errors; the JSON form of any document is JSON, converts to itself, and is
//! invalid exactly when the source is; the JSON and YAML forms of a valid policy
//! check with the same diagnostic codes.
#![no_main]

use capsule_compiler::diagnostic::Diagnostic;
use capsule_compiler::front::{self, Format, convert};
use libfuzzer_sys::fuzz_target;

fn codes(diags: &[Diagnostic]) -> Vec<&'static str> {
    let mut codes: Vec<&str> = diags.iter().map(|d| d.code.as_str()).collect();
    codes.sort();
    codes
}

fuzz_target!(|bytes: &[u8]| {
    for format in [Format::Yaml, Format::Json] {
        let checked = front::check_source_bytes(bytes, format);
        assert_eq!(checked.policy.is_some(), !checked.has_errors());
        let Ok(src) = std::str::from_utf8(bytes) else { continue };
        for d in &checked.diagnostics {
            let span = &d.primary.span;
            assert!(span.start <= span.end && span.end <= src.len(), "{span:?} outside the text");
            assert!(src.is_char_boundary(span.start) && src.is_char_boundary(span.end), "{span:?} splits a char");
        }
        let Ok(json) = convert::document_to_json(src, format) else { continue };
        serde_json::from_str::<serde_json::Value>(&json).expect("the JSON form is JSON");
        assert_eq!(convert::document_to_json(&json, Format::Json).unwrap(), json, "not canonical");
        let from_json = front::check_source(&json, Format::Json);
        assert_eq!(from_json.has_errors(), checked.has_errors(), "{format:?} {src:?} -> {json}");
        if !checked.has_errors() {
            assert_eq!(codes(&from_json.diagnostics), codes(&checked.diagnostics), "{src:?} -> {json}");
        }
        // `document_to_yaml` checks its own output against the JSON form.
        let yaml = convert::document_to_yaml(&json, Format::Json).expect("the JSON form has a YAML form");
        assert_eq!(front::check(&yaml).has_errors(), checked.has_errors(), "{json} -> {yaml}");
    }
});
