//! Error bodies. Durable Functions answers errors with `{"Message": …, "ExceptionMessage": …}`;
//! the Python client reads `ExceptionMessage` on a 400 from start (spec §17). Never a stack trace.

use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ErrorBody {
    #[serde(rename = "Message")]
    pub message: String,
    #[serde(rename = "ExceptionMessage", skip_serializing_if = "Option::is_none")]
    pub exception_message: Option<String>,
    #[serde(rename = "ExceptionType", skip_serializing_if = "Option::is_none")]
    pub exception_type: Option<String>,
}

impl ErrorBody {
    /// A body with only `Message` (the shape some real paths use, e.g. "No such API").
    pub fn message(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            exception_message: None,
            exception_type: None,
        }
    }

    /// `Message` is the general sentence, `ExceptionMessage` says exactly what was wrong.
    pub fn new(message: impl Into<String>, exception_message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            exception_message: Some(exception_message.into()),
            exception_type: None,
        }
    }

    pub fn with_type(mut self, exception_type: impl Into<String>) -> Self {
        self.exception_type = Some(exception_type.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_pascal_case_and_optional_ones_omitted() {
        let body = ErrorBody::new("Bad", "Worse").with_type("System.ArgumentException");
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"Message":"Bad","ExceptionMessage":"Worse","ExceptionType":"System.ArgumentException"}"#
        );
        assert_eq!(
            serde_json::to_string(&ErrorBody::message("No such API")).unwrap(),
            r#"{"Message":"No such API"}"#
        );
    }
}
