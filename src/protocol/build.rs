//! Messages pgsluice writes itself, encoded with `pgwire` into a caller's buffer.
//!
//! Only the startup phase, errors and the admin console build messages; relayed traffic is
//! forwarded as raw frames and never passes through here.

use bytes::{BufMut, BytesMut};
use pgwire::messages::Message;
use pgwire::messages::data::{DataRow, FieldDescription, RowDescription};
use pgwire::messages::response::{
    CommandComplete, ErrorResponse, NoticeResponse, ReadyForQuery, TransactionStatus,
};
use pgwire::messages::startup::{Authentication, BackendKeyData};

/// Encodes a pgwire message; encoding into a `BytesMut` cannot fail for these types.
fn put<M: Message>(buf: &mut BytesMut, msg: M) {
    // pgwire's encoders only fail on invalid field values, none of which we construct.
    let _ = msg.encode(buf);
}

/// An ErrorResponse (severity ERROR or FATAL) with a SQLSTATE and a message.
pub fn error(buf: &mut BytesMut, severity: &str, code: &str, message: &str) {
    put(
        buf,
        ErrorResponse::new(vec![
            (b'S', severity.to_string()),
            (b'V', severity.to_string()),
            (b'C', code.to_string()),
            (b'M', message.to_string()),
        ]),
    );
}

/// A NoticeResponse with severity NOTICE.
pub fn notice(buf: &mut BytesMut, message: &str) {
    put(
        buf,
        NoticeResponse::new(vec![
            (b'S', "NOTICE".into()),
            (b'V', "NOTICE".into()),
            (b'C', "00000".into()),
            (b'M', message.to_string()),
        ]),
    );
}

pub fn auth_ok(buf: &mut BytesMut) {
    put(buf, Authentication::Ok);
}

/// AuthenticationMD5Password, written directly (one per md5 login).
pub fn auth_md5(buf: &mut BytesMut, salt: [u8; 4]) {
    buf.reserve(13);
    buf.put_u8(b'R');
    buf.put_u32(12);
    buf.put_u32(5);
    buf.put_slice(&salt);
}

pub fn auth_sasl(buf: &mut BytesMut, mechanisms: &[&str]) {
    put(
        buf,
        Authentication::SASL(mechanisms.iter().map(|m| m.to_string()).collect()),
    );
}

pub fn auth_sasl_continue(buf: &mut BytesMut, data: &[u8]) {
    put(buf, Authentication::SASLContinue(data.to_vec().into()));
}

pub fn auth_sasl_final(buf: &mut BytesMut, data: &[u8]) {
    put(buf, Authentication::SASLFinal(data.to_vec().into()));
}

/// ParameterStatus, written directly (pgwire's encoder copies both strings first; every
/// login writes a dozen of these).
pub fn parameter_status(buf: &mut BytesMut, name: &str, value: &str) {
    let len = 4 + name.len() + 1 + value.len() + 1;
    buf.reserve(1 + len);
    buf.put_u8(b'S');
    // Names and values come from a server's report or a startup packet (at most 10,000
    // bytes): far below 4 GiB.
    buf.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
    buf.put_slice(name.as_bytes());
    buf.put_u8(0);
    buf.put_slice(value.as_bytes());
    buf.put_u8(0);
}

pub fn backend_key_data(buf: &mut BytesMut, pid: u32, secret: u32) {
    put(buf, BackendKeyData::new(pid as i32, secret as i32));
}

/// ReadyForQuery with status `I`, `T` or `E`.
pub fn ready_for_query(buf: &mut BytesMut, status: u8) {
    let status = match status {
        b'T' => TransactionStatus::Transaction,
        b'E' => TransactionStatus::Error,
        _ => TransactionStatus::Idle,
    };
    put(buf, ReadyForQuery::new(status));
}

pub fn command_complete(buf: &mut BytesMut, tag: &str) {
    put(buf, CommandComplete::new(tag.to_string()));
}

/// A RowDescription of text columns (type `text`, OID 25).
pub fn row_description(buf: &mut BytesMut, columns: &[&str]) {
    let fields = columns
        .iter()
        .map(|name| FieldDescription::new(name.to_string(), 0, 0, 25, -1, -1, 0))
        .collect();
    put(buf, RowDescription::new(fields));
}

/// A DataRow of text values; `None` is SQL NULL.
pub fn data_row(buf: &mut BytesMut, values: &[Option<&str>]) {
    let mut data = BytesMut::new();
    for v in values {
        match v {
            Some(s) => {
                data.put_i32(s.len() as i32);
                data.put_slice(s.as_bytes());
            }
            None => data.put_i32(-1),
        }
    }
    put(buf, DataRow::new(data, values.len() as i16));
}

/// Column types the admin console uses in a RowDescription.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnType {
    Text,
    Int8,
}

/// A RowDescription of text and int8 columns (text format).
pub fn row_description_typed(buf: &mut BytesMut, columns: &[(&str, ColumnType)]) {
    let fields = columns
        .iter()
        .map(|(name, ty)| {
            let (oid, size) = match ty {
                ColumnType::Text => (25, -1),
                ColumnType::Int8 => (20, 8),
            };
            FieldDescription::new(name.to_string(), 0, 0, oid, size, -1, 0)
        })
        .collect();
    put(buf, RowDescription::new(fields));
}

/// A NoticeResponse with severity NOTICE, a message and a detail.
pub fn notice_detail(buf: &mut BytesMut, message: &str, detail: &str) {
    put(
        buf,
        NoticeResponse::new(vec![
            (b'S', "NOTICE".into()),
            (b'V', "NOTICE".into()),
            (b'C', "00000".into()),
            (b'M', message.to_string()),
            (b'D', detail.to_string()),
        ]),
    );
}
