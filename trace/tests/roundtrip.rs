//! TraceWriter → TraceReader: what is written comes back, and what is not a
//! trace is refused with the right error.

use lockstep_trace::*;
use serde_json::json;

fn stamp(seq: u64) -> Stamp {
    Stamp {
        seq: Seq(seq),
        ts_ns: 1000 * seq,
    }
}

fn sample() -> Vec<Record> {
    vec![
        Record::Meta {
            key: "command".into(),
            value: r#"["sh","-c","true"]"#.into(),
        },
        Record::Spawn(Spawn {
            at: stamp(1),
            kind: SpawnKind::Root,
            tid: Tid(10),
            pid: Pid(10),
            parent_pid: None,
            creator_tid: None,
            clone_flags: None,
        }),
        Record::Syscall(Box::new(Syscall {
            pid: Pid(10),
            tid: Tid(10),
            nr: 22,
            name: "pipe".into(),
            args: [0x7ffd_0000, 0, 0, 0, 0, u64::MAX],
            entry: stamp(2),
            decoded: json!({}),
            text: "[3, 4]".into(),
            exit: Some(stamp(3)),
            outcome: SyscallOutcome::Returned,
            ret: Some(0),
            error: None,
            result: json!({"pipefd": [3, 4]}),
            stack: vec![0x7f00_1234, 0x5555_0042],
        })),
        Record::Spawn(Spawn {
            at: stamp(4),
            kind: SpawnKind::Fork,
            tid: Tid(11),
            pid: Pid(11),
            parent_pid: Some(Pid(10)),
            creator_tid: Some(Tid(10)),
            clone_flags: Some(0x1200011),
        }),
        Record::Exec(Exec {
            at: stamp(5),
            pid: Pid(11),
            former_tid: Tid(11),
            exe: "/usr/bin/true".into(),
            path: "/bin/true".into(),
            argv: vec!["true".into()],
        }),
        Record::Signal(Signal {
            at: stamp(6),
            pid: Pid(10),
            tid: Tid(10),
            signo: 17,
            code: 1,
            sender_pid: Some(Pid(11)),
            fault_addr: None,
        }),
        Record::Exit(Exit {
            at: stamp(7),
            tid: Tid(11),
            pid: Pid(11),
            status: ExitStatus::Exited { code: 0 },
            process_exit: true,
        }),
        Record::Syscall(Box::new(Syscall {
            pid: Pid(10),
            tid: Tid(10),
            nr: 231,
            name: "exit_group".into(),
            args: [0; 6],
            entry: stamp(8),
            decoded: json!({"status": 0}),
            text: "0".into(),
            exit: Some(stamp(9)),
            outcome: SyscallOutcome::ThreadExited,
            ret: None,
            error: None,
            result: json!({}),
            stack: Vec::new(),
        })),
        Record::Exit(Exit {
            at: stamp(10),
            tid: Tid(10),
            pid: Pid(10),
            status: ExitStatus::Killed {
                signal: 9,
                core_dumped: false,
            },
            process_exit: true,
        }),
    ]
}

fn write(path: &std::path::Path) {
    let mut w = TraceWriter::create(path, false).unwrap();
    for r in sample() {
        w.write(&r).unwrap();
    }
    w.finish().unwrap();
}

#[test]
fn records_come_back_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    write(&path);
    let t = TraceReader::open(&path).unwrap();
    assert_eq!(t.command().unwrap(), vec!["sh", "-c", "true"]);
    assert_eq!(t.meta("complete").unwrap().as_deref(), Some("1"));
    let recs = sample();
    let spawns: Vec<Spawn> = recs
        .iter()
        .filter_map(|r| {
            if let Record::Spawn(s) = r {
                Some(s.clone())
            } else {
                None
            }
        })
        .collect();
    assert_eq!(t.spawns().unwrap(), spawns);
    let sys: Vec<Syscall> = recs
        .iter()
        .filter_map(|r| {
            if let Record::Syscall(s) = r {
                Some((**s).clone())
            } else {
                None
            }
        })
        .collect();
    assert_eq!(t.syscalls(&SyscallFilter::default()).unwrap(), sys);
    assert_eq!(t.execs().unwrap().len(), 1);
    assert_eq!(t.signals().unwrap()[0].sender_pid, Some(Pid(11)));
    assert_eq!(
        t.exits().unwrap()[1].status,
        ExitStatus::Killed {
            signal: 9,
            core_dumped: false
        }
    );

    let procs = t.processes().unwrap();
    assert_eq!(procs.len(), 2);
    assert_eq!(procs[1].exe.as_deref(), Some("/usr/bin/true"));
    assert_eq!(procs[1].argv, Some(vec!["true".to_string()]));
    assert_eq!(procs[1].status, Some(ExitStatus::Exited { code: 0 }));
    assert_eq!(
        procs[0].status,
        Some(ExitStatus::Killed {
            signal: 9,
            core_dumped: false
        })
    );

    let only = t
        .syscalls(&SyscallFilter {
            names: vec!["pipe".into()],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(only.len(), 1);
    assert_eq!(only[0].args[5], u64::MAX, "raw registers keep all 64 bits");
    let stats = t.syscall_stats().unwrap();
    assert_eq!(stats.iter().map(|s| s.calls).sum::<u64>(), 2);
}

#[test]
fn an_existing_trace_is_not_overwritten_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    write(&path);
    assert!(matches!(
        TraceWriter::create(&path, false),
        Err(TraceError::Exists(_))
    ));
    TraceWriter::create(&path, true).unwrap().finish().unwrap();
    assert!(TraceReader::open(&path)
        .unwrap()
        .spawns()
        .unwrap()
        .is_empty());
}

#[test]
fn what_is_not_a_trace_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.db");
    assert!(matches!(
        TraceReader::open(&missing),
        Err(TraceError::Missing(_))
    ));
    let text = dir.path().join("text.db");
    std::fs::write(&text, "not sqlite").unwrap();
    assert!(matches!(
        TraceReader::open(&text),
        Err(TraceError::NotATrace(_))
    ));
    assert!(matches!(
        TraceReader::open(dir.path()),
        Err(TraceError::NotATrace(_))
    ));
    let unwritable = dir.path().join("no/such/dir/t.db");
    assert!(matches!(
        TraceWriter::create(&unwritable, false),
        Err(TraceError::Unwritable { .. })
    ));
}

#[test]
fn an_unfinished_recording_still_opens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    {
        let mut w = TraceWriter::create(&path, false).unwrap();
        for r in sample().into_iter().take(4) {
            w.write(&r).unwrap();
        }
        w.flush().unwrap();
        // Dropped without finish, as when the recorder is killed.
    }
    let t = TraceReader::open(&path).unwrap();
    assert_eq!(t.meta("complete").unwrap().as_deref(), Some("0"));
    assert_eq!(t.spawns().unwrap().len(), 2);
}

#[test]
fn memory_segments_come_back_in_sequence_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    let seg = |seq: u64, tid: i32, addr: u64| MemSegment {
        at: stamp(seq),
        pid: Pid(10),
        tid: Tid(tid),
        mechanism: "agent".into(),
        accesses: vec![
            MemAccess {
                addr,
                size: 4,
                ip: 0x401136,
                flags: access::READ | access::WRITE,
                via: Via::Instruction,
            },
            MemAccess {
                addr: addr + 64,
                size: 100,
                ip: 0x401200,
                flags: access::WRITE,
                via: Via::Memset,
            },
        ],
    };
    let mut w = TraceWriter::create(&path, false).unwrap();
    // Two threads' batches overlap in sequence: the reader merges them.
    for (seq, tid) in [(3, 12), (5, 11), (9, 11), (14, 12)] {
        w.write(&Record::Mem(Box::new(seg(seq, tid, 0x4040))))
            .unwrap();
    }
    w.finish().unwrap();
    let t = TraceReader::open(&path).unwrap();
    assert!(t.has_mem().unwrap());
    let mut got = Vec::new();
    t.each_mem_segment(|s| {
        got.push(s);
        Ok(())
    })
    .unwrap();
    let want: Vec<_> = [(3, 12), (5, 11), (9, 11), (14, 12)]
        .into_iter()
        .map(|(seq, tid)| seg(seq, tid, 0x4040))
        .collect();
    assert_eq!(got, want);
    let blob_len: i64 = t
        .query_rows("SELECT length(segments) FROM mem_batches WHERE seq = 3 AND nsegments = 2")
        .unwrap()[0][0]
        .as_i64()
        .unwrap();
    assert_eq!(
        blob_len,
        72 + 24,
        "thread 12's two segments in one batch: a header and two entries, then a header saying `same accesses`"
    );
}
