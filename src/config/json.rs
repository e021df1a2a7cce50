//! How JSON is read and written (`[json]`); the transcoder follows it.

use serde::Deserialize;

/// How JSON is read and written (`[json]` in the config file).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct JsonOptions {
    /// Write fields that hold their default value.
    pub emit_defaults: bool,
    /// Write proto field names (`page_size`) instead of JSON names (`pageSize`).
    pub proto_field_names: bool,
    /// Write enums as numbers instead of names.
    pub enums_as_numbers: bool,
    /// Pretty-print unary responses.
    pub indent: bool,
    /// What to do with JSON fields the request message does not have.
    pub unknown_fields: Unknown,
    /// What to do with query parameters that name no field.
    pub unknown_query_parameters: Unknown,
    /// Query parameters that are always ignored, e.g. `api_key`.
    pub ignored_query_parameters: Vec<String>,
    /// Deepest nesting of objects and arrays accepted in a request body.
    pub max_depth: usize,
    /// Fill an unset FieldMask of a PATCH from the paths of its body.
    pub patch_field_mask: bool,
    /// Server-stream messages as `{"result": …}` (the grpc-gateway profile).
    #[serde(skip)]
    pub wrap_stream_results: bool,
    /// Count JSON fields ignored under `unknown_fields = "ignore"`, so
    /// nothing is dropped unseen (the grpc-gateway profile).
    #[serde(skip)]
    pub count_ignored_fields: bool,
}

/// Reject (400, naming the field) or ignore unknown input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unknown {
    Reject,
    Ignore,
}

impl Default for JsonOptions {
    fn default() -> Self {
        Self {
            emit_defaults: false,
            proto_field_names: false,
            enums_as_numbers: false,
            indent: false,
            unknown_fields: Unknown::Reject,
            unknown_query_parameters: Unknown::Reject,
            ignored_query_parameters: Vec::new(),
            max_depth: 64,
            patch_field_mask: true,
            wrap_stream_results: false,
            count_ignored_fields: false,
        }
    }
}

impl JsonOptions {
    pub fn serialize_options(&self) -> prost_reflect::SerializeOptions {
        prost_reflect::SerializeOptions::new()
            .skip_default_fields(!self.emit_defaults)
            .use_proto_field_name(self.proto_field_names)
            .use_enum_numbers(self.enums_as_numbers)
            .stringify_64_bit_integers(true)
    }

    pub(crate) fn deserialize_options(&self) -> prost_reflect::DeserializeOptions {
        prost_reflect::DeserializeOptions::new().deny_unknown_fields(self.unknown_fields == Unknown::Reject)
    }
}
