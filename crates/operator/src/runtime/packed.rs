//! Packed caches for custom resources watched in large numbers (sessions, evaluation
//! Experiments): each object is kept as its identity (a small `ObjectMeta`) plus the rest of
//! it as compact JSON text, with the substrings every object of its kind repeats (keys,
//! condition vocabulary) packed into single bytes by a per-kind [`Dictionary`]. The
//! controller parses the text back into the typed object when it reconciles; the watch and
//! the work queue never parse more than the identity and the few fields a cache type reads
//! for its indexes. A typed object (its `ObjectMeta` maps, conditions and spec trees) takes
//! several times the bytes of its packed text.
//!
//! Objects are read as raw members ([`RawObject`]): `managedFields` and the `kubectl apply`
//! annotation ([`LAST_APPLIED`]) are dropped without being parsed, and every other member
//! is kept as the text it came in.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Resource;
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::value::RawValue;

use super::watches::LAST_APPLIED;

/// A JSON object with its members' texts kept as they came.
pub type RawObject = BTreeMap<String, Box<RawValue>>;

/// The largest number of entries a [`Dictionary`] holds: codes are the control bytes
/// `0x01..=0x1f`.
pub const MAX_ENTRIES: usize = 31;

/// Substrings packed into one control byte each (`0x01` + index). Compact JSON never holds a
/// raw control byte (`serde_json` escapes them inside strings), so every such byte of a
/// packed text is a code. Longer entries should come first: [`Dictionary::pack`] takes the
/// first entry that matches.
#[derive(Debug)]
pub struct Dictionary {
    entries: &'static [&'static str],
    /// For each byte value, the entries (bit `i` for entry `i`) whose first byte it is.
    first: [u32; 256],
    /// For each byte value, the entries whose second byte it is, or that have none. An entry
    /// is tried only where both bytes fit: most entries of a JSON dictionary start with `"`,
    /// and trying each of them at every `"` was most of the packing's cost.
    second: [u32; 256],
}

impl Dictionary {
    /// A dictionary of `entries` (at most [`MAX_ENTRIES`], none empty).
    ///
    /// # Panics
    ///
    /// When `entries` breaks those limits; dictionaries are constants, so this fails the
    /// build, not a running operator.
    #[must_use]
    pub const fn new(entries: &'static [&'static str]) -> Self {
        assert!(entries.len() <= MAX_ENTRIES, "too many dictionary entries");
        let mut first = [0u32; 256];
        let mut second = [0u32; 256];
        let mut i = 0;
        while i < entries.len() {
            let bytes = entries[i].as_bytes();
            assert!(!bytes.is_empty(), "empty dictionary entry");
            let bit = 1u32 << i;
            first[bytes[0] as usize] |= bit;
            if bytes.len() == 1 {
                let mut b = 0;
                while b < 256 {
                    second[b] |= bit;
                    b += 1;
                }
            } else {
                second[bytes[1] as usize] |= bit;
            }
            i += 1;
        }
        Self {
            entries,
            first,
            second,
        }
    }

    /// The entries, in code order.
    #[must_use]
    pub fn entries(&self) -> &'static [&'static str] {
        self.entries
    }

    /// Packs compact JSON `text`; `None` if `text` holds a control byte (never the case for
    /// `serde_json`'s output).
    #[must_use]
    pub fn pack(&self, text: &str) -> Option<Box<[u8]>> {
        let bytes = text.as_bytes();
        if bytes.iter().any(|b| *b < 0x20) {
            return None;
        }
        let mut out = Vec::with_capacity(bytes.len() / 2);
        let mut rest = bytes;
        'outer: while let Some((&first, tail)) = rest.split_first() {
            let mut candidates = self.first[usize::from(first)];
            if candidates != 0 {
                // A one-byte entry matches at the text's last byte too.
                candidates &= tail
                    .first()
                    .map_or(u32::MAX, |&b| self.second[usize::from(b)]);
            }
            while candidates != 0 {
                // Lowest bit first: entries keep their priority order.
                let index = candidates.trailing_zeros();
                candidates &= candidates - 1;
                let entry = self.entries[index as usize];
                if let Some(after) = rest.strip_prefix(entry.as_bytes()) {
                    // `index` < MAX_ENTRIES (31), so the code is a control byte.
                    out.push(u8::try_from(index + 1).unwrap_or(0));
                    rest = after;
                    continue 'outer;
                }
            }
            out.push(first);
            rest = tail;
        }
        Some(out.into_boxed_slice())
    }

    /// The JSON text [`Self::pack`] packed.
    #[must_use]
    pub fn unpack(&self, packed: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(packed.len() * 2);
        for &b in packed {
            match self.entries.get(usize::from(b).wrapping_sub(1)) {
                Some(entry) if b < 0x20 => out.extend_from_slice(entry.as_bytes()),
                _ => out.push(b),
            }
        }
        out
    }
}

/// Identity fields kept in the cached `ObjectMeta` and left out of the packed text.
const IDENTITY_FIELDS: [&str; 6] = [
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "deletionTimestamp",
];

/// The identity fields of `metadata` (name, namespace, uid, resourceVersion, generation,
/// deletionTimestamp), read without the rest.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Identity {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    uid: Option<String>,
    #[serde(default)]
    resource_version: Option<String>,
    #[serde(default)]
    generation: Option<i64>,
    #[serde(default)]
    deletion_timestamp: Option<Time>,
}

impl Identity {
    /// Whether the object has a name (what a cache can hold it by).
    pub(crate) fn is_named(&self) -> bool {
        self.name.is_some()
    }
}

impl From<Identity> for ObjectMeta {
    fn from(ids: Identity) -> Self {
        Self {
            name: ids.name,
            namespace: ids.namespace,
            uid: ids.uid,
            resource_version: ids.resource_version,
            generation: ids.generation,
            deletion_timestamp: ids.deletion_timestamp,
            ..Self::default()
        }
    }
}

/// An object but its identity, as packed text (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Packed(Box<[u8]>);

impl Packed {
    /// Splits `object` into its identity (name, namespace, uid, resourceVersion, generation
    /// and deletionTimestamp, parsed) and the rest, packed with `dictionary`: `metadata`
    /// without `managedFields` (dropped unparsed) and the `kubectl apply` annotation, every
    /// other member as the text it came in. The API server writes compact JSON; text with
    /// whitespace between tokens is compacted through a parse first, as packing needs.
    ///
    /// # Errors
    ///
    /// When `metadata` is not an object, an identity field has the wrong type, or a member
    /// is not JSON: such an object is refused as a whole, never cached half-read.
    pub fn split(
        mut object: RawObject,
        dictionary: &Dictionary,
    ) -> Result<(ObjectMeta, Self), serde_json::Error> {
        let mut meta: RawObject = match object.remove("metadata") {
            Some(raw) => serde_json::from_str(raw.get())?,
            None => RawObject::new(),
        };
        meta.remove("managedFields");
        drop_last_applied(&mut meta)?;
        let mut identity = RawObject::new();
        for field in IDENTITY_FIELDS {
            if let Some(raw) = meta.remove(field) {
                identity.insert(field.to_owned(), raw);
            }
        }
        let mut identity_text = Vec::new();
        write_object(&mut identity_text, members(&identity))?;
        let ids: Identity = serde_json::from_slice(&identity_text)?;
        let mut meta_text = Vec::new();
        write_object(&mut meta_text, members(&meta))?;
        // `metadata` goes back in its sorted place (between `kind` and `spec`), the order
        // the dictionaries expect.
        let mut sorted: Vec<(&str, &[u8])> = members(&object)
            .chain(std::iter::once(("metadata", meta_text.as_slice())))
            .collect();
        sorted.sort_by(|a, b| a.0.cmp(b.0));
        let mut text = Vec::new();
        write_object(&mut text, sorted.into_iter())?;
        let packed = if let Some(packed) = std::str::from_utf8(&text)
            .ok()
            .and_then(|t| dictionary.pack(t))
        {
            packed
        } else {
            // Whitespace between tokens (a pretty-printing server): compact it first.
            let value: serde_json::Value = serde_json::from_slice(&text)?;
            dictionary
                .pack(&serde_json::to_string(&value)?)
                .ok_or_else(|| {
                    <serde_json::Error as serde::de::Error>::custom(
                        "the object's JSON text holds a raw control byte",
                    )
                })?
        };
        Ok((ids.into(), Self(packed)))
    }

    /// The whole object again (without `managedFields` and the `kubectl apply` annotation):
    /// the packed text parsed as `K`, with `identity`'s fields put back.
    ///
    /// # Errors
    ///
    /// When the text does not read as `K` (a spec the typed API does not accept); the
    /// message starts with the path of the field that does not read (`spec.scenarios: ...`).
    pub fn restore<K: Resource + DeserializeOwned>(
        &self,
        identity: &ObjectMeta,
        dictionary: &Dictionary,
    ) -> Result<K, serde_json::Error> {
        let text = dictionary.unpack(&self.0);
        let mut object: K =
            match serde_json::from_slice(&text) {
                Ok(object) => object,
                // Read again, tracking the path, only to say where (errors are rare; tracking
                // every read is not free).
                Err(error) => {
                    let mut reader = serde_json::Deserializer::from_slice(&text);
                    return Err(
                        match serde_path_to_error::deserialize::<_, K>(&mut reader) {
                            Err(located) => <serde_json::Error as serde::de::Error>::custom(
                                format!("{}: {}", located.path(), located.inner()),
                            ),
                            Ok(_) => error,
                        },
                    );
                }
            };
        let m = object.meta_mut();
        m.name.clone_from(&identity.name);
        m.namespace.clone_from(&identity.namespace);
        m.uid.clone_from(&identity.uid);
        m.resource_version.clone_from(&identity.resource_version);
        m.generation = identity.generation;
        m.deletion_timestamp
            .clone_from(&identity.deletion_timestamp);
        Ok(object)
    }

    /// Bytes the packed text takes (for footprint tests).
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the packed text is empty (never, for an object).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The members of `object` as key and raw text.
fn members(object: &RawObject) -> impl Iterator<Item = (&str, &[u8])> {
    object.iter().map(|(k, v)| (k.as_str(), v.get().as_bytes()))
}

/// Implements `kube::Resource` (namespaced, no dynamic type) and `TryFrom<serde_json::Value>`
/// (through its `TryFrom<RawObject>`) for a packed cache type with a `metadata: ObjectMeta`
/// field: `packed_resource!(Type, kind, plural, api)` where `api` is the API module with
/// `GROUP`, `VERSION` and `API_VERSION`.
macro_rules! packed_resource {
    ($ty:ty, $kind:literal, $plural:literal, $api:path) => {
        impl TryFrom<serde_json::Value> for $ty {
            type Error = serde_json::Error;

            fn try_from(value: serde_json::Value) -> Result<Self, Self::Error> {
                Self::try_from(serde_json::from_value::<$crate::runtime::packed::RawObject>(value)?)
            }
        }

        impl kube::Resource for $ty {
            type DynamicType = ();
            type Scope = k8s_openapi::NamespaceResourceScope;

            fn kind((): &()) -> std::borrow::Cow<'_, str> {
                std::borrow::Cow::Borrowed($kind)
            }
            fn group((): &()) -> std::borrow::Cow<'_, str> {
                use $api as api;
                std::borrow::Cow::Borrowed(api::GROUP)
            }
            fn version((): &()) -> std::borrow::Cow<'_, str> {
                use $api as api;
                std::borrow::Cow::Borrowed(api::VERSION)
            }
            fn api_version((): &()) -> std::borrow::Cow<'_, str> {
                use $api as api;
                std::borrow::Cow::Borrowed(api::API_VERSION)
            }
            fn plural((): &()) -> std::borrow::Cow<'_, str> {
                std::borrow::Cow::Borrowed($plural)
            }
            fn meta(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                &self.metadata
            }
            fn meta_mut(
                &mut self,
            ) -> &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                &mut self.metadata
            }
        }
    };
}
pub(crate) use packed_resource;

/// Writes `{"key":raw,...}` for `members`.
fn write_object<'a>(
    out: &mut Vec<u8>,
    members: impl Iterator<Item = (&'a str, &'a [u8])>,
) -> Result<(), serde_json::Error> {
    out.push(b'{');
    for (i, (key, raw)) in members.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut *out, key)?;
        out.push(b':');
        out.extend_from_slice(raw);
    }
    out.push(b'}');
    Ok(())
}

/// Removes the [`LAST_APPLIED`] annotation from raw `metadata` members (read only when its
/// key appears in the annotations' text), and `annotations` with it when nothing else is left.
fn drop_last_applied(meta: &mut RawObject) -> Result<(), serde_json::Error> {
    let Some(raw) = meta.get("annotations") else {
        return Ok(());
    };
    if !raw.get().contains(LAST_APPLIED) {
        return Ok(());
    }
    let mut annotations: RawObject = serde_json::from_str(raw.get())?;
    annotations.remove(LAST_APPLIED);
    if annotations.is_empty() {
        meta.remove("annotations");
    } else {
        let text = serde_json::to_string(&annotations)?;
        meta.insert("annotations".to_owned(), RawValue::from_string(text)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    const WORDS: Dictionary = Dictionary::new(&[r#"{"apiVersion":"v1""#, r#""data":{"#, "kind"]);

    #[test]
    fn every_entry_packs_to_one_byte_and_any_other_text_is_kept() {
        for entry in WORDS.entries() {
            let packed = WORDS.pack(entry).unwrap();
            assert_eq!(packed.len(), 1, "{entry}");
            assert_eq!(WORDS.unpack(&packed), entry.as_bytes());
        }
        let text = r#"{"apiVersion":"v1","data":{"k":"kind \\ \" é 😀 \\u0001"}}"#;
        let packed = WORDS.pack(text).unwrap();
        assert!(packed.len() < text.len());
        assert_eq!(WORDS.unpack(&packed), text.as_bytes());
        // Text with a raw control byte (never serde_json's output) is refused, not mangled.
        assert!(WORDS.pack("{\"a\":1}\n").is_none());
        assert!(WORDS.pack("\u{1}").is_none());
    }

    #[test]
    fn the_first_entry_that_matches_wins_and_one_byte_entries_match_anywhere() {
        const D: Dictionary = Dictionary::new(&[r#""status":"#, r#""st"#, "x", r#"""#]);
        assert_eq!(&*D.pack(r#""status":1"#).unwrap(), &[1, b'1']);
        assert_eq!(&*D.pack(r#""stop""#).unwrap(), &[2, b'o', b'p', 4]);
        assert_eq!(&*D.pack("ax").unwrap(), &[b'a', 3]);
        assert_eq!(&*D.pack("x").unwrap(), &[3]);
        assert_eq!(&*D.pack(r#""s"#).unwrap(), &[4, b's']);
        for text in [r#""status":"stx""#, "xx", r#"{"st":"s"}"#, ""] {
            assert_eq!(D.unpack(&D.pack(text).unwrap()), text.as_bytes(), "{text}");
        }
    }

    #[test]
    fn an_object_splits_into_its_identity_and_comes_back_whole() {
        let object: RawObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "ns", "uid": "u", "resourceVersion": "7",
                "labels": {"a": "b"},
                "annotations": {LAST_APPLIED: "{}", "keep": "yes"},
                "managedFields": "of any shape"},
            "data": {"k": "v"}
        }))
        .unwrap();
        let (identity, packed) = Packed::split(object, &WORDS).unwrap();
        assert_eq!(identity.name.as_deref(), Some("c"));
        assert_eq!(identity.resource_version.as_deref(), Some("7"));
        assert!(identity.labels.is_none(), "only identity is parsed");
        let back: ConfigMap = packed.restore(&identity, &WORDS).unwrap();
        assert_eq!(back.metadata.name.as_deref(), Some("c"));
        assert_eq!(back.metadata.uid.as_deref(), Some("u"));
        assert_eq!(
            back.metadata.labels,
            Some([("a".into(), "b".into())].into())
        );
        assert_eq!(
            back.metadata.annotations,
            Some([("keep".into(), "yes".into())].into()),
            "the kubectl apply annotation is dropped, the others kept"
        );
        assert!(back.metadata.managed_fields.is_none());
        assert_eq!(back.data, Some([("k".into(), "v".into())].into()));
    }

    #[test]
    fn bad_objects_are_refused_whole() {
        for bad in [
            r#"{"metadata": "not an object"}"#,
            r#"{"metadata": {"name": 7}}"#,
            r#"{"metadata": {"generation": "one"}}"#,
            r#"{"metadata": {"deletionTimestamp": "yesterday"}}"#,
            r#"{"metadata": {"annotations": ["kubectl.kubernetes.io/last-applied-configuration"]}}"#,
        ] {
            let object: Result<RawObject, _> = serde_json::from_str(bad);
            let split = object.map(|o| Packed::split(o, &WORDS));
            assert!(!matches!(split, Ok(Ok(_))), "{bad} was accepted");
        }
        // Text that does not read as the kind is refused when restored.
        let object: RawObject =
            serde_json::from_str(r#"{"metadata": {"name": "c"}, "data": [1]}"#).unwrap();
        let (identity, packed) = Packed::split(object, &WORDS).unwrap();
        let error = packed.restore::<ConfigMap>(&identity, &WORDS).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("data: invalid type: sequence"),
            "the field is named: {error}"
        );
    }
}
