//! What to do when a task exits: the `restart` block's policy, as a pure function of the
//! exit, the restarts so far and the current time.

use yurt_proto::v1::RestartPolicy;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Start the task again at this time (Unix ms).
    Restart { at_ms: i64, reason: &'static str },
    /// The task is done and succeeded (batch task that exited 0).
    Complete,
    /// The task is done and failed.
    Fail { reason: &'static str },
}

/// Decides after an exit. `restarts_ms` are the times of earlier restarts; `batch` is whether
/// the job runs to completion (a service task that exits, even with 0, is restarted).
pub fn decide(
    policy: &RestartPolicy,
    restarts_ms: &[i64],
    now_ms: i64,
    success: bool,
    batch: bool,
) -> Decision {
    if batch && success {
        return Decision::Complete;
    }
    if policy.attempts == 0 {
        return Decision::Fail {
            reason: "Policy allows no restarts",
        };
    }
    let window_start = now_ms - policy.interval_ms as i64;
    let recent = restarts_ms.iter().filter(|t| **t > window_start).count() as u32;
    if recent >= policy.attempts {
        return match policy.mode.as_str() {
            "delay" => {
                // Wait until the oldest restart in the window leaves it.
                let oldest = restarts_ms
                    .iter()
                    .copied()
                    .filter(|t| *t > window_start)
                    .min()
                    .unwrap_or(now_ms);
                Decision::Restart {
                    at_ms: (oldest + policy.interval_ms as i64)
                        .max(now_ms + policy.delay_ms as i64),
                    reason: "Exceeded allowed attempts, applying a delay",
                }
            }
            _ => Decision::Fail {
                reason: "Exceeded allowed attempts",
            },
        };
    }
    Decision::Restart {
        at_ms: now_ms + policy.delay_ms as i64,
        reason: "Restart within policy",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(mode: &str) -> RestartPolicy {
        RestartPolicy {
            attempts: 2,
            interval_ms: 60_000,
            delay_ms: 1_000,
            mode: mode.into(),
        }
    }

    #[test]
    fn batch_success_completes_and_service_exit_restarts() {
        assert_eq!(
            decide(&policy("fail"), &[], 0, true, true),
            Decision::Complete
        );
        assert_eq!(
            decide(&policy("fail"), &[], 10, true, false),
            Decision::Restart {
                at_ms: 1_010,
                reason: "Restart within policy"
            }
        );
    }

    #[test]
    fn attempts_are_counted_within_the_interval() {
        let p = policy("fail");
        assert!(matches!(
            decide(&p, &[1_000], 2_000, false, false),
            Decision::Restart { .. }
        ));
        assert_eq!(
            decide(&p, &[1_000, 2_000], 3_000, false, false),
            Decision::Fail {
                reason: "Exceeded allowed attempts"
            }
        );
        // An hour later the old restarts have left the window.
        assert!(matches!(
            decide(&p, &[1_000, 2_000], 3_600_000, false, false),
            Decision::Restart { .. }
        ));
    }

    #[test]
    fn delay_mode_waits_for_the_window_and_zero_attempts_fail() {
        let p = policy("delay");
        assert_eq!(
            decide(&p, &[1_000, 2_000], 3_000, false, false),
            Decision::Restart {
                at_ms: 61_000,
                reason: "Exceeded allowed attempts, applying a delay"
            }
        );
        let none = RestartPolicy {
            attempts: 0,
            ..policy("fail")
        };
        assert_eq!(
            decide(&none, &[], 0, false, false),
            Decision::Fail {
                reason: "Policy allows no restarts"
            }
        );
    }
}
