//! The standard `grpc.health.v1.Health/Check` of one endpoint.

use std::time::Duration;

use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use super::pool::Health;

/// The endpoint's health, or why it counts as down. A backend without the
/// health service answered, so it is up.
pub async fn check<S>(channel: S, timeout: Duration) -> Result<Health, String>
where
    S: tonic::client::GrpcService<tonic::body::Body>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::ResponseBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    <S::ResponseBody as http_body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send,
{
    let mut client = HealthClient::new(channel);
    let request = client.check(HealthCheckRequest { service: String::new() });
    match tokio::time::timeout(timeout, request).await {
        Err(_) => Err(format!("no answer within {timeout:?}")),
        Ok(Ok(reply)) if reply.get_ref().status == ServingStatus::Serving as i32 => Ok(Health::Serving),
        Ok(Ok(_)) => Err("not serving".into()),
        Ok(Err(status)) if status.code() == Code::Unimplemented => Ok(Health::NoHealthService),
        Ok(Err(status)) => Err(format!("unreachable: {}", status.code().description())),
    }
}
