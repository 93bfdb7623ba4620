//! From condition text to [`Expr`]: resource limits, pest, then the tree.

use pest::Parser as _;
use pest::iterators::Pair;
use pest_derive::Parser;

use crate::ast::{CmpOp, EqOp, Expr, Ident, Span, Test, TestOp, Value};
use crate::error::{self, ParseError};

/// The longest condition accepted, in bytes.
pub const MAX_CONDITION_LEN: usize = 4096;

/// The deepest nesting accepted: parentheses, brackets and `!` operators counted
/// together. pest's parser recurses once (several frames) per level, so this bound
/// is what keeps a hostile `((((...` or `!!!!...` from exhausting the stack: at the
/// limit a parse needs less than 512 KiB of stack even in a debug build.
pub const MAX_NESTING_DEPTH: usize = 64;

#[derive(Parser)]
#[grammar = "condition.pest"]
struct ConditionParser;

/// Parses one condition, such as `domain == AF_INET && type & SOCK_RAW == 0`.
///
/// Spans in the result and in the error are byte offsets into `src`.
pub fn parse_condition(src: &str) -> Result<Expr, ParseError> {
    check_limits(src)?;
    let mut pairs =
        ConditionParser::parse(Rule::condition, src).map_err(|pest_error| error::from_pest(src, &pest_error))?;
    let condition = pairs.next().expect("pest yields the `condition` pair on success");
    let or_expr =
        condition.into_inner().find(|pair| pair.as_rule() == Rule::or_expr).expect("`condition` holds an `or_expr`");
    build_or(or_expr)
}

/// Rejects what the parser should never see: empty, overlong or too deeply nested input.
fn check_limits(src: &str) -> Result<(), ParseError> {
    if src.len() > MAX_CONDITION_LEN {
        let mut start = MAX_CONDITION_LEN;
        while !src.is_char_boundary(start) {
            start -= 1;
        }
        return Err(ParseError::new(
            Span::new(start, src.len()),
            format!("condition is too long ({} bytes; the limit is {MAX_CONDITION_LEN})", src.len()),
        )
        .with_help("split it into several rules"));
    }
    if src.trim().is_empty() {
        return Err(ParseError::new(Span::new(0, src.len()), "empty condition")
            .with_help("write a test such as `arg0 == 1`, or leave out `if:`"));
    }
    check_nesting(src)
}

/// Measures nesting with a cheap scan that over-approximates the parser's recursion.
///
/// Each open `(` or `[` is a level until its closer. Each `!` is a level until its
/// operand ends, which is at the latest the next `&&` or `||` at the same
/// parenthesis level, or the `)` that closes that level. A closer that does not
/// match ends the scan: pest stops there too.
fn check_nesting(src: &str) -> Result<(), ParseError> {
    struct Level {
        closer: u8,
        nots: usize,
    }
    let bytes = src.as_bytes();
    let mut open: Vec<Level> = Vec::new();
    let mut root_nots = 0;
    let mut depth = 0;
    let mut i = 0;
    while i < bytes.len() {
        let next = bytes.get(i + 1).copied();
        let mut token_len = 1;
        match (bytes[i], next) {
            (b'!', Some(b'=')) => token_len = 2, // `!=` is no negation
            (b'&', Some(b'&')) | (b'|', Some(b'|')) => {
                token_len = 2;
                let nots = open.last_mut().map_or(&mut root_nots, |level| &mut level.nots);
                depth -= *nots;
                *nots = 0;
            }
            (b'!', _) => {
                *open.last_mut().map_or(&mut root_nots, |level| &mut level.nots) += 1;
                depth += 1;
            }
            (opener @ (b'(' | b'['), _) => {
                let closer = if opener == b'(' { b')' } else { b']' };
                open.push(Level { closer, nots: 0 });
                depth += 1;
            }
            (closer @ (b')' | b']'), _) => match open.last() {
                Some(level) if level.closer == closer => {
                    depth -= 1 + level.nots;
                    open.pop();
                }
                _ => return Ok(()),
            },
            _ => {}
        }
        if depth > MAX_NESTING_DEPTH {
            return Err(ParseError::new(
                Span::new(i, i + token_len),
                format!("condition is nested too deeply (more than {MAX_NESTING_DEPTH} levels)"),
            )
            .with_help("parentheses, brackets and `!` count as levels; simplify the condition"));
        }
        i += token_len;
    }
    Ok(())
}

/// The span of a pair, less the whitespace that pest lets a rule end with when it
/// looked for a continuation (`a == 1 ` before a `)`) and found none.
fn span_of(pair: &Pair<'_, Rule>) -> Span {
    let start = pair.as_span().start();
    let text = pair.as_str().trim_end_matches([' ', '\t', '\r', '\n']);
    Span::new(start, start + text.len())
}

fn ident(pair: &Pair<'_, Rule>) -> Ident {
    Ident { name: pair.as_str().to_owned(), span: span_of(pair) }
}

// The builders recurse once per level of nesting, as pest does; plain loops rather
// than iterator chains keep their frames few and small in debug builds.

/// `or_expr`: operands separated by `or_op`.
fn build_or(pair: Pair<'_, Rule>) -> Result<Expr, ParseError> {
    let span = span_of(&pair);
    let mut operands = Vec::new();
    for operand in pair.into_inner() {
        if operand.as_rule() == Rule::and_expr {
            operands.push(build_and(operand)?);
        }
    }
    Ok(if operands.len() == 1 { operands.remove(0) } else { Expr::Or(operands, span) })
}

/// `and_expr`: operands separated by `and_op`.
fn build_and(pair: Pair<'_, Rule>) -> Result<Expr, ParseError> {
    let span = span_of(&pair);
    let mut operands = Vec::new();
    for operand in pair.into_inner() {
        if operand.as_rule() != Rule::and_op {
            operands.push(build_unary(operand)?);
        }
    }
    Ok(if operands.len() == 1 { operands.remove(0) } else { Expr::And(operands, span) })
}

/// `not_expr`, `group` or `test`.
fn build_unary(pair: Pair<'_, Rule>) -> Result<Expr, ParseError> {
    let span = span_of(&pair);
    match pair.as_rule() {
        Rule::not_expr => {
            let operand = pair.into_inner().find(|p| p.as_rule() != Rule::not_op).expect("`!` has an operand");
            Ok(Expr::Not(Box::new(build_unary(operand)?), span))
        }
        Rule::group => build_or(inner(pair, Rule::or_expr)),
        Rule::test => build_test(pair).map(Expr::Test),
        rule => unreachable!("`{rule:?}` in place of a unary expression"),
    }
}

fn build_test(pair: Pair<'_, Rule>) -> Result<Test, ParseError> {
    let span = span_of(&pair);
    let mut children = pair.into_inner();
    let arg = ident(&children.next().expect("a test starts with its argument"));
    let op_pair = children.next().expect("a test has an operator");
    let op_rule = op_pair.as_rule();
    let mut parts = op_pair.into_inner();
    let op = match op_rule {
        Rule::cmp_test => {
            let op = match parts.next().map(|p| p.as_str()) {
                Some("==") => CmpOp::Eq,
                Some("!=") => CmpOp::Ne,
                Some("<") => CmpOp::Lt,
                Some("<=") => CmpOp::Le,
                Some(">") => CmpOp::Gt,
                Some(">=") => CmpOp::Ge,
                other => unreachable!("comparison operator {other:?}"),
            };
            TestOp::Cmp(op, build_value(parts.next().expect("a value follows"))?)
        }
        Rule::masked_test => {
            let mut values = Vec::with_capacity(2);
            let mut op = EqOp::Eq;
            for part in parts {
                match part.as_rule() {
                    Rule::value => values.push(build_value(part)?),
                    Rule::eq_op if part.as_str() == "!=" => op = EqOp::Ne,
                    _ => {}
                }
            }
            let [mask, value] =
                <[Value; 2]>::try_from(values).unwrap_or_else(|_| unreachable!("a masked test has two values"));
            TestOp::Masked { mask, op, value }
        }
        Rule::in_test => TestOp::In(build_list(parts.find(|p| p.as_rule() == Rule::list))?),
        Rule::not_in_test => TestOp::NotIn(build_list(parts.find(|p| p.as_rule() == Rule::list))?),
        rule => unreachable!("`{rule:?}` in place of a test operator"),
    };
    Ok(Test { arg, op, span })
}

fn build_list(list: Option<Pair<'_, Rule>>) -> Result<Vec<Value>, ParseError> {
    list.expect("`in` is followed by a list")
        .into_inner()
        .filter(|p| p.as_rule() == Rule::value)
        .map(build_value)
        .collect()
}

/// `value`: atoms separated by `bitor_op`.
fn build_value(pair: Pair<'_, Rule>) -> Result<Value, ParseError> {
    let span = span_of(&pair);
    let mut atoms = Vec::new();
    for atom in pair.into_inner() {
        atoms.push(match atom.as_rule() {
            Rule::bitor_op => continue,
            Rule::number => parse_number(atom.as_str(), span_of(&atom))?,
            Rule::constant => Value::Constant(ident(&atom)),
            Rule::value_group => build_value(inner(atom, Rule::value))?,
            rule => unreachable!("`{rule:?}` in place of a value"),
        });
    }
    Ok(if atoms.len() == 1 { atoms.remove(0) } else { Value::BitOr(atoms, span) })
}

/// The single child of `pair` that is a `rule`, skipping punctuation.
fn inner(pair: Pair<'_, Rule>, rule: Rule) -> Pair<'_, Rule> {
    pair.into_inner().find(|p| p.as_rule() == rule).unwrap_or_else(|| unreachable!("no `{rule:?}` inside"))
}

/// Reads a number token: an optional `-`, then decimal, `0x` hexadecimal, `0o` octal or
/// `0b` binary digits, with `_` allowed between digits.
///
/// The grammar lets any letters and digits through after the first digit so that this
/// function can say precisely what is wrong.
fn parse_number(text: &str, span: Span) -> Result<Value, ParseError> {
    let bad = |message: &str| Err(ParseError::new(span, message));
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let prefix = unsigned.get(..2).map(str::to_ascii_lowercase);
    let (radix, kind, digits) = match prefix.as_deref() {
        Some("0x") => (16, "hexadecimal", &unsigned[2..]),
        Some("0o") => (8, "octal", &unsigned[2..]),
        Some("0b") => (2, "binary", &unsigned[2..]),
        _ => (10, "decimal", unsigned),
    };
    let mut value: u64 = 0;
    let mut any_digit = false;
    for c in digits.chars() {
        if c == '_' {
            continue;
        }
        let Some(digit) = c.to_digit(radix) else {
            return bad(&format!("invalid digit `{c}` in {kind} number"));
        };
        any_digit = true;
        value = match value.checked_mul(u64::from(radix)).and_then(|v| v.checked_add(u64::from(digit))) {
            Some(value) => value,
            None => return bad("number does not fit in 64 bits"),
        };
    }
    if !any_digit {
        return bad(&format!("{kind} number has no digits"));
    }
    let significant: String = digits.chars().filter(|&c| c != '_').collect();
    if radix == 10 && significant.len() > 1 && significant.starts_with('0') {
        // C and YAML 1.1 read `0755` as octal; refuse to guess which was meant.
        let rest = significant.trim_start_matches('0');
        let rest = if rest.is_empty() { "0" } else { rest };
        let sign = if negative { "-" } else { "" };
        let help = if rest.chars().all(|c| c.is_digit(8)) {
            format!("write `{sign}0o{rest}` for octal or `{sign}{rest}` for decimal")
        } else {
            format!("write `{sign}{rest}`")
        };
        return Err(ParseError::new(span, "decimal number with a leading zero").with_help(help));
    }
    Ok(Value::Number { value, negative, span })
}
