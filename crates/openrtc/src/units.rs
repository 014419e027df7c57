//! Unit conversions shared by the runtime: durations to whole nanoseconds and milliseconds,
//! and byte counts to and from mebibytes.
//!
//! Every conversion saturates instead of wrapping or panicking: a `Duration::MAX` setting or a
//! huge `_mb` figure becomes `u64::MAX`, never a small number.

use std::time::Duration;

/// Nanoseconds in a millisecond.
pub(crate) const NS_PER_MS: u64 = 1_000_000;

/// Bytes in a mebibyte.
pub(crate) const BYTES_PER_MIB: u64 = 1024 * 1024;

/// A duration in nanoseconds, saturating.
pub(crate) fn duration_ns(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// A duration in whole milliseconds (rounded down), saturating.
pub(crate) fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Nanoseconds as whole milliseconds, rounded down.
pub(crate) fn ns_to_ms(ns: u64) -> u64 {
    ns / NS_PER_MS
}

/// Mebibytes as bytes, saturating.
pub(crate) fn mib_to_bytes(mib: u64) -> u64 {
    mib.saturating_mul(BYTES_PER_MIB)
}

/// Bytes as MiB with one decimal, for log lines and reasons.
pub(crate) fn format_mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / BYTES_PER_MIB as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_convert_exactly_and_saturate() {
        assert_eq!(duration_ns(Duration::from_micros(1_500)), 1_500_000);
        assert_eq!(duration_ns(Duration::ZERO), 0);
        assert_eq!(duration_ns(Duration::MAX), u64::MAX);
        assert_eq!(duration_ms(Duration::from_micros(1_999)), 1);
        assert_eq!(duration_ms(Duration::from_secs(5)), 5_000);
        assert_eq!(duration_ms(Duration::MAX), u64::MAX);
    }

    #[test]
    fn nanoseconds_become_whole_milliseconds_rounded_down() {
        assert_eq!(ns_to_ms(999_999), 0);
        assert_eq!(ns_to_ms(1_000_000), 1);
        assert_eq!(ns_to_ms(72_900_000), 72);
        assert_eq!(ns_to_ms(u64::MAX), u64::MAX / 1_000_000);
    }

    #[test]
    fn mebibytes_convert_to_bytes_and_saturate() {
        assert_eq!(mib_to_bytes(0), 0);
        assert_eq!(mib_to_bytes(3), 3 * 1024 * 1024);
        assert_eq!(mib_to_bytes(u64::MAX), u64::MAX);
    }

    #[test]
    fn bytes_format_as_mebibytes_with_one_decimal() {
        assert_eq!(format_mib(0), "0.0 MiB");
        assert_eq!(format_mib(1024 * 1024), "1.0 MiB");
        assert_eq!(format_mib(1536 * 1024), "1.5 MiB");
        assert_eq!(format_mib(512 * 1024 * 1024 + 100), "512.0 MiB");
    }
}
