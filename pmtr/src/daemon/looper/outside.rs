//! What the global statements connect pmtr to: the UDP control port
//! (its datagrams read within a budget), the status reports sent to
//! collectors, and the metrics file.

use std::os::fd::AsFd;
use std::path::Path;

use nix::sys::epoll::EpollFlags;
use pmtr_core::config::Globals;
use pmtr_core::supervise::event::{Event, Level};

use super::Daemon;
use crate::daemon::metrics::MetricsFile;
use crate::daemon::registry::Source;
use pmtr_common::reason::Text;

impl Daemon {
    /// Changes what the control port is watched for: nothing while the
    /// second's budget of datagrams is spent.
    pub(super) fn watch_udp(&self, interest: EpollFlags) {
        if let (Some(token), Some(listener)) = (self.udp_token, self.udp.listener()) {
            self.registry.modify(listener.as_fd(), token, interest);
        }
    }

    /// Control datagrams: each passing request becomes an event.
    pub(super) fn receive_control(&mut self) {
        let now = self.clock.now();
        let most = self.udp_budget.remaining(now);
        let (requests, log, read) = self.udp.receive(most);
        for line in log {
            self.logger.log(Level::Warning, &line);
        }
        let (spent, line) = self.udp_budget.spend(read, now);
        if let Some(line) = line {
            self.logger.log(Level::Warning, &line);
        }
        if spent {
            self.watch_udp(EpollFlags::empty());
        }
        let events = requests
            .into_iter()
            .map(|(name, enabled)| Event::SetEnabled {
                name,
                enabled,
                reply: None,
            })
            .collect();
        self.apply_all(events);
    }

    /// Opens, closes or keeps the UDP sockets, key and metrics file the
    /// global statements ask for.
    pub(super) fn apply_globals(&mut self, globals: &Globals) {
        let path = globals.metrics_to.as_deref().map(Path::new);
        if path != self.metrics.as_ref().map(|m| m.path()) {
            self.metrics = path.map(MetricsFile::new);
        }
        // The listener may be replaced: watched again whatever it is.
        if let (Some(token), Some(listener)) = (self.udp_token.take(), self.udp.listener()) {
            self.registry.remove(listener.as_fd(), token);
        }
        for line in self.udp.apply(globals) {
            self.logger.log(Level::Info, &line);
        }
        if let Some(listener) = self.udp.listener() {
            match self
                .registry
                .add(listener.as_fd(), EpollFlags::EPOLLIN, Source::UdpListener)
            {
                Ok(token) => self.udp_token = Some(token),
                Err(errno) => {
                    let message = format!("unable to watch the control port: {}", Text(errno));
                    self.logger.log(Level::Error, &message);
                }
            }
        }
    }

    /// The status report, to every `report to` destination.
    pub(super) fn send_report(&mut self) {
        let jobs = self.supervisor.report(self.clock.now());
        for line in self
            .udp
            .send_report(|report_id| pmtr_core::proto::report::encode(report_id, &jobs))
        {
            self.logger.log(Level::Warning, &line);
        }
    }

    /// Rewrites the metrics file if its text changed. Usage is the last
    /// read (`refresh_usage`): reading it for every change would cost a
    /// read per job per event.
    pub(super) fn update_metrics(&mut self) {
        let Some(metrics) = &mut self.metrics else {
            return;
        };
        if self.usage_due.is_none() {
            // Metrics just asked for: usage is read at the next turn.
            self.usage_due = Some(self.clock.now());
        }
        let now = self.clock.now();
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.wall_offset = follow_wall_clock(self.wall_offset, wall - now.millis() as f64 / 1000.0);
        let mut statuses = self.supervisor.statuses(now);
        for status in &mut statuses {
            if let Some(&(memory, cpu)) = status.pid.and_then(|pid| self.usage.get(&pid)) {
                (status.memory_bytes, status.cpu_millis) = (memory, cpu);
            }
        }
        if let Err(message) =
            metrics.update(pmtr_core::metrics::render(&statuses, self.wall_offset))
        {
            self.logger.log(Level::Warning, &message);
        }
    }
}

/// The wall-clock time at monotonic zero to use: the one kept, unless the
/// one measured now differs by more than a second — the wall clock was
/// stepped (NTP, an operator), and start times must follow it. Smaller
/// differences are the jitter of measuring, which would rewrite the
/// metrics file for nothing.
fn follow_wall_clock(kept: f64, measured: f64) -> f64 {
    if (measured - kept).abs() > 1.0 {
        measured
    } else {
        kept
    }
}

#[cfg(test)]
mod tests {
    use super::follow_wall_clock;

    #[test]
    pub(super) fn start_times_follow_a_wall_clock_step_not_its_jitter() {
        let kept = 1_700_000_000.0;
        assert_eq!(follow_wall_clock(kept, kept + 0.004), kept, "jitter");
        assert_eq!(follow_wall_clock(kept, kept - 0.9), kept);
        assert_eq!(
            follow_wall_clock(kept, kept + 3600.0),
            kept + 3600.0,
            "a step"
        );
        assert_eq!(follow_wall_clock(kept, kept - 2.5), kept - 2.5);
    }
}
