//! The two HTTP calls of a pipeline: the poll of its source API and the
//! delivery of one new item to its action.
//!
//! [`Requests`] builds them; the pipeline sends them through the task's
//! HTTP client (timeouts, body cap and per-host limits apply there).
//! [`ConfiguredRequests`] is what a configured pipeline uses: URL templates
//! (`{seq}` is the poll's number) and headers, their `${VAR}` references
//! resolved once at start. A workload whose API takes per-request
//! parameters brings its own (PZ-1's upstream is told each call's delay).

use std::collections::BTreeMap;
use std::fmt;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::{Method, Request};

use crate::config::PipelineConfig;
use crate::error::ConfigError;
use crate::job::PollJob;
use crate::template::Template;

/// Builds a pipeline's HTTP requests.
pub trait Requests: Send + Sync + fmt::Debug + 'static {
    /// The request that polls the source for `job`.
    fn poll(&self, job: &PollJob) -> Result<Request<Bytes>, http::Error>;

    /// The request that delivers one item: `step` counts the job's
    /// deliveries from 1 (oldest item first); `body` is the JSON to POST.
    fn delivery(&self, job: &PollJob, step: u32, body: Bytes) -> Result<Request<Bytes>, http::Error>;
}

type Headers = Vec<(HeaderName, HeaderValue)>;

/// URL templates and headers from a pipeline's configuration.
#[derive(Clone)]
pub struct ConfiguredRequests {
    source_url: String,
    source_headers: Headers,
    action_url: http::Uri,
    action_headers: Headers,
}

impl ConfiguredRequests {
    /// Resolves `config`'s templates; `key` names the pipeline in errors
    /// (`pipelines[0]`).
    pub fn new(config: &PipelineConfig, key: &str) -> Result<Self, ConfigError> {
        let action_key = format!("{key}.action.url");
        let action_url = config
            .action
            .url
            .resolve(&action_key)?
            .parse()
            .map_err(|_| ConfigError::new(&action_key, "expected an http:// or https:// URL"))?;
        Ok(ConfiguredRequests {
            source_url: config.source.url.resolve(&format!("{key}.source.url"))?,
            source_headers: headers(&config.source.headers, &format!("{key}.source.headers"))?,
            action_url,
            action_headers: headers(&config.action.headers, &format!("{key}.action.headers"))?,
        })
    }
}

impl Requests for ConfiguredRequests {
    fn poll(&self, job: &PollJob) -> Result<Request<Bytes>, http::Error> {
        let url = self.source_url.replace("{seq}", &job.seq.to_string());
        let mut request = Request::get(url).body(Bytes::new())?;
        request.headers_mut().extend(self.source_headers.iter().cloned());
        Ok(request)
    }

    fn delivery(&self, _job: &PollJob, _step: u32, body: Bytes) -> Result<Request<Bytes>, http::Error> {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(self.action_url.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(body)?;
        request.headers_mut().extend(self.action_headers.iter().cloned());
        Ok(request)
    }
}

impl fmt::Debug for ConfiguredRequests {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Resolved URLs and headers may hold secrets: show neither.
        f.debug_struct("ConfiguredRequests").finish_non_exhaustive()
    }
}

fn headers(config: &BTreeMap<String, Template>, key: &str) -> Result<Headers, ConfigError> {
    config
        .iter()
        .map(|(name, value)| {
            let key = format!("{key}.{name}");
            let name = HeaderName::try_from(name.as_str())
                .map_err(|_| ConfigError::new(&key, "invalid header name"))?;
            let mut value = HeaderValue::try_from(value.resolve(&key)?)
                .map_err(|_| ConfigError::new(&key, "invalid header value"))?;
            // Kept out of hyper's debug output and HPACK tables.
            value.set_sensitive(true);
            Ok((name, value))
        })
        .collect()
}
