//! JSON ⇄ protobuf throughput, fast transcoder against prost-reflect (the
//! reference), on messages of about 50 B, 1 KB, 16 KB and 128 KB that mix
//! every field kind and the well-known types. Throughput is bytes of JSON.
//! The handover rate of each input is printed before its group.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};
use protogate::transcode::fast::{Plans, Renderer, Style, from_json};
use serde_json::json;

fn nested(i: usize) -> serde_json::Value {
    json!({"name": format!("shelves/{i}/books/{}", i * 7), "count": i, "color": "COLOR_GREEN",
           "child": {"name": "child ünïcode ✓", "count": -(i as i64)}})
}

/// An Everything message in JSON with `items` nested entries.
fn body(items: usize) -> Vec<u8> {
    if items == 0 {
        return br#"{"fString":"hello","fInt32":42}"#.to_vec();
    }
    let value = json!({
        "fDouble": 3.25, "fFloat": 1.5, "fInt32": -12, "fInt64": "-9007199254740993", "fUint32": 7,
        "fUint64": "18446744073709551615", "fSint32": -3, "fSint64": "-4", "fFixed32": 5, "fFixed64": "6",
        "fSfixed32": -7, "fSfixed64": "-8", "fBool": true, "fString": "a \"quoted\" line\n", "fBytes": "AAECAwQ=",
        "fEnum": "COLOR_BLUE", "fNested": nested(1),
        "rInt32": (0..items as i32).collect::<Vec<_>>(), "rString": (0..items).map(|i| format!("tag-{i}")).collect::<Vec<_>>(),
        "rEnum": ["COLOR_RED", "COLOR_GREEN"], "rNested": (0..items).map(nested).collect::<Vec<_>>(),
        "rInt64": ["1", "-2"], "mString": {"k1": "v1", "k2": "v2"}, "mNested": {"7": nested(7)}, "mBool": {"true": "1"},
        "oString": "choice", "pInt32": 0, "wTimestamp": "2024-05-06T07:08:09.123Z", "wDuration": "3.5s",
        "wBool": true, "wInt32": 5, "wInt64": "6", "wUint32": 7, "wUint64": "8", "wFloat": 1.25, "wDouble": 2.5,
        "wString": "wrapped", "wBytes": "AQI=", "wEmpty": {},
    });
    serde_json::to_vec(&value).expect("JSON")
}

struct Fixture {
    name: &'static str,
    json: Vec<u8>,
    wire: Vec<u8>,
}

fn criterion_config() -> Criterion {
    Criterion::default().measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500))
}

fn fixtures(descriptor: &MessageDescriptor) -> Vec<Fixture> {
    [("small", 0), ("1KB", 3), ("16KB", 117), ("128KB", 950)]
        .into_iter()
        .map(|(name, items)| {
            let json = body(items);
            let mut deserializer = serde_json::Deserializer::from_slice(&json);
            let message = DynamicMessage::deserialize(descriptor.clone(), &mut deserializer).expect("valid body");
            Fixture { name, json, wire: message.encode_to_vec() }
        })
        .collect()
}

fn transcoding(c: &mut Criterion) {
    let pool = DescriptorPool::decode(protogate::pb::EVERYTHING_DESCRIPTOR_SET).expect("descriptors");
    let descriptor = pool.get_message_by_name("protogate.test.v1.Everything").expect("Everything");
    let plans = Plans::compile(&pool);
    let plan = plans.message_index(descriptor.full_name()).expect("plan");
    let fixtures = fixtures(&descriptor);
    let options = protogate::transcode::JsonOptions::default().serialize_options();

    let mut group = c.benchmark_group("json_to_protobuf");
    for fixture in &fixtures {
        let mut out = Vec::new();
        let fast = from_json::parse(&plans, plan, &fixture.json, false, &mut out).is_ok();
        println!("json_to_protobuf/{}: {} bytes of JSON, fast path: {fast}", fixture.name, fixture.json.len());
        group.throughput(Throughput::Bytes(fixture.json.len() as u64));
        group.bench_with_input(BenchmarkId::new("fast", fixture.name), &fixture.json, |b, json| {
            let mut out = Vec::with_capacity(json.len());
            b.iter(|| {
                out.clear();
                black_box(from_json::parse(&plans, plan, json, false, &mut out)).ok();
            })
        });
        group.bench_with_input(BenchmarkId::new("prost_reflect", fixture.name), &fixture.json, |b, json| {
            b.iter(|| {
                let mut deserializer = serde_json::Deserializer::from_slice(json);
                let message = DynamicMessage::deserialize(descriptor.clone(), &mut deserializer).ok();
                black_box(message.map(|m| m.encode_to_vec()))
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("protobuf_to_json");
    let mut renderer = Renderer::default();
    for fixture in &fixtures {
        let mut out = Vec::new();
        let fast = renderer.render(&plans, plan, &fixture.wire, Style::default(), &mut out).is_ok();
        println!("protobuf_to_json/{}: {} bytes of JSON out, fast path: {fast}", fixture.name, out.len());
        group.throughput(Throughput::Bytes(out.len() as u64));
        group.bench_with_input(BenchmarkId::new("fast", fixture.name), &fixture.wire, |b, wire| {
            let mut out = Vec::with_capacity(wire.len() * 2);
            b.iter(|| {
                out.clear();
                black_box(renderer.render(&plans, plan, wire, Style::default(), &mut out)).ok();
            })
        });
        group.bench_with_input(BenchmarkId::new("prost_reflect", fixture.name), &fixture.wire, |b, wire| {
            b.iter(|| {
                let message = DynamicMessage::decode(descriptor.clone(), wire.as_slice()).ok();
                black_box(message.map(|m| protogate::transcode::response::to_json(&m, &options, false)))
            })
        });
    }
    group.finish();
}

criterion_group! { name = benches; config = criterion_config(); targets = transcoding }
criterion_main!(benches);
