//! `yurt namespace apply|list|status|delete`, with Nomad's flags and output.

use clap::Subcommand;
use yurt_proto::v1::namespaces_client::NamespacesClient;
use yurt_proto::v1::{GetNamespaceRequest, ListNamespacesRequest, Namespace};

use super::{connect, CliError, CmdResult};
use crate::output::{self, kv, or_none, table};

#[derive(Subcommand, Debug)]
pub enum NamespaceCmd {
    /// Create or change a namespace (management token).
    Apply {
        #[arg(long, default_value = "")]
        description: String,
        /// `KEY=VALUE` metadata (repeatable).
        #[arg(long = "meta")]
        meta: Vec<String>,
        name: String,
    },
    /// List the namespaces the token may use.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show a namespace.
    Status {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Delete a namespace that has no jobs and no variables (management token).
    Delete { name: String },
}

pub async fn run(addr: &str, cmd: NamespaceCmd) -> CmdResult {
    let mut client = NamespacesClient::new(connect(addr).await?);
    match cmd {
        NamespaceCmd::Apply {
            description,
            meta,
            name,
        } => {
            let meta = meta
                .iter()
                .map(|m| {
                    m.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .ok_or_else(|| CliError::Other(format!("-meta {m:?} is not KEY=VALUE")))
                })
                .collect::<Result<_, _>>()?;
            client
                .apply(Namespace {
                    name: name.clone(),
                    description,
                    meta,
                    ..Namespace::default()
                })
                .await
                .map_err(CliError::api("applying namespace"))?;
            println!("Successfully applied namespace {name:?}!");
            Ok(0)
        }
        NamespaceCmd::List { json } => {
            let list = client
                .list(ListNamespacesRequest::default())
                .await
                .map_err(CliError::api("listing namespaces"))?
                .into_inner()
                .namespaces;
            if json {
                print!("{}", output::json(&list));
            } else {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|n| vec![n.name.clone(), or_none(&n.description)])
                    .collect();
                print!("{}", table(&["Name", "Description"], &rows));
            }
            Ok(0)
        }
        NamespaceCmd::Status { name, json } => {
            let ns = client
                .get(GetNamespaceRequest { name })
                .await
                .map_err(CliError::api("reading namespace"))?
                .into_inner();
            if json {
                print!("{}", output::json(&ns));
                return Ok(0);
            }
            print!(
                "{}",
                kv(&[
                    ("Name", ns.name.clone()),
                    ("Description", or_none(&ns.description)),
                ])
            );
            if !ns.meta.is_empty() {
                let rows: Vec<(&str, String)> = ns
                    .meta
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.clone()))
                    .collect();
                print!("\nMetadata\n{}", kv(&rows));
            }
            Ok(0)
        }
        NamespaceCmd::Delete { name } => {
            client
                .delete(GetNamespaceRequest { name: name.clone() })
                .await
                .map_err(CliError::api("deleting namespace"))?;
            println!("Successfully deleted namespace {name:?}!");
            Ok(0)
        }
    }
}
