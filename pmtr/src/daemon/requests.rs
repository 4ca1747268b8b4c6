//! Answering `pmtr-ctl`: each request from the control socket becomes
//! events for the supervisor and a response for the client.

use std::os::fd::RawFd;

use pmtr_core::proto::local::{JobResult, Request, Response};
use pmtr_core::status::job_status;
use pmtr_core::supervise::event::{Event, Level, ReplyToken};
use pmtr_core::supervise::messages;

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
            Request::Status { job } => self.status(job.as_deref()),
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
                self.last_reload = None;
                self.apply(Event::ReloadRequested);
                let (ok, message) = match self.last_reload.take() {
                    Some(Ok(())) => (true, "configuration reloaded".to_string()),
                    Some(Err(errors)) => (
                        false,
                        format!("the configuration was not applied:\n{}", errors.trim_end()),
                    ),
                    None => (false, messages::shutting_down_reply().to_string()),
                };
                vec![Response::Done {
                    results: vec![JobResult {
                        job: String::new(),
                        ok,
                        message,
                    }],
                }]
            }
            Request::Logs { job, lines, follow } => {
                if !self.knows(&job) {
                    vec![Response::Error {
                        message: messages::unknown_job_reply(&job),
                    }]
                } else {
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
            }
        };
        let now = self.clock.now();
        if let Some(control) = &mut self.control {
            control.respond(&self.epoll, client, &responses, now);
        }
    }

    fn knows(&self, job: &str) -> bool {
        self.supervisor.jobs().iter().any(|j| j.def.name == job)
    }

    fn status(&self, job: Option<&str>) -> Vec<Response> {
        let now = self.clock.now();
        let jobs: Vec<_> = self
            .supervisor
            .jobs()
            .iter()
            .filter(|j| job.is_none_or(|name| j.def.name == name))
            .map(|j| job_status(j, now))
            .collect();
        match job {
            Some(name) if jobs.is_empty() => vec![Response::Error {
                message: messages::unknown_job_reply(name),
            }],
            _ => vec![Response::Status { jobs }],
        }
    }

    /// Hands the request for each named job to the core, and passes on
    /// the core's answer: one result per name, in the order asked.
    fn each_job(
        &mut self,
        jobs: Vec<String>,
        event: impl Fn(String, Option<ReplyToken>) -> Event,
    ) -> Vec<Response> {
        let mut results = Vec::with_capacity(jobs.len());
        for (index, name) in jobs.into_iter().enumerate() {
            let token = ReplyToken(index as u64);
            self.replies.clear();
            self.apply(event(name.clone(), Some(token)));
            let reply = self.replies.iter().find(|(t, _, _)| *t == token);
            let (ok, message) = match reply {
                Some((_, ok, message)) => (*ok, message.clone()),
                // The core answers every request it is given; say so if not.
                None => (false, "no answer from the supervisor".to_string()),
            };
            results.push(JobResult {
                job: name,
                ok,
                message,
            });
        }
        self.replies.clear();
        vec![Response::Done { results }]
    }
}
