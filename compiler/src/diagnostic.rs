//! Diagnostics as data: a message, a primary span, secondary labels, a help line and
//! notes. Rendering (codespan-reporting for people, JSON for programs) is separate.

use crate::ir::Span;
use codespan_reporting::term::termcolor::{Buffer, WriteColor};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Note,
    Warning,
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    pub span: Span,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// A stable code, documented in docs/policy.md (a test checks that).
    pub code: Code,
    pub message: String,
    pub primary: Label,
    pub secondary: Vec<Label>,
    pub help: Option<String>,
    pub notes: Vec<String>,
}

impl Diagnostic {
    pub fn new(code: Code, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: code.severity(),
            code,
            message: message.into(),
            primary: Label { span, message: String::new() },
            secondary: Vec::new(),
            help: None,
            notes: Vec::new(),
        }
    }
    pub fn label(mut self, message: impl Into<String>) -> Diagnostic {
        self.primary.message = message.into();
        self
    }
    pub fn secondary(mut self, span: Span, message: impl Into<String>) -> Diagnostic {
        self.secondary.push(Label { span, message: message.into() });
        self
    }
    pub fn help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }
    pub fn note(mut self, note: impl Into<String>) -> Diagnostic {
        self.notes.push(note.into());
        self
    }
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

macro_rules! codes {
    ($($variant:ident = $code:literal, $severity:ident, $summary:literal;)*) => {
        /// Every diagnostic the front-end can emit. The code strings are a stable
        /// contract (the Python SDK and CI scripts match on them).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Code { $($variant,)* }

        impl Code {
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];
            pub fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $code,)* }
            }
            pub fn severity(self) -> Severity {
                match self { $(Code::$variant => Severity::$severity,)* }
            }
            /// One line saying what the diagnostic means, for docs and `--explain`.
            pub fn summary(self) -> &'static str {
                match self { $(Code::$variant => $summary,)* }
            }
        }
    };
}

codes! {
    // E00xx: the file and its YAML.
    FileTooLarge = "E0001", Error, "the policy file exceeds the size limit";
    NotUtf8 = "E0002", Error, "the policy file is not valid UTF-8";
    YamlSyntax = "E0003", Error, "the YAML does not parse";
    YamlAlias = "E0004", Error, "YAML anchors and aliases are not allowed";
    YamlTag = "E0005", Error, "YAML tags are not allowed";
    MultipleDocuments = "E0006", Error, "the file holds more than one YAML document";
    DuplicateKey = "E0007", Error, "a mapping has the same key twice";
    TooDeep = "E0008", Error, "the YAML nests deeper than the limit";
    EmptyPolicy = "E0009", Error, "the file holds no policy";
    JsonSyntax = "E0010", Error, "the JSON does not parse";
    // E01xx: the shape of the policy.
    UnknownKey = "E0101", Error, "a key the policy language does not have";
    WrongType = "E0102", Error, "a value of the wrong type";
    MissingVersion = "E0103", Error, "`version: 1` is missing";
    UnsupportedVersion = "E0104", Error, "a policy version this compiler does not know";
    BadNumber = "E0105", Error, "a number that does not parse or is out of range";
    BadAction = "E0106", Error, "an action that does not exist or is not allowed here";
    BadTarget = "E0107", Error, "an unknown target";
    BadPath = "E0108", Error, "a filesystem path that is neither absolute nor starts with a known variable";
    BadPort = "E0109", Error, "a network rule that is not `tcp/PORT`";
    BadQuantity = "E0110", Error, "a duration or size that does not parse";
    BadEnvName = "E0111", Error, "an environment variable name that is not valid";
    BadRecord = "E0112", Error, "an unknown audit record class";
    EmptyRuleList = "E0113", Warning, "a syscall section with no rules";
    BadDomain = "E0140", Error, "a `network: domains:` entry that is not a DNS name or `*.suffix`";
    DomainIsAddress = "E0141", Error, "an IP address in `network: domains:` (addresses go in `connect:` ports)";
    WildcardTooWide = "E0142", Error, "a wildcard domain that covers every name, or every name under a top-level domain";
    BadRoute = "E0143", Error, "a route whose prefix or upstream is not valid, or two routes with one prefix";
    BadHeader = "E0144", Error, "a route header whose name or value template is not valid";
    CredentialPassed = "E0145", Error, "a variable a route's header reads is also given to the command by `env:`";
    // E02xx: syscalls, groups, conditions.
    UnknownSyscall = "E0201", Error, "a syscall name that exists on no target";
    UnknownGroup = "E0202", Error, "an unknown syscall group";
    UnknownArgument = "E0203", Error, "an argument the syscall does not have";
    UnknownConstant = "E0204", Error, "a constant the compiler does not know";
    ConstantTooWide = "E0205", Error, "a value wider than the argument it is compared with";
    ConditionSyntax = "E0206", Error, "the condition does not parse";
    ConditionOnGroup = "E0207", Error, "a condition on a group (arguments differ per syscall)";
    ActionOnAllow = "E0208", Error, "`action:` on an allow or audit rule";
    ConstantMissingOnTarget = "E0209", Error, "a constant that one of the policy's targets lacks";
    NoTargetHasSyscall = "E0210", Error, "a syscall that none of the policy's targets has";
    // W0xxx: accepted, but probably not what was meant.
    AlwaysTrue = "W0301", Warning, "a condition that is always true";
    AlwaysFalse = "W0302", Warning, "a condition that is always false: the rule never applies";
    PointerArgument = "W0303", Warning, "a condition on a pointer argument compares the address only";
    DefaultAllow = "W0304", Warning, "`default: allow` makes a deny-list policy";
    ErrnoZero = "W0305", Warning, "errno(0) makes a denied call look successful";
    AllowedAndDenied = "W0306", Warning, "a syscall both allowed and unconditionally denied: the deny wins";
    NoLinuxTarget = "W0307", Warning, "syscall rules with no Linux target";
    DuplicateDomain = "W0340", Warning, "a domain listed twice, or already covered by a wildcard";
    ProxyUnreachable = "W0341", Warning, "a policy with a proxy whose syscall rules deny reaching it";
    UnixSocketsReachable = "W0342", Warning, "a policy with a proxy that allows connecting UNIX sockets";
    // N0xxx: for information.
    SyscallMissingOnTarget = "N0401", Note, "a syscall that exists on some targets only";
    NoMacosEffect = "N0402", Note, "syscall rules that have no effect on macOS (Seatbelt cannot filter syscalls)";
}

impl serde::Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A source file for rendering: its display name and text.
pub struct SourceFile<'a> {
    pub name: &'a str,
    pub text: &'a str,
}

fn to_codespan(d: &Diagnostic, src: &SourceFile) -> codespan_reporting::diagnostic::Diagnostic<()> {
    use codespan_reporting::diagnostic as cs;
    let clamp = |span: &Span| {
        let start = floor_char_boundary(src.text, span.start.min(src.text.len()));
        let end = floor_char_boundary(src.text, span.end.clamp(start, src.text.len()));
        start..end
    };
    let severity = match d.severity {
        Severity::Error => cs::Severity::Error,
        Severity::Warning => cs::Severity::Warning,
        Severity::Note => cs::Severity::Note,
    };
    let mut labels = vec![cs::Label::primary((), clamp(&d.primary.span)).with_message(&d.primary.message)];
    labels.extend(d.secondary.iter().map(|l| cs::Label::secondary((), clamp(&l.span)).with_message(&l.message)));
    let mut notes: Vec<String> = d.help.iter().map(|h| format!("help: {h}")).collect();
    notes.extend(d.notes.iter().map(|n| format!("note: {n}")));
    cs::Diagnostic::new(severity)
        .with_code(d.code.as_str())
        .with_message(&d.message)
        .with_labels(labels)
        .with_notes(notes)
}

fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Text output stops after this many diagnostics, or once it passes
/// [`MAX_RENDERED_BYTES`]: each diagnostic reprints its source line, so a hostile file
/// with thousands of errors on one long line would otherwise make the output grow with
/// errors × line length. JSON output keeps every diagnostic.
pub const MAX_RENDERED: usize = 100;
pub const MAX_RENDERED_BYTES: usize = 1 << 20;

/// Render each diagnostic as plain text until the budget is spent; the rest are
/// summarised on one line.
fn render_budgeted(
    diags: &[Diagnostic],
    mut emit: impl FnMut(&Diagnostic) -> std::io::Result<usize>,
) -> std::io::Result<Option<String>> {
    let mut written = 0;
    for (i, d) in diags.iter().enumerate() {
        if i == MAX_RENDERED || written > MAX_RENDERED_BYTES {
            let rest = &diags[i..];
            let errors = rest.iter().filter(|d| d.is_error()).count();
            return Ok(Some(format!(
                "... and {} more diagnostic(s) not shown ({errors} error(s)); fix the ones above first\n",
                rest.len()
            )));
        }
        written += emit(d)?;
    }
    Ok(None)
}

/// Render diagnostics as rustc-style text, without colour (for files and tests).
pub fn render_plain(diags: &[Diagnostic], src: &SourceFile) -> String {
    let files = codespan_reporting::files::SimpleFile::new(src.name, src.text);
    let config = codespan_reporting::term::Config::default();
    let mut out = String::new();
    let rest = render_budgeted(diags, |d| {
        let before = out.len();
        codespan_reporting::term::emit_to_string(&mut out, &config, &files, &to_codespan(d, src))
            .expect("spans are clamped to the source");
        Ok(out.len() - before)
    })
    .expect("writing to a String does not fail");
    out.extend(rest);
    out
}

/// Render diagnostics to a terminal-aware writer (colour when it supports it).
pub fn render_to(writer: &mut dyn WriteColor, diags: &[Diagnostic], src: &SourceFile) -> std::io::Result<()> {
    let files = codespan_reporting::files::SimpleFile::new(src.name, src.text);
    let config = codespan_reporting::term::Config::default();
    let rest = render_budgeted(diags, |d| {
        // Rendered once into a buffer with the writer's colour support, so its size
        // counts against the budget and the same bytes are written.
        let mut buffer = if writer.supports_color() { Buffer::ansi() } else { Buffer::no_color() };
        codespan_reporting::term::emit_to_write_style(&mut buffer, &config, &files, &to_codespan(d, src))
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        writer.write_all(buffer.as_slice())?;
        Ok(buffer.len())
    })?;
    if let Some(line) = rest {
        writer.write_all(line.as_bytes())?;
    }
    Ok(())
}

/// Line and column (1-based, columns in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    LineIndex::new(text).line_col(offset)
}

/// Byte offsets of line starts, so many spans are located without rescanning the file.
pub struct LineIndex<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub fn new(text: &'a str) -> LineIndex<'a> {
        let starts = std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect();
        LineIndex { text, starts }
    }

    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = floor_char_boundary(self.text, offset.min(self.text.len()));
        let line = self.starts.partition_point(|&s| s <= offset);
        let col = self.text[self.starts[line - 1]..offset].chars().count() + 1;
        (line, col)
    }
}

/// The stable JSON form of `capsulec check --format json` (documented in docs/policy.md).
pub fn to_json(diags: &[Diagnostic], src: &SourceFile) -> serde_json::Value {
    let index = LineIndex::new(src.text);
    let span = |s: &Span| {
        let (line, column) = index.line_col(s.start);
        let (end_line, end_column) = index.line_col(s.end);
        serde_json::json!({
            "start": s.start, "end": s.end,
            "line": line, "column": column, "end_line": end_line, "end_column": end_column,
        })
    };
    let label = |l: &Label| serde_json::json!({ "span": span(&l.span), "message": l.message });
    let items: Vec<serde_json::Value> = diags
        .iter()
        .map(|d| {
            serde_json::json!({
                "severity": d.severity,
                "code": d.code,
                "message": d.message,
                "span": span(&d.primary.span),
                "label": d.primary.message,
                "secondary": d.secondary.iter().map(label).collect::<Vec<_>>(),
                "help": d.help,
                "notes": d.notes,
            })
        })
        .collect();
    let count = |s: Severity| diags.iter().filter(|d| d.severity == s).count();
    serde_json::json!({
        "format": "capsulec-check",
        "version": 1,
        "file": src.name,
        "ok": count(Severity::Error) == 0,
        "errors": count(Severity::Error),
        "warnings": count(Severity::Warning),
        "notes": count(Severity::Note),
        "diagnostics": items,
    })
}
