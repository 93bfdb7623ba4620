//! Canonical JSON: the one byte form a record may take.
//!
//! The rules (docs/audit-log.md, "Canonical form") are exactly what Python's
//! `json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)` prints
//! for the value types allowed here, so a verifier in another language needs no schema
//! to check canonical form: parse, re-serialise, compare bytes.
//!
//! [`Value`] serialises canonically by construction: objects are `BTreeMap`s (keys
//! come out sorted bytewise), strings are escaped by one function. What construction
//! cannot enforce (key alphabet, the integer range) is checked by [`parse`], which the
//! writer runs on every line before writing it, and which accepts nothing but the
//! canonical form: it rejects whitespace, unsorted or duplicate keys, needless or
//! upper-case escapes, raw non-ASCII bytes, leading zeros, `-0`, fractions, exponents.

use std::collections::BTreeMap;
use std::fmt;

/// The largest magnitude of a JSON integer in a record: 2^53 - 1, the range every
/// JSON implementation represents exactly. Wider values (sequence numbers, sizes,
/// syscall arguments, nanosecond times) are decimal or hex strings.
pub const MAX_SAFE_INT: i64 = (1 << 53) - 1;

/// Nesting deeper than this is rejected, so a hostile line cannot exhaust the stack.
pub const MAX_DEPTH: usize = 32;

/// A JSON object with canonical (bytewise sorted, unique) key order.
pub type Object = BTreeMap<String, Value>;

/// A value in a record. No floats: there is no canonical float form worth trusting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Null,
    Bool(bool),
    /// Must lie within ±[`MAX_SAFE_INT`]; use [`Value::u64`] for wider quantities.
    Int(i64),
    Str(String),
    Array(Vec<Value>),
    Object(Object),
}

impl Value {
    /// A 64-bit unsigned quantity, stored as a decimal string.
    pub fn u64(n: u64) -> Value {
        Value::Str(n.to_string())
    }

    /// A 64-bit quantity stored as `0x`-prefixed lower-case hex (syscall arguments).
    pub fn hex64(n: u64) -> Value {
        Value::Str(format!("{n:#x}"))
    }

    /// Bytes that are usually text (argv, paths): the string itself when it is UTF-8,
    /// otherwise `{"hex": "..."}` so that no byte of evidence is lost.
    pub fn bytes(bytes: &[u8]) -> Value {
        match std::str::from_utf8(bytes) {
            Ok(text) => Value::Str(text.to_owned()),
            Err(_) => Value::Object(Object::from([("hex".to_owned(), Value::Str(hex(bytes)))])),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A decimal string written by [`Value::u64`].
    pub fn as_u64_str(&self) -> Option<u64> {
        self.as_str().and_then(parse_canonical_u64)
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&Object> {
        match self {
            Value::Object(map) => Some(map),
            _ => None,
        }
    }

    /// Appends the canonical serialisation to `out`.
    pub fn write_canonical(&self, out: &mut Vec<u8>) {
        match self {
            Value::Null => out.extend_from_slice(b"null"),
            Value::Bool(true) => out.extend_from_slice(b"true"),
            Value::Bool(false) => out.extend_from_slice(b"false"),
            Value::Int(n) => out.extend_from_slice(n.to_string().as_bytes()),
            Value::Str(s) => write_string(s, out),
            Value::Array(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    item.write_canonical(out);
                }
                out.push(b']');
            }
            Value::Object(map) => write_object(map, out),
        }
    }

    pub fn to_canonical(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_canonical(&mut out);
        out
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Str(s.to_owned())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Str(s)
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}
impl From<i32> for Value {
    fn from(n: i32) -> Value {
        Value::Int(n.into())
    }
}
impl From<u32> for Value {
    fn from(n: u32) -> Value {
        Value::Int(n.into())
    }
}
impl From<Vec<Value>> for Value {
    fn from(items: Vec<Value>) -> Value {
        Value::Array(items)
    }
}
impl From<Object> for Value {
    fn from(map: Object) -> Value {
        Value::Object(map)
    }
}

pub fn write_object(map: &Object, out: &mut Vec<u8>) {
    out.push(b'{');
    for (i, (key, value)) in map.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(key, out);
        out.push(b':');
        value.write_canonical(out);
    }
    out.push(b'}');
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

fn write_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            ' '..='~' => out.push(c as u8),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.extend_from_slice(b"\\u");
                    for shift in [12, 8, 4, 0] {
                        out.push(HEX_DIGITS[usize::from((*unit >> shift) & 0xf)]);
                    }
                }
            }
        }
    }
    out.push(b'"');
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX_DIGITS[usize::from(b >> 4)] as char);
        s.push(HEX_DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

/// Decodes lower-case hex of exactly `N` bytes; anything else is `None`.
pub fn parse_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    // A table instead of branches: every record's `prev` passes through here.
    const INVALID: u8 = 0xff;
    const NIBBLES: [u8; 256] = {
        let mut table = [INVALID; 256];
        let mut i = 0;
        while i < 16 {
            table[HEX_DIGITS[i] as usize] = i as u8;
            i += 1;
        }
        table
    };
    let digits = s.as_bytes();
    if digits.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    let mut bad = 0u8;
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let (high, low) = (NIBBLES[usize::from(pair[0])], NIBBLES[usize::from(pair[1])]);
        bad |= high | low;
        *byte = high << 4 | (low & 0xf);
    }
    (bad & 0xf0 == 0).then_some(out)
}

/// A decimal string with no sign, no leading zeros, fitting in u64.
pub fn parse_canonical_u64(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    let well_formed = match b {
        [b'0'] => true,
        [b'1'..=b'9', rest @ ..] => rest.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    if well_formed { s.parse().ok() } else { None }
}

/// Why a line is not in canonical form, with the byte offset where parsing stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CanonicalError {
    pub offset: usize,
    pub message: &'static str,
}

impl fmt::Display for CanonicalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.message, self.offset)
    }
}

impl std::error::Error for CanonicalError {}

/// Parses `bytes` as one canonical JSON value; the whole input must be consumed.
pub fn parse(bytes: &[u8]) -> Result<Value, CanonicalError> {
    let mut parser = Parser { bytes, pos: 0, depth: 0, build: true };
    let value = parser.value()?;
    if parser.pos != bytes.len() {
        return Err(parser.error("trailing bytes after the value"));
    }
    Ok(value)
}

/// Checks that `bytes` start with a canonical JSON object and returns its length,
/// without building it (the verifier's fast path: the same parser, allocating nothing).
pub fn object_len(bytes: &[u8]) -> Result<usize, CanonicalError> {
    let mut parser = Parser { bytes, pos: 0, depth: 0, build: false };
    if parser.peek() != Some(b'{') {
        return Err(parser.error("expected an object"));
    }
    parser.value()?;
    Ok(parser.pos)
}

/// Parses a canonical JSON object (a record line).
pub fn parse_object(bytes: &[u8]) -> Result<Object, CanonicalError> {
    match parse(bytes)? {
        Value::Object(map) => Ok(map),
        _ => Err(CanonicalError { offset: 0, message: "a record must be a JSON object" }),
    }
}

/// Whether `key` may be an object key: non-empty, `[A-Za-z0-9_.-]` only.
pub fn is_valid_key(key: &str) -> bool {
    !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

struct Parser<'a> {
    bytes: &'a [u8],
    pos: usize,
    depth: usize,
    /// Whether to build the value; when false, every check still runs and the
    /// returned values are placeholders.
    build: bool,
}

impl<'a> Parser<'a> {
    fn error(&self, message: &'static str) -> CanonicalError {
        CanonicalError { offset: self.pos, message }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn expect(&mut self, byte: u8, message: &'static str) -> Result<(), CanonicalError> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(message))
        }
    }

    fn literal(&mut self, word: &[u8], value: Value) -> Result<Value, CanonicalError> {
        if self.bytes[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(value)
        } else {
            Err(self.error("not a JSON value"))
        }
    }

    fn value(&mut self) -> Result<Value, CanonicalError> {
        match self.peek() {
            Some(b'{') => self.nested(|p| p.object().map(Value::Object)),
            Some(b'[') => self.nested(|p| p.array().map(Value::Array)),
            Some(b'"') => self.string().map(Value::Str),
            Some(b'-' | b'0'..=b'9') => self.int().map(Value::Int),
            Some(b't') => self.literal(b"true", Value::Bool(true)),
            Some(b'f') => self.literal(b"false", Value::Bool(false)),
            Some(b'n') => self.literal(b"null", Value::Null),
            Some(_) => Err(self.error("not a JSON value (or whitespace, which is not canonical)")),
            None => Err(self.error("unexpected end of line")),
        }
    }

    fn nested<T>(&mut self, inner: impl FnOnce(&mut Self) -> Result<T, CanonicalError>) -> Result<T, CanonicalError> {
        if self.depth == MAX_DEPTH {
            return Err(self.error("nested too deeply"));
        }
        self.depth += 1;
        let result = inner(self);
        self.depth -= 1;
        result
    }

    fn object(&mut self) -> Result<Object, CanonicalError> {
        self.expect(b'{', "expected '{'")?;
        let mut map = Object::new();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(map);
        }
        let mut last_key: Option<&'a [u8]> = None;
        loop {
            let key_at = self.pos;
            let key = self.key()?;
            if last_key.is_some_and(|last| last >= key) {
                return Err(CanonicalError {
                    offset: key_at,
                    message: "object keys not in strictly ascending byte order",
                });
            }
            last_key = Some(key);
            self.expect(b':', "expected ':' right after the key")?;
            let value = self.value()?;
            if self.build {
                map.insert(std::str::from_utf8(key).expect("ASCII key").to_owned(), value);
            }
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(map);
                }
                _ => return Err(self.error("expected ',' or '}'")),
            }
        }
    }

    fn array(&mut self) -> Result<Vec<Value>, CanonicalError> {
        self.expect(b'[', "expected '['")?;
        let mut items = Vec::new();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(items);
        }
        loop {
            let item = self.value()?;
            if self.build {
                items.push(item);
            }
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(items);
                }
                _ => return Err(self.error("expected ',' or ']'")),
            }
        }
    }

    fn int(&mut self) -> Result<i64, CanonicalError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        let digits_start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        let digits = &self.bytes[digits_start..self.pos];
        if digits.is_empty() {
            return Err(self.error("expected digits"));
        }
        if digits[0] == b'0' && (digits.len() > 1 || digits_start > start) {
            return Err(CanonicalError { offset: start, message: "leading zero or -0 in an integer" });
        }
        if matches!(self.peek(), Some(b'.' | b'e' | b'E')) {
            return Err(self.error("fractions and exponents are not allowed (integers only)"));
        }
        // At most 16 digits fit the safe range; checking the length first keeps the parse from overflowing.
        let text = std::str::from_utf8(&self.bytes[start..self.pos]).expect("ASCII digits");
        match text.parse::<i64>() {
            Ok(n) if digits.len() <= 16 && n.abs() <= MAX_SAFE_INT => Ok(n),
            _ => Err(CanonicalError { offset: start, message: "integer beyond ±(2^53-1): 64-bit values are strings" }),
        }
    }

    fn hex4(&mut self) -> Result<u16, CanonicalError> {
        let mut unit = 0u16;
        for _ in 0..4 {
            let digit = match self.peek() {
                Some(d @ b'0'..=b'9') => d - b'0',
                Some(d @ b'a'..=b'f') => d - b'a' + 10,
                _ => return Err(self.error("\\u escape needs four lower-case hex digits")),
            };
            unit = unit << 4 | u16::from(digit);
            self.pos += 1;
        }
        Ok(unit)
    }

    /// An object key: `[A-Za-z0-9_.-]+` in quotes (characters that never need escaping,
    /// so the raw bytes are the key).
    fn key(&mut self) -> Result<&'a [u8], CanonicalError> {
        self.expect(b'"', "expected a key")?;
        let start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)) {
            self.pos += 1;
        }
        let key = &self.bytes[start..self.pos];
        if key.is_empty() || self.peek() != Some(b'"') {
            return Err(CanonicalError { offset: start, message: "object key outside [A-Za-z0-9_.-]" });
        }
        self.pos += 1;
        Ok(key)
    }

    fn string(&mut self) -> Result<String, CanonicalError> {
        self.expect(b'"', "expected a string")?;
        let mut out = String::new();
        loop {
            let run_start = self.pos;
            while let Some(b) = self.peek() {
                if b == b'"' || b == b'\\' || !(0x20..=0x7e).contains(&b) {
                    break;
                }
                self.pos += 1;
            }
            if self.build {
                out.push_str(std::str::from_utf8(&self.bytes[run_start..self.pos]).expect("printable ASCII"));
            }
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    let escape_at = self.pos;
                    self.pos += 1;
                    let c = match self.peek() {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            self.pos += 1;
                            let c = self.unicode_escape(escape_at)?;
                            if self.build {
                                out.push(c);
                            }
                            continue;
                        }
                        _ => return Err(self.error("unknown or non-canonical escape")),
                    };
                    self.pos += 1;
                    if self.build {
                        out.push(c);
                    }
                }
                Some(_) => return Err(self.error("raw control or non-ASCII byte in a string (must be \\u-escaped)")),
                None => return Err(self.error("unterminated string")),
            }
        }
    }

    /// After `\u`: one escaped character, which must be one that needs a `\u` escape.
    fn unicode_escape(&mut self, escape_at: usize) -> Result<char, CanonicalError> {
        let non_canonical =
            CanonicalError { offset: escape_at, message: "\\u escape of a character with a shorter canonical form" };
        let high = self.hex4()?;
        let c = match high {
            0xd800..=0xdbff => {
                if !self.bytes[self.pos..].starts_with(b"\\u") {
                    return Err(self.error("lone high surrogate"));
                }
                self.pos += 2;
                let low = self.hex4()?;
                if !(0xdc00..=0xdfff).contains(&low) {
                    return Err(self.error("high surrogate not followed by a low surrogate"));
                }
                let code = 0x10000 + ((u32::from(high) - 0xd800) << 10) + (u32::from(low) - 0xdc00);
                char::from_u32(code).expect("valid supplementary code point")
            }
            0xdc00..=0xdfff => return Err(CanonicalError { offset: escape_at, message: "lone low surrogate" }),
            _ => char::from_u32(u32::from(high)).expect("BMP non-surrogate"),
        };
        let needs_u_escape = (c < ' ' && !matches!(c, '\u{8}' | '\u{c}' | '\n' | '\r' | '\t')) || c >= '\u{7f}';
        if needs_u_escape { Ok(c) } else { Err(non_canonical) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trips(text: &str) {
        let value = parse(text.as_bytes()).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(String::from_utf8(value.to_canonical()).unwrap(), text);
    }

    fn rejected(text: &[u8]) {
        assert!(parse(text).is_err(), "accepted non-canonical {:?}", String::from_utf8_lossy(text));
    }

    #[test]
    fn canonical_forms_round_trip() {
        round_trips(r#"{"a":1,"b":[true,false,null,-5,"x"],"c":{}}"#);
        round_trips(r#""\"\\\b\f\n\r\t\u0000\u001f\u007f ~/\u00e9\u2014\ud83d\ude00""#);
        round_trips("9007199254740991");
        round_trips("-9007199254740991");
        round_trips("0");
    }

    #[test]
    fn non_canonical_forms_are_rejected() {
        for text in [
            &br#"{"b":1,"a":2}"#[..],
            br#"{"a":1,"a":2}"#,
            br#"{ "a":1}"#,
            br#"{"a": 1}"#,
            br#"{"a":1} "#,
            br#"{"a b":1}"#,
            br#"{"":1}"#,
            b"01",
            b"-0",
            b"1.0",
            b"1e3",
            b"9007199254740992",
            b"99999999999999999999999",
            br#""\u0041""#,
            br#""\u000a""#,
            br#""\u00E9""#,
            br#""\/""#,
            "\"é\"".as_bytes(),
            b"\"\x01\"",
            br#""\ud83d""#,
            br#""\ude00""#,
            b"\"abc",
            b"",
            b"[1,]",
            b"tru",
        ] {
            rejected(text);
        }
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        rejected(deep.as_bytes());
    }

    #[test]
    fn non_utf8_bytes_are_kept_as_hex() {
        assert_eq!(Value::bytes(b"ok"), Value::from("ok"));
        assert_eq!(Value::bytes(&[0xff, 0x00]).to_canonical(), br#"{"hex":"ff00"}"#);
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        fn value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                (-MAX_SAFE_INT..=MAX_SAFE_INT).prop_map(Value::Int),
                any::<String>().prop_map(Value::Str),
            ];
            leaf.prop_recursive(4, 32, 6, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                    prop::collection::btree_map("[A-Za-z0-9_.-]{1,8}", inner, 0..6).prop_map(Value::Object),
                ]
            })
        }

        proptest! {
            #[test]
            fn serialised_values_parse_back(v in value()) {
                let bytes = v.to_canonical();
                prop_assert_eq!(parse(&bytes), Ok(v));
            }

            /// The parser accepts exactly the bytes the serialiser would print: after any
            /// one-byte change, either parsing fails or the result re-serialises to the
            /// changed bytes.
            #[test]
            fn parser_accepts_only_canonical_bytes(v in value(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
                let mut bytes = v.to_canonical();
                let i = at.index(bytes.len());
                bytes[i] = byte;
                if let Ok(parsed) = parse(&bytes) {
                    prop_assert_eq!(parsed.to_canonical(), bytes.clone());
                }
            }

            /// The allocation-free path decides exactly as the building one.
            #[test]
            fn object_len_agrees_with_parse(v in value(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
                let mut bytes = Value::Object(Object::from([("k".to_owned(), v)])).to_canonical();
                let i = at.index(bytes.len());
                bytes[i] = byte;
                prop_assert_eq!(object_len(&bytes).ok() == Some(bytes.len()), parse(&bytes).is_ok());
            }
        }
    }
}
