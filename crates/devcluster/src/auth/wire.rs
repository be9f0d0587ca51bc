//! Reading the protobuf form of an `authentication.k8s.io/v1` `TokenRequest`, which
//! kubectl (`kubectl create token`) and client-go send instead of JSON.

use serde_json::{Value, json};

/// A cursor over protobuf wire data.
struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.b.get(self.pos)?;
            self.pos += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.varint()?).ok()?;
        let end = self.pos.checked_add(n)?;
        let s = self.b.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    /// The next `(field number, wire type)`, or `None` at the end.
    fn key(&mut self) -> Option<(u64, u64)> {
        if self.pos >= self.b.len() {
            return None;
        }
        let k = self.varint()?;
        Some((k >> 3, k & 7))
    }

    fn skip(&mut self, wire: u64) -> Option<()> {
        match wire {
            0 => self.varint().map(|_| ()),
            1 => {
                self.pos = self.pos.checked_add(8)?;
                Some(())
            }
            2 => self.bytes().map(|_| ()),
            5 => {
                self.pos = self.pos.checked_add(4)?;
                Some(())
            }
            _ => None,
        }
    }

    /// Calls `f` for every field; stops with `None` on malformed data.
    fn fields(mut self, mut f: impl FnMut(u64, u64, &mut Self) -> Option<bool>) -> Option<()> {
        while let Some((num, wire)) = self.key() {
            if !f(num, wire, &mut self)? {
                self.skip(wire)?;
            }
        }
        Some(())
    }
}

fn reader(b: &[u8]) -> Reader<'_> {
    Reader { b, pos: 0 }
}

/// Decodes a `k8s\0`-prefixed protobuf `TokenRequest` into its JSON form (`spec.audiences`
/// and `spec.expirationSeconds`); `None` when the body is not one.
pub fn decode_token_request(body: &[u8]) -> Option<Value> {
    let inner = body.strip_prefix(b"k8s\0")?;
    let mut raw: Option<&[u8]> = None;
    let mut kind = String::new();
    reader(inner).fields(|num, wire, r| match (num, wire) {
        (1, 2) => {
            reader(r.bytes()?).fields(|n, w, t| match (n, w) {
                (2, 2) => {
                    kind = String::from_utf8(t.bytes()?.to_vec()).ok()?;
                    Some(true)
                }
                _ => Some(false),
            })?;
            Some(true)
        }
        (2, 2) => {
            raw = Some(r.bytes()?);
            Some(true)
        }
        _ => Some(false),
    })?;
    if kind != "TokenRequest" {
        return None;
    }
    let mut audiences: Vec<String> = Vec::new();
    let mut seconds: Option<u64> = None;
    reader(raw?).fields(|num, wire, r| match (num, wire) {
        (2, 2) => {
            reader(r.bytes()?).fields(|n, w, s| match (n, w) {
                (1, 2) => {
                    audiences.push(String::from_utf8(s.bytes()?.to_vec()).ok()?);
                    Some(true)
                }
                (4, 0) => {
                    seconds = Some(s.varint()?);
                    Some(true)
                }
                _ => Some(false),
            })?;
            Some(true)
        }
        _ => Some(false),
    })?;
    let mut spec = json!({ "audiences": audiences });
    if let Some(s) = seconds {
        spec["expirationSeconds"] = json!(s);
    }
    Some(json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": spec,
    }))
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
    fn decodes_audiences_and_expiry() {
        let mut spec = field(1, b"api");
        spec.extend(field(1, b"vault"));
        spec.extend([4 << 3, 0xa0, 0x1c]); // 3616
        let raw = field(2, &spec);
        let mut type_meta = field(1, b"authentication.k8s.io/v1");
        type_meta.extend(field(2, b"TokenRequest"));
        let mut unknown = field(1, &type_meta);
        unknown.extend(field(2, &raw));
        let mut body = b"k8s\0".to_vec();
        body.extend(unknown);
        let v = decode_token_request(&body).unwrap();
        assert_eq!(v["spec"]["audiences"], json!(["api", "vault"]));
        assert_eq!(v["spec"]["expirationSeconds"], json!(3616));
        assert!(decode_token_request(b"{}").is_none());
    }
}
