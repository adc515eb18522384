//! `yurt event stream [-topic T ...] [-index N]`: the servers' event stream, one JSON line per
//! applied index as `/v1/event/stream` gives it, until interrupted.

use clap::Subcommand;
use yurt_proto::v1::events_client::EventsClient;
use yurt_proto::v1::EventStreamRequest;

use super::{connect, CliError, CmdResult};

#[derive(Subcommand, Debug)]
pub enum EventCmd {
    /// Print events as they happen (JSON lines, Nomad's shape).
    Stream {
        /// `Job:web`, `Node`, `Job:*` or `*` (repeatable; none: every topic).
        #[arg(long = "topic")]
        topics: Vec<String>,
        /// Start after this Raft index (0: from the oldest event the server keeps).
        #[arg(long, default_value_t = 0)]
        index: u64,
        /// Leave out the `{}` heartbeats.
        #[arg(long)]
        no_heartbeats: bool,
    },
}

pub async fn run(addr: &str, cmd: EventCmd) -> CmdResult {
    let EventCmd::Stream {
        topics,
        index,
        no_heartbeats,
    } = cmd;
    let mut stream = EventsClient::new(connect(addr).await?)
        .stream(EventStreamRequest { topics, index })
        .await
        .map_err(CliError::api("subscribing to the event stream"))?
        .into_inner();
    while let Some(line) = stream
        .message()
        .await
        .map_err(CliError::api("reading the event stream"))?
    {
        if no_heartbeats && line.json == "{}" {
            continue;
        }
        println!("{}", line.json);
        if line.json.starts_with("{\"Error\"") {
            return Ok(1);
        }
    }
    Ok(0)
}
