//! The syntax tree of a condition, with byte spans into the condition string.
//!
//! Parentheses produce no nodes: a node's span covers the node's own text, so the
//! span of `a == 1` in `(a == 1)` leaves the parentheses out, while the span of an
//! `And` or `Or` covers any parenthesised operands it has. Grouping is kept in the
//! shape of the tree: `(a || b) || c` is an `Or` inside an `Or`, and printing
//! puts the parentheses back.
//!
//! `Display` prints canonical condition text, which parses back to the same tree
//! (spans aside): single spaces around binary operators, `!` always followed by
//! another `!` or a parenthesis, numbers below 256 in decimal and larger ones in
//! hexadecimal.

use std::fmt;
use std::ops::Range;

/// A byte range in the condition string, `start..end`.
///
/// Spans are relative to the condition string; a caller that took the string from
/// a larger file adds the string's offset with [`Span::offset_by`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Span {
        Span { start, end }
    }

    /// The same span moved `offset` bytes to the right.
    pub fn offset_by(self, offset: usize) -> Span {
        Span::new(self.start + offset, self.end + offset)
    }

    pub fn len(self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(self) -> bool {
        self.start == self.end
    }
}

impl From<Span> for Range<usize> {
    fn from(span: Span) -> Range<usize> {
        span.start..span.end
    }
}

/// A boolean combination of tests.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Expr {
    /// At least two operands joined by `||`.
    Or(Vec<Expr>, Span),
    /// At least two operands joined by `&&`.
    And(Vec<Expr>, Span),
    /// `!` and its operand.
    Not(Box<Expr>, Span),
    Test(Test),
}

impl Expr {
    pub fn span(&self) -> Span {
        match self {
            Expr::Or(_, span) | Expr::And(_, span) | Expr::Not(_, span) => *span,
            Expr::Test(test) => test.span,
        }
    }
}

/// One comparison of a syscall argument, such as `domain == AF_INET`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Test {
    pub arg: Ident,
    pub op: TestOp,
    pub span: Span,
}

/// An argument or constant name as written.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TestOp {
    /// `arg <op> value`
    Cmp(CmpOp, Value),
    /// `arg & mask == value` or `arg & mask != value`
    Masked { mask: Value, op: EqOp, value: Value },
    /// `arg in [v, ...]`, never empty.
    In(Vec<Value>),
    /// `arg not in [v, ...]`, never empty.
    NotIn(Vec<Value>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    pub fn as_str(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }
}

/// The comparison after a mask: only equality makes sense on masked bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EqOp {
    Eq,
    Ne,
}

impl EqOp {
    pub fn as_str(self) -> &'static str {
        match self {
            EqOp::Eq => "==",
            EqOp::Ne => "!=",
        }
    }
}

/// A constant operand.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Value {
    /// A literal. `negative` records a leading `-`; the compiler gives `-value` its
    /// meaning in the argument's width (`-1` is all ones).
    Number { value: u64, negative: bool, span: Span },
    /// A named constant such as `AF_INET`, resolved by the compiler.
    Constant(Ident),
    /// At least two values joined by `|`.
    BitOr(Vec<Value>, Span),
}

impl Value {
    pub fn span(&self) -> Span {
        match self {
            Value::Number { span, .. } | Value::BitOr(_, span) => *span,
            Value::Constant(ident) => ident.span,
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // An operand of the same operator was grouped in the source: keep it so.
            // `&&` binds tighter than `||`, so an `And` under an `Or` needs none.
            Expr::Or(operands, _) => join(f, operands, " || ", |e| matches!(e, Expr::Or(..))),
            Expr::And(operands, _) => join(f, operands, " && ", |e| matches!(e, Expr::Or(..) | Expr::And(..))),
            // `!a == 1` would parse as `!(a == 1)` too, but reads as `(!a) == 1`.
            Expr::Not(operand, _) => match **operand {
                Expr::Not(..) => write!(f, "!{operand}"),
                _ => write!(f, "!({operand})"),
            },
            Expr::Test(test) => test.fmt(f),
        }
    }
}

impl fmt::Display for Test {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let arg = &self.arg;
        match &self.op {
            TestOp::Cmp(op, value) => write!(f, "{arg} {op} {value}"),
            // `a & A | B == 0` parses the same, but reads like C, where it does not.
            TestOp::Masked { mask: mask @ Value::BitOr(..), op, value } => {
                write!(f, "{arg} & ({mask}) {op} {value}")
            }
            TestOp::Masked { mask, op, value } => write!(f, "{arg} & {mask} {op} {value}"),
            TestOp::In(values) => write!(f, "{arg} in [{}]", ValueList(values)),
            TestOp::NotIn(values) => write!(f, "{arg} not in [{}]", ValueList(values)),
        }
    }
}

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl fmt::Display for CmpOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for EqOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Number { value, negative, .. } => {
                let sign = if *negative { "-" } else { "" };
                if *value < 256 { write!(f, "{sign}{value}") } else { write!(f, "{sign}{value:#x}") }
            }
            Value::Constant(ident) => ident.fmt(f),
            Value::BitOr(values, _) => join(f, values, " | ", |v| matches!(v, Value::BitOr(..))),
        }
    }
}

struct ValueList<'a>(&'a [Value]);

impl fmt::Display for ValueList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        join(f, self.0, ", ", |_| false)
    }
}

/// Writes `items` separated by `separator`, parenthesising those that `needs_parens`.
fn join<T: fmt::Display>(
    f: &mut fmt::Formatter<'_>,
    items: &[T],
    separator: &str,
    needs_parens: impl Fn(&T) -> bool,
) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(separator)?;
        }
        if needs_parens(item) {
            write!(f, "({item})")?;
        } else {
            write!(f, "{item}")?;
        }
    }
    Ok(())
}
