//! The OwlClaw Tasks engine: queues, leases, timers, cron firing and retries over a [`store::Store`].
//!
//! In lite mode the `owlclaw` SDK embeds an [`Engine`] in the application's process (through
//! [`Embedded`], which implements the [`owlclaw_core::Orchestrator`] trait for one tenant); in
//! server mode the `owlclaw serve` command puts the same engine behind an HTTP API.

mod engine;
#[cfg(feature = "server")]
pub mod http;
pub use owlclaw_core::limits;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;

pub use engine::{Embedded, Engine, EngineConfig, LITE_TENANT, MAX_SLOTS};

pub use owlclaw_core::redact_url;

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords_only() {
        assert_eq!(
            super::redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(super::redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(super::redact_url("sqlite://a.db"), "sqlite://a.db");
    }
}
