//! The verdicts of a certificate or a bound report: one entry per theorem, keyed `"T1"` … `"T10"`
//! and `"Min"` in report order, each the bounds crate's verdict or the reason it was not computed
//! (`docs/certificate.md`). Shared by [`super::certificate`] (the document) and
//! [`super::summary`] (the overall status), which depend on this module and not on each other.

use std::collections::BTreeMap;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use flatcert_bounds::Verdict;

/// The theorem ids in report order.
/// `"Min"` (θ* is a minimum: λ_min(H) ≥ 0, `flatcert_bounds::minimum`) sits next to T4, whose
/// failure mode it is.
pub const THEOREMS: [&str; 11] = [
    "T1", "T2", "T3", "T4", "Min", "T5", "T6", "T7", "T8", "T9", "T10",
];

/// One entry of `verdicts`: the bounds crate's verdict, or the reason it could not be computed.
#[derive(Debug, Clone, PartialEq)]
pub enum VerdictEntry {
    /// The theorem was evaluated.
    Computed(Box<Verdict>),
    /// It could not be: `{"theorem": "T5", "not_computed": "needs the Gram path (…)"}`.
    NotComputed(String),
}

impl VerdictEntry {
    /// The verdict, if computed.
    pub fn verdict(&self) -> Option<&Verdict> {
        match self {
            VerdictEntry::Computed(v) => Some(v),
            VerdictEntry::NotComputed(_) => None,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct NotComputedRepr {
    theorem: String,
    not_computed: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum EntryRepr {
    NotComputed(NotComputedRepr),
    Computed(Box<Verdict>),
}

/// The verdicts keyed `"T1"` … `"T10"`, serialized as a JSON object in theorem order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Verdicts(pub Vec<(String, VerdictEntry)>);

impl Verdicts {
    /// The entry of theorem `id`.
    pub fn get(&self, id: &str) -> Option<&VerdictEntry> {
        self.0.iter().find(|(k, _)| k == id).map(|(_, v)| v)
    }

    /// The verdict of theorem `id`, if computed.
    pub fn verdict(&self, id: &str) -> Option<&Verdict> {
        self.get(id).and_then(VerdictEntry::verdict)
    }

    /// Insert or replace, keeping theorem order.
    pub fn set(&mut self, id: &str, entry: VerdictEntry) {
        if let Some(slot) = self.0.iter_mut().find(|(k, _)| k == id) {
            slot.1 = entry;
        } else {
            self.0.push((id.to_string(), entry));
            self.0.sort_by_key(|(k, _)| theorem_rank(k));
        }
    }

    /// Iterate in theorem order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &VerdictEntry)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }
}

/// Position of a theorem id in [`THEOREMS`] (unknown ids last).
pub fn theorem_rank(id: &str) -> usize {
    THEOREMS
        .iter()
        .position(|t| *t == id)
        .unwrap_or(THEOREMS.len())
}

impl Serialize for Verdicts {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            match v {
                VerdictEntry::Computed(v) => m.serialize_entry(k, v)?,
                VerdictEntry::NotComputed(reason) => m.serialize_entry(
                    k,
                    &NotComputedRepr {
                        theorem: k.clone(),
                        not_computed: reason.clone(),
                    },
                )?,
            }
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for Verdicts {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let raw: BTreeMap<String, EntryRepr> = BTreeMap::deserialize(d)?;
        let mut out = Vec::new();
        for (k, v) in raw {
            if theorem_rank(&k) == THEOREMS.len() {
                return Err(D::Error::custom(format!(
                    "unknown theorem id '{k}' (expected T1 … T10 or Min)"
                )));
            }
            let entry = match v {
                EntryRepr::NotComputed(n) => VerdictEntry::NotComputed(n.not_computed),
                EntryRepr::Computed(v) => {
                    if v.theorem != k {
                        return Err(D::Error::custom(format!(
                            "verdict under key '{k}' is for theorem '{}'",
                            v.theorem
                        )));
                    }
                    VerdictEntry::Computed(v)
                }
            };
            out.push((k, entry));
        }
        out.sort_by_key(|(k, _)| theorem_rank(k));
        Ok(Verdicts(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_serialize_in_theorem_order_and_round_trip() {
        let mut v = Verdicts::default();
        v.set("T10", VerdictEntry::NotComputed("needs --epsilon".into()));
        v.set(
            "T2",
            VerdictEntry::Computed(Box::new(Verdict::new("T2", "x"))),
        );
        v.set("T1", VerdictEntry::NotComputed("r".into()));
        let json = serde_json::to_string(&v).unwrap();
        let t1 = json.find("\"T1\"").unwrap();
        let t2 = json.find("\"T2\"").unwrap();
        let t10 = json.find("\"T10\"").unwrap();
        assert!(t1 < t2 && t2 < t10, "{json}");
        assert!(json.contains("\"not_computed\":\"needs --epsilon\""));
        let back: Verdicts = serde_json::from_str(&json).unwrap();
        assert_eq!(back, v);
        assert!(
            serde_json::from_str::<Verdicts>(
                "{\"T11\": {\"theorem\": \"T11\", \"not_computed\": \"x\"}}"
            )
            .is_err()
        );
    }
}
