//! Control-plane costs: parsing a protoo request and computing a consumer's RtpParameters from a
//! producer's (what every `newConsumer` costs the signalling shard).

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use serde_json::json;
use shardcast::signalling::protoo;
use shards::rtp_parameters as ortc;

const PRODUCE: &str = include_str!("../tests/common/fixtures/produce-video-simulcast.json");
const JOIN: &str = include_str!("../tests/common/fixtures/join-olimmpcr.json");

fn bench(c: &mut Criterion) {
    let produce: serde_json::Value = serde_json::from_str(PRODUCE).expect("fixture");
    let join: serde_json::Value = serde_json::from_str(JOIN).expect("fixture");
    let request =
        json!({"request": true, "id": 4711, "method": "produce", "data": produce}).to_string();
    c.bench_function("protoo parse produce request", |b| {
        b.iter(|| protoo::parse(black_box(&request)).expect("valid"))
    });

    let caps = ortc::generate_router_rtp_capabilities(&ortc::demo_media_codecs()).expect("caps");
    let client_caps = ortc::parse_rtp_capabilities(&join["rtpCapabilities"]).expect("caps");
    let params = ortc::parse_rtp_parameters(&produce["rtpParameters"]).expect("params");
    c.bench_function("ortc produce: mapping + consumable", |b| {
        b.iter(|| {
            let mapping = ortc::get_producer_rtp_parameters_mapping(black_box(&params), &caps)
                .expect("mapping");
            ortc::get_consumable_rtp_parameters(ortc::MediaKind::Video, &params, &caps, &mapping)
        })
    });
    let mapping = ortc::get_producer_rtp_parameters_mapping(&params, &caps).expect("mapping");
    let consumable =
        ortc::get_consumable_rtp_parameters(ortc::MediaKind::Video, &params, &caps, &mapping);
    c.bench_function("ortc consumer parameters (simulcast VP8)", |b| {
        b.iter(|| {
            ortc::get_consumer_rtp_parameters(black_box(&consumable), &client_caps, false, true)
                .expect("consumer")
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
