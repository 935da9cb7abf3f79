//! The trace writer thread. The tracer thread collects records in a batch
//! and hands whole batches over a bounded channel, so that it neither waits
//! for SQLite nor wakes the writer once per record; the writer thread turns
//! batches into SQLite transactions.
//!
//! A batch leaves the tracer when it is full or older than [`MAX_AGE_NS`]
//! (checked at every stop, and by a periodic timer signal that interrupts
//! the tracer's wait when the program is idle), so a recorder that is
//! killed loses at most that much.

use crate::clock::monotonic_ns;
use crate::error::RecordError;
use lockstep_trace::{Record, TraceError, TraceWriter};
use std::sync::mpsc::{sync_channel, RecvTimeoutError, SyncSender};
use std::thread::JoinHandle;
use std::time::Duration;

/// Rows per batch handed to the writer thread (a [`Record::SyncEvents`]
/// counts its events).
const BATCH: usize = 4096;
/// The oldest a record may be before its batch is handed over.
pub const MAX_AGE_NS: u64 = 200_000_000;

/// Where the recorder sends records.
pub struct Sink {
    tx: Option<SyncSender<Vec<Record>>>,
    handle: Option<JoinHandle<Result<u64, TraceError>>>,
    batch: Vec<Record>,
    /// The rows in `batch`.
    rows: usize,
    /// When the oldest record of `batch` was queued.
    batch_since: u64,
}

impl Sink {
    /// Starts the writer thread on `writer`.
    /// `avoid_cpu` is the CPU of the tracer and tracees, which the writer
    /// leaves to them when it can.
    pub fn start(mut writer: TraceWriter, avoid_cpu: Option<usize>) -> Sink {
        let (tx, rx) = sync_channel::<Vec<Record>>(16);
        let handle = std::thread::Builder::new()
            .name("lockstep-writer".into())
            .spawn(move || {
                crate::signals::block_in_this_thread();
                if let Some(cpu) = avoid_cpu {
                    crate::affinity::avoid_in_this_thread(cpu);
                }
                let mut written = 0u64;
                loop {
                    match rx.recv_timeout(Duration::from_millis(200)) {
                        Ok(batch) => {
                            for rec in batch {
                                written += match &rec {
                                    Record::SyncEvents(events) => events.len() as u64,
                                    _ => 1,
                                };
                                writer.write_owned(rec)?;
                            }
                        }
                        Err(RecvTimeoutError::Timeout) => writer.flush()?,
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
                writer.finish()?;
                Ok(written)
            })
            .expect("spawn writer thread");
        Sink {
            tx: Some(tx),
            handle: Some(handle),
            batch: Vec::new(),
            rows: 0,
            batch_since: 0,
        }
    }

    /// Queues one record.
    pub fn send(&mut self, rec: Record) -> Result<(), RecordError> {
        if self.batch.is_empty() {
            self.batch_since = monotonic_ns();
        }
        self.rows += match &rec {
            Record::SyncEvents(events) => events.len(),
            _ => 1,
        };
        self.batch.push(rec);
        if self.rows >= BATCH {
            self.hand_over()?;
        }
        Ok(())
    }

    /// Hands the batch over if it is older than [`MAX_AGE_NS`].
    pub fn tick(&mut self) -> Result<(), RecordError> {
        if !self.batch.is_empty() && monotonic_ns().saturating_sub(self.batch_since) >= MAX_AGE_NS {
            self.hand_over()?;
        }
        Ok(())
    }

    /// Hands the current batch to the writer thread.
    pub fn hand_over(&mut self) -> Result<(), RecordError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        self.rows = 0;
        let tx = self.tx.as_ref().expect("sink used after close");
        tx.send(batch)
            .map_err(|_| RecordError::Writer("the writer thread ended early".into()))
    }

    /// Flushes everything and finishes the trace; returns the rows written.
    pub fn close(mut self) -> Result<u64, RecordError> {
        let handed = self.hand_over();
        drop(self.tx.take());
        let handle = self.handle.take().expect("sink closed twice");
        let joined = match handle.join() {
            Ok(r) => r.map_err(RecordError::from),
            Err(_) => Err(RecordError::Writer("the writer thread panicked".into())),
        };
        // A writer error explains a failed hand-over better than the hand-over does.
        let written = joined?;
        handed?;
        Ok(written)
    }
}
