//! The only place that names bincode. Every stored value is one version byte followed by the
//! bincode (standard config) encoding of a serde record, so a future record layout can be
//! told apart and migrated instead of misread.
//!
//! Version 1 is a plain record ([`encode`]); version 2 a record, a second value extending
//! it and raw bytes after them ([`encode_extended`]), the layout of event rows.

use serde::{Serialize, de::DeserializeOwned};

use super::StoreError;

/// Version byte of a record written by [`encode`] (with raw bytes after it or not).
const RECORD_VERSION: u8 = 1;
/// Version byte of a record written by [`encode_extended`].
const EXTENDED_RECORD_VERSION: u8 = 2;
/// The most bytes one decoded record may claim. bincode allocates a string or byte
/// vector's stated length before it checks the input holds that many bytes, so a corrupt
/// length would abort the process on a failed allocation; with a limit it is an error.
/// Records are far smaller: a request head is at most 64 KiB and bodies are raw tails.
const DECODE_LIMIT: usize = 16 << 20;

/// Encodes a record as `[RECORD_VERSION] ++ bincode(value)`.
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::with_capacity(128);
    out.push(RECORD_VERSION);
    encode_into(value, &mut out)?;
    Ok(out)
}

/// Encodes a record, a second value extending it and raw bytes, so a record and a blob
/// share one row (and one B-tree insert):
/// `[EXTENDED_RECORD_VERSION] ++ bincode(value) ++ bincode(extension) ++ tail`.
pub(crate) fn encode_extended<T: Serialize, X: Serialize>(
    value: &T,
    extension: &X,
    tail: &[u8],
) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::with_capacity(192 + tail.len());
    out.push(EXTENDED_RECORD_VERSION);
    encode_into(value, &mut out)?;
    encode_into(extension, &mut out)?;
    out.extend_from_slice(tail);
    Ok(out)
}

fn encode_into<T: Serialize>(value: &T, out: &mut Vec<u8>) -> Result<(), StoreError> {
    bincode::serde::encode_into_std_write(value, out, bincode::config::standard())
        .map_err(|e| StoreError::Codec(e.to_string()))?;
    Ok(())
}

/// The value at the start of `bytes` and the bytes after it.
fn decode_prefix<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, &[u8]), StoreError> {
    let config = bincode::config::standard().with_limit::<DECODE_LIMIT>();
    let (value, read) = bincode::serde::decode_from_slice(bytes, config)
        .map_err(|e| StoreError::Codec(e.to_string()))?;
    Ok((value, bytes.get(read..).unwrap_or_default()))
}

/// Decodes a record written by [`encode`].
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    decode_prefix(versioned(bytes, RECORD_VERSION)?).map(|(v, _)| v)
}

/// Decodes a record written by [`encode_extended`]: the record, its extension and the tail.
pub(crate) fn decode_extended<T: DeserializeOwned, X: DeserializeOwned>(
    bytes: &[u8],
) -> Result<(T, X, &[u8]), StoreError> {
    let (value, rest) = decode_prefix(versioned(bytes, EXTENDED_RECORD_VERSION)?)?;
    let (extension, tail) = decode_prefix(rest)?;
    Ok((value, extension, tail))
}

/// The bytes after the version byte, when it is `version`.
fn versioned(bytes: &[u8], version: u8) -> Result<&[u8], StoreError> {
    match bytes.split_first() {
        Some((&v, rest)) if v == version => Ok(rest),
        Some((v, _)) => Err(StoreError::Codec(format!(
            "record version {v}, expected {version}"
        ))),
        None => Err(StoreError::Codec("empty record".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Delivery, DeliveryStatus};
    use uuid::Uuid;

    #[test]
    fn round_trip() {
        let d = Delivery {
            id: Uuid::now_v7(),
            event_id: Uuid::now_v7(),
            target_id: Uuid::new_v4(),
            status: DeliveryStatus::Retrying,
            attempts: 3,
            next_attempt_at: Some(42),
            created_at: 7,
        };
        let bytes = encode(&d).unwrap();
        assert_eq!(bytes[0], RECORD_VERSION);
        let back: Delivery = decode(&bytes).unwrap();
        assert_eq!(back, d);
    }

    #[test]
    fn an_extended_record_reads_back_with_its_tail() {
        let bytes = encode_extended(&(7u32, "x"), &vec![1u8, 2], b"tail").unwrap();
        let ((n, s), ext, tail): ((u32, String), Vec<u8>, _) = decode_extended(&bytes).unwrap();
        assert_eq!(
            (n, s.as_str(), ext, tail),
            (7, "x", vec![1, 2], &b"tail"[..])
        );
        // Neither reader takes the other's records.
        assert!(decode::<(u32, String)>(&bytes).is_err());
        let plain = encode(&(7u32, "x")).unwrap();
        assert!(decode_extended::<(u32, String), Vec<u8>>(&plain).is_err());
        assert!(decode_extended::<u32, Vec<u8>>(&[9, 1]).is_err());
    }

    #[test]
    fn rejects_unknown_version_and_garbage() {
        assert!(decode::<Delivery>(&[]).is_err());
        assert!(decode::<Delivery>(&[9, 1, 2]).is_err());
        assert!(decode::<Delivery>(&[RECORD_VERSION, 0xff]).is_err());
    }

    #[test]
    fn a_corrupt_length_is_an_error_not_an_abort() {
        // A string whose length prefix (varint tag 253: a u64 follows) claims far more
        // bytes than the row has; unlimited, bincode would try to allocate it first.
        for claimed in [1u64 << 46, u64::MAX >> 1] {
            let mut row = vec![RECORD_VERSION, 7, 253];
            row.extend_from_slice(&claimed.to_le_bytes());
            row.extend_from_slice(b"POST");
            assert!(decode::<(u32, String)>(&row).is_err());
            assert!(decode::<(u32, Vec<u8>)>(&row).is_err());
        }
    }
}
