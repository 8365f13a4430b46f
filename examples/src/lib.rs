//! Runnable examples of OwlClaw Tasks live beside this file; see `examples/Cargo.toml`.
