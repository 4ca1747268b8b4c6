//! Turns words into the raw structure of a configuration: job blocks holding
//! options with their argument words, and global statements. Each option's
//! argument shape comes from its definition; values are not checked here.
//! On a fault the parser reports it, skips the rest of the line and goes
//! on, so that one pass finds every error in the file.

use super::diagnostic::{Diagnostic, Location};
use super::lex::Word;
use super::options::{self, OptionDef, StatementDef, Syntax, JOB_OPTIONS, STATEMENTS};

/// A parsed but unchecked configuration file: its jobs, statements and
/// includes in file order (an include stands where it is written).
#[derive(Debug, Default)]
pub struct RawConfig<'a> {
    pub items: Vec<RawItem<'a>>,
}

#[derive(Debug)]
pub enum RawItem<'a> {
    Job(RawJob<'a>),
    Statement(RawStatement<'a>),
    /// `include PATTERN`: the pattern's word.
    Include(&'a Word<'a>),
}

#[derive(Debug)]
pub struct RawJob<'a> {
    /// The `job` keyword.
    pub keyword: &'a Word<'a>,
    pub options: Vec<RawOption<'a>>,
    /// Options written but malformed (already reported), so that they are
    /// not also reported as missing.
    pub malformed: Vec<&'static str>,
}

#[derive(Debug)]
pub struct RawOption<'a> {
    pub def: &'static OptionDef,
    /// The option's name as written.
    pub keyword: &'a Word<'a>,
    /// Its argument words (for `ulimit`, resource and value pairs).
    pub args: Vec<&'a Word<'a>>,
}

#[derive(Debug)]
pub struct RawStatement<'a> {
    pub def: &'static StatementDef,
    pub keyword: &'a Word<'a>,
    pub value: &'a Word<'a>,
}

pub fn parse<'a>(words: &'a [Word<'a>]) -> (RawConfig<'a>, Vec<Diagnostic>) {
    let mut parser = Parser {
        words,
        pos: 0,
        raw: RawConfig::default(),
        errors: Vec::new(),
    };
    while let Some(word) = parser.next() {
        parser.top_level(word);
    }
    (parser.raw, parser.errors)
}

struct Parser<'a> {
    words: &'a [Word<'a>],
    pos: usize,
    raw: RawConfig<'a>,
    errors: Vec<Diagnostic>,
}

fn error(word: &Word, message: impl Into<String>) -> Diagnostic {
    Diagnostic::error(word.at, word.width, message)
}

fn is_brace(word: &Word) -> bool {
    word.is("{") || word.is("}")
}

impl<'a> Parser<'a> {
    fn next(&mut self) -> Option<&'a Word<'a>> {
        let word = self.words.get(self.pos)?;
        self.pos += 1;
        Some(word)
    }

    fn peek(&self) -> Option<&'a Word<'a>> {
        self.words.get(self.pos)
    }

    /// The next word if it is on `line`, consumed.
    fn next_on_line(&mut self, line: usize) -> Option<&'a Word<'a>> {
        if self.peek()?.at.line == line {
            self.next()
        } else {
            None
        }
    }

    /// The next word if it is on `line` and is not a brace, consumed.
    fn value_on_line(&mut self, line: usize) -> Option<&'a Word<'a>> {
        let word = self.peek().filter(|w| w.at.line == line && !is_brace(w))?;
        self.pos += 1;
        Some(word)
    }

    /// Skips what is left of `line`, stopping before a `}` so that a fault
    /// inside a job does not also lose the job's end.
    fn skip_line(&mut self, line: usize) {
        while self.peek().is_some_and(|w| w.at.line == line && !w.is("}")) {
            self.pos += 1;
        }
    }

    fn top_level(&mut self, word: &'a Word<'a>) {
        if word.is("job") {
            self.job(word);
        } else if word.is("include") {
            self.include(word);
        } else if let Some(def) = options::statement(&word.text).filter(|_| !word.quoted) {
            self.statement(def, word);
        } else if word.is("}") {
            self.errors
                .push(error(word, "unexpected `}`: no block is open here"));
        } else if word.is("{") {
            self.errors
                .push(error(word, "unexpected `{`: a block must follow `job`"));
            self.skip_line(word.at.line);
        } else if options::job_option(&word.text).is_some() && !word.quoted {
            self.errors.push(error(
                word,
                format!(
                    "`{}` is a job option: put it inside a `job {{ ... }}` block",
                    word.text
                ),
            ));
            self.skip_line(word.at.line);
        } else {
            let known = ["job", "include"]
                .into_iter()
                .chain(STATEMENTS.iter().map(|d| d.keywords[0]));
            let hint = match options::nearest(&word.text, known) {
                Some(near) => format!("; did you mean `{near}`?"),
                None => String::new(),
            };
            self.errors.push(error(
                word,
                format!("unknown statement `{}`{hint}", word.text),
            ));
            self.skip_line(word.at.line);
        }
    }

    /// `include PATTERN`, one pattern per line.
    fn include(&mut self, keyword: &'a Word<'a>) {
        let line = keyword.at.line;
        let Some(pattern) = self.value_on_line(line) else {
            self.errors
                .push(error(keyword, "`include` needs a value: include PATTERN"));
            self.skip_line(line);
            return;
        };
        self.raw.items.push(RawItem::Include(pattern));
        if let Some(extra) = self.next_on_line(line) {
            self.errors.push(error(
                extra,
                format!("unexpected `{}` after `include`: one pattern per line (quote a path that has spaces)", extra.text),
            ));
            self.skip_line(line);
        }
    }

    fn statement(&mut self, def: &'static StatementDef, keyword: &'a Word<'a>) {
        let line = keyword.at.line;
        let name = def.name();
        match self.next_on_line(line) {
            Some(second) if second.is(def.keywords[1]) => {}
            _ => {
                self.errors
                    .push(error(keyword, format!("write `{}`", def.usage)));
                self.skip_line(line);
                return;
            }
        }
        let Some(value) = self.value_on_line(line) else {
            self.errors.push(error(
                keyword,
                format!("`{name}` needs a value: {}", def.usage),
            ));
            self.skip_line(line);
            return;
        };
        self.raw.items.push(RawItem::Statement(RawStatement {
            def,
            keyword,
            value,
        }));
        if let Some(extra) = self.next_on_line(line) {
            self.errors.push(error(
                extra,
                format!("unexpected `{}` after `{name}`", extra.text),
            ));
            self.skip_line(line);
        }
    }

    fn job(&mut self, keyword: &'a Word<'a>) {
        match self.peek() {
            Some(brace) if brace.is("{") => self.pos += 1,
            _ => self.errors.push(error(keyword, "expected `{` after `job`")),
        }
        let mut job = RawJob {
            keyword,
            options: Vec::new(),
            malformed: Vec::new(),
        };
        // A `}` taken as the last argument of `cmd` is a likely cause of an
        // unclosed job: remember it to say so.
        let mut brace_in_cmd: Option<usize> = None;
        // The line and name of an option that takes a fixed number of
        // values, to explain a surplus word after it.
        let mut fixed_option: Option<(usize, &str)> = None;
        // The line of the last `cmd`: the original pmtr let its arguments
        // run on over the next lines, so a stray word there deserves a hint.
        let mut cmd_line: Option<usize> = None;
        loop {
            let Some(word) = self.next() else {
                let mut message = format!("this `job {{` has no closing `}}`{}", job_label(&job));
                if let Some(line) = brace_in_cmd {
                    message.push_str(&format!(
                        " (the `}}` on line {line} is an argument of `cmd`: put it on a line of its own)"
                    ));
                }
                self.errors.push(error(keyword, message));
                break;
            };
            if word.is("}") {
                break;
            }
            if word.is("job") {
                self.errors.push(error(
                    word,
                    format!(
                        "missing `}}`: the job opened on line {}{} is not closed before this `job`",
                        keyword.at.line,
                        job_label(&job)
                    ),
                ));
                self.pos -= 1;
                break;
            }
            let def = options::job_option(&word.text).filter(|_| !word.quoted);
            match def {
                Some(def) => {
                    let option = self.option(def, word);
                    if def.syntax == Syntax::RestOfLine {
                        cmd_line = Some(word.at.line);
                        brace_in_cmd = option
                            .as_ref()
                            .and_then(|o| o.args.last())
                            .filter(|w| w.is("}"))
                            .map(|w| w.at.line)
                            .or(brace_in_cmd);
                    }
                    fixed_option = matches!(
                        def.syntax,
                        Syntax::Flag | Syntax::Value | Syntax::Then(_) | Syntax::UpTo(_)
                    )
                    .then_some((word.at.line, def.name));
                    match option {
                        Some(option) => job.options.push(option),
                        None => job.malformed.push(def.name),
                    }
                }
                None => {
                    let message = match fixed_option {
                        Some((line, name)) if line == word.at.line && !word.is("{") => {
                            format!(
                                "unexpected `{}` after `{name}`: it takes {} (quote a value that has spaces)",
                                word.text,
                                if name_takes_value(name) { "one value" } else { "no value" }
                            )
                        }
                        _ => {
                            let mut message = unknown_option(word);
                            if cmd_line.is_some_and(|line| line + 1 == word.at.line) {
                                message.push_str(" (arguments of `cmd` must be on the `cmd` line)");
                            }
                            message
                        }
                    };
                    self.errors.push(error(word, message));
                    self.skip_line(word.at.line);
                }
            }
        }
        self.raw.items.push(RawItem::Job(job));
    }

    /// Reads the arguments of one option; `None` when they are malformed
    /// (the fault is reported).
    fn option(&mut self, def: &'static OptionDef, keyword: &'a Word<'a>) -> Option<RawOption<'a>> {
        let line = keyword.at.line;
        let args = match def.syntax {
            Syntax::Flag => Vec::new(),
            Syntax::Value => match self.value_on_line(line) {
                Some(value) => vec![value],
                None => return self.needs_value(def, keyword, format!("`{}`", def.name)),
            },
            Syntax::UpTo(most) => {
                let mut args = Vec::new();
                while args.len() < most {
                    match self.value_on_line(line) {
                        Some(word) => args.push(word),
                        None => break,
                    }
                }
                if args.is_empty() {
                    return self.needs_value(def, keyword, format!("`{}`", def.name));
                }
                args
            }
            Syntax::RestOfLine => {
                let mut args = Vec::new();
                while let Some(word) = self.next_on_line(line) {
                    args.push(word);
                }
                if args.is_empty() {
                    return self.needs_value(def, keyword, format!("`{}`", def.name));
                }
                args
            }
            Syntax::Then(words) => self.then(def, keyword, words)?,
            Syntax::Pairs => self.pairs(def, keyword)?,
            Syntax::Block => self.option_block(def, keyword)?,
        };
        Some(RawOption { def, keyword, args })
    }

    /// Reports that `what` lacks its value; the option is dropped.
    fn needs_value<T>(&mut self, def: &OptionDef, keyword: &Word<'_>, what: String) -> Option<T> {
        let message = format!("{what} needs a value: {}", def.usage);
        self.errors.push(error(keyword, message));
        None
    }

    /// `bounce every INTERVAL`, `give up after N`: the fixed `words`, then
    /// the value.
    fn then(
        &mut self,
        def: &OptionDef,
        keyword: &'a Word<'a>,
        words: &[&str],
    ) -> Option<Vec<&'a Word<'a>>> {
        let line = keyword.at.line;
        for expected in words {
            match self.next_on_line(line) {
                Some(word) if word.is(expected) => {}
                _ => {
                    self.errors
                        .push(error(keyword, format!("write `{}`", def.usage)));
                    self.skip_line(line);
                    return None;
                }
            }
        }
        match self.value_on_line(line) {
            Some(value) => Some(vec![value]),
            None => {
                let what = format!("`{} {}`", def.name, words.join(" "));
                self.needs_value(def, keyword, what)
            }
        }
    }

    /// `ulimit RESOURCE VALUE` or `ulimit { RESOURCE VALUE ... }`: the pairs.
    fn pairs(&mut self, def: &OptionDef, keyword: &'a Word<'a>) -> Option<Vec<&'a Word<'a>>> {
        let line = keyword.at.line;
        let Some(first) = self.next_on_line(line).filter(|w| !w.is("}")) else {
            return self.needs_value(def, keyword, format!("`{}`", def.name));
        };
        if !first.is("{") {
            let Some(value) = self.value_on_line(line) else {
                let what = format!("`{} {}`", def.name, first.text);
                return self.needs_value(def, keyword, what);
            };
            return Some(vec![first, value]);
        }
        let args = self.block(first)?;
        if args.len() % 2 == 1 {
            let last = args[args.len() - 1];
            self.errors.push(error(
                last,
                format!(
                    "`{}` has no value: a `{}` block holds RESOURCE VALUE pairs",
                    last.text, def.name
                ),
            ));
            return None;
        }
        Some(args)
    }

    /// An option whose words are a `{ ... }` block (`depends`).
    fn option_block(
        &mut self,
        def: &OptionDef,
        keyword: &'a Word<'a>,
    ) -> Option<Vec<&'a Word<'a>>> {
        let Some(open) = self.peek().filter(|w| w.is("{")) else {
            self.errors.push(error(
                keyword,
                format!("`{}` must be followed by `{{`: {}", def.name, def.usage),
            ));
            self.skip_line(keyword.at.line);
            return None;
        };
        self.pos += 1;
        self.block(open)
    }

    /// The words of a `{ ... }` block up to its `}`, over any number of lines.
    fn block(&mut self, open: &'a Word<'a>) -> Option<Vec<&'a Word<'a>>> {
        let mut words = Vec::new();
        loop {
            match self.next() {
                None => {
                    self.errors.push(error(open, "this `{` has no closing `}`"));
                    return None;
                }
                Some(word) if word.is("}") => return Some(words),
                Some(word) if word.is("{") => {
                    self.errors
                        .push(error(word, "unexpected `{` inside a block"));
                }
                Some(word) => words.push(word),
            }
        }
    }
}

fn name_takes_value(option: &str) -> bool {
    JOB_OPTIONS
        .iter()
        .any(|def| def.name == option && def.syntax != Syntax::Flag)
}

fn unknown_option(word: &Word) -> String {
    if word.is("{") {
        return "unexpected `{`".into();
    }
    let hint = match options::nearest(&word.text, JOB_OPTIONS.iter().map(|d| d.name)) {
        Some(near) => format!("; did you mean `{near}`?"),
        None => String::new(),
    };
    if STATEMENTS.iter().any(|d| d.keywords[0] == word.text) {
        return format!(
            "`{}` is a global statement: put it outside any `job {{ }}` block",
            word.text
        );
    }
    format!("unknown option `{}`{hint}", word.text)
}

fn job_label(job: &RawJob<'_>) -> String {
    job.options
        .iter()
        .find(|o| o.def.name == "name")
        .and_then(|o| o.args.first())
        .map_or(String::new(), |name| format!(" (job `{}`)", name.text))
}

/// Where a job begins, for diagnostics about the job as a whole.
pub fn job_location(job: &RawJob<'_>) -> (Location, usize) {
    (job.keyword.at, job.keyword.width)
}
