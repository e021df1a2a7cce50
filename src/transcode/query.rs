//! Query parameters → request fields: `a.b=` for nested fields, proto or JSON
//! names, repeated fields by repeating the key, values typed by the field.

use percent_encoding::percent_decode;
use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, ReflectMessage};

use super::{JsonOptions, Unknown, field_path, value};
use crate::error::Error;
use crate::route::binding::path_name;
use crate::route::{Binding, BodyRule};

/// Applies every parameter of `query` to `message`, refusing (with a 400
/// naming it) anything that names no field, a field already bound by the path
/// or body, or a single field given twice.
pub fn apply(message: &mut DynamicMessage, binding: &Binding, query: &str, options: &JsonOptions) -> Result<(), Error> {
    let mut seen: Vec<Vec<FieldDescriptor>> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (raw_key, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode(raw_key)?;
        if options.ignored_query_parameters.contains(&key) {
            continue;
        }
        let text = decode(raw_value)?;
        // Deep messages overflow the stack wherever they are walked (encode,
        // drop); nothing deeper than a JSON body may be is built.
        if key.bytes().filter(|&b| b == b'.').count() >= options.max_depth {
            return Err(Error::bad_request(format!(
                "query parameter {:?}…: nested deeper than {} levels",
                key.chars().take(64).collect::<String>(),
                options.max_depth
            )));
        }
        let Some(path) = resolve(&message.descriptor(), &key) else {
            if options.unknown_query_parameters == Unknown::Ignore {
                if options.count_ignored_fields {
                    super::request::note_ignored();
                }
                continue;
            }
            return Err(Error::bad_request(format!("unknown query parameter {key:?}")));
        };
        check_unbound(binding, &key, &path)?;
        let Some(leaf) = path.last() else { continue };
        if leaf.is_map() {
            return Err(Error::bad_request(format!(
                "query parameter {key:?}: map fields cannot be set from the query string"
            )));
        }
        if !leaf.is_list() {
            if seen.iter().any(|p| field_path::overlaps(p, &path) && p.len() == path.len()) {
                return Err(Error::bad_request(format!("query parameter {key:?} is given more than once")));
            }
            seen.push(path.clone());
        }
        check_oneof(message, "query parameter", &key, &path)?;
        let parsed = value::parse_scalar(&leaf.kind(), &text).map_err(|reason| {
            Error::bad_request(format!(
                "invalid value {text:?} for field {:?} in the query string: {reason}",
                path_name(&path)
            ))
        })?;
        field_path::set(message, &path, parsed);
    }
    Ok(())
}

/// Refuses a field whose oneof already has another member set (by the body
/// or an earlier parameter), as a JSON body with both is refused. `source`
/// names where `key` came from ("query parameter").
pub(super) fn check_oneof(
    message: &DynamicMessage,
    source: &str,
    key: &str,
    path: &[FieldDescriptor],
) -> Result<(), Error> {
    let Some((leaf, parents)) = path.split_last() else { return Ok(()) };
    let Some(oneof) = leaf.containing_oneof().filter(|o| !o.is_synthetic()) else { return Ok(()) };
    match set_member(message, parents, leaf, &oneof) {
        Some(other) => Err(Error::bad_request(format!(
            "{source} {key:?}: {} and {other} are members of the oneof {}; set one",
            leaf.name(),
            oneof.name()
        ))),
        None => Ok(()),
    }
}

/// Another member of `oneof` set in the message `parents` lead to (bounded
/// by the query key depth limit).
fn set_member(
    message: &DynamicMessage,
    parents: &[FieldDescriptor],
    leaf: &FieldDescriptor,
    oneof: &prost_reflect::OneofDescriptor,
) -> Option<String> {
    let Some((field, rest)) = parents.split_first() else {
        let other = oneof.fields().find(|f| f.number() != leaf.number() && message.has_field(f))?;
        return Some(other.name().to_string());
    };
    if !message.has_field(field) {
        return None;
    }
    match message.get_field(field).as_ref() {
        prost_reflect::Value::Message(child) => set_member(child, rest, leaf, oneof),
        _ => None,
    }
}

/// Resolves `a.b.c` through singular message fields, by proto or JSON name.
pub(super) fn resolve(message: &MessageDescriptor, key: &str) -> Option<Vec<FieldDescriptor>> {
    let mut path = Vec::new();
    let mut current = message.clone();
    let mut names = key.split('.').peekable();
    while let Some(name) = names.next() {
        let field = current.get_field_by_name(name).or_else(|| current.get_field_by_json_name(name))?;
        if names.peek().is_some() {
            match field.kind() {
                Kind::Message(m) if !field.is_list() && !field.is_map() => current = m,
                _ => return None,
            }
        }
        path.push(field);
    }
    Some(path)
}

fn check_unbound(binding: &Binding, key: &str, path: &[FieldDescriptor]) -> Result<(), Error> {
    let by_body = match &binding.body {
        BodyRule::None => false,
        BodyRule::Whole => true,
        BodyRule::Field(body) => path.first().is_some_and(|f| f.number() == body.number()),
    };
    if by_body {
        return Err(Error::bad_request(format!(
            "query parameter {key:?} sets a field that this route takes from the request body"
        )));
    }
    if binding.path_fields.iter().any(|bound| field_path::overlaps(bound, path)) {
        return Err(Error::bad_request(format!(
            "query parameter {key:?} sets a field that this route takes from the URL path"
        )));
    }
    Ok(())
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space.
fn decode(raw: &str) -> Result<String, Error> {
    if let Some(offset) = crate::route::table::malformed_escape(raw) {
        return Err(Error::bad_request(format!(
            "query parameter {raw:?} has a malformed percent-escape at byte {offset}"
        )));
    }
    let spaced = raw.replace('+', " ");
    percent_decode(spaced.as_bytes())
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| Error::bad_request(format!("query parameter {raw:?} is not valid UTF-8 once percent-decoded")))
}
