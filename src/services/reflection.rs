//! Server reflection over a snapshot: tonic-reflection's servers, built
//! from the snapshot's descriptor pool the first time a client reflects on
//! it and kept until the next snapshot (reflection clients make several
//! calls in a row; rebuilding indexes every file).

use std::sync::Mutex;

use tower::util::BoxCloneSyncService;

use super::Server;
use crate::registry::Snapshot;

/// The reflection servers of the latest snapshot reflected on.
#[derive(Debug, Default)]
pub struct Reflection {
    built: Mutex<Option<Built>>,
}

#[derive(Debug, Clone)]
struct Built {
    generation: u64,
    v1: Server,
    v1alpha: Server,
}

/// The services listed besides the snapshot's: reflection itself and
/// health, as a gRPC server lists the services it has.
const OWN_SERVICES: [&str; 3] =
    ["grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"];

impl Reflection {
    pub fn v1(&self, snapshot: &Snapshot) -> Server {
        self.built(snapshot).v1
    }

    pub fn v1alpha(&self, snapshot: &Snapshot) -> Server {
        self.built(snapshot).v1alpha
    }

    fn built(&self, snapshot: &Snapshot) -> Built {
        let mut slot = self.built.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(built) = slot.as_ref().filter(|b| b.generation == snapshot.generation) {
            return built.clone();
        }
        let built = build(snapshot);
        *slot = Some(built.clone());
        built
    }
}

fn build(snapshot: &Snapshot) -> Built {
    let pool = snapshot.pool.encode_to_vec();
    let mut services: Vec<&str> = snapshot.methods.iter().map(|m| m.descriptor.parent_service().full_name()).collect();
    services.sort_unstable();
    services.dedup();
    let builder = || {
        let mut builder = tonic_reflection::server::Builder::configure()
            .include_reflection_service(false)
            .register_encoded_file_descriptor_set(&pool)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET);
        for name in services.iter().copied().chain(OWN_SERVICES) {
            builder = builder.with_service_name(name);
        }
        builder
    };
    // The pool was validated when the snapshot was built, so the builder
    // has no reason to refuse it; were it to, reflection calls fail as
    // INTERNAL and the reason is logged once per snapshot.
    let v1 = builder().build_v1().map(BoxCloneSyncService::new);
    let v1alpha = builder().build_v1alpha().map(BoxCloneSyncService::new);
    Built { generation: snapshot.generation, v1: v1.unwrap_or_else(refused), v1alpha: v1alpha.unwrap_or_else(refused) }
}

fn refused(error: tonic_reflection::server::Error) -> Server {
    tracing::error!(%error, "reflection cannot index the snapshot");
    BoxCloneSyncService::new(tower::service_fn(|_| async {
        Ok(tonic::Status::internal("reflection is unavailable").into_http())
    }))
}
