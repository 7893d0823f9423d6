//! Built-in sample orchestrations and activities (design §5): what a new user runs first, and
//! what the tests and benchmarks drive.

use std::time::Duration;

use futures::future::join_all;
use serde_json::{json, Value};

use crate::engine::{
    ActivityContext, ActivityError, OrchestrationContext, OrchestrationError, Registry,
};

/// A registry with every sample registered, aliases included.
pub fn registry() -> Registry {
    let mut r = Registry::new();
    register(&mut r);
    r
}

/// Removes the samples from a registry (`samples = false`): a server open to others need not
/// run code it was never asked to. Names an application registered itself under a sample's
/// name go too.
pub fn unregister(r: &mut Registry) {
    r.remove_all_of(&registry());
}

/// `FanOutFanIn` runs at most this many branches.
pub const MAX_FAN_OUT: f64 = 1000.0;
/// `WaitForApproval` and `LongTimer` wait at most this long (a year), in seconds.
pub const MAX_WAIT_SECONDS: f64 = 366.0 * 24.0 * 3600.0;

/// Adds the samples to an application's own registry.
pub fn register(r: &mut Registry) {
    r.activity("SayHello", say_hello)
        .alias("E1_SayHello", "SayHello")
        .activity("FanOutWork", |ctx: ActivityContext| async move {
            number_in(ctx.input::<Value>()?, 0.0)
                .map(|n| json!(n as i64))
                .map_err(|e| ActivityError::new(e.message))
        })
        .activity("Sleep", |ctx: ActivityContext| async move {
            let ms =
                step_millis(ctx.input::<Value>()?).map_err(|e| ActivityError::new(e.message))?;
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(json!(ms))
        })
        .activity("FlakyStep", |ctx: ActivityContext| async move {
            if ctx.attempt == 1 {
                Err(ActivityError::new(
                    "FlakyStep fails on its first attempt; rewind the instance to run it again",
                ))
            } else {
                Ok(json!("ok"))
            }
        });

    r.orchestrator("HelloSequence", |ctx: OrchestrationContext| async move {
        say_hello_to(&ctx, &["Tokyo", "Seattle", "London"]).await
    })
    .alias("E1_HelloSequence", "HelloSequence")
    .orchestrator("HelloCities5", |ctx: OrchestrationContext| async move {
        say_hello_to(&ctx, &["Tokyo", "Seattle", "London", "Paris", "Cairo"]).await
    })
    .orchestrator("SlowSequence", |ctx: OrchestrationContext| async move {
        let ms = step_millis(ctx.input()?)?;
        let mut out = Vec::with_capacity(3);
        for _ in 0..3 {
            out.push(ctx.call_activity("Sleep", ms).await?);
        }
        Ok(Value::Array(out))
    })
    .orchestrator("FanOutFanIn", |ctx: OrchestrationContext| async move {
        let n = at_most(number_in(ctx.input()?, 10.0)?, MAX_FAN_OUT, "branches")? as i64;
        let calls = (1..=n).map(|i| ctx.call_activity("FanOutWork", i));
        let mut sum = 0.0;
        for r in join_all(calls).await {
            sum += r?.as_f64().unwrap_or(0.0);
        }
        Ok(json!(sum as i64))
    })
    .orchestrator("WaitForApproval", |ctx: OrchestrationContext| async move {
        let seconds = at_most(
            number_in(ctx.input()?, 3600.0)?,
            MAX_WAIT_SECONDS,
            "seconds",
        )?;
        ctx.set_custom_status("waiting");
        match ctx
            .wait_for_external_event_with_timeout("Approval", Duration::from_secs_f64(seconds))
            .await
        {
            Some(data) => {
                ctx.set_custom_status("approved");
                Ok(data)
            }
            None => {
                ctx.set_custom_status("timed out");
                Err(OrchestrationError::new(format!(
                    "no Approval event arrived within {seconds} seconds"
                )))
            }
        }
    })
    .orchestrator("FailAtStep", |ctx: OrchestrationContext| async move {
        Ok(ctx.call_activity("FlakyStep", ctx.instance_id()).await?)
    })
    .orchestrator("LongTimer", |ctx: OrchestrationContext| async move {
        let seconds = at_most(number_in(ctx.input()?, 60.0)?, MAX_WAIT_SECONDS, "seconds")?;
        let fire_at =
            ctx.current_utc_datetime() + chrono::Duration::milliseconds((seconds * 1000.0) as i64);
        ctx.create_timer(fire_at).await;
        Ok(json!(seconds))
    })
    .orchestrator("Counter", |ctx: OrchestrationContext| async move {
        let n = number_in(ctx.input()?, 0.0)? as i64;
        if n < 5 {
            ctx.set_custom_status(n);
            ctx.continue_as_new(n + 1);
        }
        Ok(json!(n))
    })
    .orchestrator("ParentChild", |ctx: OrchestrationContext| async move {
        Ok(ctx.call_sub_orchestrator("HelloSequence", None, ()).await?)
    });
}

async fn say_hello(ctx: ActivityContext) -> Result<Value, ActivityError> {
    let name: Value = ctx.input()?;
    let name = match name {
        Value::String(s) => s,
        Value::Null => "World".into(),
        other => other.to_string(),
    };
    Ok(json!(format!("Hello {name}!")))
}

async fn say_hello_to(
    ctx: &OrchestrationContext,
    cities: &[&str],
) -> Result<Value, OrchestrationError> {
    let mut out = Vec::with_capacity(cities.len());
    for city in cities {
        out.push(ctx.call_activity("SayHello", city).await?);
    }
    Ok(Value::Array(out))
}

/// A number from JSON input; also accepts a number written as a string (the Python client
/// JSON-encodes inputs twice), and `null` for the default.
fn number_in(input: Value, default: f64) -> Result<f64, OrchestrationError> {
    let n = match &input {
        Value::Null => Some(default),
        Value::Number(n) => n.as_f64(),
        Value::String(s) if s.trim().is_empty() => Some(default),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    n.filter(|n| n.is_finite() && *n >= 0.0).ok_or_else(|| {
        OrchestrationError::new(format!(
            "expected a non-negative number as input, got {input}"
        ))
    })
}

/// A sample's input bound: `n` itself, or a failure that says the bound.
fn at_most(n: f64, max: f64, what: &str) -> Result<f64, OrchestrationError> {
    if n <= max {
        Ok(n)
    } else {
        Err(OrchestrationError::new(format!(
            "the input asks for {n} {what}; this sample takes at most {max}"
        )))
    }
}

/// `SlowSequence`'s and `Sleep`'s input: milliseconds per step, default 1000, at most a minute.
fn step_millis(input: Value) -> Result<u64, OrchestrationError> {
    Ok(number_in(input, 1000.0)?.min(60_000.0).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_inputs_are_bounded() {
        assert_eq!(at_most(1000.0, MAX_FAN_OUT, "branches").unwrap(), 1000.0);
        let e = at_most(1e7, MAX_FAN_OUT, "branches").unwrap_err();
        assert_eq!(
            e.message,
            "the input asks for 10000000 branches; this sample takes at most 1000"
        );
        assert!(at_most(1e300, MAX_WAIT_SECONDS, "seconds").is_err());
    }

    #[test]
    fn unregister_removes_every_sample_and_keeps_the_apps_own() {
        let mut r = registry();
        r.orchestrator("Mine", |_ctx: OrchestrationContext| async move {
            Ok(Value::Null)
        });
        unregister(&mut r);
        assert_eq!(r.orchestrator_names(), vec!["Mine"]);
        assert!(r.get_activity("SayHello").is_none());
    }

    #[test]
    fn numbers_may_come_as_strings() {
        assert_eq!(number_in(json!(3), 1.0).unwrap(), 3.0);
        assert_eq!(number_in(json!("30"), 1.0).unwrap(), 30.0);
        assert_eq!(number_in(Value::Null, 7.0).unwrap(), 7.0);
        assert!(number_in(json!("x"), 1.0).is_err());
        assert!(number_in(json!(-1), 1.0).is_err());
    }

    #[test]
    fn every_documented_name_is_registered() {
        let r = registry();
        for name in [
            "HelloSequence",
            "E1_HelloSequence",
            "HelloCities5",
            "SlowSequence",
            "FanOutFanIn",
            "WaitForApproval",
            "FailAtStep",
            "LongTimer",
            "Counter",
            "ParentChild",
        ] {
            assert!(r.has_orchestrator(name), "{name}");
        }
        assert!(r.get_activity("E1_SayHello").is_some());
        assert!(r.get_activity("Sleep").is_some());
    }

    #[test]
    fn step_millis_defaults_to_a_second_and_is_at_most_a_minute() {
        assert_eq!(step_millis(Value::Null).unwrap(), 1000);
        assert_eq!(step_millis(json!("50")).unwrap(), 50);
        assert_eq!(step_millis(json!(0)).unwrap(), 0);
        assert_eq!(step_millis(json!(90_000)).unwrap(), 60_000);
        assert!(step_millis(json!(-5)).is_err());
    }
}
