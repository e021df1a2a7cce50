//! Request messages read from a streaming body (REST NDJSON or JSON-array
//! client streams, Connect envelopes): each element built into a message as
//! it arrives. The first bad element is sent on the returned receiver and
//! the stream then stalls, so the upstream call is cancelled rather than
//! seeing a clean (and wrong) end of input.

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt};
use tokio::sync::oneshot;

use crate::error::Error;
use crate::gateway::Context;
use crate::registry::{MethodEntry, Snapshot};
use crate::telemetry::metrics::Direction;
use crate::transcode::request::{HttpInput, WireBuilder};

/// How a JSON request message (a Connect or gRPC `+json` envelope) becomes
/// the backend's: the fast transcoder, else prost-reflect, counted.
pub(crate) fn json_to_wire(
    context: &Context,
    snapshot: &Snapshot,
    method: &MethodEntry,
) -> impl Fn(&[u8]) -> Result<Bytes, Error> + Send + 'static {
    let plans = (snapshot.plans.clone(), method.input_plan);
    let builder = WireBuilder::new(None, method.descriptor.input(), plans, &context.json);
    let metrics = context.metrics.clone();
    move |message: &[u8]| {
        let http = HttpInput { variables: &[], query: None, content_type: Some("application/json"), body: message };
        let (wire, fast) = builder.wire(http)?;
        metrics.count_transcode(Direction::Request, fast);
        Ok(Bytes::from(wire))
    }
}

pub(crate) fn messages<F, M>(
    elements: BoxStream<'static, Result<Bytes, Error>>,
    build: F,
) -> (impl Stream<Item = M> + Send + 'static, oneshot::Receiver<Error>)
where
    F: Fn(&[u8]) -> Result<M, Error> + Send + 'static,
    M: Send + 'static,
{
    let (abort, aborted) = oneshot::channel();
    let start = (elements, build, Some(abort), 1usize);
    let messages = futures_util::stream::unfold(start, |(mut elements, build, mut abort, n)| async move {
        let failure = match elements.next().await? {
            Ok(bytes) => match build(&bytes) {
                Ok(message) => return Some((message, (elements, build, abort, n + 1))),
                Err(mut error) => {
                    error.message = format!("stream message {n}: {}", error.message);
                    error
                }
            },
            Err(error) => error,
        };
        if let Some(abort) = abort.take() {
            let _ = abort.send(failure);
        }
        std::future::pending().await
    });
    (messages, aborted)
}
