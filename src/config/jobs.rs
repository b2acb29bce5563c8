//! The background fan-out of notifications: durable jobs in the `jobs`
//! collection, claimed by a worker in each instance.

use std::time::Duration;

use anyhow::bail;

use super::{Source, millis, parse_bool, parse_or, secs};

/// The background fan-out of notifications: durable jobs in the `jobs`
/// collection, claimed by a worker in each instance.
#[derive(Debug, Clone)]
pub struct JobSettings {
    /// `WORKER_ENABLED`, default true: run a worker in this instance (every
    /// instance may; each job is still done once).
    pub worker_enabled: bool,
    /// `NOTIFY_BATCH_SIZE`, default 2000 (1 to 10000): notifications
    /// inserted per round: large enough to be quick, small enough that one
    /// round stays far inside the lease.
    pub batch_size: usize,
    /// `JOB_LEASE_SECS`, default 30 (must be positive): how long a claimed
    /// job is reserved for its worker without news from it; a crashed
    /// worker's job is taken over when this passes.
    pub lease: Duration,
    /// `JOB_POLL_MS`, default 1000 (must be positive): how often an idle
    /// worker looks for work (a publish on the same instance wakes it at
    /// once).
    pub poll: Duration,
    /// `JOB_MAX_ATTEMPTS`, default 8 (must be positive): attempts before a
    /// job is given up as failed, so a job that can never succeed stops
    /// being retried.
    pub max_attempts: u32,
    /// `JOB_RETRY_BASE_MS`, default 1000: first retry delay; doubled per
    /// attempt, capped at five minutes, so a struggling database is not
    /// hammered.
    pub retry_base: Duration,
}

impl JobSettings {
    /// Reads the worker's variables; the batch size must lie in 1..=10000
    /// and the lease, poll interval and attempts must be positive.
    pub fn from_source(src: &dyn Source) -> anyhow::Result<Self> {
        let jobs = JobSettings {
            worker_enabled: parse_bool(src, "WORKER_ENABLED", true)?,
            batch_size: parse_or(src, "NOTIFY_BATCH_SIZE", 2_000usize)?,
            lease: secs(src, "JOB_LEASE_SECS", 30)?,
            poll: millis(src, "JOB_POLL_MS", 1_000)?,
            max_attempts: parse_or(src, "JOB_MAX_ATTEMPTS", 8u32)?,
            retry_base: millis(src, "JOB_RETRY_BASE_MS", 1_000)?,
        };
        if !(1..=10_000).contains(&jobs.batch_size) {
            bail!("invalid NOTIFY_BATCH_SIZE: must be between 1 and 10000");
        }
        if jobs.lease.is_zero() || jobs.poll.is_zero() || jobs.max_attempts == 0 {
            bail!("invalid JOB_LEASE_SECS/JOB_POLL_MS/JOB_MAX_ATTEMPTS: must be positive");
        }
        Ok(jobs)
    }
}

#[cfg(test)]
mod tests {
    use super::super::Settings;

    #[test]
    fn job_settings_are_validated() {
        let err = Settings::from_source(&[("NOTIFY_BATCH_SIZE", "0")]).unwrap_err();
        assert!(err.to_string().contains("NOTIFY_BATCH_SIZE"), "{err}");
    }
}
