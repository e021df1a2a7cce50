//! Route templates and matching: parsing, matching against tables of 10,
//! 1 000 and 10 000 routes (compiled from generated .proto files, as a
//! registration would), and query-string binding.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::Method;
use prost_reflect::{DescriptorPool, DynamicMessage};
use protogate::registry::{snapshot, source};
use protogate::route::{RouteTable, Template};
use protogate::transcode::JsonOptions;

/// A pool of `count` methods with REST routes of several shapes.
fn table(count: usize) -> RouteTable {
    let mut proto = String::from(
        "syntax = \"proto3\";\npackage bench.v1;\nimport \"google/api/annotations.proto\";\n\
         message Req { string name = 1; string parent = 2; int32 page_size = 3; }\nservice Bench {\n",
    );
    for i in 0..count {
        let rule = match i % 4 {
            0 => format!("get: \"/v1/{{name=projects/*/items{i}/*}}\""),
            1 => format!("post: \"/v1/{{parent=projects/*}}/things{i}\" body: \"*\""),
            2 => format!("get: \"/v1/static{i}/{{name}}:verb\""),
            _ => format!("delete: \"/v1/{{name=orgs/*/units{i}/**}}\""),
        };
        proto.push_str(&format!("  rpc M{i}(Req) returns (Req) {{ option (google.api.http) = {{ {rule} }}; }}\n"));
    }
    proto.push_str("}\n");
    let set = source::compile_protos(&[("bench.proto".into(), proto)], &[]).expect("compiles");
    let pool = DescriptorPool::decode(set.as_slice()).expect("pool");
    snapshot::routes(&pool).expect("routes").1
}

fn criterion_config() -> Criterion {
    Criterion::default().measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500))
}

fn routing(c: &mut Criterion) {
    let mut group = c.benchmark_group("template_parse");
    for text in [
        "/v1/shelves",
        "/v1/{name=shelves/*/books/*}",
        "/v1/{parent=projects/*/locations/*}/things/{id}:batchGet",
        "/files/{path=**}",
    ] {
        group.bench_with_input(BenchmarkId::from_parameter(text), text, |b, text| {
            b.iter(|| black_box(Template::parse(text)))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("route_match");
    for count in [10usize, 1_000, 10_000] {
        let table = table(count);
        // A route near the end of the generated list, and a miss.
        let path = format!("/v1/projects/p1/items{}/x42", (count - 1) / 4 * 4);
        assert!(table.find(&Method::GET, &path).is_ok(), "{path}");
        group.bench_with_input(BenchmarkId::new("hit", count), &path, |b, path| {
            b.iter(|| black_box(table.find(&Method::GET, path).is_ok()))
        });
        group.bench_with_input(BenchmarkId::new("miss", count), &"/v2/nothing/here", |b, path| {
            b.iter(|| black_box(table.find(&Method::GET, path).is_err()))
        });
    }
    group.finish();

    let pool = DescriptorPool::decode(protogate::pb::EVERYTHING_DESCRIPTOR_SET).expect("descriptors");
    let (methods, table) = snapshot::routes(&pool).expect("routes");
    let found = table.find(&Method::GET, "/test/v1/echo").expect("echo route");
    let input = methods[found.binding.method].input();
    let options = JsonOptions::default();
    let query = "fInt32=5&fString=hello%20world&rString=a&rString=b&fEnum=COLOR_RED&fNested.name=n&wTimestamp=2024-01-01T00:00:00Z";
    c.bench_function("query_bind", |b| {
        b.iter(|| {
            let mut message = DynamicMessage::new(input.clone());
            black_box(protogate::transcode::query::apply(&mut message, found.binding, query, &options)).ok();
        })
    });
}

criterion_group! { name = benches; config = criterion_config(); targets = routing }
criterion_main!(benches);
