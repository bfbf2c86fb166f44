//! One test per rule of `spec/warden.allium`; the general properties are in
//! `tests/properties.rs`.

use protocol::envelope::{EnvelopeVerdict, encode_envelope};
use protocol::position::{CommandPosition, Offset, StreamTime};

use crate::*;

const TTL: i64 = 1_000;
const RECEIVE: &[u8] = b"receive w1 sku-1 5";
const SHIP: &[u8] = b"ship w1 sku-1 5";

fn config() -> WardenConfig {
    WardenConfig {
        idempotency_ttl_millis: TTL,
        ..WardenConfig::default()
    }
}

fn warden() -> Warden {
    Warden::new(config()).expect("valid config")
}

fn at(offset: Offset, index: u32) -> CommandPosition {
    CommandPosition {
        partition: 0,
        offset,
        index,
    }
}

fn command<'a>(
    position: CommandPosition,
    key: &'a str,
    bytes: &'a [u8],
    millis: i64,
) -> IncomingCommand<'a> {
    IncomingCommand {
        position,
        idempotency_key: key,
        command: bytes,
        stream_time: StreamTime(millis),
    }
}

fn envelope(position: CommandPosition, key: &str) -> Vec<u8> {
    encode_envelope(
        position,
        Some(key),
        EnvelopeVerdict::Accepted,
        None,
        format!(r#"{{"at":{}}}"#, position.offset).as_bytes(),
    )
}

/// Plans a fetch for `keys` and answers it from an empty Ledger.
fn fetch_empty(warden: &mut Warden, partition: u32, keys: &[&str]) {
    let plan = warden.plan_fetch(partition, keys.iter().copied());
    let answers = plan
        .into_iter()
        .map(|key| FetchedEntry { key, entry: None })
        .collect();
    warden.accept_fetched(partition, answers).expect("fetch");
}

/// Classifies a fresh command and records its envelope.
fn answer_fresh(warden: &mut Warden, incoming: &IncomingCommand<'_>) -> Vec<u8> {
    assert_eq!(warden.classify(incoming), Ok(Classification::Fresh));
    let response = envelope(incoming.position, incoming.idempotency_key);
    assert_eq!(
        warden.record_response(incoming.position, response.clone()),
        Ok(vec![])
    );
    response
}

fn stored(key: &str, position: CommandPosition, first_seen: i64, bytes: &[u8]) -> StoredEntry {
    StoredEntry {
        partition: position.partition,
        key: key.to_owned(),
        fingerprint: command_fingerprint(bytes),
        first_position: position,
        first_seen: StreamTime(first_seen),
        response: envelope(position, key),
    }
}

/// covers: warden.ClassifyFreshCommand, warden.FreshCommandOwnsItsEntry
#[test]
fn a_new_key_is_fresh_and_its_entry_exists_from_classification_on() {
    let mut warden = warden();
    fetch_empty(&mut warden, 0, &["k"]);
    let first = command(at(5, 2), "k", RECEIVE, 100);
    assert_eq!(warden.classify(&first), Ok(Classification::Fresh));
    let entry = warden.entry(0, "k").expect("created at classification");
    assert_eq!(entry.status, EntryStatus::AwaitingResponse);
    assert_eq!(entry.first_position, at(5, 2));
    assert_eq!(entry.first_seen, StreamTime(100));
    assert_eq!(*entry.fingerprint, command_fingerprint(RECEIVE));
    assert_eq!(entry.response, None);
}

/// covers: warden.FreshCommandReplacesExpiredEntry, warden.ExpiryOnStreamTimeOnly
#[test]
fn an_expired_entry_is_replaced_whatever_the_fingerprint() {
    let mut warden = warden();
    fetch_empty(&mut warden, 0, &["k"]);
    let original = answer_fresh(&mut warden, &command(at(1, 0), "k", RECEIVE, 100));
    // Live until first_seen + ttl, exclusive.
    assert_eq!(
        warden.classify(&command(at(2, 0), "k", RECEIVE, 100 + TTL - 1)),
        Ok(Classification::Duplicate { response: original })
    );
    assert_eq!(
        warden.classify(&command(at(3, 0), "k", SHIP, 100 + TTL)),
        Ok(Classification::Fresh)
    );
    let entry = warden.entry(0, "k").expect("replaced");
    assert_eq!(entry.first_position, at(3, 0));
    assert_eq!(entry.first_seen, StreamTime(100 + TTL));
    assert_eq!(*entry.fingerprint, command_fingerprint(SHIP));
    // The purge bound agrees with classification: first_seen 100 is expired
    // exactly from stream time 100 + TTL on.
    assert_eq!(warden.expiry_cutoff(StreamTime(100 + TTL)), StreamTime(100));
    assert_eq!(
        warden.expiry_cutoff(StreamTime(100 + TTL - 1)),
        StreamTime(99)
    );
}

/// covers: warden.AnswerDuplicateFromStoredResponse, warden.DuplicateOutputEqualsStoredResponse
#[test]
fn a_duplicate_gets_the_stored_bytes_from_memory_or_from_the_ledger() {
    let mut warden = warden();
    fetch_empty(&mut warden, 0, &["k"]);
    let original = answer_fresh(&mut warden, &command(at(1, 0), "k", RECEIVE, 100));
    assert_eq!(
        warden.classify(&command(at(2, 0), "k", RECEIVE, 150)),
        Ok(Classification::Duplicate {
            response: original.clone()
        })
    );

    // Another instance that restarted finds it in its Ledger.
    let mut restarted = self::warden();
    let row = stored("k", at(1, 0), 100, RECEIVE);
    assert_eq!(restarted.plan_fetch(0, ["k"]), vec!["k".to_owned()]);
    restarted
        .accept_fetched(
            0,
            vec![FetchedEntry {
                key: "k".into(),
                entry: Some(row),
            }],
        )
        .expect("fetch");
    assert_eq!(
        restarted.classify(&command(at(2, 0), "k", RECEIVE, 150)),
        Ok(Classification::Duplicate { response: original })
    );
}

/// covers: warden.DuplicateWithinBatchWaitsForFirstAnswer, warden.AnswerWaitingDuplicates
#[test]
fn duplicates_of_an_unanswered_command_wait_and_are_answered_in_log_order() {
    let mut warden = warden();
    fetch_empty(&mut warden, 0, &["k"]);
    assert_eq!(
        warden.classify(&command(at(1, 0), "k", RECEIVE, 100)),
        Ok(Classification::Fresh)
    );
    for position in [at(1, 1), at(2, 0)] {
        assert_eq!(
            warden.classify(&command(position, "k", RECEIVE, 100)),
            Ok(Classification::DuplicateAwaitingAnswer {
                first_position: at(1, 0)
            })
        );
    }
    let response = envelope(at(1, 0), "k");
    assert_eq!(
        warden.record_response(at(1, 0), response.clone()),
        Ok(vec![
            ReleasedAnswer {
                position: at(1, 1),
                response: response.clone()
            },
            ReleasedAnswer {
                position: at(2, 0),
                response: response.clone()
            },
        ])
    );
    assert_eq!(
        warden.classify(&command(at(3, 0), "k", RECEIVE, 100)),
        Ok(Classification::Duplicate { response })
    );
}

/// covers: warden.RejectReusedKeyWithDifferentCommand, warden.ReusedKeyIsRejected, warden.ClassificationMatchesFingerprint
#[test]
fn a_reused_key_is_rejected_without_touching_the_entry() {
    let mut warden = warden();
    fetch_empty(&mut warden, 0, &["k"]);
    assert_eq!(
        warden.classify(&command(at(1, 0), "k", RECEIVE, 100)),
        Ok(Classification::Fresh)
    );
    // Whatever the entry's status: awaiting ...
    let rejection = |position: CommandPosition| {
        Classification::KeyReused {
        rejection: format!(
            r#"{{"partition":0,"offset":{},"index":{},"key":"k","verdict":"rejected","reason":"idempotency_key_reused"}}"#,
            position.offset, position.index
        )
        .into_bytes(),
    }
    };
    assert_eq!(
        warden.classify(&command(at(1, 1), "k", SHIP, 100)),
        Ok(rejection(at(1, 1)))
    );
    // ... or recorded; and again while the entry lives.
    let original = envelope(at(1, 0), "k");
    assert_eq!(
        warden.record_response(at(1, 0), original.clone()),
        Ok(vec![])
    );
    assert_eq!(
        warden.classify(&command(at(2, 0), "k", SHIP, 150)),
        Ok(rejection(at(2, 0)))
    );
    let entry = warden.entry(0, "k").expect("kept");
    assert_eq!(entry.first_position, at(1, 0));
    assert_eq!(*entry.fingerprint, command_fingerprint(RECEIVE));
    assert_eq!(entry.response, Some(original.as_slice()));
}

/// covers: warden.RecordResponseAfterEvaluation, warden.ResponseNeverChanges
#[test]
fn a_response_is_recorded_once_for_a_fresh_command_only() {
    let mut warden = warden();
    fetch_empty(&mut warden, 0, &["k"]);
    assert_eq!(
        warden.classify(&command(at(1, 0), "k", RECEIVE, 100)),
        Ok(Classification::Fresh)
    );
    assert_eq!(
        warden.record_response(at(1, 0), Vec::new()),
        Err(WardenError::EmptyResponse(at(1, 0)))
    );
    assert_eq!(
        warden.record_response(at(9, 0), envelope(at(9, 0), "k")),
        Err(WardenError::UnknownPosition(at(9, 0)))
    );
    // A domain rejection is recorded like an acceptance.
    let rejected = encode_envelope(
        at(1, 0),
        Some("k"),
        EnvelopeVerdict::Rejected,
        Some("insufficient_stock"),
        &[],
    );
    assert_eq!(
        warden.record_response(at(1, 0), rejected.clone()),
        Ok(vec![])
    );
    assert_eq!(
        warden.record_response(at(1, 0), envelope(at(1, 0), "k")),
        Err(WardenError::AlreadyRecorded(at(1, 0)))
    );
    let entry = warden.entry(0, "k").expect("recorded");
    assert_eq!(entry.status, EntryStatus::Recorded);
    assert_eq!(entry.response, Some(rejected.as_slice()));
}

/// covers: warden.WriteEntriesInStateWriteBatch, warden.AtMostOneEntryPerKey
#[test]
fn a_commit_writes_the_last_entry_per_key_of_its_records_only() {
    let mut warden = warden();
    fetch_empty(&mut warden, 0, &["a", "b", "c"]);
    let first_a = answer_fresh(&mut warden, &command(at(1, 0), "a", RECEIVE, 100));
    answer_fresh(&mut warden, &command(at(1, 1), "b", RECEIVE, 100));
    // "a" expires and is replaced within the same commit.
    let second_a = answer_fresh(&mut warden, &command(at(2, 0), "a", SHIP, 100 + TTL));
    assert_eq!(
        warden.classify(&command(at(3, 0), "c", RECEIVE, 100 + TTL)),
        Ok(Classification::Fresh)
    );
    let delta = warden
        .commit_delta(0, 2, StreamTime(100 + TTL), Vec::new())
        .expect("commit");
    assert_eq!(delta.through_offset, 2);
    assert_eq!(delta.purges, vec![]);
    let puts: Vec<(&str, CommandPosition, &[u8])> = delta
        .puts
        .iter()
        .map(|put| {
            (
                put.entry.key.as_str(),
                put.entry.first_position,
                put.entry.response.as_slice(),
            )
        })
        .collect();
    assert_ne!(first_a, second_a);
    assert_eq!(
        puts,
        vec![
            ("a", at(2, 0), second_a.as_slice()),
            ("b", at(1, 1), envelope(at(1, 1), "b").as_slice()),
        ]
    );
    assert!(
        delta
            .puts
            .iter()
            .all(|put| put.replaces_first_seen.is_none())
    );

    // "c" is unanswered: it cannot be committed yet.
    assert_eq!(
        warden.commit_delta(0, 3, StreamTime(100 + TTL), Vec::new()),
        Err(WardenError::ResponseMissing(at(3, 0)))
    );
    assert_eq!(
        warden.commit_delta(0, 2, StreamTime(100 + TTL), Vec::new()),
        Err(WardenError::CommitNotAfterPrevious {
            partition: 0,
            through_offset: 2,
            previous: 2
        })
    );
}

/// covers: warden.WriteEntriesInStateWriteBatch
#[test]
fn a_put_names_the_row_it_replaces_so_the_expiry_index_stays_exact() {
    let mut warden = warden();
    warden.plan_fetch(0, ["k"]);
    warden
        .accept_fetched(
            0,
            vec![FetchedEntry {
                key: "k".into(),
                entry: Some(stored("k", at(1, 0), 100, RECEIVE)),
            }],
        )
        .expect("fetch");
    answer_fresh(&mut warden, &command(at(7, 0), "k", SHIP, 100 + TTL));
    let delta = warden
        .commit_delta(0, 7, StreamTime(100 + TTL), Vec::new())
        .expect("commit");
    assert_eq!(delta.puts.len(), 1);
    assert_eq!(delta.puts[0].replaces_first_seen, Some(StreamTime(100)));
    answer_fresh(&mut warden, &command(at(8, 0), "k", RECEIVE, 100 + 2 * TTL));
    let delta = warden
        .commit_delta(0, 8, StreamTime(100 + 2 * TTL), Vec::new())
        .expect("commit");
    assert_eq!(
        delta.puts[0].replaces_first_seen,
        Some(StreamTime(100 + TTL))
    );
}

/// covers: warden.EntriesPerCommitBounded
#[test]
fn a_commit_above_the_entry_bound_is_refused_and_changes_nothing() {
    let mut warden = Warden::new(WardenConfig {
        max_entries_per_commit: 2,
        ..config()
    })
    .expect("valid config");
    fetch_empty(&mut warden, 0, &["a", "b", "c"]);
    for (index, key) in (0..).zip(["a", "b", "c"]) {
        answer_fresh(&mut warden, &command(at(1, index), key, RECEIVE, 100));
    }
    assert_eq!(
        warden.commit_delta(0, 1, StreamTime(100), Vec::new()),
        Err(WardenError::TooManyEntries {
            partition: 0,
            entries: 3,
            bound: 2
        })
    );
    let bigger = WardenConfig {
        max_entries_per_commit: 3,
        ..config()
    };
    let mut fits = Warden::new(bigger).expect("valid config");
    fetch_empty(&mut fits, 0, &["a", "b", "c"]);
    for (index, key) in (0..).zip(["a", "b", "c"]) {
        answer_fresh(&mut fits, &command(at(1, index), key, RECEIVE, 100));
    }
    let delta = fits.commit_delta(0, 1, StreamTime(100), Vec::new());
    assert_eq!(delta.map(|delta| delta.puts.len()), Ok(3));
    // The refused commit left every entry in place.
    assert_eq!(
        warden.entry(0, "c").map(|entry| entry.status),
        Some(EntryStatus::Recorded)
    );
}

fn candidate(first_seen: i64, key: &str) -> ExpiryCandidate {
    ExpiryCandidate {
        first_seen: StreamTime(first_seen),
        key: key.to_owned(),
    }
}

/// covers: warden.PurgeExpiredEntriesAtGroupCommit
#[test]
fn only_candidates_expired_at_the_commit_and_still_current_are_purged() {
    let mut warden = warden();
    // "kept" was replaced after expiring: its old index row is stale.
    warden.plan_fetch(0, ["kept"]);
    warden
        .accept_fetched(
            0,
            vec![FetchedEntry {
                key: "kept".into(),
                entry: Some(stored("kept", at(1, 0), 10, RECEIVE)),
            }],
        )
        .expect("fetch");
    answer_fresh(&mut warden, &command(at(4, 0), "kept", RECEIVE, 2_000));
    let delta = warden
        .commit_delta(
            0,
            4,
            StreamTime(2_000),
            vec![
                // Out of order on purpose: oldest first is the core's job.
                candidate(1_500, "live"),
                candidate(20, "gone"),
                candidate(10, "kept"),
                candidate(1_000, "edge"),
            ],
        )
        .expect("commit");
    assert_eq!(
        delta.purges,
        vec![
            PurgedEntry {
                key: "gone".into(),
                first_seen: StreamTime(20)
            },
            PurgedEntry {
                key: "edge".into(),
                first_seen: StreamTime(1_000)
            },
        ]
    );
    // The replacing put deletes the stale index row instead.
    assert_eq!(delta.puts[0].replaces_first_seen, Some(StreamTime(10)));
}

/// covers: warden.PurgesPerCommitBounded
#[test]
fn purges_per_commit_are_bounded_and_the_oldest_go_first() {
    let mut warden = Warden::new(WardenConfig {
        max_purges_per_commit: 2,
        ..config()
    })
    .expect("valid config");
    let candidates = vec![
        candidate(30, "c"),
        candidate(10, "b"),
        candidate(10, "a"),
        candidate(20, "d"),
    ];
    let delta = warden
        .commit_delta(0, 0, StreamTime(5_000), candidates)
        .expect("commit");
    let purged: Vec<&str> = delta.purges.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(purged, vec!["a", "b"]);
    let next = warden
        .commit_delta(
            0,
            1,
            StreamTime(5_000),
            vec![candidate(20, "d"), candidate(30, "c")],
        )
        .expect("commit");
    assert_eq!(next.purges.len(), 2);
}

/// covers: warden.EntriesBecomeDurableWithTheirCommit
#[test]
fn entries_become_durable_with_their_commit_only() {
    let mut warden = warden();
    fetch_empty(&mut warden, 0, &["a", "b"]);
    answer_fresh(&mut warden, &command(at(1, 0), "a", RECEIVE, 100));
    answer_fresh(&mut warden, &command(at(2, 0), "b", RECEIVE, 100));
    warden
        .commit_delta(0, 1, StreamTime(100), Vec::new())
        .expect("commit");
    let status = |warden: &Warden, key| warden.entry(0, key).map(|entry| entry.status);
    assert_eq!(status(&warden, "a"), Some(EntryStatus::Recorded));
    assert_eq!(
        warden.on_durable(0, 2),
        Err(WardenError::DurableNotACommit {
            partition: 0,
            through_offset: 2
        })
    );
    assert_eq!(warden.on_durable(0, 1), Ok(()));
    assert_eq!(status(&warden, "a"), Some(EntryStatus::Durable));
    assert_eq!(status(&warden, "b"), Some(EntryStatus::Recorded));

    // Durable entries leave memory at the next plan that does not need them;
    // unanswered or uncommitted ones never do.
    assert_eq!(warden.plan_fetch(0, ["c"]), vec!["c".to_owned()]);
    assert_eq!(status(&warden, "a"), None);
    assert_eq!(status(&warden, "b"), Some(EntryStatus::Recorded));
    assert_eq!(warden.plan_fetch(0, ["a", "b"]), vec!["a".to_owned()]);
}

/// covers: warden.PurgeTimingInvisible
#[test]
fn an_expired_entry_not_yet_purged_is_treated_like_a_missing_one() {
    let expired_row = stored("k", at(1, 0), 100, RECEIVE);
    let mut outputs = Vec::new();
    for row in [Some(expired_row), None] {
        let mut warden = self::warden();
        warden.plan_fetch(0, ["k"]);
        warden
            .accept_fetched(
                0,
                vec![FetchedEntry {
                    key: "k".into(),
                    entry: row,
                }],
            )
            .expect("fetch");
        outputs.push(warden.classify(&command(at(9, 0), "k", SHIP, 100 + TTL)));
    }
    assert_eq!(outputs, vec![Ok(Classification::Fresh); 2]);
}

/// covers: warden.AnswerWaitingDuplicates
#[test]
fn duplicates_waiting_on_an_entry_replaced_meanwhile_still_get_its_answer() {
    let mut warden = warden();
    fetch_empty(&mut warden, 0, &["k"]);
    // One batch spanning more than the TTL of stream time.
    assert_eq!(
        warden.classify(&command(at(1, 0), "k", RECEIVE, 100)),
        Ok(Classification::Fresh)
    );
    assert_eq!(
        warden.classify(&command(at(2, 0), "k", RECEIVE, 150)),
        Ok(Classification::DuplicateAwaitingAnswer {
            first_position: at(1, 0)
        })
    );
    assert_eq!(
        warden.classify(&command(at(3, 0), "k", RECEIVE, 100 + TTL)),
        Ok(Classification::Fresh)
    );
    let first = envelope(at(1, 0), "k");
    assert_eq!(
        warden.record_response(at(1, 0), first.clone()),
        Ok(vec![ReleasedAnswer {
            position: at(2, 0),
            response: first.clone()
        }])
    );
    let second = envelope(at(3, 0), "k");
    assert_eq!(warden.record_response(at(3, 0), second.clone()), Ok(vec![]));
    // A commit between the two writes the first; the next one the second.
    let delta = warden
        .commit_delta(0, 2, StreamTime(150), Vec::new())
        .expect("commit");
    assert_eq!(delta.puts.len(), 1);
    assert_eq!(delta.puts[0].entry.response, first);
    let delta = warden
        .commit_delta(0, 3, StreamTime(100 + TTL), Vec::new())
        .expect("commit");
    assert_eq!(delta.puts[0].entry.response, second);
    assert_eq!(delta.puts[0].replaces_first_seen, Some(StreamTime(100)));
}

/// covers: warden.MatchedEntryWasLive, warden.ExpiryOnStreamTimeOnly
#[test]
fn liveness_is_judged_at_each_commands_own_stream_time() {
    let mut warden = warden();
    fetch_empty(&mut warden, 0, &["k"]);
    let original = answer_fresh(&mut warden, &command(at(1, 0), "k", RECEIVE, 100));
    // A later commit at a later stream time does not make an earlier
    // command's entry look expired, nor does it purge a live one.
    let delta = warden
        .commit_delta(0, 1, StreamTime(100 + TTL - 1), vec![candidate(100, "k")])
        .expect("commit");
    assert_eq!(delta.purges, vec![]);
    assert_eq!(
        warden.classify(&command(at(2, 0), "k", RECEIVE, 100 + TTL - 1)),
        Ok(Classification::Duplicate { response: original })
    );
}

#[test]
fn keys_are_scoped_per_partition() {
    let mut warden = warden();
    fetch_empty(&mut warden, 0, &["k"]);
    fetch_empty(&mut warden, 1, &["k"]);
    answer_fresh(&mut warden, &command(at(1, 0), "k", RECEIVE, 100));
    let elsewhere = CommandPosition {
        partition: 1,
        offset: 1,
        index: 0,
    };
    assert_eq!(
        warden.classify(&command(elsewhere, "k", SHIP, 100)),
        Ok(Classification::Fresh)
    );
}

#[test]
fn commands_out_of_the_pipelines_order_are_refused() {
    let mut warden = warden();
    assert_eq!(
        warden.classify(&command(at(1, 0), "k", RECEIVE, 100)),
        Err(WardenError::NotFetched {
            partition: 0,
            key: "k".into()
        })
    );
    fetch_empty(&mut warden, 0, &["k", "j"]);
    answer_fresh(&mut warden, &command(at(3, 0), "k", RECEIVE, 100));
    assert_eq!(
        warden.classify(&command(at(3, 0), "j", RECEIVE, 100)),
        Err(WardenError::OutOfOrder {
            position: at(3, 0),
            previous: at(3, 0)
        })
    );
    assert_eq!(
        warden.classify(&command(at(4, 0), "j", RECEIVE, 99)),
        Err(WardenError::StreamTimeWentBack {
            position: at(4, 0),
            stream_time: StreamTime(99),
            floor: StreamTime(100)
        })
    );
    warden
        .commit_delta(0, 5, StreamTime(200), Vec::new())
        .expect("commit");
    assert_eq!(
        warden.classify(&command(at(5, 0), "j", RECEIVE, 200)),
        Err(WardenError::AlreadyCommitted {
            position: at(5, 0),
            through_offset: 5
        })
    );
    // A commit's stream time is a floor too: purges judged at it must stay
    // invisible to every later command.
    assert_eq!(
        warden.classify(&command(at(6, 0), "j", RECEIVE, 150)),
        Err(WardenError::StreamTimeWentBack {
            position: at(6, 0),
            stream_time: StreamTime(150),
            floor: StreamTime(200)
        })
    );
}

#[test]
fn the_uncommitted_entries_are_bounded() {
    let mut warden = Warden::new(WardenConfig {
        max_uncommitted_entries: 1,
        ..config()
    })
    .expect("valid config");
    fetch_empty(&mut warden, 0, &["a", "b"]);
    answer_fresh(&mut warden, &command(at(1, 0), "a", RECEIVE, 100));
    assert_eq!(
        warden.classify(&command(at(2, 0), "b", RECEIVE, 100)),
        Err(WardenError::UncommittedEntriesFull {
            partition: 0,
            bound: 1
        })
    );
    // A duplicate creates no entry.
    assert!(matches!(
        warden.classify(&command(at(2, 1), "a", RECEIVE, 100)),
        Ok(Classification::Duplicate { .. })
    ));
}

#[test]
fn a_fetched_entry_of_another_key_is_refused() {
    let mut warden = warden();
    warden.plan_fetch(0, ["k"]);
    assert_eq!(
        warden.accept_fetched(
            0,
            vec![FetchedEntry {
                key: "k".into(),
                entry: Some(stored("other", at(1, 0), 100, RECEIVE)),
            }],
        ),
        Err(WardenError::FetchedEntryMismatch {
            partition: 0,
            key: "k".into()
        })
    );
}

#[test]
fn invalid_configs_are_refused() {
    let refused = |config: WardenConfig| Warden::new(config).err();
    assert_eq!(
        refused(WardenConfig {
            idempotency_ttl_millis: 0,
            ..config()
        }),
        Some(ConfigError::NonPositiveTtl)
    );
    assert_eq!(
        refused(WardenConfig {
            max_purges_per_commit: 0,
            ..config()
        }),
        Some(ConfigError::NoPurgesPerCommit)
    );
}

/// covers: warden.EntryPartitionMatchesPosition
#[test]
fn a_stored_entry_round_trips_and_corrupt_bytes_are_refused() {
    let entry = StoredEntry {
        partition: 3,
        key: "client-7".into(),
        fingerprint: command_fingerprint(RECEIVE),
        first_position: CommandPosition {
            partition: 3,
            offset: 41,
            index: 2,
        },
        first_seen: StreamTime(1_700_000_000_000),
        response: envelope(at(41, 2), "client-7"),
    };
    let bytes = entry.encode();
    assert_eq!(StoredEntry::decode(&bytes), Ok(entry.clone()));
    let decoded = StoredEntry::decode(&bytes).expect("round trip");
    assert_eq!(decoded.first_position.partition, decoded.partition);

    assert!(matches!(
        StoredEntry::decode(&bytes[..bytes.len() - 3]),
        Err(EntryDecodeError::Malformed(_))
    ));
    assert!(matches!(
        StoredEntry::decode(&[0xff, 0xff, 0xff]),
        Err(EntryDecodeError::Malformed(_))
    ));
    // An empty value decodes as defaults: version 0.
    assert_eq!(
        StoredEntry::decode(&[]),
        Err(EntryDecodeError::UnsupportedVersion(0))
    );
    // Field 1 (version) = 2 appended: the last occurrence wins.
    let mut newer = bytes.clone();
    newer.extend_from_slice(&[0x08, 0x02]);
    assert_eq!(
        StoredEntry::decode(&newer),
        Err(EntryDecodeError::UnsupportedVersion(2))
    );
    // Field 4 (fingerprint) replaced by 3 bytes.
    let mut short = bytes.clone();
    short.extend_from_slice(&[0x22, 0x03, 1, 2, 3]);
    assert_eq!(
        StoredEntry::decode(&short),
        Err(EntryDecodeError::FingerprintLength(3))
    );
    // Field 8 (response) replaced by nothing.
    let mut unanswered = bytes;
    unanswered.extend_from_slice(&[0x42, 0x00]);
    assert_eq!(
        StoredEntry::decode(&unanswered),
        Err(EntryDecodeError::EmptyResponse)
    );
}

#[test]
fn a_late_ledger_answer_never_overwrites_what_memory_holds() {
    let mut warden = warden();
    // Two plans in flight for the same key; the first answer is used, the
    // second (read before the first command's entry existed) arrives late.
    assert_eq!(warden.plan_fetch(0, ["k"]), vec!["k".to_owned()]);
    assert_eq!(warden.plan_fetch(0, ["k"]), vec!["k".to_owned()]);
    let absent = || {
        vec![FetchedEntry {
            key: "k".into(),
            entry: None,
        }]
    };
    warden.accept_fetched(0, absent()).expect("fetch");
    let original = answer_fresh(&mut warden, &command(at(1, 0), "k", RECEIVE, 100));
    warden.accept_fetched(0, absent()).expect("fetch");
    assert_eq!(
        warden.classify(&command(at(2, 0), "k", RECEIVE, 100)),
        Ok(Classification::Duplicate { response: original })
    );
}
