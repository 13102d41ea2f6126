//! `Quality`: counts of records read and rules broken, stored beside the data.

use crate::__private::bindings::mysimbdp::ingest::types;
use std::collections::BTreeMap;
use std::fmt::Display;

/// Examples are shortened to this many characters so a bad multi-megabyte row stays small.
const EXAMPLE_CHARS: usize = 200;

/// Quality metadata a batch app returns for its file.
#[derive(Debug, Default, Clone)]
pub struct Quality {
    records_in: u64,
    records_bad: u64,
    violations: BTreeMap<String, (u64, Option<String>)>,
}

impl Quality {
    /// Count one record read.
    pub fn record(&mut self) {
        self.records_in += 1;
    }

    /// Count one record as bad because it broke `rule`; the first example of each rule is kept.
    pub fn bad(&mut self, rule: &str, example: impl Display) {
        self.records_bad += 1;
        let entry = self.violations.entry(rule.to_owned()).or_insert((0, None));
        entry.0 += 1;
        if entry.1.is_none() {
            entry.1 = Some(example.to_string().chars().take(EXAMPLE_CHARS).collect());
        }
    }

    /// Records read so far.
    pub fn records_in(&self) -> u64 {
        self.records_in
    }

    /// Records counted bad so far.
    pub fn records_bad(&self) -> u64 {
        self.records_bad
    }

    pub(crate) fn into_wit(self) -> types::Quality {
        types::Quality {
            records_in: self.records_in,
            records_bad: self.records_bad,
            violations: self
                .violations
                .into_iter()
                .map(|(rule, (count, example))| types::Violation {
                    rule,
                    count,
                    example,
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_rules_and_keeps_the_first_short_example() {
        let mut quality = Quality::default();
        for _ in 0..3 {
            quality.record();
        }
        quality.bad("bad-price", "x".repeat(1000));
        quality.bad("bad-price", "second");
        quality.bad("missing-field", "row 3");
        let wit = quality.into_wit();
        assert_eq!((wit.records_in, wit.records_bad), (3, 3));
        assert_eq!(wit.violations[0].rule, "bad-price");
        assert_eq!(wit.violations[0].count, 2);
        assert_eq!(
            wit.violations[0].example.as_ref().unwrap().len(),
            EXAMPLE_CHARS
        );
        assert_eq!(wit.violations[1].example.as_deref(), Some("row 3"));
    }
}
