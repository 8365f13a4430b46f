//! Wake-ups between engines sharing the database: `NOTIFY` at commit, `LISTEN` forwarded to the engine.

use super::*;

/// Which wake-ups a transaction sends at commit.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Wakes {
    pub(super) work: bool,
    pub(super) timers: bool,
    pub(super) crons: bool,
    pub(super) finished: bool,
}

impl Wakes {
    /// What a run reaching `status` means to other engines.
    pub(super) fn reached(&mut self, status: RunStatus) {
        match status {
            RunStatus::Queued => self.work = true,
            RunStatus::Scheduled => self.timers = true,
            s if s.is_terminal() => self.finished = true,
            _ => {}
        }
    }

    pub(super) fn payloads(self) -> Vec<String> {
        let mut out = Vec::new();
        for (on, name) in [
            (self.work, "work"),
            (self.timers, "timers"),
            (self.crons, "crons"),
            (self.finished, "finished"),
        ] {
            if on {
                out.push(name.to_string());
            }
        }
        out
    }
}

pub(super) fn wake_of(payload: &str) -> Option<Wake> {
    match payload {
        "work" => Some(Wake::Work),
        "timers" => Some(Wake::Timers),
        "crons" => Some(Wake::Crons),
        "finished" => Some(Wake::Finished),
        _ => None,
    }
}

/// Queues the wake-ups, delivered when the transaction commits.
pub(super) async fn notify(conn: &mut PgConnection, wakes: Wakes) -> R<()> {
    let payloads = wakes.payloads();
    if !payloads.is_empty() {
        sqlx::query("SELECT pg_notify('owlclaw', w) FROM UNNEST($1::text[]) AS w")
            .bind(payloads)
            .execute(conn)
            .await?;
    }
    Ok(())
}

pub(super) async fn listen(pool: &PgPool) -> std::result::Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// Forwards notifications to the engine until the engine drops its receiver or the store
/// closes. Survives PostgreSQL restarts: a lost connection is re-established (with a growing
/// pause while the server is away), and since notifications sent meanwhile are lost, every kind
/// of wake-up is sent once it is back, so the engine re-checks everything.
pub(super) async fn forward_wakes(
    listener: PgListener,
    pool: PgPool,
    tx: mpsc::UnboundedSender<Wake>,
    place: Place,
) {
    const ALL: [Wake; 4] = [Wake::Work, Wake::Timers, Wake::Crons, Wake::Finished];
    let mut listener = Some(listener);
    // Reconnection pauses: 100 ms doubling to 5 s, started afresh once reconnected.
    let pauses = || {
        backon::BackoffBuilder::build(
            backon::ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(100))
                .with_max_delay(Duration::from_secs(5))
                .without_max_times(),
        )
    };
    let mut backoff = pauses();
    loop {
        if pool.is_closed() {
            return;
        }
        let Some(l) = listener.as_mut() else {
            let got = tokio::select! {
                r = listen(&pool) => r,
                _ = tx.closed() => return,
            };
            match got {
                Ok(l) => {
                    tracing::info!(url = %place.shown, "PostgreSQL wake-up channel re-established");
                    listener = Some(l);
                    backoff = pauses();
                    if ALL.into_iter().any(|w| tx.send(w).is_err()) {
                        return;
                    }
                }
                Err(e) => {
                    if pool.is_closed() {
                        return;
                    }
                    let pause = backoff.next().unwrap_or(Duration::from_secs(5));
                    tracing::warn!(url = %place.shown, error = %place.scrub(e.to_string()),
                        retry_in_ms = pause.as_millis() as u64,
                        "PostgreSQL wake-up channel: cannot reconnect; polling meanwhile");
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = tx.closed() => return,
                    }
                }
            }
            continue;
        };
        let got = tokio::select! {
            r = l.try_recv() => r,
            _ = tx.closed() => return,
        };
        match got {
            Ok(Some(n)) => {
                if let Some(w) = wake_of(n.payload()) {
                    if tx.send(w).is_err() {
                        return;
                    }
                }
            }
            Ok(None) => {
                // The connection was lost and has been re-established (PgListener reconnects
                // eagerly); whatever was sent in between is lost.
                tracing::warn!(url = %place.shown, "PostgreSQL wake-up channel reconnected");
                if ALL.into_iter().any(|w| tx.send(w).is_err()) {
                    return;
                }
            }
            Err(e) => {
                if pool.is_closed() || matches!(e, sqlx::Error::PoolClosed) {
                    return;
                }
                tracing::warn!(url = %place.shown, error = %place.scrub(e.to_string()),
                    "PostgreSQL wake-up channel failed; reconnecting");
                listener = None; // drops the connection
                let pause = backoff.next().unwrap_or(Duration::from_secs(5));
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = tx.closed() => return,
                }
            }
        }
    }
}
