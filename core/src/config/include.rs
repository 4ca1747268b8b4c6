//! Reading a configuration that spans files: `include PATTERN` expanded
//! in place (SPEC 11.10), every file lexed and parsed with its own number
//! so that each diagnostic names the file it is about. The file system is
//! behind [`Files`]: the shell gives the real one, tests a map.

use std::collections::BTreeSet;

use glob::{MatchOptions, Pattern};

use super::diagnostic::{Diagnostic, Source};
use super::lex::{self, Word};
use super::model::Config;
use super::parse::{self, RawItem};
use super::validate::Builder;

/// Most files deep an include may nest: the main file includes at depth 1.
pub const MAX_INCLUDE_DEPTH: usize = 8;

/// What reading a configuration needs from the file system.
pub trait Files {
    /// The bytes of the file at `path`, or why it cannot be read.
    fn read(&self, path: &str) -> Result<Vec<u8>, String>;
    /// The names of the entries of directory `dir`; empty if it does not
    /// exist (a pattern may match nothing).
    fn list(&self, dir: &str) -> Result<Vec<String>, String>;
}

/// A configuration as read: the files it spans and what they mean.
#[derive(Debug)]
pub struct Loaded {
    /// Every file read, the main one first: `Location::file` indexes it.
    pub sources: Vec<Source>,
    /// What to watch for a reload: the directory of each `include`
    /// pattern with the pattern of names in it.
    pub patterns: Vec<IncludePattern>,
    pub result: Result<Config, Vec<Diagnostic>>,
}

/// The names an `include` takes from one directory.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct IncludePattern {
    pub dir: String,
    /// A glob of file names, or a plain name.
    pub names: String,
}

impl IncludePattern {
    /// True when a file named `name` in `dir` is one the include takes.
    pub fn matches(&self, name: &str) -> bool {
        Pattern::new(&self.names).is_ok_and(|p| p.matches_with(name, MATCH))
    }
}

/// `*` does not take a leading dot: editors' swap and backup files
/// (`.web.conf.swp`) are not included.
const MATCH: MatchOptions = MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: true,
};

/// Reads the configuration whose main file `main_path` holds `main_text`,
/// with every file it includes.
pub fn load(main_path: &str, main_text: Vec<u8>, files: &dyn Files) -> Loaded {
    let mut loader = Loader {
        files,
        sources: Vec::new(),
        patterns: BTreeSet::new(),
        builder: Builder::default(),
        errors: Vec::new(),
        stack: Vec::new(),
    };
    loader.file(main_path.to_string(), main_text);
    let Loader {
        sources,
        patterns,
        builder,
        mut errors,
        ..
    } = loader;
    let config = builder.finish(&mut errors);
    let result = if errors.is_empty() {
        Ok(config)
    } else {
        errors.sort_by_key(|e| (e.at.file, e.at.offset));
        Err(errors)
    };
    Loaded {
        sources,
        patterns: patterns.into_iter().collect(),
        result,
    }
}

struct Loader<'f> {
    files: &'f dyn Files,
    sources: Vec<Source>,
    patterns: BTreeSet<IncludePattern>,
    builder: Builder,
    errors: Vec<Diagnostic>,
    /// The files being read, outermost first: an include of one is a loop.
    stack: Vec<String>,
}

impl Loader<'_> {
    fn file(&mut self, path: String, text: Vec<u8>) {
        let number = self.sources.len() as u32;
        self.builder.file(&path);
        self.sources.push(Source::new(path.clone(), Vec::new()));
        self.stack.push(path);
        {
            let (words, lex_errors) = lex::lex(&text, number);
            self.errors.extend(lex_errors);
            let (raw, parse_errors) = parse::parse(&words);
            self.errors.extend(parse_errors);
            for item in &raw.items {
                match item {
                    RawItem::Job(job) => self.builder.job(job, &mut self.errors),
                    RawItem::Statement(s) => self.builder.statement(s, &mut self.errors),
                    RawItem::Include(pattern) => self.include(pattern),
                }
            }
        }
        self.stack.pop();
        self.sources[number as usize].text = text;
    }

    /// Reads the files `pattern` names, in sorted order, each in place.
    fn include(&mut self, word: &Word<'_>) {
        let fail = |message: String| Diagnostic::error(word.at, word.width, message);
        let including = self.stack.last().map_or("", String::as_str);
        let full = absolute(including, &word.text);
        let (dir, names) = match full.rsplit_once('/') {
            Some((dir, names)) if !names.is_empty() => {
                (if dir.is_empty() { "/" } else { dir }, names)
            }
            _ => {
                self.errors
                    .push(fail(format!("include: `{}` names no file", word.text)));
                return;
            }
        };
        if dir.contains(['*', '?', '[']) {
            let message = format!(
                "include: `{}`: a pattern may use wildcards in the file name only",
                word.text
            );
            self.errors.push(fail(message));
            return;
        }
        let compiled = match Pattern::new(names) {
            Ok(compiled) => compiled,
            Err(error) => {
                let message = format!(
                    "include: `{}` is not a valid pattern: {}",
                    word.text, error.msg
                );
                self.errors.push(fail(message));
                return;
            }
        };
        self.patterns.insert(IncludePattern {
            dir: dir.to_string(),
            names: names.to_string(),
        });
        let paths = if names.contains(['*', '?', '[']) {
            match self.files.list(dir) {
                Ok(mut entries) => {
                    entries.retain(|name| compiled.matches_with(name, MATCH));
                    entries.sort();
                    entries.into_iter().map(|name| join(dir, &name)).collect()
                }
                Err(reason) => {
                    self.errors
                        .push(fail(format!("include: cannot list {dir}: {reason}")));
                    return;
                }
            }
        } else {
            // A plain name must exist: a typo is not "nothing matched".
            vec![full.clone()]
        };
        for path in paths {
            if let Some(from) = self.stack.iter().position(|p| *p == path) {
                let mut cycle: Vec<&str> = self.stack[from..].iter().map(String::as_str).collect();
                cycle.push(&path);
                self.errors
                    .push(fail(format!("include loop: {}", cycle.join(" → "))));
                continue;
            }
            if self.stack.len() > MAX_INCLUDE_DEPTH {
                let message = format!(
                    "include: {path} would be nested {} files deep (at most {MAX_INCLUDE_DEPTH})",
                    self.stack.len()
                );
                self.errors.push(fail(message));
                continue;
            }
            match self.files.read(&path) {
                Ok(text) => self.file(path, text),
                Err(reason) => self
                    .errors
                    .push(fail(format!("include: cannot read {path}: {reason}"))),
            }
        }
    }
}

/// `pattern` made absolute: a relative one is under the directory of the
/// file that includes it.
fn absolute(including: &str, pattern: &str) -> String {
    if pattern.starts_with('/') {
        return pattern.to_string();
    }
    match including.rsplit_once('/') {
        Some((dir, _)) => join(if dir.is_empty() { "/" } else { dir }, pattern),
        None => pattern.to_string(),
    }
}

fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// A file system of nothing but the given main text: for `parse`.
pub(super) struct NoFiles;

impl Files for NoFiles {
    fn read(&self, _: &str) -> Result<Vec<u8>, String> {
        Err("no files here".into())
    }
    fn list(&self, _: &str) -> Result<Vec<String>, String> {
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::render_all;
    use std::collections::BTreeMap;

    /// A file system in a map: path -> text; directories are implied.
    struct FakeFiles(BTreeMap<String, String>);

    impl Files for FakeFiles {
        fn read(&self, path: &str) -> Result<Vec<u8>, String> {
            match self.0.get(path) {
                Some(text) if text == "<unreadable>" => Err("Permission denied".into()),
                Some(text) => Ok(text.as_bytes().to_vec()),
                None => Err("No such file or directory".into()),
            }
        }
        fn list(&self, dir: &str) -> Result<Vec<String>, String> {
            let prefix = format!("{dir}/");
            let names = self.0.keys().filter_map(|p| p.strip_prefix(&prefix));
            Ok(names
                .filter(|n| !n.contains('/'))
                .map(str::to_string)
                .collect())
        }
    }

    fn fake(files: &[(&str, &str)]) -> FakeFiles {
        FakeFiles(
            files
                .iter()
                .map(|(p, t)| (p.to_string(), t.to_string()))
                .collect(),
        )
    }

    fn job(name: &str) -> String {
        format!("job {{\n  name {name}\n  cmd /bin/sleep 1\n}}\n")
    }

    fn load_main(files: &FakeFiles) -> Loaded {
        let main = files.read("/etc/pmtr.conf").unwrap();
        load("/etc/pmtr.conf", main, files)
    }

    fn names(loaded: &Loaded) -> Vec<String> {
        let config = loaded.result.as_ref().unwrap();
        config.jobs.iter().map(|j| j.name.clone()).collect()
    }

    /// Each error as `FILE:LINE:COL: MESSAGE`, from the rendered text.
    fn rendered(loaded: &Loaded) -> Vec<String> {
        let errors = loaded.result.as_ref().unwrap_err();
        render_all(errors, &loaded.sources, 100)
            .lines()
            .filter(|l| l.contains(": error: "))
            .map(|l| l.replace(": error: ", ": "))
            .collect()
    }

    #[test]
    fn included_files_stand_where_the_include_is_in_sorted_order() {
        let a = job("a");
        let z = job("z");
        let b = job("b");
        let c = job("c");
        let main = format!("{a}include /etc/pmtr.d/*.conf\n{z}");
        let files = fake(&[
            ("/etc/pmtr.conf", &main),
            ("/etc/pmtr.d/20-c.conf", &c),
            ("/etc/pmtr.d/10-b.conf", &b),
            ("/etc/pmtr.d/.10-b.conf.swp", "junk"),
            ("/etc/pmtr.d/notes.txt", "junk"),
        ]);
        let loaded = load_main(&files);
        assert_eq!(names(&loaded), ["a", "b", "c", "z"]);
        let paths: Vec<&str> = loaded.sources.iter().map(|s| s.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/etc/pmtr.conf",
                "/etc/pmtr.d/10-b.conf",
                "/etc/pmtr.d/20-c.conf"
            ]
        );
        assert_eq!(
            loaded.patterns,
            [IncludePattern {
                dir: "/etc/pmtr.d".into(),
                names: "*.conf".into()
            }]
        );
        let config = loaded.result.unwrap();
        assert_eq!(config.origins[1].at.file, 1);
        assert_eq!(config.origins[3].at.file, 0);
    }

    #[test]
    fn global_statements_may_come_from_an_included_file() {
        let files = fake(&[
            ("/etc/pmtr.conf", "include pmtr.d/report.conf\n"),
            ("/etc/pmtr.d/report.conf", "report to udp://127.0.0.1:9\n"),
        ]);
        let config = load_main(&files).result.unwrap();
        assert_eq!(config.globals.report_to.len(), 1);
    }

    #[test]
    fn a_pattern_that_matches_nothing_is_fine_a_missing_plain_file_is_not() {
        let files = fake(&[("/etc/pmtr.conf", "include /etc/pmtr.d/*.conf\n")]);
        assert!(names(&load_main(&files)).is_empty());
        let files = fake(&[("/etc/pmtr.conf", "include /etc/pmtr.d/web.conf\n")]);
        assert_eq!(
            rendered(&load_main(&files)),
            ["/etc/pmtr.conf:1:9: include: cannot read /etc/pmtr.d/web.conf: No such file or directory"]
        );
    }

    #[test]
    fn errors_name_the_included_file_line_and_column() {
        let files = fake(&[
            ("/etc/pmtr.conf", "include /etc/pmtr.d/*.conf\n"),
            (
                "/etc/pmtr.d/web.conf",
                "job {\n  name web\n\n    onse\n  cmd /bin/true\n}\n",
            ),
        ]);
        assert_eq!(
            rendered(&load_main(&files)),
            ["/etc/pmtr.d/web.conf:4:5: unknown option `onse`; did you mean `once`?"]
        );
    }

    #[test]
    fn a_job_defined_in_two_files_names_both_places() {
        let files = fake(&[
            ("/etc/pmtr.conf", "include /etc/pmtr.d/*.conf\n"),
            ("/etc/pmtr.d/a.conf", &job("web")),
            ("/etc/pmtr.d/b.conf", &format!("\n{}", job("web"))),
        ]);
        assert_eq!(
            rendered(&load_main(&files)),
            ["/etc/pmtr.d/b.conf:3:8: duplicate job name `web` (first defined at /etc/pmtr.d/a.conf:1)"]
        );
    }

    #[test]
    fn a_statement_given_in_two_files_names_both_places() {
        let files = fake(&[
            (
                "/etc/pmtr.conf",
                "metrics to /run/a.prom\ninclude /etc/x.conf\n",
            ),
            ("/etc/x.conf", "metrics to /run/b.prom\n"),
        ]);
        assert_eq!(
            rendered(&load_main(&files)),
            ["/etc/x.conf:1:1: `metrics to` is given twice (first at /etc/pmtr.conf:1)"]
        );
    }

    #[test]
    fn a_loop_is_an_error_with_its_path() {
        let files = fake(&[
            ("/etc/pmtr.conf", "include /etc/a.conf\n"),
            ("/etc/a.conf", "include b.conf\n"),
            ("/etc/b.conf", "include /etc/a.conf\n"),
        ]);
        assert_eq!(
            rendered(&load_main(&files)),
            ["/etc/b.conf:1:9: include loop: /etc/a.conf → /etc/b.conf → /etc/a.conf"]
        );
        let itself = fake(&[("/etc/pmtr.conf", "include /etc/*.conf\n")]);
        assert!(rendered(&load_main(&itself))[0]
            .contains("include loop: /etc/pmtr.conf → /etc/pmtr.conf"));
    }

    #[test]
    fn nesting_deeper_than_eight_is_an_error() {
        let mut files = vec![(
            "/etc/pmtr.conf".to_string(),
            "include /etc/1.conf\n".to_string(),
        )];
        for depth in 1..=9 {
            files.push((
                format!("/etc/{depth}.conf"),
                format!("include /etc/{}.conf\n", depth + 1),
            ));
        }
        files.push(("/etc/10.conf".into(), job("deep")));
        let fs = FakeFiles(files.into_iter().collect());
        assert_eq!(
            rendered(&load_main(&fs)),
            ["/etc/8.conf:1:9: include: /etc/9.conf would be nested 9 files deep (at most 8)"]
        );
        // Eight deep is fine.
        let mut files = vec![(
            "/etc/pmtr.conf".to_string(),
            "include /etc/1.conf\n".to_string(),
        )];
        for depth in 1..8 {
            files.push((
                format!("/etc/{depth}.conf"),
                format!("include /etc/{}.conf\n", depth + 1),
            ));
        }
        files.push(("/etc/8.conf".into(), job("deep")));
        assert_eq!(
            names(&load_main(&FakeFiles(files.into_iter().collect()))),
            ["deep"]
        );
    }

    #[test]
    fn bad_patterns_and_unreadable_files_are_located_errors() {
        let files = fake(&[
            ("/etc/pmtr.conf", "include /etc/[.conf\ninclude /etc/*/x.conf\ninclude /etc/d/*.conf\ninclude /etc/\ninclude\n"),
            ("/etc/d/secret.conf", "<unreadable>"),
        ]);
        assert_eq!(
            rendered(&load_main(&files)),
            [
                "/etc/pmtr.conf:1:9: include: `/etc/[.conf` is not a valid pattern: invalid range pattern",
                "/etc/pmtr.conf:2:9: include: `/etc/*/x.conf`: a pattern may use wildcards in the file name only",
                "/etc/pmtr.conf:3:9: include: cannot read /etc/d/secret.conf: Permission denied",
                "/etc/pmtr.conf:4:9: include: `/etc/` names no file",
                "/etc/pmtr.conf:5:1: `include` needs a value: include PATTERN",
            ]
        );
    }

    #[test]
    fn a_bad_included_file_does_not_hide_errors_of_the_others() {
        let files = fake(&[
            ("/etc/pmtr.conf", "include /etc/pmtr.d/*.conf\nbogus\n"),
            ("/etc/pmtr.d/a.conf", "job {\n"),
            ("/etc/pmtr.d/b.conf", "\0binary"),
        ]);
        let errors = rendered(&load_main(&files));
        assert_eq!(errors.len(), 5, "{errors:?}");
        assert!(errors[0].starts_with("/etc/pmtr.conf:2:1: unknown statement `bogus`"));
        assert!(errors[1].starts_with("/etc/pmtr.d/a.conf:1:1: this `job {` has no closing"));
        assert!(errors[4].starts_with("/etc/pmtr.d/b.conf:1:1: the file holds a NUL byte"));
    }

    #[test]
    fn after_may_name_a_job_of_another_file() {
        let files = fake(&[
            (
                "/etc/pmtr.conf",
                "include /etc/pmtr.d/*.conf\njob {\n name app\n cmd /bin/true\n after db\n}\n",
            ),
            ("/etc/pmtr.d/db.conf", &job("db")),
        ]);
        assert_eq!(names(&load_main(&files)), ["db", "app"]);
    }
}
