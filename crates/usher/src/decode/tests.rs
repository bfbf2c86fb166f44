use std::sync::atomic::{AtomicUsize, Ordering};

use domain::inventory::{Inventory, InventoryCommand, rejection};
use domain::{
    CommandDecodeError, CorruptState, DomainOutcome, EntityKey, EntityStates, EvaluationContext,
};
use protocol::records::{PACK_VERSION, Submission};

use super::*;

const PARTITION: Partition = 3;
const OFFSET: Offset = 41;
const STREAM_TIME: StreamTime = StreamTime(1_700_000_000_000);

fn receive(sku: &str, quantity: i64) -> InventoryCommand {
    InventoryCommand::Receive {
        warehouse: "w1".into(),
        sku: sku.into(),
        quantity,
    }
}

fn submission(key: &str, command: &InventoryCommand) -> Submission {
    Submission {
        idempotency_key: key.into(),
        command: command.encode(),
    }
}

fn pack_bytes(version: u32, submissions: Vec<Submission>) -> Vec<u8> {
    CommandPack {
        version,
        submissions,
    }
    .encode_to_vec()
}

fn pack_of(commands: &[InventoryCommand]) -> Vec<u8> {
    let submissions = commands
        .iter()
        .enumerate()
        .map(|(index, command)| submission(&format!("key-{index}"), command))
        .collect();
    pack_bytes(PACK_VERSION, submissions)
}

fn decode(payload: Option<&[u8]>) -> Delivery<InventoryCommand> {
    decode_with(&DecodeLimits::default(), payload)
}

fn decode_with(limits: &DecodeLimits, payload: Option<&[u8]>) -> Delivery<InventoryCommand> {
    decode_record(
        &Inventory::default(),
        limits,
        PARTITION,
        OFFSET,
        STREAM_TIME,
        payload,
    )
}

fn reason_of(delivery: &Delivery<InventoryCommand>) -> DeadLetterReason {
    delivery
        .dead_letter()
        .expect("the record is dead-lettered")
        .reason()
}

/// The inventory domain, counting how often a command is decoded.
#[derive(Default)]
struct CountingInventory {
    decoded: AtomicUsize,
}

impl Domain for CountingInventory {
    type Command = InventoryCommand;

    fn decode_command(&self, bytes: &[u8]) -> Result<InventoryCommand, CommandDecodeError> {
        self.decoded.fetch_add(1, Ordering::Relaxed);
        Inventory::default().decode_command(bytes)
    }

    fn validate(&self, command: &InventoryCommand) -> Result<(), CommandDecodeError> {
        Inventory::default().validate(command)
    }

    fn touched_keys(&self, command: &InventoryCommand) -> Vec<EntityKey> {
        Inventory::default().touched_keys(command)
    }

    fn evaluate(
        &self,
        context: EvaluationContext,
        command: &InventoryCommand,
        entities: &dyn EntityStates,
    ) -> Result<DomainOutcome, CorruptState> {
        Inventory::default().evaluate(context, command, entities)
    }
}

/// covers: usher.DecodePack, usher.DecodedRecordsHoldCommands
#[test]
fn a_valid_pack_yields_its_commands_in_index_order() {
    let commands = [receive("apple", 5), receive("pear", 7), receive("fig", 1)];
    let payload = pack_of(&commands);
    let delivery = decode(Some(&payload));

    assert_eq!(delivery.partition, PARTITION);
    assert_eq!(delivery.offset, OFFSET);
    assert_eq!(delivery.stream_time, STREAM_TIME);
    assert_eq!(delivery.dead_letter(), None);
    let decoded = delivery.commands();
    assert_eq!(decoded.len(), commands.len());
    for (index, (decoded, command)) in decoded.iter().zip(&commands).enumerate() {
        assert_eq!(
            decoded.position,
            CommandPosition {
                partition: PARTITION,
                offset: OFFSET,
                index: u32::try_from(index).unwrap(),
            }
        );
        assert_eq!(decoded.idempotency_key, format!("key-{index}"));
        assert_eq!(decoded.bytes, command.encode(), "the bytes as produced");
        assert_eq!(&decoded.command, command);
    }
}

/// covers: usher.DeadLetterUndecodableRecord, usher.CommandIndexOnlyForInvalidCommand
#[test]
fn an_oversized_payload_is_pack_too_large_and_never_parsed() {
    // A valid pack, one byte over the limit: only its size is wrong.
    let payload = pack_of(&[receive("apple", 5), receive("pear", 2)]);
    let limits = DecodeLimits {
        max_pack_bytes: payload.len() - 1,
        ..DecodeLimits::default()
    };
    let domain = CountingInventory::default();
    let delivery = decode_record(
        &domain,
        &limits,
        PARTITION,
        OFFSET,
        STREAM_TIME,
        Some(&payload),
    );
    assert_eq!(reason_of(&delivery), DeadLetterReason::PackTooLarge);
    assert_eq!(delivery.dead_letter().unwrap().invalid(), None);
    assert_eq!(
        domain.decoded.load(Ordering::Relaxed),
        0,
        "no command decoded"
    );
    assert!(delivery.commands().is_empty());
}

/// covers: usher.DeadLetterUndecodableRecord
#[test]
fn a_payload_of_exactly_max_pack_bytes_is_decoded() {
    let payload = pack_of(&[receive("apple", 5), receive("pear", 2)]);
    let limits = DecodeLimits {
        max_pack_bytes: payload.len(),
        ..DecodeLimits::default()
    };
    assert_eq!(decode_with(&limits, Some(&payload)).commands().len(), 2);
}

/// covers: usher.DeadLetterUndecodableRecord
#[test]
fn bad_protobuf_a_tombstone_and_an_empty_value_are_malformed_records() {
    for payload in [None, Some(&[][..]), Some(&[0xff, 0xff, 0xff][..])] {
        let delivery = decode(payload);
        assert_eq!(
            reason_of(&delivery),
            DeadLetterReason::MalformedRecord,
            "{payload:?}"
        );
        assert_eq!(delivery.dead_letter().unwrap().invalid(), None);
    }
}

/// covers: usher.DeadLetterUndecodableRecord
#[test]
fn an_unknown_pack_version_is_unsupported() {
    for version in [0, PACK_VERSION + 1] {
        let payload = pack_bytes(version, vec![submission("k", &receive("apple", 1))]);
        assert_eq!(
            reason_of(&decode(Some(&payload))),
            DeadLetterReason::UnsupportedPackVersion
        );
    }
}

/// covers: usher.DeadLetterUndecodableRecord
#[test]
fn a_pack_without_commands_is_empty() {
    let payload = pack_bytes(PACK_VERSION, Vec::new());
    assert_eq!(
        reason_of(&decode(Some(&payload))),
        DeadLetterReason::EmptyPack
    );
}

/// covers: usher.DeadLetterUndecodableRecord, usher.DecodedRecordsHoldCommands, core.PackSizeBounded
#[test]
fn a_pack_holds_at_most_max_pack_commands() {
    let limits = DecodeLimits::default();
    let full: Vec<_> = (0..limits.max_pack_commands)
        .map(|_| receive("apple", 1))
        .collect();
    assert_eq!(
        decode(Some(&pack_of(&full))).commands().len(),
        limits.max_pack_commands
    );
    let over: Vec<_> = (0..=limits.max_pack_commands)
        .map(|_| receive("apple", 1))
        .collect();
    assert_eq!(
        reason_of(&decode(Some(&pack_of(&over)))),
        DeadLetterReason::TooManyCommands
    );
}

/// covers: usher.DeadLetterInvalidCommand, usher.CommandIndexOnlyForInvalidCommand
#[test]
fn the_first_invalid_command_dead_letters_the_whole_record() {
    let commands = [
        receive("apple", 5),
        receive("pear", 0),
        receive("", 3),
        receive("fig", 1),
    ];
    let delivery = decode(Some(&pack_of(&commands)));
    let letter = delivery.dead_letter().expect("dead-lettered");
    assert_eq!(letter.reason(), DeadLetterReason::InvalidCommand);
    assert_eq!(
        letter.invalid(),
        Some(InvalidCommand {
            index: 1,
            error: rejection::QUANTITY_NOT_POSITIVE,
        })
    );
    assert!(delivery.commands().is_empty(), "valid commands included");
}

/// covers: usher.DeadLetterInvalidCommand
#[test]
fn an_undecodable_command_names_the_domain_token_not_library_text() {
    let payload = pack_bytes(
        PACK_VERSION,
        vec![
            submission("a", &receive("apple", 5)),
            Submission {
                idempotency_key: "b".into(),
                command: vec![0xff, 0xff],
            },
        ],
    );
    let letter = decode(Some(&payload)).dead_letter().expect("dead-lettered");
    assert_eq!(
        letter.invalid(),
        Some(InvalidCommand {
            index: 1,
            error: "undecodable_command",
        })
    );

    let no_kind = pack_bytes(
        PACK_VERSION,
        vec![Submission {
            idempotency_key: "c".into(),
            command: Vec::new(),
        }],
    );
    let letter = decode(Some(&no_kind)).dead_letter().expect("dead-lettered");
    assert_eq!(
        letter.invalid(),
        Some(InvalidCommand {
            index: 0,
            error: "unknown_command",
        })
    );
}

/// Each payload fails two checks; the earlier one in the spec's order names
/// the reason.
///
/// covers: usher.DeadLetterUndecodableRecord, usher.DeadLetterInvalidCommand
#[test]
fn the_first_failing_check_names_the_reason() {
    let limits = DecodeLimits {
        max_pack_commands: 2,
        ..DecodeLimits::default()
    };
    let invalid = || submission("bad", &receive("apple", -1));
    let wrong_version_and_empty = pack_bytes(PACK_VERSION + 1, Vec::new());
    let wrong_version_and_invalid = pack_bytes(PACK_VERSION + 1, vec![invalid()]);
    let too_many_and_invalid = pack_bytes(PACK_VERSION, vec![invalid(), invalid(), invalid()]);
    let oversized_garbage = vec![0xff; limits.max_pack_bytes + 1];
    let cases = [
        (oversized_garbage, DeadLetterReason::PackTooLarge),
        (
            wrong_version_and_empty,
            DeadLetterReason::UnsupportedPackVersion,
        ),
        (
            wrong_version_and_invalid,
            DeadLetterReason::UnsupportedPackVersion,
        ),
        (too_many_and_invalid, DeadLetterReason::TooManyCommands),
    ];
    for (payload, reason) in cases {
        assert_eq!(reason_of(&decode_with(&limits, Some(&payload))), reason);
    }
}

#[test]
fn reason_tokens_are_the_specs() {
    let tokens = [
        DeadLetterReason::PackTooLarge,
        DeadLetterReason::MalformedRecord,
        DeadLetterReason::UnsupportedPackVersion,
        DeadLetterReason::EmptyPack,
        DeadLetterReason::TooManyCommands,
        DeadLetterReason::InvalidCommand,
    ]
    .map(DeadLetterReason::token);
    assert_eq!(
        tokens,
        [
            "pack_too_large",
            "malformed_record",
            "unsupported_pack_version",
            "empty_pack",
            "too_many_commands",
            "invalid_command",
        ]
    );
}
