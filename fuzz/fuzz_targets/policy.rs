//! The whole policy front-end, as `capsulec check` drives it: raw bytes to
//! `front::check_bytes`, then every diagnostic rendered as text and as JSON against
//! the (lossily decoded) source, so span handling is exercised on hostile input too.
#![no_main]

use capsule_compiler::diagnostic::{self, SourceFile};
use capsule_compiler::front;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let checked = front::check_bytes(bytes);
    assert_eq!(
        checked.policy.is_some(),
        !checked.has_errors(),
        "a policy comes back exactly when there are no errors"
    );

    let text = String::from_utf8_lossy(bytes);
    let source = SourceFile { name: "capsule.yaml", text: &text };
    let rendered = diagnostic::render_plain(&checked.diagnostics, &source);
    for d in &checked.diagnostics {
        assert!(rendered.contains(d.code.as_str()), "rendering lost {}", d.code.as_str());
    }
    let json = diagnostic::to_json(&checked.diagnostics, &source);
    serde_json::to_string(&json).expect("diagnostics serialise");
});
