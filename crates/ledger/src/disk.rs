//! Pausing intake when the data directory's disk runs low, with hysteresis.
//!
//! The node samples the free bytes of the data directory (statvfs) every
//! `disk_probe_interval` and hands the number in; nothing here reads the
//! disk.

/// Free-disk thresholds, from `spec/ledger.allium`'s config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskLimits {
    /// Below this much free disk the instance stops taking input.
    pub min_free_disk_bytes: u64,
    /// Intake resumes at this much (hysteresis).
    pub resume_free_disk_bytes: u64,
}

impl Default for DiskLimits {
    fn default() -> Self {
        DiskLimits {
            min_free_disk_bytes: 1 << 30,
            resume_free_disk_bytes: 2 << 30,
        }
    }
}

/// What the Usher must do after a disk sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntakeChange {
    /// ledger.IntakePauseRequested: stop polling; commits in flight finish.
    Pause,
    /// ledger.IntakeResumeRequested.
    Resume,
}

#[derive(Debug)]
pub struct DiskGuard {
    limits: DiskLimits,
    intake_paused: bool,
}

impl DiskGuard {
    pub fn new(limits: DiskLimits) -> DiskGuard {
        assert!(
            limits.min_free_disk_bytes <= limits.resume_free_disk_bytes,
            "intake resumes at no less free disk than it pauses at: {limits:?}"
        );
        DiskGuard {
            limits,
            intake_paused: false,
        }
    }

    pub fn intake_paused(&self) -> bool {
        self.intake_paused
    }

    /// Takes one sample of free bytes; a change only when the sample
    /// crosses the threshold on the far side of the current state.
    ///
    /// spec: ledger.LowDiskPausesIntake, ledger.DiskRecoveryResumesIntake
    pub fn observe(&mut self, free_disk_bytes: u64) -> Option<IntakeChange> {
        if !self.intake_paused && free_disk_bytes < self.limits.min_free_disk_bytes {
            self.intake_paused = true;
            return Some(IntakeChange::Pause);
        }
        if self.intake_paused && free_disk_bytes >= self.limits.resume_free_disk_bytes {
            self.intake_paused = false;
            return Some(IntakeChange::Resume);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const GIB: u64 = 1 << 30;

    /// covers: ledger.LowDiskPausesIntake, ledger.DiskRecoveryResumesIntake
    #[test]
    fn intake_pauses_below_the_minimum_and_resumes_only_at_the_resume_level() {
        let mut guard = DiskGuard::new(DiskLimits::default());
        assert_eq!(guard.observe(3 * GIB), None);
        assert_eq!(guard.observe(GIB), None, "exactly the minimum is not low");
        assert_eq!(guard.observe(GIB - 1), Some(IntakeChange::Pause));
        assert_eq!(guard.observe(GIB / 2), None, "already paused");
        assert_eq!(
            guard.observe(2 * GIB - 1),
            None,
            "recovered past the minimum, not to the resume level"
        );
        assert!(guard.intake_paused());
        assert_eq!(guard.observe(2 * GIB), Some(IntakeChange::Resume));
        assert_eq!(
            guard.observe(2 * GIB - 1),
            None,
            "no flapping between the thresholds"
        );
        assert!(!guard.intake_paused());
    }

    proptest! {
        /// Changes alternate, start with a pause, and each matches its threshold.
        ///
        /// covers: ledger.LowDiskPausesIntake, ledger.DiskRecoveryResumesIntake
        #[test]
        fn changes_alternate_and_respect_the_thresholds(samples in proptest::collection::vec(0u64..4 * GIB, 0..100)) {
            let limits = DiskLimits::default();
            let mut guard = DiskGuard::new(limits);
            let mut last = IntakeChange::Resume;
            for free in samples {
                if let Some(change) = guard.observe(free) {
                    prop_assert_ne!(change, last);
                    match change {
                        IntakeChange::Pause => prop_assert!(free < limits.min_free_disk_bytes),
                        IntakeChange::Resume => prop_assert!(free >= limits.resume_free_disk_bytes),
                    }
                    last = change;
                }
                prop_assert_eq!(guard.intake_paused(), last == IntakeChange::Pause);
            }
        }
    }
}
