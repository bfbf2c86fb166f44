//! Reconnect backoff of a dialer, as pure functions.

use crate::config::{ClerkConfig, InstanceId, Millis};

/// When a dialer tries again after its link closed, and the backoff it
/// keeps for the time after.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    pub next_attempt_at: Millis,
    pub backoff: Millis,
}

/// Exponential backoff: each unstable link doubles the wait up to the
/// maximum; a link that stayed up for `stable_link_duration` starts over at
/// the initial backoff. The wait gets up to 20% jitter so peers restarted
/// together do not reconnect in lockstep.
///
/// spec: clerk.DialerBacksOffAfterClose
pub fn retry_after_close(
    config: &ClerkConfig,
    peer: InstanceId,
    backoff: Millis,
    attempt: u64,
    established_at: Option<Millis>,
    now: Millis,
) -> Retry {
    let was_stable =
        established_at.is_some_and(|at| at.saturating_add(config.stable_link_duration) <= now);
    let wait = if was_stable {
        config.reconnect_initial_backoff
    } else {
        backoff.min(config.reconnect_max_backoff)
    };
    let jitter = wait * jitter_percent(config.instance_id, peer, attempt) / 100;
    Retry {
        next_attempt_at: now.saturating_add(wait).saturating_add(jitter),
        backoff: wait.saturating_mul(2).min(config.reconnect_max_backoff),
    }
}

/// 0..=20, spread by dialer, peer and attempt. The core draws no random
/// numbers; distinct instance pairs are what must not move in lockstep.
fn jitter_percent(own: InstanceId, peer: InstanceId, attempt: u64) -> u64 {
    let mut x = (u64::from(own) << 40) ^ (u64::from(peer) << 20) ^ attempt;
    // splitmix64's finaliser: every input bit moves every output bit.
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    x % 21
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ClerkConfig {
        ClerkConfig::default()
    }

    /// covers: clerk.DialerBacksOffAfterClose
    #[test]
    fn unstable_links_double_the_backoff_up_to_the_maximum() {
        let config = config();
        let mut backoff = config.reconnect_initial_backoff;
        let mut waits = Vec::new();
        for attempt in 0..10 {
            let retry = retry_after_close(&config, 1, backoff, attempt, None, 1_000);
            let wait = retry.next_attempt_at - 1_000;
            let base = backoff.min(config.reconnect_max_backoff);
            assert!(wait >= base && wait <= base + base / 5, "{wait} vs {base}");
            waits.push(base);
            backoff = retry.backoff;
        }
        assert_eq!(
            waits,
            vec![50, 100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]
        );
    }

    /// covers: clerk.DialerBacksOffAfterClose
    #[test]
    fn a_stable_link_starts_the_backoff_over() {
        let config = config();
        let stable = retry_after_close(&config, 2, 5_000, 3, Some(0), 5_000);
        assert!(stable.next_attempt_at <= 5_000 + 60);
        assert_eq!(stable.backoff, 100);
        let short_lived = retry_after_close(&config, 2, 5_000, 3, Some(1), 5_000);
        assert!(short_lived.next_attempt_at >= 10_000);
        assert_eq!(short_lived.backoff, 5_000);
    }

    #[test]
    fn jitter_differs_between_peers_and_stays_within_a_fifth() {
        let spread: std::collections::BTreeSet<u64> = (0..4)
            .flat_map(|own| (0..4).map(move |peer| jitter_percent(own, peer, 0)))
            .collect();
        assert!(spread.len() > 3, "{spread:?}");
        assert!((0..1000).all(|attempt| jitter_percent(1, 2, attempt) <= 20));
    }
}
