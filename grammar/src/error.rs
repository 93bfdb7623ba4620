//! Parse errors, and the translation of pest's errors into words a policy author reads.
//!
//! pest reports the furthest position it reached and the rules it tried there. The
//! grammar names every token it may expect, so the set of rules says where in a
//! test the parser stopped; [`Expected`] turns that into a phrase, and the token
//! found at that position refines it (`=` for `==`, an unmatched `)`, ...).

use std::fmt;

use crate::ast::Span;
use crate::parser::Rule;

/// Why a condition did not parse, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// The offending token, or an empty span at the end of the input.
    pub span: Span,
    pub message: String,
    /// A suggestion for fixing it, when there is one.
    pub help: Option<String>,
}

impl ParseError {
    pub(crate) fn new(span: Span, message: impl Into<String>) -> ParseError {
        ParseError { span, message: message.into(), help: None }
    }

    pub(crate) fn with_help(mut self, help: impl Into<String>) -> ParseError {
        self.help = Some(help.into());
        self
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ParseError {}

/// What the parser was looking for when it stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expected {
    /// The start of a test, `!` or `(`.
    Operand,
    /// An operator after an argument name.
    Operator,
    /// `in` after `not`.
    In,
    /// `[` after `in`.
    ListOpen,
    Value,
    /// `==` or `!=` after `arg & mask`.
    MaskComparison,
    /// `,` or `]` after a value in a list.
    ListNext,
    /// `|` or `)` after a value in parentheses.
    ValueClose,
    /// `&&`, `||` or `)` after a test in parentheses.
    GroupClose,
    /// `&&`, `||` or the end, after a test.
    End,
}

impl Expected {
    fn from_positives(positives: &[Rule]) -> Option<Expected> {
        let has = |rule| positives.contains(&rule);
        Some(if has(Rule::cmp_op) || has(Rule::mask_op) {
            Expected::Operator
        } else if has(Rule::kw_in) {
            Expected::In
        } else if has(Rule::and_expr) || has(Rule::arg) || has(Rule::not_op) {
            Expected::Operand
        } else if has(Rule::value) || has(Rule::number) || has(Rule::constant) {
            Expected::Value
        } else if has(Rule::eq_op) {
            Expected::MaskComparison
        } else if has(Rule::lbracket) {
            Expected::ListOpen
        } else if has(Rule::comma) || has(Rule::rbracket) {
            Expected::ListNext
        } else if has(Rule::rparen) && has(Rule::and_op) {
            Expected::GroupClose
        } else if has(Rule::rparen) {
            Expected::ValueClose
        } else if has(Rule::EOI) {
            Expected::End
        } else {
            return None;
        })
    }

    fn phrase(self, src: &str, pos: usize) -> String {
        match self {
            Expected::Operand => "expected an argument name, `!` or `(`".to_owned(),
            Expected::Operator => format!(
                "expected a comparison operator (==, !=, <, <=, >, >=, &, in, not in) after `{}`",
                word_before(src, pos)
            ),
            Expected::In => "expected `in` after `not`".to_owned(),
            Expected::ListOpen => "expected `[` after `in`".to_owned(),
            Expected::Value => "expected a value (a number or a constant name)".to_owned(),
            Expected::MaskComparison => "expected `==` or `!=` after the mask".to_owned(),
            Expected::ListNext => "expected `,` or `]` after a value in the list".to_owned(),
            Expected::ValueClose => "expected `|` or `)` after the value".to_owned(),
            Expected::GroupClose => "expected `&&`, `||` or `)`".to_owned(),
            Expected::End => "expected `&&`, `||` or the end of the condition".to_owned(),
        }
    }
}

/// Translates a pest error on `src` into a [`ParseError`].
pub(crate) fn from_pest(src: &str, error: &pest::error::Error<Rule>) -> ParseError {
    let pos = match error.location {
        pest::error::InputLocation::Pos(pos) => pos,
        pest::error::InputLocation::Span((start, _)) => start,
    };
    let positives: &[Rule] = match &error.variant {
        pest::error::ErrorVariant::ParsingError { positives, .. } => positives,
        // pest's own guard: it stops before the native stack runs out, which only a
        // caller running on a very small stack can meet within MAX_NESTING_DEPTH.
        pest::error::ErrorVariant::CustomError { message } => {
            let at = token_at(src, pos).unwrap_or(Span::new(src.len(), src.len()));
            return ParseError::new(at, format!("condition too complex to parse: {message}"))
                .with_help("parse on a thread with a larger stack, or simplify the condition");
        }
    };
    let Some(token) = token_at(src, pos) else {
        return at_end(src, Expected::from_positives(positives));
    };
    let found = describe(&src[token.start..token.end]);
    let Some(expected) = Expected::from_positives(positives) else {
        return ParseError::new(token, format!("unexpected {found}"));
    };
    if let Some(error) = misspelt_operator(src, token, expected) {
        return error;
    }
    let error = ParseError::new(token, format!("{}, found {found}", expected.phrase(src, pos)));
    let found = &src[token.start..token.end];
    match expected {
        Expected::Operator if word_before(src, pos) == "not" => {
            error.with_help("negation is written `!`, as in `!(arg0 == 1)`")
        }
        Expected::Operand if found.starts_with(|c: char| c.is_ascii_digit() || c == '-') => {
            error.with_help("a test starts with the argument's name, as in `arg0 == 1`")
        }
        Expected::Value if found == "]" => error.with_help("a list needs at least one value"),
        Expected::Value if found == "\"" || found == "'" => {
            error.with_help("values are not quoted: write the number or constant name")
        }
        Expected::End | Expected::GroupClose if has_single_bar(&src[..pos]) => {
            error.with_help("a single `|` combines values; tests are joined with `||`")
        }
        _ => error,
    }
}

/// The error for input that ended early: an unclosed bracket points at its opener.
fn at_end(src: &str, expected: Option<Expected>) -> ParseError {
    let end = Span::new(src.len(), src.len());
    let closing = matches!(expected, Some(Expected::ListNext | Expected::ValueClose | Expected::GroupClose));
    if closing && let Some((opener, at)) = innermost_unclosed(src) {
        let closer = if opener == '(' { ')' } else { ']' };
        return ParseError::new(Span::new(at, at + 1), format!("unclosed `{opener}`"))
            .with_help(format!("add `{closer}` to close it"));
    }
    match expected {
        Some(expected) => {
            ParseError::new(end, format!("{}, found the end of the condition", expected.phrase(src, src.len())))
        }
        None => ParseError::new(end, "unexpected end of the condition"),
    }
}

/// Near-misses of an operator, reported as such rather than as a list of what was expected.
fn misspelt_operator(src: &str, token: Span, expected: Expected) -> Option<ParseError> {
    let found = &src[token.start..token.end];
    let (message, help) = match (found, expected) {
        ("=", Expected::Operator | Expected::MaskComparison) => ("unexpected `=`; did you mean `==`?", None),
        ("&", Expected::End | Expected::GroupClose) => ("unexpected `&`; did you mean `&&`?", None),
        (")", Expected::End) => ("unexpected `)`", Some("it has no matching `(`")),
        ("]", Expected::End | Expected::GroupClose) => {
            ("unexpected `]`", Some("`[` ... `]` holds the values after `in`"))
        }
        _ => return None,
    };
    let error = ParseError::new(token, message);
    Some(match help {
        Some(help) => error.with_help(help),
        None => error,
    })
}

/// A token as quoted in a message; invisible characters by their code point.
fn describe(token: &str) -> String {
    match token.chars().next() {
        Some(c) if c.is_whitespace() || c.is_control() => {
            format!("the character U+{:04X}", u32::from(c))
        }
        _ => format!("`{token}`"),
    }
}

/// The token starting at `pos`: a word, a two-character operator or one character.
fn token_at(src: &str, pos: usize) -> Option<Span> {
    let rest = src.get(pos..)?;
    let first = rest.chars().next()?;
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let len = if is_word(first) {
        rest.find(|c: char| !is_word(c)).unwrap_or(rest.len())
    } else if ["==", "!=", "<=", ">=", "&&", "||"].iter().any(|op| rest.starts_with(op)) {
        2
    } else {
        first.len_utf8()
    };
    Some(Span::new(pos, pos + len))
}

/// The word that ends just before `pos`, whitespace skipped: the argument name when the
/// parser stopped after one.
fn word_before(src: &str, pos: usize) -> &str {
    let before = src[..pos].trim_end();
    let start = before.rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).map_or(0, |i| i + 1);
    &before[start..]
}

/// The innermost `(` or `[` left open in `src`, and its offset.
fn innermost_unclosed(src: &str) -> Option<(char, usize)> {
    let mut open = Vec::new();
    for (at, c) in src.char_indices() {
        match c {
            '(' | '[' => open.push((c, at)),
            ')' | ']' => {
                open.pop();
            }
            _ => {}
        }
    }
    open.pop()
}

/// Whether `text` has a `|` that is not part of `||`.
fn has_single_bar(text: &str) -> bool {
    text.split("||").any(|piece| piece.contains('|'))
}
