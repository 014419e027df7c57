//! The session id: a number, shown and sent as `s-<n>` everywhere.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A session's id: unique for the worker's lifetime, shown and serialized as `s-<n>` (n ≥ 1).
///
/// Ids order by their number, so `s-2` sorts before `s-10` without parsing any text. The
/// default is `s-1`, the first id a worker hands out; it exists so that snapshot rows can be
/// built field by field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId(u64);

impl SessionId {
    /// The first id a worker hands out, `s-1`.
    pub const FIRST: Self = Self(1);

    /// The id numbered `number`, or `None` for 0 (ids start at 1).
    #[must_use]
    pub const fn from_u64(number: u64) -> Option<Self> {
        if number == 0 {
            None
        } else {
            Some(Self(number))
        }
    }

    /// The numeric part of the id.
    #[must_use]
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// Writes `s-<n>` into `buffer` without allocating and returns it as text.
    fn write_to(self, buffer: &mut [u8; 22]) -> &str {
        let mut start = buffer.len();
        let mut number = self.0;
        loop {
            start -= 1;
            // The remainder is below 10, so the cast cannot truncate.
            #[allow(clippy::cast_possible_truncation)]
            let digit = (number % 10) as u8;
            buffer[start] = b'0' + digit;
            number /= 10;
            if number == 0 {
                break;
            }
        }
        start -= 2;
        buffer[start] = b's';
        buffer[start + 1] = b'-';
        // Only ASCII was written, so the slice is UTF-8.
        std::str::from_utf8(&buffer[start..]).unwrap_or("s-?")
    }
}

impl Default for SessionId {
    fn default() -> Self {
        Self::FIRST
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.pad(self.write_to(&mut [0; 22]))
    }
}

impl std::str::FromStr for SessionId {
    type Err = ParseSessionIdError;

    /// Parses the `s-<n>` form (n ≥ 1, decimal digits only).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        text.strip_prefix("s-")
            .filter(|number| !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|number| number.parse().ok())
            .and_then(Self::from_u64)
            .ok_or_else(|| ParseSessionIdError {
                text: text.to_owned(),
            })
    }
}

/// A string that is not a session id (`s-<n>`, n ≥ 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseSessionIdError {
    text: String,
}

impl fmt::Display for ParseSessionIdError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "{:?} is not a session id: ids look like s-42",
            self.text
        )
    }
}

impl std::error::Error for ParseSessionIdError {}

impl Serialize for SessionId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.write_to(&mut [0; 22]))
    }
}

impl<'de> Deserialize<'de> for SessionId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;

        impl serde::de::Visitor<'_> for Visitor {
            type Value = SessionId;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a session id such as \"s-42\"")
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<SessionId, E> {
                text.parse().map_err(E::custom)
            }
        }

        deserializer.deserialize_str(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_print_parse_and_serialize_as_s_n() {
        for number in [1, 7, 42, 10, 999, u64::MAX] {
            let id = SessionId::from_u64(number).expect("not zero");
            let text = format!("s-{number}");
            assert_eq!(id.to_string(), text);
            assert_eq!(text.parse(), Ok(id));
            assert_eq!(id.as_u64(), number);
            let json = serde_json::to_string(&id).expect("serializes");
            assert_eq!(json, format!("\"{text}\""));
            assert_eq!(serde_json::from_str::<SessionId>(&json).expect("reads"), id);
        }
        assert_eq!(SessionId::from_u64(0), None);
        assert_eq!(
            format!("{:>6}|{:<5}|", SessionId::FIRST, SessionId::FIRST),
            "   s-1|s-1  |"
        );
    }

    #[test]
    fn bad_ids_are_refused_with_a_clear_error() {
        for bad in [
            "42",
            "s-",
            "s-0",
            "s-x",
            "S-1",
            "s--1",
            "s-+1",
            "s-1 ",
            "",
            "s-99999999999999999999",
        ] {
            let error = bad.parse::<SessionId>().expect_err("not an id");
            assert_eq!(
                error.to_string(),
                format!("{bad:?} is not a session id: ids look like s-42")
            );
            let json = serde_json::to_string(bad).expect("a string");
            let error = serde_json::from_str::<SessionId>(&json).expect_err("not an id");
            assert!(
                error
                    .to_string()
                    .contains(&format!("{bad:?} is not a session id")),
                "{error}"
            );
        }
        let error = serde_json::from_str::<SessionId>("7").expect_err("a number is not an id");
        assert!(
            error.to_string().contains("a session id such as"),
            "{error}"
        );
    }

    #[test]
    fn ids_order_by_number() {
        let mut ids: Vec<SessionId> = ["s-10", "s-2", "s-100", "s-1", "s-9"]
            .iter()
            .map(|text| text.parse().expect("an id"))
            .collect();
        ids.sort();
        let texts: Vec<String> = ids.iter().map(ToString::to_string).collect();
        assert_eq!(texts, ["s-1", "s-2", "s-9", "s-10", "s-100"]);
        assert!(SessionId::from_u64(2) < SessionId::from_u64(10));
    }
}
