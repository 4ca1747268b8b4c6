//! Checks a raw configuration and builds the `Config` it means: every value
//! through its option's definition, then the rules that span options and
//! jobs (required options, options given twice, duplicate job names).

use std::collections::HashMap;

use super::diagnostic::Diagnostic;
use super::model::{Config, Job, Origin, Output};
use super::parse::{job_location, RawConfig, RawJob};

pub fn validate(raw: &RawConfig<'_>, errors: &mut Vec<Diagnostic>) -> Config {
    let mut config = Config::default();
    let mut seen_statements: HashMap<String, usize> = HashMap::new();
    for statement in &raw.statements {
        let name = statement.def.name();
        if !statement.def.repeatable {
            if let Some(line) = seen_statements.get(&name) {
                errors.push(Diagnostic::error(
                    statement.keyword.at,
                    statement.keyword.width,
                    format!("`{name}` is given twice (first on line {line})"),
                ));
                continue;
            }
            seen_statements.insert(name, statement.keyword.at.line);
        }
        config.globals_origin.options.push((
            statement.def.keywords[0],
            statement.value.at,
            statement.value.width,
        ));
        if let Err(error) = (statement.def.apply)(&mut config.globals, statement.value) {
            errors.push(error);
        }
    }

    // Job name -> line of its first definition.
    let mut names: HashMap<String, usize> = HashMap::with_capacity(raw.jobs.len());
    for raw_job in &raw.jobs {
        let (job, origin) = validate_job(raw_job, errors);
        if job.name.is_empty() {
            continue;
        }
        if let Some(first) = names.get(&job.name) {
            let (at, width) = origin.value_of("name").unwrap_or(job_location(raw_job));
            errors.push(Diagnostic::error(
                at,
                width,
                format!(
                    "duplicate job name `{}` (first defined on line {first})",
                    job.name
                ),
            ));
            continue;
        }
        names.insert(job.name.clone(), raw_job.keyword.at.line);
        config.jobs.push(job);
        config.origins.push(origin);
    }
    check_after(raw, &config, errors);
    config
}

/// `after` names jobs of the file, not the job itself, and no cycle: each
/// error at the name as written.
fn check_after(raw: &RawConfig<'_>, config: &Config, errors: &mut Vec<Diagnostic>) {
    let index: HashMap<&str, usize> = config
        .jobs
        .iter()
        .enumerate()
        .map(|(i, j)| (j.name.as_str(), i))
        .collect();
    let words_of = |name: &str| {
        raw.jobs
            .iter()
            .find(|j| {
                j.options
                    .iter()
                    .any(|o| o.def.name == "name" && o.args.first().is_some_and(|w| w.text == name))
            })
            .into_iter()
            .flat_map(|j| j.options.iter().filter(|o| o.def.name == "after"))
            .flat_map(|o| o.args.iter().copied())
            .collect::<Vec<_>>()
    };
    let mut broken = false;
    for job in config.jobs.iter().filter(|j| !j.after.is_empty()) {
        for word in words_of(&job.name) {
            let message = if word.text == job.name {
                format!("after: job `{}` cannot come after itself", job.name)
            } else if !index.contains_key(word.text.as_ref()) {
                format!("after: there is no job named `{}`", word.text)
            } else {
                continue;
            };
            broken = true;
            errors.push(Diagnostic::error(word.at, word.width, message));
        }
    }
    if broken {
        return;
    }
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
            let after = &config.jobs[node].after;
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
                    let first = &config.jobs[target].name;
                    let named = cycle[1];
                    if let Some(word) = words_of(first).into_iter().find(|w| w.text == named) {
                        let message = format!("after: a cycle: {}", cycle.join(" → "));
                        errors.push(Diagnostic::error(word.at, word.width, message));
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
    if !job.log.written_by_pmtr() || is_file(&job.stdout) || is_file(&job.stderr) {
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
