//! A builder of synthetic syscall traces for the fd analyses' tests: each
//! call appends what the recorder would write for one real call (the
//! syscall row with raw and decoded arguments and the recorder's `result`
//! objects, or a spawn / exec / exit row), with increasing sequence numbers
//! (entry and exit of a syscall take one number each).

use crate::fds::FdModel;
use lockstep_trace::{
    Exec, Exit, ExitStatus, Hang, HungThread, Pid, Seq, Spawn, SpawnKind, Stamp, Syscall,
    SyscallOutcome, Tid,
};
use serde_json::{json, Value};

pub const O_CLOEXEC: u64 = 0o2000000;
pub const CLONE_FILES: u64 = 0x400;
const SIGCHLD: u64 = 17;

/// A synthetic trace: spawns, execs, exits and syscalls.
#[derive(Default)]
pub struct SysTrace {
    pub spawns: Vec<Spawn>,
    pub execs: Vec<Exec>,
    pub exits: Vec<Exit>,
    pub syscalls: Vec<Syscall>,
    seq: u64,
    next_inode: u64,
}

impl SysTrace {
    /// A trace whose root process is `root`.
    pub fn new(root: i32) -> Self {
        let mut t = SysTrace {
            next_inode: 1000,
            ..Default::default()
        };
        let at = t.stamp();
        t.spawns.push(Spawn {
            at,
            kind: SpawnKind::Root,
            tid: Tid(root),
            pid: Pid(root),
            parent_pid: None,
            creator_tid: None,
            clone_flags: None,
        });
        t
    }

    fn stamp(&mut self) -> Stamp {
        self.seq += 1;
        Stamp {
            seq: Seq(self.seq),
            ts_ns: self.seq * 1000,
        }
    }

    /// The last sequence number used.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Appends a syscall of thread `tid` of `pid`; `ret` None = never returned.
    /// Returns its entry seq.
    #[allow(clippy::too_many_arguments)]
    pub fn call(
        &mut self,
        pid: i32,
        tid: i32,
        name: &str,
        args: [u64; 6],
        decoded: Value,
        ret: Option<i64>,
        error: Option<&str>,
        result: Value,
    ) -> u64 {
        let entry = self.stamp();
        let exit = ret.map(|_| self.stamp());
        self.syscalls.push(Syscall {
            pid: Pid(pid),
            tid: Tid(tid),
            nr: 0,
            name: name.into(),
            args,
            entry,
            decoded,
            text: String::new(),
            exit,
            outcome: if ret.is_some() {
                SyscallOutcome::Returned
            } else {
                SyscallOutcome::Unfinished
            },
            ret,
            error: error.map(str::to_string),
            result,
            stack: Vec::new(),
        });
        entry.seq.0
    }

    fn spawn(&mut self, kind: SpawnKind, parent: i32, child: i32, tid: i32, flags: u64) -> u64 {
        let at = self.stamp();
        self.spawns.push(Spawn {
            at,
            kind,
            tid: Tid(tid),
            pid: Pid(child),
            parent_pid: Some(Pid(parent)),
            creator_tid: Some(Tid(parent)),
            clone_flags: Some(flags),
        });
        at.seq.0
    }

    /// fork(): the child gets a copy of the table. Returns the spawn seq.
    pub fn fork(&mut self, parent: i32, child: i32) -> u64 {
        self.spawn(SpawnKind::Fork, parent, child, child, SIGCHLD)
    }

    /// clone(CLONE_FILES): a process sharing the parent's table.
    pub fn clone_files(&mut self, parent: i32, child: i32) -> u64 {
        self.spawn(
            SpawnKind::Clone,
            parent,
            child,
            child,
            CLONE_FILES | SIGCHLD,
        )
    }

    /// A new thread `tid` in `pid`.
    pub fn thread(&mut self, pid: i32, tid: i32) -> u64 {
        self.spawn(SpawnKind::Thread, pid, pid, tid, 0x3d0f00)
    }

    /// pipe2(flags) → (r, w); returns the pipe's object `pipe:[N]`.
    pub fn pipe(&mut self, pid: i32, r: i32, w: i32, flags: u64) -> String {
        self.next_inode += 1;
        let obj = format!("pipe:[{}]", self.next_inode);
        let result = json!({"pipefd": [r, w], "objects": [obj, obj]});
        self.call(
            pid,
            pid,
            "pipe2",
            [0x7ff0, flags, 0, 0, 0, 0],
            json!({"flags": flags.to_string()}),
            Some(0),
            None,
            result,
        );
        obj
    }

    /// socketpair(AF_UNIX, SOCK_STREAM) → (a, b).
    pub fn socketpair(&mut self, pid: i32, a: i32, b: i32) -> String {
        self.next_inode += 1;
        let obj = format!("socket:[{}]", self.next_inode);
        let result =
            json!({"sv": [a, b], "objects": [obj, format!("socket:[{}]", self.next_inode + 500)]});
        self.call(
            pid,
            pid,
            "socketpair",
            [1, 1, 0, 0x7ff0, 0, 0],
            json!({}),
            Some(0),
            None,
            result,
        );
        obj
    }

    /// openat(AT_FDCWD, path, flags) → fd.
    pub fn open(&mut self, pid: i32, path: &str, flags: u64, fd: i32) -> u64 {
        let dec = json!({"dirfd": -100, "path": path, "flags": flags.to_string(), "mode": 0});
        self.call(
            pid,
            pid,
            "openat",
            [-100i64 as u64, 0x7ff0, flags, 0, 0, 0],
            dec,
            Some(fd as i64),
            None,
            json!({"object": path}),
        )
    }

    pub fn dup2(&mut self, pid: i32, old: i32, new: i32) -> u64 {
        self.call(
            pid,
            pid,
            "dup2",
            [old as u64, new as u64, 0, 0, 0, 0],
            json!({"oldfd": old, "newfd": new}),
            Some(new as i64),
            None,
            json!({}),
        )
    }

    pub fn dup3(&mut self, pid: i32, old: i32, new: i32, flags: u64) -> u64 {
        let dec = json!({"oldfd": old, "newfd": new});
        self.call(
            pid,
            pid,
            "dup3",
            [old as u64, new as u64, flags, 0, 0, 0],
            dec,
            Some(new as i64),
            None,
            json!({}),
        )
    }

    pub fn dup(&mut self, pid: i32, old: i32, ret: i32) -> u64 {
        self.call(
            pid,
            pid,
            "dup",
            [old as u64, 0, 0, 0, 0, 0],
            json!({"fd": old}),
            Some(ret as i64),
            None,
            json!({}),
        )
    }

    /// fcntl(fd, cmd, arg) returning `ret`.
    pub fn fcntl(&mut self, pid: i32, fd: i32, cmd: u64, arg: u64, ret: i64) -> u64 {
        self.call(
            pid,
            pid,
            "fcntl",
            [fd as u64, cmd, arg, 0, 0, 0],
            json!({"fd": fd, "cmd": cmd.to_string()}),
            Some(ret),
            None,
            json!({}),
        )
    }

    pub fn close(&mut self, pid: i32, fd: i32) -> u64 {
        self.call(
            pid,
            pid,
            "close",
            [fd as u64, 0, 0, 0, 0, 0],
            json!({"fd": fd}),
            Some(0),
            None,
            json!({}),
        )
    }

    pub fn close_range(&mut self, pid: i32, first: u32, last: u32, flags: u64) -> u64 {
        let dec = json!({"first": first, "last": last, "flags": flags});
        self.call(
            pid,
            pid,
            "close_range",
            [first as u64, last as u64, flags, 0, 0, 0],
            dec,
            Some(0),
            None,
            json!({}),
        )
    }

    /// read/write(fd) returning `ret` bytes.
    pub fn io(&mut self, pid: i32, name: &str, fd: i32, ret: i64) -> u64 {
        self.call(
            pid,
            pid,
            name,
            [fd as u64, 0x7ff0, 4096, 0, 0, 0],
            json!({"fd": fd, "count": 4096}),
            Some(ret),
            None,
            json!({}),
        )
    }

    /// A call on `fd` that failed with EBADF.
    pub fn ebadf(&mut self, pid: i32, name: &str, fd: i32) -> u64 {
        let dec = json!({"fd": fd, "count": 4});
        self.call(
            pid,
            pid,
            name,
            [fd as u64, 0x7ff0, 4, 0, 0, 0],
            dec,
            Some(-9),
            Some("EBADF"),
            json!({}),
        )
    }

    /// A successful execve of `argv` (the syscall row around the exec event).
    pub fn exec(&mut self, pid: i32, argv: &[&str]) -> u64 {
        let entry = self.stamp();
        let at = self.stamp();
        let exit = self.stamp();
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        let path = format!("/usr/bin/{}", argv[0]);
        self.execs.push(Exec {
            at,
            pid: Pid(pid),
            former_tid: Tid(pid),
            exe: path.clone(),
            path: path.clone(),
            argv: argv.clone(),
        });
        self.syscalls.push(Syscall {
            pid: Pid(pid),
            tid: Tid(pid),
            nr: 59,
            name: "execve".into(),
            args: [0; 6],
            entry,
            decoded: json!({"path": path, "argv": argv}),
            text: String::new(),
            exit: Some(exit),
            outcome: SyscallOutcome::Returned,
            ret: Some(0),
            error: None,
            result: json!({}),
            stack: Vec::new(),
        });
        at.seq.0
    }

    /// The end of process `pid` (its main thread).
    pub fn exit(&mut self, pid: i32) -> u64 {
        let at = self.stamp();
        let status = ExitStatus::Exited { code: 0 };
        self.exits.push(Exit {
            at,
            tid: Tid(pid),
            pid: Pid(pid),
            status,
            process_exit: true,
        });
        at.seq.0
    }

    /// A call that never returns (blocked at the end). Returns its entry seq.
    pub fn block(&mut self, pid: i32, name: &str, decoded: Value) -> u64 {
        let fd = decoded.get("fd").and_then(Value::as_i64).unwrap_or(0) as u64;
        self.call(
            pid,
            pid,
            name,
            [fd, 0, 0, 0, 0, 0],
            decoded,
            None,
            None,
            json!({}),
        )
    }

    /// A hang snapshot of the blocked calls (pid, entry seq, wchan).
    pub fn hang(&mut self, blocked: &[(i32, u64, &str)]) -> Hang {
        let at = self.stamp();
        let threads = blocked
            .iter()
            .map(|&(pid, entry, wchan)| {
                let s = self
                    .syscalls
                    .iter()
                    .find(|s| s.entry.seq.0 == entry)
                    .expect("blocked call");
                HungThread {
                    pid: Pid(pid),
                    tid: Tid(pid),
                    syscall: Some(s.name.clone()),
                    entry_seq: Some(Seq(entry)),
                    args: s.decoded.to_string(),
                    wchan: wchan.into(),
                    stack: Vec::new(),
                }
            })
            .collect();
        Hang {
            at,
            timeout_ms: 1000,
            threads,
        }
    }

    /// The fd model of everything so far.
    pub fn model(&self) -> FdModel {
        FdModel::build(&self.spawns, &self.execs, &self.exits, &self.syscalls)
    }
}
