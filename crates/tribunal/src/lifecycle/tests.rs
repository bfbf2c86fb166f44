use proptest::prelude::*;

use super::*;

fn bounds(log_start_offset: Offset, log_end_offset: Offset) -> LogBounds {
    LogBounds {
        log_start_offset,
        log_end_offset,
    }
}

fn started() -> Lifecycle {
    Lifecycle::start(1, 4).expect("id in range")
}

/// covers: recovery.ProcessStartCreatesStartingInstance, core.InstanceIdInRange
#[test]
fn an_instance_starts_starting_and_its_id_must_be_in_range() {
    assert_eq!(started().status(), InstanceStatus::Starting);
    assert_eq!(
        Lifecycle::start(4, 4).err(),
        Some(LifecycleError::InstanceIdOutOfRange {
            instance_id: 4,
            instance_count: 4
        })
    );
}

/// covers: recovery.RecoveryBeginsWhenWatermarksLoaded, recovery.CatchUpTargetFixedOnEnteringRecovery, recovery.ReplayResumesAfterWatermark, recovery.ReadinessGate, recovery.NoCopiesAdvertisedBeforeReady, recovery.NoPublicationBeforeReady
#[test]
fn recovery_replays_each_partition_from_its_watermark_and_advertises_nothing_until_caught_up() {
    let mut lifecycle = started();
    let replays = lifecycle
        .watermarks_loaded(&[(0, 9, bounds(0, 20)), (1, 4, bounds(0, 5))])
        .expect("starting");
    assert_eq!(
        replays,
        vec![
            ReplayFrom {
                partition: 0,
                offset: 10
            },
            ReplayFrom {
                partition: 1,
                offset: 5
            }
        ]
    );
    assert_eq!(lifecycle.status(), InstanceStatus::Recovering);
    assert!(!lifecycle.is_advertising());
    assert_eq!(
        lifecycle.watermarks_loaded(&[]),
        Err(LifecycleError::NotStarting(InstanceStatus::Recovering))
    );
}

/// covers: recovery.CaughtUpInstanceBecomesReady, recovery.ReadyOnlyWhenCaughtUp
#[test]
fn the_instance_is_ready_once_every_partition_reached_its_fixed_target() {
    let mut lifecycle = started();
    lifecycle
        .watermarks_loaded(&[(0, 9, bounds(0, 20)), (1, 4, bounds(0, 5))])
        .expect("starting");
    lifecycle.on_applied(0, 18);
    assert_eq!(
        lifecycle.status(),
        InstanceStatus::Recovering,
        "one short of 19"
    );
    lifecycle.on_applied(0, 19);
    assert_eq!(lifecycle.status(), InstanceStatus::Ready);
    assert!(lifecycle.is_advertising());
}

/// covers: recovery.WipedInstanceRebuildsFromOffsetZero
#[test]
fn a_wiped_instance_replays_the_whole_log_and_an_empty_log_is_caught_up_at_once() {
    let mut wiped = started();
    let replays = wiped
        .watermarks_loaded(&[(0, -1, bounds(0, 7))])
        .expect("starting");
    assert_eq!(
        replays,
        vec![ReplayFrom {
            partition: 0,
            offset: 0
        }]
    );
    let mut fresh = started();
    fresh
        .watermarks_loaded(&[(0, -1, bounds(0, 0))])
        .expect("starting");
    assert_eq!(fresh.status(), InstanceStatus::Ready);
}

/// covers: recovery.TruncatedInputHaltsRecovery, recovery.RecoveryStartsInsideRetainedLog
#[test]
fn records_lost_to_retention_halt_recovery() {
    let mut lifecycle = started();
    let replays = lifecycle
        .watermarks_loaded(&[(0, 3, bounds(10, 20))])
        .expect("starting");
    assert!(replays.is_empty());
    assert_eq!(lifecycle.status(), InstanceStatus::Halted);
    assert_eq!(
        lifecycle.halt_record(),
        Some(HaltRecord {
            reason: HaltReason::InputTruncated,
            partition: Some(0),
            offset: Some(4)
        })
    );
}

/// covers: recovery.RewoundInputHaltsRecovery
#[test]
fn a_log_ending_below_applied_offsets_halts_recovery() {
    let mut lifecycle = started();
    lifecycle
        .watermarks_loaded(&[(0, 30, bounds(0, 12))])
        .expect("starting");
    assert_eq!(
        lifecycle.halt_record().map(|h| (h.reason, h.offset)),
        Some((HaltReason::InputRewound, Some(12)))
    );
}

/// covers: recovery.SelfDivergenceHaltsReadyInstance, recovery.SelfDivergenceHaltsRecoveringInstance
#[test]
fn self_divergence_halts_a_recovering_or_ready_instance_for_good() {
    for caught_up in [false, true] {
        let mut lifecycle = started();
        let end = if caught_up { 0 } else { 5 };
        lifecycle
            .watermarks_loaded(&[(0, -1, bounds(0, end))])
            .expect("starting");
        lifecycle.halt(HaltReason::SelfDivergence, Some(0), Some(3));
        assert_eq!(lifecycle.status(), InstanceStatus::Halted);
        lifecycle.on_applied(0, 10);
        assert_eq!(
            lifecycle.status(),
            InstanceStatus::Halted,
            "halted is terminal"
        );
        assert!(!lifecycle.is_advertising());
    }
}

/// covers: recovery.TargetInsideLog
#[test]
#[should_panic(expected = "log start at or below its log end")]
fn a_log_start_past_its_end_is_refused() {
    let mut lifecycle = started();
    let _ = lifecycle.watermarks_loaded(&[(0, -1, bounds(5, 4))]);
}

/// covers: core.WatermarkLowerBound
#[test]
#[should_panic(expected = "a watermark is an offset or -1")]
fn a_watermark_below_minus_one_is_refused() {
    let mut lifecycle = started();
    let _ = lifecycle.watermarks_loaded(&[(0, -2, bounds(0, 4))]);
}

proptest! {
    /// covers: recovery.WatermarkNeverDecreases, recovery.NeverFastForwardFromPeers
    #[test]
    fn readiness_follows_only_the_instances_own_durable_watermarks(
        start in -1i64..50,
        extra in 0i64..50,
        steps in proptest::collection::vec(0i64..5, 0..40),
    ) {
        let end = start + 1 + extra;
        let mut lifecycle = started();
        lifecycle.watermarks_loaded(&[(0, start, bounds(0, end))]).expect("starting");
        let mut applied = start;
        for step in steps {
            applied = (applied + step).min(end + 10);
            lifecycle.on_applied(0, applied);
            prop_assert_eq!(lifecycle.status() == InstanceStatus::Ready, applied >= end - 1);
        }
    }
}
