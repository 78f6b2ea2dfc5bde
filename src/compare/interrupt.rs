//! SIGINT and SIGTERM during `cvm compare`.
//!
//! - The first asks for a clean stop: a flag the waits poll; the run under way ends, the
//!   teardown under way is finished (and timed), every sample is kept, and cvm exits 130.
//! - A second forces the teardown ([`process::hurry`]: no polite request, no grace period,
//!   SIGKILL at once). cvm renders no report and exits 130 as soon as everything is torn down,
//!   naming what was. If that has not happened within [`FORCED_LIMIT`] (a hung `docker rm`, a
//!   daemon that will not die), or a third signal comes, cvm exits 130 at once, naming what was
//!   torn down and what was left.
//!
//! What there is to tear down is kept in a ledger: every launched instance and every prepared
//! backend holds a [`Tracked`] entry until it is gone. The handlers are registered once per
//! process, by a thread that reads the signals; each `compare` starts from a clean state.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::backend::process;

/// How long a forced teardown may take before cvm exits with what is left named.
pub(super) const FORCED_LIMIT: Duration = Duration::from_secs(15);

/// The state the signal thread and the run share.
struct State {
    interrupted: AtomicBool,
    signals: AtomicUsize,
    ledger: Mutex<Ledger>,
}

/// What is being torn down: the entries still live, and those already gone.
#[derive(Debug, Default)]
struct Ledger {
    next: u64,
    live: BTreeMap<u64, String>,
    gone: Vec<String>,
}

/// What a signal asks for, by how many came before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Stop,
    Force,
    GiveUp,
}

fn action(nth: usize) -> Action {
    match nth {
        0 | 1 => Action::Stop,
        2 => Action::Force,
        _ => Action::GiveUp,
    }
}

fn state() -> &'static State {
    static STATE: OnceLock<State> = OnceLock::new();
    STATE.get_or_init(|| State {
        interrupted: AtomicBool::new(false),
        signals: AtomicUsize::new(0),
        ledger: Mutex::new(Ledger::default()),
    })
}

fn ledger() -> std::sync::MutexGuard<'static, Ledger> {
    state().ledger.lock().unwrap_or_else(|p| p.into_inner())
}

/// How many times the handlers were registered (once per process).
static REGISTERED: AtomicUsize = AtomicUsize::new(0);

/// Registers the handlers (the first time only) and starts this run clean; the flag the run's
/// waits poll.
pub(super) fn install() -> std::io::Result<&'static AtomicBool> {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    INSTALLED
        .get_or_init(|| register().map_err(|e| e.to_string()))
        .clone()
        .map_err(std::io::Error::other)?;
    let s = state();
    s.interrupted.store(false, Ordering::SeqCst);
    s.signals.store(0, Ordering::SeqCst);
    *ledger() = Ledger::default();
    Ok(&s.interrupted)
}

fn register() -> std::io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    REGISTERED.fetch_add(1, Ordering::SeqCst);
    std::thread::Builder::new()
        .name("cvm-signals".into())
        .spawn(move || {
            for _ in signals.forever() {
                on_signal();
            }
        })?;
    Ok(())
}

fn on_signal() {
    let s = state();
    let nth = s.signals.fetch_add(1, Ordering::SeqCst) + 1;
    match action(nth) {
        Action::Stop => {
            s.interrupted.store(true, Ordering::SeqCst);
            eprintln!("cvm: interrupted; finishing the run's teardown (signal again to force it)");
        }
        Action::Force => {
            s.interrupted.store(true, Ordering::SeqCst);
            process::hurry();
            eprintln!(
                "cvm: forcing the teardown (no grace periods); cvm exits within {} s",
                FORCED_LIMIT.as_secs()
            );
            let _ = std::thread::Builder::new()
                .name("cvm-deadline".into())
                .spawn(|| {
                    std::thread::sleep(FORCED_LIMIT);
                    give_up();
                });
        }
        Action::GiveUp => give_up(),
    }
}

/// Exits now (130), naming what was torn down and what was left.
fn give_up() -> ! {
    eprintln!("cvm: {}", describe(&ledger()));
    // The shell's code for a process ended by SIGINT, 128 + 2, which cvm's documented
    // "interrupted" exit code is.
    std::process::exit(128 + libc::SIGINT);
}

/// An entry in the ledger while what it names exists; dropping it records it as torn down.
#[derive(Debug)]
pub(super) struct Tracked(u64);

/// Records `what` (an instance, a prepared backend) as something to tear down.
pub(super) fn track(what: String) -> Tracked {
    let mut l = ledger();
    l.next += 1;
    let id = l.next;
    l.live.insert(id, what);
    Tracked(id)
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let mut l = ledger();
        if let Some(what) = l.live.remove(&self.0) {
            l.gone.push(what);
        }
    }
}

/// Whether a second signal forced the teardown.
pub(super) fn forced() -> bool {
    process::hurried()
}

/// The closing line of a forced stop: what was torn down, and what was left.
pub(super) fn forced_summary() -> String {
    describe(&ledger())
}

fn describe(l: &Ledger) -> String {
    let list = |items: Vec<&str>| {
        if items.is_empty() {
            "nothing".to_string()
        } else {
            items.join(", ")
        }
    };
    let gone = list(l.gone.iter().map(String::as_str).collect());
    let left: Vec<&str> = l.live.values().map(String::as_str).collect();
    let tail = if left.is_empty() {
        "nothing was left".to_string()
    } else {
        format!("left behind: {}", left.join(", "))
    };
    format!("forced teardown: torn down {gone}; {tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_second_signal_forces_and_the_third_gives_up() {
        assert_eq!(action(1), Action::Stop);
        assert_eq!(action(2), Action::Force);
        assert_eq!(action(3), Action::GiveUp);
        assert_eq!(action(9), Action::GiveUp);
    }

    #[test]
    fn handlers_are_registered_once_however_often_compare_runs() {
        let first = install().unwrap();
        let second = install().unwrap();
        assert!(std::ptr::eq(first, second));
        assert_eq!(REGISTERED.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn the_summary_names_what_was_torn_down_and_what_was_left() {
        let mut l = Ledger::default();
        l.live.insert(1, "the docker instance (run 3)".into());
        l.live.insert(2, "what the docker backend prepared".into());
        l.gone.push("the native instance (run 3)".into());
        let text = describe(&l);
        assert!(
            text.starts_with("forced teardown: torn down the native instance (run 3); left behind: the docker instance (run 3), what the docker backend prepared"),
            "{text}"
        );
        l.live.clear();
        assert_eq!(
            describe(&l),
            "forced teardown: torn down the native instance (run 3); nothing was left"
        );
    }
}
