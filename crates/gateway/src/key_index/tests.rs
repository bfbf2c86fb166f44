use bytes::Bytes;
use protocol::envelope::EnvelopeVerdict;

use super::*;

const TTL: i64 = 1_000;

fn answer(index: u32, key: &str, body: &str) -> FirstAnswer {
    FirstAnswer {
        index,
        key: key.to_owned(),
        outcome: AgreedOutcome {
            verdict: EnvelopeVerdict::Accepted,
            bytes: Bytes::copy_from_slice(body.as_bytes()),
        },
    }
}

fn found(index: &KeyIndex, key: &str, partition: Option<Partition>) -> Option<String> {
    match index.lookup(key, partition) {
        CommandLookup::Found(outcome) => {
            Some(String::from_utf8(outcome.bytes.to_vec()).expect("UTF-8"))
        }
        _ => None,
    }
}

/// covers: gateway.CommandLookupReturnsAgreedOutcome, gateway.CommandLookupUnknownKey
#[test]
fn a_key_answers_with_its_first_owners_outcome() {
    let mut index = KeyIndex::new(16, TTL);
    assert_eq!(index.lookup("k", None), CommandLookup::Unknown);
    index.record(0, 100, vec![answer(0, "k", "first")]);
    index.record(0, 200, vec![answer(3, "k", "later")]);
    assert_eq!(found(&index, "k", None).as_deref(), Some("first"));
    assert_eq!(found(&index, "k", Some(0)).as_deref(), Some("first"));
    assert_eq!(index.lookup("k", Some(1)), CommandLookup::Unknown);
    assert_eq!(index.lookup("other", None), CommandLookup::Unknown);
}

/// covers: gateway.CommandLookupAmbiguousKey
#[test]
fn a_key_owned_in_two_partitions_is_ambiguous_until_a_partition_is_named() {
    let mut index = KeyIndex::new(16, TTL);
    index.record(2, 100, vec![answer(0, "k", "on two")]);
    index.record(0, 100, vec![answer(0, "k", "on zero")]);
    assert_eq!(
        index.lookup("k", None),
        CommandLookup::Ambiguous {
            partitions: vec![0, 2]
        }
    );
    assert_eq!(found(&index, "k", Some(2)).as_deref(), Some("on two"));
}

/// covers: gateway.KeyIndexUpdatedFromOutcome
#[test]
fn entries_expire_with_the_ttl_in_their_partitions_stream_time_and_can_be_owned_again() {
    let mut index = KeyIndex::new(16, TTL);
    index.record(0, 100, vec![answer(0, "k", "first")]);
    index.record(1, 100, vec![answer(0, "elsewhere", "x")]);
    index.record(0, 100 + TTL - 1, vec![answer(0, "k", "too early")]);
    assert_eq!(found(&index, "k", None).as_deref(), Some("first"));
    index.record(0, 100 + TTL, vec![answer(0, "k", "after expiry")]);
    assert_eq!(found(&index, "k", None).as_deref(), Some("after expiry"));
    assert_eq!(
        found(&index, "elsewhere", None).as_deref(),
        Some("x"),
        "another partition's stream time is its own"
    );
    index.record(0, 100 + 3 * TTL, vec![]);
    assert_eq!(index.lookup("k", None), CommandLookup::Unknown);
    assert_eq!(index.len(), 1);
}

/// covers: gateway.KeyIndexEvictsOldestWhenFull
#[test]
fn a_full_index_forgets_the_oldest_entry_across_partitions() {
    let mut index = KeyIndex::new(3, TTL);
    index.record(1, 10, vec![answer(0, "a", "a")]);
    index.record(0, 20, vec![answer(0, "b", "b"), answer(1, "c", "c")]);
    assert_eq!(index.len(), 3);
    index.record(0, 30, vec![answer(0, "d", "d")]);
    assert_eq!(index.len(), 3);
    assert_eq!(index.lookup("a", None), CommandLookup::Unknown);
    index.record(1, 40, vec![answer(0, "e", "e")]);
    assert_eq!(index.lookup("b", None), CommandLookup::Unknown);
    for key in ["c", "d", "e"] {
        assert_eq!(found(&index, key, None).as_deref(), Some(key));
    }
}

/// The owners' map is allocated at its bound: filling the index across
/// partitions, evicting and expiring through many more keys never
/// grows it (a rehash of a grown map stalled every instance at once).
#[test]
fn the_index_never_grows_past_its_first_allocation() {
    let bound = 1_000;
    let mut index = KeyIndex::new(bound, TTL);
    let allocated = index.capacity();
    assert!(allocated >= bound);
    for n in 0..10 * bound {
        let stamp = i64::try_from(n).expect("small") / 4;
        let partition = u32::try_from(n % 3).expect("small");
        index.record(partition, stamp, vec![answer(0, &format!("key-{n}"), "x")]);
        assert!(index.capacity() <= allocated, "grew at key {n}");
    }
    assert!(index.len() <= bound);
}
