//! Reading a request body: a size limit that also holds after gzip decompression (so a small
//! compressed bomb cannot take the memory), and the content types we accept.

use std::io::Read;

use axum::body::Body;
use axum::http::{header, HeaderMap};
use bytes::Bytes;

use crate::error::CollectorError;

/// Reads the body, decompressing gzip when `Content-Encoding: gzip` or `?compression=gzip`
/// (what browsers use, as they cannot set Content-Encoding on a fetch body themselves).
pub async fn read(
    headers: &HeaderMap,
    gzip_flag: bool,
    body: Body,
    limit: usize,
) -> Result<Bytes, CollectorError> {
    read_keeping(headers, gzip_flag, body, limit)
        .await
        .map_err(|(error, _)| error)
}

/// As [`read`], and a body that arrived whole but does not decompress comes back with the
/// error, so that the events in it can be kept (and perhaps recovered) all the same.
pub async fn read_keeping(
    headers: &HeaderMap,
    gzip_flag: bool,
    body: Body,
    limit: usize,
) -> Result<Bytes, (CollectorError, Option<Bytes>)> {
    check_content_type(headers).map_err(|e| (e, None))?;
    let raw = axum::body::to_bytes(body, limit).await.map_err(|e| {
        if is_length_limit(&e) {
            CollectorError::BodyTooLarge { limit }
        } else {
            CollectorError::BodyUnreadable(e.to_string())
        }
    });
    let raw = raw.map_err(|e| (e, None))?;
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase());
    match encoding.as_deref() {
        None | Some("identity") | Some("") if !gzip_flag => Ok(raw),
        None | Some("identity") | Some("") | Some("gzip") => match gunzip(&raw, limit) {
            Err(e @ CollectorError::BodyUnreadable(_)) => Err((e, Some(raw))),
            decompressed => decompressed.map_err(|e| (e, None)),
        },
        Some(other) => Err((CollectorError::UnsupportedEncoding(other.to_owned()), None)),
    }
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = source {
        if s.to_string().contains("length limit") {
            return true;
        }
        source = s.source();
    }
    false
}

/// Every member of a gzip stream: gzip allows several back to back (a sender that compresses
/// as it goes may start a new one), and reading the first only would drop the rest silently.
fn gunzip(raw: &[u8], limit: usize) -> Result<Bytes, CollectorError> {
    let mut out = Vec::with_capacity(raw.len() * 4);
    let mut decoder = flate2::read::MultiGzDecoder::new(raw).take(limit as u64 + 1);
    decoder
        .read_to_end(&mut out)
        .map_err(|e| CollectorError::BodyUnreadable(format!("gzip: {e}")))?;
    if out.len() > limit {
        return Err(CollectorError::BodyTooLarge { limit });
    }
    Ok(Bytes::from(out))
}

/// JSON, or text/plain (what browsers send without a CORS preflight), or nothing.
fn check_content_type(headers: &HeaderMap) -> Result<(), CollectorError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let text = value.to_str().unwrap_or_default();
    let mime = text.split(';').next().unwrap_or_default().trim();
    if mime.eq_ignore_ascii_case("application/json") || mime.eq_ignore_ascii_case("text/plain") {
        Ok(())
    } else {
        Err(CollectorError::UnsupportedContentType(text.to_owned()))
    }
}
