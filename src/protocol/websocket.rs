//! WebSocket streams: `GET` with `Upgrade: websocket` on a streaming method's
//! REST route or `/<package>.<Service>/<Method>`. Each text frame from the
//! client is one JSON request message and an empty text frame ends the
//! requests (a half-close: a WebSocket close frame cannot say "no more
//! requests, keep the replies coming"); each response message is one text
//! frame, and the final status the close frame: 1000 for OK, 4000 + the gRPC
//! code otherwise, with the message as reason. A close from the client
//! cancels the call. Bidirectional calls run in full duplex.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, request::Parts};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

use super::aborted;
use super::pacing::{lifetime_error, next_within, started_within};
use super::rest::error_response;
use crate::admission::{Admitted, Target};
use crate::config::RouteTimeouts;
use crate::error::Error;
use crate::gateway::Context;
use crate::registry::Snapshot;
use crate::route::BodyRule;
use crate::telemetry::metrics::{Direction, Metrics};
use crate::transcode::request::{HttpInput, WireBuilder};
use crate::transcode::response::WireRenderer;
use crate::upstream::metadata;

/// How one text frame becomes a request message.
struct Decoder {
    builder: WireBuilder,
    variables: Vec<String>,
    query: Option<String>,
    /// Counts which transcoder path wrote each message.
    metrics: Arc<Metrics>,
}

/// Why the call ended, for the close frame.
type Outcome = Result<(), Error>;
type Metadata = tonic::metadata::MetadataMap;

pub async fn serve(context: Arc<Context>, admitted: &Admitted, request: Request<Body>) -> Response<Body> {
    let (mut parts, _) = request.into_parts();
    let snapshot = admitted.snapshot.clone();
    // CORS does not cover WebSocket: refuse cross-site upgrades here.
    let header = |name| parts.headers.get(name).and_then(|v: &http::HeaderValue| v.to_str().ok());
    if !context.origins.permits(header(http::header::ORIGIN), header(http::header::HOST)) {
        let error = Error::client(Code::PermissionDenied, "this origin may not open WebSocket streams");
        return error_response(&error, None);
    }
    let prepared = prepare(&context, &snapshot, admitted, &parts);
    let upgrade = WebSocketUpgrade::from_request_parts(&mut parts, &()).await;
    match (prepared, upgrade) {
        (Ok(stream), Ok(upgrade)) => upgrade.on_upgrade(move |socket| run(socket, snapshot, stream)),
        (Err(error), _) => error_response(&error, Some((&snapshot.pool, &context.json.serialize_options()))),
        (_, Err(rejection)) => error_response(&Error::bad_request(rejection.body_text()), None),
    }
}

/// What a stream needs once the socket is open.
struct Stream {
    /// The method's index in the snapshot.
    index: usize,
    decoder: Decoder,
    /// Answers as text frames: the fast transcoder, else prost-reflect.
    answers: WireRenderer,
    metadata: Metadata,
    timeouts: RouteTimeouts,
}

/// Finds the streaming method and everything needed to decode its frames
/// and render its answers.
fn prepare(context: &Context, snapshot: &Snapshot, admitted: &Admitted, parts: &Parts) -> Result<Stream, Error> {
    let path = parts.uri.path();
    let (index, binding, variables) = match (&admitted.target, admitted.binding()) {
        (Target::Method(index), _) => (*index, None, Vec::new()),
        (_, Some((found, variables))) => {
            // Each frame carries the fields the path does not bind.
            let mut binding = found.clone();
            binding.body = BodyRule::Whole;
            (binding.method, Some(binding), variables.to_vec())
        }
        _ => return Err(Error::not_found(path)),
    };
    let method =
        snapshot.methods.get(index).ok_or_else(|| Error::gateway(Code::Internal, "route points at no method"))?;
    let timeouts = super::route_timeouts(context, &parts.extensions);
    if !method.descriptor.is_client_streaming() && !method.descriptor.is_server_streaming() {
        return Err(Error::bad_request(format!(
            "{} is unary; WebSocket serves streaming methods only",
            method.descriptor.full_name()
        )));
    }
    let metadata = super::request_metadata(parts, metadata::Carrier::Prefixed)?;
    let plans = (snapshot.plans.clone(), method.input_plan);
    let decoder = Decoder {
        builder: WireBuilder::new(binding, method.descriptor.input(), plans, &context.json),
        variables,
        query: parts.uri.query().map(str::to_string),
        metrics: context.metrics.clone(),
    };
    let answers =
        WireRenderer::new(snapshot.plans.clone(), method.output_plan, method.call.output.clone(), &context.json);
    Ok(Stream { index, decoder, answers, metadata, timeouts })
}

impl Decoder {
    fn decode(&self, text: &str) -> Result<bytes::Bytes, Error> {
        let http = HttpInput {
            variables: &self.variables,
            query: self.query.as_deref(),
            content_type: Some("application/json"),
            body: text.as_bytes(),
        };
        let (wire, fast) = self.builder.wire(http)?;
        self.metrics.count_transcode(Direction::Request, fast);
        Ok(bytes::Bytes::from(wire))
    }
}

async fn run(socket: WebSocket, snapshot: Arc<Snapshot>, stream: Stream) {
    let Stream { index, decoder, answers, metadata, timeouts } = stream;
    let Some(method) = snapshot.methods.get(index) else {
        return;
    };
    let metrics = decoder.metrics.clone();
    let (mut sink, mut source) = socket.split();
    let (requests, receiver) = mpsc::channel::<bytes::Bytes>(16);
    let (abort, receiver_of_abort) = oneshot::channel::<Error>();
    let mut abort_signal = Some(receiver_of_abort);
    // Inbound frames feed the request stream; an empty frame half-closes
    // it; a bad frame, a close or a vanished client aborts the call.
    tokio::spawn(async move {
        let failure = loop {
            match source.next().await {
                Some(Ok(Message::Text(text))) if text.is_empty() => return,
                Some(Ok(Message::Text(text))) => match decoder.decode(&text) {
                    Ok(message) => {
                        if requests.send(message).await.is_err() {
                            return;
                        }
                    }
                    Err(error) => break error,
                },
                Some(Ok(Message::Close(_))) => {
                    break Error::client(Code::Cancelled, "the client closed the socket");
                }
                Some(Ok(Message::Binary(_))) => {
                    break Error::bad_request("send JSON messages as text frames");
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => {
                    break Error::client(Code::Cancelled, "the client went away");
                }
            }
        };
        let _ = abort.send(failure);
    });
    let call = async {
        let mut messages = if method.descriptor.is_client_streaming() {
            let mut request = tonic::Request::new(ReceiverStream::new(receiver));
            *request.metadata_mut() = metadata;
            tokio::select! {
                started = started_within(timeouts.stream_idle, method.call.streaming(request)) => started?.into_inner(),
                error = aborted(&mut abort_signal) => return Err(error),
            }
        } else {
            let mut receiver = receiver;
            let first = tokio::select! {
                first = receiver.recv() => first.ok_or_else(|| Error::bad_request("no request message before the close"))?,
                error = aborted(&mut abort_signal) => return Err(error),
            };
            let mut request = tonic::Request::new(first);
            *request.metadata_mut() = metadata;
            started_within(timeouts.stream_idle, method.call.server_streaming(request)).await?.into_inner()
        };
        loop {
            let next = tokio::select! {
                next = next_within(timeouts.stream_idle, messages.message()) => next?.map_err(Error::from_upstream)?,
                error = aborted(&mut abort_signal) => return Err(error),
            };
            let Some(message) = next else { return Ok(()) };
            let (text, fast) = answers.json(&message).map_err(|e| Error::gateway(Code::Internal, e))?;
            metrics.count_transcode(Direction::Response, fast);
            let text = String::from_utf8(text).map_err(|e| Error::gateway(Code::Internal, e.to_string()))?;
            if sink.send(Message::Text(Utf8Bytes::from(text))).await.is_err() {
                return Err(Error::client(Code::Cancelled, "the client went away"));
            }
        }
    };
    // Browsers cannot send a Grpc-Timeout: the route's lifetime bounds the stream.
    let outcome: Outcome = match timeouts.stream_lifetime {
        Some(lifetime) => tokio::time::timeout(lifetime, call).await.unwrap_or_else(|_| Err(lifetime_error())),
        None => call.await,
    };
    if let Err(error) = &outcome
        && error.origin == crate::error::Origin::Gateway
    {
        tracing::error!(code = ?error.code, detail = error.internal.as_deref(), "WebSocket stream failed in the gateway");
    }
    let _ = sink.send(Message::Close(Some(close_frame(&outcome)))).await;
}

/// 1000 for OK; 4000 + the gRPC code otherwise, the message as reason
/// (trimmed to the 123 bytes a close frame holds).
fn close_frame(outcome: &Outcome) -> CloseFrame {
    match outcome {
        Ok(()) => CloseFrame { code: 1000, reason: Utf8Bytes::from_static("OK") },
        Err(error) => {
            let mut reason = error.message.clone();
            while reason.len() > 123 {
                reason.pop();
            }
            CloseFrame { code: 4000 + error.code as u16, reason: Utf8Bytes::from(reason) }
        }
    }
}
