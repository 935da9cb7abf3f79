//! The fd-table model: which file descriptors every process of a trace had
//! open, at any sequence number, and where each came from.
//!
//! Tables belong to processes (threads share their process's table; clone
//! with CLONE_FILES shares one table between processes; fork, vfork and
//! clone without it copy the table). Every fd of every table is an
//! [`FdEntry`] with its lifetime (`at.seq` ..= `closed.seq`), the kernel
//! object behind it (`pipe:[N]`, a path, `socket:[N]`; both ends of a pipe
//! share the object and differ in [`End`]), its close-on-exec flag and how
//! it got there ([`Origin`]). The model is built in one pass by
//! [`crate::fdbuild::FdModelBuilder`] (or [`FdModel::build`]) and then
//! queried: [`FdModel::table_at`], [`FdModel::holders_of`],
//! [`FdModel::entry_at`], and the chronological [`FdModel::events`].

use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// Index of an entry in [`FdModel::entries`].
pub type EntryId = usize;
/// Index of an fd table.
pub type TableId = usize;

/// Which end of a pipe an fd is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum End {
    Read,
    Write,
}

impl End {
    pub fn name(self) -> &'static str {
        match self {
            End::Read => "read end",
            End::Write => "write end",
        }
    }
}

/// The access mode of the open file description.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    Read,
    Write,
    ReadWrite,
    Unknown,
}

/// One point of the trace: who did what, when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Place {
    pub pid: i32,
    pub tid: i32,
    pub seq: u64,
    /// `pipe2()`, `dup2(4, 1)`, `openat("/etc/passwd")`, `fork`, `exec`, `exit`.
    pub what: String,
}

/// How an fd got into its table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Origin {
    /// Open when the root process started (its stdin, stdout, stderr).
    Outside,
    /// Made in this process by the syscall at `at`.
    Created,
    /// Copied from the parent's table at fork/vfork/clone.
    Inherited {
        from_pid: i32,
        fork_seq: u64,
        from_entry: EntryId,
    },
    /// A copy of another fd of the same table (dup, dup2, dup3, F_DUPFD).
    Dup {
        from_fd: i32,
        from_entry: Option<EntryId>,
    },
}

/// How an fd stopped being open.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseHow {
    Close,
    CloseRange,
    /// dup2/dup3 put another file on this number.
    Replaced,
    /// Closed by a successful exec (close-on-exec).
    Exec,
    /// The last process using the table ended.
    Exit,
}

/// The end of an entry's life.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Closing {
    pub how: CloseHow,
    pub at: Place,
}

/// One fd of one table, over its lifetime.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FdEntry {
    pub id: EntryId,
    pub table: TableId,
    pub fd: i32,
    /// The kernel object (`pipe:[98571]`, `/etc/passwd`, `socket:[7]`), if known.
    pub object: Option<String>,
    pub end: Option<End>,
    pub access: Access,
    /// Close-on-exec at `at` (see [`FdEntry::cloexec_at`] for later changes).
    pub cloexec: bool,
    /// The event that put it in this table.
    pub at: Place,
    pub origin: Origin,
    /// Where the open file description was made (the start of the chain of
    /// forks and dups; equal to `at` for a created fd).
    pub created: Place,
    pub closed: Option<Closing>,
    /// The last syscall (other than close) that used this fd.
    pub last_use: Option<u64>,
    /// F_SETFD / close_range(CLOSE_RANGE_CLOEXEC) changes: (seq, cloexec).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cloexec_changes: Vec<(u64, bool)>,
}

impl FdEntry {
    /// Open at `seq` (after every event numbered `seq` or less).
    pub fn live_at(&self, seq: u64) -> bool {
        self.at.seq <= seq && self.closed.as_ref().is_none_or(|c| c.at.seq > seq)
    }

    pub fn cloexec_at(&self, seq: u64) -> bool {
        self.cloexec_changes
            .iter()
            .rev()
            .find(|(s, _)| *s <= seq)
            .map_or(self.cloexec, |c| c.1)
    }

    /// `pipe:[N] write end`, the path, or `(inherited from outside)`.
    pub fn label(&self) -> String {
        match (&self.object, self.end) {
            (Some(o), Some(e)) => format!("{o} {}", e.name()),
            (Some(o), None) => o.clone(),
            (None, Some(e)) => format!("pipe {}", e.name()),
            (None, None) if self.from_outside() => "(inherited from outside)".into(),
            (None, None) => "(unknown object)".into(),
        }
    }

    /// For prose: `the write end of pipe:[N]`, `/etc/passwd`.
    pub fn noun(&self) -> String {
        match (&self.object, self.end) {
            (Some(o), Some(e)) => format!("the {} of {o}", e.name()),
            (None, Some(e)) => format!("the {} of a pipe", e.name()),
            _ => self.label(),
        }
    }

    /// Open since before the recording started (the root's stdin/stdout/stderr, and copies).
    pub fn from_outside(&self) -> bool {
        self.origin == Origin::Outside || (self.object.is_none() && self.created.what == "start")
    }

    /// How it got here: `created by pipe2() at seq 17`, `inherited from pid
    /// 10 at fork seq 20`, `dup2(4, 1) at seq 31`, `inherited from outside`.
    pub fn how(&self) -> String {
        match &self.origin {
            Origin::Outside => "inherited from outside the recording".into(),
            Origin::Created => format!("created by {} at seq {}", self.at.what, self.at.seq),
            Origin::Inherited { from_pid, fork_seq, .. } if self.from_outside() || self.created.pid == *from_pid => {
                format!("inherited from pid {from_pid} at fork seq {fork_seq}")
            }
            Origin::Inherited { from_pid, fork_seq, .. } => format!(
                "inherited from pid {from_pid} at fork seq {fork_seq} (made by {} in pid {} at seq {})",
                self.created.what, self.created.pid, self.created.seq
            ),
            Origin::Dup { .. } => format!("{} at seq {}", self.at.what, self.at.seq),
        }
    }

    /// A pipe end (or a FIFO opened by path, which has no end).
    pub fn is_pipe(&self) -> bool {
        self.end.is_some()
            || self
                .object
                .as_deref()
                .is_some_and(|o| o.starts_with("pipe:"))
    }
}

/// Files lockstep's own agent opens in every process.
pub fn is_internal(object: &str) -> bool {
    object.starts_with("/dev/shm/lockstep-area-")
        || object.contains("liblockstep_agent")
        || object == "/proc/self/maps"
        || (object.starts_with("/proc/") && object.ends_with("/maps"))
}

/// What happened to an fd, in trace order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FdEventKind {
    Open,
    Inherit,
    Dup,
    Close(CloseHow),
    SetCloexec(bool),
}

/// One change of one table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FdEvent {
    pub seq: u64,
    pub pid: i32,
    pub tid: i32,
    pub fd: i32,
    pub entry: EntryId,
    pub kind: FdEventKind,
}

/// A process as the model sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ProcFds {
    pub pid: i32,
    pub parent: Option<i32>,
    pub start: u64,
    pub exit: Option<u64>,
    /// (from seq, table): a process changes tables when exec unshares one.
    pub tables: Vec<(u64, TableId)>,
    /// (seq, argv) of each successful exec.
    pub execs: Vec<(u64, Vec<String>)>,
}

impl ProcFds {
    pub fn alive_at(&self, seq: u64) -> bool {
        self.start <= seq && self.exit.is_none_or(|e| e > seq)
    }
    pub fn table_at(&self, seq: u64) -> Option<TableId> {
        self.tables
            .iter()
            .rev()
            .find(|(s, _)| *s <= seq)
            .or(self.tables.first())
            .map(|t| t.1)
    }
    /// argv of the program it ran at `seq` (empty before its first exec).
    pub fn argv_at(&self, seq: u64) -> &[String] {
        self.execs
            .iter()
            .rev()
            .find(|(s, _)| *s <= seq)
            .map_or(&[], |e| &e.1)
    }
}

/// A successful exec and the fds that survived it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExecPoint {
    pub pid: i32,
    pub tid: i32,
    pub seq: u64,
    pub argv: Vec<String>,
    pub kept: Vec<EntryId>,
}

/// A syscall that failed with EBADF.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BadCall {
    pub at: Place,
    pub name: String,
    pub fd: i32,
    /// Live threads of the process at that time.
    pub threads: usize,
}

/// A syscall that never returned (at a hang or at the end of the recording).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Blocked {
    pub pid: i32,
    pub tid: i32,
    pub name: String,
    pub entry_seq: u64,
    pub decoded: serde_json::Value,
}

/// What went through a pipe (all its ends, all processes).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PipeIo {
    pub bytes_written: u64,
    pub bytes_read: u64,
    /// Reads that returned 0 (EOF).
    pub eof_reads: Vec<Place>,
}

/// The fd tables of a whole trace.
#[derive(Clone, Debug, Default)]
pub struct FdModel {
    pub entries: Vec<FdEntry>,
    /// Call stacks of the fd syscalls, by (pid, seq of their effect): the
    /// entry seq (the code the stack is in was mapped then) and the frames.
    pub call_stacks: HashMap<(i32, u64), (u64, Vec<u64>)>,
    /// Per table: fd → its entries in order.
    pub(crate) by_fd: Vec<HashMap<i32, Vec<EntryId>>>,
    pub(crate) by_object: HashMap<String, Vec<EntryId>>,
    pub procs: BTreeMap<i32, ProcFds>,
    pub events: Vec<FdEvent>,
    pub execs: Vec<ExecPoint>,
    /// (parent pid, child pid, seq) of every fork/vfork/clone of a process.
    pub forks: Vec<(i32, i32, u64)>,
    pub bad_calls: Vec<BadCall>,
    pub blocked: Vec<Blocked>,
    pub pipes: HashMap<String, PipeIo>,
    /// One more than the last sequence number seen.
    pub end_seq: u64,
}

impl FdModel {
    /// Builds the model from a whole trace in memory (see
    /// [`crate::fdbuild::FdModelBuilder`] to stream the syscalls instead).
    pub fn build(
        spawns: &[lockstep_trace::Spawn],
        execs: &[lockstep_trace::Exec],
        exits: &[lockstep_trace::Exit],
        syscalls: &[lockstep_trace::Syscall],
    ) -> FdModel {
        let mut b = crate::fdbuild::FdModelBuilder::new(spawns, execs, exits);
        for s in syscalls {
            b.push(s);
        }
        b.finish()
    }

    /// The entry of `fd` in `pid`'s table open at `seq`.
    pub fn entry_at(&self, pid: i32, fd: i32, seq: u64) -> Option<&FdEntry> {
        let p = self.procs.get(&pid).filter(|p| p.alive_at(seq))?;
        let ids = self.by_fd.get(p.table_at(seq)?)?.get(&fd)?;
        let i = ids.partition_point(|&e| self.entries[e].at.seq <= seq);
        let e = &self.entries[*ids[..i].last()?];
        e.live_at(seq).then_some(e)
    }

    /// The last entry `fd` had in `pid`'s table at or before `seq`, open or not.
    pub fn last_entry(&self, pid: i32, fd: i32, seq: u64) -> Option<&FdEntry> {
        let p = self.procs.get(&pid)?;
        let ids = self.by_fd.get(p.table_at(seq)?)?.get(&fd)?;
        let i = ids.partition_point(|&e| self.entries[e].at.seq <= seq);
        ids[..i].last().map(|&e| &self.entries[e])
    }

    /// `pid`'s open fds at `seq`, by fd number, close-on-exec as of `seq`.
    pub fn table_at(&self, pid: i32, seq: u64) -> Vec<FdEntry> {
        let Some(t) = self
            .procs
            .get(&pid)
            .filter(|p| p.alive_at(seq))
            .and_then(|p| p.table_at(seq))
        else {
            return Vec::new();
        };
        let mut fds: Vec<i32> = self
            .by_fd
            .get(t)
            .map(|m| m.keys().copied().collect())
            .unwrap_or_default();
        fds.sort_unstable();
        fds.iter()
            .filter_map(|&fd| self.entry_at(pid, fd, seq))
            .map(|e| FdEntry {
                cloexec: e.cloexec_at(seq),
                ..e.clone()
            })
            .collect()
    }

    /// Every (pid, fd, entry) that has `object` (that `end` of it, when
    /// given) open at `seq`.
    pub fn holders_of(&self, object: &str, end: Option<End>, seq: u64) -> Vec<(i32, i32, FdEntry)> {
        let mut out = Vec::new();
        for &id in self.by_object.get(object).into_iter().flatten() {
            let e = &self.entries[id];
            if !e.live_at(seq) || (end.is_some() && e.end != end) {
                continue;
            }
            for p in self
                .procs
                .values()
                .filter(|p| p.alive_at(seq) && p.table_at(seq) == Some(e.table))
            {
                out.push((
                    p.pid,
                    e.fd,
                    FdEntry {
                        cloexec: e.cloexec_at(seq),
                        ..e.clone()
                    },
                ));
            }
        }
        out.sort_by_key(|(p, fd, _)| (*p, *fd));
        out
    }

    /// Every entry ever made for `object`, in order of creation.
    pub fn entries_of(&self, object: &str) -> impl Iterator<Item = &FdEntry> {
        self.by_object
            .get(object)
            .into_iter()
            .flatten()
            .map(|&i| &self.entries[i])
    }

    /// The processes using table `t` at `seq`.
    pub fn pids_of_table(&self, t: TableId, seq: u64) -> Vec<i32> {
        self.procs
            .values()
            .filter(|p| p.alive_at(seq) && p.table_at(seq) == Some(t))
            .map(|p| p.pid)
            .collect()
    }

    /// `echo` (the program's name) or `pid N` when it never exec'd.
    /// A child that has not exec'd yet runs its parent's program.
    pub fn name_of(&self, pid: i32, seq: u64) -> String {
        let (mut p, mut s) = (pid, seq);
        for _ in 0..64 {
            let Some(info) = self.procs.get(&p) else {
                break;
            };
            if let Some(a) = info.argv_at(s).first() {
                return format!("{} (pid {pid})", a.rsplit('/').next().unwrap_or(a));
            }
            let Some(parent) = info.parent else { break };
            (p, s) = (parent, info.start);
        }
        format!("pid {pid}")
    }
}
