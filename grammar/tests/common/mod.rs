//! Helpers shared by the test files: a span-free view of the tree, and error rendering.

#![allow(dead_code)] // each test file uses its own part

use capsule_grammar::{Expr, Ident, ParseError, Span, Test, TestOp, Value};

/// The tree as an S-expression without spans, for structural assertions.
pub fn sexp(expr: &Expr) -> String {
    match expr {
        Expr::Or(operands, _) => format!("(or {})", list(operands, sexp)),
        Expr::And(operands, _) => format!("(and {})", list(operands, sexp)),
        Expr::Not(operand, _) => format!("(not {})", sexp(operand)),
        Expr::Test(test) => {
            let arg = &test.arg.name;
            match &test.op {
                TestOp::Cmp(op, value) => format!("({op} {arg} {})", value_sexp(value)),
                TestOp::Masked { mask, op, value } => {
                    format!("({op} (& {arg} {}) {})", value_sexp(mask), value_sexp(value))
                }
                TestOp::In(values) => format!("(in {arg} {})", list(values, value_sexp)),
                TestOp::NotIn(values) => format!("(not-in {arg} {})", list(values, value_sexp)),
            }
        }
    }
}

fn value_sexp(value: &Value) -> String {
    match value {
        Value::Number { value, negative, .. } => format!("{}{value}", if *negative { "-" } else { "" }),
        Value::Constant(ident) => ident.name.clone(),
        Value::BitOr(values, _) => format!("(| {})", list(values, value_sexp)),
    }
}

fn list<T>(items: &[T], show: impl Fn(&T) -> String) -> String {
    items.iter().map(show).collect::<Vec<_>>().join(" ")
}

/// The same tree with every span set to `0..0`, to compare trees modulo spans.
pub fn erase_spans(expr: &Expr) -> Expr {
    const NONE: Span = Span { start: 0, end: 0 };
    fn ident(ident: &Ident) -> Ident {
        Ident { name: ident.name.clone(), span: NONE }
    }
    fn value(v: &Value) -> Value {
        match v {
            Value::Number { value, negative, .. } => Value::Number { value: *value, negative: *negative, span: NONE },
            Value::Constant(name) => Value::Constant(ident(name)),
            Value::BitOr(values, _) => Value::BitOr(values.iter().map(value).collect(), NONE),
        }
    }
    match expr {
        Expr::Or(operands, _) => Expr::Or(operands.iter().map(erase_spans).collect(), NONE),
        Expr::And(operands, _) => Expr::And(operands.iter().map(erase_spans).collect(), NONE),
        Expr::Not(operand, _) => Expr::Not(Box::new(erase_spans(operand)), NONE),
        Expr::Test(test) => Expr::Test(Test {
            arg: ident(&test.arg),
            op: match &test.op {
                TestOp::Cmp(op, v) => TestOp::Cmp(*op, value(v)),
                TestOp::Masked { mask, op, value: v } => TestOp::Masked { mask: value(mask), op: *op, value: value(v) },
                TestOp::In(values) => TestOp::In(values.iter().map(value).collect()),
                TestOp::NotIn(values) => TestOp::NotIn(values.iter().map(value).collect()),
            },
            span: NONE,
        }),
    }
}

/// Every span in the tree, outermost first.
pub fn all_spans(expr: &Expr) -> Vec<Span> {
    fn value(v: &Value, out: &mut Vec<Span>) {
        out.push(v.span());
        if let Value::BitOr(values, _) = v {
            values.iter().for_each(|v| value(v, out));
        }
    }
    fn walk(expr: &Expr, out: &mut Vec<Span>) {
        out.push(expr.span());
        match expr {
            Expr::Or(operands, _) | Expr::And(operands, _) => operands.iter().for_each(|e| walk(e, out)),
            Expr::Not(operand, _) => walk(operand, out),
            Expr::Test(test) => {
                out.push(test.arg.span);
                match &test.op {
                    TestOp::Cmp(_, v) => value(v, out),
                    TestOp::Masked { mask, value: v, .. } => {
                        value(mask, out);
                        value(v, out);
                    }
                    TestOp::In(values) | TestOp::NotIn(values) => values.iter().for_each(|v| value(v, out)),
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(expr, &mut out);
    out
}

/// An error under its input, the span underlined, as a reader would see it.
pub fn render_error(src: &str, error: &ParseError) -> String {
    let column = src[..error.span.start].chars().count();
    let width = src[error.span.start..error.span.end].chars().count().max(1);
    let mut out = format!("{src}\n{}{} {}\n", " ".repeat(column), "^".repeat(width), error.message);
    if let Some(help) = &error.help {
        out += &format!("{}help: {help}\n", " ".repeat(column));
    }
    out
}
