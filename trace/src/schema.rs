//! The SQLite schema of a trace and its version.
//!
//! Tables (`*_rows`) are the storage and may change between versions; the
//! views (`processes`, `threads`, `syscalls`, `events`) are the stable
//! interface users query with the sqlite3 shell. docs/SCHEMA.md describes both.

/// `PRAGMA user_version` of traces this build writes. Readers accept this
/// version and older ones they know how to read.
pub const SCHEMA_VERSION: i64 = 4;

/// What each version added (readers accept every version listed):
/// 1: processes, syscalls, sync ops, mappings, hangs, findings;
/// 2: `mem_rows` / `mem_batches` (memory accesses), heap and atomic sync
///    ops (`object_kind` `heap` and `atomic` in `sync_ops`);
/// 3: `syscall_data_rows` / `syscall_data` (the bytes syscalls moved, for
///    replay), `serial_rows` / `schedule_decisions` (`record --serialize`),
///    the `env`, `aslr`, `serialize` and `chaos_seed` meta keys; the schedule: `switch_rows`,
///    `wakeup_rows`, `sched_attr_rows`, `schedstat_rows` and their views
///    (`sched_switches`, `sched_wakeups`, `sched_attrs`, `schedstats`);
/// 4: `serial_rows.sync_op` (a preemption at the thread's N-th sync op);
///    `tsc_rows` / `tsc_reads` (trapped rdtsc/rdtscp and the values the
///    program got), `rdtsc` events in `events`, the `tsc` meta key.
pub const MIN_READABLE_VERSION: i64 = 1;

/// `PRAGMA application_id` of a lockstep trace ("LKST"), which tells a trace
/// from any other SQLite file.
pub const APPLICATION_ID: i64 = 0x4C4B_5354;

/// Indices built when the recording ends (cheaper in bulk than row by
/// row). Sync rows get none: every analysis reads them in `seq` order, their
/// primary key, and at millions of rows an index costs a second to build.
pub const INDEX_AT_END: &str = "";

/// Creates every table, index and view of a new trace.
pub const CREATE: &str = r#"
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE spawn_rows (
    seq         INTEGER PRIMARY KEY,
    ts_ns       INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    tid         INTEGER NOT NULL,
    pid         INTEGER NOT NULL,
    parent_pid  INTEGER,
    creator_tid INTEGER,
    clone_flags INTEGER
);
CREATE INDEX spawn_rows_tid ON spawn_rows(tid);
CREATE INDEX spawn_rows_pid ON spawn_rows(pid);

CREATE TABLE exit_rows (
    seq          INTEGER PRIMARY KEY,
    ts_ns        INTEGER NOT NULL,
    tid          INTEGER NOT NULL,
    pid          INTEGER NOT NULL,
    how          TEXT NOT NULL,
    code         INTEGER,
    signal       INTEGER,
    core_dumped  INTEGER,
    process_exit INTEGER NOT NULL
);
CREATE INDEX exit_rows_tid ON exit_rows(tid);
CREATE INDEX exit_rows_pid ON exit_rows(pid);

CREATE TABLE exec_rows (
    seq        INTEGER PRIMARY KEY,
    ts_ns      INTEGER NOT NULL,
    pid        INTEGER NOT NULL,
    former_tid INTEGER NOT NULL,
    exe        TEXT NOT NULL,
    path       TEXT NOT NULL,
    argv       TEXT NOT NULL
);
CREATE INDEX exec_rows_pid ON exec_rows(pid);

CREATE TABLE signal_rows (
    seq        INTEGER PRIMARY KEY,
    ts_ns      INTEGER NOT NULL,
    pid        INTEGER NOT NULL,
    tid        INTEGER NOT NULL,
    signo      INTEGER NOT NULL,
    code       INTEGER NOT NULL,
    sender_pid INTEGER,
    fault_addr INTEGER
);
CREATE INDEX signal_rows_tid ON signal_rows(tid);

CREATE TABLE syscall_rows (
    id        INTEGER PRIMARY KEY,
    pid       INTEGER NOT NULL,
    tid       INTEGER NOT NULL,
    nr        INTEGER NOT NULL,
    name      TEXT NOT NULL,
    a0 INTEGER NOT NULL, a1 INTEGER NOT NULL, a2 INTEGER NOT NULL,
    a3 INTEGER NOT NULL, a4 INTEGER NOT NULL, a5 INTEGER NOT NULL,
    entry_seq INTEGER NOT NULL UNIQUE,
    entry_ns  INTEGER NOT NULL,
    decoded   TEXT NOT NULL,
    text      TEXT NOT NULL,
    exit_seq  INTEGER UNIQUE,
    exit_ns   INTEGER,
    outcome   TEXT NOT NULL,
    ret       INTEGER,
    error     TEXT,
    result    TEXT NOT NULL,
    stack     TEXT
);
CREATE INDEX syscall_rows_tid_seq ON syscall_rows(tid, entry_seq);
CREATE INDEX syscall_rows_pid_seq ON syscall_rows(pid, entry_seq);
CREATE INDEX syscall_rows_name ON syscall_rows(name);

-- Sync ops are the most numerous rows: integers only, names interned in
-- sync_names, call stacks interned in stacks (a blob of little-endian u64
-- return addresses, innermost first). No index but the primary key.
CREATE TABLE sync_names (
    code INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
CREATE TABLE stacks (
    id     INTEGER PRIMARY KEY,
    frames BLOB NOT NULL
);
CREATE TABLE sync_rows (
    seq       INTEGER PRIMARY KEY,
    ts_ns     INTEGER NOT NULL,
    pid       INTEGER NOT NULL,
    tid       INTEGER NOT NULL,
    op        INTEGER NOT NULL,
    phase     INTEGER NOT NULL,
    obj       INTEGER NOT NULL,
    arg       INTEGER NOT NULL,
    arg2      INTEGER NOT NULL,
    flags     INTEGER NOT NULL,
    ret       INTEGER NOT NULL,
    call_site INTEGER NOT NULL,
    stack     INTEGER NOT NULL,
    mechanism INTEGER NOT NULL
);

-- Memory accesses. A segment is a thread's accesses between two of its
-- sync ops; one row holds a batch of consecutive segments of one thread
-- (`seq`/`last_seq` the first and last segment's), packed in `segments`:
-- per segment a 24-byte header (seq, ts_ns, count) then `count` 24-byte
-- entries (see docs/SCHEMA.md). Batching keeps sync-heavy programs from
-- paying one row per sync op.
CREATE TABLE mem_rows (
    seq       INTEGER PRIMARY KEY,
    last_seq  INTEGER NOT NULL,
    ts_ns     INTEGER NOT NULL,
    pid       INTEGER NOT NULL,
    tid       INTEGER NOT NULL,
    mechanism TEXT NOT NULL,
    nsegments INTEGER NOT NULL,
    count     INTEGER NOT NULL,
    segments  BLOB NOT NULL
);

CREATE TABLE mapping_rows (
    seq         INTEGER NOT NULL,
    pid         INTEGER NOT NULL,
    start       INTEGER NOT NULL,
    end         INTEGER NOT NULL,
    file_offset INTEGER NOT NULL,
    perms       TEXT NOT NULL,
    path        TEXT NOT NULL
);
CREATE INDEX mapping_rows_pid ON mapping_rows(pid, seq);

CREATE TABLE hang_rows (
    seq        INTEGER NOT NULL,
    ts_ns      INTEGER NOT NULL,
    timeout_ms INTEGER NOT NULL,
    pid        INTEGER NOT NULL,
    tid        INTEGER NOT NULL,
    syscall    TEXT,
    entry_seq  INTEGER,
    args       TEXT NOT NULL,
    wchan      TEXT NOT NULL,
    stack      TEXT NOT NULL
);

-- Written by `lockstep report` / `check` (the latest analysis replaces the
-- previous one); JSON columns as in the JSON report.
CREATE TABLE finding_rows (
    id        INTEGER PRIMARY KEY,
    kind      TEXT NOT NULL,
    severity  TEXT NOT NULL,
    summary   TEXT NOT NULL,
    pids      TEXT NOT NULL,
    tids      TEXT NOT NULL,
    locations TEXT NOT NULL,
    details   TEXT NOT NULL
);

-- The bytes a syscall moved: what the kernel wrote into the program's
-- memory (kind 'out') and what the program wrote to the recording's
-- terminal ('stdout', 'stderr'), keyed by the syscall's entry_seq.
CREATE TABLE syscall_data_rows (
    entry_seq INTEGER NOT NULL,
    idx       INTEGER NOT NULL,
    pid       INTEGER NOT NULL,
    tid       INTEGER NOT NULL,
    kind      TEXT NOT NULL,
    addr      INTEGER NOT NULL,
    data      BLOB NOT NULL,
    PRIMARY KEY (entry_seq, idx)
) WITHOUT ROWID;

-- The decisions of a serialized recording: which thread ran the
-- program's code from when ('run'), where a thread was preempted
-- ('preempt': its registers and a checksum of its stack top, or the
-- count of its sync ops when it was stopped entering one).
CREATE TABLE serial_rows (
    seq       INTEGER PRIMARY KEY,
    ts_ns     INTEGER NOT NULL,
    pid       INTEGER NOT NULL,
    tid       INTEGER NOT NULL,
    kind      TEXT NOT NULL,
    regs      BLOB,
    stack_sum INTEGER,
    sync_op   INTEGER
);
CREATE VIEW schedule_decisions AS
SELECT seq, ts_ns, pid, tid, kind, stack_sum, sync_op FROM serial_rows;

-- Trapped time-stamp counter reads (version 4; `record --trap-tsc` and
-- `--serialize`): the value the thread got, `aux` (TSC_AUX) for rdtscp
-- and NULL for rdtsc. A replay hands each thread its values in order.
CREATE TABLE tsc_rows (
    seq   INTEGER PRIMARY KEY,
    ts_ns INTEGER NOT NULL,
    pid   INTEGER NOT NULL,
    tid   INTEGER NOT NULL,
    value INTEGER NOT NULL,
    aux   INTEGER
);
CREATE VIEW tsc_reads AS
SELECT seq, ts_ns, pid, tid, CASE WHEN aux IS NULL THEN 'rdtsc' ELSE 'rdtscp' END AS instruction,
       value, aux FROM tsc_rows;

CREATE VIEW findings AS
SELECT id, kind, severity, summary, pids, tids, locations, details FROM finding_rows;

CREATE VIEW sync_ops AS
SELECT s.seq AS seq, s.ts_ns AS ts_ns, s.pid AS pid, s.tid AS tid, n.name AS op,
       CASE
         WHEN n.name LIKE 'pthread_mutexattr%' THEN 'mutexattr'
         WHEN n.name LIKE 'pthread_mutex%' THEN 'mutex'
         WHEN n.name LIKE 'pthread_rwlock%' THEN 'rwlock'
         WHEN n.name LIKE 'pthread_cond%' THEN 'cond'
         WHEN n.name LIKE 'sem_%' THEN 'semaphore'
         WHEN n.name LIKE 'pthread_spin%' THEN 'spinlock'
         WHEN n.name LIKE 'pthread_barrier%' THEN 'barrier'
         WHEN n.name LIKE 'pthread_attr%' THEN 'thread_attr'
         WHEN n.name = 'pthread_once' THEN 'once'
         WHEN n.name IN ('malloc', 'calloc', 'realloc', 'free', 'posix_memalign', 'aligned_alloc') THEN 'heap'
         WHEN n.name = 'atomic' THEN 'atomic'
         ELSE 'thread'
       END AS object_kind,
       p.name AS phase, s.obj AS object, s.arg AS arg, s.arg2 AS arg2, s.flags AS flags, s.ret AS ret,
       s.call_site AS call_site, k.frames AS stack, m.name AS mechanism
FROM sync_rows s
JOIN stacks k ON k.id = s.stack
JOIN sync_names n ON n.code = s.op
JOIN sync_names p ON p.code = s.phase
JOIN sync_names m ON m.code = s.mechanism;

CREATE VIEW mem_batches AS
SELECT seq, last_seq, ts_ns, pid, tid, mechanism, nsegments, count, segments FROM mem_rows;

CREATE VIEW syscall_data AS
SELECT entry_seq, idx, pid, tid, kind, addr, length(data) AS len, data FROM syscall_data_rows;

CREATE VIEW mappings AS
SELECT seq, pid, start, end, file_offset, perms, path FROM mapping_rows;

CREATE VIEW processes AS
SELECT s.pid AS pid,
       s.parent_pid AS ppid,
       s.creator_tid AS creator_tid,
       s.kind AS spawn_kind,
       s.seq AS start_seq,
       s.ts_ns AS start_ns,
       e.seq AS exit_seq,
       e.ts_ns AS exit_ns,
       e.how AS exit_how,
       e.code AS exit_code,
       e.signal AS exit_signal,
       e.core_dumped AS core_dumped,
       (SELECT x.exe FROM exec_rows x WHERE x.pid = s.pid AND x.seq > s.seq
          AND (e.seq IS NULL OR x.seq < e.seq) ORDER BY x.seq DESC LIMIT 1) AS exe,
       (SELECT x.argv FROM exec_rows x WHERE x.pid = s.pid AND x.seq > s.seq
          AND (e.seq IS NULL OR x.seq < e.seq) ORDER BY x.seq DESC LIMIT 1) AS argv,
       (SELECT count(*) FROM exec_rows x WHERE x.pid = s.pid AND x.seq > s.seq
          AND (e.seq IS NULL OR x.seq < e.seq)) AS exec_count,
       CASE WHEN EXISTS (SELECT 1 FROM sync_rows y JOIN sync_names n ON n.code = y.mechanism
                           WHERE y.pid = s.pid AND y.seq > s.seq AND (e.seq IS NULL OR y.seq < e.seq)
                           AND n.name = 'ptrace')
            THEN 'ptrace'
            WHEN EXISTS (SELECT 1 FROM mapping_rows m WHERE m.pid = s.pid AND m.seq > s.seq
                           AND (e.seq IS NULL OR m.seq < e.seq) AND m.path LIKE '%liblockstep_agent%')
            THEN 'agent' ELSE 'none' END AS sync_mechanism
FROM spawn_rows s
LEFT JOIN exit_rows e ON e.pid = s.pid AND e.process_exit = 1 AND e.seq = (
    SELECT min(e2.seq) FROM exit_rows e2 WHERE e2.pid = s.pid AND e2.process_exit = 1 AND e2.seq > s.seq)
WHERE s.kind NOT IN ('thread', 'exec_takeover');

CREATE VIEW threads AS
SELECT s.tid AS tid,
       s.pid AS pid,
       s.kind AS spawn_kind,
       s.creator_tid AS creator_tid,
       s.clone_flags AS clone_flags,
       s.seq AS start_seq,
       s.ts_ns AS start_ns,
       e.seq AS exit_seq,
       e.ts_ns AS exit_ns,
       e.how AS exit_how,
       e.code AS exit_code,
       e.signal AS exit_signal
FROM spawn_rows s
LEFT JOIN exit_rows e ON e.tid = s.tid AND e.seq = (
    SELECT min(e2.seq) FROM exit_rows e2 WHERE e2.tid = s.tid AND e2.seq > s.seq);

CREATE VIEW syscalls AS
SELECT id, pid, tid, nr, name, a0, a1, a2, a3, a4, a5,
       entry_seq, entry_ns, decoded AS args, text, exit_seq, exit_ns,
       exit_ns - entry_ns AS duration_ns, outcome, ret, error, result, stack
FROM syscall_rows;

CREATE VIEW events AS
SELECT seq, ts_ns, pid, tid, 'spawn' AS kind, kind AS detail FROM spawn_rows
UNION ALL SELECT seq, ts_ns, pid, tid, 'exit', how || coalesce(' ' || code, '') || coalesce(' signal ' || signal, '') FROM exit_rows
UNION ALL SELECT seq, ts_ns, pid, former_tid, 'exec', exe FROM exec_rows
UNION ALL SELECT seq, ts_ns, pid, tid, 'signal', signo FROM signal_rows
UNION ALL SELECT seq, ts_ns, pid, tid, 'rdtsc', instruction || printf(' 0x%x', value) FROM tsc_reads
UNION ALL SELECT seq, ts_ns, pid, tid, 'sync', op || ' ' || phase || printf(' 0x%x', object) FROM sync_ops
UNION ALL SELECT entry_seq, entry_ns, pid, tid, 'syscall_entry', name || '(' || text || ')' FROM syscall_rows
UNION ALL SELECT exit_seq, exit_ns, pid, tid, 'syscall_exit', name || ' = ' || coalesce(ret, '?') || coalesce(' ' || error, '')
    FROM syscall_rows WHERE exit_seq IS NOT NULL;
-- The schedule (version 3). Context switches and wakeups of traced threads
-- from the sched:sched_switch / sched:sched_wakeup tracepoints (ts_ns on the
-- trace's clock, CLOCK_MONOTONIC), scheduling attributes of each thread at
-- its start and after each change, and /proc schedstat samples (the
-- fallback evidence when the tracepoints cannot be opened).
CREATE TABLE switch_rows (
    ts_ns      INTEGER NOT NULL,
    cpu        INTEGER NOT NULL,
    prev_tid   INTEGER NOT NULL,
    prev_prio  INTEGER NOT NULL,
    prev_state INTEGER NOT NULL,
    next_tid   INTEGER NOT NULL,
    next_prio  INTEGER NOT NULL
);
CREATE TABLE wakeup_rows (
    ts_ns      INTEGER NOT NULL,
    cpu        INTEGER NOT NULL,
    waker_tid  INTEGER NOT NULL,
    tid        INTEGER NOT NULL,
    prio       INTEGER NOT NULL,
    target_cpu INTEGER NOT NULL
);
CREATE TABLE sched_attr_rows (
    seq         INTEGER PRIMARY KEY,
    ts_ns       INTEGER NOT NULL,
    pid         INTEGER NOT NULL,
    tid         INTEGER NOT NULL,
    policy      TEXT NOT NULL,
    rt_priority INTEGER NOT NULL,
    nice        INTEGER NOT NULL,
    affinity    TEXT NOT NULL,
    cause       TEXT NOT NULL
);
CREATE TABLE schedstat_rows (
    seq     INTEGER PRIMARY KEY,
    ts_ns   INTEGER NOT NULL,
    pid     INTEGER NOT NULL,
    tid     INTEGER NOT NULL,
    cpu_ns  INTEGER NOT NULL,
    wait_ns INTEGER NOT NULL,
    slices  INTEGER NOT NULL
);

CREATE VIEW sched_switches AS
SELECT ts_ns, cpu, prev_tid, prev_prio, prev_state,
       CASE WHEN prev_state & 255 = 0 THEN (CASE WHEN prev_state & 256 THEN 'R+' ELSE 'R' END)
            WHEN prev_state & 1 THEN 'S' WHEN prev_state & 2 THEN 'D'
            WHEN prev_state & 4 THEN 'T' WHEN prev_state & 8 THEN 't'
            WHEN prev_state & 16 THEN 'X' WHEN prev_state & 32 THEN 'Z'
            WHEN prev_state & 64 THEN 'P' ELSE 'I' END AS prev_state_text,
       next_tid, next_prio
FROM switch_rows;

CREATE VIEW sched_wakeups AS
SELECT ts_ns, cpu, waker_tid, tid, prio, target_cpu FROM wakeup_rows;

CREATE VIEW sched_attrs AS
SELECT seq, ts_ns, pid, tid, policy, rt_priority, nice, affinity, cause FROM sched_attr_rows;

CREATE VIEW schedstats AS
SELECT seq, ts_ns, pid, tid, cpu_ns, wait_ns, slices FROM schedstat_rows;
"#;
