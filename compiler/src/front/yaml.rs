//! YAML to a small tree with byte spans, refusing the YAML features a policy has no
//! use for and an attacker might: anchors and aliases (alias bombs), tags, several
//! documents, duplicate keys, deep nesting.
//!
//! The tree is built from saphyr-parser's event stream rather than its DOM so that
//! every hazard is seen (a DOM silently keeps the last of two duplicate keys) and
//! nesting is bounded before the parser goes further.

use crate::diagnostic::{Code, Diagnostic};
use crate::ir::Span;
use saphyr_parser::{Event, Parser, ScalarStyle};

/// Deeper than any sensible policy (the deepest legal path is about 5 levels).
pub const MAX_DEPTH: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: NodeKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind {
    Scalar(Scalar),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scalar {
    pub value: String,
    /// Plain (unquoted) scalars are the only ones YAML types as numbers, booleans
    /// or null.
    pub plain: bool,
    /// Byte offset in the source where `value`'s text starts, when the value is
    /// a verbatim slice of the source (no escapes, no folding). Lets diagnostics
    /// inside a condition point at the exact characters.
    pub verbatim_at: Option<usize>,
}

impl Node {
    pub fn describe(&self) -> &'static str {
        match &self.kind {
            NodeKind::Scalar(s) if s.plain && is_null(&s.value) => "null",
            NodeKind::Scalar(_) => "a scalar",
            NodeKind::Seq(_) => "a list",
            NodeKind::Map(_) => "a mapping",
        }
    }
}

pub fn is_null(plain_value: &str) -> bool {
    matches!(plain_value, "" | "~" | "null" | "Null" | "NULL")
}

/// Converts saphyr's character indices to byte offsets.
struct Offsets<'a> {
    src: &'a str,
    ascii: bool,
    /// For non-ASCII sources: byte offset of each character, plus the end.
    table: Vec<usize>,
}

impl<'a> Offsets<'a> {
    fn new(src: &'a str) -> Self {
        let ascii = src.is_ascii();
        let table = if ascii {
            Vec::new()
        } else {
            src.char_indices().map(|(i, _)| i).chain(std::iter::once(src.len())).collect()
        };
        Offsets { src, ascii, table }
    }
    fn byte(&self, char_index: usize) -> usize {
        if self.ascii {
            char_index.min(self.src.len())
        } else {
            self.table.get(char_index).copied().unwrap_or(self.src.len())
        }
    }
    fn span(&self, span: saphyr_parser::Span) -> Span {
        self.byte(span.start.index())..self.byte(span.end.index())
    }
}

enum Frame {
    Seq { start: usize, items: Vec<Node> },
    Map { start: usize, entries: Vec<(Node, Node)>, key: Option<Node> },
}

/// Parse one YAML document into a tree. `Ok(None)` for an empty stream.
/// Errors are boxed: a diagnostic is large and the happy path should not pay for it.
pub fn parse(src: &str) -> Result<Option<Node>, Box<Diagnostic>> {
    let offsets = Offsets::new(src);
    let mut parser = Parser::new_from_str(src);
    let mut stack: Vec<Frame> = Vec::new();
    let mut root: Option<Node> = None;
    let mut documents = 0;

    while let Some(next) = parser.next_event() {
        let (event, span) = next.map_err(|e| scan_error(&e, &offsets, src))?;
        let span = offsets.span(span);
        let node = match event {
            Event::StreamStart | Event::StreamEnd | Event::Nothing | Event::DocumentEnd => continue,
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(Box::new(
                        Diagnostic::new(Code::MultipleDocuments, span, "a policy is one YAML document")
                            .label("a second document starts here")
                            .help("remove the `---` separator and everything after it, or split the file"),
                    ));
                }
                continue;
            }
            Event::Alias(_) => {
                return Err(Box::new(
                    Diagnostic::new(Code::YamlAlias, span, "YAML aliases are not allowed in a policy")
                        .label("alias")
                        .help("write the value out in full; aliases can multiply a small file into a huge one"),
                ));
            }
            Event::Scalar(value, style, anchor, tag) => {
                check_anchor_and_tag(anchor, tag.as_deref(), &span)?;
                let plain = style == ScalarStyle::Plain;
                let content_start = match style {
                    ScalarStyle::Plain => Some(span.start),
                    ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted => Some(span.start + 1),
                    _ => None,
                };
                let verbatim_at = content_start.filter(|&at| src.get(at..at + value.len()) == Some(&*value));
                Node { kind: NodeKind::Scalar(Scalar { value: value.into_owned(), plain, verbatim_at }), span }
            }
            Event::SequenceStart(anchor, tag) => {
                check_anchor_and_tag(anchor, tag.as_deref(), &span)?;
                push(&mut stack, Frame::Seq { start: span.start, items: Vec::new() }, &span)?;
                continue;
            }
            Event::MappingStart(anchor, tag) => {
                check_anchor_and_tag(anchor, tag.as_deref(), &span)?;
                push(&mut stack, Frame::Map { start: span.start, entries: Vec::new(), key: None }, &span)?;
                continue;
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq { start, items }) => {
                    let end = items.last().map_or(span.end, |n| n.span.end.max(span.end));
                    Node { kind: NodeKind::Seq(items), span: start..end }
                }
                _ => unreachable!("saphyr-parser balances sequence events"),
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map { start, entries, .. }) => {
                    let end = entries.last().map_or(span.end, |(_, v)| v.span.end.max(span.end));
                    Node { kind: NodeKind::Map(entries), span: start..end }
                }
                _ => unreachable!("saphyr-parser balances mapping events"),
            },
        };
        match stack.last_mut() {
            None => root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                None => {
                    if !matches!(node.kind, NodeKind::Scalar(_)) {
                        return Err(Box::new(
                            Diagnostic::new(Code::WrongType, node.span.clone(), "a key must be a plain name")
                                .label(format!("{} used as a key", node.describe())),
                        ));
                    }
                    if let Some((first, _)) = entries.iter().find(|(k, _)| scalar_eq(k, &node)) {
                        return Err(Box::new(
                            Diagnostic::new(Code::DuplicateKey, node.span.clone(), "duplicate key")
                                .label("this key appears twice")
                                .secondary(first.span.clone(), "first here")
                                .help("YAML keeps only one of them; merge the two entries"),
                        ));
                    }
                    *key = Some(node);
                }
                Some(k) => entries.push((k, node)),
            },
        }
    }
    Ok(root)
}

/// saphyr-parser reports some hazards as scan errors before any event reaches us:
/// deep flow nesting (its own recursion limit) and aliases to unknown anchors.
fn scan_error(e: &saphyr_parser::ScanError, offsets: &Offsets, src: &str) -> Box<Diagnostic> {
    let at = offsets.byte(e.marker().index());
    // One character, not one byte: the character may be several bytes (a stray BOM).
    let span = at..src.get(at..).and_then(|rest| rest.chars().next()).map_or(at, |c| at + c.len_utf8());
    let info = e.info();
    Box::new(if info.contains("recursion limit") {
        Diagnostic::new(Code::TooDeep, span, format!("nesting deeper than {MAX_DEPTH} levels"))
            .label("too deep")
            .help("a policy needs only a few levels of nesting")
    } else if info.contains("anchor") {
        Diagnostic::new(Code::YamlAlias, span, "YAML aliases are not allowed in a policy")
            .label("alias")
            .help("write the value out in full; aliases can multiply a small file into a huge one")
    } else {
        Diagnostic::new(Code::YamlSyntax, span, format!("invalid YAML: {info}")).label("here")
    })
}

fn scalar_eq(a: &Node, b: &Node) -> bool {
    matches!((&a.kind, &b.kind), (NodeKind::Scalar(x), NodeKind::Scalar(y)) if x.value == y.value)
}

fn push(stack: &mut Vec<Frame>, frame: Frame, span: &Span) -> Result<(), Box<Diagnostic>> {
    if stack.len() >= MAX_DEPTH {
        return Err(Box::new(
            Diagnostic::new(Code::TooDeep, span.clone(), format!("nesting deeper than {MAX_DEPTH} levels"))
                .label("too deep")
                .help("a policy needs only a few levels of nesting"),
        ));
    }
    stack.push(frame);
    Ok(())
}

fn check_anchor_and_tag(anchor: usize, tag: Option<&saphyr_parser::Tag>, span: &Span) -> Result<(), Box<Diagnostic>> {
    if anchor != 0 {
        return Err(Box::new(
            Diagnostic::new(Code::YamlAlias, span.clone(), "YAML anchors are not allowed in a policy")
                .label("anchored value")
                .help("remove the `&anchor`; write repeated values out in full"),
        ));
    }
    if let Some(tag) = tag {
        return Err(Box::new(
            Diagnostic::new(
                Code::YamlTag,
                span.clone(),
                format!("YAML tag `{}{}` is not allowed in a policy", tag.handle, tag.suffix),
            )
            .label("tagged value")
            .help("remove the tag; the policy language gives every key its type"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `convert` fuzz target: a scan error at a multi-byte character (a
    /// byte-order mark inside the document) had a one-byte span that split it.
    #[test]
    fn a_scan_error_at_a_multibyte_character_spans_the_whole_character() {
        let src = "version: 1\nname: a\u{feff}b\n";
        let d = parse(src).unwrap_err();
        assert_eq!(d.code, Code::YamlSyntax);
        assert_eq!(&src[d.primary.span.clone()], "\u{feff}");
    }
}
