//! The cross-module context that `allium check` gives each file's analysis.
//!
//! Analysis runs per file, but what counts as an error depends on the other
//! files: which `use` paths resolve, which names and triggers the imported
//! modules declare, which names two imports both declare, and what importers
//! contribute back to the modules they import. spec-check must report the
//! same errors as `allium check spec/`, so this module computes the same
//! context from the parser crate's public collectors.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use allium_parser::ast::{Decl, Module};
use allium_parser::{AmbiguousImports, Diagnostic, ReverseContributions};

use crate::spec::ParsedFile;

/// Everything `analyze_with_cross_module` needs for one file.
#[derive(Debug, Default)]
struct FileContext {
    /// This file's declarations that other files reference.
    external_refs: HashSet<String>,
    /// `use` paths that resolved to a file in the check set.
    resolved_use_paths: HashSet<String>,
    /// `use` paths that name a local `.allium` file that does not exist.
    missing_use_paths: HashSet<String>,
    /// Per alias: triggers the imported module provides or emits.
    imported_triggers: HashMap<String, HashSet<String>>,
    /// Per alias: every trigger the imported module references.
    imported_referenced_triggers: HashMap<String, HashSet<String>>,
    /// Per alias: imported entity/value type → field names.
    imported_entity_fields: HashMap<String, HashMap<String, HashSet<String>>>,
    /// Names and triggers that more than one imported file declares.
    ambiguous_imports: AmbiguousImports,
    /// What this file's importers contribute to it.
    reverse_contributions: ReverseContributions,
}

/// What one module offers to the files importing it.
struct Exports<'a> {
    module: &'a Module,
    declared_names: HashSet<String>,
    trigger_outputs: HashSet<String>,
    referenced_triggers: HashSet<String>,
    entity_fields: HashMap<String, HashSet<String>>,
}

/// The context of every file in the check set, keyed by canonical path.
#[derive(Debug)]
pub(crate) struct CrossModuleContext {
    files: HashMap<PathBuf, FileContext>,
}

impl CrossModuleContext {
    pub(crate) fn build(parsed: &[ParsedFile]) -> Self {
        let exports: HashMap<PathBuf, Exports<'_>> = parsed
            .iter()
            .map(|file| {
                let module = &file.result.module;
                let exports = Exports {
                    module,
                    declared_names: allium_parser::collect_declared_names(module),
                    trigger_outputs: allium_parser::collect_trigger_outputs(module),
                    referenced_triggers: allium_parser::collect_referenced_trigger_names(module),
                    entity_fields: allium_parser::collect_entity_field_schemas(module),
                };
                (canonical_key(&file.path), exports)
            })
            .collect();

        let mut files: HashMap<PathBuf, FileContext> = HashMap::new();
        for file in parsed {
            let module = &file.result.module;
            let key = canonical_key(&file.path);
            let imports = resolve_imports(&file.path, module, &exports);

            // What this file gives back to the modules it imports: qualified
            // creations, provided triggers and witnessed transitions.
            for (alias, target) in &imports.alias_targets {
                if let Some(target_exports) = exports.get(target) {
                    let contribution = allium_parser::collect_reverse_contributions(
                        module,
                        alias,
                        target_exports.module,
                    );
                    if !contribution.is_empty() {
                        files
                            .entry(target.clone())
                            .or_default()
                            .reverse_contributions
                            .merge(contribution);
                    }
                }
            }

            // Qualified references (`alias/Name`, `alias.Name`) mark the
            // target's declaration as used elsewhere.
            for (qualifier, name) in allium_parser::collect_qualified_references(module) {
                if let Some(target) = imports.alias_targets.get(qualifier.as_str()) {
                    files
                        .entry(target.clone())
                        .or_default()
                        .external_refs
                        .insert(name);
                }
            }

            // So do unqualified references to names an import declares,
            // unless a local declaration of the same name shadows them.
            let local_names = allium_parser::collect_declared_names(module);
            let referenced = allium_parser::collect_all_referenced_idents(module);
            for name in referenced.difference(&local_names) {
                for target in imports.alias_targets.values() {
                    if exports
                        .get(target)
                        .is_some_and(|e| e.declared_names.contains(name))
                    {
                        files
                            .entry(target.clone())
                            .or_default()
                            .external_refs
                            .insert(name.clone());
                    }
                }
            }

            let context = files.entry(key).or_default();
            for (alias, target) in &imports.alias_targets {
                if let Some(target_exports) = exports.get(target) {
                    context
                        .imported_triggers
                        .insert((*alias).to_owned(), target_exports.trigger_outputs.clone());
                    context.imported_referenced_triggers.insert(
                        (*alias).to_owned(),
                        target_exports.referenced_triggers.clone(),
                    );
                    context
                        .imported_entity_fields
                        .insert((*alias).to_owned(), target_exports.entity_fields.clone());
                }
            }
            context.ambiguous_imports = ambiguous_imports(&imports.alias_targets, &exports);
            context.resolved_use_paths = imports.resolved;
            context.missing_use_paths = imports.missing;
        }
        Self { files }
    }

    /// Runs the analyser on one file with its share of the context.
    pub(crate) fn analyze(&self, file: &ParsedFile) -> Vec<Diagnostic> {
        let fallback = FileContext::default();
        let context = self
            .files
            .get(&canonical_key(&file.path))
            .unwrap_or(&fallback);
        allium_parser::analyze_with_cross_module(
            &file.result.module,
            &file.source,
            &context.external_refs,
            &context.resolved_use_paths,
            &context.imported_triggers,
            &context.imported_entity_fields,
            &context.ambiguous_imports,
            &context.reverse_contributions,
            &context.imported_referenced_triggers,
            &context.missing_use_paths,
        )
    }
}

/// A file's `use` declarations resolved against the check set.
struct Imports<'m> {
    /// Alias → canonical path of the imported file (in the set or not).
    alias_targets: BTreeMap<&'m str, PathBuf>,
    resolved: HashSet<String>,
    missing: HashSet<String>,
}

fn resolve_imports<'m>(
    path: &Path,
    module: &'m Module,
    check_set: &HashMap<PathBuf, Exports<'_>>,
) -> Imports<'m> {
    let base = path.parent().unwrap_or(Path::new("."));
    let mut imports = Imports {
        alias_targets: BTreeMap::new(),
        resolved: HashSet::new(),
        missing: HashSet::new(),
    };
    for decl in &module.declarations {
        let Decl::Use(use_decl) = decl else { continue };
        let use_path = use_decl.path.text();
        let target = base.join(&use_path);
        let target_key = canonical_key(&target);
        if check_set.contains_key(&target_key) {
            imports.resolved.insert(use_path);
        } else if use_path.ends_with(".allium") && !target.exists() {
            // Only local file paths can be broken; registry coordinates are
            // remote references that are never expected on disk.
            imports.missing.insert(use_path);
        }
        if let Some(alias) = &use_decl.alias {
            imports
                .alias_targets
                .insert(alias.name.as_str(), target_key);
        }
    }
    imports
}

/// Names and triggers declared by more than one distinct imported file. Two
/// aliases of the same file are not ambiguous, so sources are keyed by file;
/// each file is named by its alphabetically first alias.
fn ambiguous_imports(
    alias_targets: &BTreeMap<&str, PathBuf>,
    exports: &HashMap<PathBuf, Exports<'_>>,
) -> AmbiguousImports {
    let mut name_sources: HashMap<&str, BTreeMap<&Path, &str>> = HashMap::new();
    let mut trigger_sources: HashMap<&str, BTreeMap<&Path, &str>> = HashMap::new();
    // BTreeMap iteration is alphabetical, so the first alias seen for a
    // file is its alphabetically first one.
    for (alias, target) in alias_targets {
        let Some(target_exports) = exports.get(target) else {
            continue;
        };
        for name in &target_exports.declared_names {
            name_sources
                .entry(name)
                .or_default()
                .entry(target)
                .or_insert(alias);
        }
        for trigger in &target_exports.trigger_outputs {
            trigger_sources
                .entry(trigger)
                .or_default()
                .entry(target)
                .or_insert(alias);
        }
    }
    AmbiguousImports {
        names: with_several_sources(name_sources),
        triggers: with_several_sources(trigger_sources),
    }
}

fn with_several_sources(
    sources: HashMap<&str, BTreeMap<&Path, &str>>,
) -> HashMap<String, Vec<String>> {
    sources
        .into_iter()
        .filter(|(_, by_file)| by_file.len() >= 2)
        .map(|(name, by_file)| {
            let mut aliases: Vec<String> = by_file.values().map(|a| (*a).to_owned()).collect();
            aliases.sort();
            (name.to_owned(), aliases)
        })
        .collect()
}

/// Paths are compared canonically so `./core.allium` and `spec/core.allium`
/// are the same file; a path that cannot be canonicalised (a missing import)
/// is kept as written.
fn canonical_key(path: &Path) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| path.to_path_buf())
}
