//! Snapshots of the `openrtc top --once` text for hand-built pool snapshots, and the filtered
//! and sorted `--format json` lines, rendered by the library functions the binary uses.

use insta::assert_snapshot;
use openrtc_cli::cli::{OutputFormat, SortKey};
use openrtc_cli::discover::Survey;
use openrtc_cli::top::render_survey;
use openrtc_cli::top::table::{ViewOptions, render_workers};
use openrtc_proto::{BreakerState, PoolSnapshot, RefusalReason, SessionState};

use crate::fixtures::{
    busy_worker, draining_worker, idle_worker, logging_worker, preempted_worker, tenant_worker,
};

#[test]
fn a_busy_worker_with_a_slow_session() {
    let text = render_workers(&[&busy_worker()], &ViewOptions::default());
    assert!(text.contains("slow (blocking 230ms)"));
    assert_snapshot!(text);
}

#[test]
fn a_worker_with_a_log_file_shows_it_and_what_failed_sessions_logged_last() {
    let text = render_workers(&[&logging_worker()], &ViewOptions::default());
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[2],
        "log: /var/log/openrtc/demo.jsonl (48213 records written, 12 dropped: the writer fell \
         behind) · flight recorders: 38.5 KiB",
        "the third header line:\n{text}"
    );
    // s-9 kept 28 records: its newest ten are printed, oldest first, the failure last.
    let title = lines
        .iter()
        .position(|line| *line == "s-9: last 10 of 28 records kept before it ended (UTC):")
        .unwrap_or_else(|| panic!("no title for s-9:\n{text}"));
    assert_eq!(
        lines[title + 1],
        "  22:13:13.700 DEBUG frame in seq=5137 bytes=960"
    );
    assert!(
        lines[title + 10].starts_with(
            "  22:13:17.500 ERROR session failed error=peer hung up: connection reset"
        ),
        "{text}"
    );
    assert_eq!(
        lines[title + 11],
        "  the rest: openrtc logs /var/log/openrtc/demo.jsonl --session s-9"
    );
    assert!(
        text.contains("s-8: last 2 records before it ended (UTC):\n  22:13:18.800 INFO  prompt"),
        "{text}"
    );
    // Sessions that ended well, or were cancelled or killed, kept nothing and get no section.
    assert!(!text.contains("s-7:") && !text.contains("s-6:"), "{text}");
    assert_snapshot!(text);

    // Without a log file and with nothing in the recorders, the header has no log line.
    let plain = render_workers(&[&busy_worker()], &ViewOptions::default());
    assert!(
        !plain.contains("log:") && !plain.contains("flight"),
        "{plain}"
    );
}

#[test]
fn stalls_the_host_caused_are_counted_apart_in_the_header() {
    let text = render_workers(&[&preempted_worker()], &ViewOptions::default());
    assert!(
        text.contains(" · stalls 1 (0 now, 1 the host's, ≥100ms)"),
        "{text}"
    );
    let plain = render_workers(&[&busy_worker()], &ViewOptions::default());
    assert!(!plain.contains("the host's"), "{plain}");
}

#[test]
fn a_draining_worker() {
    let text = render_workers(&[&draining_worker()], &ViewOptions::default());
    assert!(
        text.lines()
            .next()
            .is_some_and(|line| line.ends_with(" · DRAINING"))
    );
    assert_snapshot!(text);
}

#[test]
fn an_empty_pool() {
    let text = render_workers(&[&idle_worker("demo", 4242)], &ViewOptions::default());
    assert!(text.ends_with("(no live sessions)\n"));
    assert_snapshot!(text);
}

#[test]
fn a_view_filtered_by_tenant_and_sorted_by_duration() {
    let options = ViewOptions {
        sort: SortKey::Dur,
        tenant: Some("acme".into()),
        ..ViewOptions::default()
    };
    let text = render_workers(&[&busy_worker()], &options);
    assert!(!text.contains("globex"), "other tenants are filtered out");
    assert_snapshot!(text);
}

#[test]
fn a_filter_matching_nothing() {
    let options = ViewOptions {
        status: Some(SessionState::Draining),
        ..ViewOptions::default()
    };
    assert_snapshot!(render_workers(&[&busy_worker()], &options));
}

#[test]
fn several_workers_in_name_then_pid_order() {
    let text = render_workers(
        &[
            &idle_worker("zulu", 1),
            &idle_worker("alpha", 30),
            &idle_worker("alpha", 4),
        ],
        &ViewOptions::default(),
    );
    let headers: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with("worker "))
        .collect();
    assert_eq!(headers.len(), 3);
    assert!(headers[0].starts_with("worker alpha pid 4 "));
    assert!(headers[1].starts_with("worker alpha pid 30 "));
    assert!(headers[2].starts_with("worker zulu pid 1 "));
    assert_snapshot!(text);
}

/// The snapshots of `--format json` output, one per line.
#[track_caller]
fn json_snapshots(snapshots: Vec<PoolSnapshot>, options: &ViewOptions) -> Vec<PoolSnapshot> {
    let survey = Survey {
        snapshots,
        failures: Vec::new(),
    };
    render_survey(&survey, OutputFormat::Json, options)
        .expect("render JSON")
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is a snapshot"))
        .collect()
}

/// The session ids of a snapshot, in order.
fn session_ids(snapshot: &PoolSnapshot) -> Vec<String> {
    snapshot
        .sessions
        .iter()
        .map(|row| row.id.to_string())
        .collect()
}

#[test]
fn json_keeps_the_snapshot_shape_with_only_the_matching_sessions_in_sort_order() {
    let both = || vec![draining_worker(), busy_worker()];

    let everything = json_snapshots(both(), &ViewOptions::default());
    let names: Vec<&str> = everything
        .iter()
        .map(|one| one.worker.name.as_str())
        .collect();
    assert_eq!(names, ["demo", "edge-eu.1"], "workers in name order");
    assert_eq!(
        session_ids(&everything[0]),
        ["s-2", "s-11", "s-1", "s-10"],
        "by CPU, ties by id"
    );
    assert_eq!(everything[0].recently_ended, busy_worker().recently_ended);

    let slow = ViewOptions {
        status: Some(SessionState::Slow),
        ..ViewOptions::default()
    };
    let shown = json_snapshots(both(), &slow);
    assert_eq!(shown.len(), 2, "a worker with no match keeps its line");
    assert_eq!(shown[0].sessions, [busy_worker().sessions[1].clone()]);
    assert!(shown[1].sessions.is_empty());
    assert_eq!(
        shown[0].worker,
        busy_worker().worker,
        "the worker's own figures stay whole"
    );
    assert_eq!(
        shown[0].recently_ended,
        busy_worker().recently_ended,
        "the state filter does not apply to ended sessions"
    );

    let acme_by_duration = ViewOptions {
        sort: SortKey::Dur,
        tenant: Some("acme".into()),
        ..ViewOptions::default()
    };
    let shown = json_snapshots(both(), &acme_by_duration);
    assert_eq!(session_ids(&shown[0]), ["s-1", "s-10"]);
    assert_eq!(session_ids(&shown[1]), ["s-1203"]);
    let ended: Vec<String> = shown[0]
        .recently_ended
        .iter()
        .map(|row| row.id.to_string())
        .collect();
    assert_eq!(ended, ["s-9", "s-7", "s-5", "s-4"], "acme's ended sessions");

    let echo = ViewOptions {
        agent: Some("echo".into()),
        sort: SortKey::Session,
        ..ViewOptions::default()
    };
    assert_eq!(
        session_ids(&json_snapshots(both(), &echo)[0]),
        ["s-1", "s-10"]
    );
}

#[test]
fn a_worker_with_tenants_shows_breakers_config_shared_state_and_a_tenant_summary() {
    let text = render_workers(&[&tenant_worker()], &ViewOptions::default());
    for expected in [
        " · refused 15 (tenant_cap 12, breaker_open 3) · ",
        " · 2 failures in a row (drains at 5)",
        "\nbreakers: acme open (retry 24s, 3/5 failed), beta half_open (1 probe)\n",
        "\nconfig: /etc/openrtc/tenants.toml v3f9a1c2e8b7d6a50\n",
        "\nreload failed: line 12: max_sessions: expected an integer; keeping v3f9a1c2e8b7d6a50\n",
        "\nshared: 180.0 MiB prewarmed (one process per session would load it 6 times: ~1.1 GiB)\n",
    ] {
        assert!(text.contains(expected), "{expected:?} missing:\n{text}");
    }
    let summary = text
        .lines()
        .find(|line| line.starts_with("tenants: "))
        .unwrap_or_else(|| panic!("no tenant summary line:\n{text}"));
    assert_eq!(
        summary.split(" · ").count(),
        4,
        "every tenant, one entry each: {summary}"
    );
    assert!(
        summary.starts_with("tenants: gamma 3/3 "),
        "most sessions first: {summary}"
    );
    assert!(summary.contains("acme 1/10 12M open"), "{summary}");
    assert!(
        !text.contains("tenant acme:"),
        "no tenant detail unfiltered"
    );
    assert_snapshot!(text);
}

#[test]
fn a_view_filtered_to_one_tenant_shows_its_detail() {
    let options = ViewOptions {
        tenant: Some("acme".into()),
        ..ViewOptions::default()
    };
    let text = render_workers(&[&tenant_worker()], &options);
    assert!(
        text.contains(
            "\ntenant acme: sessions 1/10 · heap 12.0 MiB of 64.0 MiB · session cap 16.0 MiB \
             · started 20 failed 5\nbreaker open (retry in 24s, 3 of 5 failed in 60s, \
             cooldown 30s, opened 2×) · refused 3 (breaker_open 3)\n"
        ),
        "{text}"
    );
    assert!(
        !text.contains("gamma"),
        "only the chosen tenant's row: {text}"
    );
    assert_snapshot!(text);

    let nobody = ViewOptions {
        tenant: Some("globex".into()),
        ..ViewOptions::default()
    };
    let text = render_workers(&[&tenant_worker()], &nobody);
    assert!(
        text.contains("\ntenant globex: not seen by this worker\n"),
        "{text}"
    );
    assert!(
        !text.contains("\ntenants: "),
        "no summary under a filter: {text}"
    );
}

#[test]
fn a_worker_without_tenant_figures_shows_no_tenant_lines() {
    let text = render_workers(&[&busy_worker()], &ViewOptions::default());
    for absent in ["breakers:", "config:", "shared:", "\ntenants: ", "in a row"] {
        assert!(!text.contains(absent), "{absent:?} in:\n{text}");
    }
}

#[test]
fn json_carries_the_tenant_agent_config_and_shared_fields() {
    let original = tenant_worker();
    let unfiltered = render_survey(
        &Survey {
            snapshots: vec![original.clone()],
            failures: Vec::new(),
        },
        OutputFormat::Json,
        &ViewOptions::default(),
    )
    .expect("render JSON");
    let value: serde_json::Value =
        serde_json::from_str(unfiltered.trim_end()).expect("one JSON line");
    assert_eq!(value["tenants"]["acme"]["breaker"]["state"], "open");
    assert_eq!(
        value["tenants"]["acme"]["breaker"]["retry_after_ms"],
        23_400
    );
    assert_eq!(value["tenants"]["beta"]["breaker"]["state"], "half_open");
    assert_eq!(value["tenants"]["gamma"]["refusals"]["tenant_cap"], 12);
    assert_eq!(value["agents"]["echo"]["max_sessions"], 50);
    assert_eq!(
        value["tenant_config"]["last_error"],
        "line 12: max_sessions: expected an integer"
    );
    assert_eq!(value["worker"]["shared_bytes"], 180 * 1_048_576);
    assert_eq!(value["worker"]["consecutive_failure_limit"], 5);
    assert_eq!(value["worker"]["refusals"]["breaker_open"], 3);

    let read = json_snapshots(vec![original.clone()], &ViewOptions::default());
    assert_eq!(read.len(), 1);
    assert_eq!(
        read[0].worker, original.worker,
        "the worker header reads back"
    );
    assert_eq!(read[0].tenants, original.tenants, "the tenants read back");
    assert_eq!(read[0].agents, original.agents, "the agents read back");
    assert_eq!(read[0].tenant_config, original.tenant_config);
    let acme = ViewOptions {
        tenant: Some("acme".into()),
        ..ViewOptions::default()
    };
    let filtered = json_snapshots(vec![original.clone()], &acme);
    assert_eq!(session_ids(&filtered[0]), ["s-30"]);
    assert_eq!(
        filtered[0].tenants, original.tenants,
        "tenant figures are the worker's and stay whole"
    );
    assert_eq!(filtered[0].tenant_config, original.tenant_config);
    assert_eq!(filtered[0].agents, original.agents);
    assert_eq!(
        filtered[0].tenants["acme"].breaker.state,
        BreakerState::Open
    );
    assert_eq!(
        filtered[0].tenants["gamma"].refusals[&RefusalReason::TenantCap],
        12
    );
}
