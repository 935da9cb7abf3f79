//! Builds the [`FdModel`] in one pass: process events (spawn, exec, exit)
//! and syscall effects are applied in sequence order. Syscalls arrive in
//! order of entry (as the trace reader streams them) but take effect at
//! their exit, so their ops wait in a small heap keyed by exit seq until
//! every earlier event has been applied. Memory: the model itself plus the
//! calls in flight.

use crate::fds::*;
use crate::fdsys::{describe, ops, Dir, Op};
use lockstep_trace::{Exec, Exit, Spawn, SpawnKind, Syscall, SyscallOutcome};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};

const CLONE_FILES: u64 = 0x400;

enum Ev<'a> {
    Spawn(&'a Spawn),
    Exec(&'a Exec),
    Exit(&'a Exit),
}

/// Streams a trace into an [`FdModel`].
pub struct FdModelBuilder<'a> {
    m: FdModel,
    timeline: Vec<(u64, Ev<'a>)>,
    next: usize,
    heap: BinaryHeap<Reverse<(u64, u64)>>,
    pending: HashMap<(u64, u64), (Place, String, Vec<Op>)>,
    /// Per table: fd → open entry; and how many live processes use it.
    open: Vec<BTreeMap<i32, EntryId>>,
    users: Vec<usize>,
    table_of: HashMap<i32, TableId>,
    pid_of_tid: HashMap<i32, i32>,
    threads: HashMap<i32, usize>,
}

impl<'a> FdModelBuilder<'a> {
    pub fn new(spawns: &'a [Spawn], execs: &'a [Exec], exits: &'a [Exit]) -> Self {
        let mut timeline: Vec<(u64, Ev<'a>)> =
            spawns.iter().map(|s| (s.at.seq.0, Ev::Spawn(s))).collect();
        timeline.extend(execs.iter().map(|e| (e.at.seq.0, Ev::Exec(e))));
        timeline.extend(exits.iter().map(|e| (e.at.seq.0, Ev::Exit(e))));
        timeline.sort_by_key(|(s, _)| *s);
        FdModelBuilder {
            m: FdModel::default(),
            timeline,
            next: 0,
            heap: BinaryHeap::new(),
            pending: HashMap::new(),
            open: Vec::new(),
            users: Vec::new(),
            table_of: HashMap::new(),
            pid_of_tid: HashMap::new(),
            threads: HashMap::new(),
        }
    }

    /// Adds one syscall; calls must come in order of entry seq.
    pub fn push(&mut self, s: &Syscall) {
        self.advance(s.entry.seq.0);
        self.m.end_seq = self.m.end_seq.max(s.entry.seq.0 + 1);
        let Some(exit) = s.exit.filter(|_| s.outcome == SyscallOutcome::Returned) else {
            if s.outcome == SyscallOutcome::Unfinished {
                let (pid, tid, name) = (s.pid.0, s.tid.0, s.name.clone());
                let decoded = s.decoded.clone();
                self.m.blocked.push(Blocked {
                    pid,
                    tid,
                    name,
                    entry_seq: s.entry.seq.0,
                    decoded,
                });
            }
            return;
        };
        let list = ops(s);
        if list.is_empty() {
            return;
        }
        let key = (exit.seq.0, s.entry.seq.0);
        let place = Place {
            pid: s.pid.0,
            tid: s.tid.0,
            seq: exit.seq.0,
            what: describe(s),
        };
        if !s.stack.is_empty() {
            self.m
                .call_stacks
                .insert((s.pid.0, exit.seq.0), (s.entry.seq.0, s.stack.clone()));
        }
        self.pending.insert(key, (place, s.name.clone(), list));
        self.heap.push(Reverse(key));
    }

    /// Applies everything up to the end and returns the model.
    pub fn finish(mut self) -> FdModel {
        self.advance(u64::MAX);
        self.m
    }

    /// Applies every process event and syscall effect numbered below `seq`.
    fn advance(&mut self, seq: u64) {
        loop {
            let ev_seq = self.timeline.get(self.next).map_or(u64::MAX, |e| e.0);
            let sys_seq = self.heap.peek().map_or(u64::MAX, |r| r.0 .0);
            let at = ev_seq.min(sys_seq);
            if at >= seq || at == u64::MAX {
                return;
            }
            self.m.end_seq = self.m.end_seq.max(at + 1);
            if ev_seq <= sys_seq {
                self.next += 1;
                match self.timeline[self.next - 1].1 {
                    Ev::Spawn(s) => self.spawn(s),
                    Ev::Exec(e) => self.exec(e),
                    Ev::Exit(e) => self.exit(e),
                }
            } else {
                let Reverse(key) = self.heap.pop().expect("peeked");
                let (place, name, list) = self.pending.remove(&key).expect("pending call");
                for op in list {
                    self.apply(&place, &name, op);
                }
            }
        }
    }

    fn new_table(&mut self) -> TableId {
        self.open.push(BTreeMap::new());
        self.users.push(0);
        self.m.by_fd.push(HashMap::new());
        self.open.len() - 1
    }

    fn attach(&mut self, pid: i32, t: TableId, seq: u64) {
        self.users[t] += 1;
        self.table_of.insert(pid, t);
        self.m
            .procs
            .get_mut(&pid)
            .expect("known process")
            .tables
            .push((seq, t));
    }

    /// The table of `pid`, made on the spot (fds 0-2 from outside) for a
    /// process the trace never showed being created.
    fn table(&mut self, pid: i32, tid: i32, seq: u64) -> TableId {
        if let Some(&t) = self.table_of.get(&pid) {
            return t;
        }
        self.m.procs.insert(
            pid,
            ProcFds {
                pid,
                start: seq,
                ..Default::default()
            },
        );
        self.threads.insert(pid, 1);
        let t = self.new_table();
        self.attach(pid, t, seq);
        let at = Place {
            pid,
            tid,
            seq,
            what: "start".into(),
        };
        for fd in 0..3 {
            self.insert(
                t,
                fd,
                None,
                None,
                Access::Unknown,
                false,
                at.clone(),
                Origin::Outside,
                None,
            );
        }
        t
    }

    /// Puts a new entry in `t` (closing what held `fd` before).
    #[allow(clippy::too_many_arguments)]
    fn insert(
        &mut self,
        t: TableId,
        fd: i32,
        object: Option<String>,
        end: Option<End>,
        access: Access,
        cloexec: bool,
        at: Place,
        origin: Origin,
        created: Option<Place>,
    ) -> EntryId {
        if self.open[t].contains_key(&fd) {
            self.close(t, fd, CloseHow::Replaced, &at);
        }
        let id = self.m.entries.len();
        let kind = match origin {
            Origin::Inherited { .. } => FdEventKind::Inherit,
            Origin::Dup { .. } => FdEventKind::Dup,
            _ => FdEventKind::Open,
        };
        self.m.events.push(FdEvent {
            seq: at.seq,
            pid: at.pid,
            tid: at.tid,
            fd,
            entry: id,
            kind,
        });
        if let Some(o) = &object {
            self.m.by_object.entry(o.clone()).or_default().push(id);
        }
        let created = created.unwrap_or_else(|| at.clone());
        self.m.entries.push(FdEntry {
            id,
            table: t,
            fd,
            object,
            end,
            access,
            cloexec,
            at,
            origin,
            created,
            closed: None,
            last_use: None,
            cloexec_changes: Vec::new(),
        });
        self.open[t].insert(fd, id);
        self.m.by_fd[t].entry(fd).or_default().push(id);
        id
    }

    fn close(&mut self, t: TableId, fd: i32, how: CloseHow, at: &Place) -> Option<EntryId> {
        let id = self.open[t].remove(&fd)?;
        self.m.entries[id].closed = Some(Closing {
            how,
            at: at.clone(),
        });
        self.m.events.push(FdEvent {
            seq: at.seq,
            pid: at.pid,
            tid: at.tid,
            fd,
            entry: id,
            kind: FdEventKind::Close(how),
        });
        Some(id)
    }

    fn set_cloexec(&mut self, id: EntryId, on: bool, at: &Place) {
        let e = &mut self.m.entries[id];
        e.cloexec_changes.push((at.seq, on));
        let fd = e.fd;
        self.m.events.push(FdEvent {
            seq: at.seq,
            pid: at.pid,
            tid: at.tid,
            fd,
            entry: id,
            kind: FdEventKind::SetCloexec(on),
        });
    }

    fn cloexec_now(&self, id: EntryId) -> bool {
        let e = &self.m.entries[id];
        e.cloexec_changes.last().map_or(e.cloexec, |c| c.1)
    }

    /// A copy of table `from` for `pid` (fork, or exec/close_range unsharing).
    fn copy_table(&mut self, from: TableId, from_pid: i32, at: Place) -> TableId {
        let t = self.new_table();
        let open: Vec<(i32, EntryId)> = self.open[from].iter().map(|(&f, &e)| (f, e)).collect();
        for (fd, src) in open {
            let e = self.m.entries[src].clone();
            let origin = Origin::Inherited {
                from_pid,
                fork_seq: at.seq,
                from_entry: src,
            };
            let ce = self.cloexec_now(src);
            self.insert(
                t,
                fd,
                e.object,
                e.end,
                e.access,
                ce,
                at.clone(),
                origin,
                Some(e.created),
            );
        }
        t
    }

    fn spawn(&mut self, s: &Spawn) {
        let (pid, tid, seq) = (s.pid.0, s.tid.0, s.at.seq.0);
        self.pid_of_tid.insert(tid, pid);
        match s.kind {
            SpawnKind::Root => {
                self.table(pid, tid, seq);
            }
            SpawnKind::Thread => *self.threads.entry(pid).or_insert(1) += 1,
            SpawnKind::ExecTakeover => {}
            SpawnKind::Fork | SpawnKind::Vfork | SpawnKind::Clone => {
                let parent = s
                    .creator_tid
                    .and_then(|t| self.pid_of_tid.get(&t.0).copied())
                    .or(s.parent_pid.map(|p| p.0));
                let parent = parent.unwrap_or(pid);
                let ptable = self.table(parent, s.creator_tid.map_or(parent, |t| t.0), seq);
                self.m.procs.insert(
                    pid,
                    ProcFds {
                        pid,
                        parent: Some(parent),
                        start: seq,
                        ..Default::default()
                    },
                );
                self.threads.insert(pid, 1);
                self.m.forks.push((parent, pid, seq));
                let t = if s.clone_flags.unwrap_or(0) & CLONE_FILES != 0 {
                    ptable
                } else {
                    self.copy_table(
                        ptable,
                        parent,
                        Place {
                            pid,
                            tid,
                            seq,
                            what: s.kind.as_str().into(),
                        },
                    )
                };
                self.attach(pid, t, seq);
            }
        }
    }

    /// Drops `pid`'s use of a shared table, giving it a private copy.
    fn unshare(&mut self, pid: i32, tid: i32, seq: u64, what: &str) -> TableId {
        let t = self.table(pid, tid, seq);
        if self.users[t] <= 1 {
            return t;
        }
        self.users[t] -= 1;
        let n = self.copy_table(
            t,
            pid,
            Place {
                pid,
                tid,
                seq,
                what: what.into(),
            },
        );
        self.attach(pid, n, seq);
        n
    }

    fn exec(&mut self, e: &Exec) {
        let (pid, tid, seq) = (e.pid.0, e.former_tid.0, e.at.seq.0);
        let t = self.unshare(pid, tid, seq, "exec");
        let at = Place {
            pid,
            tid,
            seq,
            what: "exec".into(),
        };
        let doomed: Vec<i32> = self.open[t]
            .iter()
            .filter(|(_, &id)| self.cloexec_now(id))
            .map(|(&f, _)| f)
            .collect();
        for fd in doomed {
            self.close(t, fd, CloseHow::Exec, &at);
        }
        let kept = self.open[t].values().copied().collect();
        self.m.execs.push(ExecPoint {
            pid,
            tid,
            seq,
            argv: e.argv.clone(),
            kept,
        });
        if let Some(p) = self.m.procs.get_mut(&pid) {
            p.execs.push((seq, e.argv.clone()));
        }
        self.threads.insert(pid, 1);
    }

    fn exit(&mut self, e: &Exit) {
        let (pid, seq) = (e.pid.0, e.at.seq.0);
        if let Some(n) = self.threads.get_mut(&pid) {
            *n = n.saturating_sub(1);
        }
        if !e.process_exit {
            return;
        }
        let Some(t) = self.table_of.remove(&pid) else {
            return;
        };
        if let Some(p) = self.m.procs.get_mut(&pid) {
            p.exit = Some(seq);
        }
        self.users[t] -= 1;
        if self.users[t] == 0 {
            let at = Place {
                pid,
                tid: e.tid.0,
                seq,
                what: "exit".into(),
            };
            let fds: Vec<i32> = self.open[t].keys().copied().collect();
            for fd in fds {
                self.close(t, fd, CloseHow::Exit, &at);
            }
        }
    }

    fn apply(&mut self, at: &Place, name: &str, op: Op) {
        let t = self.table(at.pid, at.tid, at.seq);
        match op {
            Op::New {
                fd,
                object,
                end,
                access,
                cloexec,
            } => {
                self.insert(
                    t,
                    fd,
                    object,
                    end,
                    access,
                    cloexec,
                    at.clone(),
                    Origin::Created,
                    None,
                );
            }
            Op::Dup {
                old,
                new,
                cloexec,
                object,
            } => {
                let src = self.open[t].get(&old).copied();
                let (object, end, access, created) = match src {
                    Some(s) => {
                        let e = &self.m.entries[s];
                        (
                            e.object.clone().or(object),
                            e.end,
                            e.access,
                            Some(e.created.clone()),
                        )
                    }
                    None => (object, None, Access::Unknown, None),
                };
                let origin = Origin::Dup {
                    from_fd: old,
                    from_entry: src,
                };
                if let Some(s) = src {
                    self.m.entries[s].last_use = Some(at.seq);
                }
                self.insert(
                    t,
                    new,
                    object,
                    end,
                    access,
                    cloexec,
                    at.clone(),
                    origin,
                    created,
                );
            }
            Op::Close { fd } => {
                self.close(t, fd, CloseHow::Close, at);
            }
            Op::CloseRange {
                first,
                last,
                cloexec,
                unshare,
            } => {
                let t = if unshare {
                    self.unshare(at.pid, at.tid, at.seq, "close_range")
                } else {
                    t
                };
                let fds: Vec<(i32, EntryId)> = self.open[t]
                    .range(first as i32..)
                    .take_while(|(&f, _)| f as u32 <= last)
                    .map(|(&f, &e)| (f, e))
                    .collect();
                for (fd, id) in fds {
                    if cloexec {
                        self.set_cloexec(id, true, at);
                    } else {
                        self.close(t, fd, CloseHow::CloseRange, at);
                    }
                }
            }
            Op::SetCloexec { fd, on } => {
                if let Some(id) = self.open[t].get(&fd).copied() {
                    self.set_cloexec(id, on, at);
                }
            }
            Op::Use { fd, dir, bytes } => {
                let Some(id) = self.open[t].get(&fd).copied() else {
                    return;
                };
                let e = &mut self.m.entries[id];
                e.last_use = Some(at.seq);
                if let (Some(o), Some(d)) = (e.object.as_ref().filter(|_| e.is_pipe()), dir) {
                    let io = self.m.pipes.entry(o.clone()).or_default();
                    match d {
                        Dir::Write => io.bytes_written += bytes.max(0) as u64,
                        Dir::Read if bytes == 0 => io.eof_reads.push(at.clone()),
                        Dir::Read => io.bytes_read += bytes as u64,
                    }
                }
            }
            Op::BadFd { fd } => {
                let threads = self.threads.get(&at.pid).copied().unwrap_or(1);
                self.m.bad_calls.push(BadCall {
                    at: at.clone(),
                    name: name.to_string(),
                    fd,
                    threads,
                });
            }
        }
    }
}
