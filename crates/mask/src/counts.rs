use std::sync::Arc;

use crate::config::DetectorKind;

pub(crate) const COLUMN_RULE: usize = 15;
pub(crate) const UNCHECKED: usize = 16;
const NSLOTS: usize = 17;

/// How many values of each kind were masked. Counts only: this is what goes
/// into the audit event, so it never holds a value.
///
/// Labels: the detector names (`card`, `email`, ...), custom detector names,
/// `column_rule` (values masked whole by a column rule) and `unchecked`
/// (values masked whole because they could not be checked).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MaskCounts {
    slots: [u64; NSLOTS],
    custom: Vec<(Arc<str>, u64)>,
}

impl MaskCounts {
    pub(crate) fn bump_slot(&mut self, slot: usize) {
        self.slots[slot] += 1;
    }

    pub(crate) fn bump_custom(&mut self, name: &Arc<str>) {
        match self.custom.iter_mut().find(|(n, _)| n == name) {
            Some((_, c)) => *c += 1,
            None => self.custom.push((name.clone(), 1)),
        }
    }

    pub fn get(&self, label: &str) -> u64 {
        self.iter().find(|(l, _)| *l == label).map_or(0, |(_, c)| c)
    }

    pub fn detector(&self, kind: DetectorKind) -> u64 {
        self.slots[kind.index()]
    }

    pub fn total(&self) -> u64 {
        self.slots.iter().sum::<u64>() + self.custom.iter().map(|(_, c)| c).sum::<u64>()
    }

    pub fn is_empty(&self) -> bool {
        self.total() == 0
    }

    /// Non-zero counts as (label, count).
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> + '_ {
        let builtin = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, c)| {
                let label = match i {
                    COLUMN_RULE => "column_rule",
                    UNCHECKED => "unchecked",
                    _ => DetectorKind::ALL[i].as_str(),
                };
                (label, *c)
            });
        builtin.chain(
            self.custom
                .iter()
                .filter(|(_, c)| *c > 0)
                .map(|(n, c)| (&**n, *c)),
        )
    }

    pub fn merge(&mut self, other: &MaskCounts) {
        for (a, b) in self.slots.iter_mut().zip(other.slots.iter()) {
            *a += b;
        }
        for (n, c) in &other.custom {
            match self.custom.iter_mut().find(|(m, _)| m == n) {
                Some((_, x)) => *x += c,
                None => self.custom.push((n.clone(), *c)),
            }
        }
    }
}

impl serde::Serialize for MaskCounts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}
