//! Environment files (`env file PATH`, SPEC 11.10) in the syntax of
//! systemd's `EnvironmentFile=`: `KEY=VALUE` lines, `#` and `;` comments,
//! single quotes taken literally, double quotes with `\"`, `\\`, `\$`,
//! `` \` `` escapes, a backslash at the end of a line continuing it, no
//! expansion. Pure: bytes in, variables or located errors out.

use super::model::EnvVar;

/// Longest line accepted: a longer one is not a setting someone wrote.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// What is wrong with an environment file, and on which line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct EnvFileError {
    pub line: usize,
    pub message: String,
}

/// The variables the file sets, in order (a later one of the same name
/// wins when applied), or every error found.
pub fn parse(bytes: &[u8]) -> Result<Vec<EnvVar>, Vec<EnvFileError>> {
    if let Some(nul) = bytes.iter().position(|&b| b == 0) {
        let line = 1 + bytes[..nul].iter().filter(|&&b| b == b'\n').count();
        let message = "the file holds a NUL byte: this is not a text file".to_string();
        return Err(vec![EnvFileError { line, message }]);
    }
    let mut errors = Vec::new();
    for (index, line) in bytes.split(|&b| b == b'\n').enumerate() {
        if line.len() > MAX_LINE_BYTES {
            let message = format!("longer than {MAX_LINE_BYTES} bytes");
            errors.push(EnvFileError {
                line: index + 1,
                message,
            });
        }
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(error) => {
            let line = 1 + bytes[..error.valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            errors.push(EnvFileError {
                line,
                message: "not valid UTF-8".into(),
            });
            return Err(errors);
        }
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut parser = Parser {
        vars: Vec::new(),
        errors,
        line: 1,
    };
    parser.run(text);
    if parser.errors.is_empty() {
        Ok(parser.vars)
    } else {
        Err(parser.errors)
    }
}

struct Parser {
    vars: Vec<EnvVar>,
    errors: Vec<EnvFileError>,
    /// The line being read, 1-based.
    line: usize,
}

#[derive(Clone, Copy, PartialEq)]
enum State {
    PreKey,
    Key,
    PreValue,
    Value,
    ValueEscape,
    SingleQuoted,
    DoubleQuoted,
    DoubleQuotedEscape,
    Comment,
    CommentEscape,
}

impl Parser {
    fn run(&mut self, text: &str) {
        let mut state = State::PreKey;
        let mut key = String::new();
        let mut value = String::new();
        // Where the key began, and the length of the unquoted value
        // without its trailing white space.
        let mut key_line = 1;
        let mut value_end = 0;
        for c in text.chars() {
            match state {
                State::PreKey => {
                    if c == '#' || c == ';' {
                        state = State::Comment;
                    } else if c == '=' {
                        key.clear();
                        key_line = self.line;
                        value.clear();
                        value_end = 0;
                        state = State::PreValue;
                    } else if !c.is_whitespace() {
                        key.clear();
                        key.push(c);
                        key_line = self.line;
                        state = State::Key;
                    }
                }
                State::Key => {
                    if c == '\n' {
                        let message = format!("`{}` has no `=`: write NAME=VALUE", key.trim_end());
                        self.error(key_line, message);
                        state = State::PreKey;
                    } else if c == '=' {
                        value.clear();
                        value_end = 0;
                        state = State::PreValue;
                    } else {
                        key.push(c);
                    }
                }
                // Also after a closing quote: `A='a' 'b'` is `ab`.
                State::PreValue => match c {
                    '\n' => {
                        self.assign(&key, &value, key_line);
                        state = State::PreKey;
                    }
                    '\'' => state = State::SingleQuoted,
                    '"' => state = State::DoubleQuoted,
                    '\\' => state = State::ValueEscape,
                    c if c.is_whitespace() => {}
                    c => {
                        value.push(c);
                        value_end = value.len();
                        state = State::Value;
                    }
                },
                State::Value => match c {
                    '\n' => {
                        self.assign(&key, &value[..value_end], key_line);
                        state = State::PreKey;
                    }
                    '\\' => state = State::ValueEscape,
                    c => {
                        value.push(c);
                        if !c.is_whitespace() {
                            value_end = value.len();
                        }
                    }
                },
                State::ValueEscape => {
                    // A backslash before the line's end joins the next line.
                    if c != '\n' {
                        value.push(c);
                        value_end = value.len();
                    }
                    state = State::Value;
                }
                State::SingleQuoted => {
                    if c == '\'' {
                        state = State::PreValue;
                    } else {
                        value.push(c);
                    }
                }
                State::DoubleQuoted => match c {
                    '"' => state = State::PreValue,
                    '\\' => state = State::DoubleQuotedEscape,
                    c => value.push(c),
                },
                State::DoubleQuotedEscape => {
                    match c {
                        '"' | '\\' | '`' | '$' => value.push(c),
                        '\n' => {}
                        c => {
                            value.push('\\');
                            value.push(c);
                        }
                    }
                    state = State::DoubleQuoted;
                }
                State::Comment => match c {
                    '\\' => state = State::CommentEscape,
                    '\n' => state = State::PreKey,
                    _ => {}
                },
                // As systemd: a comment ending in a backslash goes on.
                State::CommentEscape => state = State::Comment,
            }
            if c == '\n' {
                self.line += 1;
            }
        }
        match state {
            State::Key => {
                let message = format!("`{}` has no `=`: write NAME=VALUE", key.trim_end());
                self.error(key_line, message);
            }
            State::PreValue => self.assign(&key, &value, key_line),
            State::Value | State::ValueEscape => self.assign(&key, &value[..value_end], key_line),
            State::SingleQuoted | State::DoubleQuoted | State::DoubleQuotedEscape => {
                self.error(
                    key_line,
                    format!("the quoted value of `{}` is not closed", key.trim_end()),
                );
            }
            State::PreKey | State::Comment | State::CommentEscape => {}
        }
    }

    fn assign(&mut self, key: &str, value: &str, line: usize) {
        let name = key.trim_end();
        if is_valid_name(name) {
            self.vars.push(EnvVar {
                name: name.to_string(),
                value: value.to_string(),
            });
        } else {
            let shown: String = name
                .chars()
                .map(|c| if c.is_control() { '?' } else { c })
                .take(60)
                .collect();
            let message = format!("`{shown}` is not a variable name (letters, digits and `_`, not starting with a digit)");
            self.error(line, message);
        }
    }

    fn error(&mut self, line: usize, message: String) {
        self.errors.push(EnvFileError { line, message });
    }
}

/// A name a shell can use: `[A-Za-z_][A-Za-z0-9_]*`, as systemd demands.
pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(text: &str) -> Vec<(String, String)> {
        match parse(text.as_bytes()) {
            Ok(vars) => vars.into_iter().map(|v| (v.name, v.value)).collect(),
            Err(errors) => panic!("{text:?}: {errors:?}"),
        }
    }

    fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
        expected
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn errors(text: &[u8]) -> Vec<String> {
        parse(text)
            .unwrap_err()
            .into_iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn plain_assignments_comments_and_blank_lines() {
        let text = "# a comment\n; another\n\nA=1\n  B = two words  \nC=\nD=x=y\n";
        assert_eq!(
            vars(text),
            pairs(&[("A", "1"), ("B", "two words"), ("C", ""), ("D", "x=y")])
        );
    }

    #[test]
    fn quotes_as_systemd_reads_them() {
        let text = "A='single $X \\n kept'\nB=\"double \\\"q\\\" \\\\ \\$HOME \\x\"\nC=\"  spaces  \"\nD=pre'quoted'post\nE=\"two\nlines\"\n";
        assert_eq!(
            vars(text),
            pairs(&[
                ("A", "single $X \\n kept"),
                ("B", "double \"q\" \\ $HOME \\x"),
                ("C", "  spaces  "),
                ("D", "pre'quoted'post"),
                ("E", "two\nlines"),
            ])
        );
        assert_eq!(
            vars("A='a' \"b\"\nB='x'y  \n"),
            pairs(&[("A", "ab"), ("B", "xy")])
        );
    }

    #[test]
    fn a_trailing_backslash_continues_the_line() {
        assert_eq!(
            vars("A=one \\\ntwo\nB=2"),
            pairs(&[("A", "one two"), ("B", "2")])
        );
        assert_eq!(vars("A=a\\ b\\\\c"), pairs(&[("A", "a b\\c")]));
        // A comment ending in a backslash swallows the next line too.
        assert_eq!(vars("# c \\\nA=1\nB=2\n"), pairs(&[("B", "2")]));
    }

    #[test]
    fn no_expansion_and_later_wins_when_applied() {
        assert_eq!(vars("A=$HOME\nA=2"), pairs(&[("A", "$HOME"), ("A", "2")]));
    }

    #[test]
    fn windows_line_ends_and_a_missing_last_newline() {
        assert_eq!(vars("A=1\r\nB=2"), pairs(&[("A", "1"), ("B", "2")]));
    }

    #[test]
    fn malformed_lines_are_errors_with_their_line() {
        assert_eq!(
            errors(b"A=1\nJUSTAWORD\n1X=2\nMY-VAR=3\nB=\"open\n"),
            [
                "line 2: `JUSTAWORD` has no `=`: write NAME=VALUE",
                "line 3: `1X` is not a variable name (letters, digits and `_`, not starting with a digit)",
                "line 4: `MY-VAR` is not a variable name (letters, digits and `_`, not starting with a digit)",
                "line 5: the quoted value of `B` is not closed",
            ]
        );
        assert_eq!(errors(b"=x\n"), ["line 1: `` is not a variable name (letters, digits and `_`, not starting with a digit)"]);
    }

    #[test]
    fn binary_files_and_huge_lines_are_refused() {
        assert_eq!(
            errors(b"A=1\nB=\0"),
            ["line 2: the file holds a NUL byte: this is not a text file"]
        );
        assert_eq!(errors(b"A=1\nB=\xff\n"), ["line 2: not valid UTF-8"]);
        let mut long = b"A=".to_vec();
        long.extend(std::iter::repeat_n(b'x', MAX_LINE_BYTES));
        assert_eq!(
            errors(&long),
            [format!("line 1: longer than {MAX_LINE_BYTES} bytes")]
        );
    }

    #[test]
    fn hostile_input_never_panics() {
        for input in [
            &b"\\"[..],
            b"A=\\",
            b"A=\"\\",
            b"'",
            b"A='",
            b"\xe2\x82",
            b"#\\",
            b"A",
        ] {
            let _ = parse(input);
        }
    }
}
