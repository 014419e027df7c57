//! Text helpers of the live view: fitting and wrapping text to a width in terminal cells,
//! inline bars and sparklines made of block characters.

use unicode_width::{UnicodeWidthChar as _, UnicodeWidthStr as _};

/// How text is placed in a cell wider than it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Align {
    /// Padded on the right.
    Left,
    /// Padded on the left.
    Right,
}

/// `text` in exactly `width` terminal cells: cut with `…` when wider, padded when narrower.
#[must_use]
pub fn fit(text: &str, width: usize, align: Align) -> String {
    let text_width = text.width();
    if text_width <= width {
        let padding = " ".repeat(width - text_width);
        return match align {
            Align::Left => format!("{text}{padding}"),
            Align::Right => format!("{padding}{text}"),
        };
    }
    if width == 0 {
        return String::new();
    }
    let mut cut = String::with_capacity(width + 2);
    let mut used = 0;
    for character in text.chars() {
        let character_width = character.width().unwrap_or(0);
        if used + character_width > width - 1 {
            break;
        }
        cut.push(character);
        used += character_width;
    }
    cut.push('…');
    used += 1;
    cut.push_str(&" ".repeat(width.saturating_sub(used)));
    cut
}

/// `text` broken into lines of at most `width` terminal cells, at spaces where it can and
/// anywhere where a word is wider than a line; every line after the first starts with
/// `indent` spaces (and holds `indent` fewer cells of text). Nothing of the text is lost
/// but the spaces at the breaks.
#[must_use]
pub fn wrap(text: &str, width: usize, indent: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut rest = text;
    loop {
        let prefix = if lines.is_empty() { 0 } else { indent };
        let room = width.saturating_sub(prefix).max(1);
        if rest.width() <= room {
            break;
        }
        // The longest head of `rest` that fits (at least one character).
        let mut used = 0;
        let mut end = 0;
        for (index, character) in rest.char_indices() {
            let character_width = character.width().unwrap_or(0);
            if used + character_width > room && end > 0 {
                break;
            }
            used += character_width;
            end = index + character.len_utf8();
        }
        let space = rest[..end]
            .rfind(' ')
            .filter(|space| !rest[..*space].trim().is_empty());
        let after_slash = rest[..end]
            .rfind('/')
            .map(|slash| slash + 1)
            .filter(|cut| *cut < end);
        let cut = if rest[end..].starts_with(' ') {
            end
        } else {
            space.or(after_slash).unwrap_or(end)
        };
        lines.push(format!("{}{}", " ".repeat(prefix), rest[..cut].trim_end()));
        rest = rest[cut..].trim_start();
    }
    if !rest.is_empty() || lines.is_empty() {
        let prefix = if lines.is_empty() { 0 } else { indent };
        lines.push(format!("{}{rest}", " ".repeat(prefix)));
    }
    lines
}

/// The eighths of a bar cell, from empty to full.
const BAR_EIGHTHS: [char; 9] = [' ', '▏', '▎', '▍', '▌', '▋', '▊', '▉', '█'];

/// A horizontal bar `width` cells wide, filled to `fraction` (clamped to 0..=1) in eighths
/// of a cell.
#[must_use]
pub fn bar(fraction: f64, width: usize) -> String {
    let fraction = if fraction.is_finite() {
        fraction.clamp(0.0, 1.0)
    } else {
        0.0
    };
    // The product is at most 8 × width, a small positive number.
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let eighths = (fraction * (width * 8) as f64).round() as usize;
    let mut text = String::with_capacity(width * 3);
    for cell in 0..width {
        let filled = eighths.saturating_sub(cell * 8).min(8);
        text.push(BAR_EIGHTHS[filled]);
    }
    text
}

/// The levels of a sparkline cell, from lowest to highest.
const SPARK_LEVELS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// A sparkline of `values` scaled from 0 to `ceiling` (at least the largest value), one cell
/// per value; `None` values (no data yet) are dots, so the time axis stays visible.
#[must_use]
pub fn sparkline(values: &[Option<f64>], ceiling: f64) -> String {
    let largest = values.iter().flatten().copied().fold(0.0_f64, f64::max);
    let ceiling = ceiling.max(largest);
    values
        .iter()
        .map(|value| match value {
            None => '·',
            Some(value) if ceiling <= 0.0 || !value.is_finite() => SPARK_LEVELS[0],
            Some(value) => {
                // The index is within 0..=7 after clamping.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let level = ((value / ceiling).clamp(0.0, 1.0) * 7.0).round() as usize;
                SPARK_LEVELS[level]
            }
        })
        .collect()
}

/// Squeezes `values` into at most `columns` values, each merging a run of neighbours with
/// `merge`; fewer values than columns are returned as they are.
#[must_use]
pub fn squeeze(values: &[f64], columns: usize, merge: fn(&[f64]) -> f64) -> Vec<f64> {
    if values.len() <= columns || columns == 0 {
        return values.to_vec();
    }
    (0..columns)
        .map(|column| {
            let start = column * values.len() / columns;
            let end = ((column + 1) * values.len() / columns).max(start + 1);
            merge(&values[start..end])
        })
        .collect()
}

/// The mean of a non-empty run of values.
#[must_use]
pub fn mean(values: &[f64]) -> f64 {
    // Runs are short; the length fits an f64 exactly.
    #[allow(clippy::cast_precision_loss)]
    let count = values.len().max(1) as f64;
    values.iter().sum::<f64>() / count
}

/// The largest of a run of values.
#[must_use]
pub fn largest(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::MIN, f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_cut_or_padded_to_the_width() {
        assert_eq!(fit("echo", 6, Align::Left), "echo  ");
        assert_eq!(fit("12.5", 6, Align::Right), "  12.5");
        assert_eq!(fit("transcriber", 6, Align::Left), "trans…");
        assert_eq!(fit("東京東京", 6, Align::Left), "東京… ");
        assert_eq!(fit("東京東京", 5, Align::Left), "東京…");
        assert_eq!(fit("abc", 0, Align::Left), "");
    }

    #[test]
    fn long_text_wraps_at_spaces_then_slashes() {
        assert_eq!(wrap("short", 10, 2), ["short"]);
        assert_eq!(wrap("", 10, 2), [""]);
        assert_eq!(
            wrap("  → run  examples/demo/src/agents/blocker.rs:28", 24, 4),
            [
                "  → run",
                "    examples/demo/src/",
                "    agents/blocker.rs:28"
            ]
        );
        assert_eq!(wrap("abcdefgh", 3, 0), ["abc", "def", "gh"]);
        assert_eq!(wrap("東京東京", 3, 0), ["東", "京", "東", "京"]);
    }

    #[test]
    fn bars_fill_in_eighths() {
        assert_eq!(bar(0.0, 4), "    ");
        assert_eq!(bar(0.5, 4), "██  ");
        assert_eq!(bar(0.55, 4), "██▎ ");
        assert_eq!(bar(1.7, 3), "███");
        assert_eq!(bar(f64::NAN, 2), "  ");
    }

    #[test]
    fn sparklines_scale_to_the_ceiling() {
        assert_eq!(
            sparkline(&[None, Some(0.0), Some(50.0), Some(100.0)], 100.0),
            "·▁▅█"
        );
        assert_eq!(sparkline(&[Some(2.0), Some(4.0)], 0.0), "▅█");
        assert_eq!(sparkline(&[Some(0.0)], 0.0), "▁");
    }

    #[test]
    fn long_series_are_squeezed_into_the_columns() {
        let values: Vec<f64> = (0..10).map(f64::from).collect();
        assert_eq!(squeeze(&values, 5, mean), [0.5, 2.5, 4.5, 6.5, 8.5]);
        assert_eq!(squeeze(&values, 5, largest), [1.0, 3.0, 5.0, 7.0, 9.0]);
        assert_eq!(squeeze(&values[..3], 5, mean), [0.0, 1.0, 2.0]);
    }
}
