//! The one error type of the request path, and the one gRPC code ↔ HTTP
//! status table. Rendering per protocol lives in `protocol/`.

use bytes::Bytes;
use http::StatusCode;
use tonic::Code;

/// Metadata that marks a status the backend itself sent (set by
/// `upstream::Backend` next to its `grpc-status`); the `grpc-` prefix keeps
/// it out of every metadata copy to clients.
pub const BACKEND_STATUS: &str = "grpc-protogate-backend-status";

/// Metadata on a status `upstream::Backend` made for a call that failed
/// before the backend answered: how it failed (`upstream::retry::Failure`).
pub const TRANSPORT: &str = "grpc-protogate-transport";

/// Whose fault an error was: decides what is logged and what the client sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The request was bad; the backend was not called.
    Client,
    /// The backend answered with a non-OK status; its message is forwarded.
    Backend,
    /// The gateway (or its connection to the backend) failed; the client sees
    /// a generic message and the detail goes to the log.
    Gateway,
}

/// An error on the request path.
#[derive(Debug, Clone)]
pub struct Error {
    pub origin: Origin,
    pub code: Code,
    /// What the client sees.
    pub message: String,
    /// An encoded `google.rpc.Status` from `grpc-status-details-bin`.
    pub details: Bytes,
    /// An HTTP status where the gRPC code alone would be too coarse (405, 413…).
    pub http_status: Option<StatusCode>,
    /// What went wrong inside the gateway; logged, never sent.
    pub internal: Option<String>,
    /// The header and trailer metadata a backend sent with its error; they
    /// reach the client as they would with an answer.
    pub backend_metadata: Option<std::sync::Arc<BackendMetadata>>,
    /// Seconds for a `Retry-After` header (an upstream at its call limit).
    pub retry_after: Option<u32>,
    /// Headers the error's response carries (`Allow` of a 405,
    /// `WWW-Authenticate`, `RateLimit-*`); every protocol's renderer adds
    /// them.
    pub headers: Option<Box<http::HeaderMap>>,
}

/// Metadata that came with a backend's error.
#[derive(Debug, Clone, Default)]
pub struct BackendMetadata {
    pub headers: tonic::metadata::MetadataMap,
    pub trailers: tonic::metadata::MetadataMap,
}

impl Error {
    fn new(origin: Origin, code: Code, message: impl Into<String>) -> Self {
        Self {
            origin,
            code,
            message: message.into(),
            details: Bytes::new(),
            http_status: None,
            internal: None,
            backend_metadata: None,
            retry_after: None,
            headers: None,
        }
    }

    /// A 400 / INVALID_ARGUMENT for bad request input.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(Origin::Client, Code::InvalidArgument, message)
    }

    pub fn client(code: Code, message: impl Into<String>) -> Self {
        Self::new(Origin::Client, code, message)
    }

    pub fn not_found(path: &str) -> Self {
        Self::new(Origin::Client, Code::NotFound, format!("no route matches {path:?}"))
    }

    pub fn method_not_allowed(method: &str, path: &str, allow: String) -> Self {
        let mut error = Self::new(
            Origin::Client,
            Code::Unimplemented,
            format!("method {method} is not allowed on {path:?}; allowed: {allow}"),
        );
        error.http_status = Some(StatusCode::METHOD_NOT_ALLOWED);
        error.set_header(http::header::ALLOW, &allow);
        error
    }

    /// Adds a header the error's response carries (`Allow`,
    /// `WWW-Authenticate`, `RateLimit-*`); a value that is not a valid
    /// header value is left out.
    pub fn set_header(&mut self, name: http::HeaderName, value: &str) {
        if let Ok(value) = http::HeaderValue::try_from(value) {
            self.headers.get_or_insert_with(Default::default).insert(name, value);
        }
    }

    /// A header the error's response carries.
    pub fn header(&self, name: http::HeaderName) -> Option<&str> {
        self.headers.as_ref()?.get(name)?.to_str().ok()
    }

    pub fn payload_too_large(limit: usize) -> Self {
        let mut error = Self::new(
            Origin::Client,
            Code::ResourceExhausted,
            format!("request body exceeds the limit of {limit} bytes"),
        );
        error.http_status = Some(StatusCode::PAYLOAD_TOO_LARGE);
        error
    }

    pub fn uri_too_long(length: usize, limit: usize) -> Self {
        let mut error = Self::new(
            Origin::Client,
            Code::InvalidArgument,
            format!("request URI is {length} bytes, over the limit of {limit}"),
        );
        error.http_status = Some(StatusCode::URI_TOO_LONG);
        error
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        let mut error = Self::new(
            Origin::Client,
            Code::InvalidArgument,
            format!("unsupported content type {content_type:?}; send application/json"),
        );
        error.http_status = Some(StatusCode::UNSUPPORTED_MEDIA_TYPE);
        error
    }

    /// A failure inside the gateway: the client sees only `code` and a
    /// generic message; `detail` goes to the log.
    pub fn gateway(code: Code, detail: impl Into<String>) -> Self {
        let message = match code {
            Code::Unavailable => "upstream unavailable",
            Code::DeadlineExceeded => "deadline exceeded",
            _ => "internal error",
        };
        let mut error = Self::new(Origin::Gateway, code, message);
        error.internal = Some(detail.into());
        error
    }

    /// Classifies a status returned by a tonic call: one the backend sent
    /// (marked by `upstream::Backend`) is forwarded; one tonic made up — a
    /// transport failure, a protocol or decoding error — is the gateway's,
    /// its text only logged.
    pub fn from_upstream(status: tonic::Status) -> Self {
        if status.metadata().contains_key(BACKEND_STATUS) {
            let mut error = Self::new(Origin::Backend, status.code(), status.message());
            error.details = status.details().to_vec().into();
            let trailers = status.metadata().clone();
            error.backend_metadata = Some(std::sync::Arc::new(BackendMetadata { trailers, ..Default::default() }));
            return error;
        }
        if let Some(failure) = status.metadata().get(TRANSPORT).and_then(|v| v.to_str().ok()) {
            let mut error =
                Self::gateway(status.code(), format!("upstream call failed ({failure}): {}", status.message()));
            if failure == "overloaded" {
                error.retry_after = Some(1);
            }
            return error;
        }
        let source = std::error::Error::source(&status);
        // tonic's own check of `upstream.max_message_size` on a response.
        if source.is_none() && status.message().starts_with("Error, decoded message length too large") {
            let mut error = Self::gateway(Code::ResourceExhausted, status.message().to_string());
            error.message = "the backend's answer is over upstream.max_message_size".into();
            return error;
        }
        let code = match status.code() {
            // tonic reports its own enforcement of our deadline as CANCELLED.
            _ if source.is_some_and(caused_by::<tonic::TimeoutExpired>) => Code::DeadlineExceeded,
            Code::Cancelled | Code::DeadlineExceeded => status.code(),
            _ if source.is_some() => Code::Unavailable,
            Code::Unknown if status.message().is_empty() => Code::Unavailable,
            // A broken answer (bad framing, an undecodable message).
            _ => Code::Internal,
        };
        Self::gateway(code, format!("upstream call failed: {status}"))
    }

    /// Adds the response headers the backend sent before its error.
    pub fn with_backend_headers(mut self, headers: &tonic::metadata::MetadataMap) -> Self {
        if self.origin == Origin::Backend && !headers.is_empty() {
            let mut metadata = self.backend_metadata.as_deref().cloned().unwrap_or_default();
            metadata.headers = headers.clone();
            self.backend_metadata = Some(std::sync::Arc::new(metadata));
        }
        self
    }

    /// The HTTP status this error is answered with.
    pub fn http_status(&self) -> StatusCode {
        self.http_status.unwrap_or_else(|| http_status(self.code))
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)?;
        if let Some(internal) = &self.internal {
            write!(f, " ({internal})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

impl From<tonic::Status> for Error {
    fn from(status: tonic::Status) -> Self {
        Self::from_upstream(status)
    }
}

/// The first `T` in `error`'s source chain, `error` itself included.
/// The error with its causes, for the log.
pub fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

pub fn find_cause<'a, T: std::error::Error + 'static>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a T> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

/// Whether `error` or anything in its source chain is a `T`.
pub fn caused_by<T: std::error::Error + 'static>(error: &(dyn std::error::Error + 'static)) -> bool {
    find_cause::<T>(error).is_some()
}

/// The table: every gRPC code and the HTTP status it is answered with.
pub const STATUS_TABLE: [(Code, u16); 17] = [
    (Code::Ok, 200),
    (Code::Cancelled, 499),
    (Code::Unknown, 500),
    (Code::InvalidArgument, 400),
    (Code::DeadlineExceeded, 504),
    (Code::NotFound, 404),
    (Code::AlreadyExists, 409),
    (Code::PermissionDenied, 403),
    (Code::ResourceExhausted, 429),
    (Code::FailedPrecondition, 400),
    (Code::Aborted, 409),
    (Code::OutOfRange, 400),
    (Code::Unimplemented, 501),
    (Code::Internal, 500),
    (Code::Unavailable, 503),
    (Code::DataLoss, 500),
    (Code::Unauthenticated, 401),
];

/// The HTTP status for a gRPC code.
pub fn http_status(code: Code) -> StatusCode {
    let status = STATUS_TABLE[code as usize].1;
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// The gRPC code for an HTTP status, for a response that carries no
/// grpc-status (the gRPC spec's mapping for HTTP-level failures).
pub fn code_for_http_status(status: StatusCode) -> Code {
    match status.as_u16() {
        200..=299 => Code::Ok,
        400 => Code::Internal,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::Unimplemented,
        429 | 502..=504 => Code::Unavailable,
        _ => Code::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_indexed_by_code() {
        for (index, (code, _)) in STATUS_TABLE.iter().enumerate() {
            assert_eq!(*code as usize, index);
        }
    }

    #[test]
    fn every_code_maps_to_the_contract_status() {
        let cases = [
            (Code::Ok, 200),
            (Code::Cancelled, 499),
            (Code::Unknown, 500),
            (Code::InvalidArgument, 400),
            (Code::DeadlineExceeded, 504),
            (Code::NotFound, 404),
            (Code::AlreadyExists, 409),
            (Code::PermissionDenied, 403),
            (Code::Unauthenticated, 401),
            (Code::ResourceExhausted, 429),
            (Code::FailedPrecondition, 400),
            (Code::Aborted, 409),
            (Code::OutOfRange, 400),
            (Code::Unimplemented, 501),
            (Code::Internal, 500),
            (Code::Unavailable, 503),
            (Code::DataLoss, 500),
        ];
        for (code, status) in cases {
            assert_eq!(http_status(code).as_u16(), status, "{code:?}");
        }
    }

    #[test]
    fn http_statuses_map_back_to_codes() {
        let cases = [
            (200, Code::Ok),
            (400, Code::Internal),
            (401, Code::Unauthenticated),
            (403, Code::PermissionDenied),
            (404, Code::Unimplemented),
            (429, Code::Unavailable),
            (502, Code::Unavailable),
            (503, Code::Unavailable),
            (504, Code::Unavailable),
            (500, Code::Unknown),
        ];
        for (status, code) in cases {
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(code_for_http_status(status), code, "{status}");
        }
    }

    #[test]
    fn overrides_win_over_the_table() {
        assert_eq!(Error::payload_too_large(1).http_status(), 413);
        assert_eq!(Error::uri_too_long(9, 1).http_status(), 414);
        assert_eq!(Error::unsupported_media_type("text/plain").http_status(), 415);
        let e = Error::method_not_allowed("GET", "/x", "POST".into());
        assert_eq!(e.http_status(), 405);
        assert_eq!(e.header(http::header::ALLOW), Some("POST"));
    }

    #[test]
    fn backend_statuses_are_forwarded_and_transport_failures_are_hidden() {
        let mut metadata = tonic::metadata::MetadataMap::new();
        metadata.insert(BACKEND_STATUS, "1".parse().unwrap());
        let sent = Error::from_upstream(tonic::Status::with_metadata(Code::NotFound, "no book", metadata));
        assert_eq!((sent.origin, sent.code), (Origin::Backend, Code::NotFound));
        assert_eq!(sent.message, "no book");

        // tonic's own decoding errors describe the gateway's internals.
        let made_up = Error::from_upstream(tonic::Status::internal("protocol error: invalid compression flag: 7"));
        assert_eq!(
            (made_up.origin, made_up.code, made_up.message.as_str()),
            (Origin::Gateway, Code::Internal, "internal error")
        );

        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let transport = Error::from_upstream(tonic::Status::from_error(Box::new(io)));
        assert_eq!(transport.origin, Origin::Gateway);
        assert_eq!(transport.code, Code::Unavailable);
        assert_eq!(transport.message, "upstream unavailable");
        assert!(transport.internal.unwrap().contains("refused"));

        let expired = tonic::Status::from_error(Box::new(tonic::TimeoutExpired(())));
        assert_eq!(expired.code(), Code::Cancelled);
        let expired = Error::from_upstream(expired);
        assert_eq!((expired.code, expired.http_status().as_u16()), (Code::DeadlineExceeded, 504));
    }
}
