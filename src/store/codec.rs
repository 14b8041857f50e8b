//! The only place that names bincode. Every stored value is one version byte followed by the
//! bincode (standard config) encoding of a serde record, so a future record layout can be
//! told apart and migrated instead of misread.

use serde::{Serialize, de::DeserializeOwned};

use super::StoreError;

/// Version byte of the current record encoding.
const RECORD_VERSION: u8 = 1;

/// Encodes a record as `[RECORD_VERSION] ++ bincode(value)`.
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    encode_with_tail(value, &[])
}

/// Encodes a record followed by raw bytes, `[RECORD_VERSION] ++ bincode(value) ++ tail`, so
/// a record and a blob share one row (and one B-tree insert).
pub(crate) fn encode_with_tail<T: Serialize>(
    value: &T,
    tail: &[u8],
) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::with_capacity(128 + tail.len());
    out.push(RECORD_VERSION);
    bincode::serde::encode_into_std_write(value, &mut out, bincode::config::standard())
        .map_err(|e| StoreError::Codec(e.to_string()))?;
    out.extend_from_slice(tail);
    Ok(out)
}

/// Decodes a record written by [`encode`].
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    decode_with_tail(bytes).map(|(v, _)| v)
}

/// Decodes a record written by [`encode_with_tail`]; returns it with the tail (empty for
/// a record written by [`encode`]).
pub(crate) fn decode_with_tail<T: DeserializeOwned>(
    bytes: &[u8],
) -> Result<(T, &[u8]), StoreError> {
    match bytes.split_first() {
        Some((&RECORD_VERSION, rest)) => {
            let (value, read) =
                bincode::serde::decode_from_slice(rest, bincode::config::standard())
                    .map_err(|e| StoreError::Codec(e.to_string()))?;
            Ok((value, rest.get(read..).unwrap_or_default()))
        }
        Some((v, _)) => Err(StoreError::Codec(format!("unknown record version {v}"))),
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
    fn tail_follows_the_record() {
        let bytes = encode_with_tail(&(7u32, "x"), b"\x00tail\xff").unwrap();
        let ((n, s), tail): ((u32, String), _) = decode_with_tail(&bytes).unwrap();
        assert_eq!((n, s.as_str(), tail), (7, "x", &b"\x00tail\xff"[..]));
        let plain = encode(&(7u32, "x")).unwrap();
        let (_, tail): ((u32, String), _) = decode_with_tail(&plain).unwrap();
        assert!(tail.is_empty());
    }

    #[test]
    fn rejects_unknown_version_and_garbage() {
        assert!(decode::<Delivery>(&[]).is_err());
        assert!(decode::<Delivery>(&[9, 1, 2]).is_err());
        assert!(decode::<Delivery>(&[RECORD_VERSION, 0xff]).is_err());
    }
}
