use domain::inventory::{InventoryCommand, receive, ship, stock_key, transfer};
use proptest::prelude::*;
use prost::Message;
use protocol::records::{CommandPack, PACK_VERSION, Submission};

use super::*;

const PARTITION: Partition = 0;

fn pack(submissions: &[(&str, &InventoryCommand)]) -> Vec<u8> {
    CommandPack {
        version: PACK_VERSION,
        submissions: submissions
            .iter()
            .map(|(key, command)| Submission {
                idempotency_key: (*key).to_owned(),
                command: command.encode(),
            })
            .collect(),
    }
    .encode_to_vec()
}

fn record(offset: Offset, payload: Vec<u8>) -> InputRecord {
    (offset, 1_000 + offset * 10, Some(payload))
}

fn text(envelope: &[u8]) -> &str {
    std::str::from_utf8(envelope).expect("envelopes are JSON text")
}

fn single_output(sealed: &SealedOutputs) -> &[u8] {
    assert_eq!(sealed.outputs.len(), 1, "one command per record here");
    assert_eq!(
        sealed.digest,
        protocol::envelope::record_digest(&sealed.outputs)
    );
    &sealed.outputs[0]
}

#[test]
fn batch_outcomes_cover_every_kind_of_answer() {
    let dir = tempfile::tempdir().expect("temp dir");
    let received = receive("w1", "sku-a", 10);
    let shipped = ship("w1", "sku-a", 3);
    let garbage = vec![0xff, 0xff, 0xff];
    let first_batch = vec![
        record(0, pack(&[("k1", &received)])),
        record(1, pack(&[("k2", &shipped)])),
        // The same command under the same key, in the same batch.
        record(2, pack(&[("k1", &received)])),
        record(3, pack(&[("k1", &ship("w1", "sku-a", 5))])),
        record(4, garbage),
        record(5, pack(&[("k3", &ship("w1", "sku-a", 100))])),
    ];
    let mut pipeline = Pipeline::open(dir.path(), 1).expect("open");
    assert_eq!(pipeline.applied_offset(PARTITION), Some(-1));
    let sealed = pipeline.process(PARTITION, &first_batch).expect("process");
    assert_eq!(
        sealed.iter().map(|s| s.offset).collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4, 5]
    );
    let outputs: Vec<&[u8]> = sealed.iter().map(single_output).collect();
    assert!(text(outputs[0]).contains(r#""verdict":"accepted""#));
    assert!(text(outputs[1]).contains(r#""verdict":"accepted""#));
    assert_eq!(
        outputs[2], outputs[0],
        "an in-batch duplicate copies the original"
    );
    assert!(text(outputs[3]).contains(r#""verdict":"rejected""#));
    assert!(text(outputs[3]).contains(warden::KEY_REUSED_REASON));
    assert!(text(outputs[4]).contains(r#""verdict":"dead_lettered""#));
    assert!(text(outputs[5]).contains(r#""verdict":"rejected""#));
    assert!(text(outputs[5]).contains("insufficient_stock"));
    assert_eq!(pipeline.applied_offset(PARTITION), Some(5));

    // A duplicate in a later batch gets the stored envelope from memory ...
    let later = pipeline
        .process(PARTITION, &[record(6, pack(&[("k1", &received)]))])
        .expect("process");
    assert_eq!(single_output(&later[0]), outputs[0]);

    // ... and after a restart, from the Ledger.
    drop(pipeline);
    let mut reopened = Pipeline::open(dir.path(), 1).expect("reopen");
    assert_eq!(reopened.applied_offset(PARTITION), Some(6));
    let after_restart = reopened
        .process(PARTITION, &[record(7, pack(&[("k2", &shipped)]))])
        .expect("process");
    assert_eq!(single_output(&after_restart[0]), outputs[1]);

    let stock = reopened
        .reader()
        .entities(&[stock_key("w1", "sku-a")])
        .expect("read");
    assert!(stock[0].is_some(), "the accepted commands wrote the stock");
    assert!(matches!(
        reopened.process(PARTITION, &[record(7, pack(&[("k9", &received)]))]),
        Err(PipelineError::OffsetNotAfter { .. })
    ));
}

const LOG_RECORDS: i64 = 30;
const WAREHOUSES: [&str; 2] = ["w1", "w2"];
const SKUS: [&str; 2] = ["sku-a", "sku-b"];

/// A log with accepted and rejected commands, packs of two, duplicates
/// (some in reach of one batch), reused keys, keys reused after their
/// entry expired (records 50 s apart, keys cycling every 9 records, a
/// 10 min TTL), late timestamps, an undecodable record and a tombstone.
fn log() -> Vec<InputRecord> {
    (0..LOG_RECORDS)
        .map(|offset| {
            let i = usize::try_from(offset).expect("small offsets");
            // Every sixth record carries an older timestamp: stream time
            // (the prefix maximum, kept in the watermark) must not go back.
            let timestamp = 1_000_000 + offset * 50_000 - if i % 6 == 5 { 400_000 } else { 0 };
            if offset == 11 {
                return (offset, timestamp, Some(b"not a pack".to_vec()));
            }
            if offset == 17 {
                return (offset, timestamp, None);
            }
            // Every record at i % 7 == 3 repeats the one before it.
            let source = if i % 7 == 3 { i - 1 } else { i };
            let warehouse = WAREHOUSES[source % 2];
            let sku = SKUS[(source / 2) % 2];
            let quantity = i64::try_from(source % 5 + 1).expect("small") * 3;
            let command = match source % 4 {
                0 | 1 => receive(warehouse, sku, quantity),
                2 => ship(warehouse, sku, quantity),
                _ => transfer(warehouse, WAREHOUSES[(source + 1) % 2], sku, quantity),
            };
            let key = format!("k{}", source % 9);
            let payload = if source % 5 == 4 {
                let extra = receive(warehouse, sku, 1);
                pack(&[(&key, &command), (&format!("x{source}"), &extra)])
            } else {
                pack(&[(&key, &command)])
            };
            (offset, timestamp, Some(payload))
        })
        .collect()
}

/// Runs `records` through `pipeline` in batches of the given sizes (cycled).
fn run_batches(
    pipeline: &mut Pipeline,
    records: &[InputRecord],
    sizes: &[usize],
) -> Vec<SealedOutputs> {
    let mut sealed = Vec::new();
    let mut rest = records;
    for &size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (batch, after) = rest.split_at(size.min(rest.len()));
        sealed.extend(pipeline.process(PARTITION, batch).expect("process"));
        rest = after;
    }
    sealed
}

fn stock_levels(pipeline: &Pipeline) -> Vec<Option<Vec<u8>>> {
    let keys: Vec<_> = WAREHOUSES
        .iter()
        .flat_map(|warehouse| SKUS.iter().map(|sku| stock_key(warehouse, sku)))
        .collect();
    pipeline.reader().entities(&keys).expect("read")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// covers: recovery.ReplayFromAnyWatermarkIsIdentical
    #[test]
    fn replay_from_any_watermark_is_identical(
        reference_sizes in prop::collection::vec(1usize..=8, 1..10),
        restarted_sizes in prop::collection::vec(1usize..=8, 1..10),
        stop_after in 0usize..=30,
    ) {
        let records = log();
        let reference_dir = tempfile::tempdir().expect("temp dir");
        let mut reference = Pipeline::open(reference_dir.path(), 1).expect("open");
        let expected = run_batches(&mut reference, &records, &reference_sizes);
        prop_assert_eq!(expected.len(), records.len());

        let restarted_dir = tempfile::tempdir().expect("temp dir");
        let mut before = Pipeline::open(restarted_dir.path(), 1).expect("open");
        let mut sealed = run_batches(&mut before, &records[..stop_after], &restarted_sizes);
        drop(before);
        let mut after = Pipeline::open(restarted_dir.path(), 1).expect("reopen");
        let resume = after.applied_offset(PARTITION).expect("known partition") + 1;
        prop_assert_eq!(resume, i64::try_from(stop_after).expect("small"));
        let rest = &records[usize::try_from(resume).expect("non-negative")..];
        sealed.extend(run_batches(&mut after, rest, &restarted_sizes));

        prop_assert_eq!(&sealed, &expected);
        let levels = stock_levels(&reference);
        prop_assert!(levels.iter().all(Option::is_some), "every stock was written");
        prop_assert_eq!(stock_levels(&after), levels);
    }
}

#[test]
fn the_log_exercises_every_kind_of_answer() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut pipeline = Pipeline::open(dir.path(), 1).expect("open");
    let sealed = run_batches(&mut pipeline, &log(), &[30]);
    let all: Vec<&str> = sealed
        .iter()
        .flat_map(|s| s.outputs.iter().map(|output| text(output)))
        .collect();
    for needle in [
        r#""verdict":"accepted""#,
        "insufficient_stock",
        warden::KEY_REUSED_REASON,
        r#""verdict":"dead_lettered""#,
    ] {
        assert!(all.iter().any(|output| output.contains(needle)), "{needle}");
    }
    // Records 3 and 10 repeat 2 and 9: a fresh command's duplicate gets its
    // envelope; a reused key's rejection names each command's own position.
    assert_eq!(sealed[3].outputs, sealed[2].outputs);
    assert_eq!(sealed[10].outputs.len(), 2);
    assert_eq!(sealed[10].outputs[1], sealed[9].outputs[1]);
    assert!(text(&sealed[9].outputs[0]).contains(warden::KEY_REUSED_REASON));
    assert_ne!(sealed[10].outputs[0], sealed[9].outputs[0]);
}
