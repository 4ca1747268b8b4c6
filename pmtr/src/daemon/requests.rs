//! The translation between `pmtr-ctl`'s requests and the core: each
//! request becomes events carrying reply tokens, and the core's replies
//! become the responses. Pure: nothing here is decided, only carried.

use pmtr_core::proto::local::{JobResult, Request, Response};
use pmtr_core::supervise::event::{Event, Reply, ReplyToken};

/// What the daemon does once the core has answered.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Respond(Vec<Response>),
    /// Send `job`'s last `lines` lines, and follow it if asked.
    Logs {
        job: String,
        lines: usize,
        follow: bool,
    },
}

/// The events `request` becomes, each with the token from `mint` it
/// carries (the core's reply names it).
pub fn events(request: &Request, mut mint: impl FnMut() -> ReplyToken) -> Vec<(ReplyToken, Event)> {
    let mut asked = |make: &dyn Fn(ReplyToken) -> Event| {
        let token = mint();
        (token, make(token))
    };
    match request {
        Request::Status { job } => vec![asked(&|reply| Event::Status {
            job: job.clone(),
            reply,
        })],
        Request::Enable { jobs } => jobs
            .iter()
            .map(|name| asked(&|token| set(name.clone(), true, token)))
            .collect(),
        Request::Disable { jobs } => jobs
            .iter()
            .map(|name| asked(&|token| set(name.clone(), false, token)))
            .collect(),
        Request::Restart { jobs } => jobs
            .iter()
            .map(|name| {
                asked(&|token| Event::Restart {
                    name: name.clone(),
                    reply: Some(token),
                })
            })
            .collect(),
        Request::Reload => vec![asked(&|token| Event::ReloadRequested {
            reply: Some(token),
        })],
        Request::Reexec => vec![asked(&|reply| Event::Reexec { reply })],
        Request::Wait {
            jobs,
            timeout_millis,
        } => vec![asked(&|reply| Event::Wait {
            jobs: jobs.clone(),
            timeout_millis: *timeout_millis,
            reply,
        })],
        Request::Logs { job, .. } => vec![asked(&|reply| Event::Logs {
            job: job.clone(),
            reply,
        })],
    }
}

fn set(name: String, enabled: bool, token: ReplyToken) -> Event {
    Event::SetEnabled {
        name,
        enabled,
        reply: Some(token),
    }
}

/// What to do with the core's `replies` to the events of `request`, in
/// their order; a missing reply is a refusal that says so.
pub fn outcome(request: Request, replies: Vec<Option<Reply>>) -> Outcome {
    let mut replies = replies.into_iter().map(|reply| {
        reply.unwrap_or(Reply::Done {
            ok: false,
            message: "no answer from the supervisor".to_string(),
        })
    });
    let done = |jobs: Vec<String>, replies: &mut dyn Iterator<Item = Reply>| {
        let results = jobs
            .into_iter()
            .map(|job| {
                let (ok, message) = done(replies.next());
                JobResult { job, ok, message }
            })
            .collect();
        Outcome::Respond(vec![Response::Done { results }])
    };
    match request {
        Request::Enable { jobs } | Request::Disable { jobs } | Request::Restart { jobs } => {
            done(jobs, &mut replies)
        }
        Request::Reload | Request::Reexec | Request::Wait { .. } => {
            done(vec![String::new()], &mut replies)
        }
        Request::Status { .. } => match replies.next() {
            Some(Reply::Status(jobs)) => Outcome::Respond(vec![Response::Status { jobs }]),
            other => refusal(other),
        },
        Request::Logs { lines, follow, .. } => match replies.next() {
            Some(Reply::Logs { job }) => Outcome::Logs { job, lines, follow },
            other => refusal(other),
        },
    }
}

/// A request carried out or refused: whether, and what to say.
fn done(reply: Option<Reply>) -> (bool, String) {
    match reply {
        Some(Reply::Done { ok, message }) => (ok, message),
        other => (
            false,
            format!("unexpected answer from the supervisor: {other:?}"),
        ),
    }
}

fn refusal(reply: Option<Reply>) -> Outcome {
    Outcome::Respond(vec![Response::Error {
        message: done(reply).1,
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> impl FnMut() -> ReplyToken {
        let mut next = 0;
        move || {
            next += 1;
            ReplyToken(next)
        }
    }

    #[test]
    fn one_event_per_named_job_and_one_result_per_reply_in_order() {
        let request = Request::Disable {
            jobs: vec!["a".into(), "ghost".into()],
        };
        let events = events(&request, tokens());
        assert_eq!(
            events,
            [
                (ReplyToken(1), set("a".into(), false, ReplyToken(1))),
                (ReplyToken(2), set("ghost".into(), false, ReplyToken(2)))
            ]
        );
        let replies = vec![
            Some(Reply::Done {
                ok: true,
                message: "disabled".into(),
            }),
            Some(Reply::Done {
                ok: false,
                message: "no job named ghost".into(),
            }),
        ];
        let Outcome::Respond(responses) = outcome(request, replies) else {
            panic!("not a response");
        };
        let [Response::Done { results }] = responses.as_slice() else {
            panic!("{responses:?}");
        };
        let results: Vec<_> = results
            .iter()
            .map(|r| (r.job.as_str(), r.ok, r.message.as_str()))
            .collect();
        assert_eq!(
            results,
            [
                ("a", true, "disabled"),
                ("ghost", false, "no job named ghost")
            ]
        );
    }

    #[test]
    fn a_refused_status_or_logs_request_is_an_error_response() {
        let refused = || {
            Some(Reply::Done {
                ok: false,
                message: "no job named x".into(),
            })
        };
        for request in [
            Request::Status {
                job: Some("x".into()),
            },
            Request::Logs {
                job: "x".into(),
                lines: 5,
                follow: true,
            },
        ] {
            assert_eq!(
                outcome(request, vec![refused()]),
                Outcome::Respond(vec![Response::Error {
                    message: "no job named x".into()
                }])
            );
        }
        let logs = Request::Logs {
            job: "x".into(),
            lines: 5,
            follow: true,
        };
        let found = Some(Reply::Logs { job: "x".into() });
        assert_eq!(
            outcome(logs, vec![found]),
            Outcome::Logs {
                job: "x".into(),
                lines: 5,
                follow: true
            }
        );
    }

    #[test]
    fn a_missing_reply_is_a_refusal_that_says_so() {
        let Outcome::Respond(responses) = outcome(Request::Reload, vec![None]) else {
            panic!("not a response");
        };
        assert_eq!(
            responses,
            [Response::Done {
                results: vec![JobResult {
                    job: String::new(),
                    ok: false,
                    message: "no answer from the supervisor".into(),
                }]
            }]
        );
    }
}
