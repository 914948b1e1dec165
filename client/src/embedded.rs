//! Clients of the in-process core (feature `embedded`): the client end of
//! a segment attached to a [`vshm_core::embedded::EmbeddedCore`] running in
//! this process.
//!
//! ```no_run
//! # use vshm_client::embedded::{EmbeddedCore, EmbeddedOpen};
//! # use vshm_core::Config;
//! let core = EmbeddedCore::start(1).unwrap();
//! let cfg = Config { addresses: vec!["127.0.0.1:6379".into()], ..Config::default() };
//! let client = core.open(&cfg).unwrap();
//! client.call(&[b"SET", b"k", b"v"]).unwrap();
//! drop(client);
//! core.shutdown(std::time::Duration::from_secs(1));
//! ```

use std::sync::Arc;
use std::time::Duration;

use vshm_core::dispatch::{AttachOptions, ClientAttachment, Execute};
use vshm_core::Config;
use vshm_protocol::msg::ClientError;

use crate::client::{Client, ClientOptions};

pub use vshm_core::embedded::{
    Attachment, BackendExec, ClientExec, EmbeddedCore, DEFAULT_CQ, DEFAULT_SQ,
};

/// A client of the embedded core. Dropping it detaches its segment.
pub struct EmbeddedClient {
    // Field order matters: the segment is detached (the core stops serving
    // it) before the client end goes, as a registration ends.
    attachment: Attachment,
    client: Client,
}

impl std::ops::Deref for EmbeddedClient {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl EmbeddedClient {
    /// The client end of an attached segment.
    pub fn new(attachment: Attachment, opts: ClientOptions) -> EmbeddedClient {
        let client = Client::new(
            attachment.segment().clone(),
            Some(attachment.doorbell()),
            opts,
        );
        EmbeddedClient { attachment, client }
    }

    /// The dispatcher's side of this client's attachment (stats, state).
    pub fn attachment(&self) -> &Arc<ClientAttachment> {
        self.attachment.attachment()
    }
}

/// Opening clients on an [`EmbeddedCore`] (the core side only attaches
/// segments; see [`EmbeddedCore::attach`]).
pub trait EmbeddedOpen {
    /// Open a client for `config` (connections are pooled by the config's
    /// pool key; see `docs/architecture.md`).
    fn open(&self, config: &Config) -> Result<EmbeddedClient, ClientError> {
        self.open_with(config, DEFAULT_SQ, DEFAULT_CQ)
    }

    /// Open with explicit ring capacities (powers of two).
    fn open_with(&self, config: &Config, sq: u64, cq: u64) -> Result<EmbeddedClient, ClientError>;

    /// Attach a fresh segment served by any executor (tests, benchmarks).
    fn open_exec(
        &self,
        exec: Arc<dyn Execute>,
        sq: u64,
        cq: u64,
        opts: AttachOptions,
        copts: ClientOptions,
    ) -> Result<EmbeddedClient, ClientError>;
}

impl EmbeddedOpen for EmbeddedCore {
    fn open_with(&self, config: &Config, sq: u64, cq: u64) -> Result<EmbeddedClient, ClientError> {
        let att = self.attach_with(config, sq, cq)?;
        let copts = ClientOptions {
            request_timeout: att
                .request_timeout()
                .unwrap_or(ClientOptions::default().request_timeout),
            ..ClientOptions::default()
        };
        let c = EmbeddedClient::new(att, copts);
        // The core's bound of a block-forever command (see vshm_protocol::bound).
        c.client
            .set_block_forever_limit(Duration::from_millis(config.block_forever_limit_ms));
        Ok(c)
    }

    fn open_exec(
        &self,
        exec: Arc<dyn Execute>,
        sq: u64,
        cq: u64,
        opts: AttachOptions,
        copts: ClientOptions,
    ) -> Result<EmbeddedClient, ClientError> {
        let att = self.attach_exec(exec, sq, cq, opts)?;
        Ok(EmbeddedClient::new(att, copts))
    }
}
