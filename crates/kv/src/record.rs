//! One versioned codec for every record orbit keeps in the store.
//!
//! A record is stored as `{"v": VERSION, "r": body}` (JSON, so `etcdctl get` shows it).
//! Reading checks the version: the current one decodes as the type, an older one goes
//! through the type's [`Versioned::upgrade`], anything else is an error naming the key
//! and both versions — never a silent skip. Values written before the envelope existed
//! (a bare body) can be read through [`Versioned::legacy`] until they are migrated.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// A record type kept in the store under a version.
pub trait Versioned: Serialize + DeserializeOwned {
    /// What the record is called in errors ("node record").
    const NAME: &'static str;
    /// The version this build writes.
    const VERSION: u32;

    /// Decodes the body of an older `version`, or `None` when this build cannot.
    fn upgrade(version: u32, body: Value) -> Option<Result<Self, serde_json::Error>> {
        let _ = (version, body);
        None
    }

    /// Decodes a value written before records had an envelope, or `None` when it is
    /// not one.
    fn legacy(value: Value) -> Option<Result<Self, serde_json::Error>> {
        let _ = value;
        None
    }
}

/// Why a stored record could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Not a record of this type at all.
    #[error("corrupt {name} at {key}: {reason}")]
    Corrupt {
        /// Which record type.
        name: &'static str,
        /// Its key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// Written in a version this build does not read.
    #[error("{name} at {key} has format version {found}; this build reads up to {reads}: run a newer orbit")]
    Version {
        /// Which record type.
        name: &'static str,
        /// Its key.
        key: String,
        /// The version found.
        found: u64,
        /// The newest version this build reads.
        reads: u32,
    },
}

/// The stored form of `record`.
pub fn encode<T: Versioned>(record: &T) -> Vec<u8> {
    encode_version(T::VERSION, record)
}

/// The stored form of `record` as `version`, for types that are not [`Versioned`].
pub fn encode_version<T: Serialize>(version: u32, record: &T) -> Vec<u8> {
    #[derive(Serialize)]
    struct Stored<'a, T> {
        v: u32,
        r: &'a T,
    }
    serde_json::to_vec(&Stored {
        v: version,
        r: record,
    })
    .expect("records serialize")
}

/// Reads a record that must be exactly `version` (no upgrades, no legacy values), for
/// types that are not [`Versioned`].
pub fn decode_version<T: DeserializeOwned>(
    name: &'static str,
    version: u32,
    key: &[u8],
    bytes: &[u8],
) -> Result<T, RecordError> {
    if let Some(r) = current(version, bytes) {
        return Ok(r);
    }
    let corrupt = |reason: String| RecordError::Corrupt {
        name,
        key: String::from_utf8_lossy(key).into_owned(),
        reason,
    };
    let value: Value = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    let Value::Object(mut m) = value else {
        return Err(corrupt("not a versioned record".into()));
    };
    match envelope(&m).map(|(v, _)| v) {
        Some(v) if v == u64::from(version) => {
            serde_json::from_value(m.remove("r").expect("an envelope has a body"))
                .map_err(|e| corrupt(e.to_string()))
        }
        Some(v) => Err(RecordError::Version {
            name,
            key: String::from_utf8_lossy(key).into_owned(),
            found: v,
            reads: version,
        }),
        None => Err(corrupt("not a versioned record".into())),
    }
}

/// Whether `bytes` is in the envelope form (not a legacy value to migrate).
pub fn is_enveloped(bytes: &[u8]) -> bool {
    version(bytes).is_some()
}

/// The format version of an enveloped record, or `None` for anything else.
pub fn version(bytes: &[u8]) -> Option<u64> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Envelope {
        v: u64,
        #[allow(dead_code)]
        r: serde::de::IgnoredAny,
    }
    serde_json::from_slice::<Envelope>(bytes).ok().map(|e| e.v)
}

fn envelope(m: &serde_json::Map<String, Value>) -> Option<(u64, &Value)> {
    if m.len() != 2 {
        return None;
    }
    Some((m.get("v")?.as_u64()?, m.get("r")?))
}

/// The envelope at the current version, read straight into its record: the fast path
/// of every read (the general path goes through a JSON tree, several times slower,
/// and is kept for other versions, legacy values and errors).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Current<T> {
    v: u64,
    r: T,
}

fn current<T: DeserializeOwned>(version: u32, bytes: &[u8]) -> Option<T> {
    match serde_json::from_slice::<Current<T>>(bytes) {
        Ok(c) if c.v == u64::from(version) => Some(c.r),
        _ => None,
    }
}

/// Reads the record stored at `key`.
pub fn decode<T: Versioned>(key: &[u8], bytes: &[u8]) -> Result<T, RecordError> {
    if let Some(r) = current(T::VERSION, bytes) {
        return Ok(r);
    }
    let key = || String::from_utf8_lossy(key).into_owned();
    let corrupt = |reason: String| RecordError::Corrupt {
        name: T::NAME,
        key: key(),
        reason,
    };
    let value: Value = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    let found = match &value {
        Value::Object(m) => envelope(m).map(|(v, _)| v),
        _ => None,
    };
    let result = match found {
        Some(v) if v == u64::from(T::VERSION) => {
            let Value::Object(mut m) = value else {
                unreachable!("an envelope is an object")
            };
            serde_json::from_value(m.remove("r").expect("an envelope has a body"))
        }
        Some(v) => {
            let Value::Object(mut m) = value else {
                unreachable!("an envelope is an object")
            };
            let body = m.remove("r").expect("an envelope has a body");
            match u32::try_from(v).ok().and_then(|v| T::upgrade(v, body)) {
                Some(r) => r,
                None => {
                    return Err(RecordError::Version {
                        name: T::NAME,
                        key: key(),
                        found: v,
                        reads: T::VERSION,
                    })
                }
            }
        }
        None => match T::legacy(value) {
            Some(r) => r,
            None => return Err(corrupt("not a versioned record".into())),
        },
    };
    result.map_err(|e| corrupt(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Thing {
        size: u64,
    }

    impl Versioned for Thing {
        const NAME: &'static str = "thing";
        const VERSION: u32 = 2;
        fn upgrade(version: u32, body: Value) -> Option<Result<Self, serde_json::Error>> {
            #[derive(Deserialize)]
            struct V1 {
                kib: u64,
            }
            (version == 1)
                .then(|| serde_json::from_value::<V1>(body).map(|t| Thing { size: t.kib * 1024 }))
        }
        fn legacy(value: Value) -> Option<Result<Self, serde_json::Error>> {
            value.as_u64().map(|size| Ok(Thing { size }))
        }
    }

    #[test]
    fn current_older_and_legacy_versions_decode_and_others_name_the_key() {
        let t = Thing { size: 7 };
        let stored = encode(&t);
        assert!(is_enveloped(&stored));
        assert_eq!(version(&stored), Some(2));
        assert_eq!(version(br#"{"v":1,"r":{"kib":2},"x":0}"#), None);
        assert_eq!(decode::<Thing>(b"/k", &stored), Ok(t));
        assert_eq!(
            decode::<Thing>(b"/k", br#"{"v":1,"r":{"kib":2}}"#),
            Ok(Thing { size: 2048 })
        );
        assert!(!is_enveloped(b"42"));
        assert_eq!(decode::<Thing>(b"/k", b"42"), Ok(Thing { size: 42 }));
        let e = decode::<Thing>(b"/k/9", br#"{"v":3,"r":{}}"#).unwrap_err();
        assert!(
            matches!(
                e,
                RecordError::Version {
                    found: 3,
                    reads: 2,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("/k/9"), "{e}");
        for bad in [
            &b"{"[..],
            b"\"text\"",
            br#"{"v":2,"r":{"size":"x"}}"#,
            br#"{"v":2}"#,
        ] {
            let e = decode::<Thing>(b"/k/bad", bad).unwrap_err();
            assert!(matches!(e, RecordError::Corrupt { .. }), "{e}");
            assert!(e.to_string().contains("/k/bad"), "{e}");
        }
    }
}
