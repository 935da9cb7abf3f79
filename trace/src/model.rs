//! Plain data: what a recording contains. The recorder builds these, the
//! writer stores them, the reader gives them back to the analyses.

use crate::ids::{Pid, Seq, Tid};
use serde::{Deserialize, Serialize};

/// A point on the trace's clock: the global sequence number and the
/// monotonic time (CLOCK_MONOTONIC, nanoseconds) at which the recorder saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    pub seq: Seq,
    pub ts_ns: u64,
}

/// How a new process or thread came to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpawnKind {
    /// The process lockstep started.
    Root,
    Fork,
    Vfork,
    /// clone(2) / clone3(2) without CLONE_THREAD: a new process.
    Clone,
    /// clone with CLONE_THREAD: a new thread in the creator's process.
    Thread,
    /// A non-main thread exec'd: it goes on as the main thread of the new
    /// program, under the process's tid (`creator_tid` names its old tid).
    ExecTakeover,
}

impl SpawnKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SpawnKind::Root => "root",
            SpawnKind::Fork => "fork",
            SpawnKind::Vfork => "vfork",
            SpawnKind::Clone => "clone",
            SpawnKind::Thread => "thread",
            SpawnKind::ExecTakeover => "exec_takeover",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "root" => SpawnKind::Root,
            "fork" => SpawnKind::Fork,
            "vfork" => SpawnKind::Vfork,
            "clone" => SpawnKind::Clone,
            "thread" => SpawnKind::Thread,
            "exec_takeover" => SpawnKind::ExecTakeover,
            _ => return None,
        })
    }
}

/// A process or thread came into existence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spawn {
    pub at: Stamp,
    pub kind: SpawnKind,
    /// The new thread (for a process, its main thread: tid == pid).
    pub tid: Tid,
    /// The process the new thread belongs to.
    pub pid: Pid,
    /// The parent process (for a thread, its own process).
    pub parent_pid: Option<Pid>,
    /// The thread that called fork/clone, if traced.
    pub creator_tid: Option<Tid>,
    /// Raw clone flags when the kernel told them (clone/clone3).
    pub clone_flags: Option<u64>,
}

/// How a thread or process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "how")]
pub enum ExitStatus {
    Exited {
        code: i32,
    },
    Killed {
        signal: i32,
        core_dumped: bool,
    },
    /// Ended by an exec in its process: the other threads of a process
    /// vanish when one thread execs, and an exec'ing non-main thread ends
    /// its old tid (it goes on as the main thread).
    Execed,
    /// The recorder lost it (it detached or the recording was cut short).
    Unknown,
}

impl ExitStatus {
    /// The shell's convention: the code, or 128 + signal.
    pub fn shell_code(self) -> i32 {
        match self {
            ExitStatus::Exited { code } => code,
            ExitStatus::Killed { signal, .. } => 128 + signal,
            ExitStatus::Execed => 0,
            ExitStatus::Unknown => 255,
        }
    }
}

/// A thread ended. `process_exit` is set when it was the last thread of its
/// process, so the process ended with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exit {
    pub at: Stamp,
    pub tid: Tid,
    pub pid: Pid,
    pub status: ExitStatus,
    pub process_exit: bool,
}

/// A successful execve/execveat.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exec {
    pub at: Stamp,
    pub pid: Pid,
    /// The thread that called execve; after the exec it is the main thread
    /// (tid == pid) even when it was another thread before.
    pub former_tid: Tid,
    /// The executable as the kernel resolved it (/proc/PID/exe).
    pub exe: String,
    /// The path argument of execve.
    pub path: String,
    pub argv: Vec<String>,
}

/// A signal, as the kernel reported it at a signal-delivery stop.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signal {
    pub at: Stamp,
    pub pid: Pid,
    pub tid: Tid,
    pub signo: i32,
    /// siginfo si_code.
    pub code: i32,
    /// The sending process for kill/tgkill/sigqueue, when known.
    pub sender_pid: Option<Pid>,
    /// si_addr for faults (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP).
    pub fault_addr: Option<u64>,
}

impl Signal {
    /// A fault of the instruction the thread ran (a re-execution repeats
    /// it by itself), not a signal from outside the thread.
    pub fn is_fault(&self) -> bool {
        is_fault(self.signo, self.code)
    }
}

/// Whether signal `signo` with si_code `code` is a fault: SIGSEGV, SIGBUS,
/// SIGFPE, SIGILL or SIGTRAP raised by the kernel for an instruction
/// (si_code > 0), not sent by a process.
pub fn is_fault(signo: i32, code: i32) -> bool {
    const SIGILL: i32 = 4;
    const SIGTRAP: i32 = 5;
    const SIGBUS: i32 = 7;
    const SIGFPE: i32 = 8;
    const SIGSEGV: i32 = 11;
    code > 0 && matches!(signo, SIGSEGV | SIGBUS | SIGFPE | SIGILL | SIGTRAP)
}

/// How a syscall ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyscallOutcome {
    /// The kernel returned (success or error: see `ret`).
    Returned,
    /// The thread ended inside the syscall (exit, exit_group, killed, or
    /// another thread's exec or exit_group).
    ThreadExited,
    /// The recording ended while the thread was inside the syscall.
    Unfinished,
}

impl SyscallOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            SyscallOutcome::Returned => "returned",
            SyscallOutcome::ThreadExited => "thread_exited",
            SyscallOutcome::Unfinished => "unfinished",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "returned" => SyscallOutcome::Returned,
            "thread_exited" => SyscallOutcome::ThreadExited,
            "unfinished" => SyscallOutcome::Unfinished,
            _ => return None,
        })
    }
}

/// One syscall of one thread: its entry, and its exit when it had one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Syscall {
    pub pid: Pid,
    pub tid: Tid,
    pub nr: i64,
    pub name: String,
    /// The six raw argument registers at entry.
    pub args: [u64; 6],
    pub entry: Stamp,
    /// Arguments decoded at entry (paths, flags, fds...), a JSON object.
    pub decoded: serde_json::Value,
    /// strace-like rendering of the arguments, e.g. `3, "abc", 3`.
    pub text: String,
    pub exit: Option<Stamp>,
    pub outcome: SyscallOutcome,
    /// The raw return value (negative errno on failure).
    pub ret: Option<i64>,
    /// The error name when the call failed (`ENOENT`, `ERESTARTSYS`...).
    pub error: Option<String>,
    /// What the kernel wrote back that matters (pipe fds, wait status...), a JSON object.
    pub result: serde_json::Value,
    /// The call stack at entry, innermost first (the instruction pointer in
    /// the libc wrapper, then return addresses): recorded for the fd-related
    /// calls (pipe, dup*, close, open*, fork, exec, wait...), empty otherwise.
    #[serde(default)]
    pub stack: Vec<u64>,
}

/// One synchronization operation (pthread mutex, rwlock, condvar, semaphore,
/// spinlock, barrier, thread create/join, once, scheduling attributes), as an
/// in-process agent or a breakpoint saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncOp {
    pub at: Stamp,
    pub pid: Pid,
    pub tid: Tid,
    /// The function, e.g. `pthread_mutex_lock`, `sem_post`, `thread_start`.
    pub op: String,
    /// `request`, `acquired`, `released`, `failed` or `done`.
    pub phase: String,
    /// The object's address (for join/detach/create: the pthread_t value).
    pub obj: u64,
    /// Op-specific values; see docs/SCHEMA.md.
    pub arg: u64,
    pub arg2: u64,
    /// Op-specific flags (mutex type and protocol bits).
    pub flags: u32,
    /// The call's return value (0, or an errno).
    pub ret: i32,
    /// Return addresses, innermost first: `stack[0]` is the call site.
    pub stack: Vec<u64>,
    /// `agent` or `ptrace`.
    pub mechanism: String,
}

/// Return addresses a [`SyncEvent`] holds inline (the agent's depth).
pub const SYNC_EVENT_FRAMES: usize = 8;

/// A [`SyncOp`] as the recorder's agent path hands it to the writer: no
/// heap (static names, the stack inline), so that millions of them cost no
/// allocation between the shared-memory rings and the trace. Stored as the
/// same `sync_rows` row; readers get [`SyncOp`]s back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncEvent {
    pub at: Stamp,
    pub pid: Pid,
    pub tid: Tid,
    pub op: &'static str,
    pub phase: &'static str,
    pub mechanism: &'static str,
    pub obj: u64,
    pub arg: u64,
    pub arg2: u64,
    pub flags: u32,
    pub ret: i32,
    /// Return addresses, innermost first; the first 0 ends the stack.
    pub frames: [u64; SYNC_EVENT_FRAMES],
}

impl SyncEvent {
    /// The call stack: `frames` up to the first 0.
    pub fn stack(&self) -> &[u64] {
        let n = self
            .frames
            .iter()
            .position(|&a| a == 0)
            .unwrap_or(SYNC_EVENT_FRAMES);
        &self.frames[..n]
    }

    /// The same op with owned fields.
    pub fn to_op(&self) -> SyncOp {
        SyncOp {
            at: self.at,
            pid: self.pid,
            tid: self.tid,
            op: self.op.into(),
            phase: self.phase.into(),
            obj: self.obj,
            arg: self.arg,
            arg2: self.arg2,
            flags: self.flags,
            ret: self.ret,
            stack: self.stack().to_vec(),
            mechanism: self.mechanism.into(),
        }
    }
}

/// One file-backed executable mapping of a process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    pub file_offset: u64,
    pub perms: String,
    pub path: String,
}

/// One thread as the hang detector found it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HungThread {
    pub pid: Pid,
    pub tid: Tid,
    /// The syscall it is blocked in (`None`: it was not in a syscall).
    pub syscall: Option<String>,
    /// The entry of that syscall (its row in `syscalls`).
    pub entry_seq: Option<Seq>,
    /// strace-like arguments of that syscall.
    pub args: String,
    /// The kernel's wait channel (/proc/PID/task/TID/wchan), e.g. `futex_wait_queue`, `pipe_read`.
    pub wchan: String,
    /// Where it is blocked: the instruction pointer, then return addresses.
    pub stack: Vec<u64>,
}

/// The recorder found the program hung: no progress for `timeout_ms` and
/// every thread blocked. The program was killed after this snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hang {
    pub at: Stamp,
    pub timeout_ms: u64,
    pub threads: Vec<HungThread>,
}

/// Everything the recorder hands to the writer, in any order: rows carry
/// their own sequence numbers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Record {
    Spawn(Spawn),
    Exit(Exit),
    Exec(Exec),
    Signal(Signal),
    Syscall(Box<Syscall>),
    /// The bytes a syscall moved (written by the kernel into the program,
    /// or written by the program to the recording's terminal).
    SyscallData(Box<crate::sysdata::SyscallData>),
    /// A decision of the serializing scheduler (`record --serialize`).
    Serial(Box<crate::serial::SerialEvent>),
    /// A trapped `rdtsc`/`rdtscp` and the value the program got.
    Tsc(crate::tsc::TscRead),
    Sync(Box<SyncOp>),
    /// Sync ops of the agent path, in drain order (one record per drain).
    #[serde(skip)]
    SyncEvents(Vec<SyncEvent>),
    Hang(Hang),
    /// The memory accesses of one thread between two of its sync operations.
    Mem(Box<crate::memory::MemSegment>),
    /// The executable mappings of `pid` as of `at` (a complete snapshot,
    /// taken after exec and after each mmap of executable code).
    Mappings {
        at: Stamp,
        pid: Pid,
        maps: Vec<Mapping>,
    },
    /// A context switch into or out of a traced thread.
    SchedSwitch(crate::sched::SchedSwitch),
    /// A wakeup of a traced thread.
    SchedWakeup(crate::sched::SchedWakeup),
    /// A thread's scheduling attributes.
    SchedAttr(Box<crate::sched::SchedAttr>),
    /// A thread's schedstat sample.
    SchedStat(crate::sched::SchedStat),
    /// A key of the trace's metadata (command line, start time, ...).
    Meta {
        key: String,
        value: String,
    },
}
