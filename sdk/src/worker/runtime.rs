//! The worker's loop: one `select!` that owns the runs in flight (a `JoinSet`, each run holding an
//! owned permit of the slots' semaphore) and the exchanges with the engine that may be in flight
//! at once:
//! - the *poll* holds the free slots in a long poll, so an idle worker starts new work as soon as
//!   it is scheduled (no poll interval);
//! - the *report* sends finished runs as soon as they finish, batched (what finishes while one
//!   report is in flight goes in the next), and in the same round trip claims work for the slots
//!   they freed; every heartbeat it also renews the leases of the runs in flight and learns which
//!   of them to stop (cancelled, or lost). A second report may leave while one is in flight, once
//!   a full set of slots' worth of runs has finished: the engine then works on both at once (two
//!   database connections, two cores) instead of the worker waiting for one answer before it
//!   sends the next (figures in `bench/README.md`).
//!
//! The worker also claims ahead: runs beyond its free slots wait in a buffer, leased to it, and
//! start the moment a slot frees, while the report of the runs that freed it is in flight. The
//! engine's work and the worker's then overlap, and each exchange carries more runs. It claims
//! ahead only what its slots will start within [`AHEAD_HORIZON`], judged from the average
//! duration of its recent runs (and at most `prefetch`): many runs of a millisecond, a few of
//! 10 ms, none of a second or more. So no run waits long in one worker while another is idle.
//!
//! Shutdown (the stop token): stop claiming, hand back the runs claimed ahead, let the runs finish
//! within the grace period, then hand back the rest, report, and deregister.

use super::link::Link;
use super::run::{attempt, Finished, Limits};
use crate::backoff::{self, retry_transient, Backoff};
use crate::context::Durable;
use crate::registry::InvokeFn;
use crate::{Client, Context};
use owlclaw_core::wire::{
    Assignment, Completion, ExchangeRequest, ExchangeResponse, Outcome, WorkerRegistration,
};
use owlclaw_core::{Error, Result, RunId};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinError, JoinSet};
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// How long the poll lasts before it is renewed.
const POLL_WAIT: Duration = Duration::from_secs(10);
/// How long the runs handed back at the end of the grace period get to stop.
const HAND_BACK_WAIT: Duration = Duration::from_secs(5);
/// Tries of the last report, at shutdown.
const FINAL_TRIES: usize = 5;
/// Reports in flight at once, at most (see the module's documentation).
const MAX_REPORTS: usize = 2;
/// The worker claims ahead the runs its slots will start within this time (see the module's
/// documentation).
pub(super) const AHEAD_HORIZON: Duration = Duration::from_millis(20);

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// What the loop needs from the builder.
pub(super) struct Settings {
    pub(super) client: Client,
    pub(super) worker_id: String,
    pub(super) registration: WorkerRegistration,
    pub(super) registry: HashMap<String, InvokeFn>,
    pub(super) slots: u32,
    /// Runs claimed ahead of free slots, at most (see the module's documentation).
    pub(super) prefetch: u32,
    pub(super) heartbeat: Duration,
    pub(super) shutdown_grace: Duration,
    pub(super) cancel_grace: Duration,
    pub(super) suspend_threshold: Duration,
    pub(super) stop: CancellationToken,
}

/// How a report went.
enum Reported {
    /// The engine took it; new work for the slots it carried. With the attempts of the runs it
    /// said the worker held: the engine's answer to stop a run is about that attempt.
    Answered(ExchangeResponse, Option<OwnedSemaphorePermit>, Held),
    /// The engine refused the batch; its runs were reported one by one, these could not be.
    Singly(Vec<Completion>),
    /// The engine could not be reached: report these again later.
    Failed(Vec<Completion>, Error),
}

/// A run in flight.
struct RunEntry {
    cancel: CancellationToken,
    /// The attempt it runs.
    attempt: u32,
    /// The task that runs it.
    task: tokio::task::Id,
    /// When its body started.
    started: Instant,
}

/// The attempt of each run a report said the worker held.
type Held = HashMap<RunId, u32>;

/// The worker's loop and everything it owns.
pub(super) struct Runtime {
    link: Arc<Link>,
    client: Client,
    registry: HashMap<String, InvokeFn>,
    sem: Arc<Semaphore>,
    heartbeat: Duration,
    shutdown_grace: Duration,
    cancel_grace: Duration,
    suspend_threshold: Duration,
    stop: CancellationToken,
    /// End of the shutdown grace: stop what still runs and hand it back.
    kill: CancellationToken,
    runs: JoinSet<Finished>,
    running: HashMap<RunId, RunEntry>,
    /// Runs claimed ahead, waiting for a slot (leased to this worker like those running).
    ahead: VecDeque<Assignment>,
    /// The most runs a report claims ahead (a request sent again may bring back more).
    prefetch: u32,
    /// How many slots it has.
    slots: u32,
    /// The average duration of its recent runs' bodies (a moving average), in µs; `None` before
    /// the first one finished.
    average_us: Option<f64>,
    /// Finished runs not reported yet.
    pending: Vec<Completion>,
    /// Slots freed by the pending completions: new work for them is claimed in the same round
    /// trip that reports them.
    freed: Option<OwnedSemaphorePermit>,
    /// The id of the long poll to send, kept after a transient failure so that the retry gets
    /// back what the engine claimed for it if the answer was lost.
    poll_id: Option<RequestId>,
    /// The ids of reports to send again (after a transient failure), oldest first: each goes
    /// with the next report.
    resend: VecDeque<RequestId>,
}

/// The id of an exchange request, and whether it was sent already.
#[derive(Debug)]
struct RequestId {
    id: String,
    sent: bool,
    /// The most runs it asked for: sent again, it asks for at least as many, so that the engine
    /// gives back every run it claimed for it rather than handing some back.
    want: u32,
}

impl RequestId {
    /// The id, `resent` and `want` of the next request asking for `want` runs: the kept id (and
    /// at least the runs it asked for before), or a fresh one.
    fn next(slot: &mut Option<RequestId>, want: u32) -> (Option<String>, bool, u32) {
        let r = slot.get_or_insert_with(|| RequestId {
            id: uuid::Uuid::new_v4().simple().to_string(),
            sent: false,
            want: 0,
        });
        let resent = std::mem::replace(&mut r.sent, true);
        r.want = r.want.max(want);
        (Some(r.id.clone()), resent, r.want)
    }
}

/// After an exchange: a request that failed for a reason that may have hidden its answer (a lost
/// connection, a time-out, a 503) is sent again with the same id; otherwise the next one gets a
/// new id.
fn after_exchange<T>(id: &mut Option<RequestId>, result: &Result<T>) {
    if !matches!(result, Err(e) if e.is_transient()) {
        *id = None;
    }
}

/// Resolves with the future's output, or never when there is none.
async fn in_flight<T>(f: &mut Option<BoxFuture<T>>) -> T {
    match f {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

/// Resolves with the output of the first of `fs` to finish (removed from `fs`), or never when
/// there is none.
async fn first_of<T>(fs: &mut Vec<BoxFuture<T>>) -> T {
    std::future::poll_fn(|cx| {
        for i in 0..fs.len() {
            if let Poll::Ready(out) = fs[i].as_mut().poll(cx) {
                drop(fs.swap_remove(i));
                return Poll::Ready(out);
            }
        }
        Poll::Pending
    })
    .await
}

/// Resolves at `at`, or never.
async fn at(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn merge_slots(
    a: Option<OwnedSemaphorePermit>,
    b: Option<OwnedSemaphorePermit>,
) -> Option<OwnedSemaphorePermit> {
    match (a, b) {
        (Some(mut a), Some(b)) => {
            a.merge(b);
            Some(a)
        }
        (a, b) => a.or(b),
    }
}

impl Runtime {
    pub(super) fn new(s: Settings) -> Runtime {
        Runtime {
            link: Arc::new(Link {
                orch: s.client.orchestrator().clone(),
                worker_id: Arc::new(Mutex::new(s.worker_id)),
                name: s.registration.name.clone(),
                registration: s.registration,
                reregister: tokio::sync::Mutex::new(()),
            }),
            client: s.client,
            registry: s.registry,
            sem: Arc::new(Semaphore::new(s.slots as usize)),
            heartbeat: s.heartbeat,
            shutdown_grace: s.shutdown_grace,
            cancel_grace: s.cancel_grace,
            suspend_threshold: s.suspend_threshold,
            stop: s.stop,
            kill: CancellationToken::new(),
            runs: JoinSet::new(),
            running: HashMap::new(),
            ahead: VecDeque::new(),
            prefetch: s.prefetch,
            slots: s.slots,
            average_us: None,
            pending: Vec::new(),
            freed: None,
            poll_id: None,
            resend: VecDeque::new(),
        }
    }

    /// Runs the worker until it has shut down and deregistered.
    pub(super) async fn run(mut self) -> Result<()> {
        let mut tick = tokio::time::interval(self.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut poll: Option<BoxFuture<(Result<ExchangeResponse>, OwnedSemaphorePermit)>> = None;
        let mut reports: Vec<BoxFuture<(RequestId, Reported)>> = Vec::new();
        // After a failure, no poll (report) before this time.
        let mut poll_after: Option<Instant> = None;
        let mut report_after: Option<Instant> = None;
        let mut poll_backoff = Backoff::new(backoff::MAX);
        // A report carries the heartbeat: retried well within a heartbeat.
        let mut report_backoff = Backoff::new(self.heartbeat / 2);
        let mut beat = false;
        // Set at shutdown: the end of the grace period, then the end of the hand-back.
        let mut grace_end: Option<Instant> = None;
        let mut hand_back_end: Option<Instant> = None;
        loop {
            let stopping = grace_end.is_some();
            // Runs claimed ahead take any slot that is free (returned by a poll that found
            // nothing, say) before a poll may hold it.
            while !self.ahead.is_empty() {
                let Ok(slot) = self.sem.clone().try_acquire_owned() else {
                    break;
                };
                let next = self.ahead.pop_front().expect("a run claimed ahead");
                self.start(next, slot);
            }
            if reports.len() < MAX_REPORTS {
                // Every run that has finished goes in the next report.
                self.take_finished();
                if reports.is_empty() && !self.pending.is_empty() && !self.runs.is_empty() {
                    // Runs started together tend to finish together: let those ready to finish
                    // do so before the report leaves, so that they share it (one round trip and
                    // one commit) rather than split into two groups that alternate forever.
                    tokio::task::yield_now().await;
                    self.take_finished();
                }
            }
            // A second report goes while one is in flight only with a full set of slots' worth of
            // runs: then the engine's two answers overlap rather than wait on each other, and a
            // report never leaves for a run or two.
            let due = match reports.len() {
                0 => beat || !self.pending.is_empty(),
                n => n < MAX_REPORTS && self.pending.len() >= self.slots as usize,
            };
            if due && report_after.is_none() {
                // While a long poll holds idle slots, the poll takes new work for them: claiming
                // ahead then would leave runs waiting in the buffer behind idle slots.
                let ahead = !stopping && poll.is_none();
                reports.push(self.report(std::mem::take(&mut beat), stopping, ahead));
            }
            if stopping && self.running.is_empty() && reports.is_empty() {
                break;
            }
            // Runs waiting in the buffer take the slots that free: no poll holds them meanwhile.
            let may_poll =
                poll.is_none() && poll_after.is_none() && !stopping && self.ahead.is_empty();
            tokio::select! {
                // While the reports in flight are as many as may be, runs that finish wait in the
                // set (they go in the next report anyway): the loop is not woken for each of
                // them, unless runs claimed ahead wait for their slots.
                Some(joined) = self.runs.join_next(), if (reports.len() < MAX_REPORTS || !self.ahead.is_empty()) && !self.runs.is_empty() => {
                    self.finished(joined);
                }
                (polled, slots) = in_flight(&mut poll) => {
                    poll = None;
                    after_exchange(&mut self.poll_id, &polled);
                    match polled {
                        Ok(resp) => {
                            poll_backoff.reset();
                            self.handle(resp, Some(slots), &Held::new());
                        }
                        Err(e) => {
                            drop(slots);
                            let wait = poll_backoff.next_delay();
                            tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "polling the engine failed");
                            poll_after = Some(Instant::now() + wait);
                        }
                    }
                }
                (id, reported) = first_of(&mut reports), if !reports.is_empty() => {
                    // A report that failed for a reason that may have hidden its answer goes
                    // again with the same id.
                    if matches!(&reported, Reported::Failed(_, e) if e.is_transient()) {
                        self.resend.push_back(id);
                    }
                    match reported {
                        Reported::Answered(resp, slots, held) => {
                            report_backoff.reset();
                            self.handle(resp, slots, &held);
                        }
                        Reported::Singly(again) => self.requeue(again),
                        Reported::Failed(sent, e) => {
                            self.requeue(sent);
                            let wait = report_backoff.next_delay();
                            tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "reporting to the engine failed; will retry");
                            report_after = Some(Instant::now() + wait);
                        }
                    }
                }
                Ok(first) = self.sem.clone().acquire_owned(), if may_poll => {
                    poll = Some(self.poll(first));
                }
                _ = at(poll_after) => poll_after = None,
                _ = at(report_after) => report_after = None,
                _ = tick.tick() => beat = true,
                _ = self.stop.cancelled(), if !stopping => {
                    tracing::info!(worker = %self.link.name, "shutting down: no new runs will be claimed");
                    self.hand_back_ahead();
                    // A long poll in flight is dropped with the slots it holds.
                    poll = None;
                    poll_after = None;
                    grace_end = Some(Instant::now() + self.shutdown_grace);
                }
                _ = at(grace_end), if hand_back_end.is_none() => {
                    tracing::warn!(worker = %self.link.name, runs = self.running.len(), "grace period over; handing back unfinished runs");
                    self.kill.cancel();
                    hand_back_end = Some(Instant::now() + HAND_BACK_WAIT);
                }
                _ = at(hand_back_end) => {
                    tracing::warn!(worker = %self.link.name, runs = self.running.len(), "runs still running after they were handed back; leaving them");
                    break;
                }
            }
        }
        for r in reports {
            match r.await.1 {
                // Runs it claimed are not started now: handed back below, with the report.
                Reported::Answered(resp, _, _) => self.ahead.extend(resp.assignments),
                Reported::Singly(again) | Reported::Failed(again, _) => self.requeue(again),
            }
        }
        self.runs.abort_all();
        // Runs claimed ahead, and those of the report answered just above, go back.
        self.hand_back_ahead();
        self.final_report().await;
        let link = self.link.clone();
        retry_transient("deregistering the worker", Some(FINAL_TRIES), || {
            let id = link.worker_id();
            let link = link.clone();
            async move { link.orch.deregister_worker(&id).await }
        })
        .await?;
        tracing::info!(worker = %self.link.name, "worker stopped");
        Ok(())
    }

    /// Puts completions that were not reported back in front of those that finished since.
    fn requeue(&mut self, mut again: Vec<Completion>) {
        again.append(&mut self.pending);
        self.pending = again;
    }

    /// Takes every free slot.
    fn take_free_slots(&self) -> Option<OwnedSemaphorePermit> {
        let n = self.sem.available_permits();
        if n == 0 {
            return None;
        }
        self.sem.clone().try_acquire_many_owned(n as u32).ok()
    }

    /// A long poll for work for `first` and every other free slot.
    fn poll(
        &mut self,
        mut slots: OwnedSemaphorePermit,
    ) -> BoxFuture<(Result<ExchangeResponse>, OwnedSemaphorePermit)> {
        if let Some(more) = self.take_free_slots() {
            slots.merge(more);
        }
        let (request_id, resent, want) =
            RequestId::next(&mut self.poll_id, slots.num_permits() as u32);
        let req = ExchangeRequest {
            want,
            wait_ms: POLL_WAIT.as_millis() as u64,
            request_id,
            resent,
            ..ExchangeRequest::default()
        };
        let link = self.link.clone();
        Box::pin(async move { (link.exchange(req).await, slots) })
    }

    /// Reports the finished runs, claims work for the slots they freed (and any other free one)
    /// unless the worker is stopping, and with `beat`, renews the leases of the runs in flight.
    fn report(
        &mut self,
        beat: bool,
        stopping: bool,
        claim_ahead: bool,
    ) -> BoxFuture<(RequestId, Reported)> {
        let slots = if stopping {
            drop(self.freed.take());
            None
        } else {
            merge_slots(self.freed.take(), self.take_free_slots())
        };
        let free = slots.as_ref().map_or(0, |p| p.num_permits() as u32);
        let ahead = if claim_ahead {
            self.ahead_target().saturating_sub(self.ahead.len() as u32)
        } else {
            0
        };
        let held = if beat { self.held() } else { Vec::new() };
        let mut id = self.resend.pop_front();
        let (request_id, resent, want) = RequestId::next(&mut id, free + ahead);
        let id = id.expect("RequestId::next fills its slot");
        let req = ExchangeRequest {
            completions: std::mem::take(&mut self.pending),
            held: held.iter().map(|(id, _)| *id).collect(),
            want,
            wait_ms: 0,
            heartbeat: beat,
            request_id,
            resent,
        };
        let link = self.link.clone();
        Box::pin(async move {
            let sent = req.completions.clone();
            let reported = match link.exchange(req).await {
                Ok(resp) => Reported::Answered(resp, slots, held.into_iter().collect()),
                Err(e @ Error::InvalidInput { .. }) if !sent.is_empty() => {
                    // The engine refused the report itself: sending it again would be refused
                    // again and hold back every result behind it. Report them one by one instead.
                    drop(slots);
                    tracing::warn!(error = %e, runs = sent.len(), "the engine refused a report; reporting its runs one by one");
                    Reported::Singly(link.report_singly(sent).await)
                }
                // Report them again: stale completions are ignored by the engine.
                Err(e) => Reported::Failed(sent, e),
            };
            (id, reported)
        })
    }

    /// Runs claimed ahead have not started: back to the queue at once, not counted as an attempt.
    fn hand_back_ahead(&mut self) {
        for a in std::mem::take(&mut self.ahead) {
            self.pending.push(Completion {
                run_id: a.run_id,
                attempt: a.attempt,
                outcome: Outcome::HandedBack,
            });
        }
    }

    /// How many runs to hold claimed ahead: what the slots start within [`AHEAD_HORIZON`] at
    /// the recent runs' average duration, at most `prefetch`; none before a run has finished.
    fn ahead_target(&self) -> u32 {
        let Some(average_us) = self.average_us else {
            return 0;
        };
        let started =
            f64::from(self.slots) * AHEAD_HORIZON.as_micros() as f64 / average_us.max(1.0);
        (started as u32).min(self.prefetch)
    }

    /// The runs this worker holds, with their attempts: running, and claimed ahead.
    fn held(&self) -> Vec<(RunId, u32)> {
        let running = self.running.iter().map(|(id, r)| (*id, r.attempt));
        running
            .chain(self.ahead.iter().map(|a| (a.run_id, a.attempt)))
            .collect()
    }

    /// Takes every run that has finished, without waiting.
    fn take_finished(&mut self) {
        while let Some(joined) = self.runs.try_join_next() {
            self.finished(joined);
        }
    }

    /// A run's task ended.
    fn finished(&mut self, joined: std::result::Result<Finished, JoinError>) {
        match joined {
            Ok(Finished { completion, slot }) => {
                if let Some(entry) = self.running.remove(&completion.run_id) {
                    let took = entry.started.elapsed().as_micros() as f64;
                    // A moving average over about the last eight runs.
                    self.average_us = Some(match self.average_us {
                        Some(average) => average + (took - average) / 8.0,
                        None => took,
                    });
                }
                self.pending.push(completion);
                match self.ahead.pop_front() {
                    Some(next) => self.start(next, slot),
                    None => self.freed = merge_slots(self.freed.take(), Some(slot)),
                }
            }
            Err(e) => {
                // Only a bug of the worker itself gets here (the task's own panics are caught):
                // the run's lease expires and the engine retries it.
                tracing::error!(error = %e, "a run's supervising task failed");
                self.running.retain(|_, r| r.task != e.id());
            }
        }
    }

    /// Stops the runs the engine cancelled and starts the runs it assigned, one slot each.
    ///
    /// A run to stop is stopped only in the attempt the report said the worker held: the engine
    /// judged that one (cancelled, or its lease lost). Meanwhile the worker may have claimed the
    /// run again, its lost lease having put it back in the queue; the new attempt is not meant
    /// (stopped, its report of `Cancelled` would end the run cancelled though nobody cancelled it).
    fn handle(
        &mut self,
        resp: ExchangeResponse,
        mut slots: Option<OwnedSemaphorePermit>,
        held: &Held,
    ) {
        for id in resp.cancellations {
            let meant = |attempt: u32| held.get(&id).is_none_or(|a| *a == attempt);
            if let Some(i) = self
                .ahead
                .iter()
                .position(|a| a.run_id == id && meant(a.attempt))
            {
                let a = self.ahead.remove(i).expect("a position in the buffer");
                self.pending.push(Completion {
                    run_id: a.run_id,
                    attempt: a.attempt,
                    outcome: Outcome::Cancelled,
                });
                continue;
            }
            if let Some(entry) = self.running.get(&id).filter(|r| meant(r.attempt)) {
                tracing::info!(run_id = %id, "run cancelled by the engine; stopping it");
                entry.cancel.cancel();
            }
        }
        for a in resp.assignments {
            let slot = slots.as_mut().and_then(|p| {
                if p.num_permits() > 1 {
                    p.split(1)
                } else {
                    None
                }
            });
            match slot.or_else(|| slots.take()) {
                Some(slot) => self.start(a, slot),
                // Beyond the slots it carried: claimed ahead (or claimed for a request sent again,
                // when fewer slots are free than at its first sending), started as slots free.
                None if !self.stop.is_cancelled() => self.ahead.push_back(a),
                None => {
                    // Shutting down: back to the queue at once.
                    self.pending.push(Completion {
                        run_id: a.run_id,
                        attempt: a.attempt,
                        outcome: Outcome::HandedBack,
                    });
                }
            }
        }
    }

    /// Starts an attempt in its own task, holding `slot` until it ends.
    fn start(&mut self, a: Assignment, slot: OwnedSemaphorePermit) {
        let Some(invoke) = self.registry.get(&a.task).copied() else {
            self.pending.push(Completion {
                run_id: a.run_id,
                attempt: a.attempt,
                outcome: Outcome::Failed {
                    error: format!("worker {} does not serve task {:?}", self.link.name, a.task),
                    retryable: true,
                },
            });
            self.freed = merge_slots(self.freed.take(), Some(slot));
            return;
        };
        let cancel = CancellationToken::new();
        let (suspend_tx, suspend_rx) = tokio::sync::oneshot::channel();
        let ctx = Context::new(
            self.client.clone(),
            a.run_id,
            a.task.clone(),
            a.attempt,
            a.max_attempts,
            a.parent_id,
            cancel.clone(),
            Some(Durable::new(
                self.link.orch.clone(),
                self.link.worker_id.clone(),
                self.suspend_threshold,
                suspend_tx,
            )),
        );
        let limits = Limits {
            cancel: cancel.clone(),
            cancel_grace: self.cancel_grace,
            kill: self.kill.clone(),
            suspend: suspend_rx,
        };
        let (run_id, number) = (a.run_id, a.attempt);
        #[cfg(not(feature = "otel"))]
        let work = {
            let span =
                tracing::info_span!("run", task = %a.task, run_id = %a.run_id, attempt = a.attempt);
            attempt(invoke, ctx, a, limits, slot).instrument(span)
        };
        // The attempt's span continues the trace of the run's enqueue, read from its metadata.
        #[cfg(feature = "otel")]
        let work = {
            let span = crate::otel::attempt_span(&a);
            let orch = self.link.orch.clone();
            async move {
                crate::otel::follow_enqueue(&span, &*orch, &ctx).await;
                let finished = attempt(invoke, ctx, a, limits, slot)
                    .instrument(span.clone())
                    .await;
                crate::otel::record_outcome(&span, &finished.completion.outcome);
                finished
            }
        };
        let task = self.runs.spawn(work).id();
        self.running.insert(
            run_id,
            RunEntry {
                cancel,
                attempt: number,
                task,
                started: Instant::now(),
            },
        );
    }

    /// The last report, at shutdown: a few tries.
    async fn final_report(&mut self) {
        let mut backoff = Backoff::new(backoff::MAX);
        for attempt in 1..=FINAL_TRIES {
            if self.pending.is_empty() {
                return;
            }
            let req = ExchangeRequest {
                completions: self.pending.clone(),
                ..ExchangeRequest::default()
            };
            match self.link.exchange(req).await {
                Ok(_) => self.pending.clear(),
                Err(Error::InvalidInput { .. }) => {
                    let sent = std::mem::take(&mut self.pending);
                    self.pending = self.link.report_singly(sent).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, attempt, "reporting final results failed");
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        }
        if !self.pending.is_empty() {
            tracing::error!(worker = %self.link.name, runs = self.pending.len(), "could not report these runs' results; their leases will expire");
        }
    }
}

#[cfg(all(test, feature = "lite"))]
mod tests {
    use super::*;
    use owlclaw_core::wire::WorkerRegistration;

    async fn runtime() -> Runtime {
        let client = Client::lite_in_memory().await.expect("a lite client");
        Runtime::new(Settings {
            client,
            worker_id: "w1".into(),
            registration: WorkerRegistration {
                name: "w1".into(),
                tasks: Vec::new(),
                slots: 2,
                labels: Default::default(),
                workflows: Vec::new(),
            },
            registry: HashMap::new(),
            slots: 2,
            prefetch: 4,
            heartbeat: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(1),
            cancel_grace: Duration::from_secs(1),
            suspend_threshold: Duration::from_secs(1),
            stop: CancellationToken::new(),
        })
    }

    fn claimed_ahead(run_id: RunId, attempt: u32) -> Assignment {
        Assignment {
            run_id,
            task: "t".into(),
            input: serde_json::Value::Null,
            attempt,
            max_attempts: 3,
            timeout_ms: 1000,
            parent_id: None,
            due_at: None,
        }
    }

    fn stop(run_id: RunId) -> ExchangeResponse {
        ExchangeResponse {
            assignments: Vec::new(),
            cancellations: vec![run_id],
        }
    }

    /// The engine told the worker to stop a run whose lease it had lost in attempt 1; the worker
    /// has claimed the run again since (attempt 2, waiting for a slot): attempt 2 is not stopped,
    /// and nothing is reported for it. An answer about attempt 2 stops it.
    #[tokio::test]
    async fn a_stop_for_an_earlier_attempt_leaves_the_new_one_alone() {
        let mut rt = runtime().await;
        let run = RunId::new();
        rt.ahead.push_back(claimed_ahead(run, 2));
        rt.handle(stop(run), None, &Held::from([(run, 1)]));
        assert_eq!(rt.ahead.len(), 1, "attempt 2 still waits for a slot");
        assert!(rt.pending.is_empty(), "{:?}", rt.pending);

        rt.handle(stop(run), None, &Held::from([(run, 2)]));
        assert!(rt.ahead.is_empty());
        assert_eq!(rt.pending.len(), 1);
        assert_eq!(rt.pending[0].attempt, 2);
        assert!(matches!(rt.pending[0].outcome, Outcome::Cancelled));
    }
}
