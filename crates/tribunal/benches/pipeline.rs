//! One instance's whole per-command path on one thread, without actors or
//! Kafka: decode, classify, pre-warm, evaluate, seal, one synced group commit
//! of RocksDB, durable. Batches are shaped as the nodes see them at
//! 10,000/s (about 300 commands a batch in packs of 25), with fresh
//! idempotency keys and the load generator's default mix over 8 warehouses
//! and 1,000 skus. What it reports per command is the floor of one node's
//! CPU for that command; the live node adds actor hops, Kafka, peers and HTTP.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use domain::inventory::{InventoryCommand, receive, ship, transfer};
use prost::Message as _;
use protocol::records::{CommandPack, PACK_VERSION, Submission};
use tribunal::pipeline::{InputRecord, Pipeline};

/// The node's allocator, so the figure is the node's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const RECORDS_PER_BATCH: usize = 12;
const COMMANDS_PER_RECORD: usize = 25;
const WAREHOUSES: u64 = 8;
const SKUS: u64 = 1_000;

/// The workload's commands from a seeded 64-bit LCG (high bits).
struct Workload {
    state: u64,
    next_key: u64,
}

impl Workload {
    fn draw(&mut self, below: u64) -> u64 {
        self.state = self
            .state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.state >> 33) % below
    }

    fn command(&mut self) -> InventoryCommand {
        let warehouse = format!("w{}", self.draw(WAREHOUSES));
        let sku = format!("sku-{}", self.draw(SKUS));
        let quantity = 1 + self.draw(5) as i64;
        match self.draw(10) {
            0..=4 => receive(&warehouse, &sku, quantity),
            5..=7 => ship(&warehouse, &sku, quantity),
            _ => transfer(
                &warehouse,
                &format!("w{}", self.draw(WAREHOUSES)),
                &sku,
                quantity,
            ),
        }
    }

    fn pack(&mut self) -> Vec<u8> {
        let submissions = (0..COMMANDS_PER_RECORD)
            .map(|_| {
                self.next_key += 1;
                Submission {
                    idempotency_key: format!("key-{}", self.next_key),
                    command: self.command().encode(),
                }
            })
            .collect();
        CommandPack {
            version: PACK_VERSION,
            submissions,
        }
        .encode_to_vec()
    }

    fn batch(&mut self, first_offset: i64) -> Vec<InputRecord> {
        (0..RECORDS_PER_BATCH as i64)
            .map(|i| {
                let offset = first_offset + i;
                (offset, 1_000 + offset, Some(self.pack()))
            })
            .collect()
    }
}

fn pipeline(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut pipeline = Pipeline::open(dir.path(), 1).expect("open");
    let mut workload = Workload {
        state: 1,
        next_key: 0,
    };
    let mut next_offset = 0;
    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Elements(
        (RECORDS_PER_BATCH * COMMANDS_PER_RECORD) as u64,
    ));
    group.bench_function("batch_of_300_commands", |b| {
        b.iter_batched(
            || {
                let batch = workload.batch(next_offset);
                next_offset += RECORDS_PER_BATCH as i64;
                batch
            },
            |batch| black_box(pipeline.process(0, &batch).expect("process")),
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
