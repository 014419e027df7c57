//! Snapshots of the `openrtc top --once` text for hand-built pool snapshots, rendered by the
//! library functions the binary uses.

use insta::assert_snapshot;
use openrtc_cli::cli::SortKey;
use openrtc_cli::top::table::{ViewOptions, render_workers};
use openrtc_proto::SessionState;

use crate::fixtures::{busy_worker, draining_worker, idle_worker};

#[test]
fn a_busy_worker_with_a_slow_session() {
    let text = render_workers(&[&busy_worker()], &ViewOptions::default());
    assert!(text.contains("slow (blocking 230ms)"));
    assert_snapshot!(text);
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
