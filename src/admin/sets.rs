//! Descriptor-set endpoints: `PUT/GET/DELETE /v1/descriptor-sets/{name}`,
//! the list, versions, `:rollback`, and the route listing.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::response::Response;
use http::StatusCode;
use http::header::CONTENT_TYPE;
use serde_json::{Value, json};

use super::{Admin, AdminError, json};
use crate::registry::{Change, RegisteredSet, Snapshot, reflect, source};

/// `PUT /v1/descriptor-sets/{name}[?upstream=URL]` with a binary set or
/// multipart `.proto` sources: 201 created, 200 replaced.
pub(super) async fn put(
    State(admin): State<Admin>,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    request: Request,
) -> Result<Response, AdminError> {
    let upstream = match query.get("upstream") {
        Some(url) => {
            crate::upstream::endpoint(url, Duration::from_secs(1)).map_err(AdminError::bad_request)?;
            Some(url.clone())
        }
        None => None,
    };
    let content_type =
        request.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    let bytes = if content_type.starts_with("multipart/form-data") {
        compile_upload(&admin, request).await?
    } else if ["application/octet-stream", "application/x-protobuf", "application/vnd.google.protobuf"]
        .iter()
        .any(|t| content_type.starts_with(t))
    {
        let body = axum::body::to_bytes(request.into_body(), admin.max_upload).await.map_err(|e| {
            AdminError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                tonic::Code::ResourceExhausted,
                format!("upload too large or unreadable: {e}"),
            )
        })?;
        body.to_vec()
    } else {
        return Err(AdminError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            tonic::Code::InvalidArgument,
            "send a binary FileDescriptorSet (application/octet-stream) or .proto files (multipart/form-data)",
        ));
    };
    let change = admin.registry.register(&name, bytes, upstream).await?;
    let status = if change.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok(json(status, &summary(&change.set, &change.snapshot)))
}

/// Compiles multipart `.proto` parts, each named by its import path.
async fn compile_upload(admin: &Admin, request: Request) -> Result<Vec<u8>, AdminError> {
    let mut multipart = Multipart::from_request(request, &())
        .await
        .map_err(|e| AdminError::bad_request(format!("invalid multipart body: {e}")))?;
    let mut sources = Vec::new();
    while let Some(field) =
        multipart.next_field().await.map_err(|e| AdminError::bad_request(format!("invalid multipart body: {e}")))?
    {
        let path = [field.name(), field.file_name()]
            .into_iter()
            .flatten()
            .find(|n| n.ends_with(".proto"))
            .map(str::to_string)
            .ok_or_else(|| AdminError::bad_request("each part must be named by its .proto import path"))?;
        let text = field.text().await.map_err(|e| AdminError::bad_request(format!("{path}: {e}")))?;
        sources.push((path, text));
    }
    if sources.is_empty() {
        return Err(AdminError::bad_request("the upload holds no .proto files"));
    }
    let registered: Vec<_> =
        admin.registry.sets().await.into_values().filter_map(|s| s.active_version().map(|v| v.bytes.clone())).collect();
    let compiled = tokio::task::spawn_blocking(move || {
        let sets: Vec<&[u8]> = registered.iter().map(|b| b.as_slice()).collect();
        source::compile_protos(&sources, &sets)
    })
    .await
    .map_err(|e| AdminError::bad_request(format!("compilation failed: {e}")))?;
    compiled.map_err(|errors| AdminError { errors, ..AdminError::bad_request("the .proto files do not compile") })
}

pub(super) async fn get(State(admin): State<Admin>, Path(name): Path<String>) -> Result<Response, AdminError> {
    let set = find(&admin, &name).await?;
    Ok(json(StatusCode::OK, &summary(&set, &admin.registry.snapshot())))
}

pub(super) async fn list(State(admin): State<Admin>) -> Response {
    let snapshot = admin.registry.snapshot();
    let sets: Vec<Value> = admin.registry.sets().await.values().map(|s| summary(s, &snapshot)).collect();
    json(StatusCode::OK, &json!({ "sets": sets }))
}

pub(super) async fn delete(State(admin): State<Admin>, Path(name): Path<String>) -> Result<Response, AdminError> {
    let change = admin.registry.delete(&name).await?;
    let body = json!({"name": change.set.name, "deleted": true, "generation": change.snapshot.generation});
    Ok(json(StatusCode::OK, &body))
}

pub(super) async fn versions(State(admin): State<Admin>, Path(name): Path<String>) -> Result<Response, AdminError> {
    let set = find(&admin, &name).await?;
    let versions: Vec<Value> = set
        .versions
        .iter()
        .map(|v| json!({"version": v.number, "digest": v.digest, "created": v.created, "active": v.number == set.active}))
        .collect();
    Ok(json(StatusCode::OK, &json!({"name": set.name, "active": set.active, "versions": versions})))
}

/// `POST /v1/descriptor-sets/{name}:rollback?version=N`.
pub(super) async fn custom_verb(
    State(admin): State<Admin>,
    Path(target): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, AdminError> {
    let (name, verb) = target.rsplit_once(':').unwrap_or((&target, ""));
    match verb {
        "rollback" => {
            let version = query
                .get("version")
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| AdminError::bad_request("rollback needs ?version=N"))?;
            let change: Change = admin.registry.rollback(name, version).await?;
            Ok(json(StatusCode::OK, &summary(&change.set, &change.snapshot)))
        }
        "reflect" => {
            let url = query.get("upstream").ok_or_else(|| AdminError::bad_request("reflect needs ?upstream=URL"))?;
            crate::upstream::endpoint(url, Duration::from_secs(1)).map_err(AdminError::bad_request)?;
            let set = reflect::fetch(url, admin.connect_timeout)
                .await
                .map_err(|e| AdminError::new(StatusCode::BAD_GATEWAY, tonic::Code::Unavailable, e))?;
            let change = admin.registry.register(name, set, Some(url.clone())).await?;
            let status = if change.created { StatusCode::CREATED } else { StatusCode::OK };
            Ok(json(status, &summary(&change.set, &change.snapshot)))
        }
        _ => Err(AdminError::new(
            StatusCode::NOT_FOUND,
            tonic::Code::NotFound,
            format!("no admin action {verb:?}; use :rollback or :reflect"),
        )),
    }
}

/// `GET /v1/routes`: the active route table.
pub(super) async fn routes(State(admin): State<Admin>) -> Response {
    let snapshot = admin.registry.snapshot();
    let routes: Vec<Value> = snapshot
        .routes
        .bindings()
        .iter()
        .filter_map(|b| {
            let method = snapshot.methods.get(b.method)?;
            Some(json!({
                "method": b.http_method.as_str(),
                "path": b.template_text,
                "rpc": b.rpc_name,
                "set": method.set,
                "upstream": method.upstream,
            }))
        })
        .collect();
    json(StatusCode::OK, &json!({"generation": snapshot.generation, "routes": routes}))
}

async fn find(admin: &Admin, name: &str) -> Result<RegisteredSet, AdminError> {
    admin
        .registry
        .sets()
        .await
        .remove(name)
        .ok_or_else(|| AdminError::new(StatusCode::NOT_FOUND, tonic::Code::NotFound, format!("{name} not found")))
}

/// `{name, version, digest, upstream, services, routes}` of a set as the
/// snapshot serves it.
fn summary(set: &RegisteredSet, snapshot: &Snapshot) -> Value {
    let mut services: Vec<&str> = snapshot
        .methods
        .iter()
        .filter(|m| m.set == set.name)
        .map(|m| m.descriptor.parent_service().full_name())
        .collect();
    services.dedup();
    let routes: Vec<Value> = snapshot
        .routes
        .bindings()
        .iter()
        .filter(|b| !b.auto_mapped && snapshot.methods.get(b.method).is_some_and(|m| m.set == set.name))
        .map(|b| json!({"method": b.http_method.as_str(), "path": b.template_text, "rpc": b.rpc_name}))
        .collect();
    let active = set.active_version();
    let mut summary = json!({
        "name": set.name,
        "version": set.active,
        "digest": active.map(|v| v.digest.as_str()),
        "upstream": set.upstream,
        "fromFile": set.from_file,
        "services": services,
        "routes": routes,
    });
    // Lenient mode: what the snapshot left out (of every set), and why.
    if let (false, Value::Object(fields)) = (snapshot.skipped.is_empty(), &mut summary) {
        fields.insert("skippedRoutes".into(), json!(snapshot.skipped));
    }
    summary
}
