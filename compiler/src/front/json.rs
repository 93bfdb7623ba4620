//! The JSON form of a policy to the same tree with byte spans that `yaml.rs` builds,
//! so `parse.rs` and everything after it read JSON and YAML alike and every
//! diagnostic points into the JSON text.
//!
//! Two steps. serde_json first checks that the text is strict JSON (RFC 8259: no
//! comments, no trailing commas, no single quotes); its error's line and column
//! become an E0010 diagnostic with a span. Then a small reader walks the text, now
//! known to be valid, and records where each value is: strings become quoted
//! scalars (their escapes decoded by serde_json), numbers, `true`, `false` and `null`
//! plain scalars with their source text, exactly as YAML would see them. The same
//! hazards as in YAML are refused with the same codes: duplicate keys (E0007; JSON
//! readers usually keep one silently) and nesting deeper than [`MAX_DEPTH`] (E0008).
//!
//! The text is not given to the YAML parser: JSON is not quite a subset of what
//! saphyr accepts (it refuses a tab after `:` and `\ud83d\ude00` surrogate pairs), and
//! a JSON file should fail only for being bad JSON.

use super::yaml::{MAX_DEPTH, Node, NodeKind, Scalar};
use crate::diagnostic::{Code, Diagnostic};
use crate::ir::Span;

/// Parse a JSON policy into a tree. `Ok(None)` when the text holds nothing but
/// whitespace (the caller reports an empty policy, as for YAML).
pub fn parse(src: &str) -> Result<Option<Node>, Box<Diagnostic>> {
    // A byte-order mark is not JSON, but editors on some systems write one; RFC 8259
    // lets a reader ignore it, and YAML does.
    let bom = if src.starts_with('\u{feff}') { '\u{feff}'.len_utf8() } else { 0 };
    let body = &src[bom..];
    if body.bytes().all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r')) {
        return Ok(None);
    }
    if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(body) {
        return Err(Box::new(syntax_error(&e, src, bom)));
    }
    let mut reader = Reader { src, bytes: src.as_bytes(), at: bom };
    let root = reader.value(0)?;
    Ok(Some(root))
}

/// serde_json's error as a diagnostic: its line and column (1-based; the column counts
/// bytes and names the last byte it read, 0 for the line break before the line) become
/// a one-character span.
fn syntax_error(e: &serde_json::Error, src: &str, bom: usize) -> Diagnostic {
    let body = &src[bom..];
    // serde_json's message ends with its own " at line L column C": the span says that.
    let full = e.to_string();
    let message = full.rsplit_once(" at line ").map_or(full.as_str(), |(m, _)| m);
    let line_start = body.split_inclusive('\n').take(e.line().saturating_sub(1)).map(str::len).sum::<usize>();
    let mut at = (line_start + e.column()).saturating_sub(1).min(body.len());
    while !body.is_char_boundary(at) {
        at -= 1;
    }
    if message.starts_with("control character") {
        // Reported one byte early: point at the control character itself.
        at += body[at..].find(char::is_control).unwrap_or(0);
    }
    let end = body[at..].chars().next().map_or(at, |c| at + c.len_utf8());
    let span = if e.is_eof() { src.len()..src.len() } else { bom + at..bom + end };
    if message.contains("recursion limit") {
        return too_deep(span);
    }
    // `[1, 2,]` and `{"a": 1,}` across lines: serde_json stops at the bracket; the
    // mistake is the comma before it.
    if body[at..].starts_with(['}', ']']) {
        let before = body[..at].trim_end_matches([' ', '\t', '\n', '\r']);
        if before.ends_with(',') {
            let comma = bom + before.len() - 1;
            return Diagnostic::new(Code::JsonSyntax, comma..comma + 1, "invalid JSON: trailing comma")
                .label("comma after the last item")
                .help("JSON allows no comma after the last item; remove it");
        }
    }
    let mut d = Diagnostic::new(Code::JsonSyntax, span, format!("invalid JSON: {message}")).label("here");
    d = match message {
        m if m.starts_with("key must be a string") => d.help("JSON keys are double-quoted strings"),
        m if m.starts_with("expected value") && body[at..].starts_with(['#', '/']) => {
            d.help("JSON has no comments; write the policy as YAML to keep comments")
        }
        m if m.starts_with("expected value") && body[at..].starts_with('\'') => {
            d.help("JSON strings are double-quoted")
        }
        m if m.starts_with("trailing characters") => d.help("a JSON policy is one object; remove what follows it"),
        _ => d,
    };
    d
}

fn too_deep(span: Span) -> Diagnostic {
    Diagnostic::new(Code::TooDeep, span, format!("nesting deeper than {MAX_DEPTH} levels"))
        .label("too deep")
        .help("a policy needs only a few levels of nesting")
}

/// Walks text that serde_json has accepted, so it only has to find where things are.
struct Reader<'a> {
    src: &'a str,
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn skip_whitespace(&mut self) {
        while matches!(self.bytes.get(self.at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    /// Consume `byte` after optional whitespace (the text is valid JSON, so it is there).
    fn expect(&mut self, byte: u8) {
        self.skip_whitespace();
        debug_assert_eq!(self.bytes.get(self.at), Some(&byte));
        self.at += 1;
    }

    /// After an item: true when the collection goes on (a comma), false at its end.
    fn more(&mut self, close: u8) -> bool {
        self.skip_whitespace();
        match self.bytes.get(self.at) {
            Some(b',') => {
                self.at += 1;
                true
            }
            Some(&b) => {
                debug_assert_eq!(b, close);
                self.at += 1;
                false
            }
            None => false,
        }
    }

    fn peek_close(&mut self, close: u8) -> bool {
        self.skip_whitespace();
        if self.bytes.get(self.at) == Some(&close) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Result<Node, Box<Diagnostic>> {
        self.skip_whitespace();
        let start = self.at;
        match self.bytes.get(start) {
            Some(b'{') => {
                if depth >= MAX_DEPTH {
                    return Err(Box::new(too_deep(start..start + 1)));
                }
                self.at += 1;
                let mut entries: Vec<(Node, Node)> = Vec::new();
                if !self.peek_close(b'}') {
                    loop {
                        self.skip_whitespace();
                        let key = self.string()?;
                        if let Some((first, _)) = entries.iter().find(|(k, _)| same_key(k, &key)) {
                            return Err(Box::new(
                                Diagnostic::new(Code::DuplicateKey, key.span.clone(), "duplicate key")
                                    .label("this key appears twice")
                                    .secondary(first.span.clone(), "first here")
                                    .help("JSON readers keep only one of them, and not all the same one; merge the two entries"),
                            ));
                        }
                        self.expect(b':');
                        let value = self.value(depth + 1)?;
                        entries.push((key, value));
                        if !self.more(b'}') {
                            break;
                        }
                    }
                }
                Ok(Node { kind: NodeKind::Map(entries), span: start..self.at })
            }
            Some(b'[') => {
                if depth >= MAX_DEPTH {
                    return Err(Box::new(too_deep(start..start + 1)));
                }
                self.at += 1;
                let mut items = Vec::new();
                if !self.peek_close(b']') {
                    loop {
                        items.push(self.value(depth + 1)?);
                        if !self.more(b']') {
                            break;
                        }
                    }
                }
                Ok(Node { kind: NodeKind::Seq(items), span: start..self.at })
            }
            Some(b'"') => self.string(),
            _ => {
                // A number, `true`, `false` or `null`: YAML's plain scalars of the same text.
                while !matches!(self.bytes.get(self.at), None | Some(b',' | b']' | b'}' | b' ' | b'\t' | b'\n' | b'\r'))
                {
                    self.at += 1;
                }
                let text = &self.src[start..self.at];
                let scalar = Scalar { value: text.to_owned(), plain: true, verbatim_at: Some(start) };
                Ok(Node { kind: NodeKind::Scalar(scalar), span: start..self.at })
            }
        }
    }

    /// A string literal: a quoted scalar. Its span covers the quotes, as for YAML.
    fn string(&mut self) -> Result<Node, Box<Diagnostic>> {
        let start = self.at;
        self.at += 1;
        let mut escaped = false;
        while let Some(&b) = self.bytes.get(self.at) {
            self.at += 1;
            match b {
                b'\\' => {
                    escaped = true;
                    self.at += 1;
                }
                b'"' => break,
                _ => {}
            }
        }
        let literal = &self.src[start..self.at];
        let (value, verbatim_at) = if escaped {
            let value = serde_json::from_str::<String>(literal).map_err(|e| {
                Box::new(
                    Diagnostic::new(Code::JsonSyntax, start..self.at, format!("invalid JSON string: {e}"))
                        .label("here"),
                )
            })?;
            (value, None)
        } else {
            (literal[1..literal.len() - 1].to_owned(), Some(start + 1))
        };
        Ok(Node { kind: NodeKind::Scalar(Scalar { value, plain: false, verbatim_at }), span: start..self.at })
    }
}

fn same_key(a: &Node, b: &Node) -> bool {
    matches!((&a.kind, &b.kind), (NodeKind::Scalar(x), NodeKind::Scalar(y)) if x.value == y.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar(value: &str, plain: bool, span: Span) -> Node {
        let verbatim_at = Some(if plain { span.start } else { span.start + 1 });
        Node { kind: NodeKind::Scalar(Scalar { value: value.into(), plain, verbatim_at }), span }
    }

    fn err(src: &str) -> Diagnostic {
        *parse(src).expect_err(src)
    }

    #[test]
    fn spans_point_into_the_json_text() {
        let src = "{\"version\": 1, \"targets\": [\"macos\"]}";
        let root = parse(src).unwrap().unwrap();
        let NodeKind::Map(entries) = &root.kind else { panic!() };
        assert_eq!(root.span, 0..src.len());
        assert_eq!(entries[0].0, scalar("version", false, 1..10));
        assert_eq!(entries[0].1, scalar("1", true, 12..13));
        assert_eq!(&src[entries[1].1.span.clone()], "[\"macos\"]");
        let NodeKind::Seq(items) = &entries[1].1.kind else { panic!() };
        assert_eq!(items[0], scalar("macos", false, 27..34));
    }

    #[test]
    fn escapes_are_decoded_and_the_scalar_is_then_not_verbatim() {
        let src = r#"{"a": "\u00e9\/\ud83d\ude00\t\"\\\n\u0000"}"#;
        let root = parse(src).unwrap().unwrap();
        let NodeKind::Map(entries) = &root.kind else { panic!() };
        let NodeKind::Scalar(s) = &entries[0].1.kind else { panic!() };
        assert_eq!(s.value, "é/😀\t\"\\\n\0");
        assert!(!s.plain);
        assert_eq!(s.verbatim_at, None);
        assert_eq!(entries[0].1.span, 6..src.len() - 1);
    }

    #[test]
    fn whitespace_may_be_tabs_and_carriage_returns() {
        let src = "{\r\n\t\"version\":\t1,\r\n\t\"targets\":\t[\t\"macos\"\t]\r\n}\r\n";
        let root = parse(src).unwrap().unwrap();
        let NodeKind::Map(entries) = &root.kind else { panic!() };
        assert_eq!(entries.len(), 2);
        assert_eq!(&src[entries[0].1.span.clone()], "1");
    }

    #[test]
    fn numbers_keep_their_text_as_plain_scalars() {
        let src = "[123456789012345678901234567890, -1.5e10, 0, true, false, null]";
        let root = parse(src).unwrap().unwrap();
        let NodeKind::Seq(items) = &root.kind else { panic!() };
        let texts: Vec<&str> = items
            .iter()
            .map(|n| match &n.kind {
                NodeKind::Scalar(s) if s.plain => s.value.as_str(),
                _ => panic!(),
            })
            .collect();
        assert_eq!(texts, ["123456789012345678901234567890", "-1.5e10", "0", "true", "false", "null"]);
    }

    #[test]
    fn empty_collections_and_a_byte_order_mark() {
        let root = parse("\u{feff}{}").unwrap().unwrap();
        assert_eq!(root.kind, NodeKind::Map(vec![]));
        assert_eq!(root.span, 3..5);
        assert_eq!(parse(" [ ] ").unwrap().unwrap().kind, NodeKind::Seq(vec![]));
        assert_eq!(parse(" \n\t").unwrap(), None);
        assert_eq!(parse("").unwrap(), None);
    }

    #[test]
    fn duplicate_keys_are_refused_with_both_places() {
        let src = "{\"a\": 1, \"b\": {\"x\": 1, \"x\": 2}}";
        let d = err(src);
        assert_eq!(d.code, Code::DuplicateKey);
        assert_eq!(&src[d.primary.span.clone()], "\"x\"");
        assert_eq!(d.primary.span.start, 23);
        assert_eq!(d.secondary[0].span, 15..18);
        // The same key spelled with an escape is the same key.
        assert_eq!(err(r#"{"a": 1, "\u0061": 2}"#).code, Code::DuplicateKey);
    }

    #[test]
    fn syntax_errors_point_at_the_offending_character() {
        for (src, at, text) in [
            ("{\"a\": 1,}", 7, ","),
            ("{\n  \"a\": [1,\n  ],\n}", 11, ","),
            ("{\n  \"a\": [1,\n  ]\n}", 11, ","),
            ("{\n  \"a\": 1,\n  \"b\": tru\n}", 22, "\n"),
            ("{'a': 1}", 1, "'"),
            ("{\"a\": 1} x", 9, "x"),
            ("# c\n{}", 0, "#"),
            ("{\"a\": \"é\" \"b\"}", 11, "\""),
            ("{\"a\": [1, 2}", 11, "}"),
            ("{\"a\": \"x\ty\"}", 8, "\t"),
            ("{\"a\": \"\\x\"}", 8, "x"),
        ] {
            let d = err(src);
            assert_eq!(d.code, Code::JsonSyntax, "{src}: {d:?}");
            assert_eq!((d.primary.span.start, &src[d.primary.span.clone()]), (at, text), "{src}: {}", d.message);
        }
        // At the end of the text the span is empty, at the end.
        let d = err("{\"a\": ");
        assert_eq!((d.code, d.primary.span.clone()), (Code::JsonSyntax, 6..6));
        // With a byte-order mark, offsets still count from the start of the file.
        assert_eq!(err("\u{feff}{,}").primary.span, 4..5);
    }

    #[test]
    fn nesting_is_bounded_before_recursing() {
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse(&ok).is_ok());
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        let d = err(&deep);
        assert_eq!((d.code, d.primary.span.clone()), (Code::TooDeep, MAX_DEPTH..MAX_DEPTH + 1));
        // Far deeper than serde_json's own limit: refused, no stack overflow, closed or not.
        let hostile = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(err(&hostile).code, Code::TooDeep);
        let d = err(&"[".repeat(100_000));
        assert_eq!((d.code, d.primary.span.clone()), (Code::JsonSyntax, 100_000..100_000));
        let d = err(&"{\"a\":".repeat(100_000));
        assert_eq!(d.code, Code::JsonSyntax);
    }

    fn assert_spans_inside(src: &str, node: &Node) {
        let span = &node.span;
        assert!(span.start <= span.end && span.end <= src.len(), "{span:?} outside {src:?}");
        assert!(src.is_char_boundary(span.start) && src.is_char_boundary(span.end), "{span:?} in {src:?}");
        match &node.kind {
            NodeKind::Scalar(s) => {
                if let Some(at) = s.verbatim_at {
                    assert_eq!(src.get(at..at + s.value.len()), Some(s.value.as_str()), "verbatim in {src:?}");
                }
            }
            NodeKind::Seq(items) => items.iter().for_each(|n| assert_spans_inside(src, n)),
            NodeKind::Map(entries) => entries.iter().for_each(|(k, v)| {
                assert_spans_inside(src, k);
                assert_spans_inside(src, v);
            }),
        }
    }

    /// The tree as the JSON value it stands for (numbers compared by their text).
    fn as_value(node: &Node) -> serde_json::Value {
        match &node.kind {
            NodeKind::Scalar(s) if !s.plain => serde_json::Value::String(s.value.clone()),
            NodeKind::Scalar(s) => serde_json::from_str(&s.value).expect("a plain scalar is a JSON literal"),
            NodeKind::Seq(items) => serde_json::Value::Array(items.iter().map(as_value).collect()),
            NodeKind::Map(entries) => serde_json::Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| match &k.kind {
                        NodeKind::Scalar(s) => (s.value.clone(), as_value(v)),
                        _ => panic!("a key is a string"),
                    })
                    .collect(),
            ),
        }
    }

    fn arb_json() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<u64>().prop_map(serde_json::Value::from),
            (-1e6f64..1e6).prop_map(serde_json::Value::from),
            "\\PC{0,12}".prop_map(serde_json::Value::String),
            any::<String>().prop_map(serde_json::Value::String),
        ];
        leaf.prop_recursive(6, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
                proptest::collection::btree_map("[a-z@-]{0,8}", inner, 0..6)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
        /// Any text: no panic, and spans inside the text on character boundaries.
        #[test]
        fn any_text_gives_a_tree_or_a_diagnostic_inside_the_text(src in "[{}\\[\\]\":,\\\\ \t\nrtufalse0-9eE.+\\-é😀\u{feff}]{0,48}") {
            match parse(&src) {
                Ok(Some(root)) => assert_spans_inside(&src, &root),
                Ok(None) => {}
                Err(d) => {
                    let span = &d.primary.span;
                    assert!(span.end <= src.len() && src.is_char_boundary(span.start) && src.is_char_boundary(span.end), "{d:?}");
                }
            }
        }

        /// Any JSON value, compact or pretty: the tree stands for that value.
        #[test]
        fn any_json_value_reads_back_as_itself(value in arb_json(), pretty: bool) {
            let src = if pretty { serde_json::to_string_pretty(&value) } else { serde_json::to_string(&value) }.unwrap();
            let root = parse(&src).unwrap().unwrap();
            assert_spans_inside(&src, &root);
            assert_eq!(as_value(&root), value);
        }
    }
}
