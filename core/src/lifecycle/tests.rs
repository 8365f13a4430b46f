use super::*;
use proptest::prelude::*;
use serde_json::json;

fn at(s: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
}

fn state(status: RunStatus, retries: u32) -> RunState {
    RunState {
        id: RunId::new(),
        status,
        attempt: 0,
        max_attempts: retries + 1,
        retries,
        backoff: Backoff::default(),
        timeout: Duration::from_secs(30),
        worker: None,
        worker_id: None,
        error: None,
        errors: None,
        run_at: at(0),
        finished_at: None,
    }
}

const WORKERS: [&str; 2] = ["w-1", "w-2"];

/// One random happening; worker and attempt are picked relative to the run's state so that both
/// current and stale reports occur.
#[derive(Debug, Clone)]
enum Op {
    Claim(usize),
    Report(usize, i64, u8, bool),
    Checkpoint(usize, i64),
    LeaseExpired(bool),
    WorkerStopped,
    AnswerLost,
    Due,
    EventArrived,
    Cancel,
    Retry,
    WorkflowStarted,
    WorkflowFinished(bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..2usize).prop_map(Op::Claim),
        4 => (0..2usize, -1..=1i64, 0..7u8, any::<bool>()).prop_map(|(w, d, k, r)| Op::Report(w, d, k, r)),
        1 => (0..2usize, -1..=1i64).prop_map(|(w, d)| Op::Checkpoint(w, d)),
        1 => any::<bool>().prop_map(Op::LeaseExpired),
        1 => Just(Op::WorkerStopped),
        1 => Just(Op::AnswerLost),
        2 => Just(Op::Due),
        1 => Just(Op::EventArrived),
        1 => Just(Op::Cancel),
        1 => Just(Op::Retry),
        1 => Just(Op::WorkflowStarted),
        1 => any::<bool>().prop_map(Op::WorkflowFinished),
    ]
}

fn outcome(kind: u8, retryable: bool, now: DateTime<Utc>) -> Outcome {
    match kind {
        0 => Outcome::Succeeded { output: json!(1) },
        1 => Outcome::Failed {
            error: "boom".into(),
            retryable,
        },
        2 => Outcome::TimedOut,
        3 => Outcome::Cancelled,
        4 => Outcome::HandedBack,
        5 => Outcome::WaitingForEvent {
            until: now + chrono::Duration::seconds(60),
            position: 0,
            key: "order.paid".into(),
            filter: json!({"order": 1}),
        },
        _ => Outcome::Suspended {
            until: now + chrono::Duration::seconds(60),
        },
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Random sequences of happenings: every change is legal, terminal runs stay terminal except
    /// through an explicit retry, and the columns stay consistent with the status.
    #[test]
    fn every_change_is_legal(
        start_scheduled in any::<bool>(),
        retries in 0..3u32,
        ops in proptest::collection::vec(op(), 1..40),
    ) {
        let mut st = state(if start_scheduled { RunStatus::Scheduled } else { RunStatus::Queued }, retries);
        for (i, op) in ops.iter().enumerate() {
            let now = at(i as i64 + 1);
            let attempt_of = |d: i64| (i64::from(st.attempt) + d).max(0) as u32;
            let out;
            let step;
            let happened = match *op {
                Op::Claim(w) => Happening::Claimed { worker_id: WORKERS[w], worker: WORKERS[w] },
                Op::Report(w, d, kind, retryable) => {
                    out = outcome(kind, retryable, now);
                    Happening::Reported { worker_id: WORKERS[w], attempt: attempt_of(d), outcome: &out }
                }
                Op::Checkpoint(w, d) => {
                    step = StepCheckpoint {
                        run_id: st.id,
                        attempt: attempt_of(d),
                        position: 0,
                        name: "s".into(),
                        status: StepStatus::Running,
                        output: None,
                        error: None,
                    };
                    Happening::Checkpoint { worker_id: WORKERS[w], worker: WORKERS[w], step: &step, recorded: None }
                }
                Op::LeaseExpired(deadline) => Happening::LeaseExpired { deadline_passed: deadline },
                Op::WorkerStopped => Happening::WorkerStopped,
                Op::AnswerLost => Happening::AnswerLost,
                Op::Due => Happening::Due,
                Op::EventArrived => Happening::EventArrived { key: "order.paid", id: "e-1" },
                Op::Cancel => Happening::Cancel,
                Op::Retry => Happening::Retry,
                Op::WorkflowStarted => Happening::WorkflowStarted,
                Op::WorkflowFinished(ok) => Happening::WorkflowFinished { error: (!ok).then_some("task \"b\" failed") },
            };
            let before = st.clone();
            match decide(&st, happened, now) {
                Ok(Some(c)) => {
                    prop_assert!(c.is_legal(), "{:?} -> {:?} on {:?}", c.from, c.status, op);
                    prop_assert_eq!(c.from, before.status);
                    prop_assert_eq!(c.event.from, Some(before.status));
                    prop_assert_eq!(c.event.to, c.status);
                    prop_assert!(!c.event.reason.is_empty());
                    if before.status.is_terminal() {
                        prop_assert!(matches!(op, Op::Retry), "{:?} left terminal {:?}", op, before.status);
                    }
                    if matches!(op, Op::Retry) {
                        prop_assert!(before.status.can_retry());
                        prop_assert_eq!(c.max_attempts, before.attempt + before.retries + 1);
                    }
                    if let Op::Report(_, _, 1, false) = op {
                        prop_assert_eq!(c.status, RunStatus::Failed, "a fatal error fails at once");
                        prop_assert!(c.event.reason.contains("not retryable"));
                    }
                    if let Op::Report(_, _, 1 | 2, true) = op {
                        prop_assert_eq!(
                            c.status == RunStatus::Failed,
                            before.attempt >= before.max_attempts,
                            "a retryable error fails the run only on its last attempt"
                        );
                    }
                    c.follow(&mut st);
                    prop_assert!(st.attempt <= st.max_attempts, "{} > {}", st.attempt, st.max_attempts);
                    prop_assert_eq!(st.finished_at.is_some(), st.status.is_terminal());
                    if st.status == RunStatus::Running {
                        // Held by a worker, or a workflow run the engine started.
                        prop_assert!(st.worker_id.is_some() || matches!(op, Op::WorkflowStarted) || before.status == RunStatus::Running);
                    }
                    if matches!(st.status, RunStatus::Queued | RunStatus::Scheduled) {
                        prop_assert!(st.worker_id.is_none());
                    }
                }
                Ok(None) => {
                    // Nothing to do: only for a happening that does not apply to this state.
                    let applies = match *op {
                        Op::Claim(_) => before.status == RunStatus::Queued,
                        Op::Due | Op::EventArrived => before.status == RunStatus::Scheduled,
                        Op::LeaseExpired(_) | Op::WorkerStopped | Op::AnswerLost => {
                            before.status == RunStatus::Running
                        }
                        Op::Report(w, d, _, _) => before.status == RunStatus::Running
                            && before.worker_id.as_deref() == Some(WORKERS[w])
                            && before.attempt == attempt_of(d),
                        Op::Checkpoint(..) | Op::Cancel | Op::Retry => true,
                        Op::WorkflowStarted => before.status == RunStatus::Queued,
                        Op::WorkflowFinished(_) => before.status == RunStatus::Running && before.worker_id.is_none(),
                    };
                    prop_assert!(!applies, "{:?} ignored in {:?}", op, before);
                }
                Err(Error::InvalidTransition { status, .. }) => {
                    prop_assert_eq!(status, before.status);
                    prop_assert!(matches!(op, Op::Checkpoint(..) | Op::Cancel | Op::Retry));
                }
                Err(e) => prop_assert!(false, "unexpected error {e}"),
            }
        }
    }
}

fn running(retries: u32) -> RunState {
    let mut st = state(RunStatus::Queued, retries);
    decide(
        &st,
        Happening::Claimed {
            worker_id: "w",
            worker: "worker-a",
        },
        at(1),
    )
    .unwrap()
    .unwrap()
    .follow(&mut st);
    st
}

#[test]
fn a_claim_starts_an_attempt() {
    let st = running(2);
    assert_eq!(st.status, RunStatus::Running);
    assert_eq!(st.attempt, 1);
    assert_eq!(st.worker.as_deref(), Some("worker-a"));
}

#[test]
fn a_retryable_failure_backs_off_and_the_last_one_fails() {
    let mut st = running(1);
    let failed = Outcome::Failed {
        error: "nope".into(),
        retryable: true,
    };
    let report = |st: &RunState| Happening::Reported {
        worker_id: "w",
        attempt: st.attempt,
        outcome: &failed,
    };
    let c = decide(&st, report(&st), at(2)).unwrap().unwrap();
    assert_eq!(c.status, RunStatus::Scheduled);
    assert!(c.run_at >= at(2) + chrono::Duration::milliseconds(500));
    assert!(c
        .event
        .reason
        .starts_with("attempt 1 of 2 failed: nope; retrying in"));
    c.follow(&mut st);
    decide(&st, Happening::Due, at(5))
        .unwrap()
        .unwrap()
        .follow(&mut st);
    decide(
        &st,
        Happening::Claimed {
            worker_id: "w",
            worker: "worker-a",
        },
        at(6),
    )
    .unwrap()
    .unwrap()
    .follow(&mut st);
    let c = decide(&st, report(&st), at(7)).unwrap().unwrap();
    assert_eq!(c.status, RunStatus::Failed);
    assert_eq!(
        c.event.reason,
        "attempt 2 of 2 failed: nope; no attempt left"
    );
    let errors: Vec<AttemptError> = serde_json::from_str(c.errors.as_deref().unwrap()).unwrap();
    assert_eq!(errors.len(), 2);
}

#[test]
fn a_fatal_error_fails_at_once_and_says_so() {
    let st = running(5);
    let failed = Outcome::Failed {
        error: "card declined".into(),
        retryable: false,
    };
    let c = decide(
        &st,
        Happening::Reported {
            worker_id: "w",
            attempt: 1,
            outcome: &failed,
        },
        at(2),
    )
    .unwrap()
    .unwrap();
    assert_eq!(c.status, RunStatus::Failed);
    assert_eq!(
        c.event.reason,
        "attempt 1 failed and is not retryable: card declined"
    );
    assert_eq!(c.finished_at, Some(at(2)));
}

#[test]
fn stale_reports_are_ignored_and_stale_checkpoints_refused() {
    let st = running(1);
    let ok = Outcome::Succeeded {
        output: json!(null),
    };
    for (worker_id, attempt) in [("other", 1), ("w", 2), ("w", 0)] {
        let h = Happening::Reported {
            worker_id,
            attempt,
            outcome: &ok,
        };
        assert_eq!(decide(&st, h, at(2)).unwrap(), None);
    }
    let step = StepCheckpoint {
        run_id: st.id,
        attempt: 2,
        position: 0,
        name: "charge".into(),
        status: StepStatus::Running,
        output: None,
        error: None,
    };
    let h = Happening::Checkpoint {
        worker_id: "w",
        worker: "worker-a",
        step: &step,
        recorded: None,
    };
    assert!(matches!(
        decide(&st, h, at(2)),
        Err(Error::InvalidTransition {
            action: "checkpoint",
            ..
        })
    ));
    // The holder's checkpoint writes an event once; its resend (same status, same attempt)
    // writes none.
    let step = StepCheckpoint { attempt: 1, ..step };
    let first = Happening::Checkpoint {
        worker_id: "w",
        worker: "worker-a",
        step: &step,
        recorded: None,
    };
    let c = decide(&st, first, at(2)).unwrap().unwrap();
    assert_eq!(c.event.reason, "step 0 \"charge\" running");
    let again = Happening::Checkpoint {
        worker_id: "w",
        worker: "worker-a",
        step: &step,
        recorded: Some((StepStatus::Running, 1)),
    };
    assert_eq!(decide(&st, again, at(3)).unwrap(), None);
}

#[test]
fn lease_expiry_requeues_at_once_and_names_the_cause() {
    let st = running(1);
    let c = decide(
        &st,
        Happening::LeaseExpired {
            deadline_passed: false,
        },
        at(9),
    )
    .unwrap()
    .unwrap();
    assert_eq!(c.status, RunStatus::Queued);
    assert_eq!(c.run_at, at(9));
    assert_eq!(
        c.event.reason,
        "attempt 1 of 2: lease expired: worker worker-a stopped heartbeating; re-queued"
    );
    let c = decide(
        &st,
        Happening::LeaseExpired {
            deadline_passed: true,
        },
        at(9),
    )
    .unwrap()
    .unwrap();
    assert!(c.event.reason.contains(reason::DEADLINE));
}

#[test]
fn hand_back_and_suspend_do_not_count_the_attempt() {
    let st = running(0);
    let c = decide(
        &st,
        Happening::Reported {
            worker_id: "w",
            attempt: 1,
            outcome: &Outcome::HandedBack,
        },
        at(3),
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        (c.status, c.attempt, c.start),
        (RunStatus::Queued, 0, Start::Clear)
    );
    let until = at(3600);
    let c = decide(
        &st,
        Happening::Reported {
            worker_id: "w",
            attempt: 1,
            outcome: &Outcome::Suspended { until },
        },
        at(3),
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        (c.status, c.attempt, c.run_at),
        (RunStatus::Scheduled, 0, until)
    );
}

#[test]
fn cancel_and_retry_refuse_what_the_life_cycle_forbids() {
    let mut st = running(0);
    let c = decide(&st, Happening::Cancel, at(2)).unwrap().unwrap();
    assert_eq!(c.event.reason, reason::CANCELLED_RUNNING);
    c.follow(&mut st);
    assert!(matches!(
        decide(&st, Happening::Cancel, at(3)),
        Err(Error::InvalidTransition {
            action: "cancel",
            status: RunStatus::Cancelled,
            ..
        })
    ));
    let c = decide(&st, Happening::Retry, at(4)).unwrap().unwrap();
    assert_eq!((c.status, c.max_attempts), (RunStatus::Queued, 2));
    assert_eq!(c.event.reason, "manual retry: 1 more attempt(s)");
    c.follow(&mut st);
    assert!(matches!(
        decide(&st, Happening::Retry, at(5)),
        Err(Error::InvalidTransition {
            action: "retry",
            ..
        })
    ));
}

#[test]
fn a_wait_for_an_event_parks_the_run_until_the_event_or_the_end_of_the_wait() {
    let mut st = running(0);
    let waiting = Outcome::WaitingForEvent {
        until: at(100),
        position: 2,
        key: "order.paid".into(),
        filter: json!({"order": 7}),
    };
    let c = decide(
        &st,
        Happening::Reported {
            worker_id: "w",
            attempt: 1,
            outcome: &waiting,
        },
        at(2),
    )
    .unwrap()
    .unwrap();
    assert_eq!(c.status, RunStatus::Scheduled);
    assert_eq!(c.run_at, at(100));
    assert_eq!(c.attempt, 0, "a wait is not counted as an attempt");
    assert_eq!(
        c.event.reason,
        format!(
            "waiting for event order.paid until {}; its worker slot is free",
            at(100).to_rfc3339()
        )
    );
    c.follow(&mut st);
    let arrived = Happening::EventArrived {
        key: "order.paid",
        id: "e-9",
    };
    let c = decide(&st, arrived, at(3)).unwrap().unwrap();
    assert_eq!(c.status, RunStatus::Queued);
    assert_eq!(c.run_at, at(3));
    assert_eq!(
        c.event.reason,
        "event order.paid (e-9) arrived: its wait is over"
    );
    c.follow(&mut st);
    // An event for a run that is not waiting any more changes nothing.
    assert_eq!(decide(&st, arrived, at(4)).unwrap(), None);
}

#[test]
fn a_workflow_run_starts_without_a_lease_and_finishes_once() {
    let st = state(RunStatus::Queued, 0);
    let c = decide(&st, Happening::WorkflowStarted, at(1))
        .unwrap()
        .unwrap();
    assert_eq!(
        (c.status, c.attempt, c.worker_id.as_deref()),
        (RunStatus::Running, 1, None)
    );
    assert_eq!(c.start, Start::Now);
    assert_eq!(c.event.reason, reason::WORKFLOW_STARTED);
    let mut st = st;
    c.follow(&mut st);
    assert!(decide(&st, Happening::WorkflowStarted, at(2))
        .unwrap()
        .is_none());
    let done = decide(&st, Happening::WorkflowFinished { error: None }, at(3))
        .unwrap()
        .unwrap();
    assert_eq!(
        (done.status, done.finished_at),
        (RunStatus::Succeeded, Some(at(3)))
    );
    let failed = decide(
        &st,
        Happening::WorkflowFinished {
            error: Some("task \"b\" failed: boom"),
        },
        at(3),
    )
    .unwrap()
    .unwrap();
    assert_eq!(failed.status, RunStatus::Failed);
    assert_eq!(failed.error.as_deref(), Some("task \"b\" failed: boom"));
    assert_eq!(failed.event.reason, "task \"b\" failed: boom");
    // A run a worker holds is not a workflow's: finishing it so is ignored.
    let held = running(0);
    assert!(
        decide(&held, Happening::WorkflowFinished { error: None }, at(4))
            .unwrap()
            .is_none()
    );
}

#[test]
fn a_replay_is_a_retry_that_names_its_step() {
    let mut st = state(RunStatus::Failed, 1);
    st.attempt = 2;
    let c = decide(
        &st,
        Happening::Replay {
            position: 2,
            step: "b",
        },
        at(5),
    )
    .unwrap()
    .unwrap();
    assert_eq!((c.status, c.max_attempts), (RunStatus::Queued, 4));
    assert!(
        c.event
            .reason
            .starts_with("replay from step 2 \"b\": it and the steps after it run again"),
        "{}",
        c.event.reason
    );
    let running = running(0);
    assert!(matches!(
        decide(
            &running,
            Happening::Replay {
                position: 0,
                step: "a"
            },
            at(5)
        ),
        Err(Error::InvalidTransition { .. })
    ));
}

#[test]
fn an_unstarted_run_past_its_expiry_is_cancelled_as_expired() {
    for status in [RunStatus::Queued, RunStatus::Scheduled] {
        let st = state(status, 2);
        let c = decide(&st, Happening::Expired { at: at(3) }, at(4))
            .unwrap()
            .unwrap();
        assert_eq!(
            (c.status, c.error.as_deref(), c.finished_at),
            (RunStatus::Cancelled, Some(reason::EXPIRED), Some(at(4)))
        );
        assert!(c.event.reason.starts_with("expired: not started by "));
    }
    // Started or finished: its expiry no longer applies.
    for st in [running(0), state(RunStatus::Succeeded, 0)] {
        assert!(decide(&st, Happening::Expired { at: at(3) }, at(4))
            .unwrap()
            .is_none());
    }
}
