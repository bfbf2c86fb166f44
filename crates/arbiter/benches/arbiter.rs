//! One full batch (512 records x 16 inventory commands), evaluated on the
//! pipeline thread and on two workers. Throughput is in commands.

use std::collections::BTreeMap;
use std::hint::black_box;

use arbiter::{
    Arbiter, ArbiterConfig, BatchInput, CommandSlot, FreshCommand, RecordContent, RecordInput,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use domain::inventory::{Inventory, InventoryCommand, stock_key};
use domain::{EntityKey, EntityStates, EvaluationContext};
use protocol::position::CommandPosition;

const RECORDS: usize = 512;
const COMMANDS_PER_RECORD: usize = 16;
const SKUS: u64 = 2048;
const WAREHOUSES: u64 = 4;
const PARTITION: u32 = 0;

/// The Registrar's pre-warmed entries, as the Arbiter reads them.
struct Levels(BTreeMap<EntityKey, Vec<u8>>);

impl EntityStates for Levels {
    fn state(&self, key: &EntityKey) -> Option<&[u8]> {
        self.0.get(key).map(Vec::as_slice)
    }
}

/// A fixed pseudo-random mix of receives, ships and transfers (Knuth's
/// MMIX LCG: the workload is the same on every run).
fn workload() -> (BatchInput<InventoryCommand>, Levels) {
    let mut seed: u64 = 0x5eed;
    let mut next = |bound: u64| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) % bound
    };
    let mut records = Vec::with_capacity(RECORDS);
    for offset in 0..RECORDS {
        let offset = i64::try_from(offset).expect("small");
        let slots = (0..COMMANDS_PER_RECORD)
            .map(|index| {
                let sku = format!("sku-{}", next(SKUS));
                let warehouse = format!("wh-{}", next(WAREHOUSES));
                let quantity = i64::try_from(1 + next(20)).expect("small");
                let command = match next(10) {
                    0..=4 => InventoryCommand::Receive {
                        warehouse,
                        sku,
                        quantity,
                    },
                    5..=7 => InventoryCommand::Ship {
                        warehouse,
                        sku,
                        quantity,
                    },
                    _ => InventoryCommand::Transfer {
                        from: warehouse,
                        to: format!("wh-{}", WAREHOUSES + next(WAREHOUSES)),
                        sku,
                        quantity,
                    },
                };
                CommandSlot::Fresh(FreshCommand {
                    position: CommandPosition {
                        partition: PARTITION,
                        offset,
                        index: u32::try_from(index).expect("small"),
                    },
                    idempotency_key: format!("key-{offset}-{index}"),
                    command,
                })
            })
            .collect();
        records.push(RecordInput {
            offset,
            content: RecordContent::Commands(slots),
        });
    }
    let levels = (0..SKUS)
        .flat_map(|sku| {
            (0..WAREHOUSES).map(move |wh| {
                (
                    stock_key(&format!("wh-{wh}"), &format!("sku-{sku}")),
                    b"50".to_vec(),
                )
            })
        })
        .collect();
    let batch = BatchInput {
        partition: PARTITION,
        records,
    };
    (batch, Levels(levels))
}

fn evaluate_batch(c: &mut Criterion) {
    let (batch, levels) = workload();
    let context = EvaluationContext {
        partition: PARTITION,
        partitions: 1,
    };
    let mut group = c.benchmark_group("arbiter");
    group.throughput(Throughput::Elements((RECORDS * COMMANDS_PER_RECORD) as u64));
    for (name, workers) in [("sequential", 1), ("2_workers", 2)] {
        let arbiter = Arbiter::new(
            Inventory::default(),
            ArbiterConfig {
                max_evaluation_workers: workers,
                ..ArbiterConfig::default()
            },
        );
        group.bench_function(name, |b| {
            b.iter(|| {
                black_box(
                    arbiter
                        .evaluate_batch(context, black_box(&batch), &levels)
                        .expect("the inventory domain keeps its contract"),
                )
            });
        });
    }
    group.finish();
}

criterion_group!(benches, evaluate_batch);
criterion_main!(benches);
