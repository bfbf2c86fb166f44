//! Classification against many live entries (lookup) and the fresh path
//! (classify, record the response, amortised group commit) (insert).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use protocol::envelope::{EnvelopeVerdict, encode_envelope};
use protocol::position::{CommandPosition, StreamTime};
use warden::{Classification, FetchedEntry, IncomingCommand, Warden, WardenConfig};

const PARTITION: u32 = 0;
const COMMAND: &[u8] = br#"{"type":"receive","warehouse":"w1","sku":"sku-1","quantity":5}"#;
const CHUNK: usize = 1024;

fn keys(count: usize) -> Vec<String> {
    (0..count).map(|i| format!("client-{i:08}")).collect()
}

fn envelope(position: CommandPosition, key: &str) -> Vec<u8> {
    encode_envelope(
        position,
        Some(key),
        EnvelopeVerdict::Accepted,
        None,
        br#"{"level":5}"#,
    )
}

fn at(offset: i64) -> CommandPosition {
    CommandPosition {
        partition: PARTITION,
        offset,
        index: 0,
    }
}

fn fetch_absent(warden: &mut Warden, keys: &[String]) {
    let missing = warden.plan_fetch(PARTITION, keys.iter().map(String::as_str));
    let answers = missing
        .into_iter()
        .map(|key| FetchedEntry { key, entry: None })
        .collect();
    warden.accept_fetched(PARTITION, answers).expect("fetch");
}

/// A Warden holding `count` live recorded entries, one per key, at offsets
/// 0..count; the next free offset is `count`.
fn warden_with_entries(keys: &[String]) -> Warden {
    let mut warden = Warden::new(WardenConfig::default()).expect("config");
    fetch_absent(&mut warden, keys);
    for (offset, key) in (0..).zip(keys) {
        let command = IncomingCommand {
            position: at(offset),
            idempotency_key: key,
            command: COMMAND,
            stream_time: StreamTime(1),
        };
        assert_eq!(warden.classify(&command), Ok(Classification::Fresh));
        warden
            .record_response(at(offset), envelope(at(offset), key))
            .expect("record");
    }
    warden
}

fn lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("warden/lookup");
    group.throughput(Throughput::Elements(1));
    for count in [1_000usize, 100_000] {
        let keys = keys(count);
        let mut warden = warden_with_entries(&keys);
        let mut offset = i64::try_from(count).expect("small");
        let mut next_key = keys.iter().cycle();
        group.bench_function(BenchmarkId::from_parameter(count), |b| {
            b.iter(|| {
                let command = IncomingCommand {
                    position: at(offset),
                    idempotency_key: next_key.next().expect("cycle"),
                    command: COMMAND,
                    stream_time: StreamTime(2),
                };
                offset += 1;
                let classification = warden.classify(black_box(&command)).expect("classify");
                assert!(matches!(classification, Classification::Duplicate { .. }));
                classification
            });
        });
    }
    group.finish();
}

fn insert(c: &mut Criterion) {
    let mut group = c.benchmark_group("warden/insert");
    group.throughput(Throughput::Elements(1));
    let keys = keys(100_000);
    group.bench_function("fresh_record_commit", |b| {
        b.iter_custom(|iters| {
            let mut warden = Warden::new(WardenConfig::default()).expect("config");
            let mut offset = 0i64;
            let mut elapsed = Duration::ZERO;
            let mut done = 0u64;
            let mut chunks = keys.chunks(CHUNK).cycle();
            while done < iters {
                let chunk = chunks.next().expect("cycle");
                let started = Instant::now();
                fetch_absent(&mut warden, chunk);
                for key in chunk {
                    let position = at(offset);
                    let command = IncomingCommand {
                        position,
                        idempotency_key: key,
                        command: COMMAND,
                        stream_time: StreamTime(offset * 10),
                    };
                    let classification = warden.classify(&command).expect("classify");
                    assert_eq!(classification, Classification::Fresh);
                    warden
                        .record_response(position, envelope(position, key))
                        .expect("record");
                    offset += 1;
                }
                let delta = warden
                    .commit_delta(
                        PARTITION,
                        offset - 1,
                        StreamTime((offset - 1) * 10),
                        Vec::new(),
                    )
                    .expect("commit");
                black_box(delta);
                warden.on_durable(PARTITION, offset - 1).expect("durable");
                elapsed += started.elapsed();
                done += chunk.len() as u64;
            }
            // Whole chunks only: scale to the iterations asked for.
            elapsed.mul_f64(iters as f64 / done as f64)
        });
    });
    group.finish();
}

criterion_group!(benches, lookup, insert);
criterion_main!(benches);
