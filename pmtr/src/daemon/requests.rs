//! Carrying `pmtr-ctl` requests to the core and its answers back: each
//! request from the control socket becomes an event with a reply token,
//! and the core's `Reply` becomes the response. Nothing is decided here.

use std::os::fd::RawFd;

use pmtr_core::proto::local::{JobResult, Request, Response};
use pmtr_core::supervise::event::{Event, Level, Reply, ReplyToken};

use super::control::Incoming;
use super::looper::Daemon;

impl Daemon {
    /// Readiness of a control-socket descriptor.
    pub(super) fn serve(&mut self, fd: RawFd) {
        let now = self.clock.now();
        let Some(control) = &mut self.control else {
            return;
        };
        let (incoming, refusals) = control.ready(&self.epoll, fd, now);
        for refusal in refusals {
            self.logger.log(Level::Warning, &refusal);
        }
        for Incoming { client, request } in incoming {
            self.answer(client, request);
        }
    }

    fn answer(&mut self, client: RawFd, request: Request) {
        let responses = match request {
            Request::Status { job } => match self.ask(|reply| Event::Status { job, reply }) {
                Reply::Status(jobs) => vec![Response::Status { jobs }],
                other => refusal(other),
            },
            Request::Enable { jobs } => self.each_job(jobs, |name, reply| Event::SetEnabled {
                name,
                enabled: true,
                reply,
            }),
            Request::Disable { jobs } => self.each_job(jobs, |name, reply| Event::SetEnabled {
                name,
                enabled: false,
                reply,
            }),
            Request::Restart { jobs } => {
                self.each_job(jobs, |name, reply| Event::Restart { name, reply })
            }
            Request::Reload => {
                let answer = self.ask(|reply| Event::ReloadRequested { reply: Some(reply) });
                let (ok, message) = done(answer);
                vec![Response::Done {
                    results: vec![JobResult {
                        job: String::new(),
                        ok,
                        message,
                    }],
                }]
            }
            Request::Logs { job, lines, follow } => {
                match self.ask(|reply| Event::Logs { job, reply }) {
                    Reply::Logs { job } => self.logs(client, job, lines, follow),
                    other => refusal(other),
                }
            }
        };
        let now = self.clock.now();
        if let Some(control) = &mut self.control {
            control.respond(&self.epoll, client, &responses, now);
        }
    }

    /// The captured lines of `job`, and from now on its new ones if
    /// `follow`.
    fn logs(&mut self, client: RawFd, job: String, lines: usize, follow: bool) -> Vec<Response> {
        if follow {
            if let Some(control) = &mut self.control {
                control.follow(client, &job);
            }
        }
        self.rings
            .last(&job, lines)
            .into_iter()
            .map(|(pid, line)| Response::Line {
                job: job.clone(),
                pid,
                line,
            })
            .collect()
    }

    /// Hands the core the event `request` makes with a fresh token, and
    /// returns the core's answer to it.
    fn ask(&mut self, request: impl FnOnce(ReplyToken) -> Event) -> Reply {
        self.next_token += 1;
        let token = ReplyToken(self.next_token);
        self.replies.clear();
        self.apply(request(token));
        let answer = self
            .replies
            .drain(..)
            .find_map(|(t, reply)| (t == token).then_some(reply));
        // The core answers every request it is given; say so if not.
        answer.unwrap_or(Reply::Done {
            ok: false,
            message: "no answer from the supervisor".to_string(),
        })
    }

    /// Hands the request for each named job to the core, and passes on
    /// the core's answer: one result per name, in the order asked.
    fn each_job(
        &mut self,
        jobs: Vec<String>,
        event: impl Fn(String, Option<ReplyToken>) -> Event,
    ) -> Vec<Response> {
        let mut results = Vec::with_capacity(jobs.len());
        for name in jobs {
            let (ok, message) = done(self.ask(|token| event(name.clone(), Some(token))));
            results.push(JobResult {
                job: name,
                ok,
                message,
            });
        }
        vec![Response::Done { results }]
    }
}

/// A request carried out or refused: whether, and what to say.
fn done(reply: Reply) -> (bool, String) {
    match reply {
        Reply::Done { ok, message } => (ok, message),
        other => (
            false,
            format!("unexpected answer from the supervisor: {other:?}"),
        ),
    }
}

/// The refusal the core answered with, as an error response.
fn refusal(reply: Reply) -> Vec<Response> {
    vec![Response::Error {
        message: done(reply).1,
    }]
}
