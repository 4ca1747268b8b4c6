//! The local control protocol between `pmtr-ctl` and pmtr over a Unix
//! stream socket: one request line per connection, answered by JSON lines
//! until pmtr closes the connection (or, for `logs --follow`, until the
//! client does). Documented in docs/PROTOCOL.md.

use serde::{Deserialize, Serialize};

use crate::status::JobStatus;

/// Longest request line pmtr reads, newline included.
pub const MAX_REQUEST: usize = 4096;

/// Most log lines a `logs` request may ask for.
pub const MAX_LOG_LINES: usize = 100_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// All jobs, or the one named.
    Status {
        job: Option<String>,
    },
    Enable {
        jobs: Vec<String>,
    },
    Disable {
        jobs: Vec<String>,
    },
    Restart {
        jobs: Vec<String>,
    },
    Reload,
    /// Hand the jobs to the binary now at pmtr's path (SPEC 11.8).
    Reexec,
    /// The last `lines` captured lines of a job, then (with `follow`) every
    /// new one.
    Logs {
        job: String,
        lines: usize,
        follow: bool,
    },
    /// Answered once every job named is ready, one has failed, or
    /// `timeout_millis` has passed.
    Wait {
        jobs: Vec<String>,
        timeout_millis: Option<u64>,
    },
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("request longer than {MAX_REQUEST} bytes")]
    TooLong,
    #[error("request is not UTF-8 text")]
    NotText,
    #[error("empty request")]
    Empty,
    #[error("unknown request `{0}`")]
    Unknown(String),
    #[error("`{0}` needs a job name")]
    MissingName(&'static str),
    #[error("`{0}` is not a number of lines")]
    BadCount(String),
    #[error("unexpected `{0}`")]
    Unexpected(String),
}

impl Request {
    /// The request line, newline included.
    pub fn encode(&self) -> String {
        let line = match self {
            Request::Status { job: None } => "status".to_string(),
            Request::Status { job: Some(job) } => format!("status {job}"),
            Request::Enable { jobs } => format!("enable {}", jobs.join(" ")),
            Request::Disable { jobs } => format!("disable {}", jobs.join(" ")),
            Request::Restart { jobs } => format!("restart {}", jobs.join(" ")),
            Request::Reload => "reload".to_string(),
            Request::Reexec => "reexec".to_string(),
            Request::Wait {
                jobs,
                timeout_millis,
            } => match timeout_millis {
                Some(millis) => format!("wait {millis}ms {}", jobs.join(" ")),
                None => format!("wait - {}", jobs.join(" ")),
            },
            Request::Logs { job, lines, follow } => {
                format!("logs {job} {lines}{}", if *follow { " follow" } else { "" })
            }
        };
        line + "\n"
    }

    /// Parses a request line (without or with its newline).
    pub fn decode(bytes: &[u8]) -> Result<Request, RequestError> {
        if bytes.len() > MAX_REQUEST {
            return Err(RequestError::TooLong);
        }
        let text = std::str::from_utf8(bytes).map_err(|_| RequestError::NotText)?;
        let mut words = text.split_ascii_whitespace();
        let verb = words.next().ok_or(RequestError::Empty)?;
        let names = |words: std::str::SplitAsciiWhitespace<'_>, verb: &'static str| {
            let jobs: Vec<String> = words.map(str::to_string).collect();
            if jobs.is_empty() {
                Err(RequestError::MissingName(verb))
            } else {
                Ok(jobs)
            }
        };
        let request = match verb {
            "status" => Request::Status {
                job: words.next().map(str::to_string),
            },
            "enable" => {
                return Ok(Request::Enable {
                    jobs: names(words, "enable")?,
                })
            }
            "disable" => {
                return Ok(Request::Disable {
                    jobs: names(words, "disable")?,
                })
            }
            "restart" => {
                return Ok(Request::Restart {
                    jobs: names(words, "restart")?,
                })
            }
            "reload" => Request::Reload,
            "reexec" => Request::Reexec,
            "wait" => {
                let timeout = words.next().ok_or(RequestError::MissingName("wait"))?;
                let timeout_millis = match timeout {
                    "-" => None,
                    millis => Some(
                        millis
                            .strip_suffix("ms")
                            .and_then(|digits| digits.parse::<u64>().ok())
                            .ok_or_else(|| {
                                RequestError::Unexpected(millis.chars().take(40).collect())
                            })?,
                    ),
                };
                return Ok(Request::Wait {
                    jobs: names(words, "wait")?,
                    timeout_millis,
                });
            }
            "logs" => {
                let job = words
                    .next()
                    .ok_or(RequestError::MissingName("logs"))?
                    .to_string();
                let count = words.next().unwrap_or("10");
                let lines = count
                    .parse::<usize>()
                    .ok()
                    .filter(|&n| n <= MAX_LOG_LINES)
                    .ok_or_else(|| RequestError::BadCount(count.to_string()))?;
                let follow = match words.next() {
                    None => false,
                    Some("follow") => true,
                    Some(other) => return Err(RequestError::Unexpected(other.to_string())),
                };
                Request::Logs { job, lines, follow }
            }
            other => return Err(RequestError::Unknown(other.chars().take(40).collect())),
        };
        match words.next() {
            Some(extra) => Err(RequestError::Unexpected(extra.chars().take(40).collect())),
            None => Ok(request),
        }
    }
}

/// One JSON line of a response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Response {
    /// The answer to `status`.
    Status { jobs: Vec<JobStatus> },
    /// The answer to `enable`, `disable`, `restart`, `reload`: one result
    /// per job named.
    Done { results: Vec<JobResult> },
    /// One captured output line (answer to `logs`, repeated).
    Line { job: String, pid: i32, line: String },
    /// The request was refused: bad request, no such job, not allowed.
    Error { message: String },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobResult {
    pub job: String,
    pub ok: bool,
    pub message: String,
}

impl Response {
    /// The JSON line, newline included.
    pub fn encode(&self) -> String {
        let mut line = serde_json::to_string(self).unwrap_or_else(|e| {
            format!("{{\"type\":\"error\",\"message\":\"unable to encode the response: {e}\"}}")
        });
        line.push('\n');
        line
    }

    pub fn decode(line: &str) -> Result<Response, serde_json::Error> {
        serde_json::from_str(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::State;

    #[test]
    fn requests_round_trip() {
        let requests = [
            Request::Status { job: None },
            Request::Status {
                job: Some("web".into()),
            },
            Request::Enable {
                jobs: vec!["a".into(), "b".into()],
            },
            Request::Disable {
                jobs: vec!["a".into()],
            },
            Request::Restart {
                jobs: vec!["a".into()],
            },
            Request::Reload,
            Request::Reexec,
            Request::Logs {
                job: "a".into(),
                lines: 20,
                follow: true,
            },
            Request::Logs {
                job: "a".into(),
                lines: 0,
                follow: false,
            },
        ];
        for request in requests {
            assert_eq!(Request::decode(request.encode().as_bytes()), Ok(request));
        }
    }

    #[test]
    fn bad_requests_say_why() {
        assert_eq!(Request::decode(b""), Err(RequestError::Empty));
        assert_eq!(Request::decode(b"  \n"), Err(RequestError::Empty));
        assert_eq!(
            Request::decode(b"enable"),
            Err(RequestError::MissingName("enable"))
        );
        assert_eq!(
            Request::decode(b"frobnicate x"),
            Err(RequestError::Unknown("frobnicate".into()))
        );
        assert_eq!(
            Request::decode(b"status a b"),
            Err(RequestError::Unexpected("b".into()))
        );
        assert_eq!(
            Request::decode(b"logs a many"),
            Err(RequestError::BadCount("many".into()))
        );
        assert_eq!(
            Request::decode(b"logs a 5 sideways"),
            Err(RequestError::Unexpected("sideways".into()))
        );
        assert_eq!(Request::decode(&[0xff, 0xfe]), Err(RequestError::NotText));
        assert_eq!(
            Request::decode(&vec![b'a'; MAX_REQUEST + 1]),
            Err(RequestError::TooLong)
        );
        assert_eq!(
            Request::decode(b"logs a 10 follow"),
            Ok(Request::Logs {
                job: "a".into(),
                lines: 10,
                follow: true
            })
        );
        assert_eq!(
            Request::decode(b"logs a"),
            Ok(Request::Logs {
                job: "a".into(),
                lines: 10,
                follow: false
            })
        );
    }

    #[test]
    fn responses_round_trip_as_json_lines() {
        let responses = [
            Response::Status {
                jobs: vec![JobStatus {
                    name: "a".into(),
                    state: State::Running,
                    enabled: true,
                    pid: Some(4),
                    uptime_seconds: Some(9),
                    restart_in_seconds: None,
                    restarts: 0,
                    last_exit: None,
                    started: None,
                    waiting_for: None,
                    healthy: Some(false),
                    health_failures: 2,
                    check_output: Some("curl: (7) Failed to connect".into()),
                    notify_status: None,
                    memory_bytes: None,
                    cpu_millis: None,
                }],
            },
            Response::Done {
                results: vec![JobResult {
                    job: "a".into(),
                    ok: true,
                    message: "disabled".into(),
                }],
            },
            Response::Line {
                job: "a".into(),
                pid: 3,
                line: "hello \"world\"\n".into(),
            },
            Response::Error {
                message: "no".into(),
            },
        ];
        for response in responses {
            let line = response.encode();
            assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
            assert_eq!(Response::decode(&line).unwrap(), response);
        }
        assert_eq!(
            Response::Error {
                message: "x".into()
            }
            .encode(),
            "{\"type\":\"error\",\"message\":\"x\"}\n"
        );
    }
}
