//! Tests of parsing and checking the tenant config file: a full file, merging over the
//! defaults, and each invalid value at its exact line and column.

use std::path::Path;
use std::time::Duration;

use super::*;

const PATH: &str = "conf/tenants.toml";

const FULL: &str = r#"# defaults for every tenant
[defaults]
max_sessions = 50
memory_limit_mb = 256
max_heap_mb = 1024
isolation = "coroutine"
[defaults.breaker]
window_s = 60
min_samples = 5
failure_ratio = 0.5
cooldown_s = 30
half_open_probes = 2
max_cooldown_s = 300

[tenants.acme]
max_sessions = 5
breaker = { cooldown_s = 10 }

[tenants.globex]
isolation = "process"
memory_limit_mb = 64
breaker = false

[max_sessions_per_agent]
echo = 10
stt = 0
"#;

#[track_caller]
fn parse(text: &str) -> TenantConfig {
    TenantConfig::from_bytes(PATH, text.as_bytes()).expect("a valid test file")
}

/// Checks that `text` is refused at `line`:`column` with a message containing `needle`.
#[track_caller]
fn check_invalid(text: &str, line: u32, column: u32, needle: &str) {
    let error =
        TenantConfig::from_bytes(PATH, text.as_bytes()).expect_err("the test file is invalid");
    assert_eq!(error.path(), Path::new(PATH), "{error}");
    assert_eq!(
        (error.line(), error.column()),
        (Some(line), Some(column)),
        "{error}"
    );
    let message = error.to_string();
    assert!(
        message.starts_with(&format!("{PATH}:{line}:{column}: ")),
        "{message}"
    );
    assert!(message.contains(needle), "{message:?} lacks {needle:?}");
}

#[test]
fn a_full_file_gives_each_setting() {
    let config = parse(FULL);
    assert_eq!(config.path(), Path::new(PATH));
    assert_eq!(config.version(), version_of(FULL.as_bytes()));
    assert_eq!(config.version().len(), 16);
    assert_eq!(config.tenants().collect::<Vec<_>>(), ["acme", "globex"]);
    assert_eq!(config.agent_cap("echo"), Some(10));
    assert_eq!(config.agent_cap("stt"), Some(0), "0 refuses every session");
    assert_eq!(config.agent_cap("tts"), None);
    assert_eq!(
        config.agent_caps().collect::<Vec<_>>(),
        [("echo", 10), ("stt", 0)]
    );
    let defaults = config.policy("initech");
    assert_eq!(
        defaults,
        TenantPolicy {
            max_sessions: Some(50),
            breaker: Some(BreakerConfig::default()),
            session_memory_limit_bytes: Some(256 << 20),
            max_heap_bytes: Some(1024 << 20),
            isolation: Some(Isolation::Coroutine),
        }
    );
}

#[test]
fn a_tenant_section_goes_over_the_defaults_breaker_field_by_field() {
    let config = parse(FULL);
    let acme = config.policy("acme");
    assert_eq!(acme.max_sessions, Some(5));
    assert_eq!(acme.session_memory_limit_bytes, Some(256 << 20));
    assert_eq!(acme.max_heap_bytes, Some(1024 << 20));
    assert_eq!(acme.isolation, Some(Isolation::Coroutine));
    let breaker = acme.breaker.expect("acme's breaker is enabled");
    assert_eq!(breaker.cooldown, Duration::from_secs(10));
    assert_eq!(breaker.max_cooldown, Duration::from_secs(300));
    assert_eq!(breaker.window, Duration::from_secs(60));

    let text = "[defaults.breaker]\nwindow_s = 20\nmin_samples = 9\n\n\
                [tenants.acme]\nbreaker = { min_samples = 3, failure_ratio = 1 }\n\
                [tenants.initech]\nbreaker = true\n";
    let config = parse(text);
    let acme = config.policy("acme").breaker.expect("enabled");
    assert_eq!(
        acme.window,
        Duration::from_secs(20),
        "from the defaults' table"
    );
    assert_eq!(acme.min_samples, 3, "the tenant's own");
    assert!((acme.failure_ratio - 1.0).abs() < f64::EPSILON);
    assert_eq!(acme.cooldown, BreakerConfig::DEFAULT_COOLDOWN, "built in");
    let initech = config.policy("initech").breaker.expect("enabled");
    assert_eq!(
        (initech.window, initech.min_samples),
        (Duration::from_secs(20), 9),
        "`true` takes the defaults' table"
    );
}

#[test]
fn breaker_false_disables_it_and_true_or_nothing_enables_it() {
    let config = parse(FULL);
    let globex = config.policy("globex");
    assert_eq!(globex.breaker, None);
    assert_eq!(globex.isolation, Some(Isolation::Process));
    assert_eq!(globex.session_memory_limit_bytes, Some(64 << 20));
    assert_eq!(globex.max_sessions, Some(50));

    let config = parse("[defaults]\nbreaker = false\n[tenants.acme]\nbreaker = true\n");
    assert_eq!(config.policy("other").breaker, None);
    assert_eq!(
        config.policy("acme").breaker,
        Some(BreakerConfig::default())
    );

    let empty = parse("");
    assert_eq!(
        empty.policy("anyone"),
        TenantPolicy {
            breaker: Some(BreakerConfig::default()),
            ..TenantPolicy::default()
        },
        "an empty file: no caps, a default breaker"
    );
    assert_eq!(empty.tenants().count(), 0);
}

#[test]
fn zero_max_sessions_is_allowed_and_refuses_all() {
    let config = parse("[tenants.banned]\nmax_sessions = 0\n");
    assert_eq!(config.policy("banned").max_sessions, Some(0));
}

#[test]
fn the_version_is_a_stable_hash_of_the_bytes() {
    // FNV-1a 64 of the empty input is its offset basis; of "a", a published test vector.
    assert_eq!(version_of(b""), "cbf29ce484222325");
    assert_eq!(version_of(b"a"), "af63dc4c8601ec8c");
    assert_ne!(parse(FULL).version(), parse(&format!("{FULL}\n")).version());
}

#[test]
fn each_out_of_range_value_is_refused_at_its_place() {
    let breaker =
        |line: &str| format!("[defaults]\nmax_sessions = 3\n[defaults.breaker]\n{line}\n");
    check_invalid(
        &breaker("failure_ratio = 0.0"),
        4,
        17,
        "failure_ratio must be greater than 0 and at most 1, not 0",
    );
    check_invalid(&breaker("failure_ratio = 1.5"), 4, 17, "not 1.5");
    check_invalid(&breaker("failure_ratio = -0.5"), 4, 17, "not -0.5");
    check_invalid(
        &breaker("window_s = 0"),
        4,
        12,
        "window_s must be greater than zero",
    );
    check_invalid(
        &breaker("cooldown_s = 0"),
        4,
        14,
        "cooldown_s must be greater than zero",
    );
    check_invalid(
        &breaker("half_open_probes = 0"),
        4,
        20,
        "half_open_probes must be greater than zero",
    );
    check_invalid(
        &breaker("min_samples = 0"),
        4,
        15,
        "min_samples must be greater than zero",
    );
    check_invalid(
        &breaker("max_cooldown_s = 20"),
        4,
        18,
        "max_cooldown_s (20) must be at least cooldown_s (30)",
    );
    check_invalid(
        "[tenants.acme]\n  memory_limit_mb = 0\n",
        2,
        21,
        "memory_limit_mb must be greater than zero",
    );
    check_invalid(
        "[defaults]\nmax_heap_mb = 0\n",
        2,
        15,
        "max_heap_mb must be greater than zero",
    );
}

#[test]
fn negative_numbers_and_wrong_types_are_refused_at_their_place() {
    check_invalid(
        "[defaults]\nmax_sessions = -1\n",
        2,
        16,
        "invalid value: integer `-1`",
    );
    check_invalid(
        "[tenants.acme.breaker]\ncooldown_s = -5\n",
        2,
        14,
        "integer `-5`",
    );
    check_invalid(
        "[defaults]\nmax_sessions = \"ten\"\n",
        2,
        16,
        "invalid type: string",
    );
    check_invalid(
        "[defaults]\nmax_heap_mb = 1.5\n",
        2,
        15,
        "invalid type: floating point",
    );
    check_invalid(
        "[defaults]\nisolation = \"thread\"\n",
        2,
        13,
        "unknown variant `thread`",
    );
    check_invalid(
        "[defaults]\nbreaker = 3\n",
        2,
        11,
        "`true`, `false` or a table of breaker settings",
    );
    check_invalid(
        "[max_sessions_per_agent]\necho = true\n",
        2,
        8,
        "invalid type: boolean",
    );
}

#[test]
fn unknown_keys_are_refused_at_the_key() {
    check_invalid(
        "[defaults]\nmax_sesions = 3\n",
        2,
        1,
        "unknown field `max_sesions`",
    );
    check_invalid(
        "[tenants.acme]\nbreaker = { cooldown = 10 }\n",
        2,
        13,
        "unknown field `cooldown`",
    );
    check_invalid("\n[tenant.acme]\n", 2, 2, "unknown field `tenant`");
}

#[test]
fn a_tenant_cooldown_over_the_defaults_cap_is_refused_at_the_tenants_key() {
    let text =
        "[defaults.breaker]\nmax_cooldown_s = 60\n[tenants.acme]\nbreaker = { cooldown_s = 90 }\n";
    check_invalid(
        text,
        4,
        26,
        "tenant \"acme\": max_cooldown_s (60) must be at least cooldown_s (90)",
    );
}

#[test]
fn a_syntax_error_and_bytes_that_are_not_utf8_give_their_place() {
    check_invalid("[defaults]\nmax_sessions = \n", 2, 16, "");
    let mut bytes = b"[defaults]\nmax_sessions = 1 # caf".to_vec();
    bytes.push(0xff);
    let error = TenantConfig::from_bytes(PATH, &bytes).expect_err("not UTF-8");
    assert_eq!(
        (error.line(), error.column()),
        (Some(2), Some(23)),
        "{error}"
    );
}

#[test]
fn check_agents_refuses_a_cap_for_an_unregistered_agent_at_its_key() {
    let config = parse(FULL);
    assert_eq!(config.check_agents(&["echo", "stt", "tts"]), Ok(()));
    let error = config
        .check_agents(&["echo"])
        .expect_err("stt is not registered");
    assert_eq!(
        error.to_string(),
        format!("{PATH}:26:1: max_sessions_per_agent names agent \"stt\", which is not registered")
    );
}

#[test]
fn load_reports_a_missing_file_with_its_path() {
    let directory = tempfile::tempdir().expect("a temp dir");
    let path = directory.path().join("absent.toml");
    let error = TenantConfig::load(&path).expect_err("no such file");
    assert!(matches!(error, TenantConfigError::Read { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .starts_with(&format!("cannot read {}: ", path.display())),
        "{error}"
    );
}
