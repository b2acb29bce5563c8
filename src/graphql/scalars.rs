//! The `DateTime` scalar: RFC 3339 in UTC with a `Z`, e.g.
//! `2026-11-21T09:30:00Z`, the shape the contract promises.

use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};
use chrono::{SecondsFormat, Utc};

/// A point in time, always UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DateTime(pub chrono::DateTime<Utc>);

impl From<bson::DateTime> for DateTime {
    fn from(d: bson::DateTime) -> Self {
        DateTime(d.to_chrono())
    }
}

impl From<chrono::DateTime<Utc>> for DateTime {
    fn from(d: chrono::DateTime<Utc>) -> Self {
        DateTime(d)
    }
}

impl DateTime {
    pub fn to_rfc3339(&self) -> String {
        self.0.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    }
}

/// RFC 3339 date-time string in UTC, e.g. "2026-11-21T09:30:00Z".
#[Scalar(name = "DateTime")]
impl ScalarType for DateTime {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(s) => chrono::DateTime::parse_from_rfc3339(s)
                .map(|d| DateTime(d.with_timezone(&Utc)))
                .map_err(|_| InputValueError::custom("expected an RFC 3339 date-time")),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.to_rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_written_in_utc_with_a_z() {
        let d = DateTime::from(bson::DateTime::from_millis(1_795_254_600_000));
        assert_eq!(d.to_rfc3339(), "2026-11-21T09:50:00Z");
        let d = DateTime::from(bson::DateTime::from_millis(1_795_254_600_250));
        assert_eq!(d.to_rfc3339(), "2026-11-21T09:50:00.250Z");
    }

    #[test]
    fn offsets_are_converted_to_utc_on_input() {
        let d = <DateTime as ScalarType>::parse(Value::from("2026-11-21T10:50:00+01:00")).unwrap();
        assert_eq!(d.to_rfc3339(), "2026-11-21T09:50:00Z");
        assert!(<DateTime as ScalarType>::parse(Value::from("yesterday")).is_err());
    }
}
