//! The route table: a segment trie built once per snapshot. Matching walks
//! the trie in precedence order (a literal beats `*`, `*` beats `**`), so its
//! cost depends on the path's length, not on the number of routes.

use std::collections::HashMap;

use http::Method;

use super::binding::Binding;
use super::template::Segment;

/// Bindings indexed by path shape and HTTP method.
#[derive(Debug, Default)]
pub struct RouteTable {
    root: Node,
    bindings: Vec<Binding>,
}

#[derive(Debug, Default)]
struct Node {
    literal: HashMap<Box<str>, Node>,
    single: Option<Box<Node>>,
    /// Routes whose template ends here.
    here: Vec<Endpoint>,
    /// Routes whose template ends in `**` here.
    multi: Vec<Endpoint>,
}

#[derive(Debug)]
struct Endpoint {
    verb: Option<Box<str>>,
    method: Method,
    binding: usize,
}

/// A matched route and its path variables, decoded.
#[derive(Debug)]
pub struct RouteMatch<'a> {
    pub binding: &'a Binding,
    /// Its place in `RouteTable::bindings`.
    pub index: usize,
    /// Values aligned with `binding.template.variables`.
    pub variables: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MatchError {
    NotFound,
    /// The path matches only under these other methods.
    MethodNotAllowed(Vec<Method>),
    /// A path variable is not valid UTF-8 once decoded.
    BadVariable(String),
}

#[cfg(test)]
thread_local! {
    /// Successful matches on this thread, so a test can show a request is
    /// matched once however many policies look at its route.
    pub static MATCHES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// A path split for matching: its segments and the verb, if split off.
struct Candidate<'p> {
    segments: Vec<&'p str>,
    verb: Option<&'p str>,
}

impl RouteTable {
    /// Builds the table, reporting every pair of bindings that would match
    /// the same requests. Auto-mapped (`fallback`) bindings give way silently
    /// to explicit ones.
    pub fn build(bindings: Vec<Binding>, fallback: Vec<Binding>) -> Result<Self, Vec<String>> {
        let (table, conflicts) = Self::build_skipping(bindings, fallback);
        if conflicts.is_empty() { Ok(table) } else { Err(conflicts) }
    }

    /// Builds the table with every binding that conflicts with an earlier
    /// one left out, and says which were.
    pub fn build_skipping(bindings: Vec<Binding>, fallback: Vec<Binding>) -> (Self, Vec<String>) {
        let mut table = Self::default();
        let mut errors = Vec::new();
        for binding in bindings {
            if let Err(other) = table.insert(binding) {
                let (new, old) = (table.bindings.last(), table.bindings.get(other));
                if let (Some(new), Some(old)) = (new, old) {
                    errors.push(format!(
                        "route conflict: {} {:?} ({}) matches the same requests as {} {:?} ({})",
                        new.http_method,
                        new.template_text,
                        new.rpc_name,
                        old.http_method,
                        old.template_text,
                        old.rpc_name
                    ));
                }
                table.bindings.pop();
            }
        }
        for binding in fallback {
            if table.insert(binding).is_err() {
                table.bindings.pop();
            }
        }
        (table, errors)
    }

    pub fn bindings(&self) -> &[Binding] {
        &self.bindings
    }

    /// Adds a binding; on conflict returns the index of the binding already
    /// there (the new one stays last in `bindings` for the caller to report).
    fn insert(&mut self, binding: Binding) -> Result<(), usize> {
        let index = self.bindings.len();
        let mut node = &mut self.root;
        let mut ends_multi = false;
        for segment in &binding.template.segments {
            node = match segment {
                Segment::Literal(literal) => node.literal.entry(literal.as_str().into()).or_default(),
                Segment::Single => node.single.get_or_insert_with(Default::default),
                Segment::Multi => {
                    ends_multi = true;
                    break;
                }
            };
        }
        let endpoints = if ends_multi { &mut node.multi } else { &mut node.here };
        let verb = binding.template.verb.as_deref().map(Box::from);
        if let Some(existing) = endpoints.iter().find(|e| e.verb == verb && e.method == binding.http_method) {
            let existing = existing.binding;
            self.bindings.push(binding);
            return Err(existing);
        }
        endpoints.push(Endpoint { verb, method: binding.http_method.clone(), binding: index });
        self.bindings.push(binding);
        Ok(())
    }

    /// Finds the binding for a request. `path` is the raw (still
    /// percent-encoded) path without the query. A reading with a verb split
    /// off wins over the whole path whenever some route has that verb there.
    pub fn find(&self, method: &Method, path: &str) -> Result<RouteMatch<'_>, MatchError> {
        if let Some(offset) = malformed_escape(path) {
            return Err(MatchError::BadVariable(format!(
                "the URL path has a malformed percent-escape at byte {offset}: {path:?}"
            )));
        }
        for candidate in candidates(path) {
            let found = self
                .find_method(&candidate, method)
                .or_else(|| (method == Method::HEAD).then(|| self.find_method(&candidate, &Method::GET)).flatten());
            if let Some(index) = found {
                let binding = &self.bindings[index];
                let variables = extract_variables(binding, &candidate.segments)?;
                #[cfg(test)]
                MATCHES.with(|m| m.set(m.get() + 1));
                return Ok(RouteMatch { binding, index, variables });
            }
            let allowed = self.allowed_methods(&candidate);
            if !allowed.is_empty() {
                return Err(MatchError::MethodNotAllowed(allowed));
            }
        }
        Err(MatchError::NotFound)
    }

    fn find_method(&self, candidate: &Candidate<'_>, method: &Method) -> Option<usize> {
        let mut found = None;
        self.root.walk(&candidate.segments, 0, &mut |endpoints| {
            found =
                endpoints.iter().find(|e| e.verb.as_deref() == candidate.verb && e.method == method).map(|e| e.binding);
            found.is_some()
        });
        found
    }

    /// Every method some route takes at this path; only on the error path.
    fn allowed_methods(&self, candidate: &Candidate<'_>) -> Vec<Method> {
        let mut allowed: Vec<Method> = Vec::new();
        self.root.walk(&candidate.segments, 0, &mut |endpoints| {
            for e in endpoints.iter().filter(|e| e.verb.as_deref() == candidate.verb) {
                if !allowed.contains(&e.method) {
                    allowed.push(e.method.clone());
                }
            }
            false
        });
        allowed.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        allowed
    }
}

impl Node {
    /// Visits the endpoint lists that match `segments[i..]`, best first,
    /// until `visit` returns true.
    fn walk(&self, segments: &[&str], i: usize, visit: &mut dyn FnMut(&[Endpoint]) -> bool) -> bool {
        if let Some(segment) = segments.get(i) {
            if let Some(child) = self.literal.get(*segment)
                && child.walk(segments, i + 1, visit)
            {
                return true;
            }
            if let Some(child) = self.single.as_deref()
                && !segment.is_empty()
                && child.walk(segments, i + 1, visit)
            {
                return true;
            }
        } else if !self.here.is_empty() && visit(&self.here) {
            return true;
        }
        !self.multi.is_empty() && visit(&self.multi)
    }
}

/// The ways to read a path: with a `:verb` split off the last segment (tried
/// first), then whole.
fn candidates(path: &str) -> Vec<Candidate<'_>> {
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    let segments: Vec<&str> = if trimmed.is_empty() { Vec::new() } else { trimmed.split('/').collect() };
    let mut candidates = Vec::with_capacity(2);
    if let Some((last, verb)) = segments.last().and_then(|s| s.rsplit_once(':')) {
        let mut split = segments.clone();
        if let Some(end) = split.last_mut() {
            *end = last;
        }
        candidates.push(Candidate { segments: split, verb: Some(verb) });
    }
    candidates.push(Candidate { segments, verb: None });
    candidates
}

fn extract_variables(binding: &Binding, segments: &[&str]) -> Result<Vec<String>, MatchError> {
    let template = &binding.template;
    template
        .variables
        .iter()
        .map(|variable| {
            let multi = template.is_multi_segment(variable);
            let end = if template.segments[variable.end - 1] == Segment::Multi { segments.len() } else { variable.end };
            let raw = segments[variable.start..end].join("/");
            percent_decode(&raw, multi).ok_or_else(|| {
                MatchError::BadVariable(format!(
                    "path variable {:?} is not valid UTF-8 once percent-decoded",
                    variable.field_path.join(".")
                ))
            })
        })
        .collect()
}

/// Where `raw` has a `%` not followed by two hex digits, if anywhere:
/// such an escape is refused, not passed on literally.
pub fn malformed_escape(raw: &str) -> Option<usize> {
    let bytes = raw.as_bytes();
    bytes.iter().enumerate().find_map(|(i, &b)| {
        let valid = bytes.get(i + 1..i + 3).is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit));
        (b == b'%' && !valid).then_some(i)
    })
}

/// Decodes `%XX` escapes. A multi-segment value keeps `%2F` as it is, so that
/// an escaped slash stays distinguishable from a separator.
pub fn percent_decode(raw: &str, keep_slash: bool) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .filter(|hex| hex.iter().all(u8::is_ascii_hexdigit))
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(b'/') if keep_slash => {
                out.extend_from_slice(&bytes[i..i + 3]);
                i += 3;
            }
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}
