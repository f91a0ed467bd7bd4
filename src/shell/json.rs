//! Reading octez-style JSON with errors that name the field (`current_block_header.level`).

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt::Display;
use std::rc::Rc;
use std::str::FromStr;

use bytes::Bytes;
use serde_json::Value;

use super::Timestamp;

/// Why a JSON value does not describe a message: the field's path and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct JsonError {
    /// Where: dotted field names and `[index]`, `$` for the whole value.
    pub path: String,
    /// What is wrong there.
    pub reason: String,
}

/// A JSON value and where it sits in the document (for error messages; the JSON side is
/// the command line's, never a hot path, so the path is a plain string).
///
/// Clones share the record of which fields were read, so that [`Json::reject_unknown`] on the
/// root, after a value was read from it, finds the fields nothing read (octez's JSON decoding
/// refuses unexpected fields too).
#[derive(Debug, Clone)]
pub struct Json<'a> {
    value: &'a Value,
    path: String,
    seen: Rc<RefCell<HashSet<String>>>,
}

impl<'a> Json<'a> {
    /// The whole document.
    pub fn root(value: &'a Value) -> Self {
        Self { value, path: String::new(), seen: Rc::default() }
    }

    /// Fails on the first object field, under this value, that no read asked for (a misspelt
    /// or unexpected field): call it once the value was read.
    pub fn reject_unknown(&self) -> Result<(), JsonError> {
        let seen = self.seen.borrow();
        fn walk(value: &Value, path: &str, seen: &HashSet<String>) -> Result<(), JsonError> {
            match value {
                Value::Object(fields) => {
                    for (name, v) in fields {
                        let p = if path.is_empty() { name.clone() } else { format!("{path}.{name}") };
                        if !seen.contains(&p) {
                            let at = if path.is_empty() { "$".to_owned() } else { path.to_owned() };
                            return Err(JsonError { path: at, reason: format!("unknown field `{name}`") });
                        }
                        walk(v, &p, seen)?;
                    }
                    Ok(())
                }
                Value::Array(items) => {
                    items.iter().enumerate().try_for_each(|(i, v)| walk(v, &format!("{path}[{i}]"), seen))
                }
                _ => Ok(()),
            }
        }
        walk(self.value, &self.path, &seen)
    }

    /// The underlying value.
    pub fn value(&self) -> &'a Value {
        self.value
    }

    /// The path of this value, e.g. `current_block_header.fitness[1]` (`$` for the whole).
    pub fn path(&self) -> String {
        if self.path.is_empty() {
            "$".into()
        } else {
            self.path.clone()
        }
    }

    /// An error about this value.
    pub fn error(&self, reason: impl Display) -> JsonError {
        JsonError { path: self.path(), reason: reason.to_string() }
    }

    fn child(&self, value: &'a Value, name: &str) -> Json<'a> {
        let path = if self.path.is_empty() { name.to_owned() } else { format!("{}.{name}", self.path) };
        self.seen.borrow_mut().insert(path.clone());
        Json { value, path, seen: self.seen.clone() }
    }

    /// A required field of an object.
    pub fn field(&self, name: &str) -> Result<Json<'a>, JsonError> {
        let obj = self.value.as_object().ok_or_else(|| self.error("expected an object"))?;
        match obj.get(name) {
            Some(v) => Ok(self.child(v, name)),
            None => Err(self.error(format!("missing field `{name}`"))),
        }
    }

    /// An optional field of an object (absent or `null`).
    pub fn optional(&self, name: &str) -> Option<Json<'a>> {
        // A `null` field is absent, but known (not an unexpected field).
        let v = self.value.get(name)?;
        let child = self.child(v, name);
        (!v.is_null()).then_some(child)
    }

    /// A string.
    pub fn str(&self) -> Result<&'a str, JsonError> {
        self.value.as_str().ok_or_else(|| self.error("expected a string"))
    }

    /// A string parsed with `FromStr` (hashes, peer ids, points).
    pub fn parse<T: FromStr>(&self) -> Result<T, JsonError>
    where
        T::Err: Display,
    {
        self.str()?.parse().map_err(|e| self.error(e))
    }

    fn int<T: TryFrom<i64>>(&self, what: &str) -> Result<T, JsonError> {
        let n = match self.value {
            Value::Number(n) => n.as_i64(),
            // octez prints 64-bit integers as strings.
            Value::String(s) => s.parse().ok(),
            _ => None,
        };
        n.and_then(|n| T::try_from(n).ok()).ok_or_else(|| self.error(format!("expected {what}")))
    }

    /// An `int8`.
    pub fn i8(&self) -> Result<i8, JsonError> {
        self.int("an int8 (-128 to 127)")
    }

    /// A `uint8`.
    pub fn u8(&self) -> Result<u8, JsonError> {
        self.int("a uint8 (0 to 255)")
    }

    /// A `uint16`.
    pub fn u16(&self) -> Result<u16, JsonError> {
        self.int("a uint16 (0 to 65535)")
    }

    /// An `int32`.
    pub fn i32(&self) -> Result<i32, JsonError> {
        self.int("an int32")
    }

    /// A boolean.
    pub fn bool(&self) -> Result<bool, JsonError> {
        self.value.as_bool().ok_or_else(|| self.error("expected true or false"))
    }

    /// Bytes as a hex string.
    pub fn hex(&self) -> Result<Bytes, JsonError> {
        hex::decode(self.str()?).map(Bytes::from).map_err(|e| self.error(format!("expected hex bytes: {e}")))
    }

    /// An octez `string` (UTF-8 text, or `{"invalid_utf8_string": [bytes]}` as data-encoding
    /// prints other bytes).
    pub fn string_bytes(&self) -> Result<Bytes, JsonError> {
        if let Some(s) = self.value.as_str() {
            return Ok(Bytes::copy_from_slice(s.as_bytes()));
        }
        let raw = self
            .value
            .get("invalid_utf8_string")
            .map(|v| self.child(v, "invalid_utf8_string"))
            .and_then(|j| j.value.as_array())
            .ok_or_else(|| self.error("expected a string"))?;
        raw.iter()
            .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
            .collect::<Option<Vec<u8>>>()
            .map(Bytes::from)
            .ok_or_else(|| self.error("invalid_utf8_string: expected bytes (0 to 255)"))
    }

    /// A timestamp: RFC 3339 or seconds (number or string).
    pub fn timestamp(&self) -> Result<Timestamp, JsonError> {
        match self.value {
            Value::Number(n) => n.as_i64().map(Timestamp),
            Value::String(s) => Timestamp::from_notation(s),
            _ => None,
        }
        .ok_or_else(|| self.error("expected an RFC 3339 date or a number of seconds"))
    }

    /// An array, each element read by `f`.
    pub fn list<T>(&self, mut f: impl FnMut(Json<'a>) -> Result<T, JsonError>) -> Result<Vec<T>, JsonError> {
        let items = self.value.as_array().ok_or_else(|| self.error("expected an array"))?;
        items
            .iter()
            .enumerate()
            .map(|(i, v)| f(Json { value: v, path: format!("{}[{i}]", self.path), seen: self.seen.clone() }))
            .collect()
    }
}

/// An octez `string` as data-encoding prints it: the text if it is UTF-8, else
/// `{"invalid_utf8_string": [bytes]}`.
pub fn string_to_json(s: &[u8]) -> Value {
    match std::str::from_utf8(s) {
        Ok(text) => Value::String(text.to_owned()),
        Err(_) => serde_json::json!({ "invalid_utf8_string": s }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_path() {
        let v: Value = serde_json::json!({"a": {"b": [1, "x"]}});
        let root = Json::root(&v);
        let a = root.field("a").unwrap();
        let b = a.field("b").unwrap();
        let e = b.list(|e| e.u8()).unwrap_err();
        assert_eq!(e.path, "a.b[1]");
        assert_eq!(root.field("z").unwrap_err().to_string(), "$: missing field `z`");
        assert_eq!(b.path(), "a.b");
        assert_eq!(string_to_json(b"ok"), "ok");
        let odd = string_to_json(&[0xff, 1]);
        assert_eq!(Json::root(&odd).string_bytes().unwrap(), Bytes::from_static(&[0xff, 1]));
    }

    #[test]
    fn fields_nothing_read_are_named() {
        let read = |r: &Json<'_>| r.field("a")?.field("b")?.list(|e| e.field("c")?.u8());
        let nested: Value = serde_json::json!({"a": {"b": [{"c": 1}, {"c": 2, "typo": 2}]}});
        let root = Json::root(&nested);
        assert_eq!(read(&root).unwrap(), vec![1, 2]);
        let e = root.reject_unknown().unwrap_err();
        assert_eq!((e.path.as_str(), e.reason.as_str()), ("a.b[1]", "unknown field `typo`"));
        let top: Value = serde_json::json!({"a": {"b": []}, "d": 3});
        let root = Json::root(&top);
        read(&root).unwrap();
        let e = root.reject_unknown().unwrap_err();
        assert_eq!((e.path.as_str(), e.reason.as_str()), ("$", "unknown field `d`"));
        // Read, it is known; a field read as optional and present too.
        root.optional("d").unwrap();
        root.reject_unknown().unwrap();
    }
}
