//! The tenant lines of the live view's header (breakers, a failed config reload, the tenant
//! summary, the config and shared state, one tenant's detail) drawn on ratatui's
//! `TestBackend` at 80 and 120 columns, compared with insta snapshots of the text.

use insta::assert_snapshot;
use openrtc_cli::cli::SortKey;
use openrtc_cli::top::tui::state::Settings;
use ratatui::style::Color;

use crate::fixtures::tenant_worker;
use crate::tui_render::{app_with, column_of, draw, row_starting_with, sorted_by, text_of};

/// The widths the tenant lines are checked at, with a height each.
const TENANT_SIZES: [(u16, u16); 2] = [(80, 24), (120, 30)];

#[test]
fn a_worker_with_tenants_shows_its_tenant_lines() {
    let (mut app, _commands) = app_with(&[tenant_worker()], sorted_by(SortKey::Cpu));
    for (width, height) in TENANT_SIZES {
        let buffer = draw(&mut app, width, height);
        let text = text_of(&buffer);
        for expected in [
            "\"breakers: acme open (retry 24s, 3/5 failed), beta half_open (1 probe)",
            "\"reload failed: line 12: max_sessions: expected an integer; keeping v3f9a1c2e8b",
            "\"tenants: gamma 3/3 40M · ",
            "\"config: /etc/openrtc/tenants.toml v3f9a1c2e8b7d6a50",
        ] {
            assert!(
                text.contains(expected),
                "{expected:?} missing at {width}x{height}:\n{text}"
            );
        }
        let breakers = row_starting_with(&buffer, "breakers:");
        assert_eq!(
            buffer[(column_of(&buffer, breakers, "acme"), breakers)].fg,
            Color::Red,
            "an open breaker is an alert"
        );
        let summary = row_starting_with(&buffer, "tenants:");
        let cap = column_of(&buffer, summary, "3/3");
        assert_eq!(
            buffer[(cap, summary)].fg,
            Color::Yellow,
            "a reached cap is a warning"
        );
        assert_snapshot!(format!("tenants_{width}x{height}"), text);
    }
    let wide = text_of(&draw(&mut app, 120, 30));
    assert!(
        wide.contains("refused 15 (tenant_cap 12, breaker_open 3)"),
        "{wide}"
    );
    assert!(
        wide.contains(" · shared: 180.0 MiB prewarmed (~1.1 GiB as 6 processes)"),
        "{wide}"
    );
}

#[test]
fn a_view_filtered_to_one_tenant_shows_its_detail_lines() {
    let settings = Settings {
        tenant: Some("acme".into()),
        ..sorted_by(SortKey::Cpu)
    };
    let (mut app, _commands) = app_with(&[tenant_worker()], settings);
    for (width, height) in TENANT_SIZES {
        let buffer = draw(&mut app, width, height);
        let text = text_of(&buffer);
        for expected in [
            "\"tenant acme: sessions 1/10 · heap 12.0 MiB of 64.0 MiB",
            "\"breaker open (retry in 24s, 3 of 5 failed in 60s, cooldown 30s, opened 2×)",
        ] {
            assert!(
                text.contains(expected),
                "{expected:?} missing at {width}x{height}:\n{text}"
            );
        }
        assert_snapshot!(format!("one_tenant_{width}x{height}"), text);
    }
}

#[test]
fn two_workers_with_tenants_keep_their_most_important_lines() {
    let mut second = tenant_worker();
    second.worker.name = "edge-us.3".into();
    second.worker.pid = 5152;
    let (mut app, _commands) = app_with(&[tenant_worker(), second], sorted_by(SortKey::Cpu));
    let text = text_of(&draw(&mut app, 80, 24));
    let header: Vec<&str> = text
        .lines()
        .take_while(|line| !line.contains("SESSION"))
        .collect();
    assert_eq!(header.len(), 8, "a third of the height:\n{text}");
    for block in header.chunks(4) {
        assert!(block[0].starts_with("\"edge-us."), "{text}");
        assert!(block[1].starts_with("\"sessions 6/100"), "{text}");
        assert!(block[2].starts_with("\"breakers: acme open"), "{text}");
        assert!(block[3].starts_with("\"reload failed:"), "{text}");
    }
}
