//! JSON representation of floats that may be infinite.
//!
//! JSON has no infinities, and the certificate requires every float to be finite. A vacuous bound
//! (p = 0, r = 0, min‖x‖ = 0, …) is +∞, and a one-sided margin can be −∞. We serialize finite
//! floats as JSON numbers and the two infinities as the strings `"+inf"` and `"-inf"`; NaN is a
//! serialization error (it never represents a valid result). Deserialization accepts numbers,
//! `"+inf"`, `"inf"`, `"-inf"` and `null` (read as NaN, so that validation rejects it).

use serde::{Deserialize, Deserializer, Serializer, ser::Error as _};

#[derive(Deserialize)]
#[serde(untagged)]
enum Repr {
    Num(f64),
    Text(String),
    Null(()),
}

fn from_repr<E: serde::de::Error>(r: Repr) -> Result<f64, E> {
    match r {
        Repr::Num(x) => Ok(x),
        Repr::Text(s) => match s.as_str() {
            "+inf" | "inf" | "Infinity" => Ok(f64::INFINITY),
            "-inf" | "-Infinity" => Ok(f64::NEG_INFINITY),
            other => Err(E::custom(format!(
                "expected a number, \"+inf\" or \"-inf\", got {other:?}"
            ))),
        },
        Repr::Null(()) => Ok(f64::NAN),
    }
}

/// `#[serde(with = "ext_f64")]` for an `f64` field.
pub(crate) mod ext_f64 {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
        if x.is_finite() {
            s.serialize_f64(*x)
        } else if x.is_nan() {
            Err(S::Error::custom(
                "NaN cannot be serialized in a flatcert verdict",
            ))
        } else if *x > 0.0 {
            s.serialize_str("+inf")
        } else {
            s.serialize_str("-inf")
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        from_repr(Repr::deserialize(d)?)
    }
}

/// `#[serde(with = "ext_f64_opt")]` for an `Option<f64>` field.
pub(crate) mod ext_f64_opt {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(x: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        match x {
            Some(v) => ext_f64::serialize(v, s),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        match Option::<Repr>::deserialize(d)? {
            None | Some(Repr::Null(())) => Ok(None),
            Some(r) => from_repr(r).map(Some),
        }
    }
}
