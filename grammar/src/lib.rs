//! The condition language of `capsule.yaml`: the `if:` of a rule, such as
//! `domain == AF_INET && type & SOCK_RAW == 0`.
//!
//! ```text
//! cond    := or
//! or      := and ("||" and)*
//! and     := unary ("&&" unary)*
//! unary   := "!" unary | "(" cond ")" | test
//! test    := arg cmp value
//!          | arg "&" value ("==" | "!=") value          masked compare
//!          | arg "in" "[" value ("," value)* "]"
//!          | arg "not" "in" "[" value ("," value)* "]"
//! cmp     := "==" | "!=" | "<" | "<=" | ">" | ">="
//! arg     := identifier                                 a parameter name, or arg0 .. arg5
//! value   := number | identifier | value "|" value | "(" value ")"
//! number  := "-"? (decimal | "0x" hex | "0o" octal | "0b" binary)    `_` allowed between digits
//! ```
//!
//! Whitespace may stand between any two tokens. `&&` binds tighter than `||`, and `!`
//! applies to the test, group or `!` that follows it: `!a == 1` is `!(a == 1)`. The
//! keywords `in` and `not` end at a word boundary, so `index` is a name. A `(` opens a
//! group where a test may start and a parenthesised value after an operator.
//!
//! The parser checks syntax only. Which names are arguments or constants, what a
//! negative number means (`-1` is all ones in the argument's width) and whether a
//! value fits the argument are the compiler's business.
//!
//! Decimal numbers with a leading zero (`0755`) are refused: C reads them as octal,
//! and the language will not guess. Input is bounded before pest sees it: at most
//! [`MAX_CONDITION_LEN`] bytes and [`MAX_NESTING_DEPTH`] levels of nesting, so no
//! input can exhaust the stack of the recursive parser.
//!
//! ```
//! use capsule_grammar::{parse_condition, Expr};
//!
//! let expr = parse_condition("domain == AF_INET || flags & 0x80 != 0").unwrap();
//! assert!(matches!(expr, Expr::Or(..)));
//! assert_eq!(expr.to_string(), "domain == AF_INET || flags & 128 != 0");
//! ```

mod ast;
mod error;
mod parser;

pub use ast::{CmpOp, EqOp, Expr, Ident, Span, Test, TestOp, Value};
pub use error::ParseError;
pub use parser::{MAX_CONDITION_LEN, MAX_NESTING_DEPTH, parse_condition};
