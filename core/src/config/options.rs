//! The one definition of every configuration option and global statement:
//! its name, the shape of its arguments, its documentation and how its
//! value is checked and stored. This table drives the parser, the "did you
//! mean" hints and `docs/CONFIG.md`.

use super::diagnostic::Diagnostic;
use super::lex::Word;
use super::model::{
    EnvFile, EnvVar, Globals, Job, Limit, Output, Resource, RestartPolicy, StopSignal, Ulimit,
};
use super::{checks, values};

/// The shape of what follows an option's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syntax {
    /// Nothing: `once`.
    Flag,
    /// One value on the same line: `name web`.
    Value,
    /// The rest of the line, at least one word: `cmd /bin/echo a b`.
    RestOfLine,
    /// `RESOURCE VALUE` on the same line, or a block of such pairs.
    Pairs,
    /// One to this many values on the same line: `env A=1`, `env file /x`.
    UpTo(usize),
    /// Fixed words, then one value: `bounce every 1d`, `give up after 5`.
    Then(&'static [&'static str]),
    /// A block of values, over any number of lines: `depends { a b }`.
    Block,
}

/// Stores the checked value of an option into a job, or says what is wrong
/// with the words given.
pub type Apply = fn(&mut Job, &[&Word<'_>], &mut Vec<Diagnostic>);

#[derive(Debug)]
pub struct OptionDef {
    pub name: &'static str,
    pub syntax: Syntax,
    pub usage: &'static str,
    pub default: &'static str,
    pub doc: &'static str,
    pub repeatable: bool,
    pub apply: Apply,
}

/// Stores the checked value of a global statement.
pub type ApplyGlobal = fn(&mut Globals, &Word<'_>) -> Result<(), Diagnostic>;

#[derive(Debug)]
pub struct StatementDef {
    /// The two keywords: `report to`, `listen on`, ...
    pub keywords: [&'static str; 2],
    pub usage: &'static str,
    pub doc: &'static str,
    pub repeatable: bool,
    pub apply: ApplyGlobal,
}

impl StatementDef {
    pub fn name(&self) -> String {
        self.keywords.join(" ")
    }
}

/// Most copies of one job (`instances N`).
pub const MAX_INSTANCES: u32 = 10_000;

/// A `user` must be shorter, as in the original.
pub const MAX_USER_LEN: usize = 100;

/// Longest job name: names travel in UDP reports and log lines.
pub const MAX_NAME_LEN: usize = 255;

pub static JOB_OPTIONS: &[OptionDef] = &[
    OptionDef {
        name: "name",
        syntax: Syntax::Value,
        usage: "name NAME",
        default: "required",
        doc: "Unique job name, used in logs, reports and `pmtr-ctl`. No spaces or control characters, at most 255 bytes.",
        repeatable: false,
        apply: |job, words, errors| {
            let word = words[0];
            let name = &word.text;
            if name.is_empty() {
                errors.push(error(word, "the job name is empty"));
            } else if name.len() > MAX_NAME_LEN {
                errors.push(error(word, format!("the job name is longer than {MAX_NAME_LEN} bytes")));
            } else if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
                errors.push(error(word, "a job name cannot hold spaces or control characters"));
            } else {
                job.name = name.to_string();
            }
        },
    },
    OptionDef {
        name: "cmd",
        syntax: Syntax::RestOfLine,
        usage: "cmd /PATH [ARG...]",
        default: "required",
        doc: "Absolute path of the executable, then its arguments, to the end of the line. No `$PATH` search, no shell, no expansion; double quotes make one argument of text with spaces.",
        repeatable: false,
        apply: |job, words, errors| {
            let program = words[0];
            if !program.text.starts_with('/') {
                errors.push(error(
                    program,
                    format!(
                        "cmd must be an absolute path (pmtr does no $PATH search): `{}`",
                        program.text
                    ),
                ));
                return;
            }
            job.cmd = words.iter().map(|w| w.text.to_string()).collect();
        },
    },
    OptionDef {
        name: "dir",
        syntax: Syntax::Value,
        usage: "dir /PATH",
        default: "the directory pmtr was started in",
        doc: "Working directory of the job, absolute. Relative `in`, `out`, `err` and `depends` paths are taken under it.",
        repeatable: false,
        apply: |job, words, errors| {
            if let Some(path) = absolute_path(words[0], "dir", errors) {
                job.dir = Some(path);
            }
        },
    },
    OptionDef {
        name: "in",
        syntax: Syntax::Value,
        usage: "in FILE",
        default: "`/dev/null`",
        doc: "File opened as the job's standard input.",
        repeatable: false,
        apply: |job, words, errors| {
            if let Some(path) = path(words[0], errors) {
                job.extras.stdin = Some(path);
            }
        },
    },
    OptionDef {
        name: "out",
        syntax: Syntax::Value,
        usage: "out FILE|syslog|stdout|stderr",
        default: "`syslog`",
        doc: "Where standard output goes: a file (appended to, created 0644 by the job's user, opened after privileges are dropped); `syslog`, which logs each line tagged with the job's name and pid; or `stdout`/`stderr`, pmtr's own, inherited untouched (no pipe, no prefix: for `docker logs` and JSON lines). A file named `stdout` is written `./stdout`.",
        repeatable: false,
        apply: |job, words, errors| {
            if let Some(output) = output(words[0], errors) {
                job.stdout = output;
            }
        },
    },
    OptionDef {
        name: "err",
        syntax: Syntax::Value,
        usage: "err FILE|syslog|stdout|stderr",
        default: "`syslog`",
        doc: "Where standard error goes, as for `out`.",
        repeatable: false,
        apply: |job, words, errors| {
            if let Some(output) = output(words[0], errors) {
                job.stderr = output;
            }
        },
    },
    OptionDef {
        name: "log",
        syntax: Syntax::RestOfLine,
        usage: "log rotate SIZE KEEP | log timestamps",
        default: "the job writes its files itself",
        doc: "pmtr writes the job's `out`/`err` files itself, from the captured streams (the lines also reach `pmtr-ctl logs`): `rotate SIZE KEEP` renames FILE to FILE.1 (FILE.1 to FILE.2 ... up to FILE.KEEP, the oldest removed) before it would grow past SIZE (bytes, or with K, M, G); `timestamps` prefixes each line with the local time in RFC 3339 with milliseconds. Files are created 0640, owned by the job's user, never through a symlink; SIGUSR1 reopens them; on a full disk lines are dropped and counted, never blocking pmtr or the job. One line each; needs `out FILE` or `err FILE`.",
        repeatable: true,
        apply: checks::apply_log,
    },
    OptionDef {
        name: "user",
        syntax: Syntax::Value,
        usage: "user NAME",
        default: "pmtr's own user",
        doc: "Run the job as this user: its uid, primary gid and supplementary groups. The job also gets `HOME`, `USER` and `LOGNAME` of that user unless `env` sets them.",
        repeatable: false,
        apply: |job, words, errors| {
            let word = words[0];
            if word.text.is_empty() || word.text.chars().any(|c| c.is_whitespace() || c.is_control()) {
                errors.push(error(word, "`user` needs a user name without spaces"));
            } else if word.text.len() >= MAX_USER_LEN {
                // The original's limit: its buffer for the name is 100 bytes.
                let message = format!("the user name is {} bytes long: at most {} are allowed", word.text.len(), MAX_USER_LEN - 1);
                errors.push(error(word, message));
            } else {
                job.user = Some(word.text.to_string());
            }
        },
    },
    OptionDef {
        name: "env",
        syntax: Syntax::UpTo(2),
        usage: "env VAR=VALUE | env file [-]PATH",
        default: "",
        doc: "Sets an environment variable for the job; repeatable. The job's environment is pmtr's own plus `PMTR_JOB=NAME` (the job's name: how pmtr knows, without a cgroup, what a removed job left behind) plus these. `env file PATH` (relative: under `dir`) reads `KEY=VALUE` lines from PATH at every start of the job, in the syntax of systemd's `EnvironmentFile=` (`#` comments, blank lines, optional quotes, no expansion); a job whose file is missing or malformed fails to start, saying why, unless the path starts with `-` (a missing file is then skipped). `env VAR=VALUE` lines win over the files, later files over earlier ones.",
        repeatable: true,
        apply: |job, words, errors| {
            let word = words[0];
            if word.is("file") {
                let Some(path) = words.get(1) else {
                    errors.push(error(word, "`env file` needs a path: env file [-]PATH"));
                    return;
                };
                let (optional, file) = match path.text.strip_prefix('-') {
                    Some(file) => (true, file),
                    None => (false, path.text.as_ref()),
                };
                if file.is_empty() {
                    errors.push(error(path, "`env file` needs a path: env file [-]PATH"));
                    return;
                }
                job.extras.env_files.push(EnvFile {
                    path: file.to_string(),
                    optional,
                });
                return;
            }
            if let Some(extra) = words.get(1) {
                let message = format!("unexpected `{}` after `env`: it takes one VAR=VALUE (quote a value that has spaces)", extra.text);
                errors.push(error(extra, message));
                return;
            }
            match word.text.split_once('=') {
                Some((name, value)) if !name.is_empty() => job.env.push(EnvVar {
                    name: name.to_string(),
                    value: value.to_string(),
                }),
                Some(_) => errors.push(error(word, "the variable name before `=` is empty")),
                None => errors.push(error(
                    word,
                    format!("`{}` is not VAR=VALUE: an environment setting needs `=`", word.text),
                )),
            }
        },
    },
    OptionDef {
        name: "disable",
        syntax: Syntax::Flag,
        usage: "disable",
        default: "",
        doc: "The job is defined but not run. Quicker than commenting the job out.",
        repeatable: true,
        apply: |job, _, _| job.disabled = true,
    },
    OptionDef {
        name: "wait",
        syntax: Syntax::Flag,
        usage: "wait",
        default: "",
        doc: "Jobs after this one in start order are not started until it has exited (with any status). pmtr keeps serving signals, reloads and requests meanwhile.",
        repeatable: true,
        apply: |job, _, _| job.wait = true,
    },
    OptionDef {
        name: "once",
        syntax: Syntax::Flag,
        usage: "once",
        default: "",
        doc: "Do not restart the job after it exits.",
        repeatable: true,
        apply: |job, _, _| job.once = true,
    },
    OptionDef {
        name: "critical",
        syntax: Syntax::Flag,
        usage: "critical",
        default: "",
        doc: "When this job ends and its restart policy does not start it again (`once`, `restart never`, `on-failure` after status 0, exit status 33, given up), pmtr stops every job and exits with this job's status (its exit code, or 128 + the signal that killed it): the container ends with its main program.",
        repeatable: true,
        apply: |job, _, _| job.critical = true,
    },
    OptionDef {
        name: "instances",
        syntax: Syntax::Value,
        usage: "instances N",
        default: "one job",
        doc: "Run N copies of the job (1 to 10000), named `NAME.1` ... `NAME.N`, each supervised, shown and controlled on its own; each gets `PMTR_INSTANCE=i`, and `%i` in `cmd`, `dir`, `out` and `err` becomes i (`%%` a `%`). `pmtr-ctl` and `after` take `NAME` for every copy. A reload that changes N starts or stops only the difference; one that changes the definition restarts the copies one at a time, each up again before the next stops.",
        repeatable: false,
        apply: |job, words, errors| {
            match values::integer(&words[0].text, 1, MAX_INSTANCES.into()) {
                Ok(n) => job.instances = n as u32,
                Err(message) => errors.push(error(words[0], format!("instances: {message}"))),
            }
        },
    },
    OptionDef {
        name: "order",
        syntax: Syntax::Value,
        usage: "order N",
        default: "0",
        doc: "Integer start-order key: lower starts first; file order breaks ties.",
        repeatable: false,
        apply: |job, words, errors| {
            match values::integer(&words[0].text, i32::MIN.into(), i32::MAX.into()) {
                Ok(order) => job.order = order as i32,
                Err(message) => errors.push(error(words[0], format!("order: {message}"))),
            }
        },
    },
    OptionDef {
        name: "nice",
        syntax: Syntax::Value,
        usage: "nice N",
        default: "inherited",
        doc: "Scheduling priority, -20 (highest) to 19 (lowest).",
        repeatable: false,
        apply: |job, words, errors| match values::integer(&words[0].text, -20, 19) {
            Ok(nice) => job.nice = Some(nice as i32),
            Err(message) => errors.push(error(words[0], format!("nice: {message}"))),
        },
    },
    OptionDef {
        name: "cpu",
        syntax: Syntax::Value,
        usage: "cpu LIST|0xMASK",
        default: "inherited",
        doc: "CPU affinity: numbers and ranges (`0,2-4`) or a hex mask (`0x8f`). CPUs the machine does not have are ignored.",
        repeatable: false,
        apply: |job, words, errors| match values::cpu_set(&words[0].text) {
            Ok(set) => job.extras.cpu = Some(set),
            Err(message) => errors.push(error(words[0], format!("cpu: {message}"))),
        },
    },
    OptionDef {
        name: "ulimit",
        syntax: Syntax::Pairs,
        usage: "ulimit RESOURCE VALUE | ulimit { RESOURCE VALUE ... }",
        default: "inherited",
        doc: "Resource limits, soft and hard alike. RESOURCE is a flag `-c -d -e -f -i -l -m -n -q -r -s -t -u -v` (as bash's `ulimit`) or a name `RLIMIT_NOFILE` ...; VALUE is a number, `infinity` or `unlimited`. `-n` must be finite.",
        repeatable: true,
        apply: apply_ulimits,
    },
    OptionDef {
        name: "limit",
        syntax: Syntax::Pairs,
        usage: "limit KIND VALUE | limit { KIND VALUE ... }",
        default: "no limit",
        doc: "A limit written to the job's own cgroup (SPEC 11.7), when pmtr manages a cgroup v2 subtree: `memory SIZE` (`memory.max`: beyond it the job is reclaimed, then killed by the OOM killer), `memory-high SIZE` (`memory.high`: beyond it the job is slowed and reclaimed), `cpu PERCENT` (`cpu.max`, `100%` is one CPU), `cpu-weight N` (`cpu.weight`, 1–10000, 100 is the kernel's default), `tasks N` (`pids.max`: processes and threads). SIZE is bytes, or with K, M, G. A limit whose controller is not available is a warning at start and in `pmtr -t`, never an error: the job runs without it.",
        repeatable: true,
        apply: apply_limits,
    },
    OptionDef {
        name: "bounce",
        syntax: Syntax::Then(&["every"]),
        usage: "bounce every N{s,m,h,d}",
        default: "",
        doc: "Restart the job each time it has run this long: seconds, minutes, hours or days.",
        repeatable: false,
        apply: |job, words, errors| match values::interval(&words[0].text) {
            Ok(seconds) => job.extras.bounce_every_secs = Some(seconds),
            Err(message) => errors.push(error(words[0], format!("bounce every: {message}"))),
        },
    },
    OptionDef {
        name: "restart",
        syntax: Syntax::Value,
        usage: "restart always|on-failure|never",
        default: "always",
        doc: "Which exits are followed by a restart: `on-failure` ends the job (as `once`) when it exits with status 0; `never` is `once`. Exit status 33 ends it whatever this says.",
        repeatable: false,
        apply: |job, words, errors| {
            let word = words[0];
            job.restart = match word.text.as_ref() {
                "always" => RestartPolicy::Always,
                "on-failure" => RestartPolicy::OnFailure,
                "never" => RestartPolicy::Never,
                other => {
                    let known = ["always", "on-failure", "never"];
                    let hint = nearest(other, known)
                        .map_or(String::new(), |near| format!("; did you mean `{near}`?"));
                    let message = format!("restart: `{other}` is not always, on-failure or never{hint}");
                    errors.push(error(word, message));
                    return;
                }
            };
        },
    },
    OptionDef {
        name: "backoff",
        syntax: Syntax::RestOfLine,
        usage: "backoff INITIAL MAX",
        default: "10s 10s",
        doc: "After the k-th rapid exit in a row (a run shorter than `stable`) the restart waits min(INITIAL·2^(k−1), MAX). Durations in ms, s, m, h or d.",
        repeatable: false,
        apply: |job, words, errors| {
            let [initial, max] = words else {
                let last = words[words.len() - 1];
                errors.push(error(last, "backoff takes two durations: INITIAL MAX (like `backoff 1s 1m`)"));
                return;
            };
            let duration = |word: &Word<'_>, errors: &mut Vec<Diagnostic>| {
                values::duration_millis(&word.text)
                    .map_err(|message| errors.push(error(word, format!("backoff: {message}"))))
                    .ok()
            };
            let (Some(a), Some(b)) = (duration(initial, errors), duration(max, errors)) else {
                return;
            };
            if b < a {
                let message = format!("backoff: MAX `{}` is below INITIAL `{}`", max.text, initial.text);
                errors.push(error(max, message));
                return;
            }
            job.extras.backoff_millis = Some((a, b));
        },
    },
    OptionDef {
        name: "stable",
        syntax: Syntax::Value,
        usage: "stable DURATION",
        default: "10s",
        doc: "A run shorter than this is a rapid exit (restarted after the backoff); a longer one resets the count and is restarted at once.",
        repeatable: false,
        apply: |job, words, errors| match values::duration_millis(&words[0].text) {
            Ok(millis) => job.extras.stable_millis = Some(millis),
            Err(message) => errors.push(error(words[0], format!("stable: {message}"))),
        },
    },
    OptionDef {
        name: "give",
        syntax: Syntax::Then(&["up", "after"]),
        usage: "give up after N",
        default: "never",
        doc: "After N rapid exits in a row the job is `failed`: not restarted until `pmtr-ctl restart` or `enable`, or a reload that changes it.",
        repeatable: false,
        apply: |job, words, errors| match words[0].text.parse::<u32>() {
            Ok(n) if (1..=1_000_000).contains(&n) => job.extras.give_up_after = Some(n),
            _ => errors.push(error(
                words[0],
                format!("give up after: `{}` is not a count from 1 to 1000000", words[0].text),
            )),
        },
    },
    OptionDef {
        name: "stop",
        syntax: Syntax::RestOfLine,
        usage: "stop signal NAME | stop timeout DURATION",
        default: "signal TERM, timeout 10s",
        doc: "How pmtr stops the job — on reload, disable, bounce, restart and shutdown alike: the signal it sends the job's process group (`TERM`, `INT`, `QUIT`, `HUP`, `USR1`, `USR2`, `KILL`, `WINCH`, with or without `SIG`), and how long it waits before SIGKILL. One line each.",
        repeatable: true,
        apply: apply_stop,
    },
    OptionDef {
        name: "after",
        syntax: Syntax::RestOfLine,
        usage: "after JOB...",
        default: "",
        doc: "Start the job (and each restart of it) only while every named job is ready: running (a `once` job: exited with status 0). It orders, it does not bind: a named job that restarts does not stop this one. Unknown names and cycles are errors.",
        repeatable: true,
        apply: |job, words, errors| {
            for word in words {
                let name = word.text.to_string();
                if job.extras.after.contains(&name) {
                    errors.push(error(word, format!("after: `{name}` is named twice")));
                } else {
                    job.extras.after.push(name);
                }
            }
        },
    },
    OptionDef {
        name: "ready",
        syntax: Syntax::RestOfLine,
        usage: "ready notify | ready file PATH | ready tcp [HOST:]PORT | ready cmd /PATH [ARG...] | ready timeout DURATION",
        default: "ready once started; timeout 60s",
        doc: "When the job counts as ready, for `after`, `pmtr-ctl wait` and `status`: `notify` once it sends `READY=1` by the sd_notify protocol (pmtr sets `NOTIFY_SOCKET`); `file PATH` once PATH exists (relative: under `dir`); `tcp [HOST:]PORT` once a connection succeeds (HOST an IP address, default 127.0.0.1); `cmd` once the command exits 0 (run as the job's user, in its `dir`, with its `env`). Checks are 50 ms to 1 s apart and never block pmtr. Not ready within the timeout is a failed start: logged, stopped, and the restart policy applies. One line each; a reload that changes only these lines does not restart a running job.",
        repeatable: true,
        apply: checks::apply_ready,
    },
    OptionDef {
        name: "health",
        syntax: Syntax::RestOfLine,
        usage: "health cmd /PATH [ARG...] | health tcp [HOST:]PORT | health every DURATION | health timeout DURATION | health retries N | health watchdog DURATION",
        default: "no checks; every 30s, timeout 10s, retries 3",
        doc: "Whether a ready job still works: `cmd` (exits 0) or `tcp` (connects), run `every` DURATION from the end of the previous check, killed and failed after `timeout`; `retries` failed checks in a row restart the job, logged with the check's last output line. `watchdog DURATION`: the job must send `WATCHDOG=1` (sd_notify) at least this often once ready, or it is restarted. One line each; a reload that changes only these lines does not restart a running job.",
        repeatable: true,
        apply: checks::apply_health,
    },
    OptionDef {
        name: "depends",
        syntax: Syntax::Block,
        usage: "depends { FILE ... }",
        default: "",
        doc: "Files (relative ones under `dir`) whose content the job depends on: a change of content restarts the job; while one is missing the job is not started.",
        repeatable: true,
        apply: |job, words, errors| {
            for word in words {
                if let Some(path) = path(word, errors) {
                    job.extras.depends.push(path);
                }
            }
        },
    },
];

pub static STATEMENTS: &[StatementDef] = &[
    StatementDef {
        keywords: ["report", "to"],
        usage: "report to udp://HOST:PORT[@IFACE]",
        doc: "Every 10 s, send a status datagram to HOST:PORT; repeatable. `@IFACE` picks the egress interface for a multicast destination.",
        repeatable: true,
        apply: |globals, word| {
            let endpoint = values::udp_endpoint(&word.text, true).map_err(|m| error(word, m))?;
            globals.report_to.push(endpoint);
            Ok(())
        },
    },
    StatementDef {
        keywords: ["listen", "on"],
        usage: "listen on udp://ADDRESS:PORT",
        doc: "Accept `enable`/`disable` control datagrams on this address (`0.0.0.0` for all).",
        repeatable: false,
        apply: |globals, word| {
            let endpoint = values::udp_endpoint(&word.text, false).map_err(|m| error(word, m))?;
            globals.listen_on = Some(endpoint);
            Ok(())
        },
    },
    StatementDef {
        keywords: ["udp", "key"],
        usage: "udp key /PATH",
        doc: "Shared secret for the UDP protocol: reports are signed, control datagrams must be signed and fresh. The file must not be readable by group or others.",
        repeatable: false,
        apply: |globals, word| {
            globals.udp_key = Some(global_path(word, "udp key")?);
            Ok(())
        },
    },
    StatementDef {
        keywords: ["metrics", "to"],
        usage: "metrics to /PATH",
        doc: "Keep this file up to date, atomically, in the Prometheus text format (for node_exporter's textfile collector).",
        repeatable: false,
        apply: |globals, word| {
            globals.metrics_to = Some(global_path(word, "metrics to")?);
            Ok(())
        },
    },
];

pub fn job_option(name: &str) -> Option<&'static OptionDef> {
    JOB_OPTIONS.iter().find(|def| def.name == name)
}

pub fn statement(first_keyword: &str) -> Option<&'static StatementDef> {
    STATEMENTS
        .iter()
        .find(|def| def.keywords[0] == first_keyword)
}

/// The known word nearest to `word`, if it is near enough to be a typo.
pub fn nearest<'a>(word: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    // No keyword is this long; and the distance costs length squared.
    if word.len() > 64 {
        return None;
    }
    known
        .into_iter()
        .map(|candidate| (strsim::damerau_levenshtein(word, candidate), candidate))
        .filter(|&(distance, candidate)| distance <= 2 && distance < candidate.len())
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, candidate)| candidate)
}

pub(super) fn error(word: &Word<'_>, message: impl Into<String>) -> Diagnostic {
    Diagnostic::error(word.at, word.width, message)
}

fn path(word: &Word<'_>, errors: &mut Vec<Diagnostic>) -> Option<String> {
    if word.text.is_empty() {
        errors.push(error(word, "the path is empty"));
        return None;
    }
    Some(word.text.to_string())
}

fn absolute_path(word: &Word<'_>, option: &str, errors: &mut Vec<Diagnostic>) -> Option<String> {
    if !word.text.starts_with('/') {
        errors.push(error(
            word,
            format!("{option} must be an absolute path: `{}`", word.text),
        ));
        return None;
    }
    Some(word.text.to_string())
}

fn global_path(word: &Word<'_>, statement: &str) -> Result<String, Diagnostic> {
    let mut errors = Vec::new();
    absolute_path(word, statement, &mut errors).ok_or_else(|| errors.remove(0))
}

fn output(word: &Word<'_>, errors: &mut Vec<Diagnostic>) -> Option<Output> {
    if word.is("syslog") {
        return Some(Output::Syslog);
    }
    // Words, not paths: a file of that name is `./stdout`.
    match word.text.as_ref() {
        "stdout" if word.is("stdout") => return Some(Output::Stdout),
        "stderr" if word.is("stderr") => return Some(Output::Stderr),
        _ => {}
    }
    path(word, errors).map(Output::File)
}

fn apply_stop(job: &mut Job, words: &[&Word<'_>], errors: &mut Vec<Diagnostic>) {
    let usage = "write `stop signal NAME` or `stop timeout DURATION`";
    let [what, value] = words else {
        errors.push(error(words[words.len() - 1], usage));
        return;
    };
    match what.text.as_ref() {
        "signal" => match StopSignal::from_name(&value.text) {
            Some(_) if job.stop_signal != StopSignal::default() => {
                errors.push(error(what, "`stop signal` is given twice"))
            }
            Some(signal) => job.stop_signal = signal,
            None => {
                let names = StopSignal::ALL.map(|s| &s.name()[3..]);
                let bare = value.text.strip_prefix("SIG").unwrap_or(&value.text);
                let hint = nearest(bare, names)
                    .map_or(String::new(), |near| format!("; did you mean `{near}`?"));
                let message = format!(
                    "stop signal: `{}` is not one of TERM, INT, QUIT, HUP, USR1, USR2, KILL, WINCH{hint}",
                    value.text
                );
                errors.push(error(value, message));
            }
        },
        "timeout" => match values::duration_millis(&value.text) {
            Ok(_) if job.extras.stop_timeout_millis.is_some() => {
                errors.push(error(what, "`stop timeout` is given twice"))
            }
            Ok(millis) => job.extras.stop_timeout_millis = Some(millis),
            Err(message) => errors.push(error(value, format!("stop timeout: {message}"))),
        },
        _ => errors.push(error(what, usage)),
    }
}

/// Most `limit cpu`: a thousand CPUs.
const MAX_CPU_PERCENT: u64 = 100_000;

/// Most `limit tasks`: the kernel's own ceiling on pids.
const MAX_TASKS: u64 = 1 << 22;

fn apply_limits(job: &mut Job, words: &[&Word<'_>], errors: &mut Vec<Diagnostic>) {
    const KINDS: [&str; 5] = ["memory", "memory-high", "cpu", "cpu-weight", "tasks"];
    for pair in words.chunks(2) {
        let [kind, value] = pair else {
            continue; // the parser reports a kind without a value
        };
        let number = |text: &str, low: u64, high: u64, what: &str| match text.parse::<u64>() {
            Ok(n) if (low..=high).contains(&n) => Ok(n),
            _ => Err(format!(
                "`{}` is not {what} from {low} to {high}",
                value.text
            )),
        };
        let limits = &mut job.extras.limits;
        let text = &*value.text;
        let (slot, checked) = match &*kind.text {
            "memory" => (&mut limits.memory_max, values::size(text)),
            "memory-high" => (&mut limits.memory_high, values::size(text)),
            "cpu" => {
                let percent = text.strip_suffix('%').unwrap_or(text);
                (
                    &mut limits.cpu_percent,
                    number(percent, 1, MAX_CPU_PERCENT, "a percentage"),
                )
            }
            "cpu-weight" => (&mut limits.cpu_weight, number(text, 1, 10_000, "a weight")),
            "tasks" => (
                &mut limits.tasks,
                number(text, 1, MAX_TASKS, "a number of tasks"),
            ),
            _ => {
                let hint = match nearest(&kind.text, KINDS.iter().copied()) {
                    Some(near) => format!("; did you mean `{near}`?"),
                    None => format!("; the kinds are {}", KINDS.join(", ")),
                };
                errors.push(error(kind, format!("unknown limit `{}`{hint}", kind.text)));
                continue;
            }
        };
        match checked {
            Err(message) => errors.push(error(value, format!("limit {}: {message}", kind.text))),
            Ok(_) if slot.is_some() => errors.push(error(
                kind,
                format!("limit {} is given twice in this job", kind.text),
            )),
            Ok(n) => *slot = Some(n),
        }
    }
}

fn apply_ulimits(job: &mut Job, words: &[&Word<'_>], errors: &mut Vec<Diagnostic>) {
    for pair in words.chunks(2) {
        let [resource_word, value_word] = pair else {
            continue; // the parser reports a resource without a value
        };
        let Some(resource) = Resource::from_flag_or_name(&resource_word.text) else {
            let known = Resource::ALL
                .iter()
                .flat_map(|(_, flag, name)| [*flag, *name]);
            let hint = match nearest(&resource_word.text, known) {
                Some(near) => format!("; did you mean `{near}`?"),
                None => "; use a flag like `-n` or a name like `RLIMIT_NOFILE`".into(),
            };
            errors.push(error(
                resource_word,
                format!("unknown ulimit resource `{}`{hint}", resource_word.text),
            ));
            continue;
        };
        let value = match values::limit(&value_word.text) {
            Ok(value) => value,
            Err(message) => {
                errors.push(error(value_word, format!("ulimit: {message}")));
                continue;
            }
        };
        if resource == Resource::Nofile && value == Limit::Infinity {
            errors.push(error(
                value_word,
                "ulimit -n must be finite: the kernel refuses an infinite open-file limit",
            ));
            continue;
        }
        if job.extras.ulimits.iter().any(|u| u.resource == resource) {
            errors.push(error(
                resource_word,
                format!("ulimit {} is given twice in this job", resource.flag()),
            ));
            continue;
        }
        job.extras.ulimits.push(Ulimit { resource, value });
    }
}

#[cfg(test)]
mod tests {
    //! One test per option and statement, through the whole parser, so
    //! that each definition is checked as an operator would write it.
    use super::super::{
        parse, CgroupLimits, Config, CpuSet, HealthCheck, Limit, Output, Readiness, Resource,
        UdpEndpoint, Ulimit,
    };
    use super::*;

    fn job_with(options: &str) -> Job {
        let text = format!("job {{\n name t\n cmd /bin/true\n {options}\n}}\n");
        match parse(text.as_bytes()) {
            Ok(config) => config.jobs[0].clone(),
            Err(errors) => panic!("{options}: {errors:?}"),
        }
    }

    fn first_error(text: &str) -> String {
        match parse(text.as_bytes()) {
            Ok(_) => panic!("accepted: {text}"),
            Err(errors) => errors[0].message.clone(),
        }
    }

    fn job_error(options: &str) -> String {
        first_error(&format!(
            "job {{\n name t\n cmd /bin/true\n {options}\n}}\n"
        ))
    }

    fn globals(text: &str) -> Globals {
        let config: Config = parse(text.as_bytes()).unwrap();
        config.globals
    }

    #[test]
    fn every_option_is_documented() {
        for def in JOB_OPTIONS {
            assert!(def.usage.starts_with(def.name), "{}", def.name);
            assert!(def.doc.ends_with('.'), "{}", def.name);
        }
        for def in STATEMENTS {
            assert!(def.usage.starts_with(&def.name()), "{}", def.name());
        }
    }

    #[test]
    fn name() {
        assert_eq!(job_with("").name, "t");
        assert!(job_error("name u").contains("given twice"));
        assert!(first_error("job {\n name \"a b\"\n cmd /bin/true\n}").contains("spaces"));
        assert!(first_error("job {\n name \"\"\n cmd /bin/true\n}").contains("empty"));
        let long = "n".repeat(256);
        assert!(
            first_error(&format!("job {{\n name {long}\n cmd /bin/true\n}}")).contains("longer")
        );
    }

    #[test]
    fn cmd() {
        let text = "job {\n name t\n cmd /bin/echo \"New York\" -x 'y'\n}";
        let job = &parse(text.as_bytes()).unwrap().jobs[0];
        assert_eq!(job.cmd, ["/bin/echo", "New York", "-x", "'y'"]);
        assert!(first_error("job {\n name t\n cmd sleep 5\n}").contains("absolute path"));
        assert!(job_error("cmd /bin/false").contains("given twice"));
    }

    #[test]
    fn dir() {
        assert_eq!(job_with("dir /srv/app").dir.as_deref(), Some("/srv/app"));
        assert!(job_error("dir srv").contains("dir must be an absolute path"));
    }

    #[test]
    fn in_out_err() {
        let job = job_with("in input.txt\n out /var/log/o.log\n err syslog");
        assert_eq!(job.extras.stdin.as_deref(), Some("input.txt"));
        assert_eq!(job.stdout, Output::File("/var/log/o.log".into()));
        assert_eq!(job.stderr, Output::Syslog);
        assert_eq!(job_with("").stdout, Output::Syslog);
        assert_eq!(
            job_with("out \"syslog\"").stdout,
            Output::File("syslog".into())
        );
        assert!(job_error("out \"\"").contains("path is empty"));
        // SPEC 11.5 pass-through; quoted, the word is a file name again.
        let job = job_with("out stdout\n err stdout");
        assert_eq!((job.stdout, job.stderr), (Output::Stdout, Output::Stdout));
        assert_eq!(job_with("err stderr").stderr, Output::Stderr);
        assert_eq!(
            job_with("out \"stdout\"").stdout,
            Output::File("stdout".into())
        );
        assert!(job_with("critical").critical);
        assert!(!job_with("").critical);
    }

    #[test]
    fn user() {
        assert_eq!(job_with("user app").user.as_deref(), Some("app"));
        assert!(job_error("user \"a b\"").contains("user name"));
    }

    #[test]
    fn env() {
        let job = job_with("env A=1\n env B=x=y\n env C=");
        let env: Vec<(&str, &str)> = job
            .env
            .iter()
            .map(|e| (e.name.as_str(), e.value.as_str()))
            .collect();
        assert_eq!(env, [("A", "1"), ("B", "x=y"), ("C", "")]);
        assert!(job_error("env DEBUG").contains("needs `=`"));
        assert!(job_error("env =1").contains("name before `=` is empty"));
    }

    #[test]
    fn env_file() {
        let job = job_with("env file /etc/app.env\n env file -/etc/local.env\n env A=1");
        assert_eq!(
            job.extras.env_files,
            [
                EnvFile {
                    path: "/etc/app.env".into(),
                    optional: false
                },
                EnvFile {
                    path: "/etc/local.env".into(),
                    optional: true
                },
            ]
        );
        assert_eq!(job.env.len(), 1);
        // A variable named `file` is still a variable.
        assert_eq!(job_with("env file=x").env[0].name, "file");
        assert!(job_error("env file").contains("`env file` needs a path"));
        assert_eq!(
            job_with("env file app.env").extras.env_files[0].path,
            "app.env"
        );
        assert!(job_error("env file -").contains("`env file` needs a path"));
        assert!(job_error("env A=1 B=2").contains("unexpected `B=2` after `env`"));
        assert!(job_error("env file /a /b").contains("unexpected `/b` after `env`"));
        // Free layout: a `}` after the value ends the job.
        let config = parse(b"job { name t\n cmd /bin/true\n env file /x }").unwrap();
        assert_eq!(config.jobs[0].extras.env_files.len(), 1);
    }

    #[test]
    fn flags() {
        let job = job_with("disable\n wait\n once");
        assert!(job.disabled && job.wait && job.once);
        let job = job_with("");
        assert!(!job.disabled && !job.wait && !job.once);
    }

    #[test]
    fn order() {
        assert_eq!(job_with("order -3").order, -3);
        assert!(job_error("order first").contains("not an integer"));
        assert!(job_error("order 99999999999").contains("out of range"));
    }

    #[test]
    fn nice() {
        assert_eq!(job_with("nice 19").nice, Some(19));
        assert_eq!(job_with("nice -20").nice, Some(-20));
        assert!(job_error("nice 20").contains("out of range -20 to 19"));
        assert!(job_error("nice high").contains("not an integer"));
    }

    #[test]
    fn cpu() {
        let mut set = CpuSet::default();
        set.insert(0);
        set.insert(2);
        assert_eq!(job_with("cpu 0,2").extras.cpu, Some(set.clone()));
        assert_eq!(job_with("cpu 0x5").extras.cpu, Some(set));
        assert!(job_error("cpu 3-1").contains("backwards"));
        assert!(job_error("cpu 0xZ").contains("hex digit"));
    }

    #[test]
    fn ulimit_single_and_block() {
        let job =
            job_with("ulimit -n 1024\n ulimit {\n  -c infinity RLIMIT_AS unlimited\n  -t 60 }");
        assert_eq!(
            job.extras.ulimits,
            [
                Ulimit {
                    resource: Resource::Nofile,
                    value: Limit::Value(1024)
                },
                Ulimit {
                    resource: Resource::Core,
                    value: Limit::Infinity
                },
                Ulimit {
                    resource: Resource::As,
                    value: Limit::Infinity
                },
                Ulimit {
                    resource: Resource::Cpu,
                    value: Limit::Value(60)
                },
            ]
        );
        assert!(job_with("ulimit { }").extras.ulimits.is_empty());
    }

    #[test]
    fn ulimit_errors() {
        assert!(job_error("ulimit -n infinity").contains("-n must be finite"));
        assert!(job_error("ulimit -z 5").contains("unknown ulimit resource `-z`"));
        assert!(job_error("ulimit RLIMIT_NOFLE 5").contains("did you mean `RLIMIT_NOFILE`"));
        assert!(job_error("ulimit -n lots").contains("not a limit"));
        assert!(job_error("ulimit -n 5\n ulimit -n 6").contains("given twice"));
        assert!(job_error("ulimit -n").contains("needs a value"));
        assert!(job_error("ulimit { -n 5 -c }").contains("has no value"));
    }

    /// SPEC 11.7: every kind of `limit`, on a line or in a block.
    #[test]
    fn limits_single_and_block() {
        let job = job_with(
            "limit memory 512M\n limit {\n memory-high 400M cpu 150%\n cpu-weight 50 tasks 64 }",
        );
        let expected = CgroupLimits {
            memory_max: Some(512 << 20),
            memory_high: Some(400 << 20),
            cpu_percent: Some(150),
            cpu_weight: Some(50),
            tasks: Some(64),
        };
        assert_eq!(job.extras.limits, expected);
        assert_eq!(job_with("limit cpu 50").extras.limits.cpu_percent, Some(50));
        assert!(job_with("once").extras.limits.is_empty());
    }

    #[test]
    fn limit_errors() {
        assert!(job_error("limit memroy 5M").contains("did you mean `memory`"));
        assert!(job_error("limit swap 5M").contains("the kinds are memory"));
        assert!(job_error("limit memory lots").contains("not a size"));
        assert!(job_error("limit cpu 0%").contains("not a percentage from 1"));
        assert!(job_error("limit cpu-weight 20000").contains("not a weight from 1 to 10000"));
        assert!(job_error("limit tasks -1").contains("not a number of tasks"));
        assert!(job_error("limit tasks 5\n limit tasks 6").contains("given twice"));
        assert!(job_error("limit memory").contains("needs a value"));
    }

    /// SPEC 11.1: restart policy, backoff, stable, give up after.
    #[test]
    fn restart_policy_options() {
        let job = job_with("restart on-failure\n backoff 500ms 1m\n stable 30s\n give up after 5");
        assert_eq!(job.restart, RestartPolicy::OnFailure);
        assert_eq!(job.extras.backoff_millis, Some((500, 60_000)));
        assert_eq!(job.extras.stable_millis, Some(30_000));
        assert_eq!(job.extras.give_up_after, Some(5));
        let default = job_with("");
        assert_eq!(default.restart, RestartPolicy::Always);
        assert_eq!(
            (
                default.extras.backoff_millis,
                default.extras.stable_millis,
                default.extras.give_up_after
            ),
            (None, None, None)
        );
        assert_eq!(job_with("restart never").restart, RestartPolicy::Never);
        assert!(job_error("restart allways").contains("did you mean `always`?"));
        assert!(job_error("backoff 5s 1s").contains("MAX `1s` is below INITIAL `5s`"));
        assert!(job_error("backoff 5s").contains("two durations"));
        assert!(job_error("backoff 5 10s").contains("no time unit"));
        assert!(job_error("stable 0s").contains("more than 0"));
        assert!(job_error("give up after 0").contains("not a count from 1"));
        assert!(job_error("give up 3").contains("write `give up after N`"));
        assert!(job_error("give up after").contains("needs a value"));
    }

    /// SPEC 11.2: stop signal and stop timeout.
    #[test]
    fn stop_options() {
        let job = job_with("stop signal QUIT\n stop timeout 30s");
        assert_eq!(job.stop_signal, StopSignal::Quit);
        assert_eq!(job.extras.stop_timeout_millis, Some(30_000));
        assert_eq!(job_with("stop signal SIGINT").stop_signal, StopSignal::Int);
        assert_eq!(job_with("").stop_signal, StopSignal::Term);
        assert!(job_error("stop signal TREM").contains("did you mean `TERM`?"));
        assert!(job_error("stop timeout 0s").contains("more than 0"));
        assert!(job_error("stop signal INT\n stop signal HUP").contains("given twice"));
        assert!(job_error("stop now").contains("write `stop signal NAME`"));
    }

    /// SPEC 11.3: `after` names other jobs of the file, without a cycle.
    #[test]
    fn after_is_checked_across_jobs() {
        let jobs = |text: &str| {
            format!("job {{\n name a\n cmd /bin/true\n after b\n}}\njob {{\n name b\n cmd /bin/true\n {text}\n}}\njob {{\n name c\n cmd /bin/true\n after a\n}}\n")
        };
        let config = parse(jobs("").as_bytes()).unwrap();
        assert_eq!(config.jobs[0].extras.after, ["b"]);
        let cycle = first_error(&jobs("after c"));
        assert!(cycle.contains("after: a cycle: "), "{cycle}");
        for name in ["a", "b", "c"] {
            assert!(cycle.contains(name), "{cycle}");
        }
        assert!(first_error(&jobs("after b")).contains("cannot come after itself"));
        assert!(first_error(&jobs("after ghost")).contains("no job named `ghost`"));
        let twice =
            "job {\n name a\n cmd /bin/true\n}\njob {\n name b\n cmd /bin/true\n after a a\n}\n";
        assert!(first_error(twice).contains("`a` is named twice"));
    }

    #[test]
    fn ready_options() {
        let job = job_with("ready file run/ready\n ready timeout 5s");
        assert_eq!(job.extras.ready, Readiness::File("run/ready".into()));
        assert_eq!(job.extras.ready_timeout_millis, Some(5_000));
        assert_eq!(job_with("").extras.ready, Readiness::Started);
        assert!(job_error("ready fiel x").contains("did you mean `file`?"));
        let tcp = |text: &str| job_with(&format!("ready tcp {text}")).extras.ready.clone();
        assert_eq!(
            tcp("5432"),
            Readiness::Tcp("127.0.0.1:5432".parse().unwrap())
        );
        assert_eq!(
            tcp("10.0.0.2:80"),
            Readiness::Tcp("10.0.0.2:80".parse().unwrap())
        );
        assert_eq!(tcp("[::1]:80"), Readiness::Tcp("[::1]:80".parse().unwrap()));
        assert!(job_error("ready tcp db.local:5432").contains("an IP address"));
        assert!(job_error("ready tcp 70000").contains("port"));
        assert!(job_error("ready file a\n ready file b").contains("given twice"));
        assert!(job_error("ready timeout 0s").contains("more than 0"));
        assert_eq!(job_with("ready notify").extras.ready, Readiness::Notify);
        assert_eq!(
            job_with("ready cmd /bin/pg_isready -q").extras.ready,
            Readiness::Cmd(vec!["/bin/pg_isready".into(), "-q".into()])
        );
        assert!(job_error("ready cmd pg_isready").contains("absolute path"));
        assert!(job_error("ready notify now").contains("takes no value"));
        assert!(job_error("ready notify\n ready tcp 80").contains("`ready` is given twice"));
        assert!(job_error("ready notfy").contains("did you mean `notify`?"));
    }

    /// SPEC 11.6: `log rotate` and `log timestamps`, and what they need.
    #[test]
    fn log_options() {
        let job = job_with("out app.log\n log rotate 100M 5\n log timestamps");
        let rotate = job.extras.log.rotate.unwrap();
        assert_eq!((rotate.size, rotate.keep), (100 << 20, 5));
        assert!(job.extras.log.timestamps);
        assert_eq!(
            job_with("err e.log\n log rotate 512 1")
                .extras
                .log
                .rotate
                .unwrap()
                .size,
            512
        );
        assert_eq!(
            job_with("out o\n log rotate 2k 1")
                .extras
                .log
                .rotate
                .unwrap()
                .size,
            2048
        );
        assert!(!job_with("").extras.log.written_by_pmtr());
        assert!(job_error("out o\n log rotate 0 5").contains("more than 0"));
        assert!(job_error("out o\n log rotate 10M 0").contains("KEEP `0` is not a count"));
        assert!(job_error("out o\n log rotate 99999999999G 1").contains("too large"));
        assert!(job_error("out o\n log rotate 18446744073709551615K 1").contains("too large"));
        assert!(job_error("out o\n log rotate 10X 1").contains("not a size"));
        assert!(job_error("out o\n log rotate 10M").contains("write `log rotate SIZE KEEP`"));
        assert!(job_error("out o\n log timestamp").contains("did you mean `timestamps`?"));
        let passed = job_error("out stdout\n log rotate 10M 3");
        assert!(
            passed.contains(
                "`log` acts on output files, and this job has none (`out stdout`, `err syslog`)"
            ),
            "{passed}"
        );
        assert!(job_error("log timestamps").contains("this job has none"));
    }

    /// SPEC 11.4: every `health` line, its defaults and its errors.
    #[test]
    fn health_options() {
        let job = job_with(
            "health cmd /usr/bin/curl -sf http://127.0.0.1/\n health every 5s\n health timeout 2s\n health retries 5\n health watchdog 1m",
        );
        let health = &job.extras.health;
        assert_eq!(
            health.check,
            Some(HealthCheck::Cmd(vec![
                "/usr/bin/curl".into(),
                "-sf".into(),
                "http://127.0.0.1/".into()
            ]))
        );
        assert_eq!((health.every(), health.timeout()), (5_000, 2_000));
        assert_eq!(health.retries(), 5);
        assert_eq!(health.watchdog_millis, Some(60_000));
        let default = job_with("health tcp 8080").extras.health.clone();
        assert_eq!(
            default.check,
            Some(HealthCheck::Tcp("127.0.0.1:8080".parse().unwrap()))
        );
        assert_eq!(
            (default.every(), default.timeout(), default.retries()),
            (30_000, 10_000, 3)
        );
        assert!(job_error("health every 0s").contains("more than 0"));
        assert!(job_error("health retries 0").contains("not a count from 1"));
        assert!(job_error("health retries many").contains("not a count"));
        assert!(job_error("health evry 5s").contains("did you mean `every`?"));
        assert!(job_error("health cmd curl").contains("absolute path"));
        assert!(job_error("health tcp 80\n health cmd /bin/true").contains("given twice"));
        assert!(job_error("health every").contains("needs a value"));
        assert!(job_error("health every 1s 2s").contains("takes one value"));
        assert!(job_error("health watchdog 5").contains("no time unit"));
    }

    #[test]
    fn bounce_every() {
        assert_eq!(
            job_with("bounce every 1d").extras.bounce_every_secs,
            Some(86_400)
        );
        assert_eq!(
            job_with("bounce every 90s").extras.bounce_every_secs,
            Some(90)
        );
        assert!(job_error("bounce every 10").contains("no time unit"));
        assert!(job_error("bounce 10s").contains("bounce every"));
        assert!(job_error("bounce every").contains("needs a value"));
    }

    #[test]
    fn depends() {
        let job = job_with("depends {\n  app.conf\n  /etc/hosts\n }\n depends { x }");
        assert_eq!(job.extras.depends, ["app.conf", "/etc/hosts", "x"]);
        assert!(job_error("depends app.conf").contains("`{`"));
        assert!(
            first_error("job {\n name t\n cmd /bin/true\n depends { a\n")
                .contains("no closing `}`")
        );
    }

    #[test]
    fn report_to() {
        let g = globals("report to udp://127.0.0.1:9999\nreport to udp://239.0.0.1:9999@eth2\n");
        assert_eq!(
            g.report_to,
            [
                UdpEndpoint {
                    host: "127.0.0.1".into(),
                    port: 9999,
                    interface: None
                },
                UdpEndpoint {
                    host: "239.0.0.1".into(),
                    port: 9999,
                    interface: Some("eth2".into())
                },
            ]
        );
        assert!(first_error("report to 127.0.0.1:9999").contains("not a UDP address"));
        assert!(first_error("report udp://1.2.3.4:5").contains("report to"));
    }

    #[test]
    fn listen_on() {
        let g = globals("listen on udp://0.0.0.0:10000");
        assert_eq!(g.listen_on.unwrap().port, 10000);
        assert!(
            first_error("listen on udp://0.0.0.0:1\nlisten on udp://0.0.0.0:2")
                .contains("given twice")
        );
    }

    #[test]
    fn udp_key_and_metrics_to() {
        let g = globals("udp key /etc/pmtr.key\nmetrics to /var/lib/node_exporter/pmtr.prom");
        assert_eq!(g.udp_key.as_deref(), Some("/etc/pmtr.key"));
        assert_eq!(
            g.metrics_to.as_deref(),
            Some("/var/lib/node_exporter/pmtr.prom")
        );
        assert!(first_error("udp key pmtr.key").contains("absolute path"));
        assert!(first_error("metrics to m.prom").contains("absolute path"));
    }

    #[test]
    fn nearest_finds_typos_only() {
        let names = JOB_OPTIONS.iter().map(|d| d.name);
        assert_eq!(nearest("onse", names.clone()), Some("once"));
        assert_eq!(nearest("nmae", names.clone()), Some("name"));
        assert_eq!(nearest("ulimits", names.clone()), Some("ulimit"));
        assert_eq!(nearest("xyzzy", names), None);
    }
}
