//! The command file: one command a line, split like a POSIX shell by `shlex`.
//! Blank lines and `#` comments are skipped. Nothing is expanded: `$VAR`, `~` and
//! globs are passed literally, and an unquoted `|`, `&`, `;`, `<`, `>` or backquote
//! is an error (pipes and redirections need an explicit `sh -c '...'`).

use anyhow::Context as _;
use std::io::Read;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// 1-based line in the file; 0 for a command given after `--`.
    pub line: usize,
    pub argv: Vec<String>,
}

/// Far above any real command list; a larger input is refused before parsing.
const MAX_FILE_BYTES: u64 = 1 << 20;

pub fn read(path: &Path) -> anyhow::Result<Vec<Command>> {
    let mut text = String::new();
    let name = if path == Path::new("-") { "standard input".to_owned() } else { path.display().to_string() };
    let result = if path == Path::new("-") {
        std::io::stdin().take(MAX_FILE_BYTES + 1).read_to_string(&mut text)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_string(&mut text))
    };
    result.with_context(|| format!("cannot read {name}"))?;
    if text.len() as u64 > MAX_FILE_BYTES {
        anyhow::bail!("{name} is larger than 1 MiB");
    }
    let commands = parse(&text).map_err(|e| anyhow::anyhow!("{name}:{e}"))?;
    if commands.is_empty() {
        anyhow::bail!("{name} has no commands (only blank lines and comments)");
    }
    Ok(commands)
}

/// Splits every line; the first line that cannot be split is the error (`N: why`).
pub fn parse(text: &str) -> Result<Vec<Command>, String> {
    let mut commands = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if let Some(op) = unquoted_operator(line) {
            return Err(format!(
                "{n}: unquoted `{op}`: pipes, redirections and command lists need an explicit `sh -c '...'`"
            ));
        }
        let argv = shlex::split(line)
            .ok_or_else(|| format!("{n}: cannot split the line (an unclosed quote or a trailing backslash)"))?;
        if !argv.is_empty() {
            commands.push(Command { line: n, argv });
        }
    }
    Ok(commands)
}

/// The first shell operator character outside quotes and comments, if any.
fn unquoted_operator(line: &str) -> Option<char> {
    let (mut single, mut double, mut escaped, mut word_start) = (false, false, false, true);
    for c in line.chars() {
        if escaped {
            escaped = false;
            word_start = false;
            continue;
        }
        match c {
            '\\' if !single => escaped = true,
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '#' if !single && !double && word_start => return None,
            '|' | '&' | ';' | '<' | '>' | '`' if !single && !double => return Some(c),
            _ => {}
        }
        word_start = c.is_whitespace() && !single && !double;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argvs(text: &str) -> Vec<Vec<String>> {
        parse(text).unwrap().into_iter().map(|c| c.argv).collect()
    }

    #[test]
    fn splits_like_a_shell() {
        assert_eq!(argvs("echo 'a b' \"c d\" e\\ f"), vec![vec!["echo", "a b", "c d", "e f"]]);
        assert_eq!(argvs("sh -c 'ls | wc -l > x'"), vec![vec!["sh", "-c", "ls | wc -l > x"]]);
        assert_eq!(argvs("echo a#b # comment"), vec![vec!["echo", "a#b"]]);
    }

    #[test]
    fn skips_blank_lines_and_comments_and_keeps_line_numbers() {
        let parsed = parse("\n# a comment\n   \ntrue\n  # indented comment\nfalse x\n").unwrap();
        assert_eq!(
            parsed,
            vec![
                Command { line: 4, argv: vec!["true".into()] },
                Command { line: 6, argv: vec!["false".into(), "x".into()] }
            ]
        );
    }

    #[test]
    fn an_unsplittable_line_is_an_error_with_its_number() {
        assert_eq!(
            parse("true\necho 'unclosed\n").unwrap_err(),
            "2: cannot split the line (an unclosed quote or a trailing backslash)"
        );
        assert!(parse("true\n\nls | wc\n").unwrap_err().starts_with("3: unquoted `|`"));
        assert!(parse("echo x > out").unwrap_err().starts_with("1: unquoted `>`"));
        assert!(parse("a && b").is_err());
        assert!(parse("echo '|' \"&\" \\;").is_ok());
    }
}
