//! The macOS back-end's reader and writer on arbitrary UTF-8.
//!
//! Two properties besides "no panic, no hang": (1) the input as a policy path (a
//! hostile string after `/data/`) either is refused by the mapping or gives a profile
//! that reads back unchanged and grants that path and not its sibling; (2) any text
//! the SBPL parser accepts prints back to text that parses to the same profile.
#![no_main]

use capsule_compiler::back::sbpl::ast::{Filter, Operation, Profile, Rule, Str, Verdict};
use capsule_compiler::back::sbpl::eval::{Bindings, Object, evaluate};
use capsule_compiler::back::sbpl::{emit, map, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|src: &str| {
    if let Ok(profile) = parse::parse(src) {
        let text = emit::emit(&profile);
        assert_eq!(parse::parse(&text).as_ref(), Ok(&profile), "{src:?} does not print back");
    }
    let path = format!("/data/{src}");
    let Ok(sbpl) = map::path(&path) else { return };
    let rule = Rule {
        comment: vec![],
        verdict: Verdict::Allow,
        operations: vec![Operation::FileRead],
        message: None,
        filters: vec![Filter::Subpath(sbpl)],
    };
    let profile = Profile { default_message: None, rules: vec![rule] };
    let text = emit::emit(&profile);
    assert_eq!(parse::parse(&text).as_ref(), Ok(&profile), "path {path:?} does not read back");
    let b = Bindings { workspace: "/w".into(), home: "/h".into(), tmpdir: "/t".into(), proxy_port: "3128".into() };
    let granted = match &profile.rules[0].filters[0] {
        Filter::Subpath(Str::Lit(g)) => g.clone(),
        _ => return,
    };
    let read = |p: &str| evaluate(&profile, &b, Operation::FileReadData, &Object::Path(p.into())).map(|o| o.verdict);
    assert_eq!(read(&granted), Ok(Verdict::Allow));
    if granted != "/" {
        assert_eq!(read(&format!("{granted}x")), Ok(Verdict::Deny), "{granted:?} grants its sibling");
    }
});
