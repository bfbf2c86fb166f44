//! Clerk benchmarks: copy matching and peer-frame authentication.
//!
//! - `matching/table`: copies per second into one partition's agreement
//!   table, four instances (own + three peers), each record agreed, read
//!   back published and pruned so the table stays at its working size;
//! - `matching/clerk`: the same through the whole core: three peers'
//!   authenticated 512-copy frames decoded, verified and matched, own
//!   outputs, publication and settlement;
//! - `frame/512_copies`: sealing (encode + HMAC) a 512-copy frame,
//!   length-prefixing it, decoding it and verifying it;
//! - `invariants/full_table`: one `Clerk::check_invariants` over a table
//!   holding `max_unagreed_records` agreed, unpublished records with four
//!   copies and a schedule each (what the shell pays per check).

use std::hint::black_box;

use clerk::{AgreementTable, Clerk, ClerkConfig, InstanceStatus, OutcomeRecord, OwnOutput};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use protocol::envelope::RecordDigest;
use protocol::peer::{
    CopyBatch, CopyEntry, Frame, FrameAuthenticator, FrameBody, FrameHeader, Hello, InboundSession,
    LengthPrefixedDecoder, MAX_PEER_FRAME_BYTES, PROTOCOL_VERSION, admit_frame,
    encode_length_prefixed,
};

const KEY: &[u8] = b"tribunal bench cluster key, 32 b";
const RECORDS: i64 = 8_192;
const BATCH: i64 = 512;

fn digest(offset: i64) -> RecordDigest {
    let mut bytes = [0x3c; 32];
    bytes[..8].copy_from_slice(&offset.to_be_bytes());
    RecordDigest(bytes)
}

fn matching_table(c: &mut Criterion) {
    let config = ClerkConfig::default();
    let mut group = c.benchmark_group("matching");
    group.throughput(Throughput::Elements(RECORDS as u64 * 4));
    group.bench_function("table", |b| {
        b.iter_batched(
            || AgreementTable::new(0, &config),
            |mut table| {
                for offset in 0..RECORDS {
                    let d = digest(offset);
                    table.record_peer(1, offset, d, false);
                    table.record_own(offset, d, None);
                    table.record_peer(2, offset, d, false);
                    table.record_peer(3, offset, d, false);
                    table.publication(offset, d, 0);
                    assert!(table.watch(offset, 1_000, 0).pruned);
                }
                black_box(table)
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

/// Peer `id`'s frames towards instance 0 over one session.
struct Sender {
    id: u32,
    link: clerk::LinkId,
    nonce: [u8; 16],
    sequence: u64,
    authenticator: FrameAuthenticator,
}

impl Sender {
    fn connect(clerk: &mut Clerk, id: u32) -> Self {
        let nonce = [id as u8; 16];
        let link = clerk.inbound_accepted(nonce, 0).expect("accepting");
        let mut sender = Self {
            id,
            link,
            nonce,
            sequence: 1,
            authenticator: FrameAuthenticator::new("tribunal", KEY).expect("key"),
        };
        let hello = sender.frame(&FrameBody::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
        }));
        clerk.bytes_received(link, &hello, 0);
        sender
    }

    fn frame(&mut self, body: &FrameBody) -> Vec<u8> {
        let frame = self.authenticator.seal(
            FrameHeader {
                sender_id: self.id,
                receiver_id: 0,
                session_nonce: self.nonce,
                sequence: self.sequence,
            },
            body,
        );
        self.sequence += 1;
        let mut bytes = Vec::new();
        encode_length_prefixed(&frame, &mut bytes);
        bytes
    }
}

fn copies(from: i64) -> FrameBody {
    FrameBody::Copies(
        (from..from + BATCH)
            .map(|offset| CopyEntry {
                partition: 0,
                offset,
                digest: digest(offset),
            })
            .collect::<CopyBatch>(),
    )
}

fn matching_clerk(c: &mut Criterion) {
    let mut group = c.benchmark_group("matching");
    group.throughput(Throughput::Elements(RECORDS as u64 * 4));
    group.bench_function("clerk", |b| {
        b.iter_batched(
            || {
                let mut clerk = Clerk::new(ClerkConfig::default(), KEY, 0).expect("clerk");
                clerk.set_status(InstanceStatus::Recovering, 0);
                clerk.set_status(InstanceStatus::Ready, 0);
                let mut senders: Vec<Sender> =
                    (1..4).map(|id| Sender::connect(&mut clerk, id)).collect();
                let frames: Vec<Vec<Vec<u8>>> = senders
                    .iter_mut()
                    .map(|sender| {
                        (0..RECORDS)
                            .step_by(BATCH as usize)
                            .map(|from| sender.frame(&copies(from)))
                            .collect()
                    })
                    .collect();
                let links: Vec<clerk::LinkId> = senders.iter().map(|sender| sender.link).collect();
                clerk.step(0);
                (clerk, links, frames)
            },
            |(mut clerk, links, frames)| {
                for (batch, from) in (0..RECORDS).step_by(BATCH as usize).enumerate() {
                    let outputs: Vec<OwnOutput> = (from..from + BATCH)
                        .map(|offset| OwnOutput {
                            partition: 0,
                            offset,
                            digest: digest(offset),
                            dead_letter_reason: None,
                        })
                        .collect();
                    clerk.outputs_committed(&outputs, 1);
                    for (link, frames) in links.iter().zip(&frames) {
                        clerk.bytes_received(*link, &frames[batch], 1);
                    }
                    for offset in from..from + BATCH {
                        let record = OutcomeRecord {
                            partition: 0,
                            offset,
                            digest: digest(offset),
                            publisher_id: 0,
                            outcome_offset: offset,
                        };
                        clerk.outcome_consumed(record, 1);
                    }
                    black_box(clerk.step(1));
                }
                assert!(clerk.table(0).is_empty(), "every record settled and pruned");
                clerk
            },
            BatchSize::LargeInput,
        );
    });
    group.finish();
}

fn invariants_full_table(c: &mut Criterion) {
    let mut clerk = Clerk::new(ClerkConfig::default(), KEY, 0).expect("clerk");
    clerk.set_status(InstanceStatus::Recovering, 0);
    clerk.set_status(InstanceStatus::Ready, 0);
    let mut senders: Vec<Sender> = (1..4).map(|id| Sender::connect(&mut clerk, id)).collect();
    clerk.advance_progress(0, RECORDS - 1, -1);
    for from in (0..RECORDS).step_by(BATCH as usize) {
        let outputs: Vec<OwnOutput> = (from..from + BATCH)
            .map(|offset| OwnOutput {
                partition: 0,
                offset,
                digest: digest(offset),
                dead_letter_reason: None,
            })
            .collect();
        clerk.outputs_committed(&outputs, 1);
        for sender in &mut senders {
            let frame = sender.frame(&copies(from));
            clerk.bytes_received(sender.link, &frame, 1);
        }
        clerk.step(1);
    }
    assert_eq!(clerk.table(0).unsettled_count(), RECORDS as usize);
    assert_eq!(clerk.schedules().count(), RECORDS as usize);
    let mut group = c.benchmark_group("invariants");
    group.bench_function("full_table", |b| {
        b.iter(|| black_box(clerk.check_invariants()).expect("invariants hold"));
    });
    group.finish();
}

fn frame_512(c: &mut Criterion) {
    let authenticator = FrameAuthenticator::new("tribunal", KEY).expect("key");
    let body = copies(1_000_000);
    let header = FrameHeader {
        sender_id: 1,
        receiver_id: 0,
        session_nonce: [9; 16],
        sequence: 7,
    };
    let session = InboundSession {
        own_id: 0,
        instance_count: 4,
        peer_id: Some(1),
        session_nonce: [9; 16],
        last_recv_sequence: 6,
    };
    let mut group = c.benchmark_group("frame");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("512_copies", |b| {
        let mut decoder = LengthPrefixedDecoder::new(MAX_PEER_FRAME_BYTES);
        let mut bytes = Vec::new();
        b.iter(|| {
            bytes.clear();
            encode_length_prefixed(&authenticator.seal(header, black_box(&body)), &mut bytes);
            let mut input = bytes.as_slice();
            let frame: Frame = decoder
                .decode_next(&mut input)
                .expect("decodes")
                .expect("whole");
            black_box(admit_frame(&authenticator, &frame, &session).expect("verifies"))
        });
    });
    group.finish();
}

criterion_group!(
    benches,
    matching_table,
    matching_clerk,
    frame_512,
    invariants_full_table
);
criterion_main!(benches);
