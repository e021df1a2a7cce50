//! `[[compose]]`: REST endpoints answered by several gRPC calls. What can be
//! checked without descriptors is checked here; `compose::plan` checks the
//! rest against each snapshot.

use std::collections::BTreeSet;

use serde::Deserialize;

/// One composite endpoint as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct CompositeConfig {
    pub http_method: http::Method,
    /// The path template, HttpRule grammar.
    pub template: String,
    pub description: String,
    /// Query parameters the endpoint takes; `{name}` refers to one.
    pub query: Vec<String>,
    /// Calls of one fan-out in flight at once.
    pub max_concurrency: usize,
    pub calls: Vec<CallConfig>,
    pub response: Shape,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CallConfig {
    pub name: String,
    /// `package.Service.Method`.
    pub method: String,
    /// The request message as JSON; strings may hold `{reference}`s.
    pub request: serde_json::Value,
    /// A repeated field (`call.field`): one call per element, `{item…}` its element.
    pub for_each: Option<String>,
    /// Its failure leaves its part out instead of failing the answer.
    pub optional: bool,
}

/// The answer's shape: a reference (`call` or `call.field.path`), or an
/// object of named parts.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    Ref(String),
    Object(Vec<(String, Shape)>),
}

/// The answer key that lists failed optional calls.
pub const PARTIAL_KEY: &str = "partial";

impl CompositeConfig {
    /// `GET /v1/shelves/{shelf}:overview`, for logs, errors and policies.
    pub fn route(&self) -> String {
        format!("{} {}", self.http_method, self.template)
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct RawComposite {
    route: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    query: Vec<String>,
    #[serde(default = "default_concurrency")]
    max_concurrency: usize,
    #[serde(default)]
    calls: Vec<RawCall>,
    #[serde(default)]
    response: toml::Table,
}

fn default_concurrency() -> usize {
    8
}

#[derive(Debug, Deserialize)]
struct RawCall {
    name: String,
    method: String,
    #[serde(default)]
    request: toml::Table,
    for_each: Option<String>,
    #[serde(default)]
    optional: bool,
}

pub(super) fn validate(raw: Vec<RawComposite>, location: &str, errors: &mut Vec<String>) -> Vec<CompositeConfig> {
    let mut composites: Vec<CompositeConfig> = Vec::new();
    for (index, raw) in raw.into_iter().enumerate() {
        let at = format!("{location}: `compose[{index}]` ({})", raw.route);
        let mut fail = |problem: String| errors.push(format!("{at}: {problem}"));
        let Some((method, template)) = raw.route.split_once(' ') else {
            fail("`route` must be \"METHOD /path/template\"".into());
            continue;
        };
        // Composites read; they take no body (HEAD is served as GET).
        let http_method = match method {
            "GET" => http::Method::GET,
            _ => {
                fail(format!("{method:?}: composites are GET routes"));
                continue;
            }
        };
        if let Err(e) = crate::route::Template::parse(template.trim()) {
            fail(format!("template {:?}: {} at byte {}", template.trim(), e.message, e.offset));
        }
        if raw.calls.is_empty() {
            fail("no `calls`".into());
        }
        if raw.max_concurrency == 0 {
            fail("`max_concurrency` must be at least 1".into());
        }
        let mut names = BTreeSet::new();
        for call in &raw.calls {
            if !names.insert(call.name.as_str()) {
                fail(format!("two calls are named {:?}", call.name));
            }
            if call.name == "item" || call.name.is_empty() || call.name.contains(['.', '{', '}']) {
                fail(format!("call name {:?} is reserved or not a plain name", call.name));
            }
        }
        let response = match shape(&raw.response, &mut |p| fail(p)) {
            Shape::Object(parts) if parts.is_empty() => {
                fail("`response` is empty: name the parts of the answer".into());
                Shape::Object(parts)
            }
            shape => shape,
        };
        if let Shape::Object(parts) = &response
            && parts.iter().any(|(name, _)| name == PARTIAL_KEY)
        {
            fail(format!("the response key {PARTIAL_KEY:?} is reserved for failed optional calls"));
        }
        let calls = raw
            .calls
            .into_iter()
            .map(|call| CallConfig {
                name: call.name,
                method: call.method,
                request: toml_to_json(toml::Value::Table(call.request)),
                for_each: call.for_each,
                optional: call.optional,
            })
            .collect();
        let composite = CompositeConfig {
            http_method,
            template: template.trim().to_string(),
            description: raw.description,
            query: raw.query,
            max_concurrency: raw.max_concurrency,
            calls,
            response,
        };
        if composites.iter().any(|c| c.route() == composite.route()) {
            errors.push(format!("{at}: the route is declared twice"));
        }
        composites.push(composite);
    }
    composites
}

fn shape(table: &toml::Table, fail: &mut dyn FnMut(String)) -> Shape {
    let parts = table
        .iter()
        .filter_map(|(name, value)| match value {
            toml::Value::String(reference) => Some((name.clone(), Shape::Ref(reference.clone()))),
            toml::Value::Table(inner) => Some((name.clone(), shape(inner, fail))),
            _ => {
                fail(format!("`response.{name}` must be a reference (\"call.field\") or a table"));
                None
            }
        })
        .collect();
    Shape::Object(parts)
}

fn toml_to_json(value: toml::Value) -> serde_json::Value {
    match value {
        toml::Value::String(s) => serde_json::Value::String(s),
        toml::Value::Integer(i) => serde_json::Value::from(i),
        toml::Value::Float(f) => serde_json::Value::from(f),
        toml::Value::Boolean(b) => serde_json::Value::Bool(b),
        toml::Value::Datetime(d) => serde_json::Value::String(d.to_string()),
        toml::Value::Array(items) => serde_json::Value::Array(items.into_iter().map(toml_to_json).collect()),
        toml::Value::Table(table) => {
            serde_json::Value::Object(table.into_iter().map(|(k, v)| (k, toml_to_json(v))).collect())
        }
    }
}
