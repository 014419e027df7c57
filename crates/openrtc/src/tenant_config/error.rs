//! Why a tenant config file cannot be used: it cannot be read, or what it says is not valid
//! (with the line and column where).

use std::path::{Path, PathBuf};

/// Why a tenant config file cannot be used. Every error names the file; an invalid file's
/// error gives the line and column (1-based) wherever the problem has a place in the text.
///
/// It keeps an I/O error as its text, so that it can be cloned and compared (a reload keeps
/// the last one for snapshots).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TenantConfigError {
    /// The file cannot be read.
    #[error("cannot read {}: {error}", path.display())]
    Read {
        /// The file's path, as given.
        path: PathBuf,
        /// The I/O error, as text.
        error: String,
    },
    /// The file is not a valid tenant config: a TOML syntax error, an unknown key, a value
    /// of the wrong type or out of range, or a cap for an agent that is not registered.
    #[error("{}: {message}", place(path, *line, *column))]
    Invalid {
        /// The file's path, as given.
        path: PathBuf,
        /// The line of the problem (1-based), when it has a place in the text.
        line: Option<u32>,
        /// The column of the problem (1-based, in characters), when it has a place in the
        /// text.
        column: Option<u32>,
        /// What is wrong (lowercase, without the place).
        message: String,
    },
}

impl TenantConfigError {
    /// The file's path, as given.
    #[must_use]
    pub fn path(&self) -> &Path {
        match self {
            Self::Read { path, .. } | Self::Invalid { path, .. } => path,
        }
    }

    /// The line of the problem (1-based), when it has a place in the text.
    #[must_use]
    pub fn line(&self) -> Option<u32> {
        match self {
            Self::Read { .. } => None,
            Self::Invalid { line, .. } => *line,
        }
    }

    /// The column of the problem (1-based, in characters), when it has a place in the text.
    #[must_use]
    pub fn column(&self) -> Option<u32> {
        match self {
            Self::Read { .. } => None,
            Self::Invalid { column, .. } => *column,
        }
    }

    pub(super) fn read(path: &Path, error: &std::io::Error) -> Self {
        Self::Read {
            path: path.to_path_buf(),
            error: error.to_string(),
        }
    }

    /// An invalid file, the problem at byte `offset` of `text` (if it has a place).
    pub(super) fn invalid_at(
        path: &Path,
        text: &str,
        offset: Option<usize>,
        message: impl Into<String>,
    ) -> Self {
        let (line, column) = match offset {
            Some(offset) => {
                let (line, column) = line_and_column(text, offset);
                (Some(line), Some(column))
            }
            None => (None, None),
        };
        Self::Invalid {
            path: path.to_path_buf(),
            line,
            column,
            message: message.into(),
        }
    }
}

/// `path:line:column`, or the path alone without a place.
fn place(path: &Path, line: Option<u32>, column: Option<u32>) -> String {
    match (line, column) {
        (Some(line), Some(column)) => format!("{}:{line}:{column}", path.display()),
        (Some(line), None) => format!("{}:{line}", path.display()),
        _ => path.display().to_string(),
    }
}

/// The line and column (both 1-based; the column in characters) of byte `offset` of `text`.
/// An offset inside a character counts as that character's; one past the end, as the end's.
pub(super) fn line_and_column(text: &str, offset: usize) -> (u32, u32) {
    let before = text.get(..offset).unwrap_or_else(|| {
        let end = (0..=offset.min(text.len()))
            .rev()
            .find(|&end| text.is_char_boundary(end))
            .unwrap_or(0);
        &text[..end]
    });
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    let line = before.matches('\n').count() + 1;
    let column = before[line_start..].chars().count() + 1;
    (saturate(line), saturate(column))
}

fn saturate(count: usize) -> u32 {
    u32::try_from(count).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based_and_count_characters() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(line_and_column(text, 0), (1, 1));
        assert_eq!(line_and_column(text, 6), (2, 1));
        // 'é' is two bytes: the '=' after "bé " is the 4th character of line 2.
        assert_eq!(line_and_column(text, 6 + 4), (2, 4));
        assert_eq!(line_and_column(text, 8), (2, 2), "inside 'é' counts as 'é'");
        assert_eq!(line_and_column(text, 1000), (3, 1), "past the end");
    }

    #[test]
    fn display_gives_the_place_before_the_message() {
        let error = TenantConfigError::invalid_at(
            Path::new("tenants.toml"),
            "x = 1\ny = 2\n",
            Some(6),
            "unknown field `y`",
        );
        assert_eq!(error.to_string(), "tenants.toml:2:1: unknown field `y`");
        let error = TenantConfigError::invalid_at(Path::new("tenants.toml"), "", None, "not UTF-8");
        assert_eq!(error.to_string(), "tenants.toml: not UTF-8");
        let error = TenantConfigError::read(
            Path::new("missing.toml"),
            &std::io::Error::from(std::io::ErrorKind::NotFound),
        );
        assert_eq!(
            error.to_string(),
            "cannot read missing.toml: entity not found"
        );
    }
}
