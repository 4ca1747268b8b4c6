//! Splits configuration text into words: white space separates them, `#`
//! at the start of a word comments out the rest of the line, and double
//! quotes make one word of text with spaces (closing on the same line).

use std::borrow::Cow;

use super::diagnostic::{Diagnostic, Location};

/// One word of the configuration, quotes removed. Unquoted words borrow
/// from the file's text: a file of 100 000 jobs is a million words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Word<'a> {
    pub text: Cow<'a, str>,
    pub at: Location,
    /// Width in characters of the word as written, quotes included.
    pub width: usize,
    /// True when any part of the word was quoted: a quoted `}` is text,
    /// not the end of a block.
    pub quoted: bool,
}

impl Word<'_> {
    /// True for an unquoted word that is exactly `text`: keywords and braces.
    pub fn is(&self, text: &str) -> bool {
        !self.quoted && self.text == text
    }
}

/// Splits `source` into words. A file that is not text (it holds a NUL
/// byte) yields one error and no words; other faults (an unclosed quote,
/// invalid UTF-8) are reported per word and the word is left out.
pub fn lex(source: &[u8], file: u32) -> (Vec<Word<'_>>, Vec<Diagnostic>) {
    let mut lexer = Lexer {
        source,
        file,
        pos: 0,
        line: 1,
        column: 1,
        words: Vec::new(),
        errors: Vec::new(),
    };
    if let Some(nul) = source.iter().position(|&b| b == 0) {
        let at = lexer.location_of(nul);
        lexer.errors.push(Diagnostic::error(
            at,
            1,
            "the file holds a NUL byte: this is not a text file",
        ));
        return (Vec::new(), lexer.errors);
    }
    lexer.run();
    (lexer.words, lexer.errors)
}

struct Lexer<'a> {
    source: &'a [u8],
    /// Stamped on every location: which file of the configuration.
    file: u32,
    pos: usize,
    line: usize,
    column: usize,
    words: Vec<Word<'a>>,
    errors: Vec<Diagnostic>,
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b'\x0b' | b'\x0c')
}

impl<'a> Lexer<'a> {
    fn here(&self) -> Location {
        Location {
            file: self.file,
            offset: self.pos,
            line: self.line,
            column: self.column,
        }
    }

    /// Moves past one byte, keeping line and column (in characters) true.
    fn bump(&mut self) {
        let b = self.source[self.pos];
        self.pos += 1;
        if b == b'\n' {
            self.line += 1;
            self.column = 1;
        } else if b & 0xC0 != 0x80 {
            // Not a UTF-8 continuation byte: a new character starts here.
            self.column += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.source.get(self.pos).copied()
    }

    fn run(&mut self) {
        while let Some(b) = self.peek() {
            if is_space(b) {
                self.bump();
            } else if b == b'#' {
                while self.peek().is_some_and(|b| b != b'\n') {
                    self.bump();
                }
            } else {
                self.word();
            }
        }
    }

    fn word(&mut self) {
        let start = self.here();
        // Only a quoted word needs a copy: its quotes are left out.
        let mut bytes = Vec::new();
        let mut quoted = false;
        let mut open_quote: Option<Location> = None;
        while let Some(b) = self.peek() {
            if open_quote.is_some() {
                if b == b'\n' {
                    break;
                }
                self.bump();
                if b == b'"' {
                    open_quote = None;
                } else {
                    bytes.push(b);
                }
            } else if is_space(b) {
                break;
            } else {
                if b == b'"' {
                    if !quoted {
                        bytes.extend_from_slice(&self.source[start.offset..self.pos]);
                    }
                    open_quote = Some(self.here());
                    quoted = true;
                } else if quoted {
                    bytes.push(b);
                }
                self.bump();
            }
        }
        let width = self.column.saturating_sub(start.column).max(1);
        if let Some(quote) = open_quote {
            self.errors.push(Diagnostic::error(
                quote,
                1,
                "unterminated quote: a quote must close on the same line",
            ));
            return;
        }
        let source: &'a [u8] = self.source;
        let text = if quoted {
            String::from_utf8(bytes).ok().map(Cow::Owned)
        } else {
            std::str::from_utf8(&source[start.offset..self.pos])
                .ok()
                .map(Cow::Borrowed)
        };
        match text {
            Some(text) => self.words.push(Word {
                text,
                at: start,
                width,
                quoted,
            }),
            None => self.errors.push(Diagnostic::error(
                start,
                width,
                "this word is not valid UTF-8",
            )),
        }
    }

    fn location_of(&self, offset: usize) -> Location {
        let before = &self.source[..offset];
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        Location {
            file: self.file,
            offset,
            line: 1 + before.iter().filter(|&&b| b == b'\n').count(),
            column: 1 + before[line_start..]
                .iter()
                .filter(|&&b| b & 0xC0 != 0x80)
                .count(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(source: &str) -> Vec<String> {
        let (words, errors) = lex(source.as_bytes(), 0);
        assert!(errors.is_empty(), "{errors:?}");
        words.into_iter().map(|w| w.text.into_owned()).collect()
    }

    #[test]
    fn splits_on_any_white_space() {
        assert_eq!(
            texts("job {\n\tname  x\r\n}"),
            ["job", "{", "name", "x", "}"]
        );
    }

    #[test]
    fn comments_run_to_the_end_of_the_line() {
        assert_eq!(texts("# c\nname x # y z\ncmd"), ["name", "x", "cmd"]);
    }

    #[test]
    fn a_hash_inside_a_word_is_text() {
        assert_eq!(texts("cmd /bin/echo a#b"), ["cmd", "/bin/echo", "a#b"]);
    }

    #[test]
    fn quotes_make_one_word_and_are_removed() {
        assert_eq!(
            texts(r#"cmd /bin/echo "New York" "" FOO="a b"c"#),
            ["cmd", "/bin/echo", "New York", "", "FOO=a bc"]
        );
    }

    #[test]
    fn a_quoted_brace_is_marked_quoted() {
        let (words, _) = lex(br#"} "}""#, 0);
        assert!(words[0].is("}"));
        assert!(!words[1].is("}"));
        assert_eq!(words[1].text, "}");
    }

    #[test]
    fn positions_are_lines_and_character_columns() {
        let (words, _) = lex("é x\n  \"y z\"".as_bytes(), 0);
        let at: Vec<(usize, usize, usize)> = words
            .iter()
            .map(|w| (w.at.line, w.at.column, w.width))
            .collect();
        assert_eq!(at, [(1, 1, 1), (1, 3, 1), (2, 3, 5)]);
    }

    #[test]
    fn an_unterminated_quote_is_an_error_at_the_quote() {
        let (words, errors) = lex(b"name x\ncmd /bin/echo \"abc\nonce", 0);
        assert_eq!(errors.len(), 1);
        assert_eq!((errors[0].at.line, errors[0].at.column), (2, 15));
        assert!(errors[0].message.contains("unterminated quote"));
        let texts: Vec<&str> = words.iter().map(|w| w.text.as_ref()).collect();
        assert_eq!(texts, ["name", "x", "cmd", "/bin/echo", "once"]);
    }

    #[test]
    fn invalid_utf8_is_an_error_per_word() {
        let (words, errors) = lex(b"name \xff\xfe ok", 0);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].at.column, 6);
        assert_eq!(words.len(), 2);
    }

    #[test]
    fn a_nul_byte_means_not_a_text_file() {
        let (words, errors) = lex(b"job {\n na\0me x }", 0);
        assert!(words.is_empty());
        assert_eq!(errors.len(), 1);
        assert_eq!((errors[0].at.line, errors[0].at.column), (2, 4));
    }

    #[test]
    fn empty_and_blank_input_has_no_words() {
        assert!(texts("").is_empty());
        assert!(texts(" \n\t\n# only a comment").is_empty());
    }
}
