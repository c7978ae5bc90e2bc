//! Conditions as the Kubernetes API conventions want them: one per type, CamelCase
//! reason, `observedGeneration`, and a transition time that moves only when the status
//! does.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl ConditionStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        }
    }
}

/// Sets the condition of `type_`, keeping its transition time when the status holds.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: ConditionStatus,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    now: Time,
) {
    let status = status.as_str().to_owned();
    let last_transition_time = match conditions.iter().find(|c| c.type_ == type_) {
        Some(existing) if existing.status == status => existing.last_transition_time.clone(),
        _ => now,
    };
    let condition = Condition {
        type_: type_.to_owned(),
        status,
        reason: reason.to_owned(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time,
    };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(existing) => *existing = condition,
        None => conditions.push(condition),
    }
}

/// Test helper: the condition of `type_` in a status patch's JSON (`Null` if absent).
#[cfg(test)]
pub(crate) fn condition_in_patch<'a>(
    patch: &'a serde_json::Value,
    type_: &str,
) -> &'a serde_json::Value {
    patch["status"]["conditions"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["type"] == type_))
        .unwrap_or(&serde_json::Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(seconds: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(seconds).expect("valid time"))
    }

    #[test]
    fn the_transition_time_moves_only_with_the_status() {
        let mut conditions = Vec::new();
        set_condition(
            &mut conditions,
            "Ready",
            ConditionStatus::False,
            "Starting",
            "",
            Some(1),
            time(10),
        );
        set_condition(
            &mut conditions,
            "Ready",
            ConditionStatus::False,
            "Starting",
            "still",
            Some(2),
            time(20),
        );
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].last_transition_time, time(10));
        assert_eq!(conditions[0].observed_generation, Some(2));
        set_condition(
            &mut conditions,
            "Ready",
            ConditionStatus::True,
            "Serving",
            "",
            Some(2),
            time(30),
        );
        assert_eq!(conditions[0].last_transition_time, time(30));
        set_condition(
            &mut conditions,
            "Draining",
            ConditionStatus::False,
            "NotDraining",
            "",
            Some(2),
            time(30),
        );
        assert_eq!(conditions.len(), 2);
    }
}
