//! `spec/PENDING`: ids that are knowingly not yet implemented or tested.
//!
//! One entry per line: the id, whitespace, then the reason, which is
//! required. Blank lines and lines starting with `#` are ignored. The file is
//! optional; without it nothing is pending.

use std::io::ErrorKind;
use std::path::Path;

use crate::{Error, Location};

#[derive(Debug, Clone)]
pub struct PendingEntry {
    pub id: String,
    /// `None` when the line has no reason, which is itself a failure.
    pub reason: Option<String>,
    pub location: Location,
}

#[derive(Debug, Clone, Default)]
pub struct Pending {
    pub entries: Vec<PendingEntry>,
}

impl Pending {
    pub fn get(&self, id: &str) -> Option<&PendingEntry> {
        self.entries.iter().find(|entry| entry.id == id)
    }
}

/// Reads the PENDING file at `path`; a missing file means nothing is
/// pending. `shown` is the name used in reported locations.
pub fn load(path: &Path, shown: &str) -> Result<Pending, Error> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(parse(&text, shown)),
        Err(error) if error.kind() == ErrorKind::NotFound => Ok(Pending::default()),
        Err(source) => Err(Error::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Parses PENDING text; `shown` names the file in locations.
pub fn parse(text: &str, shown: &str) -> Pending {
    let entries = text
        .lines()
        .enumerate()
        .filter_map(|(index, line)| {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                return None;
            }
            let (id, reason) = match line.split_once(char::is_whitespace) {
                Some((id, reason)) => (id, Some(reason.trim().to_owned())),
                None => (line, None),
            };
            Some(PendingEntry {
                id: id.to_owned(),
                reason,
                location: Location {
                    file: shown.to_owned(),
                    line: index + 1,
                },
            })
        })
        .collect();
    Pending { entries }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ids_and_reasons_and_skips_comments_and_blank_lines() {
        let text = "# header\n\nwarden.A\tneeds a design\n  warden.B  \nwarden.C   two  words \n";
        let pending = parse(text, "spec/PENDING");
        let entries: Vec<(&str, Option<&str>, usize)> = pending
            .entries
            .iter()
            .map(|e| (e.id.as_str(), e.reason.as_deref(), e.location.line))
            .collect();
        assert_eq!(
            entries,
            [
                ("warden.A", Some("needs a design"), 3),
                ("warden.B", None, 4),
                ("warden.C", Some("two  words"), 5),
            ]
        );
        assert_eq!(pending.entries[0].location.file, "spec/PENDING");
    }

    #[test]
    fn a_missing_file_means_nothing_is_pending() {
        let pending = load(Path::new("/nonexistent/spec-check/PENDING"), "PENDING")
            .expect("a missing file is not an error");
        assert!(pending.entries.is_empty());
    }
}
