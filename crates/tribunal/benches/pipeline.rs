//! One instance's whole per-command path on one thread, without actors or
//! Kafka: decode, classify, pre-warm, evaluate, seal, one synced group commit
//! of RocksDB, durable. Batches are shaped as the nodes see them at
//! 10,000/s (about 300 commands a batch; packs of 50, as four gateways fill
//! them in `core.pack_flush_window` of 20 ms), with fresh
//! idempotency keys and the load generator's default mix over 8 warehouses
//! and 1,000 skus. What it reports per command is the floor of one node's
//! CPU for that command; the live node adds actor hops, Kafka, peers and HTTP.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use domain::inventory::{InventoryCommand, receive, ship, transfer};
use prost::Message as _;
use protocol::records::{CommandPack, PACK_VERSION, Submission};
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use tribunal::pipeline::{InputRecord, Pipeline};

/// The node's allocator, so the figure is the node's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const RECORDS_PER_BATCH: usize = 6;
const COMMANDS_PER_RECORD: usize = 50;
const WAREHOUSES: u64 = 8;
const SKUS: u64 = 1_000;

/// The workload's commands, drawn from a seeded generator.
struct Workload {
    draws: ChaCha8Rng,
    next_key: u64,
}

impl Workload {
    fn command(&mut self) -> InventoryCommand {
        let warehouse = self.draws.random_range(0..WAREHOUSES);
        let sku = format!("sku-{}", self.draws.random_range(0..SKUS));
        let quantity = self.draws.random_range(1..=5);
        match self.draws.random_range(0..10) {
            0..=4 => receive(&format!("w{warehouse}"), &sku, quantity),
            5..=7 => ship(&format!("w{warehouse}"), &sku, quantity),
            _ => {
                // Two distinct warehouses, as the load generator's transfers.
                let to = (warehouse + self.draws.random_range(1..WAREHOUSES)) % WAREHOUSES;
                transfer(&format!("w{warehouse}"), &format!("w{to}"), &sku, quantity)
            }
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
        draws: ChaCha8Rng::seed_from_u64(1),
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
