//! `[openapi]`: whether the document is served, and what its `info` and
//! `servers` say about the API the gateway fronts.

use serde::Deserialize;

/// The document's `info` beyond the version: title, description, contact
/// and licence (OpenAPI 3.1 Info, Contact and License objects).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenApiInfo {
    pub title: String,
    pub description: String,
    /// `info.contact`, as JSON; none when no key is set.
    pub contact: Option<serde_json::Value>,
    /// `info.license`, as JSON; none when not configured.
    pub license: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub(super) struct RawOpenApi {
    pub(super) enabled: bool,
    pub(super) version: String,
    pub(super) servers: Vec<String>,
    title: String,
    description: String,
    contact: Option<RawContact>,
    license: Option<RawLicense>,
}

impl Default for RawOpenApi {
    fn default() -> Self {
        Self {
            enabled: true,
            version: env!("CARGO_PKG_VERSION").into(),
            servers: Vec::new(),
            title: "protogate".into(),
            description: "REST/JSON operations of the gRPC services registered with this gateway.".into(),
            contact: None,
            license: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawContact {
    name: Option<String>,
    url: Option<String>,
    email: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLicense {
    name: String,
    /// An SPDX expression (`Apache-2.0`).
    identifier: Option<String>,
    url: Option<String>,
}

impl RawOpenApi {
    /// The `info` parts, every problem pushed with its key.
    pub(super) fn info(&self, location: &str, errors: &mut Vec<String>) -> OpenApiInfo {
        for url in self.servers.iter().filter(|url| !valid_server_url(url)) {
            errors.push(format!(
                "{location}: `openapi.servers`: {url:?} is not an http(s):// URL or a path starting with /"
            ));
        }
        if self.title.trim().is_empty() {
            errors.push(format!("{location}: `openapi.title` must not be empty"));
        }
        let urls = [
            ("openapi.contact.url", self.contact.as_ref().and_then(|c| c.url.as_deref())),
            ("openapi.license.url", self.license.as_ref().and_then(|l| l.url.as_deref())),
        ];
        for (key, url) in urls {
            if let Some(url) = url.filter(|url| !is_absolute_url(url)) {
                errors.push(format!("{location}: `{key}`: {url:?} is not an http(s):// URL"));
            }
        }
        if let Some(email) = self.contact.as_ref().and_then(|c| c.email.as_deref())
            && !email.split_once('@').is_some_and(|(user, host)| !user.is_empty() && host.contains('.'))
        {
            errors.push(format!("{location}: `openapi.contact.email`: {email:?} is not an email address"));
        }
        if let Some(license) = &self.license {
            if license.name.trim().is_empty() {
                errors.push(format!("{location}: `openapi.license.name` must not be empty"));
            }
            if license.identifier.is_some() && license.url.is_some() {
                errors
                    .push(format!("{location}: `openapi.license`: give `identifier` or `url`, not both (OpenAPI 3.1)"));
            }
        }
        OpenApiInfo {
            title: self.title.clone(),
            description: self.description.clone(),
            contact: self.contact.as_ref().map(|c| object([("name", &c.name), ("url", &c.url), ("email", &c.email)])),
            license: self.license.as_ref().map(|l| {
                let mut license = object([("identifier", &l.identifier), ("url", &l.url)]);
                license["name"] = serde_json::Value::String(l.name.clone());
                license
            }),
        }
    }
}

fn object<const N: usize>(fields: [(&str, &Option<String>); N]) -> serde_json::Value {
    let fields = fields.into_iter().filter_map(|(key, value)| Some((key.to_string(), value.clone()?.into())));
    serde_json::Value::Object(fields.collect())
}

fn is_absolute_url(url: &str) -> bool {
    ["http://", "https://"].iter().any(|scheme| url.strip_prefix(scheme).is_some_and(|rest| !rest.is_empty()))
        && !url.chars().any(char::is_whitespace)
}

fn valid_server_url(url: &str) -> bool {
    is_absolute_url(url) || (url.starts_with('/') && !url.chars().any(char::is_whitespace))
}
