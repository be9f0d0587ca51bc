//! Decoding of the Kubernetes protobuf envelope for the few built-in kinds that kubectl's
//! generator commands (`kubectl create namespace|configmap|secret|serviceaccount|role|...`)
//! send as protobuf. Responses are always JSON, which kubectl accepts.

use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::error::ApiError;

#[derive(Clone, Copy)]
enum Ty {
    Str,
    Bytes,
    Bool,
    Int,
    Msg(&'static [F]),
    MapStr,
    MapBytes,
    RepStr,
    RepMsg(&'static [F]),
}

struct F(u64, &'static str, Ty);

const OWNER_REF: &[F] = &[
    F(1, "kind", Ty::Str),
    F(3, "name", Ty::Str),
    F(4, "uid", Ty::Str),
    F(5, "apiVersion", Ty::Str),
    F(6, "controller", Ty::Bool),
    F(7, "blockOwnerDeletion", Ty::Bool),
];

const META: &[F] = &[
    F(1, "name", Ty::Str),
    F(2, "generateName", Ty::Str),
    F(3, "namespace", Ty::Str),
    F(5, "uid", Ty::Str),
    F(6, "resourceVersion", Ty::Str),
    F(7, "generation", Ty::Int),
    F(11, "labels", Ty::MapStr),
    F(12, "annotations", Ty::MapStr),
    F(13, "ownerReferences", Ty::RepMsg(OWNER_REF)),
    F(14, "finalizers", Ty::RepStr),
];

const CONFIGMAP: &[F] = &[
    F(1, "metadata", Ty::Msg(META)),
    F(2, "data", Ty::MapStr),
    F(3, "binaryData", Ty::MapBytes),
    F(4, "immutable", Ty::Bool),
];

const SECRET: &[F] = &[
    F(1, "metadata", Ty::Msg(META)),
    F(2, "data", Ty::MapBytes),
    F(3, "type", Ty::Str),
    F(4, "stringData", Ty::MapStr),
    F(5, "immutable", Ty::Bool),
];

const NS_SPEC: &[F] = &[F(1, "finalizers", Ty::RepStr)];

const NAMESPACE: &[F] = &[
    F(1, "metadata", Ty::Msg(META)),
    F(2, "spec", Ty::Msg(NS_SPEC)),
];

const LOCAL_REF: &[F] = &[F(1, "name", Ty::Str)];

const OBJECT_REF: &[F] = &[
    F(1, "kind", Ty::Str),
    F(2, "namespace", Ty::Str),
    F(3, "name", Ty::Str),
    F(4, "uid", Ty::Str),
    F(5, "apiVersion", Ty::Str),
];

const SERVICE_ACCOUNT: &[F] = &[
    F(1, "metadata", Ty::Msg(META)),
    F(2, "secrets", Ty::RepMsg(OBJECT_REF)),
    F(3, "imagePullSecrets", Ty::RepMsg(LOCAL_REF)),
    F(4, "automountServiceAccountToken", Ty::Bool),
];

const RULE: &[F] = &[
    F(1, "verbs", Ty::RepStr),
    F(2, "apiGroups", Ty::RepStr),
    F(3, "resources", Ty::RepStr),
    F(4, "resourceNames", Ty::RepStr),
    F(5, "nonResourceURLs", Ty::RepStr),
];

const ROLE: &[F] = &[
    F(1, "metadata", Ty::Msg(META)),
    F(2, "rules", Ty::RepMsg(RULE)),
];

const SUBJECT: &[F] = &[
    F(1, "kind", Ty::Str),
    F(2, "apiGroup", Ty::Str),
    F(3, "name", Ty::Str),
    F(4, "namespace", Ty::Str),
];

const ROLE_REF: &[F] = &[
    F(1, "apiGroup", Ty::Str),
    F(2, "kind", Ty::Str),
    F(3, "name", Ty::Str),
];

const BINDING: &[F] = &[
    F(1, "metadata", Ty::Msg(META)),
    F(2, "subjects", Ty::RepMsg(SUBJECT)),
    F(3, "roleRef", Ty::Msg(ROLE_REF)),
];

const TYPE_META: &[F] = &[F(1, "apiVersion", Ty::Str), F(2, "kind", Ty::Str)];

const UNKNOWN: &[F] = &[
    F(1, "typeMeta", Ty::Msg(TYPE_META)),
    F(2, "raw", Ty::Bytes),
    F(4, "contentType", Ty::Str),
];

fn schema_for(kind: &str) -> Option<&'static [F]> {
    Some(match kind {
        "ConfigMap" => CONFIGMAP,
        "Secret" => SECRET,
        "Namespace" => NAMESPACE,
        "ServiceAccount" => SERVICE_ACCOUNT,
        "Role" | "ClusterRole" => ROLE,
        "RoleBinding" | "ClusterRoleBinding" => BINDING,
        _ => return None,
    })
}

struct Reader<'a> {
    b: &'a [u8],
    i: usize,
}

fn malformed() -> ApiError {
    ApiError::bad_request("the protobuf request body is malformed")
}

impl Reader<'_> {
    fn varint(&mut self) -> Result<u64, ApiError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.b.get(self.i).ok_or_else(malformed)?;
            self.i += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(malformed())
    }

    fn bytes(&mut self) -> Result<&[u8], ApiError> {
        let n = usize::try_from(self.varint()?).map_err(|_| malformed())?;
        let end = self.i.checked_add(n).ok_or_else(malformed)?;
        let s = self.b.get(self.i..end).ok_or_else(malformed)?;
        self.i = end;
        Ok(s)
    }

    fn skip(&mut self, wire: u64) -> Result<(), ApiError> {
        match wire {
            0 => {
                self.varint()?;
            }
            1 => self.i += 8,
            2 => {
                self.bytes()?;
            }
            5 => self.i += 4,
            _ => return Err(malformed()),
        }
        if self.i > self.b.len() {
            return Err(malformed());
        }
        Ok(())
    }
}

fn text(b: &[u8]) -> Result<String, ApiError> {
    String::from_utf8(b.to_vec()).map_err(|_| malformed())
}

fn map_entry(entry: &[u8], bytes_value: bool) -> Result<(String, Value), ApiError> {
    let mut r = Reader { b: entry, i: 0 };
    let (mut key, mut value) = (String::new(), Value::String(String::new()));
    while r.i < r.b.len() {
        let tag = r.varint()?;
        match (tag >> 3, tag & 7) {
            (1, 2) => key = text(r.bytes()?)?,
            (2, 2) => {
                let raw = r.bytes()?;
                value = if bytes_value {
                    json!(base64::engine::general_purpose::STANDARD.encode(raw))
                } else {
                    json!(text(raw)?)
                };
            }
            (_, wire) => r.skip(wire)?,
        }
    }
    Ok((key, value))
}

fn decode_msg(b: &[u8], fields: &[F]) -> Result<Map<String, Value>, ApiError> {
    let mut r = Reader { b, i: 0 };
    let mut out = Map::new();
    while r.i < r.b.len() {
        let tag = r.varint()?;
        let (num, wire) = (tag >> 3, tag & 7);
        let Some(F(_, name, ty)) = fields.iter().find(|f| f.0 == num) else {
            r.skip(wire)?;
            continue;
        };
        let name = (*name).to_string();
        match (*ty, wire) {
            (Ty::Str, 2) => {
                // Go writes empty strings; JSON clients omit them.
                let t = text(r.bytes()?)?;
                if !t.is_empty() {
                    out.insert(name, json!(t));
                }
            }
            (Ty::Bytes, 2) => {
                out.insert(
                    name,
                    json!(base64::engine::general_purpose::STANDARD.encode(r.bytes()?)),
                );
            }
            (Ty::Bool, 0) => {
                out.insert(name, json!(r.varint()? != 0));
            }
            (Ty::Int, 0) => {
                #[allow(clippy::cast_possible_wrap)]
                let n = r.varint()? as i64;
                if n != 0 {
                    out.insert(name, json!(n));
                }
            }
            (Ty::Msg(sub), 2) => {
                let m = decode_msg(r.bytes()?, sub)?;
                out.insert(name, Value::Object(m));
            }
            (Ty::MapStr | Ty::MapBytes, 2) => {
                let (k, v) = map_entry(r.bytes()?, matches!(ty, Ty::MapBytes))?;
                if let Some(m) = out
                    .entry(name)
                    .or_insert_with(|| Value::Object(Map::new()))
                    .as_object_mut()
                {
                    m.insert(k, v);
                }
            }
            (Ty::RepStr, 2) => {
                let s = text(r.bytes()?)?;
                if let Some(a) = out
                    .entry(name)
                    .or_insert_with(|| Value::Array(Vec::new()))
                    .as_array_mut()
                {
                    a.push(json!(s));
                }
            }
            (Ty::RepMsg(sub), 2) => {
                let m = decode_msg(r.bytes()?, sub)?;
                if let Some(a) = out
                    .entry(name)
                    .or_insert_with(|| Value::Array(Vec::new()))
                    .as_array_mut()
                {
                    a.push(Value::Object(m));
                }
            }
            (_, w) => r.skip(w)?,
        }
    }
    Ok(out)
}

/// Decodes a `k8s\0`-prefixed protobuf body into the JSON form of the object.
pub fn decode(body: &[u8]) -> Result<Value, ApiError> {
    let inner = body
        .strip_prefix(b"k8s\0")
        .ok_or_else(|| ApiError::bad_request("the protobuf body lacks the k8s envelope prefix"))?;
    let unknown = decode_msg(inner, UNKNOWN)?;
    let api_version = unknown["typeMeta"]["apiVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let kind = unknown["typeMeta"]["kind"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let Some(schema) = schema_for(&kind) else {
        return Err(ApiError::unsupported_media(&format!(
            "application/vnd.kubernetes.protobuf (kind {kind:?})"
        )));
    };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(unknown["raw"].as_str().unwrap_or_default())
        .map_err(|_| malformed())?;
    let mut obj = decode_msg(&raw, schema)?;
    obj.insert("apiVersion".into(), json!(api_version));
    obj.insert("kind".into(), json!(kind));
    Ok(Value::Object(obj))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(num: u64, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![u8::try_from((num << 3) | 2).unwrap()];
        v.push(u8::try_from(payload.len()).unwrap());
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn decodes_a_configmap_envelope() {
        let meta = [
            field(1, b"cm"),
            field(11, &[field(1, b"a"), field(2, b"b")].concat()),
        ]
        .concat();
        let cm = [
            field(1, &meta),
            field(2, &[field(1, b"k"), field(2, b"v")].concat()),
        ]
        .concat();
        let tm = [field(1, b"v1"), field(2, b"ConfigMap")].concat();
        let unknown = [field(1, &tm), field(2, &cm)].concat();
        let body = [b"k8s\0".as_slice(), &unknown].concat();
        let v = decode(&body).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "cm", "labels": {"a": "b"}}, "data": {"k": "v"}})
        );
        assert!(decode(b"k8s\0\x0a\xff").is_err());
    }
}
