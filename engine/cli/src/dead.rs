//! `switchyard dead`: the dead letters of the durable service, for an
//! operator: list them, replay them into their stream, or discard them.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use switchyard::io_reactor::RedisConfig;
use switchyard::source::{DeadLetter, DeadLetters, DeadSelection};
use switchyard::Engine;
use switchyard_service::{redis_config, stream_configs, ServiceConfig};

use crate::failure::Failure;

/// Most dead letters read per round trip while walking them.
const PAGE: usize = 500;

#[derive(Args, Debug, Clone)]
pub(crate) struct DeadArgs {
    #[command(subcommand)]
    action: DeadAction,
}

#[derive(Subcommand, Debug, Clone)]
enum DeadAction {
    /// List dead letters (oldest first): id, stream, label, reason, attempt, error.
    List {
        #[command(flatten)]
        which: Which,
        /// Show at most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// One JSON object per line instead of columns.
        #[arg(long)]
        json: bool,
    },
    /// Put dead letters back into their stream as new entries (deliveries
    /// only: a poll is redone on schedule, a malformed item would fail again).
    Replay {
        #[command(flatten)]
        which: Which,
    },
    /// Delete dead letters.
    Discard {
        #[command(flatten)]
        which: Which,
    },
}

/// Which dead letters.
#[derive(Args, Debug, Clone)]
struct Which {
    /// The service's TOML configuration file (its Redis and key prefix).
    #[arg(long, env = "SWITCHYARD_CONFIG")]
    config: Option<PathBuf>,
    /// Redis, overriding the file's.
    #[arg(long, env = "SWITCHYARD_REDIS_URL")]
    redis_url: Option<String>,
    /// Only this pipeline's.
    #[arg(long)]
    pipeline: Option<String>,
    /// These dead letters (repeatable); for replay and discard, this or --all.
    #[arg(long = "id")]
    ids: Vec<String>,
    /// Every dead letter (of --pipeline, when given).
    #[arg(long, conflicts_with = "ids")]
    all: bool,
}

impl Which {
    fn service_config(&self) -> Result<ServiceConfig, Failure> {
        let mut config = match &self.config {
            Some(path) => ServiceConfig::load(path).map_err(|e| Failure::Config(e.into()))?,
            None => ServiceConfig::default(),
        };
        if let Some(url) = &self.redis_url {
            let base = config.engine.redis.clone().unwrap_or_else(|| RedisConfig::new(""));
            config.engine.redis = Some(RedisConfig { url: url.clone(), ..base });
        }
        Ok(config)
    }
}

/// One dead letter and the stream it came from.
struct Found {
    kind: &'static str,
    letter: DeadLetter,
}

pub(crate) fn dead(args: DeadArgs) -> Result<(), Failure> {
    let which = match &args.action {
        DeadAction::List { which, .. } | DeadAction::Replay { which } | DeadAction::Discard { which } => {
            which
        }
    };
    let config = which.service_config()?;
    if config.engine.redis.is_none() {
        return Err(Failure::Config(anyhow::anyhow!(
            "engine.redis: dead letters live in Redis; give the service's --config or --redis-url"
        )));
    }
    if !matches!(args.action, DeadAction::List { .. }) && which.ids.is_empty() && !which.all {
        return Err(Failure::Config(anyhow::anyhow!("say which: --id ID (repeatable) or --all")));
    }
    let redis = redis_config(&config).context("engine.redis").map_err(Failure::Config)?;
    // A runtime of its own: this command is a short client, not the service.
    let engine = Engine::builder().build().map_err(|e| Failure::Runtime(e.into()))?;
    engine
        .block_on(async move {
            let (polls, deliveries) = stream_configs(&config);
            let streams = [("polls", polls), ("deliveries", deliveries)];
            let mut stores = Vec::new();
            for (kind, stream) in &streams {
                stores.push((*kind, DeadLetters::connect(&redis, stream.clone()).await?));
            }
            match args.action {
                DeadAction::List { which, limit, json } => list(&stores, &which, limit, json).await,
                DeadAction::Replay { which } => {
                    let found = select(&stores, &which).await?;
                    let (replayable, skipped): (Vec<_>, Vec<_>) = found
                        .into_iter()
                        .partition(|f| f.kind == "deliveries" && f.letter.reason != "malformed");
                    if !skipped.is_empty() {
                        eprintln!(
                            "not replayed: {} (polls are redone on schedule; a malformed item fails again)",
                            skipped.len()
                        );
                    }
                    let ids = replayable.into_iter().map(|f| f.letter.id).collect();
                    let n = stores[1].1.replay(&DeadSelection::Ids(ids)).await?;
                    println!("replayed {n}");
                    Ok(())
                }
                DeadAction::Discard { which } => {
                    let found = select(&stores, &which).await?;
                    let mut n = 0;
                    for (kind, store) in &stores {
                        let ids: Vec<String> =
                            found.iter().filter(|f| f.kind == *kind).map(|f| f.letter.id.clone()).collect();
                        n += store.discard(&DeadSelection::Ids(ids)).await?;
                    }
                    println!("discarded {n}");
                    Ok(())
                }
            }
        })
        .map_err(|e| Failure::Runtime(e.into()))?
        .map_err(|e: switchyard::Error| Failure::Runtime(e.into()))
}

async fn list(
    stores: &[(&'static str, DeadLetters)],
    which: &Which,
    limit: usize,
    json: bool,
) -> Result<(), switchyard::Error> {
    let found = select(stores, which).await?;
    let json = json || !std::io::stdout().is_terminal();
    for f in found.iter().take(limit) {
        let d = &f.letter;
        if json {
            let line = serde_json::json!({
                "id": d.id, "stream": f.kind, "label": d.label, "reason": d.reason,
                "attempt": d.attempt, "error": d.error, "item": d.item,
            });
            println!("{line}");
        } else {
            println!("{}\t{}\t{}\t{}\t{}\t{}", d.id, f.kind, d.label, d.reason, d.attempt, d.error);
        }
    }
    if found.len() > limit {
        eprintln!("{} more (--limit)", found.len() - limit);
    }
    Ok(())
}

/// The dead letters `which` names, from both streams, oldest first per stream.
async fn select(
    stores: &[(&'static str, DeadLetters)],
    which: &Which,
) -> Result<Vec<Found>, switchyard::Error> {
    let mut found = Vec::new();
    for (kind, store) in stores {
        let mut after: Option<String> = None;
        loop {
            let page = store.page(after.as_deref(), PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            for letter in page {
                let of_pipeline =
                    which.pipeline.as_ref().is_none_or(|p| letter.label.starts_with(&format!("{p}/")));
                let named = which.ids.is_empty() || which.ids.contains(&letter.id);
                if of_pipeline && named {
                    found.push(Found { kind, letter });
                }
            }
        }
    }
    Ok(found)
}
