//! The words of the options with several kinds of line — `ready` and
//! `health` (SPEC 11.3, 11.4), `log` (SPEC 11.6): each line sets one part,
//! and says what is wrong with it at the word that is.

use super::diagnostic::Diagnostic;
use super::lex::Word;
use super::model::{HealthCheck, Job, Readiness, Rotate};
use super::options::{error, nearest};
use super::values;

/// Most `health retries`: a bound that still reads as a count.
const MAX_RETRIES: u32 = 1_000;

pub fn apply_ready(job: &mut Job, words: &[&Word<'_>], errors: &mut Vec<Diagnostic>) {
    let usage = "write `ready notify`, `ready file PATH`, `ready tcp [HOST:]PORT`, `ready cmd /PATH [ARG...]` or `ready timeout DURATION`";
    let what = words[0];
    let values = &words[1..];
    let kinds = ["notify", "file", "tcp", "cmd", "timeout"];
    if !kinds.contains(&what.text.as_ref()) {
        errors.push(error(what, format!("{usage}{}", hint(&what.text, kinds))));
        return;
    }
    if what.is("timeout") {
        if job.extras.ready_timeout_millis.is_some() {
            errors.push(error(what, "`ready timeout` is given twice"));
        } else if let Some(millis) = duration(values, what, "ready timeout", errors) {
            job.extras.ready_timeout_millis = Some(millis);
        }
        return;
    }
    if job.extras.ready != Readiness::Started {
        errors.push(error(what, "`ready` is given twice"));
        return;
    }
    let readiness = match what.text.as_ref() {
        "notify" => match values.first() {
            Some(extra) => {
                errors.push(error(extra, "`ready notify` takes no value"));
                None
            }
            None => Some(Readiness::Notify),
        },
        "cmd" => command(values, what, "ready cmd", errors).map(Readiness::Cmd),
        "tcp" => tcp(values, what, "ready tcp", errors).map(Readiness::Tcp),
        _ => one(values, what, "ready file", errors).map(|w| Readiness::File(w.text.to_string())),
    };
    if let Some(readiness) = readiness {
        job.extras.ready = readiness;
    }
}

pub fn apply_health(job: &mut Job, words: &[&Word<'_>], errors: &mut Vec<Diagnostic>) {
    let usage = "write `health cmd /PATH [ARG...]`, `health tcp [HOST:]PORT`, `health every DURATION`, `health timeout DURATION`, `health retries N` or `health watchdog DURATION`";
    let what = words[0];
    let values = &words[1..];
    let kinds = ["cmd", "tcp", "every", "timeout", "retries", "watchdog"];
    if !kinds.contains(&what.text.as_ref()) {
        errors.push(error(what, format!("{usage}{}", hint(&what.text, kinds))));
        return;
    }
    let health = &mut job.extras.health;
    let twice = match what.text.as_ref() {
        "cmd" | "tcp" => health.check.is_some(),
        "every" => health.every_millis.is_some(),
        "timeout" => health.timeout_millis.is_some(),
        "retries" => health.retries.is_some(),
        _ => health.watchdog_millis.is_some(),
    };
    if twice {
        let option = match what.text.as_ref() {
            "cmd" | "tcp" => "health cmd|tcp".to_string(),
            other => format!("health {other}"),
        };
        errors.push(error(what, format!("`{option}` is given twice")));
        return;
    }
    let option = format!("health {}", what.text);
    match what.text.as_ref() {
        "cmd" => health.check = command(values, what, &option, errors).map(HealthCheck::Cmd),
        "tcp" => health.check = tcp(values, what, &option, errors).map(HealthCheck::Tcp),
        "every" => health.every_millis = duration(values, what, &option, errors),
        "timeout" => health.timeout_millis = duration(values, what, &option, errors),
        "watchdog" => health.watchdog_millis = duration(values, what, &option, errors),
        _ => {
            let word = one(values, what, &option, errors);
            health.retries = word.and_then(|word| match word.text.parse::<u32>() {
                Ok(n) if (1..=MAX_RETRIES).contains(&n) => Some(n),
                _ => {
                    let message = format!(
                        "health retries: `{}` is not a count from 1 to {MAX_RETRIES}",
                        word.text
                    );
                    errors.push(error(word, message));
                    None
                }
            });
        }
    }
}

/// Most old files `log rotate` keeps.
const MAX_KEEP: u32 = 1_000;

pub fn apply_log(job: &mut Job, words: &[&Word<'_>], errors: &mut Vec<Diagnostic>) {
    let usage = "write `log rotate SIZE KEEP` or `log timestamps`";
    let what = words[0];
    let values = &words[1..];
    match what.text.as_ref() {
        "timestamps" if job.extras.log.timestamps => {
            errors.push(error(what, "`log timestamps` is given twice"))
        }
        "timestamps" => match values.first() {
            Some(extra) => errors.push(error(extra, "`log timestamps` takes no value")),
            None => job.extras.log.timestamps = true,
        },
        "rotate" if job.extras.log.rotate.is_some() => {
            errors.push(error(what, "`log rotate` is given twice"))
        }
        "rotate" => {
            let [size, keep] = values else {
                let at = values.get(2).unwrap_or(&what);
                errors.push(error(
                    at,
                    "write `log rotate SIZE KEEP`, like `log rotate 100M 5`",
                ));
                return;
            };
            let size = values::size(&size.text)
                .map_err(|message| errors.push(error(size, format!("log rotate: {message}"))));
            let keep = match keep.text.parse::<u32>() {
                Ok(n) if (1..=MAX_KEEP).contains(&n) => Ok(n),
                _ => {
                    let message = format!(
                        "log rotate: KEEP `{}` is not a count from 1 to {MAX_KEEP}",
                        keep.text
                    );
                    errors.push(error(keep, message));
                    Err(())
                }
            };
            if let (Ok(size), Ok(keep)) = (size, keep) {
                job.extras.log.rotate = Some(Rotate { size, keep });
            }
        }
        other => errors.push(error(
            what,
            format!("{usage}{}", hint(other, ["rotate", "timestamps"])),
        )),
    }
}

/// `; did you mean `x`?` when `word` is near one of `known`.
fn hint<const N: usize>(word: &str, known: [&'static str; N]) -> String {
    nearest(word, known).map_or(String::new(), |near| format!("; did you mean `{near}`?"))
}

/// The one value after `what`, or an error saying it is missing or extra.
fn one<'w, 's>(
    values: &'s [&'w Word<'w>],
    what: &Word<'_>,
    option: &str,
    errors: &mut Vec<Diagnostic>,
) -> Option<&'s Word<'w>> {
    match values {
        [value] => Some(value),
        [] => {
            errors.push(error(what, format!("`{option}` needs a value")));
            None
        }
        [_, extra, ..] => {
            errors.push(error(extra, format!("`{option}` takes one value")));
            None
        }
    }
}

fn duration(
    values: &[&Word<'_>],
    what: &Word<'_>,
    option: &str,
    errors: &mut Vec<Diagnostic>,
) -> Option<u64> {
    let value = one(values, what, option, errors)?;
    values::duration_millis(&value.text)
        .map_err(|message| errors.push(error(value, format!("{option}: {message}"))))
        .ok()
}

fn tcp(
    values: &[&Word<'_>],
    what: &Word<'_>,
    option: &str,
    errors: &mut Vec<Diagnostic>,
) -> Option<std::net::SocketAddr> {
    let value = one(values, what, option, errors)?;
    values::tcp_address(&value.text)
        .map_err(|message| errors.push(error(value, format!("{option}: {message}"))))
        .ok()
}

/// A probe command: `argv[0]` absolute, as for `cmd`.
fn command(
    values: &[&Word<'_>],
    what: &Word<'_>,
    option: &str,
    errors: &mut Vec<Diagnostic>,
) -> Option<Vec<String>> {
    let Some(program) = values.first() else {
        errors.push(error(what, format!("`{option}` needs a command")));
        return None;
    };
    if !program.text.starts_with('/') {
        let message = format!(
            "{option} must start with an absolute path (pmtr does no $PATH search): `{}`",
            program.text
        );
        errors.push(error(program, message));
        return None;
    }
    Some(values.iter().map(|w| w.text.to_string()).collect())
}
