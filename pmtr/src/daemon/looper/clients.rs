//! The loop's side of local control: a `pmtr-ctl` request carried to the
//! core as events, the core's replies turned into the response, and the
//! clients of `wait` and `reexec` held until the core answers them.

use pmtr_core::proto::local::{Request, Response};
use pmtr_core::supervise::event::{Event, Level, Reply, ReplyToken};

use super::Daemon;
use crate::daemon::control::Incoming;
use crate::daemon::registry::{Source, Token};
use crate::daemon::requests::{self, Outcome};
use crate::daemon::usage::{self, Purpose};

impl Daemon {
    /// Readiness of the control socket or one of its clients.
    pub(super) fn serve(&mut self, source: Source, token: Token) {
        let now = self.clock.now();
        let Some(control) = &mut self.control else {
            return;
        };
        let (incoming, refusals) = control.ready(&mut self.registry, source, token, now);
        for refusal in refusals {
            self.logger.log(Level::Warning, &refusal);
        }
        for Incoming { client, request } in incoming {
            self.answer(client, request);
        }
    }

    /// Carries a `pmtr-ctl` request to the core and its answer back.
    pub(super) fn answer(&mut self, client: Token, request: Request) {
        let mut last = self.last_token;
        let events = requests::events(&request, || {
            last += 1;
            ReplyToken(last)
        });
        self.last_token = last;
        let replies: Vec<Option<Reply>> = events
            .iter()
            .map(|(token, event)| self.ask(*token, event.clone()))
            .collect();
        // A wait the core could not answer yet is answered when it can.
        if let (Request::Wait { .. } | Request::Reexec, [(token, _)], [None]) =
            (&request, events.as_slice(), replies.as_slice())
        {
            self.waiting.insert(*token, client);
            if let Some(control) = &mut self.control {
                control.hold(client);
            }
            return;
        }
        self.respond(client, request, replies);
    }

    /// Sends a request's response, built from the core's replies.
    pub(super) fn respond(&mut self, client: Token, request: Request, replies: Vec<Option<Reply>>) {
        let responses = match requests::outcome(request, replies) {
            Outcome::Respond(responses) => {
                let statuses = responses.iter().find_map(|r| match r {
                    Response::Status { jobs } => Some(jobs.as_slice()),
                    _ => None,
                });
                if let Some(jobs) = statuses {
                    // Sent once their usage is read, off the loop.
                    let query = usage::query(jobs, self.containment.as_ref());
                    let purpose = Purpose::Status { client, responses };
                    return self.measure(query, purpose);
                }
                responses
            }
            Outcome::Logs { job, lines, follow } => {
                if follow {
                    if let Some(control) = &mut self.control {
                        control.follow(client, &job);
                    }
                }
                let last = self.captures.last(&job, lines);
                let line = |(pid, line)| Response::Line {
                    job: job.clone(),
                    pid,
                    line,
                };
                last.into_iter().map(line).collect()
            }
        };
        let now = self.clock.now();
        if let Some(control) = &mut self.control {
            control.respond(&mut self.registry, client, &responses, now);
        }
    }

    /// Answers the `pmtr-ctl wait` clients the core has answered.
    pub(super) fn answer_waiting(&mut self) {
        if self.waiting.is_empty() {
            return;
        }
        let replies = std::mem::take(&mut self.replies);
        for (token, reply) in replies {
            match self.waiting.remove(&token) {
                Some(client) => {
                    let request = Request::Wait {
                        jobs: Vec::new(),
                        timeout_millis: None,
                    };
                    self.respond(client, request, vec![Some(reply)]);
                }
                None => self.replies.push((token, reply)),
            }
        }
    }

    /// Applies a control request's event; the core's answer to `token`.
    pub(super) fn ask(&mut self, token: ReplyToken, event: Event) -> Option<Reply> {
        self.replies.clear();
        self.apply(event);
        let replies = std::mem::take(&mut self.replies);
        replies
            .into_iter()
            .find_map(|(t, reply)| (t == token).then_some(reply))
    }
}
