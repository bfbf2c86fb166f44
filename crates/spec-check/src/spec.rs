//! Loading the Allium spec: parse every `.allium` file, analyse it with the
//! same cross-module context as `allium check`, and extract the stable ids of
//! its rules and invariants.

use std::fmt;
use std::path::{Path, PathBuf};

use allium_parser::ast::{AnnotationKind, BlockItem, BlockItemKind, BlockKind, Decl, Module};
use allium_parser::diagnostic::Severity as AlliumSeverity;
use allium_parser::lexer::SourceMap;
use allium_parser::{Diagnostic, ParseResult};
use serde::Serialize;

use crate::cross_module::CrossModuleContext;
use crate::{Error, Location, display_path, read_file, sorted_entries};

/// The parsed spec: its diagnostics and every declared id.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Parser and analyser diagnostics of every file, in file order.
    pub diagnostics: Vec<SpecDiagnostic>,
    /// In file order, then declaration order; duplicates are kept so the
    /// checker can report them.
    pub ids: Vec<SpecId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Error,
    Warning,
    Info,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Error => "error",
            Self::Warning => "warning",
            Self::Info => "info",
        })
    }
}

/// One parser or analyser diagnostic, positioned as `allium check` reports it
/// (1-based line and column).
#[derive(Debug, Clone, Serialize)]
pub struct SpecDiagnostic {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub severity: Severity,
    pub code: Option<String>,
    pub message: String,
}

impl fmt::Display for SpecDiagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file, self.line, self.col, self.severity, self.message
        )
    }
}

/// What kind of declaration an id names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IdKind {
    /// `rule Name { ... }`
    Rule,
    /// Top-level `invariant Name { ... }`
    Invariant,
    /// `invariant Name { ... }` inside an entity (or other) block.
    EntityInvariant,
    /// `@invariant Name` prose annotation, normally in a contract.
    AnnotatedInvariant,
}

/// A rule or invariant that must be implemented and tested.
#[derive(Debug, Clone)]
pub struct SpecId {
    /// `<file stem>.<Name>`
    pub id: String,
    pub kind: IdKind,
    pub declared_at: Location,
}

/// A spec file read and parsed, before analysis.
#[derive(Debug)]
pub(crate) struct ParsedFile {
    pub path: PathBuf,
    pub source: String,
    pub result: ParseResult,
}

/// Parses and analyses every `.allium` file under `spec_dir` (recursively,
/// like `allium check <dir>`), reporting file names relative to `root`.
pub fn load(spec_dir: &Path, root: &Path) -> Result<Spec, Error> {
    if !spec_dir.is_dir() {
        return Err(Error::MissingSpecDir(spec_dir.to_path_buf()));
    }
    // Canonical, so that names display relative to the (canonical) root and
    // `use` paths resolve the way `allium check` resolves them.
    let spec_dir = spec_dir.canonicalize().map_err(|source| Error::Io {
        path: spec_dir.to_path_buf(),
        source,
    })?;
    let mut paths = Vec::new();
    collect_allium_files(&spec_dir, &mut paths)?;
    if paths.is_empty() {
        return Err(Error::NoSpecFiles(spec_dir));
    }

    let parsed = paths
        .into_iter()
        .map(|path| {
            let source = read_file(&path)?;
            let result = allium_parser::parse(&source);
            Ok(ParsedFile {
                path,
                source,
                result,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;

    let context = CrossModuleContext::build(&parsed);
    let mut spec = Spec {
        diagnostics: Vec::new(),
        ids: Vec::new(),
    };
    for file in &parsed {
        let shown = display_path(&file.path, root);
        let source_map = SourceMap::new(&file.source);
        let analysis = context.analyze(file);
        spec.diagnostics.extend(
            file.result
                .diagnostics
                .iter()
                .chain(&analysis)
                .map(|d| to_spec_diagnostic(d, &shown, &source_map)),
        );

        let stem = file
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut collector = IdCollector {
            stem: &stem,
            file: &shown,
            source_map: &source_map,
            ids: &mut spec.ids,
        };
        collector.module(&file.result.module);
    }
    Ok(spec)
}

fn collect_allium_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), Error> {
    for entry in sorted_entries(dir)? {
        let path = entry.path();
        if path.is_dir() {
            collect_allium_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "allium") {
            out.push(path);
        }
    }
    Ok(())
}

fn to_spec_diagnostic(d: &Diagnostic, file: &str, source_map: &SourceMap) -> SpecDiagnostic {
    let (line, col) = source_map.line_col(d.span.start);
    SpecDiagnostic {
        file: file.to_owned(),
        line: line as usize + 1,
        col: col as usize + 1,
        severity: match d.severity {
            AlliumSeverity::Error => Severity::Error,
            AlliumSeverity::Warning => Severity::Warning,
            AlliumSeverity::Info => Severity::Info,
        },
        code: d.code.map(str::to_owned),
        message: d.message.clone(),
    }
}

/// Walks one module's AST and records every rule and invariant.
struct IdCollector<'a> {
    stem: &'a str,
    file: &'a str,
    source_map: &'a SourceMap,
    ids: &'a mut Vec<SpecId>,
}

impl IdCollector<'_> {
    fn module(&mut self, module: &Module) {
        for decl in &module.declarations {
            match decl {
                Decl::Block(block) => {
                    if block.kind == BlockKind::Rule
                        && let Some(name) = &block.name
                    {
                        self.record(&name.name, name.span.start, IdKind::Rule);
                    }
                    self.items(&block.items);
                }
                Decl::Invariant(invariant) => self.record(
                    &invariant.name.name,
                    invariant.name.span.start,
                    IdKind::Invariant,
                ),
                Decl::Variant(variant) => self.items(&variant.items),
                Decl::Use(_) | Decl::Default(_) | Decl::Deferred(_) | Decl::OpenQuestion(_) => {}
            }
        }
    }

    /// Invariants can sit in any block body, and block-level `for`/`if`
    /// bodies are block items too, so the walk recurses through them all.
    fn items(&mut self, items: &[BlockItem]) {
        for item in items {
            match &item.kind {
                BlockItemKind::InvariantBlock { name, .. } => {
                    self.record(&name.name, name.span.start, IdKind::EntityInvariant);
                }
                BlockItemKind::Annotation(annotation) => {
                    if let (AnnotationKind::Invariant, Some(name)) =
                        (&annotation.kind, &annotation.name)
                    {
                        self.record(&name.name, name.span.start, IdKind::AnnotatedInvariant);
                    }
                }
                BlockItemKind::ForBlock { items, .. } => self.items(items),
                BlockItemKind::IfBlock {
                    branches,
                    else_items,
                } => {
                    for branch in branches {
                        self.items(&branch.items);
                    }
                    if let Some(items) = else_items {
                        self.items(items);
                    }
                }
                _ => {}
            }
        }
    }

    fn record(&mut self, name: &str, offset: usize, kind: IdKind) {
        let (line, _) = self.source_map.line_col(offset);
        self.ids.push(SpecId {
            id: format!("{}.{name}", self.stem),
            kind,
            declared_at: Location {
                file: self.file.to_owned(),
                line: line as usize + 1,
            },
        });
    }
}
