//! The README's "Backends and TLS" example loads as written, with its
//! certificate paths pointed at generated files.

mod common;

use protogate::config::{Address, Config, Flags, parse_spec};

#[test]
fn the_backends_and_tls_example_loads() {
    let dir = std::env::temp_dir().join(format!("protogate-tls-example-{}", common::process::free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = common::certs::Ca::new("example ca");
    for name in ["gateway", "gateway-client"] {
        ca.leaf(&["gateway.internal"]).write(&dir, name);
    }
    for name in ["clients-ca", "internal-ca"] {
        std::fs::write(dir.join(format!("{name}.pem")), &ca.pem).unwrap();
    }
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/backends/gateway.toml")).unwrap();
    let text = text.replace("/etc/protogate/tls", dir.to_str().unwrap());
    let config = Config::from_toml(&text, &Flags::default()).unwrap();

    let tls = config.tls.expect("TLS on the listener");
    assert!(tls.client_auth_optional && tls.client_ca_file.is_some());
    let default = config.upstream.map.default.as_deref().unwrap();
    assert_eq!(parse_spec(default).unwrap().len(), 3);
    let billing = &config.upstream.map.services["billing.v1.Billing"];
    assert!(matches!(parse_spec(billing).unwrap()[0], Address::Dns { port: 50051, .. }));
    let pool = &config.upstream.pool;
    assert_eq!((pool.max_requests, pool.retry.attempts, pool.ejection.max_percent), (2000, 3, 50));
    assert!(pool.tls.dns && pool.tls.cert_file.is_some());
}
