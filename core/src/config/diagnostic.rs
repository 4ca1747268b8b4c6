//! Diagnostics about a configuration file: where in the text, what is wrong,
//! and how it is shown to an operator (`FILE:LINE:COL: error: ...`, the line,
//! a caret under the column).

use std::fmt::Write as _;

/// A position in the configuration text. `line` and `column` are 1-based;
/// the column counts characters, as an editor does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Location {
    /// Which file: an index into the [`Source`]s read (0 is the main
    /// file; `include` adds the others).
    pub file: u32,
    /// Byte offset of the position in the file, to find its line again.
    pub offset: usize,
    pub line: usize,
    pub column: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One finding about the file: rejected (`Error`) or only suspicious
/// (`Warning`, from `pmtr -t`'s run-time checks).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub at: Location,
    /// How many characters the caret underlines (at least one).
    pub width: usize,
    pub message: String,
}

impl Diagnostic {
    pub fn error(at: Location, width: usize, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            at,
            width: width.max(1),
            message: shorten_quoted(&message.into()),
        }
    }

    pub fn warning(at: Location, width: usize, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(at, width, message)
        }
    }

    /// The operator's view: `FILE:LINE:COL: error: MESSAGE`, then the line
    /// of the file and a caret under the offending text.
    pub fn render(&self, file: &str, source: &[u8]) -> String {
        let kind = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let mut out = format!(
            "{file}:{}:{}: {kind}: {}\n",
            self.at.line, self.at.column, self.message
        );
        let (text, caret_at, caret_width) = excerpt(source, self.at, self.width);
        let gutter = self.at.line.to_string();
        let pad = " ".repeat(gutter.len());
        let _ = writeln!(out, "{gutter} | {text}");
        let _ = writeln!(
            out,
            "{pad} | {}{}",
            " ".repeat(caret_at),
            "^".repeat(caret_width)
        );
        out
    }
}

/// Longest quoted text kept in a message; the excerpt below it shows the
/// text in place anyway.
const QUOTED_CHARS: usize = 60;

/// Cuts every `quoted` stretch of a message to [`QUOTED_CHARS`], so that a
/// message about a 10 MB word stays one line.
fn shorten_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(512));
    for (i, part) in message.split('`').enumerate() {
        if i > 0 {
            out.push('`');
        }
        if i % 2 == 1 && part.chars().count() > QUOTED_CHARS {
            out.extend(part.chars().take(QUOTED_CHARS));
            out.push_str("...");
        } else {
            out.push_str(part);
        }
    }
    out
}

/// Longest stretch of a line shown in a diagnostic; longer lines are cut
/// around the column so that a 10 MB line does not flood the terminal.
const EXCERPT_CHARS: usize = 120;

/// The printable text of the line holding `at`, with tabs and control
/// characters made single spaces so the caret lines up, cut to a window
/// around the column. Returns the text, the caret's start and width.
fn excerpt(source: &[u8], at: Location, width: usize) -> (String, usize, usize) {
    let offset = at.offset.min(source.len());
    let start = source[..offset]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let end = source[offset..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(source.len(), |i| offset + i);
    let line = String::from_utf8_lossy(&source[start..end]);
    let chars: Vec<char> = line
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let column = at.column.saturating_sub(1).min(chars.len());
    let first = column.saturating_sub(EXCERPT_CHARS / 2);
    let last = (first + EXCERPT_CHARS).min(chars.len());
    let mut text: String = chars[first..last].iter().collect();
    let mut caret_at = column - first;
    if first > 0 {
        text.insert_str(0, "...");
        caret_at += 3;
    }
    if last < chars.len() {
        text.push_str("...");
    }
    let caret_width = width
        .min(EXCERPT_CHARS.saturating_sub(column - first))
        .max(1);
    (text.trim_end().to_string(), caret_at, caret_width)
}

/// One file of a configuration, as read: the main file or an included one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Source {
    pub path: String,
    pub text: Vec<u8>,
}

impl Source {
    pub fn new(path: impl Into<String>, text: impl Into<Vec<u8>>) -> Source {
        Source {
            path: path.into(),
            text: text.into(),
        }
    }
}

/// Renders a list of diagnostics about `sources`, at most `limit` of
/// them, with a count of those left out, so that a binary file does not
/// print forever.
pub fn render_all(diagnostics: &[Diagnostic], sources: &[Source], limit: usize) -> String {
    let mut out = String::new();
    let unknown = Source::default();
    for diagnostic in diagnostics.iter().take(limit) {
        let source = sources.get(diagnostic.at.file as usize).unwrap_or(&unknown);
        out.push_str(&diagnostic.render(&source.path, &source.text));
    }
    if diagnostics.len() > limit {
        let main = sources.first().map_or("", |s| s.path.as_str());
        let _ = writeln!(out, "{main}: {} more not shown", diagnostics.len() - limit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(offset: usize, line: usize, column: usize) -> Location {
        Location {
            file: 0,
            offset,
            line,
            column,
        }
    }

    #[test]
    fn renders_file_line_column_the_line_and_a_caret() {
        let source = b"job {\n  onse\n}\n";
        let d = Diagnostic::error(at(8, 2, 3), 4, "unknown option `onse`");
        assert_eq!(
            d.render("x.conf", source),
            "x.conf:2:3: error: unknown option `onse`\n2 |   onse\n  |   ^^^^\n"
        );
    }

    #[test]
    fn tabs_become_spaces_so_the_caret_lines_up() {
        let source = b"\tonse\n";
        let d = Diagnostic::warning(at(1, 1, 2), 4, "w");
        assert_eq!(
            d.render("f", source),
            "f:1:2: warning: w\n1 |  onse\n  |  ^^^^\n"
        );
    }

    #[test]
    fn a_huge_line_is_cut_around_the_column() {
        let mut source = vec![b'a'; 100_000];
        source.extend_from_slice(b" bad");
        let d = Diagnostic::error(at(100_001, 1, 100_002), 3, "m");
        let shown = d.render("f", &source);
        assert!(shown.len() < 400, "{shown}");
        assert!(shown.contains("...aaaa"));
        let lines: Vec<&str> = shown.lines().collect();
        let caret = lines[2].find('^').unwrap();
        assert_eq!(&lines[1][caret..caret + 3], "bad");
    }

    #[test]
    fn an_offset_past_the_end_does_not_panic() {
        let d = Diagnostic::error(at(50, 3, 9), 1, "unclosed");
        let shown = d.render("f", b"job {\n");
        assert!(shown.starts_with("f:3:9: error: unclosed\n"));
    }

    #[test]
    fn long_quoted_text_is_cut_in_messages() {
        let long = "x".repeat(1000);
        let d = Diagnostic::error(
            at(0, 1, 1),
            1,
            format!("unknown `{long}`; did you mean `job`?"),
        );
        assert_eq!(
            d.message,
            format!("unknown `{}...`; did you mean `job`?", "x".repeat(60))
        );
    }

    #[test]
    fn render_all_stops_at_the_limit() {
        let d = Diagnostic::error(at(0, 1, 1), 1, "m");
        let shown = render_all(&vec![d; 5], &[Source::new("f", "x")], 2);
        assert_eq!(shown.matches("error: m").count(), 2);
        assert!(shown.ends_with("f: 3 more not shown\n"));
    }
}
