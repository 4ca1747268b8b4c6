//! The loop as pmtr starts it: the epoll registry and what it first
//! watches — signals, the configuration's files, the control and notify
//! sockets (those a reexec'd pmtr handed over, else new ones) and the jobs'
//! cgroups.

use std::os::fd::AsFd;
use std::path::Path;

use nix::sys::epoll::EpollFlags;
use nix::sys::signalfd::SignalFd;
use pmtr_core::config::Config;
use pmtr_core::proto::state::Handed;
use pmtr_core::supervise::event::Level;
use pmtr_core::supervise::Supervisor;

use super::{Clock, Daemon, LoopError};
use crate::config_file;
use crate::daemon::cgroups::Containment;
use crate::daemon::checks::Checks;
use crate::daemon::control::ControlServer;
use crate::daemon::handover::{Inherited, StateFile};
use crate::daemon::log::Logger;
use crate::daemon::notices::NotifySocket;
use crate::daemon::notify::Notifier;
use crate::daemon::output::Captures;
use crate::daemon::registry::{Registry, Source};
use crate::daemon::spawner::Spawner;
use crate::daemon::test_times;
use crate::daemon::udp::{ControlBudget, Udp};
use crate::daemon::usage::{Measurer, OomWatch};
use crate::daemon::watch::Watcher;
use crate::sys::plan::PlanContext;
use crate::sys::process;
use pmtr_common::reason::Text;

impl Daemon {
    /// A daemon for `config`, read from `config_path` (and the files it
    /// includes) with content hash `config_hash`, serving local control on
    /// `socket`.
    pub fn new(
        config: &Config,
        config_hash: u64,
        (config_path, includes): (&Path, &config_file::Includes),
        socket: Option<&Path>,
        signals: SignalFd,
        mut logger: Logger,
        (context, containment, inherited): (PlanContext, Option<Containment>, Inherited),
    ) -> Result<Daemon, LoopError> {
        let handed = match &inherited {
            Inherited::Exec(state) => state.handed.clone().unwrap_or_default(),
            Inherited::Nothing | Inherited::Crashed(_) => Handed::default(),
        };
        let mut registry = Registry::new().map_err(|errno| LoopError {
            what: "create the epoll instance",
            errno,
        })?;
        registry
            .add(signals.as_fd(), EpollFlags::EPOLLIN, Source::Signals)
            .map_err(|errno| LoopError {
                what: "watch signals",
                errno,
            })?;
        let (times, unknown_times) = test_times::from_environment();
        for item in unknown_times {
            let variable = test_times::VARIABLE;
            logger.log(Level::Warning, &format!("{variable}: ignoring `{item}`"));
        }
        let supervisor = Supervisor::with_policy(config, config_hash, times.policy);
        let (mut watcher, mut errors) = Watcher::new(config_path);
        errors.extend(watcher.set_includes(includes));
        errors.extend(watcher.set_dependencies(&supervisor.dependency_paths()));
        for error in errors {
            logger.log(Level::Warning, &error.to_string());
        }
        if let Some(fd) = watcher.fd() {
            if let Err(errno) = registry.add(fd, EpollFlags::EPOLLIN, Source::Watcher) {
                let message = format!("unable to watch files: {}; reload with SIGHUP", Text(errno));
                logger.log(Level::Warning, &message);
            }
        }
        let deadline = times.client_deadline_millis;
        let server = match (socket, handed.control.and_then(process::take_handed)) {
            (Some(path), Some(listener)) => {
                Some(Ok(ControlServer::adopt(listener, path, deadline)))
            }
            (Some(path), None) => Some(ControlServer::bind(path, deadline)),
            (None, _) => None,
        };
        let control = server.and_then(|server| match server {
            Ok(mut server) => match server.register(&mut registry) {
                Ok(()) => Some(server),
                Err(errno) => {
                    let message = format!("unable to serve the control socket: {}", Text(errno));
                    logger.log(Level::Warning, &message);
                    None
                }
            },
            Err(error) => {
                let message = format!("{error}; pmtr-ctl will not reach this pmtr");
                logger.log(Level::Warning, &message);
                None
            }
        });
        let handed_notify = handed.notify.clone().and_then(|(fd, address)| {
            let socket = process::take_handed(fd)?;
            Some(NotifySocket::adopt(socket, address, &mut registry))
        });
        let notices = match handed_notify.unwrap_or_else(|| NotifySocket::open(&mut registry)) {
            Ok(socket) => Some(socket),
            Err(error) => {
                let message =
                    format!("{error}; `ready notify` and `health watchdog` will not work");
                logger.log(Level::Warning, &message);
                None
            }
        };
        if let Some(containment) = &containment {
            if let Err(errno) = registry.add(containment.fd(), EpollFlags::EPOLLIN, Source::Cgroups)
            {
                let message = format!(
                    "unable to watch the jobs' cgroups: {}; a job is gone when its process group is",
                    Text(errno)
                );
                logger.log(Level::Warning, &message);
            }
        }
        let mut spawner = Spawner::new();
        spawner.set_notify_address(notices.as_ref().map(|n| n.address().to_string()));
        Ok(Daemon {
            supervisor,
            registry,
            signals,
            watcher,
            config_path: config_path.to_path_buf(),
            logger,
            clock: Clock,
            spawner,
            context,
            captures: Captures::default(),
            checks: Checks::default(),
            notices,
            control,
            udp: Udp::new(),
            udp_token: None,
            udp_budget: ControlBudget::default(),
            metrics: None,
            wall_offset: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            notifier: Notifier::from_env(),
            ready_sent: false,
            release_due: None,
            waiting: std::collections::HashMap::new(),
            replies: Vec::new(),
            last_token: 0,
            exit: None,
            reaping: false,
            read_configs: Vec::new(),
            containment,
            oom: OomWatch::new(),
            usage: std::collections::HashMap::new(),
            usage_due: None,
            measurer: Measurer::default(),
            inherited: Some(inherited),
            state_file: socket.map(StateFile::beside),
            state_dirty: true,
            state_due: None,
            reexec_check_millis: times.reexec_check_millis,
            release_after_millis: times.release_after_millis,
            reexec: None,
            adopted: std::collections::HashMap::new(),
        })
    }
}
