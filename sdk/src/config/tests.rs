//! Unit tests of the pieces of the configuration loader. The behaviour as users see it is tested
//! in `sdk/tests/config.rs`.

use super::checks::check_server_url;
use super::providers::{env_var, YamlFile, SETTINGS};
use super::*;

fn no_env(_: &str) -> Option<String> {
    None
}

#[test]
fn substitution_skips_comments_and_keeps_values_literal() {
    let env = |name: &str| match name {
        "QUOTE" => Some("a\"b\\c".to_owned()),
        "APOS" => Some("it's".to_owned()),
        "HASH" => Some("x # y: z".to_owned()),
        "X" | "x" => Some("set".to_owned()),
        _ => None,
    };
    let text = "namespace: \"${QUOTE}\" # ${UNSET}\n# ${UNSET}\napi_token: '${APOS}'\n\
                database_url: sqlite:$${X} $$ $x\nserver_url: http://h/${HASH}\n";
    // The values are read literally; the namespace and the URL are then refused, quoting them.
    let file = YamlFile::parse(text, &env).unwrap();
    let err = load::read(&Figment::from(&file)).unwrap_err();
    assert!(
        matches!(&err, Error::Config { field, message }
            if field == "server_url" && message.contains(r#""http://h/x # y: z""#)),
        "{err}"
    );
    let text = text.replace("namespace: \"${QUOTE}\"", "namespace: ok");
    let text = text.replace("/${HASH}", "/${HASH:-}");
    let env = |name: &str| (name != "HASH").then(|| env(name)).flatten();
    let config = Config::from_yaml_str_with_env(&text, &env).unwrap();
    assert_eq!(config.api_token.unwrap().expose(), "it's");
    assert_eq!(config.database_url, "sqlite:${X} $$ $x");
    assert_eq!(config.server_url.as_deref(), Some("http://h/"));
    let config =
        Config::from_yaml_str_with_env("database_url: \"sqlite:${QUOTE}\"\n", &|name: &str| {
            (name == "QUOTE").then(|| "a\"b\\c".to_owned())
        })
        .unwrap();
    assert_eq!(config.database_url, "sqlite:a\"b\\c");
}

#[test]
fn substitution_is_not_recursive() {
    let env = |name: &str| (name == "A").then(|| "${B}".to_owned());
    let config = Config::from_yaml_str_with_env("database_url: sqlite:${A}\n", &env).unwrap();
    assert_eq!(config.database_url, "sqlite:${B}");
    let err = Config::from_yaml_str_with_env("namespace: ${A:-${B}}\n", &no_env).unwrap_err();
    assert!(err.to_string().contains("do not nest"), "{err}");
}

#[test]
fn substitution_syntax_errors_name_the_line() {
    let err =
        Config::from_yaml_str_with_env("mode: lite\nnamespace: ${OPEN\n", &no_env).unwrap_err();
    assert!(err.to_string().contains("line 2"), "{err}");
    let err = Config::from_yaml_str_with_env("namespace: ${1BAD}\n", &no_env).unwrap_err();
    assert!(
        err.to_string().contains("line 1") && err.to_string().contains("1BAD"),
        "{err}"
    );
}

#[test]
fn redact_url_hides_passwords_only() {
    assert_eq!(redact_url("postgres://u:p@h/db"), "postgres://u:***@h/db");
    assert_eq!(
        redact_url("postgres://u:p@ss/w?rd@h/db"),
        "postgres://u:***@h/db"
    );
    assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
    assert_eq!(redact_url("sqlite::memory:"), "sqlite::memory:");
    assert_eq!(
        redact_url("postgresql://h/db?sslmode=require&PASSWORD=x#f"),
        "postgresql://h/db?sslmode=require&PASSWORD=***#f"
    );
}

#[test]
fn server_url_checks() {
    for ok in [
        "http://localhost",
        "https://owlclaw.example.com:8443/api/",
        "http://127.0.0.1:7070",
        "http://[::1]:7070/x",
        "HTTPS://Example.COM",
        "http://10.0.0.1:7070,http://10.0.0.2:7070",
        "http://a:7070, http://b:7070",
    ] {
        assert!(check_server_url(ok).is_ok(), "{ok}");
    }
    assert!(check_server_url("http://a:7070,ftp://b").is_err());
    for bad in [
        "ftp://x",
        "http://",
        "http://:80",
        "localhost:7070",
        "http://h:port",
        "http://h:0",
        "http://h:70000",
        "http://h/a b",
        "http://h?x=1",
        "http://h#f",
        "http://[::1",
        "http://h:1:2",
        "http://u@h",
    ] {
        let message = check_server_url(bad).unwrap_err();
        assert!(message.contains(&format!("{bad:?}")), "{message}");
    }
}

#[test]
fn suggestions_are_at_most_two_edits_away() {
    let err = |yaml: &str| {
        Config::from_yaml_str_with_env(yaml, &no_env)
            .unwrap_err()
            .to_string()
    };
    assert!(err("slots: 1\n").contains("(did you mean \"worker.slots\"?)"));
    assert!(err("heartbeat: 1s\n").contains("(did you mean \"worker.heartbeat\"?)"));
    assert!(err("worker:\n  sloots: 1\n").contains("(did you mean \"worker.slots\"?)"));
    assert!(err("worker:\n  lase: 1s\n").contains("(did you mean \"worker.lease\"?)"));
    assert!(err("tls:\n  cafile: x\n").contains("(did you mean \"tls.ca_file\"?)"));
    assert!(!err("worker:\n  xyzzy: 1\n").contains("did you mean"));
    assert_eq!(strsim::levenshtein("sloots", "slots"), 1);
    assert_eq!(strsim::levenshtein("lease", "lease"), 0);
    assert_eq!(strsim::levenshtein("", "abc"), 3);
}

/// The list of settings (which names the environment variables) and the serde structs (which
/// give the file's shape) agree: every setting is accepted in the file and read from its variable.
#[test]
fn every_setting_has_a_yaml_path_and_a_variable() {
    let values = |path: &str| match path {
        "mode" => "server",
        "server_url" => "http://h",
        "api_token" => "t",
        "namespace" => "n",
        "database_url" => "sqlite::memory:",
        "worker.slots" => "7",
        "worker.lease" => "9s",
        "tls.ca_file" => "",
        _ => "2s",
    };
    let mut yaml = String::new();
    let mut section = "";
    for path in SETTINGS {
        match path.split_once('.') {
            Some((parent, key)) => {
                if parent != section {
                    yaml.push_str(&format!("{parent}:\n"));
                    section = parent;
                }
                yaml.push_str(&format!("  {key}: \"{}\"\n", values(path)));
            }
            None => yaml.push_str(&format!("{path}: \"{}\"\n", values(path))),
        }
    }
    let from_file = Config::from_yaml_str_with_env(&yaml, &no_env).unwrap();
    let from_env = Config::from_env_with(&|name| {
        SETTINGS
            .iter()
            .find(|path| env_var(path) == name)
            .map(|path| values(path).to_owned())
    })
    .unwrap();
    assert_eq!(from_file, from_env);
    assert_eq!(from_env.worker.slots, 7);
    assert_eq!(from_env.retention, Duration::from_secs(2));
    assert_eq!(env_var("tls.ca_file"), "OWLCLAW_TLS_CA_FILE");
}

/// The keys the serde structs accept, found through their unknown-field errors, are the paths of
/// [`SETTINGS`]: a setting added to one and not the other fails here.
#[test]
fn the_settings_list_matches_the_file_shape() {
    let fields = |yaml: &str| -> Vec<&'static str> {
        let file = YamlFile::parse(yaml, &no_env).unwrap();
        match Figment::from(file).extract::<shape::FileConfig>() {
            Err(err) => match err.kind {
                figment::error::Kind::UnknownField(_, expected) => expected.to_vec(),
                other => panic!("{other}"),
            },
            Ok(file) => panic!("{file:?}"),
        }
    };
    let mut paths: Vec<String> = Vec::new();
    for top in fields("unknown: 1\n") {
        match top {
            "worker" | "tls" => paths.extend(
                fields(&format!("{top}:\n  unknown: 1\n"))
                    .iter()
                    .map(|key| format!("{top}.{key}")),
            ),
            key => paths.push(key.to_owned()),
        }
    }
    let mut settings: Vec<String> = SETTINGS.iter().map(|s| s.to_string()).collect();
    paths.sort();
    settings.sort();
    assert_eq!(paths, settings);
}
