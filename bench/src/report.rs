//! Figures of one benchmark run, computed the same way for both engines.
//!
//! This file is compiled into `taskhub-bench` and, through a `#[path]` include, into the separate
//! `duroxide-peer` crate, so both sides summarize with one definition.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Activities per HelloCities5 instance.
pub const ACTIVITIES_PER_INSTANCE: usize = 5;

/// The five cities, in call order.
pub const CITIES: [&str; ACTIVITIES_PER_INSTANCE] =
    ["Tokyo", "Seattle", "London", "Paris", "Cairo"];

/// The JSON text every HelloCities5 instance must complete with.
pub fn expected_output() -> serde_json::Value {
    serde_json::Value::Array(
        CITIES
            .iter()
            .map(|c| serde_json::Value::String(format!("Hello {c}!")))
            .collect(),
    )
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Summary {
    pub engine: String,
    pub instances: usize,
    /// Instances that ended Failed (rates and latencies count completed instances only).
    pub failed: usize,
    pub orchestration_workers: usize,
    pub activity_workers: usize,
    /// First start call to the last completion observed.
    pub wall_s: f64,
    pub orchestrations_per_s: f64,
    pub activities_per_s: f64,
    /// Start-to-completion latency: from just before the start call to when the bench saw the
    /// instance Completed.
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// How long starting all instances took (the start calls overlap the run).
    pub start_phase_s: f64,
}

impl Summary {
    /// `latencies` are the start-to-completion times of every completed instance (any order);
    /// `failed` instances ended Failed.
    pub fn new(
        engine: &str,
        workers: (usize, usize),
        wall: Duration,
        start_phase: Duration,
        mut latencies: Vec<Duration>,
        failed: usize,
    ) -> Self {
        latencies.sort_unstable();
        let n = latencies.len();
        let wall_s = wall.as_secs_f64();
        Summary {
            engine: engine.to_string(),
            instances: n + failed,
            failed,
            orchestration_workers: workers.0,
            activity_workers: workers.1,
            wall_s,
            orchestrations_per_s: n as f64 / wall_s,
            activities_per_s: (n * ACTIVITIES_PER_INSTANCE) as f64 / wall_s,
            p50_ms: ms(percentile(&latencies, 0.50)),
            p99_ms: ms(percentile(&latencies, 0.99)),
            max_ms: ms(latencies.last().copied().unwrap_or_default()),
            start_phase_s: start_phase.as_secs_f64(),
        }
    }
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<9} {:>6} inst  workers {}/{}  wall {:>7.2} s  {:>8.1} orch/s  {:>8.1} act/s  \
             p50 {:>8.1} ms  p99 {:>8.1} ms  max {:>8.1} ms  (starts took {:.2} s)",
            self.engine,
            self.instances,
            self.orchestration_workers,
            self.activity_workers,
            self.wall_s,
            self.orchestrations_per_s,
            self.activities_per_s,
            self.p50_ms,
            self.p99_ms,
            self.max_ms,
            self.start_phase_s,
        )?;
        if self.failed > 0 {
            write!(f, "  ** {} FAILED **", self.failed)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&v, 0.50), Duration::from_millis(50));
        assert_eq!(percentile(&v, 0.99), Duration::from_millis(99));
        assert_eq!(percentile(&v[..1], 0.99), Duration::from_millis(1));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
    }

    #[test]
    fn expected_output_is_the_sample_output() {
        assert_eq!(
            expected_output().to_string(),
            r#"["Hello Tokyo!","Hello Seattle!","Hello London!","Hello Paris!","Hello Cairo!"]"#
        );
    }
}
