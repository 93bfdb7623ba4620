//! The condition language, construct by construct: tree shape, canonical text, spans.

mod common;

use capsule_grammar::{Expr, MAX_CONDITION_LEN, Span, TestOp, Value, parse_condition};
use common::{erase_spans, sexp};

/// Parses `src`, checks the tree's shape and its canonical text, and that the text
/// parses back to the same tree.
#[track_caller]
fn check(src: &str, shape: &str, canonical: &str) {
    let expr = parse_condition(src).unwrap_or_else(|e| panic!("{src:?}: {e:?}"));
    assert_eq!(sexp(&expr), shape, "shape of {src:?}");
    assert_eq!(expr.to_string(), canonical, "canonical text of {src:?}");
    let reparsed = parse_condition(canonical).expect("canonical text parses");
    assert_eq!(erase_spans(&reparsed), erase_spans(&expr), "round trip of {src:?}");
}

fn span(start: usize, end: usize) -> Span {
    Span { start, end }
}

#[test]
fn comparisons() {
    check("domain == AF_INET", "(== domain AF_INET)", "domain == AF_INET");
    check("arg0 != 1", "(!= arg0 1)", "arg0 != 1");
    check("arg1 < 2", "(< arg1 2)", "arg1 < 2");
    check("arg1 <= 2", "(<= arg1 2)", "arg1 <= 2");
    check("arg1 > 2", "(> arg1 2)", "arg1 > 2");
    check("arg1 >= 2", "(>= arg1 2)", "arg1 >= 2");
    check("arg1>=2", "(>= arg1 2)", "arg1 >= 2");
}

#[test]
fn numbers() {
    check("a == 0", "(== a 0)", "a == 0");
    check("a == 255", "(== a 255)", "a == 255");
    check("a == 256", "(== a 256)", "a == 0x100");
    check("a == 0x1F", "(== a 31)", "a == 31");
    check("a == 0XfF", "(== a 255)", "a == 255");
    check("a == 0o755", "(== a 493)", "a == 0x1ed");
    check("a == 0b1010", "(== a 10)", "a == 10");
    check("a == 1_000_000", "(== a 1000000)", "a == 0xf4240");
    check("a == 0x_ffff_ffff", "(== a 4294967295)", "a == 0xffffffff");
    check("a == 18446744073709551615", "(== a 18446744073709551615)", "a == 0xffffffffffffffff");
    check("a == 0xffffffffffffffff", "(== a 18446744073709551615)", "a == 0xffffffffffffffff");
    check("a == -1", "(== a -1)", "a == -1");
    check("a == -0x8000", "(== a -32768)", "a == -0x8000");
    check("a == -0", "(== a -0)", "a == -0");
}

#[test]
fn constants_and_bit_or() {
    check(
        "flags == CLONE_NEWUSER | CLONE_NEWNS",
        "(== flags (| CLONE_NEWUSER CLONE_NEWNS))",
        "flags == CLONE_NEWUSER | CLONE_NEWNS",
    );
    check("a == A|B|0x10", "(== a (| A B 16))", "a == A | B | 16");
    check("a == (A)", "(== a A)", "a == A");
    check("a == ((1))", "(== a 1)", "a == 1");
    // Grouping is kept in the tree and printed back.
    check("a == (A | B) | C", "(== a (| (| A B) C))", "a == (A | B) | C");
    check("a == A | (B | C)", "(== a (| A (| B C)))", "a == A | (B | C)");
    check("a == _private", "(== a _private)", "a == _private");
}

#[test]
fn masked_compare() {
    check("flags & O_WRONLY == O_WRONLY", "(== (& flags O_WRONLY) O_WRONLY)", "flags & O_WRONLY == O_WRONLY");
    check("flags & 0x3 != 0", "(!= (& flags 3) 0)", "flags & 3 != 0");
    check(
        "flags & (O_WRONLY | O_RDWR) == 0",
        "(== (& flags (| O_WRONLY O_RDWR)) 0)",
        "flags & (O_WRONLY | O_RDWR) == 0",
    );
    check("flags&A|B==C|D", "(== (& flags (| A B)) (| C D))", "flags & (A | B) == C | D");
}

#[test]
fn membership() {
    check("domain in [AF_UNIX]", "(in domain AF_UNIX)", "domain in [AF_UNIX]");
    check(
        "domain in [AF_UNIX, AF_INET,AF_INET6]",
        "(in domain AF_UNIX AF_INET AF_INET6)",
        "domain in [AF_UNIX, AF_INET, AF_INET6]",
    );
    check("domain in[1]", "(in domain 1)", "domain in [1]");
    check(
        "domain not in [AF_PACKET, AF_NETLINK]",
        "(not-in domain AF_PACKET AF_NETLINK)",
        "domain not in [AF_PACKET, AF_NETLINK]",
    );
    check("a in [A | B, (C)]", "(in a (| A B) C)", "a in [A | B, C]");
}

#[test]
fn keywords_end_at_a_word_boundary() {
    check("index == 1", "(== index 1)", "index == 1");
    check("nothing == 1", "(== nothing 1)", "nothing == 1");
    check("a == index", "(== a index)", "a == index");
    check("a in [inside, nothing]", "(in a inside nothing)", "a in [inside, nothing]");
    check("in in [in]", "(in in in)", "in in [in]");
    check("not not in [not]", "(not-in not not)", "not not in [not]");
    assert!(parse_condition("a notin [1]").is_err());
    assert!(parse_condition("a inx [1]").is_err());
}

#[test]
fn precedence_and_grouping() {
    check("a == 1 || b == 2 && c == 3", "(or (== a 1) (and (== b 2) (== c 3)))", "a == 1 || b == 2 && c == 3");
    check("a == 1 && b == 2 || c == 3", "(or (and (== a 1) (== b 2)) (== c 3))", "a == 1 && b == 2 || c == 3");
    check("(a == 1 || b == 2) && c == 3", "(and (or (== a 1) (== b 2)) (== c 3))", "(a == 1 || b == 2) && c == 3");
    check("a == 1 || b == 2 || c == 3", "(or (== a 1) (== b 2) (== c 3))", "a == 1 || b == 2 || c == 3");
    check("(a == 1 || b == 2) || c == 3", "(or (or (== a 1) (== b 2)) (== c 3))", "(a == 1 || b == 2) || c == 3");
    check("a == 1 && (b == 2 && c == 3)", "(and (== a 1) (and (== b 2) (== c 3)))", "a == 1 && (b == 2 && c == 3)");
    check("((a == 1))", "(== a 1)", "a == 1");
}

#[test]
fn negation_binds_to_the_next_operand() {
    check("!a == 1", "(not (== a 1))", "!(a == 1)");
    check("!a == 1 && b == 2", "(and (not (== a 1)) (== b 2))", "!(a == 1) && b == 2");
    check("!(a == 1 && b == 2)", "(not (and (== a 1) (== b 2)))", "!(a == 1 && b == 2)");
    check("!!a == 1", "(not (not (== a 1)))", "!!(a == 1)");
    check("! ! (a == 1)", "(not (not (== a 1)))", "!!(a == 1)");
    check("!a != 1", "(not (!= a 1))", "!(a != 1)");
    check("!a in [1]", "(not (in a 1))", "!(a in [1])");
}

#[test]
fn whitespace_between_any_tokens() {
    check(
        " \t( a\n&\r\n0x1 ==1 )||!(b  not   in [ 1 ,2 ] ) ",
        "(or (== (& a 1) 1) (not (not-in b 1 2)))",
        "a & 1 == 1 || !(b not in [1, 2])",
    );
}

#[test]
fn spans_cover_their_own_text() {
    let src = "(a == 1 || !b in [X | 2]) && c & M != 0x10";
    let expr = parse_condition(src).unwrap();
    let text = |span: Span| &src[span.start..span.end];
    let Expr::And(operands, and_span) = &expr else { panic!("{expr:?}") };
    assert_eq!(text(*and_span), src);
    let Expr::Or(alternatives, or_span) = &operands[0] else { panic!("{expr:?}") };
    assert_eq!(text(*or_span), "a == 1 || !b in [X | 2]", "parentheses are not the Or's");
    assert_eq!(text(alternatives[0].span()), "a == 1");
    let Expr::Not(test, not_span) = &alternatives[1] else { panic!("{expr:?}") };
    assert_eq!(text(*not_span), "!b in [X | 2]");
    let Expr::Test(test) = &**test else { panic!("{expr:?}") };
    assert_eq!(text(test.span), "b in [X | 2]");
    assert_eq!(text(test.arg.span), "b");
    let TestOp::In(values) = &test.op else { panic!("{expr:?}") };
    assert_eq!(text(values[0].span()), "X | 2");
    let Value::BitOr(atoms, _) = &values[0] else { panic!("{expr:?}") };
    assert_eq!(text(atoms[1].span()), "2");
    let Expr::Test(masked) = &operands[1] else { panic!("{expr:?}") };
    assert_eq!(masked.span, span(29, 42));
    let TestOp::Masked { mask, value, .. } = &masked.op else { panic!("{expr:?}") };
    assert_eq!(text(mask.span()), "M");
    assert_eq!(text(value.span()), "0x10");
}

#[test]
fn value_spans_include_inner_parentheses() {
    let src = "a == (A | B) | -1";
    let expr = parse_condition(src).unwrap();
    let Expr::Test(test) = &expr else { panic!() };
    assert_eq!(test.span, span(0, src.len()));
    let TestOp::Cmp(_, Value::BitOr(atoms, whole)) = &test.op else { panic!() };
    assert_eq!(*whole, span(5, 17));
    assert_eq!(atoms[0].span(), span(6, 11), "the group's value, without its parentheses");
    assert_eq!(atoms[1], Value::Number { value: 1, negative: true, span: span(15, 17) });
}

#[test]
fn span_helpers() {
    let s = span(3, 7);
    assert_eq!(s.offset_by(10), span(13, 17));
    assert_eq!(s.len(), 4);
    assert!(!s.is_empty());
    assert_eq!(std::ops::Range::from(s), 3..7);
}

#[test]
fn longest_condition_is_accepted() {
    let (test, last) = ("arg0 == 1 || ", "arg1 == 2");
    let mut src = test.repeat((MAX_CONDITION_LEN - last.len()) / test.len());
    src.push_str(last);
    src.push_str(&" ".repeat(MAX_CONDITION_LEN - src.len()));
    assert_eq!(src.len(), MAX_CONDITION_LEN);
    let Expr::Or(operands, _) = parse_condition(&src).unwrap() else { panic!() };
    assert_eq!(operands.len(), (MAX_CONDITION_LEN - last.len()) / test.len() + 1);
}
