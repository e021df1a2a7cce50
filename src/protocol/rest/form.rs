//! Reads a `multipart/form-data` body part by part, each part checked
//! against its limit as its bytes arrive, so an oversized file is refused
//! at the limit instead of after it was buffered.

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use futures_util::TryStreamExt;

use crate::error::Error;
use crate::transcode::form::{FormLimits, FormPart};

/// A part read in full.
#[derive(Debug)]
pub(super) struct OwnedPart {
    name: String,
    filename: Option<String>,
    content_type: Option<String>,
    data: Bytes,
}

impl OwnedPart {
    pub(super) fn borrowed(&self) -> FormPart<'_> {
        FormPart {
            name: &self.name,
            filename: self.filename.as_deref(),
            content_type: self.content_type.as_deref(),
            data: &self.data,
        }
    }
}

/// Every part of the form, or the client's error: no boundary, a malformed
/// body, a part without a name, too many parts, or a part or the whole over
/// its limit (413).
pub(super) async fn read(body: Body, content_type: &str, limits: FormLimits) -> Result<Vec<OwnedPart>, Error> {
    let boundary = multer::parse_boundary(content_type)
        .map_err(|_| Error::bad_request("multipart/form-data needs a boundary parameter in its Content-Type"))?;
    let limited = http_body_util::Limited::new(body, limits.body);
    let stream =
        http_body_util::BodyStream::new(limited).try_filter_map(|frame| async move { Ok(frame.into_data().ok()) });
    let constraints = multer::Constraints::new().size_limit(multer::SizeLimit::new().per_field(limits.part as u64));
    let mut multipart = multer::Multipart::with_constraints(stream, boundary, constraints);
    let mut parts = Vec::new();
    while let Some(mut field) = multipart.next_field().await.map_err(|e| form_error(e, limits))? {
        if parts.len() == limits.parts {
            return Err(Error::bad_request(format!("the form has more than {} parts", limits.parts)));
        }
        let name = field
            .name()
            .filter(|name| !name.is_empty())
            .ok_or_else(|| Error::bad_request(format!("form part {} has no name", parts.len() + 1)))?
            .to_string();
        let filename = field.file_name().map(str::to_string);
        let content_type = field.content_type().map(|mime| mime.to_string());
        let mut data = BytesMut::new();
        while let Some(chunk) = field.chunk().await.map_err(|e| form_error(e, limits))? {
            data.extend_from_slice(&chunk);
        }
        parts.push(OwnedPart { name, filename, content_type, data: data.freeze() });
    }
    Ok(parts)
}

fn form_error(error: multer::Error, limits: FormLimits) -> Error {
    match error {
        multer::Error::FieldSizeExceeded { field_name, .. } => {
            let name = field_name.unwrap_or_default();
            let mut error = Error::payload_too_large(limits.part);
            error.message = format!("form part {name:?} exceeds the limit of {} bytes", limits.part);
            error
        }
        multer::Error::StreamReadFailed(cause) => super::super::body_error(cause.as_ref(), limits.body),
        other => Error::bad_request(format!("invalid multipart/form-data body: {other}")),
    }
}
