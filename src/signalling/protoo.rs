//! protoo messages (protoo 4.x): requests, responses and notifications as JSON text frames.

use serde_json::{json, Map, Value};

/// A message received from a client.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    Request {
        id: u64,
        method: String,
        data: Value,
    },
    Response {
        id: u64,
        result: Result<Value, ProtooError>,
    },
    Notification {
        method: String,
        data: Value,
    },
}

/// An error response: protoo's `errorCode` and `errorReason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtooError {
    pub code: u16,
    pub reason: String,
}

impl ProtooError {
    /// What the demo server answers for a thrown error.
    pub fn internal(reason: impl Into<String>) -> Self {
        Self {
            code: 500,
            reason: reason.into(),
        }
    }

    pub fn forbidden(reason: impl Into<String>) -> Self {
        Self {
            code: 403,
            reason: reason.into(),
        }
    }

    pub fn bad_request(reason: impl Into<String>) -> Self {
        Self {
            code: 400,
            reason: reason.into(),
        }
    }
}

impl std::fmt::Display for ProtooError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code, self.reason)
    }
}

/// Why a frame could not be taken as a protoo message.
#[derive(Debug, Clone, PartialEq)]
pub enum ParseError {
    /// Not a protoo message at all (bad JSON, not an object, no kind flag, no usable id): protoo
    /// drops these; so do we, counting them.
    Invalid(String),
    /// A request with a usable id but a broken body: answered with an error response.
    BadRequest { id: u64, reason: String },
}

/// protoo ids are JSON numbers (protoo generates integers below 10^7); anything else is unusable.
fn id_of(object: &Map<String, Value>) -> Option<u64> {
    object.get("id").and_then(Value::as_u64)
}

/// protoo tests its flags for JavaScript truthiness (`if (object.request)`).
fn flag(object: &Map<String, Value>, key: &str) -> bool {
    match object.get(key) {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0 && !f.is_nan()),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(_)) | Some(Value::Object(_)) => true,
    }
}

/// Parses one text frame.
pub fn parse(text: &str) -> Result<Incoming, ParseError> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| ParseError::Invalid(format!("invalid JSON: {e}")))?;
    let Value::Object(mut object) = value else {
        return Err(ParseError::Invalid("not a JSON object".into()));
    };
    let data = match object.remove("data") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(v) => v,
    };
    if flag(&object, "request") {
        let id = id_of(&object)
            .ok_or_else(|| ParseError::Invalid("request without a numeric id".into()))?;
        let Some(method) = object.get("method").and_then(Value::as_str) else {
            return Err(ParseError::BadRequest {
                id,
                reason: "invalid request: method must be a string".into(),
            });
        };
        return Ok(Incoming::Request {
            id,
            method: method.to_string(),
            data,
        });
    }
    if flag(&object, "response") {
        let id = id_of(&object)
            .ok_or_else(|| ParseError::Invalid("response without a numeric id".into()))?;
        let result = if flag(&object, "ok") {
            Ok(data)
        } else {
            Err(ProtooError {
                code: object
                    .get("errorCode")
                    .and_then(Value::as_u64)
                    .map(|c| c.min(u16::MAX as u64) as u16)
                    .unwrap_or(500),
                reason: object
                    .get("errorReason")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            })
        };
        return Ok(Incoming::Response { id, result });
    }
    if flag(&object, "notification") {
        let method = object
            .get("method")
            .and_then(Value::as_str)
            .ok_or_else(|| ParseError::Invalid("notification without a method".into()))?;
        return Ok(Incoming::Notification {
            method: method.to_string(),
            data,
        });
    }
    Err(ParseError::Invalid(
        "neither request, response nor notification".into(),
    ))
}

pub fn request(id: u64, method: &str, data: &Value) -> String {
    json!({"request": true, "id": id, "method": method, "data": data}).to_string()
}

pub fn response(id: u64, result: &Result<Value, ProtooError>) -> String {
    match result {
        Ok(data) => json!({"response": true, "id": id, "ok": true, "data": data}).to_string(),
        Err(e) => json!({
            "response": true,
            "id": id,
            "ok": false,
            "errorCode": e.code,
            "errorReason": e.reason,
        })
        .to_string(),
    }
}

pub fn notification(method: &str, data: &Value) -> String {
    json!({"notification": true, "method": method, "data": data}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_kinds() {
        assert_eq!(
            parse(r#"{"request":true,"id":7726958,"method":"getRouterRtpCapabilities","data":{}}"#),
            Ok(Incoming::Request {
                id: 7726958,
                method: "getRouterRtpCapabilities".into(),
                data: json!({})
            })
        );
        assert_eq!(
            parse(r#"{"response":true,"id":3,"ok":true}"#),
            Ok(Incoming::Response {
                id: 3,
                result: Ok(json!({}))
            })
        );
        assert_eq!(
            parse(r#"{"response":true,"id":3,"ok":false,"errorCode":403,"errorReason":"no"}"#),
            Ok(Incoming::Response {
                id: 3,
                result: Err(ProtooError::forbidden("no"))
            })
        );
        assert!(matches!(
            parse(r#"{"request":1,"id":5,"method":"getRouterRtpCapabilities"}"#),
            Ok(Incoming::Request { id: 5, .. })
        ));
        assert_eq!(
            parse(r#"{"notification":true,"method":"x"}"#),
            Ok(Incoming::Notification {
                method: "x".into(),
                data: json!({})
            })
        );
    }

    #[test]
    fn rejects_what_protoo_rejects() {
        for bad in [
            "",
            "{",
            "[]",
            "42",
            r#"{"id":1,"method":"join"}"#,
            r#"{"request":true,"id":"1","method":"join"}"#,
            r#"{"request":true,"id":-1,"method":"join"}"#,
            r#"{"request":true,"id":1.5,"method":"join"}"#,
            r#"{"notification":true}"#,
            r#"{"request":0,"id":1,"method":"join"}"#,
            r#"{"request":"","id":1,"method":"join"}"#,
        ] {
            assert!(
                matches!(parse(bad), Err(ParseError::Invalid(_))),
                "{bad} should be invalid"
            );
        }
        assert_eq!(
            parse(r#"{"request":true,"id":5,"method":12}"#),
            Err(ParseError::BadRequest {
                id: 5,
                reason: "invalid request: method must be a string".into()
            })
        );
    }

    #[test]
    fn serialises_error_responses_with_code_and_reason() {
        let text = response(9, &Err(ProtooError::internal("boom")));
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v,
            json!({"response":true,"id":9,"ok":false,"errorCode":500,"errorReason":"boom"})
        );
    }
}
