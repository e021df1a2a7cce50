//! A REST request for a composite endpoint: its inputs read (path
//! variables, the declared query parameters and nothing else), the plan run
//! under one deadline, the answer or the first required failure rendered.

use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use axum::body::Body;
use http::{HeaderValue, Request, Response, StatusCode};

use super::{deadline, error_response, json_response};
use crate::admission::Admitted;
use crate::compose::{Inputs, Plan, exec};
use crate::error::Error;
use crate::gateway::Context;
use crate::registry::Snapshot;
use crate::telemetry::access::trace_of;
use crate::telemetry::metrics::Metrics;
use crate::upstream::metadata;

/// Lists the optional calls that failed, whose parts the answer leaves out.
pub const PARTIAL_HEADER: &str = "protogate-partial";

pub async fn serve(
    context: &Context,
    admitted: &Admitted,
    plan: &Plan,
    variables: &[String],
    request: Request<Body>,
) -> Response<Body> {
    let snapshot = &*admitted.snapshot;
    match answer(context, snapshot, plan, variables, request).await {
        Ok(response) => response,
        Err(error) => error_response(&error, Some((&snapshot.pool, &context.json.serialize_options()))),
    }
}

async fn answer(
    context: &Context,
    snapshot: &Snapshot,
    plan: &Plan,
    variables: &[String],
    request: Request<Body>,
) -> Result<Response<Body>, Error> {
    let (parts, _body) = request.into_parts();
    let query = query_inputs(parts.uri.query().unwrap_or(""), &plan.query)?;
    let metadata = crate::protocol::request_metadata(&parts, metadata::Carrier::Prefixed)?;
    let timeouts = crate::protocol::route_timeouts(context, &parts.extensions);
    let timeout = deadline(&parts, context, false, &timeouts)?;
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let inputs = Inputs { variables: variables.to_vec(), query };
    let trace = trace_of(&parts.extensions);
    let observer = CallLog { route: &plan.template_text, metrics: &context.metrics, line: Mutex::default() };
    let answer = trace.time_backend(exec::run(plan, snapshot, &inputs, &metadata, deadline, &context.json, &observer));
    let answer = answer.await;
    trace.calls(observer.line.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner));
    let answer = answer?;
    let body = serde_json::to_vec(&answer.body).unwrap_or_default();
    let mut response = json_response(StatusCode::OK, body);
    if !answer.failed.is_empty()
        && let Ok(value) = HeaderValue::try_from(answer.failed.join(", "))
    {
        response.headers_mut().insert(PARTIAL_HEADER, value);
    }
    Ok(response)
}

/// Each backend call of one composite request: observed in the metrics,
/// listed as `name=code:µs` on the request's log line.
struct CallLog<'a> {
    route: &'a str,
    metrics: &'a Metrics,
    line: Mutex<String>,
}

impl exec::Observer for CallLog<'_> {
    fn call_ended(&self, call: &str, code: tonic::Code, spent: Duration) {
        let code = code as i32;
        let code_label = code.to_string();
        self.metrics.composite_calls.with_label_values(&[self.route, call, &code_label]).observe(spent.as_secs_f64());
        let mut line = self.line.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let separator = if line.is_empty() { "" } else { " " };
        let _ = write!(line, "{separator}{call}={code}:{}", spent.as_micros());
    }
}

/// The declared query parameters' values; any other parameter is refused,
/// as on transcoded routes.
fn query_inputs(query: &str, declared: &[String]) -> Result<Vec<Option<String>>, Error> {
    let mut values = vec![None; declared.len()];
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |text: &str| {
            let text = text.replace('+', " ");
            percent_encoding::percent_decode_str(&text)
                .decode_utf8()
                .map(|d| d.into_owned())
                .map_err(|_| Error::bad_request(format!("query parameter {key:?} is not valid UTF-8 once decoded")))
        };
        let key = decode(key)?;
        let Some(index) = declared.iter().position(|d| *d == key) else {
            return Err(Error::bad_request(format!("unknown query parameter {key:?}")));
        };
        if values[index].is_some() {
            return Err(Error::bad_request(format!("query parameter {key:?} is given more than once")));
        }
        values[index] = Some(decode(value)?);
    }
    Ok(values)
}
