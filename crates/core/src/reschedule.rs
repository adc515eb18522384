//! When a failed allocation may be replaced, and after what delay: the `reschedule` block as a
//! pure function of the earlier reschedules and the time.

use crate::v1::{RescheduleEvent, ReschedulePolicy};

/// The delay before the next replacement, or `None` when the policy allows no more attempts.
pub fn next_delay(
    policy: &ReschedulePolicy,
    events: &[RescheduleEvent],
    now_ms: i64,
) -> Option<u64> {
    if !policy.unlimited {
        let window_start = now_ms - policy.interval_ms as i64;
        let recent = events
            .iter()
            .filter(|e| e.time_unix_ms > window_start)
            .count() as u32;
        if recent >= policy.attempts {
            return None;
        }
    }
    let last = events.last().map(|e| e.delay_ms);
    let delay = match (policy.delay_function.as_str(), last) {
        (_, None) => policy.delay_ms,
        ("exponential", Some(d)) => d.saturating_mul(2),
        ("fibonacci", Some(d)) => {
            let before = events
                .len()
                .checked_sub(2)
                .map_or(0, |i| events[i].delay_ms);
            if before == 0 {
                policy.delay_ms.max(d)
            } else {
                d.saturating_add(before)
            }
        }
        _ => policy.delay_ms,
    };
    Some(if policy.max_delay_ms > 0 {
        delay.min(policy.max_delay_ms)
    } else {
        delay
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(function: &str, attempts: u32, unlimited: bool) -> ReschedulePolicy {
        ReschedulePolicy {
            attempts,
            interval_ms: 3_600_000,
            delay_ms: 30_000,
            delay_function: function.into(),
            max_delay_ms: 300_000,
            unlimited,
        }
    }

    fn events(delays: &[u64], at: i64) -> Vec<RescheduleEvent> {
        delays
            .iter()
            .map(|d| RescheduleEvent {
                time_unix_ms: at,
                delay_ms: *d,
                ..RescheduleEvent::default()
            })
            .collect()
    }

    #[test]
    fn delay_functions_grow_and_are_capped() {
        let p = policy("exponential", 0, true);
        assert_eq!(next_delay(&p, &[], 0), Some(30_000));
        assert_eq!(next_delay(&p, &events(&[30_000], 0), 0), Some(60_000));
        assert_eq!(
            next_delay(&p, &events(&[30_000, 60_000, 120_000, 240_000], 0), 0),
            Some(300_000)
        );
        let f = policy("fibonacci", 0, true);
        assert_eq!(next_delay(&f, &events(&[30_000], 0), 0), Some(30_000));
        assert_eq!(
            next_delay(&f, &events(&[30_000, 30_000], 0), 0),
            Some(60_000)
        );
        assert_eq!(
            next_delay(&f, &events(&[30_000, 30_000, 60_000], 0), 0),
            Some(90_000)
        );
        let c = policy("constant", 0, true);
        assert_eq!(
            next_delay(&c, &events(&[30_000, 30_000], 0), 0),
            Some(30_000)
        );
    }

    #[test]
    fn limited_policies_count_attempts_within_the_interval() {
        let p = policy("constant", 2, false);
        assert_eq!(
            next_delay(&p, &events(&[30_000], 1_000), 2_000),
            Some(30_000)
        );
        assert_eq!(
            next_delay(&p, &events(&[30_000, 30_000], 1_000), 2_000),
            None
        );
        // Two hours later the old attempts no longer count.
        assert_eq!(
            next_delay(&p, &events(&[30_000, 30_000], 1_000), 7_300_000),
            Some(30_000)
        );
        assert_eq!(next_delay(&policy("constant", 0, false), &[], 0), None);
    }
}
