//! Progress on long work, on a terminal's stderr only: a bar for the
//! analyses of a large trace (drawn by a helper thread from atomic
//! counters, so the work itself only stores a number), and one line
//! rewritten with `\r` while `record` runs long (called from the
//! recorder's existing timer path, drawn at most four times a second).

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Work that takes less than this shows no indicator at all.
const QUIET_FOR: Duration = Duration::from_millis(700);
/// Time between two redraws.
const REDRAW: Duration = Duration::from_millis(250);

struct Shared {
    /// The current phase and its total (0: unknown, a spinner with the
    /// count done so far).
    phase: Mutex<(String, u64)>,
    done: AtomicU64,
    stop: AtomicBool,
}

/// A progress indicator for the analyses; does nothing when disabled.
pub struct Progress {
    shared: Option<Arc<Shared>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// Clears the line the indicator drew on.
fn clear_line() {
    let mut e = std::io::stderr().lock();
    let _ = write!(e, "\r\x1b[K");
    let _ = e.flush();
}

impl Progress {
    /// Starts an indicator labelled `label` (e.g. `analysing`) when `enabled`.
    pub fn new(label: &str, enabled: bool) -> Progress {
        if !enabled {
            return Progress {
                shared: None,
                thread: Mutex::new(None),
            };
        }
        let shared = Arc::new(Shared {
            phase: Mutex::new((String::new(), 0)),
            done: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        let label = label.to_string();
        let thread = std::thread::Builder::new()
            .name("lockstep-progress".into())
            .spawn(move || draw_loop(&label, &s))
            .ok();
        Progress {
            shared: Some(shared),
            thread: Mutex::new(thread),
        }
    }

    /// Enters a phase of `total` steps (0 when unknown).
    pub fn phase(&self, name: &str, total: u64) {
        if let Some(s) = &self.shared {
            *s.phase.lock().unwrap_or_else(|e| e.into_inner()) = (name.to_string(), total);
            s.done.store(0, Ordering::Relaxed);
        }
    }

    /// Steps done in the current phase (cheap: one relaxed store).
    pub fn set(&self, done: u64) {
        if let Some(s) = &self.shared {
            s.done.store(done, Ordering::Relaxed);
        }
    }

    /// Stops the indicator and clears its line (idempotent).
    pub fn finish(&self) {
        let Some(s) = &self.shared else { return };
        s.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

fn draw_loop(label: &str, s: &Shared) {
    let start = Instant::now();
    let mut drawn = false;
    while !s.stop.load(Ordering::Relaxed) {
        std::thread::park_timeout(if start.elapsed() < QUIET_FOR {
            QUIET_FOR
        } else {
            REDRAW
        });
        if s.stop.load(Ordering::Relaxed) || start.elapsed() < QUIET_FOR {
            continue;
        }
        let (phase, total) = s.phase.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let done = s.done.load(Ordering::Relaxed);
        let secs = start.elapsed().as_secs_f64();
        let body = if total > 0 {
            let frac = (done as f64 / total as f64).clamp(0.0, 1.0);
            let filled = (frac * 24.0).round() as usize;
            format!(
                "[{}{}] {:>3.0}% {phase} ({done}/{total})",
                "#".repeat(filled),
                ".".repeat(24 - filled),
                frac * 100.0
            )
        } else if done > 0 {
            let spin = ['|', '/', '-', '\\'][(secs * 4.0) as usize % 4];
            format!("{spin} {phase} ({done})")
        } else {
            let spin = ['|', '/', '-', '\\'][(secs * 4.0) as usize % 4];
            format!("{spin} {phase}")
        };
        let mut e = std::io::stderr().lock();
        let _ = write!(e, "\r\x1b[Klockstep: {label}: {body} {secs:.1}s");
        let _ = e.flush();
        drawn = true;
    }
    if drawn {
        clear_line();
    }
}

/// The `record` status line: `lockstep: recording 3s: 2 processes, 5
/// threads, 120,000 events`, shown once a recording runs for 2 s.
pub struct RecordMeter {
    enabled: bool,
    last: Option<Instant>,
    drawn: bool,
}

/// A recording shows no status line before it has run this long.
const RECORD_QUIET_NS: u64 = 2_000_000_000;

impl RecordMeter {
    pub fn new(enabled: bool) -> RecordMeter {
        RecordMeter {
            enabled,
            last: None,
            drawn: false,
        }
    }

    /// Called from the recorder's timer path (about ten times a second);
    /// draws at most every [`REDRAW`].
    pub fn update(&mut self, c: &lockstep_recorder::machine::Counts, elapsed_ns: u64) {
        if !self.enabled || elapsed_ns < RECORD_QUIET_NS {
            return;
        }
        if self.last.is_some_and(|t| t.elapsed() < REDRAW) {
            return;
        }
        self.last = Some(Instant::now());
        let events = c.syscalls + c.sync_ops + c.signals;
        let mut e = std::io::stderr().lock();
        let _ = write!(
            e,
            "\r\x1b[Klockstep: recording {:.0}s: {} processes, {} threads, {} events ({} syscalls, {} sync ops)",
            elapsed_ns as f64 / 1e9,
            c.processes,
            c.threads,
            events,
            c.syscalls,
            c.sync_ops
        );
        let _ = e.flush();
        self.drawn = true;
    }

    /// Clears the status line (before the final summary).
    pub fn clear(&mut self) {
        if self.drawn {
            clear_line();
            self.drawn = false;
        }
    }
}
