//! `herd apply -f PATH`: make the server's objects say what the manifests say.
//!
//! All or nothing: every document is checked first (syntax, envelope and
//! types locally, then each write as a server dry run, which applies the
//! server's own validation), and nothing is written unless all pass.

use std::path::PathBuf;

use clap::Args;
use herd_client::{Client, Error};
use serde_json::Value;

use crate::ctl::args::{ConnectArgs, WriteOutput};
use crate::ctl::manifest::{self, Document, Problem};
use crate::ctl::{block_on, errors, objects, output, patch};

#[derive(Args, Debug)]
pub struct ApplyArgs {
    /// A manifest file, a directory (searched recursively for *.yaml, *.yml
    /// and *.json), or `-` for stdin. Repeat to apply several.
    #[arg(short = 'f', long = "filename", value_name = "PATH", required = true)]
    pub files: Vec<PathBuf>,
    /// Check every object with the server and say what would happen,
    /// without storing anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Print `kind/name` or the resulting objects instead of what happened.
    #[arg(short = 'o', long = "output", value_enum)]
    pub output: Option<WriteOutput>,
}

/// What applying one document will do.
enum Action {
    Create(Value),
    /// A merge patch over the live object as it was read.
    Update {
        patch: Value,
        live: Value,
    },
}

struct Plan<'a> {
    doc: &'a Document,
    action: Action,
}

/// What happened to one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Created,
    Configured,
    Unchanged,
}

impl Outcome {
    fn word(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Configured => "configured",
            Self::Unchanged => "unchanged",
        }
    }
}

pub fn run(args: ApplyArgs, connect: &ConnectArgs) -> anyhow::Result<()> {
    let sources = manifest::read_sources(&args.files)?;
    let parsed = manifest::parse_all(&sources);
    if parsed.documents.is_empty() && parsed.problems.is_empty() {
        anyhow::bail!("no objects to apply: the manifests are empty");
    }
    let files: Vec<String> = sources.into_iter().map(|s| s.name).collect();
    let client = connect.client()?;
    block_on(apply(
        &client,
        &connect.server,
        &args,
        &files,
        parsed.documents,
        parsed.problems,
    ))?
}

async fn apply(
    client: &Client,
    server: &str,
    args: &ApplyArgs,
    files: &[String],
    documents: Vec<Document>,
    mut problems: Vec<Problem>,
) -> anyhow::Result<()> {
    let mut plans = Vec::new();
    for doc in &documents {
        match plan(client, doc).await {
            Ok(p) => plans.push(p),
            Err(e) if is_rejection(&e) => problems.extend(rejection(doc, &e, server)),
            Err(e) => {
                anyhow::bail!(
                    "nothing was applied: checking {} ({}): {}",
                    doc.id(),
                    doc.origin,
                    errors::describe(&e, server)
                )
            }
        }
    }
    if !problems.is_empty() {
        sort_problems(&mut problems, files);
        anyhow::bail!(problem_report(&problems));
    }
    let mut results = Vec::new();
    for (done, plan) in plans.iter().enumerate() {
        let (outcome, obj) = execute(client, plan, args.dry_run).await.map_err(|e| {
            anyhow::anyhow!(
                "applying {} ({}): {}\n{done} of {} objects were applied before this one",
                plan.doc.id(),
                plan.doc.origin,
                errors::describe(&e, server),
                plans.len()
            )
        })?;
        match args.output {
            None => {
                let dry = if args.dry_run { " (dry run)" } else { "" };
                output::emit(&format!("{} {}{dry}\n", plan.doc.id(), outcome.word()))?;
                if let Some(secret) = super::create::secret_of(&obj) {
                    output::emit(&format!("{secret}\n"))?;
                    eprintln!("{}", super::create::SHOWN_ONCE);
                }
            }
            Some(WriteOutput::Name) => output::emit(&format!("{}\n", plan.doc.id()))?,
            Some(_) => results.push(obj),
        }
    }
    match args.output {
        Some(WriteOutput::Yaml) => output::emit(&output::yaml(&one_or_list(results))?),
        Some(WriteOutput::Json) => output::emit(&output::json(&one_or_list(results))?),
        _ => Ok(()),
    }
}

fn one_or_list(mut objects: Vec<Value>) -> Value {
    if objects.len() == 1 {
        objects.remove(0)
    } else {
        output::list(objects)
    }
}

/// One problem per field the server named, else one with its message.
fn rejection(doc: &Document, e: &Error, server: &str) -> Vec<Problem> {
    let problem = |message: String| Problem {
        origin: doc.origin.clone(),
        object: Some(doc.id()),
        message,
    };
    let causes = e
        .status()
        .and_then(|s| s.details.as_ref())
        .map(|d| d.causes.as_slice())
        .unwrap_or_default();
    if causes.is_empty() {
        return vec![problem(errors::describe(e, server))];
    }
    causes
        .iter()
        .map(|c| {
            problem(if c.field.is_empty() {
                c.message.clone()
            } else {
                format!("{}: {}", c.field, c.message)
            })
        })
        .collect()
}

/// In the order of the files as read, then of the documents in each.
fn sort_problems(problems: &mut [Problem], files: &[String]) {
    let rank = |file: &str| files.iter().position(|f| f == file).unwrap_or(usize::MAX);
    problems.sort_by_key(|p| (rank(&p.origin.file), p.origin.document, p.origin.item));
}

/// The server turned the object down (as opposed to not answering): a
/// problem with the document, reported beside the others.
fn is_rejection(e: &Error) -> bool {
    e.code().is_some_and(|c| (400..500).contains(&c))
}

fn problem_report(problems: &[Problem]) -> String {
    let mut out = format!(
        "nothing was applied: {} problem{} found:",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    for p in problems {
        let text = p.to_string().replace('\n', "\n    ");
        out.push_str(&format!("\n  {text}"));
    }
    out
}

/// Decides create or update, and has the server check the write (dry run).
async fn plan<'a>(client: &Client, doc: &'a Document) -> Result<Plan<'a>, Error> {
    let desired = patch::desired(&doc.value);
    let action = match objects::get(client, doc.kind, &doc.name).await? {
        None => {
            let body = patch::for_create(&desired);
            objects::create(client, doc.kind, &body, true).await?;
            Action::Create(body)
        }
        Some(live) => {
            let patch = patch::for_update(&live, &desired);
            objects::patch(client, doc.kind, &doc.name, &patch, true).await?;
            Action::Update { patch, live }
        }
    };
    Ok(Plan { doc, action })
}

/// Carries out a plan. Another client may have created or deleted the
/// object since the check: a create that finds it exists becomes an update,
/// an update that finds it gone becomes a create.
async fn execute(
    client: &Client,
    plan: &Plan<'_>,
    dry_run: bool,
) -> Result<(Outcome, Value), Error> {
    let (kind, name) = (plan.doc.kind, plan.doc.name.as_str());
    match &plan.action {
        Action::Create(body) => match objects::create(client, kind, body, dry_run).await {
            Err(e) if e.is_already_exists() => update_live(client, plan, dry_run).await,
            other => Ok((Outcome::Created, other?)),
        },
        Action::Update { patch, live } => {
            match objects::patch(client, kind, name, patch, dry_run).await {
                Ok(obj) => Ok((outcome(live, &obj), obj)),
                Err(e) if e.is_not_found() => {
                    let body = patch::for_create(&patch::desired(&plan.doc.value));
                    Ok((
                        Outcome::Created,
                        objects::create(client, kind, &body, dry_run).await?,
                    ))
                }
                Err(e) => Err(e),
            }
        }
    }
}

async fn update_live(
    client: &Client,
    plan: &Plan<'_>,
    dry_run: bool,
) -> Result<(Outcome, Value), Error> {
    let (kind, name) = (plan.doc.kind, plan.doc.name.as_str());
    let live = objects::get(client, kind, name).await?.ok_or_else(|| {
        Error::InvalidRequest(format!("{} vanished while being applied", plan.doc.id()))
    })?;
    let patch = patch::for_update(&live, &patch::desired(&plan.doc.value));
    let obj = objects::patch(client, kind, name, &patch, dry_run).await?;
    Ok((outcome(&live, &obj), obj))
}

/// `unchanged` when the patch left what apply manages as it was. Not by
/// the revision alone: a heartbeat may have written the status meanwhile.
fn outcome(before: &Value, after: &Value) -> Outcome {
    let managed = |v: &Value| {
        (
            v.pointer("/metadata/labels").cloned(),
            v.pointer("/metadata/annotations").cloned(),
            v.get("spec").cloned(),
        )
    };
    if objects::revision(before) == objects::revision(after) || managed(before) == managed(after) {
        Outcome::Unchanged
    } else {
        Outcome::Configured
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_status_write_in_between_is_still_unchanged() {
        let before = json!({"metadata": {"resourceVersion": "5", "labels": {"a": "b"}},
                            "spec": {"weight": 1}, "status": {"usage": {"inFlight": 1}}});
        let heartbeat = json!({"metadata": {"resourceVersion": "6", "labels": {"a": "b"}},
                               "spec": {"weight": 1}, "status": {"usage": {"inFlight": 2}}});
        assert_eq!(outcome(&before, &heartbeat), Outcome::Unchanged);
        let changed = json!({"metadata": {"resourceVersion": "6", "labels": {"a": "c"}},
                             "spec": {"weight": 1}});
        assert_eq!(outcome(&before, &changed), Outcome::Configured);
        assert_eq!(outcome(&before, &before), Outcome::Unchanged);
    }

    #[test]
    fn problems_are_reported_in_file_order() {
        let p = |file: &str, document| Problem {
            origin: manifest::Origin {
                file: file.into(),
                document,
                item: None,
            },
            object: None,
            message: "m".into(),
        };
        let mut problems = vec![p("b.yaml", 1), p("a.yaml", 2), p("a.yaml", 1)];
        sort_problems(&mut problems, &["a.yaml".into(), "b.yaml".into()]);
        let order: Vec<String> = problems.iter().map(|p| p.origin.to_string()).collect();
        assert_eq!(
            order,
            [
                "a.yaml, document 1",
                "a.yaml, document 2",
                "b.yaml, document 1"
            ]
        );
        assert_eq!(
            problem_report(&problems[..1]),
            "nothing was applied: 1 problem found:\n  a.yaml, document 1: m"
        );
    }
}
