use proptest::prelude::*;
use prost::Message as _;

use super::*;

const LIMITS: PackLimits = PackLimits {
    max_pack_commands: 4,
    flush_window_ms: 1,
};

fn command(n: u64) -> Submission {
    Submission {
        idempotency_key: format!("k-{n}"),
        command: vec![u8::try_from(n % 256).expect("byte")],
    }
}

fn decode(sealed: &SealedPack) -> CommandPack {
    CommandPack::decode(sealed.payload.as_slice()).expect("a sealed pack decodes")
}

/// covers: gateway.ValidSubmissionJoinsOpenPack
#[test]
fn submissions_join_their_partitions_filling_pack_in_arrival_order() {
    let mut packer = Packer::new(2, LIMITS);
    let a = packer.add(10, 0, SubmissionId(1), command(1));
    let b = packer.add(10, 1, SubmissionId(2), command(2));
    let c = packer.add(10, 0, SubmissionId(3), command(3));
    assert_eq!((a.index, b.index, c.index), (0, 0, 1));
    assert_eq!(a.pack, c.pack);
    assert_ne!(a.pack, b.pack);
    assert_eq!(packer.filling_packs(), 2);
    let mut sealed = Vec::new();
    packer.cut_expired(11, &mut sealed);
    assert_eq!(sealed.len(), 2);
    assert_eq!((sealed[0].partition, sealed[1].partition), (0, 1));
    assert_eq!(
        sealed[0].submissions,
        vec![SubmissionId(1), SubmissionId(3)]
    );
    let pack = decode(&sealed[0]);
    assert_eq!(pack.version, PACK_VERSION);
    assert_eq!(pack.submissions, vec![command(1), command(3)]);
}

/// covers: gateway.FullPackProduced, gateway.PackNeverExceedsMaxCommands
#[test]
fn the_command_that_fills_a_pack_cuts_it_and_the_next_opens_a_new_one() {
    let mut packer = Packer::new(1, LIMITS);
    for n in 0..3 {
        assert_eq!(packer.add(0, 0, SubmissionId(n), command(n)).sealed, None);
    }
    let fourth = packer.add(0, 0, SubmissionId(3), command(3));
    let sealed = fourth.sealed.expect("the fourth command fills the pack");
    assert_eq!(fourth.index, 3);
    assert_eq!(decode(&sealed).submissions.len(), LIMITS.max_pack_commands);
    assert_eq!(packer.filling_packs(), 0);
    let fifth = packer.add(0, 0, SubmissionId(4), command(4));
    assert_eq!(fifth.index, 0);
    assert_ne!(fifth.pack, fourth.pack);
}

/// covers: gateway.PackProducedAfterFlushWindow
#[test]
fn a_pack_is_cut_once_its_flush_window_has_passed_and_not_before() {
    let mut packer = Packer::new(
        1,
        PackLimits {
            max_pack_commands: 128,
            flush_window_ms: 5,
        },
    );
    packer.add(100, 0, SubmissionId(1), command(1));
    packer.add(104, 0, SubmissionId(2), command(2));
    assert_eq!(packer.next_cut_at(), Some(105));
    let mut sealed = Vec::new();
    packer.cut_expired(104, &mut sealed);
    assert!(
        sealed.is_empty(),
        "the window counts from the pack's opening"
    );
    packer.cut_expired(105, &mut sealed);
    assert_eq!(sealed.len(), 1);
    assert_eq!(sealed[0].submissions.len(), 2);
    assert_eq!(packer.next_cut_at(), None);
    packer.cut_expired(1_000, &mut sealed);
    assert_eq!(sealed.len(), 1, "no empty pack is ever cut");
}

proptest! {
    /// covers: gateway.PackNeverExceedsMaxCommands, gateway.OnePackIndexPerSubmission
    #[test]
    fn every_submission_lands_once_at_a_distinct_index_of_a_bounded_pack(
        steps in proptest::collection::vec((0u32..3, 0u64..3), 1..200),
    ) {
        let mut packer = Packer::new(3, LIMITS);
        let mut now = 0;
        let mut sealed = Vec::new();
        let mut placed = Vec::new();
        for (n, (partition, advance)) in (0u64..).zip(steps) {
            now += advance;
            packer.cut_expired(now, &mut sealed);
            let packed = packer.add(now, partition, SubmissionId(n), command(n));
            placed.push((SubmissionId(n), packed.pack, packed.index, partition));
            sealed.extend(packed.sealed);
        }
        packer.cut_expired(now + LIMITS.flush_window_ms, &mut sealed);
        prop_assert_eq!(packer.filling_packs(), 0);
        let mut seen = std::collections::BTreeMap::new();
        for pack in &sealed {
            let decoded = decode(pack);
            prop_assert!((1..=LIMITS.max_pack_commands).contains(&decoded.submissions.len()));
            prop_assert_eq!(decoded.submissions.len(), pack.submissions.len());
            for (index, (id, inner)) in pack.submissions.iter().zip(&decoded.submissions).enumerate() {
                prop_assert_eq!(inner, &command(id.0));
                let index = u32::try_from(index).expect("small");
                prop_assert!(seen.insert(*id, (pack.id, index, pack.partition)).is_none());
            }
        }
        prop_assert_eq!(seen.len(), placed.len());
        for (id, pack, index, partition) in placed {
            prop_assert_eq!(seen[&id], (pack, index, partition));
        }
    }
}
