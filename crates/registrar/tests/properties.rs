//! Properties of the Registrar driven like the pipeline drives it: the
//! inventory domain evaluates every batch against the Registrar's view, with
//! a Ledger model committing evaluated records in random group commits.

use std::collections::{BTreeMap, VecDeque};

use domain::inventory::{Inventory, InventoryCommand, partition_for_sku, stock_key};
use domain::{Domain, EntityKey, EntityStates, EvaluationContext, Verdict};
use proptest::prelude::*;
use protocol::position::{CommandPosition, Offset, Partition};
use registrar::{
    Admission, AdmitError, EntityWriteAt, LoadedWatermark, PrewarmedBatch, RecordKeys, Registrar,
    RegistrarConfig,
};

const SKUS: [&str; 4] = ["apple", "bolt", "cog", "drum"];
const WAREHOUSES: [&str; 3] = ["north", "south", "west"];

type States = BTreeMap<EntityKey, Vec<u8>>;
/// Verdict and body of the command at a position.
type Outputs = BTreeMap<CommandPosition, (Verdict, Vec<u8>)>;
/// One record's staged writes, in log order.
type RecordWrites = (Offset, Vec<(CommandPosition, EntityKey, Vec<u8>)>);
/// One evaluated record's new states, waiting for its group commit.
type RecordStates = (Offset, Vec<(EntityKey, Vec<u8>)>);

#[derive(Clone, Debug)]
struct Record {
    offset: Offset,
    commands: Vec<InventoryCommand>,
}

fn command() -> impl Strategy<Value = InventoryCommand> {
    (
        0..3u8,
        0..WAREHOUSES.len(),
        0..WAREHOUSES.len(),
        0..SKUS.len(),
        1..20i64,
    )
        .prop_map(|(kind, first, second, sku, quantity)| {
            let (warehouse, sku) = (WAREHOUSES[first].to_owned(), SKUS[sku].to_owned());
            match kind {
                0 => InventoryCommand::Receive {
                    warehouse,
                    sku,
                    quantity,
                },
                1 => InventoryCommand::Ship {
                    warehouse,
                    sku,
                    quantity,
                },
                _ => InventoryCommand::Transfer {
                    from: warehouse,
                    to: WAREHOUSES[second].to_owned(),
                    sku,
                    quantity,
                },
            }
        })
}

/// Everything one run needs: the cache size, the log and how the pipeline
/// cuts, interleaves and commits it.
#[derive(Clone, Debug)]
struct Scenario {
    partitions: u32,
    max_pack_commands: usize,
    capacity: usize,
    /// Each pack becomes one record per partition its commands route to.
    packs: Vec<(Vec<InventoryCommand>, bool)>,
    batch_sizes: Vec<usize>,
    schedule: Vec<u8>,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (1..=2u32, 1..=3usize)
        .prop_flat_map(|(partitions, max_pack_commands)| {
            let capacity = 2 * max_pack_commands..=2 * max_pack_commands + 8;
            let pack = (
                prop::collection::vec(command(), 0..=max_pack_commands),
                any::<bool>(),
            );
            (
                Just(partitions),
                Just(max_pack_commands),
                capacity,
                prop::collection::vec(pack, 1..40),
                prop::collection::vec(1..=4usize, 1..8),
                prop::collection::vec(any::<u8>(), 0..120),
            )
        })
        .prop_map(
            |(partitions, max_pack_commands, capacity, packs, batch_sizes, schedule)| Scenario {
                partitions,
                max_pack_commands,
                capacity,
                packs,
                batch_sizes,
                schedule,
            },
        )
}

impl Scenario {
    /// Each partition's records, with an offset gap after a flagged pack.
    fn logs(&self) -> BTreeMap<Partition, Vec<Record>> {
        let mut logs: BTreeMap<Partition, Vec<Record>> =
            (0..self.partitions).map(|p| (p, Vec::new())).collect();
        let mut next_offset: BTreeMap<Partition, Offset> =
            (0..self.partitions).map(|p| (p, 0)).collect();
        for (pack, gap) in &self.packs {
            for partition in 0..self.partitions {
                let commands: Vec<InventoryCommand> = pack
                    .iter()
                    .filter(|command| {
                        partition_for_sku(command.sku(), self.partitions) == partition
                    })
                    .cloned()
                    .collect();
                if commands.is_empty() && partition > 0 {
                    continue;
                }
                let offset = next_offset[&partition];
                next_offset.insert(partition, offset + 1 + Offset::from(*gap));
                logs.get_mut(&partition)
                    .expect("every partition has a log")
                    .push(Record { offset, commands });
            }
        }
        logs
    }

    /// The batches in arrival order, partitions interleaved by the schedule.
    fn arrivals(&self) -> VecDeque<(Partition, Vec<Record>)> {
        let mut cuts: Vec<VecDeque<Vec<Record>>> = Vec::new();
        for records in self.logs().into_values() {
            let mut batches = VecDeque::new();
            let mut rest = records.as_slice();
            let mut sizes = self.batch_sizes.iter().cycle();
            while !rest.is_empty() {
                let size = (*sizes.next().expect("sizes cycle")).min(rest.len());
                batches.push_back(rest[..size].to_vec());
                rest = &rest[size..];
            }
            cuts.push(batches);
        }
        let mut arrivals = VecDeque::new();
        let mut choices = self.schedule.iter().cycle();
        while cuts.iter().any(|batches| !batches.is_empty()) {
            let pick = usize::from(*choices.next().unwrap_or(&0)) % cuts.len();
            let partition = (0..cuts.len())
                .map(|step| (pick + step) % cuts.len())
                .find(|&p| !cuts[p].is_empty())
                .expect("some partition has batches left");
            let batch = cuts[partition].pop_front().expect("not empty");
            arrivals.push_back((partition as Partition, batch));
        }
        arrivals
    }

    fn config(&self) -> RegistrarConfig {
        RegistrarConfig {
            max_cached_entities: self.capacity,
            max_pack_commands: self.max_pack_commands,
            max_keys_per_command: 2,
        }
    }

    fn context(&self, partition: Partition) -> EvaluationContext {
        EvaluationContext {
            partition,
            partitions: self.partitions,
        }
    }
}

/// Every key the scenario can touch.
fn universe() -> Vec<EntityKey> {
    WAREHOUSES
        .iter()
        .flat_map(|warehouse| SKUS.iter().map(move |sku| stock_key(warehouse, sku)))
        .collect()
}

/// The Arbiter's view of one command: states staged earlier in the batch,
/// else the Registrar's.
struct Overlay<'a> {
    staged: &'a States,
    base: &'a dyn EntityStates,
}

impl EntityStates for Overlay<'_> {
    fn state(&self, key: &EntityKey) -> Option<&[u8]> {
        match self.staged.get(key) {
            Some(state) => Some(state),
            None => self.base.state(key),
        }
    }
}

/// Evaluates records in log order against `base`, recording outputs and
/// returning each record's writes in log order.
fn evaluate(
    scenario: &Scenario,
    partition: Partition,
    records: &[Record],
    base: &dyn EntityStates,
    outputs: &mut Outputs,
) -> Vec<RecordWrites> {
    let inventory = Inventory::default();
    let mut staged = States::new();
    let mut writes = Vec::new();
    for record in records {
        let mut record_writes = Vec::new();
        for (index, command) in record.commands.iter().enumerate() {
            let position = CommandPosition {
                partition,
                offset: record.offset,
                index: u32::try_from(index).expect("small pack"),
            };
            let view = Overlay {
                staged: &staged,
                base,
            };
            let outcome = inventory
                .evaluate(scenario.context(partition), command, &view)
                .expect("the domain wrote every state it reads");
            for write in outcome.writes {
                staged.insert(write.key.clone(), write.state.clone());
                record_writes.push((position, write.key, write.state));
            }
            outputs.insert(position, (outcome.verdict, outcome.body));
        }
        writes.push((record.offset, record_writes));
    }
    writes
}

/// The reference: every partition's log evaluated in order on one unbounded
/// map that applies each write at once.
fn reference(scenario: &Scenario) -> (Outputs, States) {
    struct Map<'a>(&'a States);
    impl EntityStates for Map<'_> {
        fn state(&self, key: &EntityKey) -> Option<&[u8]> {
            self.0.get(key).map(Vec::as_slice)
        }
    }
    let mut outputs = Outputs::new();
    let mut store = States::new();
    for (partition, log) in scenario.logs() {
        for record in &log {
            let writes = evaluate(
                scenario,
                partition,
                std::slice::from_ref(record),
                &Map(&store),
                &mut outputs,
            );
            for (_, record_writes) in writes {
                for (_, key, state) in record_writes {
                    store.insert(key, state);
                }
            }
        }
    }
    (outputs, store)
}

/// The pipeline around one Registrar: arrival queue, batches pre-warmed and
/// not evaluated, evaluated records not yet durable, and the Ledger.
struct Pipeline<'s> {
    scenario: &'s Scenario,
    registrar: Registrar,
    arrivals: VecDeque<(Partition, Vec<Record>)>,
    outstanding: VecDeque<(PrewarmedBatch, Vec<Record>)>,
    uncommitted: BTreeMap<Partition, VecDeque<RecordStates>>,
    ledger: States,
    durable_through: BTreeMap<Partition, Offset>,
    /// The state of every key after the last evaluated write.
    latest: States,
    outputs: Outputs,
}

impl<'s> Pipeline<'s> {
    fn new(scenario: &'s Scenario) -> Self {
        let loaded: Vec<LoadedWatermark> = (0..scenario.partitions)
            .map(|partition| LoadedWatermark {
                partition,
                applied_offset: -1,
            })
            .collect();
        Self {
            scenario,
            registrar: Registrar::new(scenario.config(), &loaded).expect("valid start"),
            arrivals: scenario.arrivals(),
            outstanding: VecDeque::new(),
            uncommitted: BTreeMap::new(),
            ledger: States::new(),
            durable_through: (0..scenario.partitions).map(|p| (p, -1)).collect(),
            latest: States::new(),
            outputs: Outputs::new(),
        }
    }

    /// Offers the head batch; false if it has to wait for room.
    fn admit(&mut self) -> bool {
        let Some((partition, records)) = self.arrivals.front_mut() else {
            return true;
        };
        let partition = *partition;
        let keys: Vec<RecordKeys> = records
            .iter()
            .map(|record| {
                RecordKeys::of_fresh_commands(
                    record.offset,
                    &Inventory::default(),
                    &record.commands,
                )
            })
            .collect();
        let pending = match self.registrar.admit(partition, &keys) {
            Ok(Admission::Prewarm(pending)) => pending,
            Ok(Admission::WaitForRoom) | Err(AdmitError::WaitingForRoom { .. }) => return false,
            Err(error) => panic!("a well-ordered offer was refused: {error}"),
        };
        assert!(pending.batch().keys().len() <= self.scenario.capacity);
        let admitted: Vec<Record> = records.drain(..pending.admitted_records()).collect();
        if records.is_empty() {
            self.arrivals.pop_front();
        }
        let states = pending
            .keys_to_read()
            .iter()
            .map(|key| self.ledger.get(key).cloned())
            .collect();
        let batch = self
            .registrar
            .complete_prewarm(pending, states)
            .expect("the multi-get answers every key");
        self.outstanding.push_back((batch, admitted));
        true
    }

    fn evaluate_oldest(&mut self) {
        let Some((batch, records)) = self.outstanding.pop_front() else {
            return;
        };
        let partition = batch.partition();
        let writes = evaluate(
            self.scenario,
            partition,
            &records,
            &self.registrar,
            &mut self.outputs,
        );
        let flat: Vec<EntityWriteAt<'_>> = writes
            .iter()
            .flat_map(|(_, record_writes)| record_writes)
            .map(|(position, key, state)| EntityWriteAt {
                position: *position,
                key,
                state,
            })
            .collect();
        for write in &flat {
            self.latest.insert(write.key.clone(), write.state.to_vec());
        }
        self.registrar
            .apply_batch_writes(batch, flat)
            .expect("the batch's own writes apply");
        let queue = self.uncommitted.entry(partition).or_default();
        for (offset, record_writes) in writes {
            let states = record_writes
                .into_iter()
                .map(|(_, key, state)| (key, state))
                .collect();
            queue.push_back((offset, states));
        }
    }

    /// One synced group commit of the first `records` uncommitted records
    /// of `partition`, then the Registrar hears it is durable.
    fn commit(&mut self, partition: Partition, records: usize) {
        let queue = self.uncommitted.entry(partition).or_default();
        let count = records.min(queue.len());
        if count == 0 {
            return;
        }
        let mut through = Offset::MIN;
        for (offset, states) in queue.drain(..count) {
            self.ledger.extend(states);
            through = offset;
        }
        let before = self
            .registrar
            .applied_offset(partition)
            .expect("known partition");
        let outcome = self
            .registrar
            .on_durable(partition, through)
            .expect("evaluated");
        assert!(through > before);
        assert_eq!(
            outcome.advanced.map(|advanced| advanced.through_offset),
            Some(through)
        );
        self.durable_through.insert(partition, through);
    }

    fn commit_everything(&mut self) {
        for partition in 0..self.scenario.partitions {
            self.commit(partition, usize::MAX);
        }
    }

    fn check(&self) {
        self.registrar.assert_invariants();
        let stats = self.registrar.cache_stats();
        assert!(stats.entries <= stats.capacity, "never over capacity");
        for (&partition, &through) in &self.durable_through {
            assert_eq!(
                self.registrar.applied_offset(partition),
                Some(through),
                "watermark = durable"
            );
        }
        for key in universe() {
            if self.registrar.cache_entry(&key).is_none() {
                assert_eq!(
                    self.ledger.get(&key),
                    self.latest.get(&key),
                    "uncached {key} is durable"
                );
            }
        }
    }

    fn run(mut self) -> (Outputs, States) {
        for (step, &action) in self.scenario.schedule.iter().enumerate() {
            match action % 4 {
                0 | 1 if self.outstanding.len() < 3 => {
                    self.admit();
                }
                0..=2 => self.evaluate_oldest(),
                _ => {
                    let partition = (step as u32) % self.scenario.partitions;
                    self.commit(partition, usize::from(action / 4) % 4 + 1);
                }
            }
            self.check();
        }
        while !self.arrivals.is_empty() || !self.outstanding.is_empty() {
            if !self.outstanding.is_empty() {
                self.evaluate_oldest();
            } else if !self.admit() {
                let uncommitted: usize = self.uncommitted.values().map(VecDeque::len).sum();
                assert!(uncommitted > 0, "a batch waits only while a commit is due");
                self.commit_everything();
            }
            self.check();
        }
        self.commit_everything();
        self.check();
        (self.outputs, self.ledger)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever the capacity (at least the biggest record's keys), the
    /// splits, the waits and the commit timing, every output equals
    /// sequential evaluation on an unbounded map, and so does the Ledger.
    ///
    /// covers: registrar.CacheInvisibleInOutputs, registrar.CacheNeverOverCapacity, registrar.PrewarmedBatchFitsCache, registrar.NoUnflushedWriteOutsideCache, registrar.WatermarkMeansDurable, registrar.ReadYourWritesFromCache, registrar.SplitBatchToFitCache, registrar.RetryWaitingBatchWhenEntriesClean
    #[test]
    fn the_cache_is_invisible_in_outputs(scenario in scenario()) {
        let (expected_outputs, expected_states) = reference(&scenario);
        let (outputs, ledger) = Pipeline::new(&scenario).run();
        prop_assert_eq!(outputs, expected_outputs);
        prop_assert_eq!(ledger, expected_states);
    }

    /// Durable reports in any order, stale or ahead of evaluation: the
    /// watermark only moves up, to the highest durable offset reported.
    ///
    /// covers: registrar.WatermarkNeverDecreases, registrar.AdvanceWatermarkAfterDurableCommit
    #[test]
    fn the_watermark_never_decreases(
        start in -1..5i64,
        steps in prop::collection::vec((0..2u32, any::<bool>(), 0..8i64), 1..60),
    ) {
        let loaded = [0, 1].map(|partition| LoadedWatermark { partition, applied_offset: start });
        let config = RegistrarConfig { max_cached_entities: 2, max_pack_commands: 1, max_keys_per_command: 2 };
        let mut registrar = Registrar::new(config, &loaded).expect("valid start");
        let mut evaluated = [start; 2];
        for (partition, evaluate, amount) in steps {
            let slot = partition as usize;
            let before = registrar.applied_offset(partition).expect("known");
            if evaluate {
                let records: Vec<RecordKeys> = (1..=amount.max(1))
                    .map(|step| RecordKeys { offset: evaluated[slot] + step, keys: Vec::new() })
                    .collect();
                let Ok(Admission::Prewarm(pending)) = registrar.admit(partition, &records) else {
                    panic!("records without keys always fit");
                };
                let batch = registrar.complete_prewarm(pending, Vec::new()).expect("nothing to load");
                evaluated[slot] = batch.last_offset();
                registrar.apply_batch_writes(batch, []).expect("no writes");
            } else {
                let through = evaluated[slot] - 4 + amount;
                match registrar.on_durable(partition, through) {
                    Ok(_) => prop_assert_eq!(registrar.applied_offset(partition), Some(before.max(through))),
                    Err(_) => prop_assert!(through > evaluated[slot]),
                }
            }
            let after = registrar.applied_offset(partition).expect("known");
            prop_assert!(after >= before);
            registrar.assert_invariants();
        }
    }
}
