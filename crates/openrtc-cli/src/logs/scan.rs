//! Turning chunks of raw lines into output: each line pre-checked, parsed, filtered, then
//! written (formatted, or byte for byte with `--json`), and the matches and bad lines counted.
//! Writes to any [`Write`], so it is tested without a process.
//!
//! With a [`PreCheck`], the first text is searched for in the whole chunk at once and only the
//! lines holding it are parsed; the other lines are only looked at for the shape of a record
//! (`{` … `}`), so a line that is cut short or plainly not JSON still counts as bad, while a
//! subtly broken line that cannot match is passed over without being counted.

use std::io::{self, Write};

use memchr::{memchr, memchr_iter, memrchr};

use super::filter::{Filter, PreCheck};
use super::format::format_record;
use super::record::parse_line;

/// The output of `openrtc logs` and what it has counted so far.
#[derive(Debug)]
pub struct Scan<W: Write> {
    filter: Filter,
    pre_check: PreCheck,
    json: bool,
    out: W,
    matched_count: u64,
    bad_count: u64,
}

impl<W: Write> Scan<W> {
    /// A scan writing the records `filter` passes to `out`: raw with `json`, else formatted.
    pub fn new(filter: Filter, json: bool, out: W) -> Self {
        Self {
            pre_check: filter.pre_check(),
            filter,
            json,
            out,
            matched_count: 0,
            bad_count: 0,
        }
    }

    /// Records written so far.
    #[must_use]
    pub fn matched_count(&self) -> u64 {
        self.matched_count
    }

    /// Bad lines skipped so far.
    #[must_use]
    pub fn bad_count(&self) -> u64 {
        self.bad_count
    }

    /// Counts one more bad line (one the reader knows will never be complete).
    pub fn count_bad_line(&mut self) {
        self.bad_count += 1;
    }

    /// Flushes the output.
    ///
    /// # Errors
    ///
    /// The output's error (a closed pipe, say).
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// The output, for tests.
    pub fn into_output(self) -> W {
        self.out
    }

    /// Handles a chunk of whole lines, each ending with `\n`.
    ///
    /// # Errors
    ///
    /// The output's error.
    pub fn chunk(&mut self, chunk: &[u8]) -> io::Result<()> {
        // A clone (cheap, once per chunk) so the lines below can borrow the scan.
        let Some(first) = self.pre_check.first().cloned() else {
            let mut start = 0;
            for end in memchr_iter(b'\n', chunk) {
                self.line(&chunk[start..=end])?;
                start = end + 1;
            }
            return Ok(());
        };
        if every_line_looks_like_a_record(chunk) {
            // No bad line to count outside the candidates: go from hit to hit.
            let mut next_line_start = 0;
            for hit in first.find_iter(chunk) {
                if hit < next_line_start {
                    continue;
                }
                let start = memrchr(b'\n', &chunk[..hit]).map_or(0, |newline| newline + 1);
                let end =
                    memchr(b'\n', &chunk[hit..]).map_or(chunk.len(), |newline| hit + newline + 1);
                self.candidate(&chunk[start..end])?;
                next_line_start = end;
            }
            return Ok(());
        }
        let needle_len = first.needle().len();
        let mut hits = first.find_iter(chunk).peekable();
        let mut start = 0;
        for end in memchr_iter(b'\n', chunk) {
            while hits.next_if(|&hit| hit < start).is_some() {}
            let line = &chunk[start..=end];
            if hits.peek().is_some_and(|&hit| hit + needle_len <= end) {
                self.candidate(line)?;
            } else {
                self.check_shape(line);
            }
            start = end + 1;
        }
        Ok(())
    }

    /// Handles a line holding the pre-check's first text: parsed if it holds the others too.
    fn candidate(&mut self, line: &[u8]) -> io::Result<()> {
        if self.pre_check.rest_in(line) {
            self.parse_and_write(line)
        } else {
            self.check_shape(line);
            Ok(())
        }
    }

    /// Handles one line, with its `\n` if it has one (the end of a file may lack it).
    ///
    /// # Errors
    ///
    /// The output's error.
    pub fn line(&mut self, line: &[u8]) -> io::Result<()> {
        if self.pre_check.all_in(line) {
            self.parse_and_write(line)
        } else {
            self.check_shape(line);
            Ok(())
        }
    }

    /// Parses a candidate line and writes it if it matches; counts it if it is bad.
    fn parse_and_write(&mut self, line: &[u8]) -> io::Result<()> {
        let content = content(line);
        if content.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        match parse_line(content) {
            Ok(record) => {
                if self.filter.matches(&record) {
                    self.matched_count += 1;
                    if self.json {
                        self.out.write_all(line)?;
                        if !line.ends_with(b"\n") {
                            self.out.write_all(b"\n")?;
                        }
                    } else {
                        let mut text = format_record(&record);
                        text.push('\n');
                        self.out.write_all(text.as_bytes())?;
                    }
                }
            }
            Err(_) => self.bad_count += 1,
        }
        Ok(())
    }

    /// Counts a line that cannot match if it does not even look like a record; blank lines
    /// are not records and not counted.
    fn check_shape(&mut self, line: &[u8]) {
        let content = content(line).trim_ascii();
        let looks_like_a_record = content.starts_with(b"{") && content.ends_with(b"}");
        if !content.is_empty() && !looks_like_a_record {
            self.bad_count += 1;
        }
    }
}

/// Whether every line of a chunk of whole lines starts with `{` and ends with `}\n`: every
/// line end is `}\n{`, but the last, `}\n`. A chunk with blank lines or `\r\n` line ends says
/// no, and goes line by line.
fn every_line_looks_like_a_record(chunk: &[u8]) -> bool {
    if !(chunk.starts_with(b"{") && chunk.ends_with(b"}\n")) {
        return false;
    }
    let last = chunk.len() - 1;
    memchr_iter(b'\n', &chunk[..last])
        .all(|newline| newline > 0 && chunk[newline - 1] == b'}' && chunk[newline + 1] == b'{')
}

/// A line without its line end (`\n` or `\r\n`).
fn content(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(session: &str, message: &str) -> String {
        format!(
            r#"{{"ts":"2026-12-06T23:51:13.123456Z","level":"INFO","message":"{message}","session_id":"{session}"}}"#
        )
    }

    fn scan(filter: Filter, json: bool, input: &str) -> (String, u64, u64) {
        let mut scan = Scan::new(filter, json, Vec::new());
        scan.chunk(input.as_bytes()).expect("writes to a Vec");
        let counts = (scan.matched_count(), scan.bad_count());
        let output = String::from_utf8(scan.into_output()).expect("UTF-8");
        (output, counts.0, counts.1)
    }

    fn input() -> String {
        [
            record("s-7", "one"),
            record("s-70", "not me"),
            "garbage".to_owned(),
            String::new(),
            record("s-7", "two\\r"),
            r#"{"cut":"#.to_owned(),
            r#"{"session_id":"s-7","no":"ts"}"#.to_owned(),
            r#"{"session_id":"s-70","no":"ts"}"#.to_owned(),
            record("s-8", "three"),
        ]
        .join("\n")
            + "\n"
    }

    #[test]
    fn json_output_is_the_matching_lines_byte_for_byte() {
        let filter = Filter {
            session: Some("s-7".into()),
            ..Filter::default()
        };
        let (output, matched, bad) = scan(filter, true, &input());
        assert_eq!(
            output,
            format!("{}\n{}\n", record("s-7", "one"), record("s-7", "two\\r"))
        );
        assert_eq!(matched, 2);
        // "garbage" and the cut line by their shape, the s-7 line without ts by parsing; the
        // s-70 line without ts cannot match and is passed over.
        assert_eq!(bad, 3);
    }

    #[test]
    fn without_a_pre_check_every_line_is_parsed() {
        let (output, matched, bad) = scan(Filter::default(), false, &input());
        assert_eq!(matched, 4);
        assert_eq!(bad, 4);
        assert_eq!(output.lines().count(), 4);
        assert!(
            output.starts_with("2026-12-06 23:51:13.123 INFO  s-7     - one\n"),
            "{output}"
        );
    }

    #[test]
    fn a_last_line_without_a_line_end_gets_one() {
        let mut scan = Scan::new(Filter::default(), true, Vec::new());
        scan.line(record("s-1", "end").as_bytes()).expect("writes");
        scan.line(br#"{"ts":"2026-12-06T23:5"#).expect("writes");
        assert_eq!((scan.matched_count(), scan.bad_count()), (1, 1));
        assert_eq!(
            String::from_utf8(scan.into_output()).expect("UTF-8"),
            format!("{}\n", record("s-1", "end"))
        );
    }

    #[test]
    fn the_shape_of_a_chunk_is_checked_at_every_line_end() {
        let good = "{\"a\":1}\n{\"b\":{\"c\":2}}\n{}\n";
        assert!(every_line_looks_like_a_record(good.as_bytes()));
        for bad in [
            "{\"a\":1}\n\n{}\n",
            "{\"a\":1}\r\n{}\n",
            "{\"a\":1}\n{\"cut\n{}\n",
            "{\"a\":1}\ngarbage}\n",
            "x{}\n",
            "{}",
            "{\"a\":1}\n{}",
            "",
        ] {
            assert!(!every_line_looks_like_a_record(bad.as_bytes()), "{bad:?}");
        }
        let long = "{\"m\":\"".to_owned() + &"x".repeat(10_000) + "\"}\n";
        let broken_late = long.repeat(3) + "{\"cut\n" + &long;
        assert!(every_line_looks_like_a_record(long.repeat(3).as_bytes()));
        assert!(!every_line_looks_like_a_record(broken_late.as_bytes()));
    }

    #[test]
    fn both_ways_through_a_chunk_agree() {
        let filter = Filter {
            session: Some("s-7".into()),
            ..Filter::default()
        };
        let lines: String = (0..300)
            .map(|index| record(&format!("s-{}", index % 80), &format!("m{index}")) + "\n")
            .collect();
        let (fast, fast_matched, fast_bad) = scan(filter.clone(), true, &lines);
        let (slow, slow_matched, slow_bad) = scan(filter, true, &(lines.clone() + "\n"));
        assert_eq!((fast_matched, fast_bad), (4, 0));
        assert_eq!(
            (fast, fast_matched, fast_bad),
            (slow, slow_matched, slow_bad)
        );
    }

    #[test]
    fn crlf_line_ends_are_passed_through() {
        let line = format!("{}\r\n", record("s-1", "dos"));
        let (output, matched, bad) = scan(Filter::default(), true, &line);
        assert_eq!((output, matched, bad), (line.clone(), 1, 0));
    }
}
