//! The trace writer thread. The tracer thread hands records over a bounded
//! channel and goes back to the tracees at once; this thread batches them
//! into SQLite transactions and commits at least every 200 ms, so a
//! recording that is killed loses at most that much.

use crate::error::RecordError;
use lockstep_trace::{Record, TraceError, TraceWriter};
use std::sync::mpsc::{sync_channel, RecvTimeoutError, SyncSender};
use std::thread::JoinHandle;
use std::time::Duration;

/// Where the recorder sends records.
pub struct Sink {
    tx: Option<SyncSender<Record>>,
    handle: Option<JoinHandle<Result<u64, TraceError>>>,
}

impl Sink {
    /// Starts the writer thread on `writer`.
    pub fn start(mut writer: TraceWriter) -> Sink {
        let (tx, rx) = sync_channel::<Record>(1 << 16);
        let handle = std::thread::Builder::new()
            .name("lockstep-writer".into())
            .spawn(move || {
                let mut written = 0u64;
                loop {
                    match rx.recv_timeout(Duration::from_millis(200)) {
                        Ok(rec) => {
                            writer.write(&rec)?;
                            written += 1;
                        }
                        Err(RecvTimeoutError::Timeout) => writer.flush()?,
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
                writer.finish()?;
                Ok(written)
            })
            .expect("spawn writer thread");
        Sink { tx: Some(tx), handle: Some(handle) }
    }

    /// Queues one record.
    pub fn send(&self, rec: Record) -> Result<(), RecordError> {
        let tx = self.tx.as_ref().expect("sink used after close");
        tx.send(rec).map_err(|_| self.writer_failure())
    }

    fn writer_failure(&self) -> RecordError {
        RecordError::Writer("the writer thread ended early".into())
    }

    /// Flushes everything and finishes the trace; returns the rows written.
    pub fn close(mut self) -> Result<u64, RecordError> {
        drop(self.tx.take());
        let handle = self.handle.take().expect("sink closed twice");
        match handle.join() {
            Ok(r) => Ok(r?),
            Err(_) => Err(RecordError::Writer("the writer thread panicked".into())),
        }
    }
}
