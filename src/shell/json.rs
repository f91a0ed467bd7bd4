//! Reading octez-style JSON with errors that name the field (`current_block_header.level`).

use std::fmt::Display;
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
#[derive(Debug, Clone)]
pub struct Json<'a> {
    value: &'a Value,
    path: String,
}

impl<'a> Json<'a> {
    /// The whole document.
    pub fn root(value: &'a Value) -> Self {
        Self { value, path: String::new() }
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
        Json { value, path }
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
        match self.value.get(name) {
            None | Some(Value::Null) => None,
            Some(v) => Some(self.child(v, name)),
        }
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
            .and_then(Value::as_array)
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
        items.iter().enumerate().map(|(i, v)| f(Json { value: v, path: format!("{}[{i}]", self.path) })).collect()
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
}
