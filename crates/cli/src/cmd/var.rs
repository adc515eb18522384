//! `yurt var put|get|list|purge` (Nomad Variables) and `yurt operator root keyring
//! list|rotate` (the keys that seal them), with Nomad's flags and output.

use std::collections::BTreeMap;
use std::io::Read;

use clap::Subcommand;
use yurt_proto::v1::keyring_client::KeyringClient;
use yurt_proto::v1::variables_client::VariablesClient;
use yurt_proto::v1::{
    DeleteVariableRequest, GetVariableRequest, KeyringListRequest, KeyringRotateRequest,
    ListVariablesRequest, PutVariableRequest, RootKeyMeta, Variable,
};

use super::{connect, CliError, CmdResult};
use crate::output::{self, kv, table, time};

#[derive(Subcommand, Debug)]
pub enum VarCmd {
    /// Create or replace a variable: `yurt var put PATH KEY=VALUE...` (a value `@FILE` is the
    /// file's contents, `-` is read from stdin).
    Put {
        path: String,
        items: Vec<String>,
        /// Write only if the variable's modify index is this (0: only if it does not exist).
        #[arg(long = "check-index")]
        check_index: Option<u64>,
        /// none (default), table or json.
        #[arg(long, default_value = "none")]
        out: String,
    },
    /// Show a variable.
    Get {
        path: String,
        /// Print only this item's value (no newline).
        #[arg(long)]
        item: Option<String>,
        /// table (default) or json.
        #[arg(long, default_value = "table")]
        out: String,
    },
    /// List the variables (their paths, not their items) under a prefix.
    List {
        #[arg(default_value = "")]
        prefix: String,
        #[arg(long)]
        json: bool,
    },
    /// Delete a variable.
    Purge {
        path: String,
        /// Delete only if the variable's modify index is this.
        #[arg(long = "check-index")]
        check_index: Option<u64>,
    },
}

#[derive(Subcommand, Debug)]
pub enum RootCmd {
    /// The keyring that seals variables.
    Keyring {
        #[command(subcommand)]
        cmd: KeyringCmd,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeyringCmd {
    /// List the keys (IDs and states; the keys themselves never leave the servers).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Make a new active key; variables written from now on are sealed with it.
    Rotate {
        #[arg(long)]
        json: bool,
    },
}

/// `KEY=VALUE` arguments as items; `@FILE` and `-` values read the file or stdin.
fn items(args: &[String]) -> Result<BTreeMap<String, String>, CliError> {
    let mut out = BTreeMap::new();
    for a in args {
        let (k, v) = a
            .split_once('=')
            .ok_or_else(|| CliError::Other(format!("{a:?} is not an item: write KEY=VALUE")))?;
        let value = if let Some(file) = v.strip_prefix('@') {
            std::fs::read_to_string(file)
                .map_err(|e| CliError::Other(format!("cannot read {file} for item {k}: {e}")))?
        } else if v == "-" {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| CliError::Other(format!("cannot read item {k} from stdin: {e}")))?;
            s
        } else {
            v.to_string()
        };
        out.insert(k.to_string(), value);
    }
    Ok(out)
}

/// A variable as `var get` shows it.
fn var_text(v: &Variable) -> String {
    let mut text = kv(&[
        ("Namespace", v.namespace.clone()),
        ("Path", v.path.clone()),
        ("Create Time", time(v.create_time_unix_ms)),
        ("Check Index", v.modify_index.to_string()),
    ]);
    text.push_str("\nItems\n");
    let rows: Vec<(&str, String)> = v
        .items
        .iter()
        .map(|(k, val)| (k.as_str(), val.clone()))
        .collect();
    text.push_str(&kv(&rows));
    text
}

fn show(v: &Variable, out: &str) -> Result<(), CliError> {
    match out {
        "json" => print!("{}", output::json(v)),
        "table" => print!("{}", var_text(v)),
        "none" => {}
        other => {
            return Err(CliError::Other(format!(
                "-out must be none, table or json, not {other:?}"
            )))
        }
    }
    Ok(())
}

pub async fn run(addr: &str, cmd: VarCmd) -> CmdResult {
    let mut vars = VariablesClient::new(connect(addr).await?);
    match cmd {
        VarCmd::Put {
            path,
            items: args,
            check_index,
            out,
        } => {
            let items = items(&args)?;
            let v = vars
                .put(PutVariableRequest {
                    variable: Some(Variable {
                        path: path.clone(),
                        items,
                        ..Variable::default()
                    }),
                    cas: check_index.is_some(),
                    check_index: check_index.unwrap_or(0),
                })
                .await
                .map_err(CliError::api("writing variable"))?
                .into_inner();
            let verb = if v.create_index == v.modify_index {
                "Created"
            } else {
                "Updated"
            };
            if out == "none" {
                println!(
                    "{verb} variable {path:?} with modify index {}",
                    v.modify_index
                );
            }
            show(&v, &out)?;
            Ok(0)
        }
        VarCmd::Get { path, item, out } => {
            let v = vars
                .get(GetVariableRequest {
                    path,
                    ..Default::default()
                })
                .await
                .map_err(CliError::api("reading variable"))?
                .into_inner();
            match item {
                Some(k) => match v.items.get(&k) {
                    Some(value) => print!("{value}"),
                    None => {
                        return Err(CliError::Other(format!(
                            "variable {:?} has no item {k:?}",
                            v.path
                        )))
                    }
                },
                None => show(&v, &out)?,
            }
            Ok(0)
        }
        VarCmd::List { prefix, json } => {
            let list = vars
                .list(ListVariablesRequest {
                    prefix,
                    ..ListVariablesRequest::default()
                })
                .await
                .map_err(CliError::api("listing variables"))?
                .into_inner()
                .variables;
            if json {
                print!("{}", output::json(&list));
            } else if list.is_empty() {
                println!("No matching variables found");
            } else {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|v| {
                        vec![
                            v.namespace.clone(),
                            v.path.clone(),
                            time(v.modify_time_unix_ms),
                        ]
                    })
                    .collect();
                print!("{}", table(&["Namespace", "Path", "Last Updated"], &rows));
            }
            Ok(0)
        }
        VarCmd::Purge { path, check_index } => {
            vars.delete(DeleteVariableRequest {
                path: path.clone(),
                cas: check_index.is_some(),
                check_index: check_index.unwrap_or(0),
                ..Default::default()
            })
            .await
            .map_err(CliError::api("purging variable"))?;
            println!("Successfully purged variable {path:?}!");
            Ok(0)
        }
    }
}

fn keys_table(keys: &[RootKeyMeta]) -> String {
    let rows: Vec<Vec<String>> = keys
        .iter()
        .map(|k| {
            vec![
                k.key_id.clone(),
                k.state.clone(),
                time(k.create_time_unix_ms),
            ]
        })
        .collect();
    table(&["Key", "State", "Create Time"], &rows)
}

pub async fn run_root(addr: &str, cmd: RootCmd) -> CmdResult {
    let mut keyring = KeyringClient::new(connect(addr).await?);
    let RootCmd::Keyring { cmd } = cmd;
    let (keys, json) = match cmd {
        KeyringCmd::List { json } => (
            keyring
                .list(KeyringListRequest {})
                .await
                .map_err(CliError::api("listing the keyring"))?
                .into_inner()
                .keys,
            json,
        ),
        KeyringCmd::Rotate { json } => (
            keyring
                .rotate(KeyringRotateRequest {})
                .await
                .map_err(CliError::api("rotating the keyring"))?
                .into_inner()
                .key
                .into_iter()
                .collect(),
            json,
        ),
    };
    if json {
        print!("{}", output::json(&keys));
    } else if keys.is_empty() {
        println!("No keys yet: the first is made with the first variable or rotation");
    } else {
        print!("{}", keys_table(&keys));
    }
    Ok(0)
}
