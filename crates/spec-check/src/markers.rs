//! Finding `spec:` and `covers:` markers in the workspace's Rust code.
//!
//! Files are parsed with `syn` and markers are read from doc attributes, so a
//! marker in a string literal or an ordinary `//` comment never counts. Each
//! marker records whether it sits in test code; see the crate docs for what
//! counts as test code.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use proc_macro2::{Delimiter, TokenStream, TokenTree};
use syn::visit::{self, Visit};
use syn::{Attribute, Expr, Item, Lit, Meta};

use crate::{Error, Location, display_path, read_file, sorted_entries};

/// Directories the walk never enters: build output, VCS metadata, and test
/// fixtures (which hold deliberately broken markers).
pub const SKIPPED_DIRS: &[&str] = &["target", ".git", "fixtures"];

/// Directory names whose files are test code wherever they appear in a
/// package.
pub const TEST_DIRS: &[&str] = &["tests", "benches"];

/// Test code that lives outside the usual test locations: a directory named
/// `dir_name` anywhere inside the package at `package` (relative to the root).
#[derive(Debug, Clone, Copy)]
pub struct OracleDir {
    pub package: &'static str,
    pub dir_name: &'static str,
}

/// Test oracles. The chaos history checker decides whether a run's history
/// satisfies the spec, so its markers are tests, not implementations.
pub const TEST_ORACLE_DIRS: &[OracleDir] = &[OracleDir {
    package: "chaos",
    dir_name: "checker",
}];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkerKind {
    /// `spec: <ids>` — an implementation site.
    Impl,
    /// `covers: <ids>` — a covering test.
    Covers,
}

/// One marker doc line.
#[derive(Debug, Clone)]
pub struct Marker {
    pub kind: MarkerKind,
    /// The comma-separated ids, trimmed; empty entries are dropped.
    pub ids: Vec<String>,
    pub location: Location,
    /// Whether the marker sits in test code.
    pub in_test: bool,
}

/// A `.rs` file that `syn` could not parse.
#[derive(Debug, Clone)]
pub struct UnparsableFile {
    pub location: Location,
    pub column: usize,
    pub message: String,
}

/// Everything found in the workspace's Rust code.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    pub files_scanned: usize,
    pub markers: Vec<Marker>,
    pub unparsable: Vec<UnparsableFile>,
}

/// Scans every `.rs` file under `root`.
pub fn scan_workspace(root: &Path) -> Result<Scan, Error> {
    let mut paths = Vec::new();
    collect_rust_files(root, &mut paths)?;

    let mut scan = Scan::default();
    let mut files = Vec::new();
    for path in paths {
        let source = read_file(&path)?;
        let shown = display_path(&path, root);
        scan.files_scanned += 1;
        match syn::parse_file(&source) {
            Ok(syntax) => files.push(scan_file(&path, &shown, &syntax)),
            Err(error) => {
                let start = error.span().start();
                scan.unparsable.push(UnparsableFile {
                    location: Location {
                        file: shown,
                        line: start.line,
                    },
                    column: start.column + 1,
                    message: error.to_string(),
                });
            }
        }
    }

    let test_files = test_files(root, &files);
    for file in files {
        let file_is_test = test_files.contains(&file.path);
        scan.markers
            .extend(file.markers.into_iter().map(|mut marker| {
                marker.in_test |= file_is_test;
                marker
            }));
    }
    Ok(scan)
}

fn collect_rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), Error> {
    for entry in sorted_entries(dir)? {
        // `DirEntry::file_type` does not follow symlinks, so a link cycle
        // cannot trap the walk and nothing outside the root is scanned.
        let file_type = entry.file_type().map_err(|source| Error::Io {
            path: entry.path(),
            source,
        })?;
        let name = entry.file_name();
        if file_type.is_dir() {
            if !SKIPPED_DIRS.iter().any(|skipped| name == *skipped) {
                collect_rust_files(&entry.path(), out)?;
            }
        } else if file_type.is_file() && Path::new(&name).extension().is_some_and(|e| e == "rs") {
            out.push(entry.path());
        }
    }
    Ok(())
}

/// The markers and module declarations of one parsed file. Their test flag
/// only reflects the context inside the file; whether the whole file is test
/// code is decided afterwards, across files.
#[derive(Debug)]
struct FileScan {
    path: PathBuf,
    markers: Vec<Marker>,
    modules: Vec<ModuleDecl>,
}

/// An out-of-line `mod name;` and the files that may hold its body.
#[derive(Debug)]
struct ModuleDecl {
    candidates: Vec<PathBuf>,
    in_test: bool,
}

fn scan_file(path: &Path, shown: &str, syntax: &syn::File) -> FileScan {
    let mut visitor = MarkerVisitor {
        path,
        shown,
        in_test: false,
        inline_modules: Vec::new(),
        markers: Vec::new(),
        modules: Vec::new(),
    };
    // A file starting with `#![cfg(test)]` is test code throughout.
    visitor.in_test = marks_test(&syntax.attrs);
    visitor.visit_file(syntax);
    FileScan {
        path: path.to_path_buf(),
        markers: visitor.markers,
        modules: visitor.modules,
    }
}

/// Files that are test code as a whole: those in test directories or oracle
/// directories, plus the bodies of out-of-line modules declared from test
/// code (`#[cfg(test)] mod tests;`), transitively.
fn test_files(root: &Path, files: &[FileScan]) -> HashSet<PathBuf> {
    let mut test_files: HashSet<PathBuf> = files
        .iter()
        .filter(|file| is_test_path(root, &file.path))
        .map(|file| file.path.clone())
        .collect();
    // Each round marks the children of the files marked so far, so this
    // reaches a fixpoint after at most module-nesting-depth rounds.
    loop {
        let before = test_files.len();
        for file in files {
            let file_is_test = test_files.contains(&file.path);
            for module in &file.modules {
                if module.in_test || file_is_test {
                    test_files.extend(module.candidates.iter().cloned());
                }
            }
        }
        if test_files.len() == before {
            return test_files;
        }
    }
}

fn is_test_path(root: &Path, path: &Path) -> bool {
    let Ok(relative) = path.strip_prefix(root) else {
        return false;
    };
    let dirs: Vec<&str> = relative
        .parent()
        .map(|parent| {
            parent
                .components()
                .filter_map(|c| c.as_os_str().to_str())
                .collect()
        })
        .unwrap_or_default();
    if dirs.iter().any(|dir| TEST_DIRS.contains(dir)) {
        return true;
    }
    TEST_ORACLE_DIRS.iter().any(|oracle| {
        let package: Vec<&str> = oracle.package.split('/').collect();
        dirs.starts_with(&package) && dirs[package.len()..].contains(&oracle.dir_name)
    })
}

/// Whether attributes make an item test code: `#[cfg(test)]` (also inside
/// `all(...)`), or any attribute whose last path segment is `test`
/// (`#[test]`, `#[tokio::test]`, `#[actix_rt::test]`).
fn marks_test(attrs: &[Attribute]) -> bool {
    attrs.iter().any(|attr| {
        let path = attr.path();
        if path.is_ident("cfg") {
            attr.parse_args::<Meta>()
                .is_ok_and(|meta| cfg_requires_test(&meta))
        } else {
            path.segments.last().is_some_and(|s| s.ident == "test")
        }
    })
}

/// True when a cfg predicate can only hold in test builds: `test` itself or
/// an `all(...)` containing such a predicate. `any(test, x)` and `not(test)`
/// also hold outside tests, so they do not count.
fn cfg_requires_test(meta: &Meta) -> bool {
    match meta {
        Meta::Path(path) => path.is_ident("test"),
        Meta::List(list) if list.path.is_ident("all") => list
            .parse_args_with(syn::punctuated::Punctuated::<Meta, syn::Token![,]>::parse_terminated)
            .is_ok_and(|predicates| predicates.iter().any(cfg_requires_test)),
        _ => false,
    }
}

fn item_attrs(item: &Item) -> &[Attribute] {
    match item {
        Item::Const(i) => &i.attrs,
        Item::Enum(i) => &i.attrs,
        Item::ExternCrate(i) => &i.attrs,
        Item::Fn(i) => &i.attrs,
        Item::ForeignMod(i) => &i.attrs,
        Item::Impl(i) => &i.attrs,
        Item::Macro(i) => &i.attrs,
        Item::Mod(i) => &i.attrs,
        Item::Static(i) => &i.attrs,
        Item::Struct(i) => &i.attrs,
        Item::Trait(i) => &i.attrs,
        Item::TraitAlias(i) => &i.attrs,
        Item::Type(i) => &i.attrs,
        Item::Union(i) => &i.attrs,
        Item::Use(i) => &i.attrs,
        _ => &[],
    }
}

/// Walks one file. Markers are collected from doc attributes wherever they
/// appear, so one on a field or variant is not silently ignored; the test
/// context is tracked per item.
struct MarkerVisitor<'a> {
    path: &'a Path,
    shown: &'a str,
    in_test: bool,
    /// Names of the inline `mod name { ... }` blocks around the current item,
    /// which decide where an out-of-line `mod child;` lives.
    inline_modules: Vec<String>,
    markers: Vec<Marker>,
    modules: Vec<ModuleDecl>,
}

impl MarkerVisitor<'_> {
    /// Visits a nested part with `in_test` raised if `attrs` mark it as test
    /// code, restoring the outer context afterwards.
    fn with_context(&mut self, attrs: &[Attribute], visit: impl FnOnce(&mut Self)) {
        let outer = self.in_test;
        self.in_test |= marks_test(attrs);
        visit(self);
        self.in_test = outer;
    }

    fn record_doc(&mut self, text: &str, first_line: usize) {
        for (offset, line) in text.lines().enumerate() {
            let line = line.trim();
            let (kind, ids) = if let Some(ids) = line.strip_prefix("spec:") {
                (MarkerKind::Impl, ids)
            } else if let Some(ids) = line.strip_prefix("covers:") {
                (MarkerKind::Covers, ids)
            } else {
                continue;
            };
            self.markers.push(Marker {
                kind,
                ids: ids
                    .split(',')
                    .map(str::trim)
                    .filter(|id| !id.is_empty())
                    .map(str::to_owned)
                    .collect(),
                location: Location {
                    file: self.shown.to_owned(),
                    line: first_line + offset,
                },
                in_test: self.in_test,
            });
        }
    }

    /// Scans tokens that are not Rust items for `#[doc = "..."]` (or
    /// `#![doc = "..."]`) sequences, which is what `///` comments become.
    fn scan_doc_tokens(&mut self, tokens: TokenStream) {
        let trees: Vec<TokenTree> = tokens.into_iter().collect();
        for (index, tree) in trees.iter().enumerate() {
            let TokenTree::Group(group) = tree else {
                continue;
            };
            if group.delimiter() == Delimiter::Bracket
                && follows_pound(&trees[..index])
                && let Some((text, line)) = doc_literal(group.stream())
            {
                self.record_doc(&text, line);
            } else {
                self.scan_doc_tokens(group.stream());
            }
        }
    }

    /// Where the body of `mod name;` may live, following rustc's rules:
    /// next to a `mod.rs`-like file, or in a directory named after any other
    /// module file; inline modules add directory levels; `#[path]` overrides.
    fn module_candidates(&self, item: &syn::ItemMod) -> Vec<PathBuf> {
        let file_dir = self.path.parent().unwrap_or(Path::new(""));
        let mut dir = file_dir.to_path_buf();
        if !is_mod_rs(self.path)
            && let Some(stem) = self.path.file_stem()
        {
            dir.push(stem);
        }
        dir.extend(&self.inline_modules);

        if let Some(explicit) = path_attribute(&item.attrs) {
            let base = if self.inline_modules.is_empty() {
                file_dir
            } else {
                &dir
            };
            return vec![base.join(explicit)];
        }
        let name = item.ident.to_string();
        vec![
            dir.join(format!("{name}.rs")),
            dir.join(&name).join("mod.rs"),
        ]
    }
}

impl<'ast> Visit<'ast> for MarkerVisitor<'_> {
    fn visit_item(&mut self, item: &'ast Item) {
        self.with_context(item_attrs(item), |v| visit::visit_item(v, item));
    }

    fn visit_impl_item(&mut self, item: &'ast syn::ImplItem) {
        let attrs: &[Attribute] = match item {
            syn::ImplItem::Const(i) => &i.attrs,
            syn::ImplItem::Fn(i) => &i.attrs,
            syn::ImplItem::Type(i) => &i.attrs,
            syn::ImplItem::Macro(i) => &i.attrs,
            _ => &[],
        };
        self.with_context(attrs, |v| visit::visit_impl_item(v, item));
    }

    fn visit_trait_item(&mut self, item: &'ast syn::TraitItem) {
        let attrs: &[Attribute] = match item {
            syn::TraitItem::Const(i) => &i.attrs,
            syn::TraitItem::Fn(i) => &i.attrs,
            syn::TraitItem::Type(i) => &i.attrs,
            syn::TraitItem::Macro(i) => &i.attrs,
            _ => &[],
        };
        self.with_context(attrs, |v| visit::visit_trait_item(v, item));
    }

    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        if item.content.is_some() {
            self.inline_modules.push(item.ident.to_string());
            visit::visit_item_mod(self, item);
            self.inline_modules.pop();
        } else {
            let candidates = self.module_candidates(item);
            self.modules.push(ModuleDecl {
                candidates,
                in_test: self.in_test,
            });
            visit::visit_item_mod(self, item);
        }
    }

    fn visit_attribute(&mut self, attr: &'ast Attribute) {
        if let Meta::NameValue(name_value) = &attr.meta
            && name_value.path.is_ident("doc")
            && let Expr::Lit(literal) = &name_value.value
            && let Lit::Str(text) = &literal.lit
        {
            self.record_doc(&text.value(), attr.pound_token.span.start().line);
        }
    }

    /// Macro bodies are opaque to `syn`. A body that parses as items is
    /// walked like ordinary code; any other body (`proptest!` test fns with
    /// `x in strategy` arguments, `macro_rules!` arms) is scanned for doc
    /// attribute tokens. A `proptest!` body is test code wherever it is.
    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        let outer = self.in_test;
        self.in_test |= mac
            .path
            .segments
            .last()
            .is_some_and(|s| s.ident == "proptest");
        match mac.parse_body_with(parse_items) {
            Ok(items) => items.iter().for_each(|item| self.visit_item(item)),
            Err(_) => self.scan_doc_tokens(mac.tokens.clone()),
        }
        self.in_test = outer;
    }
}

fn parse_items(input: syn::parse::ParseStream<'_>) -> syn::Result<Vec<Item>> {
    let mut items = Vec::new();
    while !input.is_empty() {
        items.push(input.parse()?);
    }
    Ok(items)
}

/// Whether the tokens before a bracket group end in `#` or `# !`.
fn follows_pound(before: &[TokenTree]) -> bool {
    let is_punct = |tree: Option<&TokenTree>, ch| matches!(tree, Some(TokenTree::Punct(p)) if p.as_char() == ch);
    match before {
        [.., last] if is_punct(Some(last), '#') => true,
        [.., pound, bang] => is_punct(Some(pound), '#') && is_punct(Some(bang), '!'),
        _ => false,
    }
}

/// The text and line of a `doc = "..."` attribute body.
fn doc_literal(tokens: TokenStream) -> Option<(String, usize)> {
    let Ok(Meta::NameValue(name_value)) = syn::parse2::<Meta>(tokens) else {
        return None;
    };
    if !name_value.path.is_ident("doc") {
        return None;
    }
    let Expr::Lit(literal) = &name_value.value else {
        return None;
    };
    let Lit::Str(text) = &literal.lit else {
        return None;
    };
    Some((text.value(), text.span().start().line))
}

/// Crate roots and `mod.rs` files keep their child modules beside them;
/// any other module file keeps them in a directory named after itself.
fn is_mod_rs(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if matches!(name, "lib.rs" | "main.rs" | "mod.rs" | "build.rs") {
        return true;
    }
    // Integration tests, benches, examples and extra binaries are crate
    // roots too.
    let parent = path.parent();
    let parent_name = parent
        .and_then(Path::file_name)
        .and_then(|n| n.to_str())
        .unwrap_or("");
    let is_bin_dir = parent_name == "bin"
        && parent
            .and_then(Path::parent)
            .and_then(Path::file_name)
            .is_some_and(|n| n == "src");
    is_bin_dir || matches!(parent_name, "tests" | "benches" | "examples")
}

fn path_attribute(attrs: &[Attribute]) -> Option<String> {
    attrs.iter().find_map(|attr| match &attr.meta {
        Meta::NameValue(name_value) if name_value.path.is_ident("path") => {
            match &name_value.value {
                Expr::Lit(syn::ExprLit {
                    lit: Lit::Str(text),
                    ..
                }) => Some(text.value()),
                _ => None,
            }
        }
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(source: &str) -> Vec<Attribute> {
        syn::parse_str::<syn::ItemFn>(&format!("{source} fn f() {{}}"))
            .expect("test attributes parse")
            .attrs
    }

    #[test]
    fn test_attributes_and_test_only_cfgs_mark_test_code() {
        for source in [
            "#[test]",
            "#[tokio::test]",
            "#[actix_rt::test(flavor = \"x\")]",
            "#[cfg(test)]",
            "#[cfg(all(unix, test))]",
            "#[cfg(all(unix, all(test)))]",
        ] {
            assert!(marks_test(&attrs(source)), "{source}");
        }
    }

    #[test]
    fn cfgs_that_hold_outside_tests_do_not_mark_test_code() {
        for source in [
            "#[cfg(not(test))]",
            "#[cfg(any(test, feature = \"slow\"))]",
            "#[cfg(unix)]",
            "#[testing]",
            "#[inline]",
        ] {
            assert!(!marks_test(&attrs(source)), "{source}");
        }
    }

    #[test]
    fn out_of_line_modules_resolve_like_rustc() {
        let source = "mod a { #[cfg(test)] mod b; } mod c; #[path = \"d_impl.rs\"] mod d;";
        let syntax = syn::parse_file(source).expect("source parses");
        let scan = scan_file(Path::new("crates/x/src/foo.rs"), "foo.rs", &syntax);
        let modules: Vec<(Vec<PathBuf>, bool)> = scan
            .modules
            .into_iter()
            .map(|m| (m.candidates, m.in_test))
            .collect();
        assert_eq!(
            modules,
            [
                (
                    vec![
                        PathBuf::from("crates/x/src/foo/a/b.rs"),
                        PathBuf::from("crates/x/src/foo/a/b/mod.rs"),
                    ],
                    true
                ),
                (
                    vec![
                        PathBuf::from("crates/x/src/foo/c.rs"),
                        PathBuf::from("crates/x/src/foo/c/mod.rs"),
                    ],
                    false
                ),
                (vec![PathBuf::from("crates/x/src/d_impl.rs")], false),
            ]
        );
    }

    #[test]
    fn markers_in_strings_and_plain_comments_do_not_count() {
        let source = "// spec: a.B\nfn f() { let _ = \"spec: a.C\"; }\n/// Text.\n///   covers: a.D , a.E,\nfn g() {}";
        let syntax = syn::parse_file(source).expect("source parses");
        let scan = scan_file(Path::new("src/lib.rs"), "src/lib.rs", &syntax);
        assert_eq!(scan.markers.len(), 1);
        let marker = &scan.markers[0];
        assert_eq!(marker.kind, MarkerKind::Covers);
        assert_eq!(marker.ids, ["a.D", "a.E"]);
        assert_eq!(marker.location.line, 4);
        assert!(!marker.in_test);
    }

    #[test]
    fn proptest_bodies_are_test_code_and_other_macro_bodies_are_not() {
        let source = "proptest! {\n    /// covers: a.B\n    #[test]\n    fn p(x in 0..3) {}\n}\nmacro_rules! m {\n    () => {\n        /// spec: a.C\n        fn made() {}\n    };\n}\n";
        let syntax = syn::parse_file(source).expect("source parses");
        let scan = scan_file(Path::new("src/lib.rs"), "src/lib.rs", &syntax);
        let markers: Vec<(MarkerKind, usize, bool)> = scan
            .markers
            .iter()
            .map(|m| (m.kind, m.location.line, m.in_test))
            .collect();
        assert_eq!(
            markers,
            [(MarkerKind::Covers, 2, true), (MarkerKind::Impl, 8, false)]
        );
    }
}
