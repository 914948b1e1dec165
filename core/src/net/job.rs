//! A [`Job`]: one request on its way through the node connections, with
//! everything needed to send it again (a redirect, a retry, a connection
//! that broke before it was written) and its [`Ticket`].

use std::time::Duration;

use tokio::time::Instant;
use vshm_protocol::msg::{ClientError, Completion, ErrorKind};

use super::batch::BatchWork;
use super::ticket::Ticket;
pub(crate) use crate::resp::Frame;
use crate::resp::{self, Redirectable};
use crate::topology::NodeAddr;

/// Where a job goes (cluster); a standalone backend has one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// The primary of a slot, or a replica of it when `replica` (reads).
    Slot { slot: u16, replica: bool },
    /// One node by address.
    Addr(NodeAddr),
    /// Any primary (an explicit `Route::Random`: the command may have
    /// keys).
    Random,
    /// Any primary, for a command (or batch) without keys: a server never
    /// redirects it.
    Keyless,
}

impl Target {
    /// The redirects a job sent this way can get from a server.
    pub fn redirectable(&self) -> Redirectable {
        match self {
            Target::Slot { slot, .. } => Redirectable::Slot(*slot),
            Target::Keyless => Redirectable::Never,
            Target::Random | Target::Addr(_) => Redirectable::Any,
        }
    }
}

/// What the job sends.
pub(crate) enum Work {
    /// One command; its reply is the completion.
    Command(Encoded),
    /// A pipeline or transaction to one node (`super::batch`).
    Batch(Box<BatchWork>),
}

pub(crate) struct Job {
    pub ticket: Ticket,
    pub work: Work,
    pub deadline: Instant,
    /// The request's whole bound (for the timeout message).
    pub bound: Duration,
    pub target: Target,
    /// Send `ASKING` first (an ASK redirect).
    pub asking: bool,
    /// Redirects and retries so far (bounded).
    pub hops: u8,
}

/// Most redirects/retries of one job before it fails.
pub(crate) const MAX_HOPS: u8 = 32;

impl Job {
    /// The command's name, for messages.
    pub fn name(&self) -> String {
        match &self.work {
            Work::Command(c) => c.name(),
            Work::Batch(b) if b.atomic => "transaction".into(),
            Work::Batch(_) => "pipeline".into(),
        }
    }

    /// Several commands that the server runs one by one as it reads them
    /// (a pipeline, not a transaction): written in part, some may have run.
    pub fn runs_in_parts(&self) -> bool {
        matches!(&self.work, Work::Batch(b) if !b.atomic)
    }

    /// Append the job's commands; returns how many replies they produce.
    pub fn encode(&self, out: &mut Vec<u8>) -> u32 {
        if let Work::Batch(b) = &self.work {
            return b.encode(out, self.asking);
        }
        let mut n = 0;
        if self.asking {
            resp::encode_command(out, &[b"ASKING".as_slice()]);
            n += 1;
        }
        match &self.work {
            Work::Command(c) => {
                out.extend_from_slice(&c.0);
                n + 1
            }
            Work::Batch(_) => unreachable!("encoded above"),
        }
    }

    pub fn timed_out(self) {
        let msg = format!(
            "{} timed out after {} ms",
            self.name(),
            self.bound.as_millis()
        );
        self.ticket.fail(ClientError::new(ErrorKind::Timeout, msg));
    }

    pub fn fail(self, kind: ErrorKind, msg: impl Into<String>) {
        self.ticket.fail(ClientError::new(kind, msg));
    }
}

/// A command encoded as RESP once, when it is taken (from the request's
/// message, without an owned argv in between): a resend (a redirect, a
/// retry, a connection that broke before it was written) writes the same
/// bytes again.
#[derive(Clone)]
pub(crate) struct Encoded(Vec<u8>);

impl Encoded {
    pub fn new<A: AsRef<[u8]>>(args: &[A]) -> Self {
        let mut out = Vec::new();
        resp::encode_command(&mut out, args);
        Encoded(out)
    }

    /// The command's name as [`crate::commands::command_name`] gives it,
    /// read back from the encoding (for messages: only failures need it).
    pub fn name(&self) -> String {
        crate::commands::command_name(&resp::leading_args(&self.0, 2)).into()
    }
}

/// A command's reply frame as a completion.
pub(crate) fn frame_completion(f: Frame) -> Completion {
    match f {
        Frame::Value(v) => Completion::Ok(v),
        Frame::Error(e) => Completion::Err(resp::error_to_client(&e)),
        Frame::TooDeep => Completion::Err(too_deep()),
        Frame::TooLarge { bytes, limit } => Completion::Err(too_large(bytes, limit)),
        // Not a reply; `Node` never hands pushes to jobs.
        Frame::Push(v) => Completion::Ok(v),
    }
}

pub(crate) fn too_large(bytes: usize, limit: usize) -> ClientError {
    ClientError::new(
        ErrorKind::Request,
        format!(
            "the reply ({bytes} bytes) is larger than max_reply_bytes ({limit}); it was read \
             and dropped (the connection is unaffected)"
        ),
    )
}

pub(crate) fn too_deep() -> ClientError {
    ClientError::new(
        ErrorKind::Request,
        format!(
            "the reply is nested deeper than {} levels (the connection is unaffected)",
            resp::MAX_DEPTH
        ),
    )
}
