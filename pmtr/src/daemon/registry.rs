//! The epoll set and what each registered descriptor is. An epoll event
//! carries a `Token` — a slot and that slot's generation — never a raw fd:
//! a descriptor closed and its number reused within one batch of events
//! cannot be mistaken for the old one, because the old token's generation
//! no longer matches.

use std::os::fd::{AsFd, BorrowedFd};

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

/// What a registered descriptor is, which decides who reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Signals,
    Watcher,
    ControlListener,
    ControlClient,
    UdpListener,
    /// A forked child's status pipe, until it execs.
    Setup,
    /// A job's captured output.
    Capture,
    /// A readiness or health check: a TCP connect, a command's output.
    Check,
    /// The sd_notify socket of the jobs.
    Notify,
    /// The jobs' `cgroup.events` (SPEC 11.7).
    Cgroups,
    /// The pidfd of a job adopted from a pmtr that died (SPEC 11.8).
    Adopted,
    /// A usage measurement's thread is done (daemon/usage.rs).
    Usage,
}

/// Names one registration for as long as it lasts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Token(u64);

impl Token {
    fn new(slot: u32, generation: u32) -> Token {
        Token((u64::from(generation) << 32) | u64::from(slot))
    }

    fn slot(self) -> usize {
        (self.0 & u64::from(u32::MAX)) as usize
    }

    fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

#[derive(Clone, Copy)]
struct Slot {
    generation: u32,
    source: Option<Source>,
}

pub struct Registry {
    epoll: Epoll,
    slots: Vec<Slot>,
    free: Vec<u32>,
}

impl Registry {
    pub fn new() -> Result<Registry, Errno> {
        Ok(Registry {
            epoll: Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?,
            slots: Vec::new(),
            free: Vec::new(),
        })
    }

    /// The epoll descriptor.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.epoll.0.as_fd()
    }

    /// Watches `fd` for `interest`; its events will name the returned
    /// token.
    pub fn add(
        &mut self,
        fd: BorrowedFd<'_>,
        interest: EpollFlags,
        source: Source,
    ) -> Result<Token, Errno> {
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    source: None,
                });
                u32::try_from(self.slots.len() - 1).map_err(|_| Errno::ENOSPC)?
            }
        };
        let entry = &mut self.slots[slot as usize];
        let token = Token::new(slot, entry.generation);
        match self.epoll.add(fd, EpollEvent::new(interest, token.0)) {
            Ok(()) => {
                entry.source = Some(source);
                Ok(token)
            }
            Err(errno) => {
                self.free.push(slot);
                Err(errno)
            }
        }
    }

    /// Changes what `fd`, registered as `token`, is watched for.
    pub fn modify(&self, fd: BorrowedFd<'_>, token: Token, interest: EpollFlags) {
        let mut event = EpollEvent::new(interest, token.0);
        let _ = self.epoll.modify(fd, &mut event);
    }

    /// Stops watching `fd` (call it before closing the descriptor); the
    /// token is dead from here on.
    pub fn remove(&mut self, fd: BorrowedFd<'_>, token: Token) {
        let _ = self.epoll.delete(fd);
        self.forget(token);
    }

    /// Ends `token` for a descriptor already closed (the kernel dropped
    /// it from the set).
    pub fn forget(&mut self, token: Token) {
        let Some(entry) = self.slots.get_mut(token.slot()) else {
            return;
        };
        if entry.generation == token.generation() && entry.source.is_some() {
            entry.source = None;
            entry.generation = entry.generation.wrapping_add(1);
            self.free.push(token.slot() as u32);
        }
    }

    /// What an event's data names, unless its registration has ended.
    pub fn resolve(&self, event: &EpollEvent) -> Option<(Source, Token)> {
        let token = Token(event.data());
        let entry = self.slots.get(token.slot())?;
        let source = entry
            .source
            .filter(|_| entry.generation == token.generation())?;
        Some((source, token))
    }

    pub fn wait(&self, events: &mut [EpollEvent], timeout: EpollTimeout) -> Result<usize, Errno> {
        self.epoll.wait(events, timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    /// An fd number closed and reused is a new registration: the old
    /// token's events resolve to nothing.
    #[test]
    fn a_reused_slot_does_not_answer_to_the_old_token() {
        let mut registry = Registry::new().unwrap();
        let (first, _first_write) = nix::unistd::pipe().unwrap();
        let old = registry
            .add(first.as_fd(), EpollFlags::EPOLLIN, Source::Capture)
            .unwrap();
        let stale = EpollEvent::new(EpollFlags::EPOLLIN, old.0);
        assert_eq!(registry.resolve(&stale), Some((Source::Capture, old)));
        registry.remove(first.as_fd(), old);
        drop(first);
        let (second, _second_write) = nix::unistd::pipe().unwrap();
        let new = registry
            .add(second.as_fd(), EpollFlags::EPOLLIN, Source::ControlClient)
            .unwrap();
        assert_eq!(new.slot(), old.slot(), "the slot is reused");
        assert_eq!(registry.resolve(&stale), None);
        let fresh = EpollEvent::new(EpollFlags::EPOLLIN, new.0);
        assert_eq!(registry.resolve(&fresh), Some((Source::ControlClient, new)));
        registry.forget(old);
        assert_eq!(
            registry.resolve(&fresh),
            Some((Source::ControlClient, new)),
            "forgetting a dead token changes nothing"
        );
    }
}
