//! Batches on the node connections: a pipeline or a MULTI/EXEC
//! transaction whose commands all go to one node, written back to back in
//! one slot of the node's FIFO (no other request can come between them),
//! and their replies turned into one completion. Pure: tested without I/O.
//!
//! * **Pipeline**: the replies in request order, error replies in place
//!   (`Value::Error`), or with `RAISE_ON_ERROR` the first error as a typed
//!   error. A command refused with a redirect or "try again" error did not
//!   run: only those commands are sent again (to the new owner, behind
//!   `ASKING` for an ASK), and their replies take their places; commands
//!   that ran are never sent twice.
//! * **Transaction**: `[WATCH keys] MULTI cmds EXEC`. A redirect or "try
//!   again" at queue time makes the server abort the whole transaction
//!   (EXECABORT: nothing ran), so it is sent again whole.

use vshm_protocol::msg::{Args, ClientError, Completion, ErrorKind, Value};

use super::job::{too_deep, too_large, Frame};
use crate::resp::{self, redirect, Redirectable};
use crate::value::server_error_kind;

/// A batch in flight.
#[derive(Debug)]
pub(crate) struct BatchWork {
    pub atomic: bool,
    pub watch: Vec<Vec<u8>>,
    pub commands: Vec<Args>,
    pub raise: bool,
    /// Pipelines: the replies so far, by command index.
    results: Vec<Option<Frame>>,
    /// Pipelines: the commands still to send (all, at first).
    pending: Vec<usize>,
    redirectable: Redirectable,
}

/// What the replies of one round of a batch lead to.
#[derive(Debug, PartialEq)]
pub(crate) enum Step {
    Done(Completion),
    /// Some commands (pipeline) or the whole transaction did not run
    /// because of this redirect / "try again" error: send them again.
    Again(Vec<u8>),
}

/// A redirect (one the batch can get, by its keys) or "not executed, try
/// again" error reply.
fn is_again(f: &Frame, which: Redirectable) -> Option<&[u8]> {
    match f {
        Frame::Error(e)
            if redirect::parse_redirect_for(e, which).is_some()
                || redirect::retry_class(e).is_some() =>
        {
            Some(e)
        }
        _ => None,
    }
}

fn typed(e: &[u8]) -> ClientError {
    resp::error_to_client(e)
}

fn unexpected(what: &str) -> ClientError {
    ClientError::new(
        ErrorKind::Connection,
        format!("unexpected reply to a batch: {what}"),
    )
}

/// A value in a batch's result array; errors become `Value::Error`.
fn in_place(f: Frame) -> Value {
    match f {
        Frame::Value(v) | Frame::Push(v) => v,
        Frame::Error(e) => Value::Error(e),
        Frame::TooDeep => Value::Error(too_deep().message.into_bytes()),
        Frame::TooLarge { bytes, limit } => {
            Value::Error(too_large(bytes, limit).message.into_bytes())
        }
    }
}

/// The array of results, or with `raise` the first error as a typed error.
fn finish(values: Vec<Value>, raise: bool) -> Completion {
    if raise {
        for v in &values {
            if let Value::Error(e) = v {
                let text = String::from_utf8_lossy(e).into_owned();
                let code = text.split(' ').next().unwrap_or("");
                return Completion::Err(ClientError::new(server_error_kind(code), text));
            }
        }
    }
    Completion::Ok(Value::Array(values))
}

impl BatchWork {
    pub fn new(atomic: bool, watch: Vec<Vec<u8>>, commands: Vec<Args>, raise: bool) -> BatchWork {
        let n = commands.len();
        BatchWork {
            atomic,
            watch,
            commands,
            raise,
            results: if atomic { Vec::new() } else { vec![None; n] },
            pending: if atomic { Vec::new() } else { (0..n).collect() },
            redirectable: Redirectable::Any,
        }
    }

    /// The redirects the batch can get, by its keys: any other redirect
    /// text is a command's own error ([`redirect::parse_redirect_for`]).
    pub fn redirectable(mut self, which: Redirectable) -> BatchWork {
        self.redirectable = which;
        self
    }

    /// Append this round's commands; returns how many replies they make.
    pub fn encode(&self, out: &mut Vec<u8>, asking: bool) -> u32 {
        let ask = |out: &mut Vec<u8>| resp::encode_command(out, &[b"ASKING".as_slice()]);
        let mut n = 0u32;
        if self.atomic {
            if !self.watch.is_empty() {
                if asking {
                    // Outside MULTI the ASKING flag covers one command:
                    // WATCH gets its own.
                    ask(out);
                    n += 1;
                }
                let mut w: Vec<&[u8]> = Vec::with_capacity(self.watch.len() + 1);
                w.push(b"WATCH");
                w.extend(self.watch.iter().map(|k| k.as_slice()));
                resp::encode_command(out, &w);
                n += 1;
            }
            if asking {
                // From MULTI on, the flag lasts through EXEC.
                ask(out);
                n += 1;
            }
            resp::encode_command(out, &[b"MULTI".as_slice()]);
            for c in &self.commands {
                resp::encode_command(out, c);
            }
            resp::encode_command(out, &[b"EXEC".as_slice()]);
            n + self.commands.len() as u32 + 2
        } else {
            for &i in &self.pending {
                if asking {
                    // Outside MULTI, ASKING covers the next command only.
                    ask(out);
                    n += 1;
                }
                resp::encode_command(out, &self.commands[i]);
                n += 1;
            }
            n
        }
    }

    /// Take one round's replies (as many as [`BatchWork::encode`] said).
    pub fn absorb(&mut self, frames: Vec<Frame>, asking: bool) -> Step {
        if self.atomic {
            return self.absorb_transaction(frames, asking);
        }
        let per = if asking { 2 } else { 1 };
        if frames.len() != self.pending.len() * per {
            return Step::Done(Completion::Err(unexpected(&format!(
                "{} replies for {} commands",
                frames.len(),
                self.pending.len() * per
            ))));
        }
        let mut again: Option<Vec<u8>> = None;
        let mut still = Vec::new();
        let pending = std::mem::take(&mut self.pending);
        let replies = frames.into_iter().skip(per - 1).step_by(per);
        for (i, f) in pending.into_iter().zip(replies) {
            if let Some(e) = is_again(&f, self.redirectable) {
                again.get_or_insert_with(|| e.to_vec());
                still.push(i);
            } else {
                self.results[i] = Some(f);
            }
        }
        if let Some(e) = again {
            self.pending = still;
            return Step::Again(e);
        }
        let values = std::mem::take(&mut self.results)
            .into_iter()
            .map(|f| f.map_or(Value::Nil, in_place))
            .collect();
        Step::Done(finish(values, self.raise))
    }

    fn absorb_transaction(&mut self, frames: Vec<Frame>, asking: bool) -> Step {
        let n = self.commands.len();
        let w = usize::from(!self.watch.is_empty());
        let mut frames = frames;
        let asks = if asking { 1 + w } else { 0 };
        if frames.len() != asks + w + n + 2 {
            return Step::Done(Completion::Err(unexpected(&format!(
                "{} replies for {} commands",
                frames.len(),
                asks + w + n + 2
            ))));
        }
        if asking {
            // The ASKING replies: before MULTI (index 2 after ASKING and
            // WATCH, else 0), and before WATCH (index 0) when there is one.
            frames.remove(2 * w);
            if w == 1 {
                frames.remove(0);
            }
        }
        let exec = frames.pop().expect("length checked");
        let ran = matches!(
            exec,
            Frame::Value(Value::Array(_) | Value::Nil) | Frame::TooDeep | Frame::TooLarge { .. }
        );
        // A redirect of WATCH or of a queued command, and EXEC did not
        // run anything (EXECABORT): send it all again. WATCH runs outside
        // the transaction, so a refused WATCH does not abort it: if EXEC
        // ran, the transaction ran unwatched and must not be sent again.
        if let Some(e) = frames[..w]
            .iter()
            .chain(&frames[w + 1..w + 1 + n])
            .find_map(|f| is_again(f, self.redirectable))
        {
            if !ran {
                return Step::Again(e.to_vec());
            }
        }
        if ran && w == 1 {
            if let Frame::Error(e) = &frames[0] {
                return Step::Done(Completion::Err(ClientError::new(
                    ErrorKind::Request,
                    format!(
                        "WATCH failed ({}), and the transaction then ran without it (not sent again); its results are lost",
                        String::from_utf8_lossy(e)
                    ),
                )));
            }
        }
        if let Frame::Error(e) = &frames[w] {
            return Step::Done(Completion::Err(ClientError::new(
                ErrorKind::Request,
                format!(
                    "MULTI failed ({}); the transaction's commands may have run outside a transaction",
                    String::from_utf8_lossy(e)
                ),
            )));
        }
        let queue_error = frames[w + 1..]
            .iter()
            .enumerate()
            .find_map(|(i, f)| match f {
                Frame::Error(e) => Some((i, e.clone())),
                _ => None,
            });
        Step::Done(match exec {
            Frame::Value(Value::Array(items)) if items.len() == n => finish(items, self.raise),
            Frame::Value(Value::Array(items)) => Completion::Err(unexpected(&format!(
                "EXEC returned {} results for {n} commands",
                items.len()
            ))),
            Frame::Value(Value::Nil) => {
                if self.raise {
                    Completion::Err(ClientError::new(
                        ErrorKind::ExecAbort,
                        "transaction aborted: a watched key changed (EXEC returned nil)",
                    ))
                } else {
                    Completion::Ok(Value::Nil)
                }
            }
            Frame::Error(e) => {
                if let Some(again) = is_again(&Frame::Error(e.clone()), self.redirectable) {
                    return Step::Again(again.to_vec());
                }
                let mut err = typed(&e);
                if let Some((i, qe)) = queue_error {
                    let qt = String::from_utf8_lossy(&qe);
                    if qt.starts_with("CROSSSLOT") {
                        return Step::Done(Completion::Err(ClientError::new(
                            ErrorKind::InvalidRequest,
                            format!("cross-slot transaction refused by the server (nothing ran): command {i}: {qt}"),
                        )));
                    }
                    err.message = format!("{} (command {i}: {qt})", err.message);
                }
                Completion::Err(err)
            }
            // The transaction ran; its results do not come back.
            Frame::TooDeep => Completion::Err(too_deep()),
            Frame::TooLarge { bytes, limit } => Completion::Err(too_large(bytes, limit)),
            other => Completion::Err(unexpected(&format!("EXEC returned {other:?}"))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Args {
        s.split(' ').map(|a| a.as_bytes().to_vec()).collect()
    }
    fn ok() -> Frame {
        Frame::Value(Value::Simple(b"OK".to_vec()))
    }
    fn queued() -> Frame {
        Frame::Value(Value::Simple(b"QUEUED".to_vec()))
    }
    fn err(s: &str) -> Frame {
        Frame::Error(s.as_bytes().to_vec())
    }

    #[test]
    fn pipeline_in_place_and_raise() {
        let mut b = BatchWork::new(false, vec![], vec![argv("SET a 1"), argv("GET a")], false);
        let mut out = Vec::new();
        assert_eq!(b.encode(&mut out, false), 2);
        assert_eq!(
            b.absorb(vec![ok(), err("WRONGTYPE x")], false),
            Step::Done(Completion::Ok(Value::Array(vec![
                Value::Simple(b"OK".to_vec()),
                Value::Error(b"WRONGTYPE x".to_vec())
            ])))
        );
        let mut b = BatchWork::new(false, vec![], vec![argv("SET a 1"), argv("GET a")], true);
        match b.absorb(vec![ok(), err("WRONGTYPE x")], false) {
            Step::Done(Completion::Err(e)) => {
                assert_eq!(e.kind, ErrorKind::Request);
                assert_eq!(e.message, "WRONGTYPE x");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_redirect_for_another_slot_is_a_commands_own_error() {
        // A script in the pipeline returned a text that reads as a MOVED for slot 9; the
        // batch's keys hash to slot 7: the error stays in place, nothing is sent again.
        let mk = || {
            BatchWork::new(
                false,
                vec![],
                vec![argv("SET a 1"), argv("EVAL s 0")],
                false,
            )
        };
        assert_eq!(
            mk().redirectable(Redirectable::Slot(7))
                .absorb(vec![ok(), err("MOVED 9 h:1")], false),
            Step::Done(Completion::Ok(Value::Array(vec![
                Value::Simple(b"OK".to_vec()),
                Value::Error(b"MOVED 9 h:1".to_vec())
            ])))
        );
        assert_eq!(
            mk().redirectable(Redirectable::Slot(9))
                .absorb(vec![ok(), err("MOVED 9 h:1")], false),
            Step::Again(b"MOVED 9 h:1".to_vec())
        );
    }

    #[test]
    fn pipeline_resends_only_refused_commands() {
        let mut b = BatchWork::new(
            false,
            vec![],
            vec![argv("SET a 1"), argv("SET b 2"), argv("GET c")],
            false,
        );
        let step = b.absorb(
            vec![
                ok(),
                err("ASK 5 127.0.0.1:7001"),
                err("ASK 5 127.0.0.1:7001"),
            ],
            false,
        );
        assert_eq!(step, Step::Again(b"ASK 5 127.0.0.1:7001".to_vec()));
        // Only commands 1 and 2 go again, each behind ASKING.
        let mut out = Vec::new();
        assert_eq!(b.encode(&mut out, true), 4);
        let text = String::from_utf8_lossy(&out);
        assert_eq!(text.matches("ASKING").count(), 2);
        assert!(!text.contains("$1\r\na\r\n"), "{text}");
        let step = b.absorb(vec![ok(), ok(), ok(), Frame::Value(Value::Nil)], true);
        assert_eq!(
            step,
            Step::Done(Completion::Ok(Value::Array(vec![
                Value::Simple(b"OK".to_vec()),
                Value::Simple(b"OK".to_vec()),
                Value::Nil
            ])))
        );
    }

    #[test]
    fn transaction_outcomes() {
        let mk = || {
            BatchWork::new(
                true,
                vec![b"{t}w".to_vec()],
                vec![argv("INCR {t}a"), argv("GET {t}a")],
                false,
            )
        };
        let mut out = Vec::new();
        assert_eq!(mk().encode(&mut out, false), 5);
        let text = String::from_utf8_lossy(&out);
        assert!(text.find("WATCH").unwrap() < text.find("MULTI").unwrap());
        let exec = Frame::Value(Value::Array(vec![
            Value::Int(1),
            Value::Bulk(b"1".to_vec()),
        ]));
        assert_eq!(
            mk().absorb(vec![ok(), ok(), queued(), queued(), exec], false),
            Step::Done(Completion::Ok(Value::Array(vec![
                Value::Int(1),
                Value::Bulk(b"1".to_vec())
            ])))
        );
        // Watch abort.
        assert_eq!(
            mk().absorb(
                vec![ok(), ok(), queued(), queued(), Frame::Value(Value::Nil)],
                false
            ),
            Step::Done(Completion::Ok(Value::Nil))
        );
        // EXEC's reply too large or too deep: the transaction ran, the error says why its
        // results are missing.
        for (exec, says) in [
            (
                Frame::TooLarge {
                    bytes: 5000,
                    limit: 1024,
                },
                "max_reply_bytes",
            ),
            (Frame::TooDeep, "nested deeper"),
        ] {
            match mk().absorb(vec![ok(), ok(), queued(), queued(), exec], false) {
                Step::Done(Completion::Err(e)) => {
                    assert_eq!(e.kind, ErrorKind::Request, "{e}");
                    assert!(e.message.contains(says), "{e}");
                }
                other => panic!("{other:?}"),
            }
        }
        // Queue-time error: EXECABORT with the command's error.
        match mk().absorb(
            vec![
                ok(),
                ok(),
                queued(),
                err("ERR wrong number of arguments"),
                err("EXECABORT Transaction discarded"),
            ],
            false,
        ) {
            Step::Done(Completion::Err(e)) => {
                assert_eq!(e.kind, ErrorKind::ExecAbort);
                assert!(e.message.contains("command 1: ERR wrong number"), "{e}");
            }
            other => panic!("{other:?}"),
        }
        // MOVED at queue time: nothing ran, send it all again.
        assert_eq!(
            mk().absorb(
                vec![ok(), ok(), err("MOVED 1 h:1"), queued(), err("EXECABORT x")],
                false
            ),
            Step::Again(b"MOVED 1 h:1".to_vec())
        );
        // With ASKING: one before WATCH, one before MULTI (outside MULTI
        // the flag covers a single command).
        let mut out = Vec::new();
        assert_eq!(mk().encode(&mut out, true), 7);
        let text = String::from_utf8_lossy(&out);
        let at = |w: &str, from: usize| text[from..].find(w).map(|i| i + from).unwrap();
        let first_ask = at("ASKING", 0);
        let watch = at("WATCH", 0);
        let second_ask = at("ASKING", watch);
        assert!(first_ask < watch && second_ask < at("MULTI", 0));
        let exec = || {
            Frame::Value(Value::Array(vec![
                Value::Int(1),
                Value::Bulk(b"1".to_vec()),
            ]))
        };
        assert_eq!(
            mk().absorb(
                vec![ok(), ok(), ok(), ok(), queued(), queued(), exec()],
                true
            ),
            Step::Done(Completion::Ok(Value::Array(vec![
                Value::Int(1),
                Value::Bulk(b"1".to_vec())
            ])))
        );
        // After an ASK: a WATCH refused on the importing node is not
        // mistaken for an ASKING reply.
        match mk().absorb(
            vec![
                ok(),
                err("TRYAGAIN x"),
                ok(),
                ok(),
                queued(),
                queued(),
                exec(),
            ],
            true,
        ) {
            Step::Done(Completion::Err(e)) => {
                assert!(e.message.contains("ran without it"), "{e}");
            }
            other => panic!("{other:?}"),
        }
        // An EXEC reply too deep to decode still means it ran.
        assert!(matches!(
            mk().absorb(
                vec![err("ASK 1 h:1"), ok(), queued(), queued(), Frame::TooDeep],
                false
            ),
            Step::Done(Completion::Err(_))
        ));
        // WATCH redirected but the transaction ran (its keys were there):
        // never sent again; the caller learns it ran unwatched.
        match mk().absorb(
            vec![err("ASK 1 h:1"), ok(), queued(), queued(), exec()],
            false,
        ) {
            Step::Done(Completion::Err(e)) => {
                assert_eq!(e.kind, ErrorKind::Request);
                assert!(e.message.contains("ran without it"), "{e}");
            }
            other => panic!("{other:?}"),
        }
        // WATCH redirected and the transaction aborted: send it again.
        assert_eq!(
            mk().absorb(
                vec![
                    err("ASK 1 h:1"),
                    ok(),
                    err("ASK 1 h:1"),
                    queued(),
                    err("EXECABORT x")
                ],
                false
            ),
            Step::Again(b"ASK 1 h:1".to_vec())
        );
        // Wrong reply count.
        assert!(matches!(
            mk().absorb(vec![ok()], false),
            Step::Done(Completion::Err(e)) if e.kind == ErrorKind::Connection
        ));
    }
}
