//! `owlclaw::Config`: YAML, `${VAR}` substitution, `OWLCLAW_*` overrides, validation errors.
//!
//! Every test passes its environment as a map through the `_with_env` functions: tests run in
//! parallel and never touch the process environment.

use owlclaw::config::Secret;
use owlclaw::{Config, Mode, WorkerConfig};
use owlclaw_core::Error;
use std::collections::HashMap;
use std::time::Duration;

const EXAMPLE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../owlclaw.yaml.example"
));

fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| map.get(name).cloned()
}

fn load(yaml: &str, vars: &[(&str, &str)]) -> owlclaw_core::Result<Config> {
    Config::from_yaml_str_with_env(yaml, &env(vars))
}

/// The `(field, message)` of a configuration error, after checking that `Display` shows both.
#[track_caller]
fn config_error(result: owlclaw_core::Result<Config>) -> (String, String) {
    match result {
        Err(err @ Error::Config { .. }) => {
            let shown = err.to_string();
            let Error::Config { field, message } = err else {
                unreachable!()
            };
            assert_eq!(shown, format!("invalid configuration: {field}: {message}"));
            (field, message)
        }
        Err(other) => panic!("expected a configuration error, got {other:?}"),
        Ok(config) => panic!("expected a configuration error, got {config:?}"),
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn yaml_sets_every_field() {
    let config = load(
        r#"
mode: server
server_url: https://owlclaw.example.com:8443/api
api_token: tok-123
namespace: billing.v2
database_url: postgres://app:pw@db:5432/owlclaw
retention: 36h
worker:
  slots: 64
  shutdown_grace: 1m30s
  heartbeat: 500ms
  lease: 5s
  suspend_threshold: 2m
"#,
        &[],
    )
    .unwrap();
    assert_eq!(
        config,
        Config {
            mode: Mode::Server,
            server_url: Some("https://owlclaw.example.com:8443/api".into()),
            api_token: Some(Secret::new("tok-123")),
            namespace: Some("billing.v2".into()),
            database_url: "postgres://app:pw@db:5432/owlclaw".into(),
            worker: WorkerConfig {
                slots: 64,
                shutdown_grace: secs(90),
                heartbeat: Duration::from_millis(500),
                lease: secs(5),
                suspend_threshold: secs(120),
            },
            retention: secs(36 * 3600),
            tls_ca_file: None,
        }
    );
}

#[test]
fn defaults_are_lite_sqlite_ten_slots_and_seven_days_retention() {
    let config = Config::default();
    assert_eq!(config.mode, Mode::Lite);
    assert_eq!(config.server_url, None);
    assert_eq!(config.api_token, None);
    assert_eq!(config.namespace, None);
    assert_eq!(config.database_url, "sqlite://.owlclaw/owlclaw.db");
    assert_eq!(config.retention, secs(7 * 86_400));
    assert_eq!(config.worker.slots, 10);
    assert_eq!(config.worker.shutdown_grace, secs(30));
    assert_eq!(config.worker.heartbeat, secs(1));
    assert_eq!(config.worker.lease, secs(15));
    config.validate().unwrap();

    assert_eq!(Config::lite(), config);
    let in_memory = Config::lite_in_memory();
    assert_eq!(in_memory.database_url, "sqlite::memory:");
    assert_eq!(in_memory.worker, WorkerConfig::default());
    in_memory.validate().unwrap();
}

#[test]
fn empty_or_partial_yaml_keeps_defaults() {
    assert_eq!(load("", &[]).unwrap(), Config::default());
    assert_eq!(load("# only a comment\n", &[]).unwrap(), Config::default());
    assert_eq!(load("worker:\n", &[]).unwrap(), Config::default());
    assert_eq!(
        load("namespace:\nserver_url: \"\"\n", &[]).unwrap(),
        Config::default()
    );

    let config = load("worker:\n  slots: 3\n", &[]).unwrap();
    assert_eq!(
        config.worker,
        WorkerConfig {
            slots: 3,
            ..WorkerConfig::default()
        }
    );
    assert_eq!(config.database_url, Config::default().database_url);
}

#[test]
fn env_overrides_win_over_yaml() {
    let yaml = r#"
mode: lite
server_url: http://from-yaml:1
api_token: yaml-token
namespace: yaml
database_url: sqlite://yaml.db
retention: 1d
worker:
  slots: 1
  shutdown_grace: 1s
  heartbeat: 1s
  lease: 3s
  suspend_threshold: 1s
"#;
    let config = load(
        yaml,
        &[
            ("OWLCLAW_MODE", "server"),
            ("OWLCLAW_SERVER_URL", "http://from-env:2"),
            ("OWLCLAW_API_TOKEN", "env-token"),
            ("OWLCLAW_NAMESPACE", "env"),
            ("OWLCLAW_DATABASE_URL", "postgresql://db/env"),
            ("OWLCLAW_RETENTION", "2d"),
            ("OWLCLAW_WORKER_SLOTS", "2"),
            ("OWLCLAW_WORKER_SHUTDOWN_GRACE", "2s"),
            ("OWLCLAW_WORKER_HEARTBEAT", "2s"),
            ("OWLCLAW_WORKER_LEASE", "10s"),
            ("OWLCLAW_WORKER_SUSPEND_THRESHOLD", "45s"),
            ("OWLCLAW_SOMETHING_ELSE", "ignored"),
        ],
    )
    .unwrap();
    assert_eq!(config.mode, Mode::Server);
    assert_eq!(config.server_url.as_deref(), Some("http://from-env:2"));
    assert_eq!(
        config.api_token.as_ref().map(Secret::expose),
        Some("env-token")
    );
    assert_eq!(config.namespace.as_deref(), Some("env"));
    assert_eq!(config.database_url, "postgresql://db/env");
    assert_eq!(config.retention, secs(2 * 86_400));
    assert_eq!(
        config.worker,
        WorkerConfig {
            slots: 2,
            shutdown_grace: secs(2),
            heartbeat: secs(2),
            lease: secs(10),
            suspend_threshold: secs(45),
        }
    );
}

#[test]
fn empty_env_override_keeps_the_yaml_value() {
    let config = load("namespace: yaml\n", &[("OWLCLAW_NAMESPACE", "")]).unwrap();
    assert_eq!(config.namespace.as_deref(), Some("yaml"));
}

#[test]
fn from_env_with_applies_overrides_to_defaults() {
    let config = Config::from_env_with(&env(&[
        ("OWLCLAW_MODE", "server"),
        ("OWLCLAW_SERVER_URL", "http://localhost:7070"),
        ("OWLCLAW_WORKER_SLOTS", "4"),
    ]))
    .unwrap();
    assert_eq!(config.mode, Mode::Server);
    assert_eq!(config.server_url.as_deref(), Some("http://localhost:7070"));
    assert_eq!(config.worker.slots, 4);
    assert_eq!(config.database_url, Config::default().database_url);

    assert_eq!(Config::from_env_with(&env(&[])).unwrap(), Config::default());
}

#[test]
fn substitutes_set_variables_and_defaults() {
    let yaml = r#"
namespace: ${NS}
database_url: "${DB:-sqlite::memory:}"
worker:
  slots: ${SLOTS:-7}
  lease: ${LEASE:-20s}
"#;
    let config = load(yaml, &[("NS", "team-a"), ("SLOTS", "12")]).unwrap();
    assert_eq!(config.namespace.as_deref(), Some("team-a"));
    assert_eq!(config.database_url, "sqlite::memory:");
    assert_eq!(config.worker.slots, 12);
    assert_eq!(config.worker.lease, secs(20));

    // `:-` also replaces a variable that is set but empty.
    let config = load(
        yaml,
        &[("NS", "team-a"), ("SLOTS", ""), ("DB", "sqlite://x.db")],
    )
    .unwrap();
    assert_eq!(config.worker.slots, 7);
    assert_eq!(config.database_url, "sqlite://x.db");
}

#[test]
fn quoted_substitution_keeps_special_characters_literally() {
    let config = load(
        "mode: server\nserver_url: \"http://h/${P}\"\napi_token: '${T}'\n",
        &[("P", r#"a"b\c"#), ("T", "it's#1")],
    )
    .unwrap();
    assert_eq!(config.server_url.as_deref(), Some(r#"http://h/a"b\c"#));
    assert_eq!(config.api_token.unwrap().expose(), "it's#1");
}

#[test]
fn double_dollar_escapes_a_literal_substitution() {
    let config = load("database_url: sqlite://$${HOME}/db\n", &[("HOME", "/root")]).unwrap();
    assert_eq!(config.database_url, "sqlite://${HOME}/db");
}

#[test]
fn substitution_is_not_recursive() {
    let config = load(
        "database_url: sqlite://${A}\n",
        &[("A", "${B}"), ("B", "no")],
    )
    .unwrap();
    assert_eq!(config.database_url, "sqlite://${B}");
}

#[test]
fn substitution_leaves_comments_alone() {
    let config = load(
        "# api_token: ${UNSET_TOKEN}\nmode: lite # ${ALSO_UNSET}\n",
        &[],
    )
    .unwrap();
    assert_eq!(config, Config::default());
}

#[test]
fn unset_variable_without_default_names_the_variable_and_line() {
    let (field, message) = config_error(load("mode: server\napi_token: ${OWLCLAW_TOKEN}\n", &[]));
    assert_eq!(field, "OWLCLAW_TOKEN");
    assert!(message.contains("OWLCLAW_TOKEN is not set"), "{message}");
    assert!(message.contains("line 2"), "{message}");
}

#[test]
fn malformed_substitution_names_the_line() {
    let (field, message) = config_error(load("mode: lite\n\nnamespace: ${NS\n", &[]));
    assert_eq!(field, "yaml");
    assert!(message.contains("line 3"), "{message}");
}

#[test]
fn server_url_must_be_http_with_a_host() {
    for (url, why) in [
        ("ftp://x", "http or https"),
        ("http://", "host is missing"),
        ("localhost:7070", "no scheme"),
        ("http://h:http", "port"),
        ("http://h:99999", "port"),
    ] {
        let (field, message) = config_error(load(&format!("server_url: \"{url}\"\n"), &[]));
        assert_eq!(field, "server_url", "{url}");
        assert!(message.contains(&format!("{url:?}")), "{message}");
        assert!(message.contains(why), "{message}");
    }
    // The password of a URL with credentials is not repeated.
    let (field, message) = config_error(load("server_url: http://me:hunter2@h\n", &[]));
    assert_eq!(field, "server_url");
    assert!(
        message.contains("\"http://me:***@h\"") && message.contains("credentials"),
        "{message}"
    );
    assert!(!message.contains("hunter2"), "{message}");

    for url in [
        "http://localhost",
        "https://h.example.com:443/owl/",
        "http://[::1]:7070",
    ] {
        load(&format!("server_url: \"{url}\"\n"), &[]).unwrap();
    }
}

#[test]
fn unknown_mode_is_refused_with_the_value() {
    let (field, message) = config_error(load("mode: sevrer\n", &[]));
    assert_eq!(field, "mode");
    assert_eq!(message, r#"unknown mode "sevrer"; expected lite or server"#);

    assert_eq!("server".parse::<Mode>().unwrap(), Mode::Server);
    assert_eq!(" Lite ".parse::<Mode>().unwrap(), Mode::Lite);
    assert_eq!(Mode::Server.to_string(), "server");
    assert!(matches!("x".parse::<Mode>(), Err(Error::Config { field, .. }) if field == "mode"));
}

#[test]
fn zero_or_too_many_slots_are_refused() {
    let (field, message) = config_error(load("worker:\n  slots: 0\n", &[]));
    assert_eq!(field, "worker.slots");
    assert!(message.contains("\"0\""), "{message}");
    assert!(message.contains("at least 1"), "{message}");

    let (field, message) = config_error(load("worker:\n  slots: 10001\n", &[]));
    assert_eq!(field, "worker.slots");
    assert!(
        message.contains("\"10001\"") && message.contains("10000"),
        "{message}"
    );

    let (field, message) = config_error(load("worker:\n  slots: -3\n", &[]));
    assert_eq!(field, "worker.slots");
    assert!(message.contains("\"-3\""), "{message}");

    load("worker:\n  slots: 10000\n", &[]).unwrap();
}

#[test]
fn lease_must_exceed_twice_the_heartbeat() {
    let (field, message) = config_error(load("worker:\n  heartbeat: 5s\n  lease: 10s\n", &[]));
    assert_eq!(field, "worker.lease");
    assert!(message.contains("\"10s\""), "{message}");
    assert!(message.contains("\"5s\""), "{message}");

    load("worker:\n  heartbeat: 5s\n  lease: 10001ms\n", &[]).unwrap();
}

#[test]
fn zero_heartbeat_and_zero_retention_are_refused() {
    let (field, message) = config_error(load("worker:\n  heartbeat: 0s\n", &[]));
    assert_eq!(field, "worker.heartbeat");
    assert!(
        message.contains("\"0s\"") && message.contains("greater than zero"),
        "{message}"
    );

    let (field, _) = config_error(load("retention: 0d\n", &[]));
    assert_eq!(field, "retention");

    // A shutdown grace of zero is allowed: give up in-flight runs at once.
    assert_eq!(
        load("worker:\n  shutdown_grace: 0s\n", &[])
            .unwrap()
            .worker
            .shutdown_grace,
        secs(0)
    );
}

#[test]
fn duration_without_unit_is_refused_quoted_or_not() {
    for yaml in [
        "worker:\n  heartbeat: \"30\"\n",
        "worker:\n  heartbeat: 30\n",
    ] {
        let (field, message) = config_error(load(yaml, &[]));
        assert_eq!(field, "worker.heartbeat");
        assert!(
            message.contains("\"30\"") && message.contains("missing unit"),
            "{message}"
        );
    }
    let (field, message) = config_error(load("retention: 7 days\n", &[]));
    assert_eq!(field, "retention");
    assert!(message.contains("\"7 days\""), "{message}");
}

#[test]
fn unknown_top_level_key_is_named() {
    let (field, message) = config_error(load("mode: lite\nnamspace: x\n", &[]));
    assert_eq!(field, "namspace");
    assert!(message.contains("unknown field \"namspace\""), "{message}");
    assert!(message.contains("did you mean \"namespace\""), "{message}");

    // A worker key at the top level points to its place.
    let (field, message) = config_error(load("slots: 3\n", &[]));
    assert_eq!(field, "slots");
    assert!(message.contains("\"worker.slots\""), "{message}");
}

#[test]
fn unknown_worker_key_is_named_with_its_path() {
    let (field, message) = config_error(load("worker:\n  sloots: 3\n", &[]));
    assert_eq!(field, "worker.sloots");
    assert!(message.contains("unknown field \"sloots\""), "{message}");
    assert!(
        message.contains("slots, shutdown_grace, heartbeat, lease"),
        "{message}"
    );
    assert!(
        message.contains("did you mean \"worker.slots\""),
        "{message}"
    );
}

#[test]
fn type_errors_name_the_field_path() {
    let (field, message) = config_error(load("worker:\n  slots: [1, 2]\n", &[]));
    assert_eq!(field, "worker.slots");
    assert!(message.starts_with("invalid type: sequence"), "{message}");

    let (field, message) = config_error(load("worker: 4\n", &[]));
    assert_eq!(field, "worker");
    assert!(message.starts_with("invalid type: number `4`"), "{message}");

    let (field, message) = config_error(load("namespace: {a: 1}\n", &[]));
    assert_eq!(field, "namespace");
    assert!(message.starts_with("invalid type: mapping"), "{message}");

    let (field, message) = config_error(load("- mode\n", &[]));
    assert_eq!(field, "yaml");
    assert!(message.contains("expected a mapping"), "{message}");
}

#[test]
fn invalid_yaml_is_reported_with_its_position() {
    let (field, message) = config_error(load("mode: lite\nworker:\n  slots: [\n", &[]));
    assert_eq!(field, "yaml");
    assert!(message.contains("line"), "{message}");
}

#[test]
fn bad_namespace_is_refused_with_the_value() {
    let (field, message) = config_error(load("namespace: \"my app\"\n", &[]));
    assert_eq!(field, "namespace");
    assert!(
        message.contains("\"my app\"") && message.contains("' '"),
        "{message}"
    );

    let long = "n".repeat(65);
    let (field, message) = config_error(load(&format!("namespace: {long}\n"), &[]));
    assert_eq!(field, "namespace");
    assert!(
        message.contains(&long) && message.contains("64"),
        "{message}"
    );

    load(&format!("namespace: {}\n", "n".repeat(64)), &[]).unwrap();
    load("namespace: Team_1-a.b\n", &[]).unwrap();
}

#[test]
fn server_mode_requires_a_server_url() {
    let (field, message) = config_error(load("mode: server\n", &[]));
    assert_eq!(field, "server_url");
    assert!(
        message.contains("required when mode is \"server\""),
        "{message}"
    );

    let (field, _) = config_error(Config::from_env_with(&env(&[("OWLCLAW_MODE", "server")])));
    assert_eq!(field, "server_url");
}

#[test]
fn database_url_accepts_sqlite_and_postgres_only() {
    for url in [
        "sqlite::memory:",
        "sqlite://data/owl.db",
        "sqlite:owl.db",
        "postgres://h/db",
        "postgresql://u:p@h/db",
    ] {
        assert_eq!(
            load(&format!("database_url: \"{url}\"\n"), &[])
                .unwrap()
                .database_url,
            url
        );
    }
    let (field, message) = config_error(load("database_url: mysql://root:hunter2@db/owl\n", &[]));
    assert_eq!(field, "database_url");
    assert!(message.contains("\"mysql://root:***@db/owl\""), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
}

#[test]
fn bad_env_value_names_the_variable() {
    for (var, value, expected) in [
        ("OWLCLAW_WORKER_SLOTS", "many", "\"many\""),
        ("OWLCLAW_WORKER_SLOTS", "0", "\"0\""),
        ("OWLCLAW_MODE", "sevrer", "\"sevrer\""),
        ("OWLCLAW_WORKER_LEASE", "30", "\"30\""),
        ("OWLCLAW_RETENTION", "forever", "\"forever\""),
        ("OWLCLAW_SERVER_URL", "ftp://x", "\"ftp://x\""),
        ("OWLCLAW_NAMESPACE", "a/b", "\"a/b\""),
    ] {
        let (field, message) = config_error(load("worker:\n  slots: 5\n", &[(var, value)]));
        assert_eq!(field, var);
        assert!(message.contains(expected), "{var}: {message}");
        let (field, _) = config_error(Config::from_env_with(&env(&[(var, value)])));
        assert_eq!(field, var);
    }
}

#[test]
fn debug_never_shows_the_token_or_database_password() {
    let config = load(
        "mode: server\nserver_url: http://h\napi_token: ${T}\ndatabase_url: \"postgres://app:${PW}@db/owl?password=${PW}\"\n",
        &[("T", "tok-s3cret"), ("PW", "hunter2")],
    )
    .unwrap();
    assert_eq!(config.api_token.as_ref().unwrap().expose(), "tok-s3cret");
    let debug = format!("{config:?} {config:#?} {:?}", config.api_token);
    assert!(!debug.contains("tok-s3cret"), "{debug}");
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(
        debug.contains("postgres://app:***@db/owl?password=***"),
        "{debug}"
    );
    assert!(debug.contains("api_token: Some(***)"), "{debug}");

    let token = Secret::new("tok-s3cret");
    assert_eq!(format!("{token}"), "***");
    assert_eq!(format!("{token:?}"), "***");
}

#[test]
fn invalid_token_error_does_not_quote_the_token() {
    let (field, message) = config_error(load("api_token: \"tok s3cret\"\n", &[]));
    assert_eq!(field, "api_token");
    assert!(!message.contains("s3cret"), "{message}");
}

#[test]
fn validate_checks_a_config_built_by_hand() {
    let mut config = Config::lite();
    config.worker.slots = 0;
    let (field, _) = config_error(config.validate().map(|()| Config::lite()));
    assert_eq!(field, "worker.slots");

    let mut config = Config::lite();
    config.namespace = Some(String::new());
    let (field, _) = config_error(config.validate().map(|()| Config::lite()));
    assert_eq!(field, "namespace");
}

#[test]
fn from_file_with_a_missing_file_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing-owlclaw.yaml");
    let (field, message) = config_error(Config::from_file(&path));
    assert_eq!(field, "config_file");
    assert!(message.contains(&path.display().to_string()), "{message}");
}

#[test]
fn from_file_reads_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("owlclaw.yaml");
    std::fs::write(&path, "namespace: from-file\nworker:\n  slots: 3\n").unwrap();
    let config = Config::from_file(&path).unwrap();
    // The process environment applies too; only check what it does not override.
    if std::env::var_os("OWLCLAW_WORKER_SLOTS").is_none() {
        assert_eq!(config.worker.slots, 3);
    }
    if std::env::var_os("OWLCLAW_NAMESPACE").is_none() {
        assert_eq!(config.namespace.as_deref(), Some("from-file"));
    }
}

#[test]
fn example_file_parses_to_the_defaults() {
    assert_eq!(load(EXAMPLE, &[]).unwrap(), Config::default());
}

#[test]
fn example_file_substitutes_its_variables() {
    let config = load(
        EXAMPLE,
        &[
            ("DATABASE_URL", "postgres://app:pw@db/owl"),
            ("WORKER_SLOTS", "32"),
        ],
    )
    .unwrap();
    assert_eq!(config.database_url, "postgres://app:pw@db/owl");
    assert_eq!(config.worker.slots, 32);
}

#[test]
fn example_file_server_block_works_when_uncommented() {
    let server = EXAMPLE
        .replace("# server_url:", "server_url:")
        .replace("# api_token:", "api_token:");
    assert_ne!(server, EXAMPLE);
    let config = load(
        &server,
        &[("OWLCLAW_MODE", "server"), ("OWLCLAW_TOKEN", "tok-123")],
    )
    .unwrap();
    assert_eq!(config.mode, Mode::Server);
    assert_eq!(config.server_url.as_deref(), Some("http://localhost:7070"));
    assert_eq!(config.api_token.unwrap().expose(), "tok-123");

    // Without the token, the error names the variable the example asks for.
    let (field, _) = config_error(load(&server, &[("OWLCLAW_MODE", "server")]));
    assert_eq!(field, "OWLCLAW_TOKEN");
}

#[test]
fn a_key_given_twice_is_refused() {
    let (field, message) = config_error(load("mode: lite\nmode: server\n", &[]));
    assert_eq!(field, "yaml");
    assert!(
        message.contains("duplicate") && message.contains("\"mode\""),
        "{message}"
    );
}

#[test]
fn a_bad_file_value_is_refused_even_when_a_variable_overrides_it() {
    let (field, message) = config_error(load(
        "worker:\n  slots: 0\n",
        &[("OWLCLAW_WORKER_SLOTS", "5")],
    ));
    assert_eq!(field, "worker.slots");
    assert!(message.contains("\"0\""), "{message}");
}

#[test]
fn substituted_values_are_literal_quoted_or_not() {
    let config = load(
        "database_url: sqlite:${P}\napi_token: ${T}\nnamespace: ${NS}\n",
        &[("P", "a: b # c"), ("T", "it's#1"), ("NS", "007")],
    )
    .unwrap();
    assert_eq!(config.database_url, "sqlite:a: b # c");
    assert_eq!(config.api_token.unwrap().expose(), "it's#1");
    assert_eq!(config.namespace.as_deref(), Some("007"));
}

#[test]
fn only_braced_references_are_substituted() {
    let config = load(
        "database_url: \"sqlite:$HOME/$$x/$${HOME}/${HOME}\"\n",
        &[("HOME", "home"), ("x", "no")],
    )
    .unwrap();
    assert_eq!(config.database_url, "sqlite:$HOME/$$x/${HOME}/home");
}

#[test]
fn references_in_multi_line_strings_are_substituted() {
    let config = load(
        "namespace: >-\n  ${NS}\ndatabase_url: \"sqlite:x\n  ${P}\"\n",
        &[("NS", "team-b"), ("P", "x")],
    )
    .unwrap();
    assert_eq!(config.namespace.as_deref(), Some("team-b"));
    assert_eq!(config.database_url, "sqlite:x x");

    let (field, message) = config_error(load("namespace: >-\n  a\n  ${NS}\n", &[]));
    assert_eq!(field, "NS");
    assert!(message.contains("line 3"), "{message}");
}

#[test]
fn env_values_are_text_not_yaml() {
    let config = Config::from_env_with(&env(&[
        ("OWLCLAW_NAMESPACE", "007"),
        ("OWLCLAW_API_TOKEN", "true"),
    ]))
    .unwrap();
    assert_eq!(config.namespace.as_deref(), Some("007"));
    assert_eq!(config.api_token.unwrap().expose(), "true");
    // Not substituted either.
    let config = Config::from_env_with(&env(&[("OWLCLAW_API_TOKEN", "${T}"), ("T", "x")])).unwrap();
    assert_eq!(config.api_token.unwrap().expose(), "${T}");
}

#[test]
fn unknown_tls_key_and_bad_sections_are_named() {
    let (field, message) = config_error(load("tls:\n  cafile: x\n", &[]));
    assert_eq!(field, "tls.cafile");
    assert!(
        message.contains("did you mean \"tls.ca_file\""),
        "{message}"
    );

    for yaml in ["tls: [x]\n", "worker: [4, 30s]\n"] {
        let (field, message) = config_error(load(yaml, &[]));
        assert_eq!(field, yaml.split(':').next().unwrap());
        assert!(message.starts_with("invalid type: sequence"), "{message}");
    }

    let (field, message) = config_error(load("mode: true\n", &[]));
    assert_eq!(field, "mode");
    assert!(
        message.starts_with("invalid type: boolean `true`"),
        "{message}"
    );
}

#[test]
fn server_url_refuses_credentials_query_and_port_zero() {
    for (url, why) in [
        ("http://u@h", "credentials"),
        ("http://h/?q", "query"),
        ("http://h/#f", "fragment"),
        ("http://h:0", "port"),
        ("http://[::1", "IPv6"),
    ] {
        let (field, message) =
            config_error(Config::from_env_with(&env(&[("OWLCLAW_SERVER_URL", url)])));
        assert_eq!(field, "OWLCLAW_SERVER_URL", "{url}");
        assert!(
            message.contains(&format!("{url:?}")) && message.contains(why),
            "{message}"
        );
    }
}
