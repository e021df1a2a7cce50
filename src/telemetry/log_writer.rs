//! Where log lines go: stderr, through a buffered writer on its own thread,
//! as production proxies write their access logs. A request task only
//! formats its line and queues it; a full queue (stderr blocked, or slower
//! than the traffic) drops lines and counts them
//! (`protogate_log_lines_dropped_total`) instead of stalling requests.

use std::io::BufWriter;
use std::sync::OnceLock;

use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, NonBlockingBuilder, WorkerGuard};

/// Lines queued before new ones are dropped (a few MiB of text).
const QUEUED_LINES: usize = 32 * 1024;

static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// The writer for the log layer; dropping the guard flushes what is queued.
pub fn stderr() -> (NonBlocking, WorkerGuard) {
    // The worker flushes whenever its queue runs empty, so lines are
    // written in batches under load and at once when idle.
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(QUEUED_LINES)
        .thread_name("protogate-log")
        .finish(BufWriter::with_capacity(64 * 1024, std::io::stderr()));
    let _ = DROPPED.set(writer.error_counter());
    (writer, guard)
}

/// Lines dropped so far because the queue was full.
pub fn dropped_lines() -> u64 {
    DROPPED.get().map_or(0, |counter| counter.dropped_lines() as u64)
}
