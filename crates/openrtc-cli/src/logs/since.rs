//! The `--since` argument: a time ago (`90s`, `10m`, `2h`, `1d`) or an RFC 3339 time, and the
//! cutoff it gives. Pure: the current time is passed in.

use std::time::Duration;

use time::OffsetDateTime;

use super::record::parse_time;

/// Where `--since` starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Since {
    /// This long before the command started.
    Ago(Duration),
    /// This instant.
    At(OffsetDateTime),
}

impl Since {
    /// The earliest record time that passes, given the current time.
    #[must_use]
    pub fn cutoff(self, now: OffsetDateTime) -> OffsetDateTime {
        match self {
            Self::Ago(duration) => now
                .checked_sub(time::Duration::try_from(duration).unwrap_or(time::Duration::MAX))
                .unwrap_or(OffsetDateTime::UNIX_EPOCH),
            Self::At(at) => at,
        }
    }
}

/// Parses `--since`: a whole number with a unit `s`, `m`, `h` or `d` (`90s`, `10m`, `2h`,
/// `1d`), or an RFC 3339 time (`2026-12-06T23:00:00Z`, `2026-12-07T01:00:00+02:00`).
///
/// # Errors
///
/// A message saying which forms are accepted.
pub fn parse_since(text: &str) -> Result<Since, String> {
    let text = text.trim();
    if let Some(duration) = parse_ago(text) {
        return Ok(Since::Ago(duration));
    }
    if let Some(at) = parse_time(text) {
        return Ok(Since::At(at));
    }
    Err(format!(
        "`{text}` is neither a time ago (a whole number with s, m, h or d: 90s, 10m, 2h, 1d) \
         nor an RFC 3339 time (2026-12-06T23:00:00Z)"
    ))
}

/// `90s`, `10m`, `2h`, `1d` as a duration; `None` for anything else (or an absurd size).
fn parse_ago(text: &str) -> Option<Duration> {
    let unit_start = text.find(|character: char| !character.is_ascii_digit())?;
    let (number, unit) = text.split_at(unit_start);
    if number.is_empty() {
        return None;
    }
    let count: u64 = number.parse().ok()?;
    let unit_secs: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return None,
    };
    count.checked_mul(unit_secs).map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_ago_take_a_whole_number_and_a_unit() {
        let cases = [
            ("90s", 90),
            ("10m", 600),
            ("2h", 7_200),
            ("1d", 86_400),
            ("0s", 0),
            (" 5m ", 300),
        ];
        for (text, secs) in cases {
            assert_eq!(
                parse_since(text),
                Ok(Since::Ago(Duration::from_secs(secs))),
                "{text}"
            );
        }
        for refused in [
            "",
            "10",
            "m",
            "-5m",
            "1.5h",
            "10 m",
            "10min",
            "3w",
            "yesterday",
        ] {
            let message = parse_since(refused).expect_err(refused);
            assert!(
                message.contains("10m") && message.contains("RFC 3339"),
                "{message}"
            );
        }
        assert!(parse_since("99999999999999999999d").is_err());
    }

    #[test]
    fn times_are_rfc_3339_in_any_offset() {
        let utc = parse_since("2026-12-06T23:00:00Z").expect("a time");
        let offset = parse_since("2026-12-07T01:00:00+02:00").expect("a time");
        assert_eq!(utc, offset);
        let Since::At(at) = utc else {
            panic!("an instant: {utc:?}")
        };
        assert_eq!(at.unix_timestamp(), 1_796_598_000);
    }

    #[test]
    fn the_cutoff_is_now_less_the_duration() {
        let now = OffsetDateTime::from_unix_timestamp(1_796_684_400).expect("valid");
        let ago = Since::Ago(Duration::from_secs(600)).cutoff(now);
        assert_eq!(ago.unix_timestamp(), 1_796_683_800);
        let at = OffsetDateTime::from_unix_timestamp(5).expect("valid");
        assert_eq!(Since::At(at).cutoff(now), at);
        let huge = Since::Ago(Duration::from_secs(u64::MAX)).cutoff(now);
        assert_eq!(huge, OffsetDateTime::UNIX_EPOCH, "no overflow");
    }
}
