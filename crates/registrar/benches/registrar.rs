//! One pre-warmed batch end to end in the Registrar core: admit (pin,
//! evict, reserve), load the multi-get's answer, apply the writes, release
//! the pins and mark the commit durable. Keys are drawn uniformly from an
//! inventory-sized key space, as the load generator's workload does.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use domain::EntityKey;
use protocol::position::{CommandPosition, Offset, Partition};
use registrar::{
    Admission, EntityWriteAt, LoadedWatermark, RecordKeys, Registrar, RegistrarConfig,
};

const PARTITION: Partition = 0;
const RECORDS_PER_BATCH: usize = 8;
const COMMANDS_PER_RECORD: usize = 25;

/// A deterministic stream of key indexes (64-bit LCG, high bits).
struct KeyDraw(u64);

impl KeyDraw {
    fn next(&mut self, key_space: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) as usize % key_space
    }
}

fn batch(draw: &mut KeyDraw, keys: &[EntityKey], first_offset: Offset) -> Vec<RecordKeys> {
    (0..RECORDS_PER_BATCH)
        .map(|record| {
            let mut touched: Vec<EntityKey> = (0..COMMANDS_PER_RECORD)
                .map(|_| keys[draw.next(keys.len())].clone())
                .collect();
            touched.sort();
            touched.dedup();
            RecordKeys {
                offset: first_offset + record as Offset,
                keys: touched,
            }
        })
        .collect()
}

fn cycle(registrar: &mut Registrar, records: &[RecordKeys]) {
    let pending = match registrar.admit(PARTITION, records).expect("admit") {
        Admission::Prewarm(pending) => pending,
        Admission::WaitForRoom => panic!("the cache has room for a batch"),
    };
    let states = vec![Some(b"5".to_vec()); pending.keys_to_read().len()];
    let prewarmed = registrar
        .complete_prewarm(pending, states)
        .expect("the answer matches the reservation");
    let writes: Vec<EntityWriteAt<'_>> = records
        .iter()
        .flat_map(|record| {
            record
                .keys
                .iter()
                .enumerate()
                .map(|(index, key)| EntityWriteAt {
                    position: CommandPosition {
                        partition: PARTITION,
                        offset: record.offset,
                        index: index as u32,
                    },
                    key,
                    state: b"6",
                })
        })
        .collect();
    registrar
        .apply_batch_writes(prewarmed, writes)
        .expect("writes of the batch's own keys");
    let last = records.last().expect("a batch has records").offset;
    black_box(registrar.on_durable(PARTITION, last).expect("durable"));
}

fn batch_cycle(c: &mut Criterion) {
    let mut group = c.benchmark_group("registrar/batch_cycle");
    group.throughput(Throughput::Elements(
        (RECORDS_PER_BATCH * COMMANDS_PER_RECORD) as u64,
    ));
    // 8,000 levels fit the default cache; 100,000 keys into 16,384 slots
    // evict on most pre-warms.
    for (key_space, capacity) in [(8_000usize, 262_144usize), (100_000, 16_384)] {
        let keys: Vec<EntityKey> = (0..key_space)
            .map(|i| EntityKey::new(format!("level/w{:03}/sku-{:05}", i % 100, i)))
            .collect();
        let config = RegistrarConfig {
            max_cached_entities: capacity,
            max_pack_commands: COMMANDS_PER_RECORD,
            max_keys_per_command: 1,
        };
        let loaded = [LoadedWatermark {
            partition: PARTITION,
            applied_offset: -1,
        }];
        let mut registrar = Registrar::new(config, &loaded).expect("valid config");
        let mut draw = KeyDraw(key_space as u64);
        let mut next_offset: Offset = 0;
        group.bench_function(format!("{key_space}_keys_{capacity}_slots"), |b| {
            b.iter_batched(
                || {
                    let records = batch(&mut draw, &keys, next_offset);
                    next_offset += RECORDS_PER_BATCH as Offset;
                    records
                },
                |records| cycle(&mut registrar, &records),
                criterion::BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

criterion_group!(benches, batch_cycle);
criterion_main!(benches);
