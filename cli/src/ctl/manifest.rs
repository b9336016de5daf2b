//! Manifests: files, directories and stdin; YAML (many documents per file) or
//! JSON (one or more values), read into [`Document`]s whose envelope and
//! types are checked here, before anything is sent to a server.
//!
//! Every problem names where it is: the file, the document's index, the
//! line and column where the parser gives them, and the field path.

use std::collections::HashMap;
use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use herd_api::{API_VERSION, ApiKey, Event, Lease, ModelAssignment, Node, Secret};
use serde::Deserialize as _;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::kind::Kind;

/// How a source is parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
}

/// The text of one file (or of stdin) and what to call it in messages.
#[derive(Clone, Debug)]
pub struct Source {
    pub name: String,
    pub text: String,
    pub format: Format,
}

impl Source {
    /// Format from the file extension; stdin (or anything else) starting
    /// with `{` or `[` is JSON, the rest YAML.
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        let (name, text) = (name.into(), text.into());
        let json_ext = name.to_ascii_lowercase().ends_with(".json");
        let looks_json = text.trim_start().starts_with(['{', '[']);
        let format = if json_ext || (looks_json && !is_yaml_name(&name)) {
            Format::Json
        } else {
            Format::Yaml
        };
        Self { name, text, format }
    }
}

fn is_yaml_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.ends_with(".yaml") || lower.ends_with(".yml")
}

/// Where a document came from: `fleet.yaml, document 2`, and for an item
/// of a `kind: List`, `…, item 3`. Indexes count from 1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub file: String,
    pub document: usize,
    pub item: Option<usize>,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, document {}", self.file, self.document)?;
        if let Some(item) = self.item {
            write!(f, ", item {item}")?;
        }
        Ok(())
    }
}

/// One object to apply: its kind and name, and the document as written.
#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    pub origin: Origin,
    pub kind: Kind,
    pub name: String,
    pub value: Value,
}

impl Document {
    /// `node/gpu-1`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.kind.singular(), self.name)
    }
}

/// Something wrong with one document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub origin: Origin,
    /// `node/gpu-1`, once the kind and name are known.
    pub object: Option<String>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.origin)?;
        if let Some(object) = &self.object {
            write!(f, " ({object})")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The documents of some sources, and every problem found in them.
#[derive(Debug, Default)]
pub struct Parsed {
    pub documents: Vec<Document>,
    pub problems: Vec<Problem>,
}

/// Reads every path: a file, a directory (recursively, its `*.yaml`, `*.yml`
/// and `*.json` files in name order), or `-` for stdin.
pub fn read_sources(paths: &[PathBuf]) -> anyhow::Result<Vec<Source>> {
    let mut sources = Vec::new();
    let mut stdin_read = false;
    for path in paths {
        if path.as_os_str() == "-" {
            anyhow::ensure!(!stdin_read, "`-f -` (stdin) can be given only once");
            stdin_read = true;
            let mut text = String::new();
            std::io::stdin()
                .take(MAX_MANIFEST_BYTES as u64 + 1)
                .read_to_string(&mut text)
                .context("reading manifests from stdin")?;
            anyhow::ensure!(
                text.len() <= MAX_MANIFEST_BYTES,
                "<stdin>: {}",
                too_large(text.len() as u64)
            );
            sources.push(Source::new("<stdin>", text));
            continue;
        }
        let meta = std::fs::metadata(path).with_context(|| format!("{}", path.display()))?;
        if meta.is_dir() {
            let mut files = Vec::new();
            manifest_files(path, &mut files)?;
            anyhow::ensure!(
                !files.is_empty(),
                "{}: no manifests (*.yaml, *.yml, *.json) in this directory",
                path.display()
            );
            for file in files {
                sources.push(read_file(&file)?);
            }
        } else {
            sources.push(read_file(path)?);
        }
    }
    Ok(sources)
}

fn read_file(path: &Path) -> anyhow::Result<Source> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    anyhow::ensure!(
        len <= MAX_MANIFEST_BYTES as u64,
        "{}: {}",
        path.display(),
        too_large(len)
    );
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(Source::new(path.display().to_string(), text))
}

fn manifest_files(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let mut entries = std::fs::read_dir(dir)
        .with_context(|| format!("reading directory {}", dir.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("reading directory {}", dir.display()))?;
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            manifest_files(&path, out)?;
        } else {
            let name = path.to_string_lossy().to_ascii_lowercase();
            if [".yaml", ".yml", ".json"].iter().any(|e| name.ends_with(e)) {
                out.push(path);
            }
        }
    }
    Ok(())
}

/// Parses and checks every source, and finds objects defined twice.
pub fn parse_all(sources: &[Source]) -> Parsed {
    let mut parsed = Parsed::default();
    for source in sources {
        parse_source(source, &mut parsed);
    }
    let mut seen: HashMap<(Kind, String), Origin> = HashMap::new();
    for doc in &parsed.documents {
        if let Some(first) = seen.get(&(doc.kind, doc.name.clone())) {
            parsed.problems.push(Problem {
                origin: doc.origin.clone(),
                object: Some(doc.id()),
                message: format!(
                    "defined again (first in {first}); each object may appear once per apply"
                ),
            });
        } else {
            seen.insert((doc.kind, doc.name.clone()), doc.origin.clone());
        }
    }
    parsed
}

/// Largest manifest source read (a file, or stdin).
pub const MAX_MANIFEST_BYTES: usize = 16 << 20;

/// Deepest nesting of collections a manifest may have. herd's objects nest
/// a few levels; the YAML parser takes time quadratic in the depth, so the
/// depth is bounded before parsing.
pub const MAX_NESTING: usize = 64;

fn too_large(len: u64) -> String {
    format!("is {len} bytes; manifests are limited to {MAX_MANIFEST_BYTES} bytes (16 MiB)")
}

/// A cheap, linear check of a source's size and nesting depth, before
/// any parser sees it. The depth counted is an upper estimate: block levels
/// (indentation steps and `- ` entries on one line) plus open flow
/// collections (`[`, `{`) outside quotes and comments.
fn prescan(text: &str) -> Result<(), String> {
    if text.len() > MAX_MANIFEST_BYTES {
        return Err(too_large(text.len() as u64));
    }
    let too_deep = |line: usize| {
        Err(format!(
            "nesting deeper than {MAX_NESTING} levels at line {line}; manifests are limited to {MAX_NESTING} levels"
        ))
    };
    let mut indents: Vec<usize> = Vec::new();
    let mut flow = 0usize;
    let (mut single, mut double) = (false, false);
    for (n, line) in text.lines().enumerate() {
        let rest = line.trim_start_matches([' ', '\t']);
        let indent = line.len() - rest.len();
        let mut block = indents.len();
        if flow == 0 && !single && !double {
            if rest.is_empty() || rest.starts_with('#') {
                continue;
            }
            while indents.last().is_some_and(|&top| top > indent) {
                indents.pop();
            }
            if indents.last().is_none_or(|&top| top < indent) {
                indents.push(indent);
            }
            let mut entry = rest;
            let mut dashes = 0;
            while let Some(after) = entry
                .strip_prefix("- ")
                .or_else(|| entry.strip_prefix("-\t"))
            {
                dashes += 1;
                entry = after.trim_start_matches([' ', '\t']);
            }
            block = indents.len() + dashes;
        }
        if block > MAX_NESTING {
            return too_deep(n + 1);
        }
        let mut prev = ' ';
        for c in rest.chars() {
            match c {
                '\'' if !double => single = !single,
                '"' if !single && prev != '\\' => double = !double,
                '#' if !single && !double && prev.is_whitespace() => break,
                '[' | '{' if !single && !double => {
                    flow += 1;
                    if block + flow > MAX_NESTING {
                        return too_deep(n + 1);
                    }
                }
                ']' | '}' if !single && !double => flow = flow.saturating_sub(1),
                _ => {}
            }
            prev = c;
        }
        // A plain scalar's apostrophe (`it's`) does not open a quote that
        // spans lines; only flow context carries quotes over.
        if flow == 0 {
            single = false;
        }
    }
    Ok(())
}

fn parse_source(source: &Source, parsed: &mut Parsed) {
    if let Err(message) = prescan(&source.text) {
        parsed.problems.push(Problem {
            origin: Origin {
                file: source.name.clone(),
                document: 1,
                item: None,
            },
            object: None,
            message,
        });
        return;
    }
    let values = match source.format {
        Format::Yaml => yaml_values(&source.text),
        Format::Json => json_values(&source.text),
    };
    for (i, value) in values.into_iter().enumerate() {
        let origin = Origin {
            file: source.name.clone(),
            document: i + 1,
            item: None,
        };
        match value {
            Ok(value) => {
                let locate = |kind: Kind| locate_type_error(source, i, kind);
                check_document(value, origin, &locate, parsed);
            }
            Err(message) => parsed.problems.push(Problem {
                origin,
                object: None,
                message,
            }),
        }
    }
}

/// Every document of a YAML stream; stops at the first syntax error, after
/// which nothing more of the file can be trusted.
fn yaml_values(text: &str) -> Vec<Result<Value, String>> {
    let mut out = Vec::new();
    for document in serde_yaml::Deserializer::from_str(text) {
        match Value::deserialize(document) {
            Ok(v) => out.push(Ok(v)),
            Err(e) => {
                out.push(Err(format!("invalid YAML: {e}")));
                break;
            }
        }
    }
    out
}

/// One or more JSON values, one after another.
fn json_values(text: &str) -> Vec<Result<Value, String>> {
    let mut out = Vec::new();
    for value in serde_json::Deserializer::from_str(text).into_iter::<Value>() {
        match value {
            Ok(v) => out.push(Ok(v)),
            Err(e) => {
                out.push(Err(format!("invalid JSON: {e}")));
                break;
            }
        }
    }
    out
}

fn check_document(
    value: Value,
    origin: Origin,
    locate: &dyn Fn(Kind) -> Option<String>,
    parsed: &mut Parsed,
) {
    let problem = |origin: &Origin, object: Option<String>, message: String| Problem {
        origin: origin.clone(),
        object,
        message,
    };
    if value.is_null() {
        return; // an empty document (a stray `---`, or only comments)
    }
    let Some(map) = value.as_object() else {
        parsed.problems.push(problem(
            &origin,
            None,
            format!(
                "expected an object with apiVersion, kind, metadata and spec, found {}",
                json_type(&value)
            ),
        ));
        return;
    };
    let kind = map.get("kind").and_then(Value::as_str).unwrap_or("");
    if origin.item.is_none() && is_list_kind(kind) {
        check_list(map, origin, parsed);
        return;
    }
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let Some(k) = Kind::from_manifest(kind) else {
        let message = if kind.is_empty() {
            "kind is missing: must be one of Node, ModelAssignment, Event, ApiKey, Secret"
                .to_owned()
        } else {
            format!(
                "unknown kind {kind:?}: herd has Node, ModelAssignment, Event, ApiKey and Secret"
            )
        };
        parsed.problems.push(problem(&origin, None, message));
        return;
    };
    let object = (!name.is_empty()).then(|| format!("{}/{name}", k.singular()));
    match map.get("apiVersion").and_then(Value::as_str) {
        Some(API_VERSION) => {}
        Some(other) => {
            parsed.problems.push(problem(
                &origin,
                object,
                format!("apiVersion {other:?} is not supported: must be {API_VERSION:?}"),
            ));
            return;
        }
        None => {
            parsed.problems.push(problem(
                &origin,
                object,
                format!("apiVersion is missing: must be {API_VERSION:?}"),
            ));
            return;
        }
    }
    if let Err(mut message) = type_check(k, &value) {
        if let Some(at) = locate(k) {
            message.push_str(&format!(" ({at})"));
        }
        parsed.problems.push(problem(&origin, object, message));
        return;
    }
    if name.is_empty() {
        parsed.problems.push(problem(
            &origin,
            None,
            "metadata.name is missing".to_owned(),
        ));
        return;
    }
    parsed.documents.push(Document {
        origin,
        kind: k,
        name,
        value,
    });
}

/// `kind: List` (what `herd get -o yaml` prints for many objects), or a
/// typed list such as `NodeList`.
fn is_list_kind(kind: &str) -> bool {
    kind == "List"
        || kind.ends_with("List") && Kind::from_manifest(&kind[..kind.len() - 4]).is_some()
}

fn check_list(map: &serde_json::Map<String, Value>, origin: Origin, parsed: &mut Parsed) {
    let Some(items) = map.get("items").and_then(Value::as_array) else {
        parsed.problems.push(Problem {
            origin,
            object: None,
            message: "a List needs `items`, an array of objects".to_owned(),
        });
        return;
    };
    for (j, item) in items.iter().enumerate() {
        let origin = Origin {
            item: Some(j + 1),
            ..origin.clone()
        };
        check_document(item.clone(), origin, &|_| None, parsed);
    }
}

/// Decodes the document as its kind, naming the field of the first problem
/// (an unknown field, a wrong type).
fn type_check(kind: Kind, value: &Value) -> Result<(), String> {
    fn decode<K: DeserializeOwned>(value: &Value) -> Result<(), String> {
        serde_path_to_error::deserialize::<_, K>(value)
            .map(drop)
            .map_err(|e| {
                let path = e.path().to_string();
                if path.is_empty() || path == "." {
                    e.inner().to_string()
                } else {
                    format!("{path}: {}", e.inner())
                }
            })
    }
    match kind {
        Kind::Node => decode::<Node>(value),
        Kind::ModelAssignment => decode::<ModelAssignment>(value),
        Kind::Event => decode::<Event>(value),
        Kind::ApiKey => decode::<ApiKey>(value),
        Kind::Secret => decode::<Secret>(value),
        Kind::Lease => decode::<Lease>(value),
        Kind::Request => Err("requests are read-only".to_owned()),
    }
}

/// Where in the text a type error is: decodes document `index` again, as
/// `kind`, straight from the text, whose parser knows positions.
fn locate_type_error(source: &Source, index: usize, kind: Kind) -> Option<String> {
    fn located<K: DeserializeOwned>(source: &Source, index: usize) -> Option<(usize, usize)> {
        match source.format {
            Format::Yaml => {
                let document = serde_yaml::Deserializer::from_str(&source.text).nth(index)?;
                let err = K::deserialize(document).err()?;
                let at = err.location()?;
                Some((at.line(), at.column()))
            }
            Format::Json => {
                let mut stream = serde_json::Deserializer::from_str(&source.text).into_iter::<K>();
                let err = stream.nth(index)?.err()?;
                Some((err.line(), err.column()))
            }
        }
    }
    let (line, column) = match kind {
        Kind::Node => located::<Node>(source, index),
        Kind::ModelAssignment => located::<ModelAssignment>(source, index),
        Kind::Event => located::<Event>(source, index),
        Kind::ApiKey => located::<ApiKey>(source, index),
        Kind::Secret => located::<Secret>(source, index),
        Kind::Lease => located::<Lease>(source, index),
        Kind::Request => None,
    }?;
    Some(format!("line {line}, column {column}"))
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(name: &str, text: &str) -> Parsed {
        parse_all(&[Source::new(name, text)])
    }

    fn messages(p: &Parsed) -> Vec<String> {
        p.problems.iter().map(ToString::to_string).collect()
    }

    const TWO: &str = "\
apiVersion: herd/v1
kind: Node
metadata:
  name: gpu-1
  labels: {gpu: nvidia}
---
# only a comment
---
apiVersion: herd/v1
kind: ModelAssignment
metadata: {name: llama}
spec:
  model: llama3.2:1b
  replicas: 2
";

    #[test]
    fn deep_nesting_and_size_are_refused_before_parsing() {
        let nested_block: String = (0..200)
            .map(|i| format!("{}k{i}:\n", "  ".repeat(i)))
            .collect();
        for (name, text) in [
            ("flow.yaml", "[".repeat(100_000)),
            ("mapflow.yaml", format!("a: {}", "{b: ".repeat(100_000))),
            ("dashes.yaml", "- ".repeat(100_000) + "x"),
            ("block.yaml", nested_block),
            ("deep.json", "[".repeat(100_000)),
        ] {
            let started = std::time::Instant::now();
            let p = parse(name, &text);
            let took = started.elapsed();
            let m = messages(&p).join("\n");
            assert!(m.contains(name) && m.contains("64 levels"), "{name}: {m}");
            assert!(took < std::time::Duration::from_secs(2), "{name}: {took:?}");
        }
        let big = "#".repeat(MAX_MANIFEST_BYTES + 1);
        let m = messages(&parse("big.yaml", &big)).join("\n");
        assert!(m.contains("big.yaml") && m.contains("16 MiB"), "{m}");
        // Ordinary manifests, with quotes, comments and brackets in strings, pass.
        let fine = "a: \"[[[[\"\nb: '{{{{'  # [[[[\nc: it's [1, [2, {d: 3}]]\n";
        assert_eq!(prescan(fine), Ok(()));
        assert_eq!(prescan(TWO), Ok(()));
    }

    #[test]
    fn multi_document_yaml() {
        let p = parse("fleet.yaml", TWO);
        assert!(p.problems.is_empty(), "{:?}", messages(&p));
        let ids: Vec<_> = p.documents.iter().map(Document::id).collect();
        assert_eq!(ids, ["node/gpu-1", "modelassignment/llama"]);
        assert_eq!(p.documents[1].origin.document, 3);
    }

    #[test]
    fn syntax_error_names_line_and_column() {
        let text = "apiVersion: herd/v1\nkind: Node\nmetadata:\n  name: a\n   bad: [\n";
        let p = parse("bad.yaml", text);
        let m = messages(&p);
        assert_eq!(m.len(), 1, "{m:?}");
        assert!(
            m[0].starts_with("bad.yaml, document 1: invalid YAML"),
            "{m:?}"
        );
        assert!(m[0].contains("line 5"), "{m:?}");
    }

    #[test]
    fn type_errors_name_the_field_and_line() {
        let text = "apiVersion: herd/v1\nkind: ModelAssignment\nmetadata: {name: m}\nspec:\n  model: x\n  replicas: two\n";
        let m = messages(&parse("m.yaml", text));
        assert_eq!(m.len(), 1, "{m:?}");
        assert!(m[0].contains("(modelassignment/m)"), "{m:?}");
        assert!(m[0].contains("spec.replicas: invalid type"), "{m:?}");
        assert!(m[0].contains("line 6"), "{m:?}");

        let text = "apiVersion: herd/v1\nkind: Node\nmetadata: {name: a}\nspec:\n  olamaUrl: x\n";
        let m = messages(&parse("n.yaml", text));
        assert!(
            m[0].contains("spec.olamaUrl: unknown field `olamaUrl`"),
            "{m:?}"
        );
    }

    #[test]
    fn envelope_problems() {
        let cases = [
            ("kind: Pod\napiVersion: v1\n", "unknown kind \"Pod\""),
            ("apiVersion: herd/v1\n", "kind is missing"),
            (
                "apiVersion: herd/v2\nkind: Node\nmetadata: {name: a}\n",
                "apiVersion \"herd/v2\" is not supported",
            ),
            ("kind: Node\nmetadata: {name: a}\n", "apiVersion is missing"),
            (
                "apiVersion: herd/v1\nkind: Node\n",
                "metadata.name is missing",
            ),
            ("- a\n- b\n", "found a list"),
        ];
        for (text, want) in cases {
            let m = messages(&parse("x.yaml", text));
            assert_eq!(m.len(), 1, "{text}: {m:?}");
            assert!(m[0].contains(want), "{text}: {m:?}");
        }
    }

    #[test]
    fn lists_and_json() {
        let list = r#"{"apiVersion":"herd/v1","kind":"List","items":[
            {"apiVersion":"herd/v1","kind":"Node","metadata":{"name":"a"}},
            {"apiVersion":"herd/v1","kind":"Node","metadata":{"name":"b"},"spec":{"weight":"x"}}]}"#;
        let p = parse("<stdin>", list);
        assert_eq!(p.documents.len(), 1);
        let m = messages(&p);
        assert_eq!(m.len(), 1);
        assert!(
            m[0].starts_with("<stdin>, document 1, item 2 (node/b): spec.weight"),
            "{m:?}"
        );

        let p = parse(
            "two.json",
            r#"{"apiVersion":"herd/v1","kind":"Node","metadata":{"name":"a"}} {"apiVersion":"herd/v1","kind":"Node","metadata":{"name":"a"}}"#,
        );
        let m = messages(&p);
        assert_eq!(m.len(), 1, "{m:?}");
        assert!(
            m[0].contains("document 2 (node/a): defined again (first in two.json, document 1)"),
            "{m:?}"
        );

        let m = messages(&parse(
            "j.json",
            "{\n  \"kind\": \"Node\",\n  \"spec\": {\"weight\": \"x\"}\n",
        ));
        assert!(
            m[0].contains("invalid JSON") && m[0].contains("line 4"),
            "{m:?}"
        );
    }
}
