//! A thread kept for the life of pmtr that runs one task at a time beside
//! the loop's thread, which waits for it before it goes on: what
//! `std::thread::scope` does, without a thread made and ended per task
//! (pmtr makes a batch of starts in two halves side by side, spawner.rs).
//! Between tasks it sleeps on a condition variable: no wake-ups.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// A task handed to the thread: a closure of the caller's, by pointer.
struct Task {
    run: unsafe fn(*mut ()),
    data: *mut (),
}

// SAFETY: a `Task` is made only by `Beside::run` from a closure that is
// `Send`, and `run` does not return before the thread has finished with it.
unsafe impl Send for Task {}

enum State {
    Idle,
    Given(Task),
    Running,
    Done,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock (panic = "abort" in
        // release besides): a poisoned lock holds a consistent state.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn wait<'a>(&self, guard: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.changed
            .wait(guard)
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The thread, and how to give it a task.
pub struct Beside {
    shared: Arc<Shared>,
}

impl Beside {
    /// Starts the thread, named `name`, with a stack of `stack_bytes`.
    pub fn start(name: &str, stack_bytes: usize) -> std::io::Result<Beside> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::Idle),
            changed: Condvar::new(),
        });
        let theirs = shared.clone();
        std::thread::Builder::new()
            .name(name.into())
            .stack_size(stack_bytes)
            .spawn(move || serve(&theirs))?;
        Ok(Beside { shared })
    }

    /// Runs `there` on the thread and `here` on the calling one, side by
    /// side; returns once both have.
    pub fn run<T: FnOnce() + Send>(&self, there: T, here: impl FnOnce()) {
        unsafe fn call<T: FnOnce()>(data: *mut ()) {
            // SAFETY: `data` is the `Option<T>` of `run` below, alive and
            // touched by no one else until the thread says it is done.
            if let Some(task) = unsafe { (*data.cast::<Option<T>>()).take() } {
                task()
            }
        }
        let mut there = Some(there);
        let task = Task {
            run: call::<T>,
            data: (&mut there as *mut Option<T>).cast(),
        };
        *self.shared.lock() = State::Given(task);
        self.shared.changed.notify_all();
        // Waits for the thread when dropped, also if `here` unwinds: the
        // closure's borrows must outlive its run.
        let _done = WaitDone(&self.shared);
        here();
    }
}

/// Waits, when dropped, until the thread has finished its task.
struct WaitDone<'a>(&'a Shared);

impl Drop for WaitDone<'_> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        while !matches!(*state, State::Done) {
            state = self.0.wait(state);
        }
        *state = State::Idle;
    }
}

/// The thread's life: a task at a time, for as long as pmtr runs.
fn serve(shared: &Shared) {
    loop {
        let mut state = shared.lock();
        let task = loop {
            match std::mem::replace(&mut *state, State::Running) {
                State::Given(task) => break task,
                other => *state = other,
            }
            state = shared.wait(state);
        };
        drop(state);
        // SAFETY: `Beside::run` made the task from its closure and waits
        // for `Done` before the closure goes out of scope.
        unsafe { (task.run)(task.data) };
        *shared.lock() = State::Done;
        shared.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::Beside;

    #[test]
    fn runs_each_task_beside_the_caller_and_waits_for_it() {
        let beside = Beside::start("test-beside", 64 * 1024).unwrap();
        for round in 0..100 {
            let (mut there, mut here) = (Vec::new(), Vec::new());
            // The task goes on only once `here` is over: `run` must wait.
            let (go, wait) = std::sync::mpsc::channel();
            let filled = &mut there;
            let task = move || {
                let _ = wait.recv();
                filled.extend(0..round)
            };
            beside.run(task, || {
                here.push(round);
                let _ = go.send(());
            });
            assert_eq!(there.len(), round, "the task ran before run returned");
            assert_eq!(here, [round]);
        }
    }

    #[test]
    fn the_task_runs_on_another_thread() {
        let beside = Beside::start("test-beside", 64 * 1024).unwrap();
        let mut name = None;
        beside.run(
            || name = std::thread::current().name().map(str::to_string),
            || {},
        );
        assert_eq!(name.as_deref(), Some("test-beside"));
    }
}
