//! Replay: a pure, synchronous function from (history, new events) to (new events, actions,
//! outcome).
//!
//! The orchestrator is re-run from the start against its history. Each scheduling call takes the
//! next action id; each recorded "scheduled" event (TaskScheduled, TimerCreated, …) must match the
//! action with its id, or the instance fails with a non-determinism error. Result events deliver
//! to the futures waiting on them. Actions history has not seen yet are the episode's decisions.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use chrono::{DateTime, Utc};
use futures::future::LocalBoxFuture;
use futures::task::{waker, ArcWake};

use super::context::{Action, ContextState, OrchestrationContext, TaskFailure};
use super::registry::{OrchestrationResult, OrchestratorFn};
use crate::model::{EventKind, FailureDetails, HistoryEvent, RuntimeStatus, REWOUND_PREFIX};

/// How an episode leaves the instance.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Running,
    Completed {
        output: Option<String>,
    },
    Failed {
        failure: FailureDetails,
    },
    /// The next execution starts with `input`; `carryover` are events nobody awaited yet.
    ContinuedAsNew {
        input: Option<String>,
        carryover: Vec<HistoryEvent>,
    },
    Terminated {
        reason: Option<String>,
    },
}

impl Outcome {
    pub fn runtime_status(&self, suspended: bool) -> RuntimeStatus {
        match self {
            Outcome::Running if suspended => RuntimeStatus::Suspended,
            Outcome::Running => RuntimeStatus::Running,
            Outcome::Completed { .. } => RuntimeStatus::Completed,
            Outcome::Failed { .. } => RuntimeStatus::Failed,
            Outcome::ContinuedAsNew { .. } => RuntimeStatus::ContinuedAsNew,
            Outcome::Terminated { .. } => RuntimeStatus::Terminated,
        }
    }

    pub fn is_terminal(&self) -> bool {
        !matches!(self, Outcome::Running | Outcome::ContinuedAsNew { .. })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct EpisodeResult {
    /// Events to append to history: OrchestratorStarted, the new events, the new actions'
    /// events, the completion event, OrchestratorCompleted.
    pub new_events: Vec<HistoryEvent>,
    /// New side effects, in id order.
    pub actions: Vec<Action>,
    pub custom_status: Option<String>,
    pub outcome: Outcome,
    pub suspended: bool,
    /// Name and input as the ExecutionStarted event records them.
    pub name: String,
    pub input: Option<String>,
}

/// Runs one episode. `orchestrator` is `None` when the name in history is not registered.
pub fn run_episode(
    orchestrator: Option<&OrchestratorFn>,
    instance_id: &str,
    history: &[HistoryEvent],
    new_events: &[HistoryEvent],
    now: DateTime<Utc>,
) -> EpisodeResult {
    let mut r = Replayer::new(orchestrator, instance_id);
    r.ctx.state.borrow_mut().is_replaying = true;
    for e in history {
        r.apply(e);
        if r.outcome.is_some() {
            break;
        }
    }
    r.ctx.state.borrow_mut().is_replaying = false;

    let mut appended = vec![HistoryEvent::new(-1, now, EventKind::OrchestratorStarted)];
    if r.outcome.is_none() {
        r.apply(&appended[0]);
    }
    let mut unapplied = new_events.iter();
    for e in unapplied.by_ref() {
        appended.push(e.clone());
        r.apply(e);
        if r.outcome.is_some() {
            break;
        }
    }
    r.finish(appended, unapplied.as_slice(), now)
}

struct Flag(AtomicBool);

impl ArcWake for Flag {
    fn wake_by_ref(arc_self: &Arc<Self>) {
        arc_self.0.store(true, Ordering::SeqCst);
    }
}

struct Replayer<'a> {
    orchestrator: Option<&'a OrchestratorFn>,
    ctx: OrchestrationContext,
    future: Option<LocalBoxFuture<'static, OrchestrationResult>>,
    woken: Arc<Flag>,
    /// Set once the orchestrator returned, failed, was terminated or proved non-deterministic.
    outcome: Option<Outcome>,
    suspended: bool,
    deferred: Vec<HistoryEvent>,
    started: bool,
}

impl<'a> Replayer<'a> {
    fn new(orchestrator: Option<&'a OrchestratorFn>, instance_id: &str) -> Self {
        let state = ContextState::for_instance(instance_id);
        Self {
            orchestrator,
            ctx: OrchestrationContext::new(state),
            future: None,
            woken: Arc::new(Flag(AtomicBool::new(false))),
            outcome: None,
            suspended: false,
            deferred: Vec::new(),
            started: false,
        }
    }

    fn apply(&mut self, e: &HistoryEvent) {
        if self.outcome.is_some() {
            return;
        }
        if self.suspended
            && !matches!(
                e.kind,
                EventKind::ExecutionResumed { .. } | EventKind::ExecutionTerminated { .. }
            )
        {
            self.deferred.push(e.clone());
            return;
        }
        match &e.kind {
            EventKind::ExecutionStarted {
                name,
                execution_id,
                input,
                ..
            } => {
                if self.started {
                    return;
                }
                self.started = true;
                {
                    let mut s = self.ctx.state.borrow_mut();
                    s.name = name.clone();
                    s.execution_id = execution_id.clone();
                    s.input = input.clone();
                }
                match self.orchestrator {
                    Some(f) => {
                        self.future = Some(f(self.ctx.clone()));
                        self.woken.0.store(true, Ordering::SeqCst);
                    }
                    None => {
                        self.outcome = Some(Outcome::Failed {
                            failure: FailureDetails::new(
                                "OrchestratorNotFound",
                                format!("The orchestrator function '{name}' is not registered"),
                            ),
                        })
                    }
                }
            }
            EventKind::OrchestratorStarted => {
                self.ctx.state.borrow_mut().current_time = e.timestamp;
            }
            EventKind::TaskScheduled { name, .. } => self.match_action(
                e,
                |a| matches!(a, Action::ScheduleActivity { name: n, .. } if n == name),
            ),
            EventKind::TimerCreated { .. } => {
                self.match_action(e, |a| matches!(a, Action::CreateTimer { .. }))
            }
            EventKind::SubOrchestrationInstanceCreated { name, .. } => self.match_action(
                e,
                |a| matches!(a, Action::StartSubOrchestration { name: n, .. } if n == name),
            ),
            EventKind::EventSent { name, .. } => self.match_action(
                e,
                |a| matches!(a, Action::SendEvent { name: n, .. } if n == name),
            ),
            EventKind::TaskCompleted {
                task_scheduled_id,
                result,
            }
            | EventKind::SubOrchestrationInstanceCompleted {
                task_scheduled_id,
                result,
            } => self.deliver(*task_scheduled_id, Ok(result.clone())),
            EventKind::TaskFailed {
                task_scheduled_id,
                reason,
                failure_details,
                ..
            }
            | EventKind::SubOrchestrationInstanceFailed {
                task_scheduled_id,
                reason,
                failure_details,
                ..
            } => {
                let failure = match failure_details {
                    Some(f) => TaskFailure {
                        error_type: f.error_type.clone(),
                        message: f.error_message.clone(),
                    },
                    None => TaskFailure {
                        error_type: "TaskFailedException".into(),
                        message: reason.clone().unwrap_or_default(),
                    },
                };
                self.deliver(*task_scheduled_id, Err(failure))
            }
            EventKind::TimerFired { timer_id, .. } => self.deliver(*timer_id, Ok(None)),
            EventKind::EventRaised { name, input } => {
                self.ctx.state.borrow_mut().raise_event(name, input.clone());
            }
            EventKind::ExecutionTerminated { input } => {
                self.outcome = Some(Outcome::Terminated {
                    reason: input.clone(),
                });
            }
            EventKind::ExecutionSuspended { .. } => self.suspended = true,
            EventKind::ExecutionResumed { .. } => {
                self.suspended = false;
                for d in std::mem::take(&mut self.deferred) {
                    self.apply(&d);
                }
            }
            EventKind::ExecutionCompleted { .. }
            | EventKind::ContinueAsNew { .. }
            | EventKind::OrchestratorCompleted
            | EventKind::GenericEvent { .. }
            | EventKind::ExecutionRewound { .. } => {}
        }
        self.poll();
    }

    /// A recorded "scheduled" event must match the code's action with the same id.
    fn match_action(&mut self, e: &HistoryEvent, same: impl Fn(&Action) -> bool) {
        let mut s = self.ctx.state.borrow_mut();
        match s.pending_actions.get(&e.event_id) {
            Some(a) if same(a) => {
                s.pending_actions.remove(&e.event_id);
            }
            found => {
                let found = found
                    .map(|a| format!("{a:?}"))
                    .unwrap_or_else(|| "nothing".into());
                drop(s);
                self.outcome = Some(Outcome::Failed {
                    failure: FailureDetails::new(
                        "NonDeterministicOrchestration",
                        format!(
                            "Non-deterministic orchestrator: history has {} with id {} ({:?}) but the code scheduled {found} at that point",
                            e.event_type(),
                            e.event_id,
                            e.kind
                        ),
                    ),
                });
            }
        }
    }

    fn deliver(&mut self, id: i32, outcome: Result<Option<String>, TaskFailure>) {
        // A result for a task nobody scheduled in this execution (a duplicate, or a response
        // that outlived a rewind) is ignored rather than failing the instance.
        self.ctx.state.borrow_mut().deliver(id, outcome);
    }

    fn poll(&mut self) {
        while self.outcome.is_none() && self.woken.0.swap(false, Ordering::SeqCst) {
            let Some(fut) = self.future.as_mut() else {
                return;
            };
            let w = waker(self.woken.clone());
            let mut cx = Context::from_waker(&w);
            let polled = catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(&mut cx)));
            let result = match polled {
                Ok(Poll::Pending) => continue,
                Ok(Poll::Ready(r)) => r.map_err(|e| FailureDetails::new(e.error_type, e.message)),
                Err(panic) => Err(FailureDetails::new(
                    "OrchestratorPanic",
                    panic_message(panic.as_ref()),
                )),
            };
            self.future = None;
            let continue_as_new = self.ctx.state.borrow_mut().continue_as_new.take();
            self.outcome = Some(match (result, continue_as_new) {
                (Ok(_), Some(input)) => Outcome::ContinuedAsNew {
                    input,
                    carryover: Vec::new(),
                },
                (Ok(v), None) => Outcome::Completed {
                    output: Some(v.to_string()).filter(|t| t != "null"),
                },
                (Err(failure), _) => Outcome::Failed { failure },
            });
        }
    }

    /// `unapplied`: new events that arrived after the orchestrator had finished.
    fn finish(
        mut self,
        mut appended: Vec<HistoryEvent>,
        unapplied: &[HistoryEvent],
        now: DateTime<Utc>,
    ) -> EpisodeResult {
        if !self.started && self.outcome.is_none() {
            // Messages for an execution that has not started (or was purged): nothing to run.
            self.outcome = Some(Outcome::Failed {
                failure: FailureDetails::new(
                    "ExecutionNotStarted",
                    "messages arrived for an instance that has no ExecutionStarted event",
                ),
            });
        }
        let mut outcome = self.outcome.take().unwrap_or(Outcome::Running);
        let mut s = self.ctx.state.borrow_mut();
        if let Some(failure) = too_many_actions(s.pending_actions.len()) {
            s.pending_actions.clear();
            outcome = Outcome::Failed { failure };
        }
        let terminal = outcome.is_terminal();
        let actions: Vec<Action> = std::mem::take(&mut s.pending_actions)
            .into_values()
            .filter(|a| !terminal || matches!(a, Action::SendEvent { .. }))
            .collect();
        for a in &actions {
            appended.push(action_event(a, now));
        }
        let outcome = match outcome {
            Outcome::ContinuedAsNew { input, .. } => {
                let carryover = std::mem::take(&mut s.buffered_events)
                    .into_values()
                    .flatten()
                    .map(|(name, input)| {
                        HistoryEvent::new(-1, now, EventKind::EventRaised { name, input })
                    })
                    .chain(
                        unapplied
                            .iter()
                            .filter(|e| matches!(e.kind, EventKind::EventRaised { .. }))
                            .cloned(),
                    )
                    .collect();
                Outcome::ContinuedAsNew { input, carryover }
            }
            other => other,
        };
        if let Some(kind) = completion_event(&outcome) {
            appended.push(HistoryEvent::new(-1, now, kind));
        }
        appended.push(HistoryEvent::new(-1, now, EventKind::OrchestratorCompleted));
        EpisodeResult {
            new_events: appended,
            actions,
            custom_status: s.custom_status.clone(),
            outcome,
            suspended: self.suspended,
            name: s.name.clone(),
            input: s.input.clone(),
        }
    }
}

/// At most this many new steps (activities, timers, sub-orchestrations, events sent) in one
/// episode. Each is a history row and a message written in one commit; an orchestrator that
/// schedules more (a fan-out over an unbounded input, say) fails with the reason instead of
/// exhausting the server's memory and its store's transaction.
pub const MAX_NEW_ACTIONS: usize = 50_000;

/// Why an episode with `count` new actions cannot be committed, if it cannot.
pub(super) fn too_many_actions(count: usize) -> Option<FailureDetails> {
    (count > MAX_NEW_ACTIONS).then(|| {
        FailureDetails::new(
            "TooManyActions",
            format!(
                "The orchestrator scheduled {count} new steps in one episode; at most {MAX_NEW_ACTIONS} are allowed. Schedule large fan-outs in batches (or in sub-orchestrations)."
            ),
        )
    })
}

pub(super) fn action_event(a: &Action, now: DateTime<Utc>) -> HistoryEvent {
    let kind = match a.clone() {
        Action::ScheduleActivity { name, input, .. } => EventKind::TaskScheduled { name, input },
        Action::CreateTimer { fire_at, .. } => EventKind::TimerCreated { fire_at },
        Action::StartSubOrchestration {
            name,
            instance_id,
            input,
            ..
        } => EventKind::SubOrchestrationInstanceCreated {
            name,
            instance_id,
            input,
        },
        Action::SendEvent {
            instance_id,
            name,
            input,
            ..
        } => EventKind::EventSent {
            instance_id,
            name,
            input,
        },
    };
    HistoryEvent::new(a.id(), now, kind)
}

pub(super) fn completion_event(outcome: &Outcome) -> Option<EventKind> {
    Some(match outcome {
        Outcome::Running => return None,
        Outcome::Completed { output } => EventKind::ExecutionCompleted {
            orchestration_status: RuntimeStatus::Completed,
            result: output.clone(),
            failure_details: None,
        },
        Outcome::Failed { failure } => EventKind::ExecutionCompleted {
            orchestration_status: RuntimeStatus::Failed,
            result: Some(failure.error_message.clone()),
            failure_details: Some(failure.clone()),
        },
        Outcome::ContinuedAsNew { input, .. } => EventKind::ContinueAsNew {
            result: input.clone(),
        },
        Outcome::Terminated { reason } => EventKind::ExecutionCompleted {
            orchestration_status: RuntimeStatus::Terminated,
            result: reason.clone(),
            failure_details: None,
        },
    })
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        format!("orchestrator panicked: {s}")
    } else if let Some(s) = panic.downcast_ref::<String>() {
        format!("orchestrator panicked: {s}")
    } else {
        "orchestrator panicked".into()
    }
}

/// How this execution's history ended, if it did: its ExecutionCompleted status.
pub fn ended_as(history: &[HistoryEvent]) -> Option<RuntimeStatus> {
    history.iter().rev().find_map(|e| match &e.kind {
        EventKind::ExecutionCompleted {
            orchestration_status,
            ..
        } => Some(*orchestration_status),
        _ => None,
    })
}

/// The history a rewind continues from, and the failed sub-orchestrations to rewind with it.
#[derive(Clone, Debug, PartialEq)]
pub struct Rewind {
    pub history: Vec<HistoryEvent>,
    pub failed_children: Vec<String>,
}

/// Takes the failure back out of a Failed execution's history. Failed tasks, and tasks or timers
/// whose results never arrived (they were dropped once the instance had failed), are marked
/// rewound (`GenericEvent` "Rewound: …", id kept) so replay schedules them again. A failed
/// sub-orchestration keeps its creation event: the child itself is rewound and reports again.
pub fn rewind_history(history: &[HistoryEvent]) -> Rewind {
    use std::collections::HashSet;
    let mut answered: HashSet<i32> = HashSet::new();
    let mut failed_sub: HashSet<i32> = HashSet::new();
    for e in history {
        match &e.kind {
            EventKind::TaskCompleted {
                task_scheduled_id, ..
            }
            | EventKind::SubOrchestrationInstanceCompleted {
                task_scheduled_id, ..
            } => {
                answered.insert(*task_scheduled_id);
            }
            EventKind::SubOrchestrationInstanceFailed {
                task_scheduled_id, ..
            } => {
                failed_sub.insert(*task_scheduled_id);
            }
            EventKind::TimerFired { timer_id, .. } => {
                answered.insert(*timer_id);
            }
            _ => {}
        }
    }
    let mut failed_children = Vec::new();
    let rewound = |e: &HistoryEvent| {
        HistoryEvent::new(
            e.event_id,
            e.timestamp,
            EventKind::GenericEvent {
                data: Some(format!("{REWOUND_PREFIX}{}", e.event_type())),
            },
        )
    };
    let history = history
        .iter()
        .map(|e| match &e.kind {
            EventKind::TaskScheduled { .. } | EventKind::TimerCreated { .. }
                if !answered.contains(&e.event_id) =>
            {
                rewound(e)
            }
            EventKind::SubOrchestrationInstanceCreated { instance_id, .. } => {
                if failed_sub.contains(&e.event_id) {
                    failed_children.push(instance_id.clone());
                    e.clone()
                } else if answered.contains(&e.event_id) {
                    e.clone()
                } else {
                    rewound(e)
                }
            }
            EventKind::TaskFailed { .. }
            | EventKind::SubOrchestrationInstanceFailed { .. }
            | EventKind::ExecutionCompleted {
                orchestration_status: RuntimeStatus::Failed,
                ..
            } => rewound(e),
            _ => e.clone(),
        })
        .collect();
    Rewind {
        history,
        failed_children,
    }
}

/// How many times the task with this id ran before: 1 + the number of its rewound schedules.
pub fn attempt_of(history: &[HistoryEvent], task_id: i32) -> u32 {
    let marker = format!("{REWOUND_PREFIX}TaskScheduled");
    1 + history
        .iter()
        .filter(|e| {
            e.event_id == task_id
                && matches!(&e.kind, EventKind::GenericEvent { data: Some(d) } if *d == marker)
        })
        .count() as u32
}
