//! The I/O clients a task reaches through its context.

use switchyard_io_reactor::{HttpClient, MysqlPool, RedisClient};

use crate::config::EngineConfig;
use crate::error::Error;

/// The I/O clients of one reactor (one set per worker under `threads`, as
/// each prefork process has its own connections). Must be built on the
/// runtime that will drive them: their connection tasks live there.
#[derive(Clone)]
pub(crate) struct IoClients {
    pub(crate) http: HttpClient,
    pub(crate) mysql: Option<MysqlPool>,
    pub(crate) redis: Option<RedisClient>,
}

impl IoClients {
    /// Clients of their own, HTTP included (a `threads` worker's).
    pub(crate) async fn connect(config: &EngineConfig) -> Result<IoClients, Error> {
        let http = HttpClient::new(&config.http).map_err(Error::io)?;
        IoClients::connect_with(config, http).await
    }

    /// Clients around `http`, shared with the engine's other runs so one
    /// host has one breaker, one rate limit and one concurrency limit.
    pub(crate) async fn connect_with(config: &EngineConfig, http: HttpClient) -> Result<IoClients, Error> {
        let mysql = config.mysql.as_ref().map(MysqlPool::new).transpose().map_err(Error::io)?;
        let redis = match &config.redis {
            Some(redis) => Some(RedisClient::connect(redis).await.map_err(Error::io)?),
            None => None,
        };
        Ok(IoClients { http, mysql, redis })
    }
}
