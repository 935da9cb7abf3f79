//! `lockstep explain KIND`: what a finding kind means, why it matters, how
//! to fix it, with a tiny example (in the spirit of the course's lecture
//! notes).

use anyhow::Result;

#[derive(clap::Args)]
pub struct Args {
    /// A finding kind (`deadlock`, `lock_order_inversion`, ...); none lists them.
    kind: Option<String>,
}

/// The explanation of one finding kind (also the SARIF rules' texts).
pub struct Entry {
    pub kind: &'static str,
    pub what: &'static str,
    pub why: &'static str,
    pub fix: &'static str,
    pub example: &'static str,
}

/// The explanation of `kind`, if it is a known finding kind.
pub fn entry(kind: &str) -> Option<&'static Entry> {
    ENTRIES.iter().find(|e| e.kind == kind)
}

impl Entry {
    /// The first sentence of `what`: a one-line description.
    pub fn short(&self) -> &'static str {
        self.what.split(". ").next().unwrap_or(self.what)
    }
}

pub const ENTRIES: &[Entry] = &[
    Entry {
        kind: "data_race",
        what: "Two threads accessed the same memory location, at least one of them writing, with no common lock held and nothing ordering the two accesses (no create/join, condvar, semaphore, barrier, once or atomic hand-off between them).",
        why: "The result depends on the timing: `counter++` is a read, an add and a write, and two threads interleaving them lose updates (the lecture's \"prints the wrong total\"); a reader sees half-written data; a freed block is used. It may show once in a thousand runs: lockstep uses Eraser's lockset (which locks protect each variable) refined by happens-before, so it finds the race even when this run's schedule was harmless, and accesses ordered by create/join or a hand-off are not reported.",
        fix: "Protect every access to the variable (reads too) with the same mutex, not one per thread; or hand the data over with a synchronization that orders it (join, condvar, semaphore, barrier); or make it thread-local, or an atomic for a single counter. Free a shared block only after the threads using it are done (join them first).",
        example: "int counter;  T1: counter++;   T2: counter++;   // both read 5, both write 6\n  fix: pthread_mutex_lock(&m); counter++; pthread_mutex_unlock(&m);   (in both threads)",
    },
    Entry {
        kind: "priority_inversion",
        what: "A high-priority thread H waited for a lower-priority thread L (a mutex L held, or a condvar hand-off only L made) while a thread M of a priority between them, not using that lock, ran, so H in effect ran at L's priority. Error for real-time threads (SCHED_FIFO/RR); a warning for nice values of SCHED_OTHER threads; a note through a PRIO_INHERIT/PRIO_PROTECT mutex. The details say which evidence it rests on: the kernel's sched_switch tracepoints (M ran while L was runnable), schedstat CPU time, or the sync ops only.",
        why: "The low-priority holder cannot run (and release the lock) while the medium one uses the CPU: the wait of the high-priority thread is unbounded (the Mars Pathfinder reset its computer over and over because of it).",
        fix: "Make the lock a priority-inheritance mutex (pthread_mutexattr_setprotocol(&a, PTHREAD_PRIO_INHERIT)) or a priority-ceiling one (PTHREAD_PRIO_PROTECT); on Linux these boost real-time (SCHED_FIFO/RR) priorities only, not nice values. Keep critical sections that high-priority threads share with low-priority ones very short. A condvar has no owner to boost: raise the signalling thread's priority for the hand-off, or keep M off that CPU.",
        example: "L (prio 10): lock(bus) ... ;   H (prio 30): lock(bus) -> waits;   M (prio 20): computes for 200 ms\n  -> H waits for M. fix: pthread_mutexattr_setprotocol(&attr, PTHREAD_PRIO_INHERIT) for bus.",
    },
    Entry {
        kind: "deadlock",
        what: "The program hung, and its threads wait for each other in a cycle: each holds a lock (or a pipe end, or is a parent in wait) that the next one needs.",
        why: "None of them can ever go on: all four deadlock conditions hold (mutual exclusion, hold-and-wait, no preemption, circular wait).",
        fix: "Break the circular wait: take locks in one global order everywhere, or take both at once, or give up the first (trylock and back off). For a nested monitor, do not hold the outer lock while waiting inside the inner monitor.",
        example: "T1: lock(A); lock(B);      T2: lock(B); lock(A);\n  -> T1 holds A and waits for B; T2 holds B and waits for A.\n  fix: T2 takes A before B, like T1.",
    },
    Entry {
        kind: "lock_order_inversion",
        what: "Two (or more) threads took the same locks in opposite orders. This run did not hang, but another interleaving can.",
        why: "It is a deadlock waiting for the wrong timing (lockdep and Helgrind call it a potential deadlock). A warning says why this run could not deadlock (one thread, or the threads were ordered by create/join).",
        fix: "Pick one order for every pair of locks and follow it in all code paths (e.g. lock the account with the smaller id first in transfer(a, b)).",
        example: "transfer(x, y) locks x then y; transfer(y, x) locks y then x.\n  fix: lock min(x, y) first, then max(x, y).",
    },
    Entry {
        kind: "hang",
        what: "Every thread was blocked, nothing happened for --hang-timeout seconds, and no lock cycle explains it.",
        why: "Typical causes: a condition variable nobody will signal (lost wakeup: the signal came before the wait, or `if` instead of `while`), a pipe whose write end is still open somewhere, a join of a thread that waits forever.",
        fix: "Check that every wait has a matching signal/post/close that still happens; always wait in a `while` loop that tests the condition under the mutex.",
        example: "pthread_mutex_lock(&m); if (!ready) pthread_cond_wait(&c, &m);  // may miss the signal\n  fix: while (!ready) pthread_cond_wait(&c, &m);",
    },
    Entry {
        kind: "self_deadlock",
        what: "A thread locked a non-recursive lock it already holds.",
        why: "A normal mutex does not know its owner: the thread waits for itself forever (an errorcheck mutex returns EDEADLK instead).",
        fix: "Do not call a locking function with the lock held; split it into a locked and an unlocked variant, or use PTHREAD_MUTEX_RECURSIVE deliberately.",
        example: "void add(...) { lock(&m); ... total(); unlock(&m); }   // total() locks m too",
    },
    Entry {
        kind: "unlock_not_held",
        what: "A thread unlocked a mutex it did not lock (held by another thread, or not locked at all).",
        why: "POSIX leaves it undefined; glibc's normal mutex silently unlocks it, so another thread's critical section loses its protection.",
        fix: "Unlock only in the thread that locked; make the locking discipline local to one function (lock and unlock in the same scope).",
        example: "T1: lock(&m); ...   T2: unlock(&m);   // T2 releases T1's lock",
    },
    Entry {
        kind: "cond_wait_holding_lock",
        what: "A thread waits on a condition variable while holding another mutex than the condvar's own.",
        why: "pthread_cond_wait releases only its own mutex. A thread that must take the other mutex before it can signal will block: the nested monitor deadlock of the lecture.",
        fix: "Release outer locks before waiting, or restructure so that the signaller does not need the lock held by the waiter.",
        example: "M::methodA: lock(M.m); N.alloc() { lock(N.m); while (!avail) wait(N.c, N.m); }\n  M::methodB needs M.m to call N.free(), which would signal N.c.",
    },
    Entry {
        kind: "fd_leak",
        what: "A file descriptor stayed open where it should have been closed: a pipe's write end held by a process that will never write (so the reader never sees EOF), or a descriptor inherited across exec by a program that never asked for it.",
        why: "A reader gets EOF only when every copy of the write end is closed, in every process. One forgotten close() in a shell parent or a sibling makes `cmd1 | cmd2` hang forever.",
        fix: "After fork and dup2, close both pipe ends you do not use, in the parent and in each child; open with O_CLOEXEC / pipe2(O_CLOEXEC) what an exec'd program must not inherit.",
        example: "pipe(p); if (fork()==0) { dup2(p[1],1); close(p[0]); close(p[1]); exec(cmd1); }\n  if (fork()==0) { dup2(p[0],0); close(p[0]); close(p[1]); exec(cmd2); }\n  close(p[0]); close(p[1]);   // the parent's closes: forget p[1] and cmd2 never ends",
    },
    Entry {
        kind: "bad_fd",
        what: "A syscall failed with EBADF: the descriptor was not open, or not open for that direction (writing to a pipe's read end).",
        why: "Usually a close() came too early, or pipefd[0] and pipefd[1] were swapped in a dup2 (pipefd[0] is the read end).",
        fix: "Check which end goes where: the writer's stdout gets pipefd[1], the reader's stdin gets pipefd[0].",
        example: "dup2(p[0], STDOUT_FILENO);   // read end as stdout: write() fails with EBADF\n  fix: dup2(p[1], STDOUT_FILENO);",
    },
    Entry {
        kind: "fd_misuse",
        what: "A process runs with a pipe end in the wrong place: its stdin is a pipe's write end, or its stdout a read end.",
        why: "Nothing it writes reaches the pipe (or it reads nothing from it); the other side sees EOF at once or waits forever, and the output goes somewhere else.",
        fix: "dup2 the write end (pipefd[1]) onto the writer's STDOUT_FILENO and the read end (pipefd[0]) onto the reader's STDIN_FILENO.",
        example: "dup2(p[1], STDIN_FILENO);   // in echo: echo's output still goes to the terminal, wc reads EOF and prints 0",
    },
    Entry {
        kind: "fd_open_at_exit",
        what: "A process ended with files, pipes or sockets it opened itself still open (like valgrind --track-fds).",
        why: "Harmless for a short program, but the same habit in a loop or a long-running server runs out of descriptors, and a pipe end left open keeps its reader from seeing EOF.",
        fix: "Close what you open when you are done with it (and open with O_CLOEXEC what children must not inherit).",
        example: "int fd = open(\"log\", O_WRONLY); ... return 0;   // add close(fd)",
    },
];

pub fn run(a: Args) -> Result<u8> {
    match a.kind.as_deref() {
        None => {
            println!("finding kinds (lockstep explain KIND):");
            for e in ENTRIES {
                println!("  {:<24} {}", e.kind, e.short());
            }
            Ok(0)
        }
        Some(k) => {
            match entry(k) {
                Some(e) => {
                    println!("{}\n\nWhat: {}\n\nWhy it matters: {}\n\nHow to fix it: {}\n\nExample:\n  {}", e.kind, e.what, e.why, e.fix, e.example);
                    Ok(0)
                }
                None => anyhow::bail!(
                    "unknown finding kind {k:?} (run `lockstep explain` for the list)"
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_explained_once_with_an_example() {
        for (i, e) in ENTRIES.iter().enumerate() {
            assert!(
                ENTRIES[..i].iter().all(|o| o.kind != e.kind),
                "{} twice",
                e.kind
            );
            assert!(!e.what.is_empty() && !e.why.is_empty() && !e.fix.is_empty());
            assert!(!e.example.is_empty(), "{} has no example", e.kind);
        }
    }
}
