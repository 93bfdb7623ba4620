//! Every kind of error: its message, its help and the span it underlines.

mod common;

use capsule_grammar::{MAX_CONDITION_LEN, MAX_NESTING_DEPTH, ParseError, Span, parse_condition};
use common::render_error;

#[track_caller]
fn error(src: &str) -> ParseError {
    match parse_condition(src) {
        Ok(expr) => panic!("{src:?} parsed as {expr}"),
        Err(error) => error,
    }
}

/// The text an error underlines; an empty span is shown as `<end>` when at the end.
#[track_caller]
fn underlined(src: &str) -> &str {
    let span = error(src).span;
    if span.start == src.len() {
        assert!(span.is_empty(), "{span:?}");
        "<end>"
    } else {
        &src[span.start..span.end]
    }
}

/// Each error rendered under its input: reviewed by eye, then kept as a snapshot.
#[test]
fn error_messages() {
    let cases = [
        // empty input
        "",
        "   ",
        // where a test should start
        "== 1",
        "1 == a",
        "a == 1 || ",
        "a == 1 ||| b == 1",
        "!",
        "$",
        // after the argument
        "a",
        "domain AF_INET",
        "a = 1",
        "a =< 1",
        "a -- 1",
        "a && b == 1",
        "a not",
        "a not [1]",
        "a notin [1]",
        "not a == 1",
        // values
        "a ==",
        "a == !b",
        "a == \"x\"",
        "a == 1 |",
        "a == - 1",
        // masked compare
        "a & 1",
        "a & 1 = 1",
        "a & 1 < 2",
        "a & == 1",
        // lists
        "a in",
        "a in 1",
        "a in []",
        "a in [1",
        "a in [1,",
        "a in [1 2]",
        "a in [(1]",
        // after a test
        "a == 1 b == 2",
        "a == 1 & b == 2",
        "a == 1 | b == 2",
        "a == 1)",
        "a == 1]",
        "a == 1 ==",
        // parentheses
        "(a == 1",
        "((a == 1) || (b == 2)",
        "(a == 1 b)",
        "a == (1",
        "a == (1 b",
        "()",
        // numbers
        "a == 18446744073709551616",
        "a == 0x1_0000_0000_0000_0000",
        "a == 0x",
        "a == 0x1g",
        "a == 0o8",
        "a == 0b102",
        "a == 12abc",
        "a == 0755",
        "a == 09",
        "a == -0_7",
        // beyond ASCII
        "a == é",
        "a\u{a0}== 1",
    ];
    let rendered: String = cases.iter().map(|src| render_error(src, &error(src))).collect::<Vec<_>>().join("\n");
    insta::assert_snapshot!(rendered);
}

#[test]
fn spans_point_at_the_offending_token() {
    assert_eq!(underlined("a = 1"), "=");
    assert_eq!(underlined("domain AF_INET"), "AF_INET");
    assert_eq!(underlined("a ==   "), "<end>");
    assert_eq!(underlined("a in [1 2]"), "2");
    assert_eq!(underlined("a in [1"), "[");
    assert_eq!(underlined("(a == 1) && (b == 2"), "(");
    assert_eq!(error("(a == 1) && (b == 2").span, Span { start: 12, end: 13 });
    assert_eq!(underlined("a == 1 && b == 0x1_0000_0000_0000_0000"), "0x1_0000_0000_0000_0000");
    assert_eq!(underlined("a == 1 && b == -0o9"), "-0o9");
    assert_eq!(underlined("a == 1 && é"), "é");
}

#[test]
fn bad_numbers_are_reported_as_such() {
    assert_eq!(error("a == 18446744073709551616").message, "number does not fit in 64 bits");
    assert_eq!(error("a == -18446744073709551616").message, "number does not fit in 64 bits");
    assert_eq!(error("a == 0x10000000000000000").message, "number does not fit in 64 bits");
}

#[test]
fn over_long_condition_is_refused_before_parsing() {
    let src = format!("a == 1 || {}", "(".repeat(MAX_CONDITION_LEN));
    let error = error(&src);
    assert!(error.message.contains("too long"), "{error:?}");
    assert_eq!(error.span, Span { start: MAX_CONDITION_LEN, end: src.len() });
    // The span starts on a character boundary even when the limit falls inside one.
    let src = format!("a{}", "é".repeat(MAX_CONDITION_LEN / 2));
    let error = self::error(&src);
    assert_eq!(error.span.start, MAX_CONDITION_LEN - 1);
    assert!(src.is_char_boundary(error.span.start));
}

/// `depth` levels of `open` around a test, closed by `close`.
fn nested(open: &str, depth: usize, inner: &str, close: &str) -> String {
    format!("{}{inner}{}", open.repeat(depth), close.repeat(depth))
}

#[test]
fn nesting_up_to_the_limit_parses() {
    let depth = MAX_NESTING_DEPTH;
    for src in [
        nested("(", depth, "a == 1", ")"),
        nested("!", depth, "a == 1", ""),
        nested("!(", depth / 2, "a == 1", ")"),
        format!("a == {}", nested("(", depth, "1", ")")),
        format!("a in [{}]", nested("(", depth - 1, "1", ")")),
        // Levels end where their operand does: siblings do not add up.
        format!("{} && {}", nested("!", depth, "a == 1", ""), nested("(", depth, "b == 1", ")")),
        format!("{} || a == 1", nested("(", depth - 1, "!a == 1", ")")),
    ] {
        // A small stack shows that the limit leaves a wide margin.
        let parsed = std::thread::Builder::new()
            .stack_size(512 * 1024)
            .spawn(move || parse_condition(&src).map(|_| ()).map_err(|e| (src, e)))
            .unwrap()
            .join()
            .expect("no stack overflow");
        if let Err((src, error)) = parsed {
            panic!("{src:?}: {error:?}");
        }
    }
}

#[test]
fn nesting_beyond_the_limit_is_refused_at_the_first_token_too_deep() {
    let depth = MAX_NESTING_DEPTH + 1;
    for (src, first_too_deep) in [
        (nested("(", depth, "a == 1", ")"), MAX_NESTING_DEPTH),
        (nested("!", depth, "a == 1", ""), MAX_NESTING_DEPTH),
        (nested("! ", depth, "a == 1", ""), 2 * MAX_NESTING_DEPTH),
        (format!("a == {}", nested("(", depth, "1", ")")), 5 + MAX_NESTING_DEPTH),
        (format!("a in [{}]", nested("(", depth - 1, "1", ")")), 6 + MAX_NESTING_DEPTH - 1),
        // `!` outside a group stays counted inside it.
        (format!("!!{}", nested("(", depth - 2, "a == 1", ")")), 2 + MAX_NESTING_DEPTH - 2),
    ] {
        let error = error(&src);
        assert!(error.message.contains("nested too deeply"), "{src:?}: {error:?}");
        assert_eq!(error.span, Span { start: first_too_deep, end: first_too_deep + 1 }, "{src:?}");
    }
}

#[test]
fn hostile_nesting_is_refused_without_recursion() {
    for src in [
        "(".repeat(MAX_CONDITION_LEN),
        "!".repeat(MAX_CONDITION_LEN),
        format!("a == {}", "(".repeat(MAX_CONDITION_LEN - 5)),
        "[".repeat(MAX_CONDITION_LEN),
        "!(".repeat(MAX_CONDITION_LEN / 2),
    ] {
        let error = error(&src);
        assert!(error.message.contains("nested too deeply"), "{error:?}");
    }
}

#[test]
fn a_stack_too_small_for_the_parser_gives_an_error_not_a_crash() {
    // pest checks the remaining stack and refuses to go on below 64 KiB, so on a
    // 64 KiB thread it stops at once, whatever the build profile.
    let result = std::thread::Builder::new()
        .stack_size(64 * 1024)
        .spawn(|| parse_condition("(a == 1)"))
        .unwrap()
        .join()
        .expect("no stack overflow");
    let error = result.expect_err("pest's stack guard stops the parse");
    assert!(error.message.contains("too complex"), "{error:?}");
}
