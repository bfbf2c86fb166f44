//! The conformance gate: every rule and invariant in the Allium spec must have
//! an implementation site in the Rust code and a test that names it.
//!
//! # Spec ids
//!
//! Every `.allium` file under the spec directory is parsed with
//! `allium-parser` and analysed with the same cross-module context that
//! `allium check` builds, so the error-level diagnostics match the official
//! CLI. Any error fails the run. Each of the following declarations gets the
//! stable id `<file stem>.<Name>`:
//!
//! - a `rule Name { ... }`,
//! - a top-level `invariant Name { ... }`,
//! - an entity-level `invariant Name { ... }` inside a block,
//! - an `@invariant Name` annotation (normally inside a `contract`).
//!
//! # Marker convention
//!
//! Markers are doc-comment lines, read from the syntax tree with `syn` (not
//! grepped), on any item: fn, method, struct, enum, trait, impl block, mod,
//! const, static, type (inner `//!` docs work too). A line whose trimmed text
//! starts with `spec:` names implementation sites, one starting with `covers:`
//! names tests; both take a comma-separated list of ids:
//!
//! ```text
//! /// spec: warden.EntryExpires, core.CorrectInstancesAgree
//! /// covers: warden.EntryExpires
//! ```
//!
//! `covers:` is only valid in test code and `spec:` only outside it. Test
//! code is: any file under a `tests/` or `benches/` directory; anything inside
//! a `#[cfg(test)]` module or item, at any depth, including out-of-line
//! `#[cfg(test)] mod name;` files; any fn with an attribute whose last path
//! segment is `test` (`#[test]`, `#[tokio::test]`, ...); the body of a
//! `proptest! { ... }` invocation; and the test oracles listed in
//! [`markers::TEST_ORACLE_DIRS`] (the chaos history checker). Macro bodies
//! that are not valid Rust items are scanned for `#[doc = "..."]` token
//! sequences, which is how a `///` comment inside `proptest!` arrives.
//!
//! Every `.rs` file under the root is scanned, except inside directories
//! named `target`, `.git` or `fixtures`.
//!
//! # PENDING
//!
//! `spec/PENDING` lists ids that are knowingly unfinished: one id per line,
//! whitespace, then a mandatory reason; blank lines and `#` comments are
//! ignored. A pending id without a site or a test is reported, not failed.

mod check;
mod cross_module;
pub mod markers;
pub mod pending;
pub mod report;
pub mod spec;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use check::evaluate;
pub use report::{Failure, FailureKind, IdReport, Report, Status, Summary};

/// Where the checker looks: the workspace root to scan for Rust files and
/// the directory holding the `.allium` files and `PENDING`.
#[derive(Debug, Clone)]
pub struct Config {
    root: PathBuf,
    spec_dir: PathBuf,
}

impl Config {
    /// Resolves the root to an absolute path so that reported file names can
    /// be made relative to it; `spec_dir` defaults to `<root>/spec`.
    pub fn new(root: &Path, spec_dir: Option<&Path>) -> Result<Self, Error> {
        let root = root.canonicalize().map_err(|source| Error::Io {
            path: root.to_path_buf(),
            source,
        })?;
        let spec_dir = spec_dir.map_or_else(|| root.join("spec"), Path::to_path_buf);
        Ok(Self { root, spec_dir })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn spec_dir(&self) -> &Path {
        &self.spec_dir
    }
}

/// A line in a file, as reported: `file:line`, the file relative to the root.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Location {
    pub file: String,
    pub line: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// Problems that stop the check from running at all (exit code 2), as
/// opposed to conformance failures, which are part of the [`Report`].
#[derive(Debug)]
pub enum Error {
    /// A file or directory could not be read.
    Io { path: PathBuf, source: io::Error },
    /// The spec directory does not exist.
    MissingSpecDir(PathBuf),
    /// The spec directory holds no `.allium` files.
    NoSpecFiles(PathBuf),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { path, source } => write!(f, "{}: {source}", path.display()),
            Self::MissingSpecDir(dir) => {
                write!(f, "spec directory {} does not exist", dir.display())
            }
            Self::NoSpecFiles(dir) => write!(f, "no .allium files under {}", dir.display()),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            Self::MissingSpecDir(_) | Self::NoSpecFiles(_) => None,
        }
    }
}

/// Runs the whole check: load the spec, scan the Rust code, read PENDING and
/// evaluate them against each other.
pub fn run(config: &Config) -> Result<Report, Error> {
    let spec = spec::load(config.spec_dir(), config.root())?;
    let scan = markers::scan_workspace(config.root())?;
    let pending_path = config.spec_dir().join("PENDING");
    let pending = pending::load(&pending_path, &display_path(&pending_path, config.root()))?;
    Ok(evaluate(&spec, &scan, &pending))
}

/// A path as reported to the user: relative to the root when it lies under
/// it, with `/` separators so output is the same on every platform.
pub(crate) fn display_path(path: &Path, root: &Path) -> String {
    match path.strip_prefix(root) {
        Ok(relative) => relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/"),
        Err(_) => path.display().to_string(),
    }
}

/// Reads a file, attaching its path to any error.
pub(crate) fn read_file(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Lists a directory's entries sorted by name, so every walk (and therefore
/// every report) is deterministic.
pub(crate) fn sorted_entries(dir: &Path) -> Result<Vec<std::fs::DirEntry>, Error> {
    let io_error = |source| Error::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut entries = std::fs::read_dir(dir)
        .map_err(io_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(io_error)?;
    entries.sort_by_key(std::fs::DirEntry::file_name);
    Ok(entries)
}
