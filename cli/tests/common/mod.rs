//! Helpers shared by the CLI test files: running the real binary and reading what it printed.

#![allow(dead_code)] // each test file uses its own subset

use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// The result of one invocation.
#[derive(Debug)]
pub(crate) struct Out {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Out {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {self:#?}"))
    }

    /// The `{"error": {...}}` printed on stderr under `--json`.
    pub(crate) fn error(&self) -> Value {
        let body: Value = serde_json::from_str(self.stderr.trim())
            .unwrap_or_else(|e| panic!("stderr is not a JSON error ({e}): {self:#?}"));
        body["error"].clone()
    }

    pub(crate) fn message(&self) -> String {
        self.error()["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub(crate) fn ok(self) -> Out {
        assert_eq!(self.code, 0, "{self:#?}");
        self
    }

    pub(crate) fn refused(self, code: &str) -> Out {
        assert_eq!(self.code, 1, "{self:#?}");
        assert_eq!(self.error()["code"], code, "{self:#?}");
        assert!(self.stdout.is_empty(), "{self:#?}");
        self
    }
}

/// The binary in `dir` with `args`, with no `OWLCLAW_*` nor `RUST_LOG` variable but `env`.
pub(crate) fn command(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_owlclaw"));
    cmd.args(args).current_dir(dir);
    for (name, _) in std::env::vars_os() {
        let n = name.to_string_lossy();
        if n.starts_with("OWLCLAW_") || n == "RUST_LOG" {
            cmd.env_remove(&name);
        }
    }
    cmd.envs(env.iter().copied());
    cmd
}

/// Runs the binary in `dir` with `args` (see [`command`]) to completion.
pub(crate) fn owlclaw(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Out {
    let output = command(dir, args, env).output().expect("run owlclaw");
    Out {
        code: output.status.code().expect("exit code"),
        stdout: String::from_utf8(output.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(output.stderr).expect("utf-8 stderr"),
    }
}
