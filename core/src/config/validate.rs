//! Checks a raw configuration and builds the `Config` it means: every value
//! through its option's definition, then the rules that span options and
//! jobs (required options, options given twice, duplicate job names).

use std::collections::{HashMap, HashSet};

use super::diagnostic::{Diagnostic, Location};
use super::lex::Word;
use super::model::{Config, Job, Origin, Output};
use super::options::MAX_NAME_LEN;
use super::parse::{job_location, RawJob, RawStatement};

/// Builds a `Config` from the raw items of one or more files, fed in the
/// order they stand (an included file's items where its `include` is).
#[derive(Default)]
pub struct Builder {
    config: Config,
    /// Path of each file fed so far, for messages naming another file.
    paths: Vec<String>,
    /// Non-repeatable statement -> where it was first given.
    statements: HashMap<String, Location>,
    /// Job name -> where it was first defined.
    names: HashMap<String, Location>,
    /// Every `after` name as written: job index (the first copy's for a
    /// job with instances), name, where.
    after_words: Vec<(usize, String, Location, usize)>,
    /// Jobs with `instances`: name -> number of copies.
    groups: HashMap<String, u32>,
}

impl Builder {
    /// The items that follow come from the file at `path`, whose
    /// locations carry the next file number.
    pub fn file(&mut self, path: &str) {
        self.paths.push(path.to_string());
    }

    /// "line 3" in the same file as `here`, "/etc/pmtr.d/a.conf:3" in another.
    fn place(&self, first: Location, here: Location) -> String {
        if first.file == here.file {
            format!("on line {}", first.line)
        } else {
            let path = self
                .paths
                .get(first.file as usize)
                .map_or("?", String::as_str);
            format!("at {path}:{}", first.line)
        }
    }

    pub fn statement(&mut self, statement: &RawStatement<'_>, errors: &mut Vec<Diagnostic>) {
        let name = statement.def.name();
        let at = statement.keyword.at;
        if !statement.def.repeatable {
            if let Some(first) = self.statements.get(&name) {
                let place = self.place(*first, at);
                let message = format!("`{name}` is given twice (first {place})");
                errors.push(Diagnostic::error(at, statement.keyword.width, message));
                return;
            }
            self.statements.insert(name, at);
        }
        self.config.globals_origin.options.push((
            statement.def.keywords[0],
            statement.value.at,
            statement.value.width,
        ));
        if let Err(error) = (statement.def.apply)(&mut self.config.globals, statement.value) {
            errors.push(error);
        }
    }

    /// Adds a job; one with `instances N` becomes its N copies.
    pub fn job(&mut self, raw_job: &RawJob<'_>, errors: &mut Vec<Diagnostic>) {
        let (job, origin) = validate_job(raw_job, errors);
        if job.name.is_empty() {
            return;
        }
        let copies = job.instances;
        let copy_names = (1..=copies).map(|i| format!("{}.{i}", job.name));
        let names: Vec<String> = std::iter::once(job.name.clone())
            .chain(copy_names)
            .collect();
        let (name_at, name_width) = origin.value_of("name").unwrap_or(job_location(raw_job));
        if let Some(longest) = names.last().filter(|n| n.len() > MAX_NAME_LEN) {
            let message = format!(
                "instances: the name of copy `{longest}` is longer than {MAX_NAME_LEN} bytes"
            );
            errors.push(Diagnostic::error(name_at, name_width, message));
            return;
        }
        for name in &names {
            if let Some(first) = self.names.get(name) {
                let place = self.place(*first, name_at);
                let message = format!("duplicate job name `{name}` (first defined {place})");
                errors.push(Diagnostic::error(name_at, name_width, message));
                return;
            }
        }
        for name in names {
            self.names.insert(name, raw_job.keyword.at);
        }
        let index = self.config.jobs.len();
        let after = raw_job.options.iter().filter(|o| o.def.name == "after");
        for word in after.flat_map(|o| o.args.iter().copied()) {
            let Word {
                text, at, width, ..
            } = word;
            self.after_words
                .push((index, text.to_string(), *at, *width));
        }
        if copies == 0 {
            self.config.jobs.push(job);
            self.config.origins.push(origin);
            return;
        }
        self.groups.insert(job.name.clone(), copies);
        for i in 1..=copies {
            self.config.jobs.push(job.instance_copy(i));
            self.config.origins.push(origin.clone());
        }
    }

    /// The configuration, once the rules that span jobs are checked.
    pub fn finish(mut self, errors: &mut Vec<Diagnostic>) -> Config {
        let mut after_errors = Vec::new();
        check_after_names(
            &self.config,
            &self.groups,
            &self.after_words,
            &mut after_errors,
        );
        if after_errors.is_empty() {
            // `after web` of a job with instances: after every copy.
            for job in &mut self.config.jobs {
                if job
                    .extras
                    .after
                    .iter()
                    .any(|name| self.groups.contains_key(name))
                {
                    job.extras.after = expand_groups(&job.extras.after, &self.groups);
                }
            }
            check_after_cycles(&self.config, &self.after_words, &mut after_errors);
        }
        errors.extend(after_errors);
        self.config
    }
}

/// The names `after` lists, a job with instances replaced by its copies.
fn expand_groups(names: &[String], groups: &HashMap<String, u32>) -> Vec<String> {
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        match groups.get(name) {
            Some(&copies) => out.extend((1..=copies).map(|i| format!("{name}.{i}"))),
            None => out.push(name.clone()),
        }
    }
    out
}

/// `after` names jobs of the file (or a job with instances), not the job
/// itself: each error at the name as written.
fn check_after_names(
    config: &Config,
    groups: &HashMap<String, u32>,
    after_words: &[(usize, String, Location, usize)],
    errors: &mut Vec<Diagnostic>,
) {
    let names: HashSet<&str> = config.jobs.iter().map(|j| j.name.as_str()).collect();
    for (job, name, at, width) in after_words {
        let job = &config.jobs[*job];
        let own = job.extras.instance.as_ref().map_or(&job.name, |i| &i.group);
        let message = if name == own {
            format!("after: job `{own}` cannot come after itself")
        } else if !names.contains(name.as_str()) && !groups.contains_key(name) {
            format!("after: there is no job named `{name}`")
        } else {
            continue;
        };
        errors.push(Diagnostic::error(*at, *width, message));
    }
}

/// No cycle of `after`: the error at the name that closes it.
fn check_after_cycles(
    config: &Config,
    after_words: &[(usize, String, Location, usize)],
    errors: &mut Vec<Diagnostic>,
) {
    let index: HashMap<&str, usize> = config
        .jobs
        .iter()
        .enumerate()
        .map(|(i, j)| (j.name.as_str(), i))
        .collect();
    // The words of a job's `after`: copies share those of the first.
    let words_of = |job: usize| {
        let first = config.jobs[job]
            .extras
            .instance
            .as_ref()
            .map_or(job, |i| (job + 1).saturating_sub(i.index as usize));
        after_words.iter().filter(move |w| w.0 == first)
    };
    // Depth-first: a job met again while on the path closes a cycle.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let mut marks = vec![Mark::New; config.jobs.len()];
    for start in 0..config.jobs.len() {
        if marks[start] != Mark::New {
            continue;
        }
        let mut path: Vec<(usize, usize)> = vec![(start, 0)];
        marks[start] = Mark::OnPath;
        while let Some(&mut (node, ref mut next)) = path.last_mut() {
            let after = &config.jobs[node].extras.after;
            if *next == after.len() {
                marks[node] = Mark::Done;
                path.pop();
                continue;
            }
            let Some(&target) = index.get(after[*next].as_str()) else {
                *next += 1;
                continue;
            };
            *next += 1;
            match marks[target] {
                Mark::New => {
                    marks[target] = Mark::OnPath;
                    path.push((target, 0));
                }
                Mark::OnPath => {
                    let from = path.iter().position(|&(n, _)| n == target).unwrap_or(0);
                    let mut cycle: Vec<&str> = path[from..]
                        .iter()
                        .map(|&(n, _)| config.jobs[n].name.as_str())
                        .collect();
                    cycle.push(&config.jobs[target].name);
                    let Some(named) = index.get(cycle[1]).map(|&i| &config.jobs[i]) else {
                        return;
                    };
                    let group = named.extras.instance.as_ref().map(|i| i.group.as_str());
                    let written = |w: &&(usize, String, Location, usize)| {
                        w.1 == named.name || Some(w.1.as_str()) == group
                    };
                    if let Some((_, _, at, width)) = words_of(target).find(written) {
                        let message = format!("after: a cycle: {}", cycle.join(" → "));
                        errors.push(Diagnostic::error(*at, *width, message));
                    }
                    return;
                }
                Mark::Done => {}
            }
        }
    }
}

fn validate_job(raw: &RawJob<'_>, errors: &mut Vec<Diagnostic>) -> (Job, Origin) {
    let mut job = Job::default();
    let mut origin = Origin {
        at: raw.keyword.at,
        options: Vec::with_capacity(raw.options.len()),
    };
    // Option name -> line where it was first given.
    let mut given: HashMap<&str, usize> = HashMap::new();
    for option in &raw.options {
        let name = option.def.name;
        if !option.def.repeatable {
            if let Some(line) = given.get(name) {
                errors.push(Diagnostic::error(
                    option.keyword.at,
                    option.keyword.width,
                    format!("`{name}` is given twice in this job (first on line {line})"),
                ));
                continue;
            }
        }
        given.entry(name).or_insert(option.keyword.at.line);
        let value_at = option.args.first().unwrap_or(&option.keyword);
        origin.options.push((name, value_at.at, value_at.width));
        for arg in option.args.iter().skip(1).filter(|_| name == "depends") {
            origin.options.push((name, arg.at, arg.width));
        }
        let env_file = name == "env" && option.args.first().is_some_and(|w| w.is("file"));
        if let (true, Some(path)) = (env_file, option.args.get(1)) {
            origin.options.push(("env file", path.at, path.width));
        }
        (option.def.apply)(&mut job, &option.args, errors);
    }
    for name in &raw.malformed {
        given.entry(name).or_insert(0);
    }
    let (at, width) = job_location(raw);
    if !given.contains_key("name") {
        errors.push(Diagnostic::error(at, width, "this job has no `name`"));
    }
    if !given.contains_key("cmd") {
        let label = if job.name.is_empty() {
            "this job".to_string()
        } else {
            format!("job `{}`", job.name)
        };
        errors.push(Diagnostic::error(
            at,
            width,
            format!("{label} has no `cmd`"),
        ));
    }
    check_log(&job, &origin, errors);
    (job, origin)
}

/// `log rotate`/`log timestamps` act on the job's output files: without
/// one (`out stdout`, `syslog`), there is nothing to act on.
fn check_log(job: &Job, origin: &Origin, errors: &mut Vec<Diagnostic>) {
    let is_file = |output: &Output| matches!(output, Output::File(_));
    if !job.extras.log.written_by_pmtr() || is_file(&job.stdout) || is_file(&job.stderr) {
        return;
    }
    let Some((at, width)) = origin.value_of("log") else {
        return;
    };
    let name = |output: &Output| match output {
        Output::Stdout => "stdout",
        Output::Stderr => "stderr",
        Output::Syslog | Output::File(_) => "syslog",
    };
    let message = format!(
        "`log` acts on output files, and this job has none (`out {}`, `err {}`): give `out FILE` or `err FILE`, or drop `log`",
        name(&job.stdout),
        name(&job.stderr)
    );
    errors.push(Diagnostic::error(at, width, message));
}
