//! The core's own server connections: the per-request fast path.
//!
//! A request that goes to one node (nearly all traffic) never leaves
//! synchronous code between the client's ring and the socket buffer: the
//! dispatcher hands it to [`Links::submit`], which encodes it into the
//! node's write buffer ([`node`]); the node's task writes every client's
//! requests of a pass in one `write`, reads the replies, and completes
//! each job through its [`Ticket`](ticket::Ticket) straight into the
//! client's completion ring. No task, channel or oneshot per request.
//!
//! * [`connect`]: TCP/TLS and the handshake.
//! * [`node`]: one connection's FIFO, deadlines, reconnects.
//! * [`single`] / [`cluster`]: the routers; [`refresh`]: the cluster's
//!   topology, owned here, independent of any request path; [`fanout`]:
//!   commands sent to every primary or node, planned from that topology.

pub(crate) mod batch;
pub(crate) mod cluster;
pub(crate) mod connect;
pub(crate) mod fanout;
pub(crate) mod job;
pub(crate) mod node;
pub(crate) mod refresh;
pub(crate) mod single;
pub mod ticket;

pub use cluster::TopologyStats;
pub use node::{LinkState, NodeStats};
