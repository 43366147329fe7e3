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
#[derive(Args, Clone)]
struct Which {
    /// The service's TOML configuration file (its Redis and key prefix).
    #[arg(long, env = "SWITCHYARD_CONFIG")]
    config: Option<PathBuf>,
    /// Redis, overriding the file's.
    #[arg(long, env = "SWITCHYARD_REDIS_URL", hide_env_values = true)]
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

impl std::fmt::Debug for Which {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The Redis URL may carry a password: shown redacted.
        f.debug_struct("Which")
            .field("config", &self.config)
            .field("redis_url", &self.redis_url.as_deref().map(switchyard::io_reactor::redact_url))
            .field("pipeline", &self.pipeline)
            .field("ids", &self.ids)
            .field("all", &self.all)
            .finish()
    }
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
impl Which {
    /// Whether `letter` is one of those this selection names.
    fn names(&self, letter: &DeadLetter) -> bool {
        let of_pipeline = self.pipeline.as_ref().is_none_or(|p| letter.label.starts_with(&format!("{p}/")));
        of_pipeline && (self.ids.is_empty() || self.ids.contains(&letter.id))
    }
}

/// A walk through one stream's dead letters, oldest first, a page at a
/// time: memory holds one page, however many there are (up to 100,000 per
/// stream).
struct Pages<'a> {
    store: &'a DeadLetters,
    which: &'a Which,
    after: Option<String>,
    done: bool,
}

impl<'a> Pages<'a> {
    fn new(store: &'a DeadLetters, which: &'a Which) -> Self {
        Pages { store, which, after: None, done: false }
    }

    /// The next page's dead letters that `which` names (possibly none), or
    /// `None` past the last page.
    async fn next(&mut self) -> Result<Option<Vec<DeadLetter>>, switchyard::Error> {
        if self.done {
            return Ok(None);
        }
        let page = self.store.page(self.after.as_deref(), PAGE).await?;
        let Some(last) = page.last() else {
            self.done = true;
            return Ok(None);
        };
        self.after = Some(last.id.clone());
        Ok(Some(page.into_iter().filter(|l| self.which.names(l)).collect()))
    }
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
                    // Only deliveries go back: polls are redone on schedule,
                    // and a malformed item would fail again.
                    let (mut replayed, mut skipped) = (0, 0);
                    let mut polls = Pages::new(&stores[0].1, &which);
                    while let Some(page) = polls.next().await? {
                        skipped += page.len();
                    }
                    let deliveries = &stores[1].1;
                    let mut pages = Pages::new(deliveries, &which);
                    while let Some(page) = pages.next().await? {
                        let (replayable, malformed): (Vec<_>, Vec<_>) =
                            page.into_iter().partition(|l| l.reason != "malformed");
                        skipped += malformed.len();
                        let ids = replayable.into_iter().map(|l| l.id).collect();
                        replayed += deliveries.replay(&DeadSelection::Ids(ids)).await?;
                    }
                    if skipped > 0 {
                        eprintln!("not replayed: {skipped} (polls are redone on schedule; a malformed item fails again)");
                    }
                    println!("replayed {replayed}");
                    Ok(())
                }
                DeadAction::Discard { which } => {
                    let mut n = 0;
                    for (_, store) in &stores {
                        let mut pages = Pages::new(store, &which);
                        while let Some(page) = pages.next().await? {
                            let ids = page.into_iter().map(|l| l.id).collect();
                            n += store.discard(&DeadSelection::Ids(ids)).await?;
                        }
                    }
                    println!("discarded {n}");
                    Ok(())
                }
            }
        })
        .map_err(|e| Failure::Runtime(e.into()))?
        .map_err(|e: switchyard::Error| Failure::Runtime(e.into()))
}

/// Prints the first `limit` dead letters `which` names (polls', then
/// deliveries'), and how many more there are.
async fn list(
    stores: &[(&'static str, DeadLetters)],
    which: &Which,
    limit: usize,
    json: bool,
) -> Result<(), switchyard::Error> {
    let json = json || !std::io::stdout().is_terminal();
    let (mut shown, mut more) = (0usize, 0usize);
    for (kind, store) in stores {
        let mut pages = Pages::new(store, which);
        while let Some(page) = pages.next().await? {
            for d in page {
                if shown == limit {
                    more += 1;
                    continue;
                }
                shown += 1;
                if json {
                    let line = serde_json::json!({
                        "id": d.id, "stream": kind, "label": d.label, "reason": d.reason,
                        "attempt": d.attempt, "error": d.error, "item": d.item,
                    });
                    println!("{line}");
                } else {
                    println!("{}\t{}\t{}\t{}\t{}\t{}", d.id, kind, d.label, d.reason, d.attempt, d.error);
                }
            }
        }
    }
    if more > 0 {
        eprintln!("{more} more (--limit)");
    }
    Ok(())
}
