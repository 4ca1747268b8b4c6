//! A thread kept for the life of pmtr that runs one task at a time beside
//! the loop's thread, which waits for it before it goes on: what
//! `std::thread::scope` does, without a thread made and ended per task
//! (pmtr makes a batch of starts in two halves side by side, spawner.rs).
//! Between tasks it sleeps on a condition variable: no wake-ups.

use std::any::Any;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
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
    /// Finished; with the panic's payload if the task panicked (tests:
    /// release builds abort at a panic).
    Done(Option<Box<dyn Any + Send>>),
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
    /// side; returns once both have. A panic of `there` goes on here.
    pub fn run<T: FnOnce() + Send>(&mut self, there: T, here: impl FnOnce()) {
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
        // Waits for the thread, also if `here` unwinds: the closure's
        // borrows must outlive its run.
        let mut done = WaitDone(Some(&self.shared));
        here();
        if let Some(panic) = done.wait() {
            resume_unwind(panic);
        }
    }
}

/// Waits until the thread has finished its task: when asked, or dropped.
struct WaitDone<'a>(Option<&'a Shared>);

impl WaitDone<'_> {
    /// The payload of the task's panic, if it panicked.
    fn wait(&mut self) -> Option<Box<dyn Any + Send>> {
        let shared = self.0.take()?;
        let mut state = shared.lock();
        loop {
            if let State::Done(_) = *state {
                break;
            }
            state = shared.wait(state);
        }
        match std::mem::replace(&mut *state, State::Idle) {
            State::Done(panic) => panic,
            _ => None,
        }
    }
}

impl Drop for WaitDone<'_> {
    fn drop(&mut self) {
        // Unwinding already: the task's own panic, if any, is dropped.
        let _ = self.wait();
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
        let outcome = catch_unwind(AssertUnwindSafe(|| unsafe { (task.run)(task.data) }));
        *shared.lock() = State::Done(outcome.err());
        shared.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::Beside;

    #[test]
    fn runs_each_task_beside_the_caller_and_waits_for_it() {
        let mut beside = Beside::start("test-beside", 64 * 1024).unwrap();
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
        let mut beside = Beside::start("test-beside", 64 * 1024).unwrap();
        let mut name = None;
        beside.run(
            || name = std::thread::current().name().map(str::to_string),
            || {},
        );
        assert_eq!(name.as_deref(), Some("test-beside"));
    }

    #[test]
    fn a_panic_of_the_task_comes_back_to_the_caller_and_the_thread_goes_on() {
        let mut beside = Beside::start("test-beside", 64 * 1024).unwrap();
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            beside.run(|| std::panic::resume_unwind(Box::new("boom")), || {})
        }));
        let payload = caught.unwrap_err();
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"boom"));
        let mut ran = false;
        beside.run(|| ran = true, || {});
        assert!(ran);
    }
}
