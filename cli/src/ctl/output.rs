//! Writing results: objects as YAML or JSON (in a shape `herd apply` takes
//! back), and text to stdout that survives `| head`.

use std::io::Write as _;

use herd_api::API_VERSION;
use serde::Serialize;
use serde_json::{Value, json};

use super::args::OutputFormat;

/// Writes `text` to stdout. A closed pipe (`herd get no -w | head -3`) ends
/// the program quietly, as it does for other command-line tools.
pub fn emit(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => Err(anyhow::anyhow!("writing to stdout: {e}")),
    }
}

pub fn to_value<T: Serialize>(obj: &T) -> anyhow::Result<Value> {
    serde_json::to_value(obj).map_err(|e| anyhow::anyhow!("encoding the object: {e}"))
}

/// Many objects as one document, the way kubectl prints them.
pub fn list(items: Vec<Value>) -> Value {
    json!({"apiVersion": API_VERSION, "kind": "List", "items": items})
}

pub fn yaml(value: &Value) -> anyhow::Result<String> {
    serde_yaml::to_string(value).map_err(|e| anyhow::anyhow!("encoding YAML: {e}"))
}

pub fn json(value: &Value) -> anyhow::Result<String> {
    let mut s =
        serde_json::to_string_pretty(value).map_err(|e| anyhow::anyhow!("encoding JSON: {e}"))?;
    s.push('\n');
    Ok(s)
}

/// One object in a stream of them (`get -w -o yaml|json`): YAML documents
/// separated by `---`, JSON values one after another. Both re-apply.
pub fn streamed(format: OutputFormat, value: &Value) -> anyhow::Result<String> {
    match format {
        OutputFormat::Yaml => Ok(format!("---\n{}", yaml(value)?)),
        _ => json(value),
    }
}

/// `objects` in a structured format: one object alone when `single`, else
/// a `List`.
pub fn structured(
    format: OutputFormat,
    objects: Vec<Value>,
    single: bool,
) -> anyhow::Result<String> {
    let value = if single && objects.len() == 1 {
        objects.into_iter().next().unwrap_or(Value::Null)
    } else {
        list(objects)
    };
    match format {
        OutputFormat::Json => json(&value),
        _ => yaml(&value),
    }
}
