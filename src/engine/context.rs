//! The API orchestrator and activity code is written against.
//!
//! An [`OrchestrationContext`] is handed to an orchestrator on every replay. Every scheduling call
//! (`call_activity`, `create_timer`, …) takes the next action id at the moment it is called, which
//! is what lets replay match the code's actions to the recorded history. The futures it returns
//! resolve only when replay delivers the matching result event.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// A side effect the orchestrator asked for, keyed by its action (event) id.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    ScheduleActivity {
        id: i32,
        name: String,
        input: Option<String>,
    },
    CreateTimer {
        id: i32,
        fire_at: DateTime<Utc>,
    },
    StartSubOrchestration {
        id: i32,
        name: String,
        instance_id: String,
        input: Option<String>,
    },
    SendEvent {
        id: i32,
        instance_id: String,
        name: String,
        input: Option<String>,
    },
}

impl Action {
    pub fn id(&self) -> i32 {
        match self {
            Self::ScheduleActivity { id, .. }
            | Self::CreateTimer { id, .. }
            | Self::StartSubOrchestration { id, .. }
            | Self::SendEvent { id, .. } => *id,
        }
    }
}

/// A failed activity or sub-orchestration, as the awaiting orchestrator sees it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{error_type}: {message}")]
pub struct TaskFailure {
    pub error_type: String,
    pub message: String,
}

/// The outcome of a scheduled task as replay delivers it.
pub(crate) type TaskOutcome = Result<Option<String>, TaskFailure>;

/// Retry policy for [`OrchestrationContext::call_activity_with_retry`].
#[derive(Clone, Debug)]
pub struct RetryOptions {
    pub first_retry_interval: Duration,
    pub max_number_of_attempts: u32,
    pub backoff_coefficient: f64,
    pub max_retry_interval: Duration,
}

impl RetryOptions {
    pub fn new(first_retry_interval: Duration, max_number_of_attempts: u32) -> Self {
        Self {
            first_retry_interval,
            max_number_of_attempts,
            backoff_coefficient: 1.0,
            max_retry_interval: Duration::from_secs(6 * 3600),
        }
    }

    fn delay_before(&self, retry: u32) -> Duration {
        let factor = self.backoff_coefficient.max(1.0).powi(retry as i32 - 1);
        self.first_retry_interval
            .mul_f64(factor)
            .min(self.max_retry_interval)
    }
}

#[derive(Default)]
pub(crate) struct ContextState {
    pub instance_id: String,
    pub execution_id: String,
    pub name: String,
    pub input: Option<String>,
    pub current_time: DateTime<Utc>,
    pub is_replaying: bool,
    next_action_id: i32,
    /// Actions the code produced that history has not (yet) accounted for, by id.
    pub pending_actions: BTreeMap<i32, Action>,
    results: HashMap<i32, TaskOutcome>,
    wakers: HashMap<i32, Waker>,
    /// Waiters by lower-cased event name, oldest first (event names are case-insensitive).
    event_waiters: HashMap<String, VecDeque<i32>>,
    /// Events that arrived with nobody waiting, by lower-cased name, in arrival order.
    pub buffered_events: HashMap<String, VecDeque<(String, Option<String>)>>,
    event_results: HashMap<i32, Option<String>>,
    next_waiter_id: i32,
    pub custom_status: Option<String>,
    pub continue_as_new: Option<Option<String>>,
    guid_counter: u32,
}

impl ContextState {
    pub(crate) fn for_instance(instance_id: &str) -> Self {
        Self {
            instance_id: instance_id.to_string(),
            ..Self::default()
        }
    }

    fn next_id(&mut self) -> i32 {
        let id = self.next_action_id;
        self.next_action_id += 1;
        id
    }

    pub(crate) fn deliver(&mut self, id: i32, outcome: TaskOutcome) -> bool {
        if self.results.contains_key(&id) {
            return false;
        }
        self.results.insert(id, outcome);
        if let Some(w) = self.wakers.remove(&id) {
            w.wake();
        }
        true
    }

    pub(crate) fn raise_event(&mut self, name: &str, input: Option<String>) {
        let key = name.to_lowercase();
        if let Some(waiter) = self
            .event_waiters
            .get_mut(&key)
            .and_then(VecDeque::pop_front)
        {
            self.event_results.insert(waiter, input);
            if let Some(w) = self.wakers.remove(&-waiter) {
                w.wake();
            }
        } else {
            self.buffered_events
                .entry(key)
                .or_default()
                .push_back((name.to_string(), input));
        }
    }
}

/// The orchestrator's handle to its durable state. Cheap to clone.
#[derive(Clone)]
pub struct OrchestrationContext {
    pub(crate) state: Rc<RefCell<ContextState>>,
}

impl OrchestrationContext {
    pub(crate) fn new(state: ContextState) -> Self {
        Self {
            state: Rc::new(RefCell::new(state)),
        }
    }

    pub fn instance_id(&self) -> String {
        self.state.borrow().instance_id.clone()
    }

    pub fn name(&self) -> String {
        self.state.borrow().name.clone()
    }

    /// The raw JSON text of the input (`None` for no input).
    pub fn raw_input(&self) -> Option<String> {
        self.state.borrow().input.clone()
    }

    /// The input deserialized into `T`; no input reads as JSON `null`.
    pub fn input<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        let raw = self.raw_input();
        serde_json::from_str(raw.as_deref().unwrap_or("null"))
    }

    /// Replay-safe current time: the time the current episode started.
    pub fn current_utc_datetime(&self) -> DateTime<Utc> {
        self.state.borrow().current_time
    }

    pub fn is_replaying(&self) -> bool {
        self.state.borrow().is_replaying
    }

    /// A guid that is the same on every replay (name-based, like Durable Functions' NewGuid).
    pub fn new_guid(&self) -> String {
        let mut s = self.state.borrow_mut();
        let name = format!(
            "{}_{}_{}",
            s.instance_id,
            s.current_time.to_rfc3339_opts(SecondsFormat::Nanos, true),
            s.guid_counter
        );
        s.guid_counter += 1;
        const NAMESPACE: uuid::Uuid = uuid::uuid!("9e952958-5e33-4daf-827f-2fa12937b875");
        uuid::Uuid::new_v5(&NAMESPACE, name.as_bytes())
            .hyphenated()
            .to_string()
    }

    pub fn set_custom_status(&self, status: impl Serialize) {
        let text = serde_json::to_string(&status).ok();
        self.state.borrow_mut().custom_status = text.filter(|t| t != "null");
    }

    /// Ends this execution when the orchestrator returns, and starts a new one with `input`.
    /// Events that arrived but were not awaited carry over to the new execution.
    pub fn continue_as_new(&self, input: impl Serialize) {
        let text = serde_json::to_string(&input).ok();
        self.state.borrow_mut().continue_as_new = Some(text);
    }

    pub fn call_activity(&self, name: &str, input: impl Serialize) -> TaskFuture {
        let mut s = self.state.borrow_mut();
        let id = s.next_id();
        s.pending_actions.insert(
            id,
            Action::ScheduleActivity {
                id,
                name: name.to_string(),
                input: to_json_text(&input),
            },
        );
        TaskFuture {
            state: self.state.clone(),
            id,
        }
    }

    /// Calls an activity and retries it on failure, waiting on durable timers between attempts.
    pub async fn call_activity_with_retry(
        &self,
        name: &str,
        retry: RetryOptions,
        input: impl Serialize,
    ) -> Result<Value, TaskFailure> {
        let input = serde_json::to_value(&input).unwrap_or(Value::Null);
        let mut attempt = 1;
        loop {
            match self.call_activity(name, &input).await {
                Ok(v) => return Ok(v),
                Err(e) if attempt >= retry.max_number_of_attempts => return Err(e),
                Err(_) => {
                    let delay = retry.delay_before(attempt);
                    let fire_at = self.current_utc_datetime()
                        + chrono::Duration::from_std(delay).unwrap_or_default();
                    self.create_timer(fire_at).await;
                    attempt += 1;
                }
            }
        }
    }

    /// Starts a sub-orchestration and resolves with its output. Without an explicit id the
    /// child gets `{parent id}:{action id}`, which is the same on every replay.
    pub fn call_sub_orchestrator(
        &self,
        name: &str,
        instance_id: Option<&str>,
        input: impl Serialize,
    ) -> TaskFuture {
        let mut s = self.state.borrow_mut();
        let id = s.next_id();
        let child_id = instance_id
            .map(str::to_string)
            .unwrap_or_else(|| format!("{}:{id:04}", s.instance_id));
        s.pending_actions.insert(
            id,
            Action::StartSubOrchestration {
                id,
                name: name.to_string(),
                instance_id: child_id,
                input: to_json_text(&input),
            },
        );
        TaskFuture {
            state: self.state.clone(),
            id,
        }
    }

    /// A durable timer: survives restarts, fires at `fire_at`.
    pub fn create_timer(&self, fire_at: DateTime<Utc>) -> TimerFuture {
        let mut s = self.state.borrow_mut();
        let id = s.next_id();
        s.pending_actions
            .insert(id, Action::CreateTimer { id, fire_at });
        TimerFuture(TaskFuture {
            state: self.state.clone(),
            id,
        })
    }

    /// Resolves with the data of the next event named `name` (case-insensitive). Events raised
    /// before anyone waited are buffered and handed out in arrival order.
    pub fn wait_for_external_event(&self, name: &str) -> EventFuture {
        let mut s = self.state.borrow_mut();
        s.next_waiter_id += 1;
        let waiter = s.next_waiter_id;
        let key = name.to_lowercase();
        match s
            .buffered_events
            .get_mut(&key)
            .and_then(VecDeque::pop_front)
        {
            Some((_, data)) => {
                s.event_results.insert(waiter, data);
            }
            None => s
                .event_waiters
                .entry(key.clone())
                .or_default()
                .push_back(waiter),
        }
        EventFuture {
            state: self.state.clone(),
            waiter,
            key,
            done: false,
        }
    }

    /// Like [`wait_for_external_event`](Self::wait_for_external_event), but gives up at a durable
    /// timer `timeout` after the current time: `None` means the time ran out.
    pub async fn wait_for_external_event_with_timeout(
        &self,
        name: &str,
        timeout: Duration,
    ) -> Option<Value> {
        let fire_at =
            self.current_utc_datetime() + chrono::Duration::from_std(timeout).unwrap_or_default();
        let timer = self.create_timer(fire_at);
        let event = self.wait_for_external_event(name);
        match futures::future::select(event, timer).await {
            futures::future::Either::Left((data, _)) => Some(data),
            futures::future::Either::Right(_) => None,
        }
    }

    /// Sends an event to another instance (fire and forget).
    pub fn send_event(&self, instance_id: &str, name: &str, input: impl Serialize) {
        let mut s = self.state.borrow_mut();
        let id = s.next_id();
        s.pending_actions.insert(
            id,
            Action::SendEvent {
                id,
                instance_id: instance_id.to_string(),
                name: name.to_string(),
                input: to_json_text(&input),
            },
        );
    }
}

fn to_json_text(input: &impl Serialize) -> Option<String> {
    serde_json::to_string(input).ok().filter(|t| t != "null")
}

fn parse_output(text: Option<String>) -> Value {
    match text {
        None => Value::Null,
        Some(t) => serde_json::from_str(&t).unwrap_or(Value::String(t)),
    }
}

/// Resolves with an activity's or sub-orchestration's output as JSON.
pub struct TaskFuture {
    state: Rc<RefCell<ContextState>>,
    id: i32,
}

impl TaskFuture {
    pub fn id(&self) -> i32 {
        self.id
    }
}

impl Future for TaskFuture {
    type Output = Result<Value, TaskFailure>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut s = self.state.borrow_mut();
        match s.results.get(&self.id) {
            Some(outcome) => Poll::Ready(outcome.clone().map(parse_output)),
            None => {
                s.wakers.insert(self.id, cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

pub struct TimerFuture(TaskFuture);

impl Future for TimerFuture {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

/// Resolves with an external event's data as JSON.
pub struct EventFuture {
    state: Rc<RefCell<ContextState>>,
    waiter: i32,
    key: String,
    done: bool,
}

impl Future for EventFuture {
    type Output = Value;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Value> {
        let waiter = self.waiter;
        let taken = self.state.borrow_mut().event_results.remove(&waiter);
        match taken {
            Some(data) => {
                self.done = true;
                Poll::Ready(parse_output(data))
            }
            None => {
                // Waker ids for events are negative so they never clash with action ids.
                self.state
                    .borrow_mut()
                    .wakers
                    .insert(-waiter, cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl Drop for EventFuture {
    /// A waiter abandoned (say, the timer won a race) must not swallow a later event; an event
    /// it received but never returned goes back to the front of the buffer.
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let Ok(mut s) = self.state.try_borrow_mut() else {
            return;
        };
        s.wakers.remove(&-self.waiter);
        if let Some(queue) = s.event_waiters.get_mut(&self.key) {
            queue.retain(|w| *w != self.waiter);
        }
        if let Some(data) = s.event_results.remove(&self.waiter) {
            let key = self.key.clone();
            s.buffered_events
                .entry(key.clone())
                .or_default()
                .push_front((key, data));
        }
    }
}

/// What an activity function receives.
#[derive(Clone, Debug)]
pub struct ActivityContext {
    pub instance_id: String,
    pub name: String,
    pub input: Option<String>,
    /// 1 on the first run of this task; higher after the orchestration was rewound.
    pub attempt: u32,
}

impl ActivityContext {
    pub fn input<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.input.as_deref().unwrap_or("null"))
    }
}
