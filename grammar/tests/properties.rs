//! Properties over generated input: no input panics, errors and trees point inside the
//! input, and printed trees parse back to themselves.

mod common;

use capsule_grammar::{CmpOp, EqOp, Expr, Ident, MAX_CONDITION_LEN, Span, Test, TestOp, Value, parse_condition};
use common::{all_spans, erase_spans};
use proptest::prelude::*;

const NO_SPAN: Span = Span { start: 0, end: 0 };

/// What any input must satisfy, whether it parses or not.
fn check_any_input(src: &str) -> Result<(), TestCaseError> {
    let in_bounds = |span: Span| {
        span.start <= span.end
            && span.end <= src.len()
            && src.is_char_boundary(span.start)
            && src.is_char_boundary(span.end)
    };
    match parse_condition(src) {
        Err(error) => {
            prop_assert!(in_bounds(error.span), "{error:?}");
            prop_assert!(!error.message.is_empty());
        }
        Ok(expr) => {
            for span in all_spans(&expr) {
                prop_assert!(in_bounds(span) && !span.is_empty(), "{span:?} in {expr:?}");
            }
            check_round_trip(&expr)?;
            check_spans_reparse(src, &expr)?;
        }
    }
    Ok(())
}

/// The canonical text of a tree parses back to the same tree.
fn check_round_trip(expr: &Expr) -> Result<(), TestCaseError> {
    let text = expr.to_string();
    let reparsed = parse_condition(&text).map_err(|e| TestCaseError::fail(format!("{text:?}: {e:?}")))?;
    prop_assert_eq!(erase_spans(&reparsed), erase_spans(expr), "{}", text);
    Ok(())
}

/// The text under each node's span parses, on its own, to that node.
fn check_spans_reparse(src: &str, expr: &Expr) -> Result<(), TestCaseError> {
    let text = &src[expr.span().start..expr.span().end];
    let alone = parse_condition(text).map_err(|e| TestCaseError::fail(format!("{text:?}: {e:?}")))?;
    prop_assert_eq!(erase_spans(&alone), erase_spans(expr));
    match expr {
        Expr::Or(operands, _) | Expr::And(operands, _) => operands.iter().try_for_each(|e| check_spans_reparse(src, e)),
        Expr::Not(operand, _) => check_spans_reparse(src, operand),
        Expr::Test(test) => {
            prop_assert_eq!(&src[test.arg.span.start..test.arg.span.end], test.arg.name.as_str());
            Ok(())
        }
    }
}

/// Sequences of the language's own tokens reach far more of the grammar than
/// arbitrary characters do.
fn token_soup() -> impl Strategy<Value = String> {
    let tokens = prop::sample::select(vec![
        "a", "arg0", "AF_INET", "in", "not", "index", "1", "0x1f", "-1", "0755", "0b2", "==", "!=", "<", "<=", ">",
        ">=", "&", "&&", "|", "||", "!", "(", ")", "[", "]", ",", "=", " ", "\t", "é", "-",
    ]);
    prop::collection::vec((tokens, any::<bool>()), 0..24).prop_map(|tokens| {
        tokens.into_iter().map(|(token, space)| if space { format!("{token} ") } else { token.to_owned() }).collect()
    })
}

/// Valid conditions with one token inserted, one deleted or one replaced: errors from
/// deep inside the grammar.
fn mutated() -> impl Strategy<Value = String> {
    let tokens = prop::sample::select(vec![
        "a", "in", "not", "1", "-", "0x", "==", "=", "<", "&", "&&", "|", "||", "!", "(", ")", "[", "]", ",", " ", "é",
    ]);
    (expr(), any::<prop::sample::Index>(), tokens, 0..3u8).prop_map(|(expr, at, token, how)| {
        let mut text = expr.to_string(); // ASCII: every index is a character boundary
        let at = at.index(text.len() + 1);
        match how {
            0 => text.insert_str(at, token),
            1 => drop(text.drain(at..(at + 2).min(text.len()))),
            _ => text.replace_range(at..(at + 1).min(text.len()), token),
        }
        text
    })
}

fn ident() -> impl Strategy<Value = Ident> {
    "[A-Za-z_][A-Za-z0-9_]{0,8}".prop_map(|name| Ident { name, span: NO_SPAN })
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        (prop_oneof![0..300u64, any::<u64>()], any::<bool>())
            .prop_map(|(value, negative)| { Value::Number { value, negative, span: NO_SPAN } }),
        ident().prop_map(Value::Constant),
    ];
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop::collection::vec(inner, 2..4).prop_map(|values| Value::BitOr(values, NO_SPAN))
    })
}

fn test() -> impl Strategy<Value = Test> {
    let cmp = prop::sample::select(vec![CmpOp::Eq, CmpOp::Ne, CmpOp::Lt, CmpOp::Le, CmpOp::Gt, CmpOp::Ge]);
    let eq = prop::sample::select(vec![EqOp::Eq, EqOp::Ne]);
    let op = prop_oneof![
        (cmp, value()).prop_map(|(op, value)| TestOp::Cmp(op, value)),
        (value(), eq, value()).prop_map(|(mask, op, value)| TestOp::Masked { mask, op, value }),
        prop::collection::vec(value(), 1..4).prop_map(TestOp::In),
        prop::collection::vec(value(), 1..4).prop_map(TestOp::NotIn),
    ];
    (ident(), op).prop_map(|(arg, op)| Test { arg, op, span: NO_SPAN })
}

fn expr() -> impl Strategy<Value = Expr> {
    test().prop_map(Expr::Test).prop_recursive(5, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 2..5).prop_map(|e| Expr::Or(e, NO_SPAN)),
            prop::collection::vec(inner.clone(), 2..5).prop_map(|e| Expr::And(e, NO_SPAN)),
            inner.prop_map(|e| Expr::Not(Box::new(e), NO_SPAN)),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn arbitrary_strings(src in any::<String>()) {
        check_any_input(&src)?;
    }

    #[test]
    fn grammar_characters(src in "[a-z0-9_ ()\\[\\]!&|=<>,x-]{0,64}") {
        check_any_input(&src)?;
    }

    #[test]
    fn token_sequences(src in token_soup()) {
        check_any_input(&src)?;
    }

    #[test]
    fn mutated_conditions(src in mutated()) {
        check_any_input(&src)?;
    }
}

proptest! {
    #[test]
    fn printed_trees_parse_back(expr in expr()) {
        let text = expr.to_string();
        prop_assume!(text.len() <= MAX_CONDITION_LEN);
        let parsed = parse_condition(&text)
            .map_err(|e| TestCaseError::fail(format!("{text:?}: {e:?}")))?;
        prop_assert_eq!(erase_spans(&parsed), erase_spans(&expr), "{}", text);
        check_any_input(&text)?;
    }
}
