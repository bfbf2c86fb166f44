//! Turning one input record into its commands, or into a dead letter.
//!
//! Everything here is a function of the record's bytes and place alone, so
//! every instance decodes a record the same way and names the same reason
//! for a record it cannot decode.

use domain::Domain;
use prost::Message;
use protocol::position::{CommandPosition, Offset, Partition, StreamTime};
use protocol::records::CommandPack;

use crate::config::DecodeLimits;

/// Why a record was dead-lettered. Declared in checking order: the first
/// check that fails names the reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DeadLetterReason {
    PackTooLarge,
    MalformedRecord,
    UnsupportedPackVersion,
    EmptyPack,
    TooManyCommands,
    InvalidCommand,
}

impl DeadLetterReason {
    /// The fixed token carried in outputs and dead-letter records.
    pub fn token(self) -> &'static str {
        match self {
            Self::PackTooLarge => "pack_too_large",
            Self::MalformedRecord => "malformed_record",
            Self::UnsupportedPackVersion => "unsupported_pack_version",
            Self::EmptyPack => "empty_pack",
            Self::TooManyCommands => "too_many_commands",
            Self::InvalidCommand => "invalid_command",
        }
    }
}

/// The command of a pack that failed the domain's checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidCommand {
    pub index: u32,
    /// The domain's reason token (`CommandDecodeError::reason`), never its detail text.
    pub error: &'static str,
}

/// Why a record cannot be decoded. The failing command is known exactly when
/// the reason is `invalid_command`: the constructors keep it so.
///
/// spec: usher.CommandIndexOnlyForInvalidCommand
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    reason: DeadLetterReason,
    invalid_command: Option<InvalidCommand>,
}

impl DeadLetter {
    fn record(reason: DeadLetterReason) -> Self {
        assert_ne!(
            reason,
            DeadLetterReason::InvalidCommand,
            "an invalid command names its index"
        );
        Self {
            reason,
            invalid_command: None,
        }
    }

    fn invalid_command(index: u32, error: &'static str) -> Self {
        Self {
            reason: DeadLetterReason::InvalidCommand,
            invalid_command: Some(InvalidCommand { index, error }),
        }
    }

    pub fn reason(&self) -> DeadLetterReason {
        self.reason
    }

    /// Only for `invalid_command`: which command failed, and how.
    pub fn invalid(&self) -> Option<InvalidCommand> {
        self.invalid_command
    }
}

/// One command of a decoded pack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedCommand<C> {
    pub position: CommandPosition,
    pub idempotency_key: String,
    /// The command exactly as the producer encoded it: the Warden
    /// fingerprints these bytes.
    pub bytes: Vec<u8>,
    pub command: C,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeliveryResult<C> {
    /// 1..=max_pack_commands commands, in index order.
    Decoded(Vec<DecodedCommand<C>>),
    DeadLettered(DeadLetter),
}

/// One record handed on: its place, the stream time it carries, and what it
/// decoded to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery<C> {
    pub partition: Partition,
    pub offset: Offset,
    /// The partition's stream time up to and including this record.
    pub stream_time: StreamTime,
    pub result: DeliveryResult<C>,
}

impl<C> Delivery<C> {
    /// The commands handed on: none for a dead-lettered record.
    pub fn commands(&self) -> &[DecodedCommand<C>] {
        match &self.result {
            DeliveryResult::Decoded(commands) => commands,
            DeliveryResult::DeadLettered(_) => &[],
        }
    }

    pub fn dead_letter(&self) -> Option<DeadLetter> {
        match &self.result {
            DeliveryResult::Decoded(_) => None,
            DeliveryResult::DeadLettered(letter) => Some(*letter),
        }
    }
}

/// Decodes one record. `payload` is `None` for a record without a value (a
/// tombstone). The checks run in the spec's fixed order (size, parse,
/// version, empty, command count, then each command in index order through
/// the domain's `decode_command` and `validate`); the first failure is the
/// record's dead letter.
///
/// spec: usher.DecodePack, usher.DeadLetterUndecodableRecord, usher.DeadLetterInvalidCommand, usher.DecodedRecordsHoldCommands, core.PackSizeBounded
pub fn decode_record<D: Domain>(
    domain: &D,
    limits: &DecodeLimits,
    partition: Partition,
    offset: Offset,
    stream_time: StreamTime,
    payload: Option<&[u8]>,
) -> Delivery<D::Command> {
    let result = match decode_pack(domain, limits, partition, offset, payload) {
        Ok(commands) => {
            assert!(
                (1..=limits.max_pack_commands).contains(&commands.len()),
                "a decoded record holds 1..=max_pack_commands commands"
            );
            DeliveryResult::Decoded(commands)
        }
        Err(letter) => DeliveryResult::DeadLettered(letter),
    };
    Delivery {
        partition,
        offset,
        stream_time,
        result,
    }
}

fn decode_pack<D: Domain>(
    domain: &D,
    limits: &DecodeLimits,
    partition: Partition,
    offset: Offset,
    payload: Option<&[u8]>,
) -> Result<Vec<DecodedCommand<D::Command>>, DeadLetter> {
    let payload = payload.unwrap_or_default();
    // Size first, so an oversized payload is never parsed.
    if payload.len() > limits.max_pack_bytes {
        return Err(DeadLetter::record(DeadLetterReason::PackTooLarge));
    }
    // A tombstone or an empty value is no pack: protobuf would read zero
    // bytes as a version-0 pack, but every real pack carries a version.
    if payload.is_empty() {
        return Err(DeadLetter::record(DeadLetterReason::MalformedRecord));
    }
    let pack = CommandPack::decode(payload)
        .map_err(|_| DeadLetter::record(DeadLetterReason::MalformedRecord))?;
    if pack.version != limits.supported_pack_version {
        return Err(DeadLetter::record(DeadLetterReason::UnsupportedPackVersion));
    }
    if pack.submissions.is_empty() {
        return Err(DeadLetter::record(DeadLetterReason::EmptyPack));
    }
    if pack.submissions.len() > limits.max_pack_commands {
        return Err(DeadLetter::record(DeadLetterReason::TooManyCommands));
    }
    let mut commands = Vec::with_capacity(pack.submissions.len());
    for (index, submission) in (0u32..).zip(pack.submissions) {
        let command = domain
            .decode_command(&submission.command)
            .and_then(|command| domain.validate(&command).map(|()| command))
            .map_err(|error| DeadLetter::invalid_command(index, error.reason))?;
        commands.push(DecodedCommand {
            position: CommandPosition {
                partition,
                offset,
                index,
            },
            idempotency_key: submission.idempotency_key,
            bytes: submission.command,
            command,
        });
    }
    Ok(commands)
}

#[cfg(test)]
mod tests;
