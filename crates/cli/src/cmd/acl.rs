//! `yurt acl bootstrap`, `yurt acl policy apply|list|info|delete`,
//! `yurt acl token create|list|info|self|delete`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use yurt_proto::v1::acl_client::AclClient;
use yurt_proto::v1::{
    AclBootstrapRequest, AclPolicy, AclPolicyRequest, AclToken, AclTokenRequest,
    ListAclPoliciesRequest, ListAclTokensRequest,
};

use super::{connect, CliError, CmdResult};
use crate::output::{self, kv, or_none, table, time};

#[derive(Subcommand, Debug)]
pub enum AclCmd {
    /// Create the first management token (once per cluster).
    Bootstrap {
        #[arg(long)]
        json: bool,
    },
    /// Manage ACL policies.
    Policy {
        #[command(subcommand)]
        cmd: PolicyCmd,
    },
    /// Manage ACL tokens.
    Token {
        #[command(subcommand)]
        cmd: TokenCmd,
    },
}

#[derive(Subcommand, Debug)]
pub enum PolicyCmd {
    /// Create or replace a policy from a rules file (`-` reads stdin).
    Apply {
        #[arg(long, default_value = "")]
        description: String,
        name: String,
        file: PathBuf,
    },
    /// List the policies.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show a policy and its rules.
    Info {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Delete a policy.
    Delete { name: String },
}

#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    /// Create a token.
    Create(CreateArgs),
    /// Change a token's name, type or policies (by accessor ID; its secret stays).
    Update {
        accessor_id: String,
        /// A new name (unchanged when not given).
        #[arg(long, default_value = "")]
        name: String,
        /// `client` or `management` (unchanged when not given).
        #[arg(long = "type", default_value = "")]
        kind: String,
        /// The token's policies from now on (repeatable).
        #[arg(long = "policy")]
        policies: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// List the tokens (secret IDs are not shown).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show a token by accessor ID.
    Info {
        accessor_id: String,
        #[arg(long)]
        json: bool,
    },
    /// Show the token this command runs with (-token or YURT_TOKEN).
    #[command(name = "self")]
    Myself {
        #[arg(long)]
        json: bool,
    },
    /// Delete a token by accessor ID.
    Delete { accessor_id: String },
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// A name to tell the token by.
    #[arg(long, default_value = "")]
    name: String,
    /// `client` (what its policies allow) or `management` (everything).
    #[arg(long = "type", default_value = "client")]
    kind: String,
    /// A policy of the token (repeatable).
    #[arg(long = "policy")]
    policies: Vec<String>,
    /// Replicated to every region (Yurt has one region; kept for Nomad's flag).
    #[arg(long)]
    global: bool,
    #[arg(long)]
    json: bool,
}

fn token_text(t: &AclToken) -> String {
    let policies = if t.policies.is_empty() {
        "n/a".to_string()
    } else {
        t.policies.join(", ")
    };
    kv(&[
        ("Accessor ID", t.accessor_id.clone()),
        ("Secret ID", or_none(&t.secret_id)),
        ("Name", or_none(&t.name)),
        ("Type", t.r#type.clone()),
        ("Global", t.global.to_string()),
        ("Create Time", time(t.create_time_unix_ms)),
        ("Expiry Time", "<none>".into()),
        ("Create Index", t.create_index.to_string()),
        ("Modify Index", t.modify_index.to_string()),
        ("Policies", policies),
    ])
}

fn show_token(t: &AclToken, json: bool) -> CmdResult {
    if json {
        print!("{}", output::json(t));
    } else {
        print!("{}", token_text(t));
    }
    Ok(0)
}

pub async fn run(addr: &str, cmd: AclCmd) -> CmdResult {
    let mut acl = AclClient::new(connect(addr).await?);
    match cmd {
        AclCmd::Bootstrap { json } => {
            let t = acl
                .bootstrap(AclBootstrapRequest {})
                .await
                .map_err(CliError::api("bootstrapping ACLs"))?
                .into_inner();
            show_token(&t, json)
        }
        AclCmd::Policy { cmd } => match cmd {
            PolicyCmd::Apply {
                description,
                name,
                file,
            } => {
                let rules = if file.as_os_str() == "-" {
                    std::io::read_to_string(std::io::stdin())
                } else {
                    std::fs::read_to_string(&file)
                }
                .map_err(|e| CliError::Other(format!("cannot read {}: {e}", file.display())))?;
                // Checked here first, so mistakes name the file.
                yurt_types::acl::parse_policy(&file.display().to_string(), &rules)?;
                acl.upsert_policy(AclPolicy {
                    name: name.clone(),
                    description,
                    rules,
                    ..AclPolicy::default()
                })
                .await
                .map_err(CliError::api("writing ACL policy"))?;
                println!("Successfully wrote {name:?} ACL policy!");
                Ok(0)
            }
            PolicyCmd::List { json } => {
                let list = acl
                    .list_policies(ListAclPoliciesRequest {})
                    .await
                    .map_err(CliError::api("listing ACL policies"))?
                    .into_inner()
                    .policies;
                if json {
                    print!("{}", output::json(&list));
                } else if list.is_empty() {
                    println!("No policies found");
                } else {
                    let rows: Vec<Vec<String>> = list
                        .iter()
                        .map(|p| vec![p.name.clone(), or_none(&p.description)])
                        .collect();
                    print!("{}", table(&["Name", "Description"], &rows));
                }
                Ok(0)
            }
            PolicyCmd::Info { name, json } => {
                let p = acl
                    .get_policy(AclPolicyRequest { name })
                    .await
                    .map_err(CliError::api("reading ACL policy"))?
                    .into_inner();
                if json {
                    print!("{}", output::json(&p));
                } else {
                    print!(
                        "{}",
                        kv(&[
                            ("Name", p.name.clone()),
                            ("Description", or_none(&p.description)),
                            ("CreateIndex", p.create_index.to_string()),
                            ("ModifyIndex", p.modify_index.to_string()),
                        ])
                    );
                    println!("\nRules\n\n{}", p.rules.trim_end());
                }
                Ok(0)
            }
            PolicyCmd::Delete { name } => {
                acl.delete_policy(AclPolicyRequest { name: name.clone() })
                    .await
                    .map_err(CliError::api("deleting ACL policy"))?;
                println!("Successfully deleted {name:?} ACL policy!");
                Ok(0)
            }
        },
        AclCmd::Token { cmd } => match cmd {
            TokenCmd::Create(a) => {
                let t = acl
                    .create_token(AclToken {
                        name: a.name,
                        r#type: a.kind,
                        policies: a.policies,
                        global: a.global,
                        ..AclToken::default()
                    })
                    .await
                    .map_err(CliError::api("creating ACL token"))?
                    .into_inner();
                show_token(&t, a.json)
            }
            TokenCmd::Update {
                accessor_id,
                name,
                kind,
                policies,
                json,
            } => {
                let t = acl
                    .update_token(AclToken {
                        accessor_id,
                        name,
                        r#type: kind,
                        policies,
                        ..AclToken::default()
                    })
                    .await
                    .map_err(CliError::api("updating ACL token"))?
                    .into_inner();
                show_token(&t, json)
            }
            TokenCmd::List { json } => {
                let list = acl
                    .list_tokens(ListAclTokensRequest {})
                    .await
                    .map_err(CliError::api("listing ACL tokens"))?
                    .into_inner()
                    .tokens;
                if json {
                    print!("{}", output::json(&list));
                    return Ok(0);
                }
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|t| {
                        vec![
                            or_none(&t.name),
                            t.r#type.clone(),
                            t.global.to_string(),
                            t.accessor_id.clone(),
                            "false".into(),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    table(&["Name", "Type", "Global", "Accessor ID", "Expired"], &rows)
                );
                Ok(0)
            }
            TokenCmd::Info { accessor_id, json } => {
                let t = acl
                    .get_token(AclTokenRequest { accessor_id })
                    .await
                    .map_err(CliError::api("reading ACL token"))?
                    .into_inner();
                show_token(&t, json)
            }
            TokenCmd::Myself { json } => {
                let t = acl
                    .get_token(AclTokenRequest::default())
                    .await
                    .map_err(CliError::api("reading ACL token"))?
                    .into_inner();
                show_token(&t, json)
            }
            TokenCmd::Delete { accessor_id } => {
                acl.delete_token(AclTokenRequest {
                    accessor_id: accessor_id.clone(),
                })
                .await
                .map_err(CliError::api("deleting ACL token"))?;
                println!("Token {accessor_id} successfully deleted");
                Ok(0)
            }
        },
    }
}
