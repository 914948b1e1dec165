//! Conversions from the redis crate's types to the wire messages:
//! [`redis::Value`] -> [`msg::Value`] and [`redis::RedisError`] ->
//! [`ClientError`]. Pure functions.

use redis::{ErrorKind as RKind, RedisError, RedisResult, ServerError, ServerErrorKind};
use vshm_protocol::msg::{self, ClientError, Completion, ErrorKind, Pair};

/// The server's error text as it was on the wire: `"CODE message"`
/// (`"WRONGTYPE Operation against a key holding the wrong kind of value"`).
pub fn server_error_text(e: &ServerError) -> String {
    match e.details() {
        Some(d) if !d.is_empty() => format!("{} {}", e.code(), d),
        _ => e.code().to_string(),
    }
}

/// The error kind a server error reply maps to: `EXECABORT` ->
/// `ExecAbort`; `CLUSTERDOWN`/`MASTERDOWN` (the cluster cannot serve) ->
/// `Connection`; every other error reply -> `Request`.
pub fn server_error_kind(code: &str) -> ErrorKind {
    match code {
        "EXECABORT" => ErrorKind::ExecAbort,
        "CLUSTERDOWN" | "MASTERDOWN" => ErrorKind::Connection,
        _ => ErrorKind::Request,
    }
}

/// A server error reply as a typed error.
pub fn server_error(e: &ServerError) -> ClientError {
    ClientError::new(server_error_kind(e.code()), server_error_text(e))
}

fn pairs(map: Vec<(redis::Value, redis::Value)>) -> Vec<Pair> {
    map.into_iter()
        .map(|(k, v)| Pair {
            key: convert(k),
            value: convert(v),
        })
        .collect()
}

fn values(v: Vec<redis::Value>) -> Vec<msg::Value> {
    v.into_iter().map(convert).collect()
}

/// Convert a reply value. Error replies nested in aggregates become
/// [`msg::Value::Error`] with the `"CODE message"` text; a top-level error
/// reply is turned into a typed error by [`reply_to_completion`] instead.
pub fn convert(v: redis::Value) -> msg::Value {
    use redis::Value as R;
    match v {
        R::Nil => msg::Value::Nil,
        R::Int(i) => msg::Value::Int(i),
        R::BulkString(b) => msg::Value::Bulk(b),
        R::Array(a) => msg::Value::Array(values(a)),
        R::SimpleString(s) => msg::Value::Simple(s.into_bytes()),
        R::Okay => msg::Value::Simple(b"OK".to_vec()),
        R::Map(m) => msg::Value::Map(pairs(m)),
        R::Attribute { data, attributes } => msg::Value::Attribute {
            data: Box::new(convert(*data)),
            attributes: pairs(attributes),
        },
        R::Set(s) => msg::Value::Set(values(s)),
        R::Double(d) => msg::Value::Double(d),
        R::Boolean(b) => msg::Value::Boolean(b),
        R::VerbatimString { format, text } => msg::Value::Verbatim {
            format: format.to_string().into_bytes(),
            text: text.into_bytes(),
        },
        // Without the crate's `num-bigint` feature the big number is kept
        // as the decimal text the server sent.
        R::BigNumber(digits) => msg::Value::BigNumber(digits),
        R::Push { kind, data } => msg::Value::Push {
            kind: kind.to_string().into_bytes(),
            data: values(data),
        },
        R::ServerError(e) => msg::Value::Error(server_error_text(&e).into_bytes()),
        // `redis::Value` is non-exhaustive: a future variant shows up as an
        // error value rather than being lost.
        other => msg::Value::Error(format!("ERR unsupported reply type: {other:?}").into_bytes()),
    }
}

/// Map a redis crate error onto the typed error a client sees.
///
/// * a server error reply -> `Request` (or `ExecAbort`/`Connection`, see
///   [`server_error_kind`]) with the server's `"CODE message"`;
/// * I/O timeouts -> `Timeout`;
/// * I/O errors (refused, reset, broken pipe, EOF), lost cluster
///   connections, authentication failures and protocol desyncs ->
///   `Connection`;
/// * a client-side configuration problem -> `InvalidRequest`.
pub fn map_error(e: &RedisError) -> ClientError {
    let kind = e.kind();
    if let RKind::Server(sk) = kind {
        // Known server error: rebuild "CODE detail".
        let code = e.code().unwrap_or("ERR");
        let text = match e.detail() {
            Some(d) if !d.is_empty() => format!("{code} {d}"),
            _ => {
                // A bare "-CODE" reply displays as the kind's name; a
                // transaction/pipeline aggregate displays its failures.
                let shown = e.to_string();
                if shown == format!("{sk:?}") {
                    code.to_string()
                } else {
                    format!("{code} {shown}")
                }
            }
        };
        let k = match sk {
            ServerErrorKind::ExecAbort => ErrorKind::ExecAbort,
            ServerErrorKind::ClusterDown | ServerErrorKind::MasterDown => ErrorKind::Connection,
            _ => ErrorKind::Request,
        };
        return ClientError::new(k, text);
    }
    match kind {
        RKind::Extension => {
            // An error reply with a code the crate does not know
            // (WRONGTYPE, NOAUTH, BUSY, ...).
            let text = match (e.code(), e.detail()) {
                (Some(c), Some(d)) if !d.is_empty() => format!("{c} {d}"),
                (Some(c), _) => c.to_string(),
                _ => e.to_string(),
            };
            let k = server_error_kind(e.code().unwrap_or(""));
            ClientError::new(k, text)
        }
        RKind::Io if e.is_timeout() => ClientError::new(ErrorKind::Timeout, e.to_string()),
        RKind::Io
        | RKind::ClusterConnectionNotFound
        | RKind::AuthenticationFailed
        | RKind::Parse
        | RKind::Client => ClientError::new(ErrorKind::Connection, e.to_string()),
        RKind::InvalidClientConfig | RKind::RESP3NotSupported => {
            ClientError::new(ErrorKind::InvalidRequest, e.to_string())
        }
        RKind::UnexpectedReturnType => ClientError::new(ErrorKind::Request, e.to_string()),
        _ => ClientError::new(ErrorKind::Connection, e.to_string()),
    }
}

/// One command's outcome as a completion: a top-level error reply becomes
/// a typed error, anything else a value.
pub fn reply_to_completion(r: RedisResult<redis::Value>) -> Completion {
    match r {
        Ok(redis::Value::ServerError(e)) => Completion::Err(server_error(&e)),
        Ok(v) => Completion::Ok(convert(v)),
        Err(e) => Completion::Err(map_error(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::{PushKind, Value as R, VerbatimFormat};
    use std::io;

    fn parse(wire: &[u8]) -> R {
        redis::parse_redis_value(wire).unwrap()
    }

    #[test]
    fn scalar_types() {
        assert_eq!(convert(R::Nil), msg::Value::Nil);
        assert_eq!(convert(R::Int(-7)), msg::Value::Int(-7));
        assert_eq!(
            convert(R::BulkString(vec![0, 1, 0, 255])),
            msg::Value::Bulk(vec![0, 1, 0, 255])
        );
        assert_eq!(convert(R::Okay), msg::Value::Simple(b"OK".to_vec()));
        assert_eq!(
            convert(R::SimpleString("PONG".into())),
            msg::Value::Simple(b"PONG".to_vec())
        );
        assert_eq!(convert(R::Double(1.5)), msg::Value::Double(1.5));
        assert_eq!(convert(R::Boolean(false)), msg::Value::Boolean(false));
    }

    #[test]
    fn resp3_wire_types() {
        // Parse real RESP3 bytes so the test follows the parser's choices.
        assert_eq!(
            convert(parse(b"(3492890328409238509324850943850943825024385\r\n")),
            msg::Value::BigNumber(b"3492890328409238509324850943850943825024385".to_vec())
        );
        assert_eq!(
            convert(parse(b"(-12345678901234567890\r\n")),
            msg::Value::BigNumber(b"-12345678901234567890".to_vec())
        );
        assert_eq!(
            convert(parse(b"=15\r\ntxt:Some string\r\n")),
            msg::Value::Verbatim {
                format: b"txt".to_vec(),
                text: b"Some string".to_vec()
            }
        );
        assert_eq!(
            convert(parse(b"%1\r\n+a\r\n,2.5\r\n")),
            msg::Value::Map(vec![Pair {
                key: msg::Value::Simple(b"a".to_vec()),
                value: msg::Value::Double(2.5)
            }])
        );
        assert_eq!(
            convert(parse(b"~2\r\n#t\r\n_\r\n")),
            msg::Value::Set(vec![msg::Value::Boolean(true), msg::Value::Nil])
        );
        assert_eq!(
            convert(parse(b">2\r\n$7\r\nmessage\r\n$2\r\nhi\r\n")),
            msg::Value::Push {
                kind: b"message".to_vec(),
                data: vec![msg::Value::Bulk(b"hi".to_vec())]
            }
        );
        assert_eq!(
            convert(parse(b"|1\r\n+ttl\r\n:3\r\n:7\r\n")),
            msg::Value::Attribute {
                data: Box::new(msg::Value::Int(7)),
                attributes: vec![Pair {
                    key: msg::Value::Simple(b"ttl".to_vec()),
                    value: msg::Value::Int(3)
                }]
            }
        );
    }

    #[test]
    fn constructed_variants() {
        assert_eq!(
            convert(R::VerbatimString {
                format: VerbatimFormat::Markdown,
                text: "# hi".into()
            }),
            msg::Value::Verbatim {
                format: b"mkd".to_vec(),
                text: b"# hi".to_vec()
            }
        );
        assert_eq!(
            convert(R::Push {
                kind: PushKind::Other("custom".into()),
                data: vec![]
            }),
            msg::Value::Push {
                kind: b"custom".to_vec(),
                data: vec![]
            }
        );
    }

    #[test]
    fn nested_error_stays_a_value() {
        let v = parse(b"*2\r\n:1\r\n-WRONGTYPE Operation against a key\r\n");
        assert_eq!(
            convert(v),
            msg::Value::Array(vec![
                msg::Value::Int(1),
                msg::Value::Error(b"WRONGTYPE Operation against a key".to_vec())
            ])
        );
        let v = parse(b"*1\r\n-ERR\r\n");
        assert_eq!(
            convert(v),
            msg::Value::Array(vec![msg::Value::Error(b"ERR".to_vec())])
        );
    }

    #[test]
    fn top_level_error_reply_is_typed() {
        let c = reply_to_completion(Ok(parse(b"-WRONGTYPE Operation against a key\r\n")));
        assert_eq!(
            c,
            Completion::Err(ClientError::new(
                ErrorKind::Request,
                "WRONGTYPE Operation against a key"
            ))
        );
        let c = reply_to_completion(Ok(parse(b"-EXECABORT Transaction discarded\r\n")));
        assert_eq!(
            c,
            Completion::Err(ClientError::new(
                ErrorKind::ExecAbort,
                "EXECABORT Transaction discarded"
            ))
        );
    }

    fn server_err(wire: &[u8]) -> RedisError {
        parse(wire).extract_error().unwrap_err()
    }

    #[test]
    fn server_errors_as_redis_errors() {
        let e = map_error(&server_err(b"-WRONGTYPE Operation against a key\r\n"));
        assert_eq!(e.kind, ErrorKind::Request);
        assert_eq!(e.message, "WRONGTYPE Operation against a key");
        let e = map_error(&server_err(b"-ERR unknown command 'FOO'\r\n"));
        assert_eq!(e.kind, ErrorKind::Request);
        assert_eq!(e.message, "ERR unknown command 'FOO'");
        let e = map_error(&server_err(b"-EXECABORT Transaction discarded\r\n"));
        assert_eq!(e.kind, ErrorKind::ExecAbort);
        assert_eq!(e.message, "EXECABORT Transaction discarded");
        let e = map_error(&server_err(b"-CLUSTERDOWN The cluster is down\r\n"));
        assert_eq!(e.kind, ErrorKind::Connection);
        assert_eq!(e.message, "CLUSTERDOWN The cluster is down");
        let e = map_error(&server_err(b"-EXECABORT\r\n"));
        assert_eq!(e.kind, ErrorKind::ExecAbort);
        assert_eq!(e.message, "EXECABORT");
        let e = map_error(&server_err(b"-BUSY Redis is busy running a script\r\n"));
        assert_eq!(e.kind, ErrorKind::Request);
        assert_eq!(e.message, "BUSY Redis is busy running a script");
        let e = map_error(&server_err(b"-NOSCRIPT No matching script\r\n"));
        assert_eq!(e.kind, ErrorKind::Request);
        assert_eq!(e.message, "NOSCRIPT No matching script");
    }

    #[test]
    fn io_errors() {
        let t = RedisError::from(io::Error::new(io::ErrorKind::TimedOut, "slow"));
        assert_eq!(map_error(&t).kind, ErrorKind::Timeout);
        for k in [
            io::ErrorKind::ConnectionRefused,
            io::ErrorKind::BrokenPipe,
            io::ErrorKind::ConnectionReset,
            io::ErrorKind::UnexpectedEof,
        ] {
            let e = RedisError::from(io::Error::new(k, "x"));
            assert_eq!(map_error(&e).kind, ErrorKind::Connection, "{k:?}");
        }
        let e = RedisError::from((RKind::ClusterConnectionNotFound, "no conn"));
        assert_eq!(map_error(&e).kind, ErrorKind::Connection);
        let e = RedisError::from((RKind::InvalidClientConfig, "bad"));
        assert_eq!(map_error(&e).kind, ErrorKind::InvalidRequest);
        let e = RedisError::from((RKind::Io, "connection dropped"));
        assert_eq!(map_error(&e).kind, ErrorKind::Connection);
    }
}
