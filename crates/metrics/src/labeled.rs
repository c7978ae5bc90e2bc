//! A counter per label value, for small bounded sets (reason codes).

use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct LabeledCounter(Mutex<BTreeMap<String, u64>>);

impl LabeledCounter {
    pub fn inc(&self, label: &str) {
        let mut counts = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match counts.get_mut(label) {
            Some(count) => *count += 1,
            None => {
                counts.insert(label.to_owned(), 1);
            }
        }
    }

    /// Every label seen, with its count, in label order.
    pub fn snapshot(&self) -> Vec<(String, u64)> {
        let counts = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        counts.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}
