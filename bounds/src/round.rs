//! Directed rounding and Higham's γ_k (THEORY §3, "Rounding of the allowances themselves").
//!
//! The `*_up` / `*_down` functions return a float that is ≥ / ≤ the exact real result of the
//! operation on the given floats. They are *exact* directed roundings for `+ − × ÷ √` in the
//! normal range: the round-to-nearest result is moved by one ulp only when the error term
//! (computed exactly with two-sum or a fused multiply–add) has the wrong sign, so exact results
//! such as 0.5·1 stay exact. Near underflow they step one ulp unconditionally.
//!
//! Infinities pass through unchanged (a vacuous bound stays vacuous), and a zero factor makes a
//! product zero even when the other factor is infinite (0·∞ := 0: a vacuous term with zero weight).
//! [`pow_up`] / [`pow_down`] use libm `powf` for fractional exponents and therefore rest on the
//! libm hypothesis (relative error ≤ 2u), for which they add a 4u allowance.

/// Unit roundoff of f64, u = 2⁻⁵³.
pub const UNIT_ROUNDOFF: f64 = f64::EPSILON / 2.0;

/// Below this magnitude a result may be subnormal and the error-free transforms are not exact.
const TINY: f64 = f64::MIN_POSITIVE * 9007199254740992.0; // 2^-1022 · 2^53

/// Higham's γ_k = k·u / (1 − k·u), rounded up: the relative error bound of a length-k sum or
/// dot product (THEORY §3). +∞ when k·u ≥ 1.
///
/// ```
/// use flatcert_bounds::round::{gamma, UNIT_ROUNDOFF};
/// assert!(gamma(10) > 10.0 * UNIT_ROUNDOFF);
/// assert!(gamma(usize::MAX).is_infinite());
/// ```
pub fn gamma(k: usize) -> f64 {
    let ku = k as f64 * UNIT_ROUNDOFF;
    if ku >= 1.0 {
        f64::INFINITY
    } else {
        div_up(ku.next_up(), sub_down(1.0, ku.next_up()))
    }
}

/// One ulp towards +∞ (identity on ±∞ and NaN; unlike `f64::next_up`, −∞ stays −∞). Not to be
/// confused with `flatcert::quantity::round_up`, which pads a computed value by a relative 2u.
pub fn ulp_up(x: f64) -> f64 {
    if x.is_finite() { x.next_up() } else { x }
}

/// One ulp towards −∞ (identity on ±∞ and NaN; +∞ stays +∞).
pub fn ulp_down(x: f64) -> f64 {
    if x.is_finite() { x.next_down() } else { x }
}

/// Direction of a rounding.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Dir {
    Up,
    Down,
}

/// Move the round-to-nearest result `r` one ulp in direction `dir` when the exact result lies
/// beyond it, i.e. when `err` (exact result − r, or a quantity with its sign) points that way.
fn fix(r: f64, err: f64, dir: Dir) -> f64 {
    match dir {
        Dir::Up if err > 0.0 => r.next_up(),
        Dir::Down if err < 0.0 => r.next_down(),
        _ => r,
    }
}

/// Overflow of an operation on finite operands: ±∞ is a valid bound on one side only.
fn overflow(r: f64, dir: Dir) -> f64 {
    match dir {
        Dir::Up if r < 0.0 => -f64::MAX,
        Dir::Down if r > 0.0 => f64::MAX,
        _ => r,
    }
}

/// Conservative step for results that may have lost precision to underflow.
fn tiny(r: f64, dir: Dir) -> f64 {
    match dir {
        Dir::Up => r.next_up(),
        Dir::Down => r.next_down(),
    }
}

fn add_dir(a: f64, b: f64, dir: Dir) -> f64 {
    let s = a + b;
    if !a.is_finite() || !b.is_finite() {
        return s;
    }
    if !s.is_finite() {
        return overflow(s, dir);
    }
    // Knuth's two-sum: err = (a + b) − s exactly.
    let bb = s - a;
    let err = (a - (s - bb)) + (b - bb);
    fix(s, err, dir)
}

fn mul_dir(a: f64, b: f64, dir: Dir) -> f64 {
    if a == 0.0 || b == 0.0 {
        return 0.0;
    }
    let p = a * b;
    if !a.is_finite() || !b.is_finite() {
        return p;
    }
    if !p.is_finite() {
        return overflow(p, dir);
    }
    if p.abs() < TINY {
        return tiny(p, dir);
    }
    fix(p, a.mul_add(b, -p), dir)
}

fn div_dir(a: f64, b: f64, dir: Dir) -> f64 {
    if a == 0.0 && b != 0.0 && !b.is_nan() {
        return 0.0;
    }
    let r = a / b;
    if !a.is_finite() || !b.is_finite() || b == 0.0 {
        return r;
    }
    if !r.is_finite() {
        return overflow(r, dir);
    }
    if r.abs() < TINY || b.abs() < TINY {
        return tiny(r, dir);
    }
    // a − r·b exactly; the exact quotient exceeds r iff the residual has the sign of b.
    let res = (-r).mul_add(b, a);
    fix(r, if b > 0.0 { res } else { -res }, dir)
}

fn sqrt_dir(a: f64, dir: Dir) -> f64 {
    let r = a.sqrt();
    if a.is_nan() || a <= 0.0 || !a.is_finite() {
        return r;
    }
    if a < TINY {
        return tiny(r, dir);
    }
    fix(r, (-r).mul_add(r, a), dir)
}

/// a + b rounded towards +∞.
pub fn add_up(a: f64, b: f64) -> f64 {
    add_dir(a, b, Dir::Up)
}
/// a + b rounded towards −∞.
pub fn add_down(a: f64, b: f64) -> f64 {
    add_dir(a, b, Dir::Down)
}
/// a − b rounded towards +∞.
pub fn sub_up(a: f64, b: f64) -> f64 {
    add_dir(a, -b, Dir::Up)
}
/// a − b rounded towards −∞.
pub fn sub_down(a: f64, b: f64) -> f64 {
    add_dir(a, -b, Dir::Down)
}
/// a · b rounded towards +∞ (0·∞ := 0).
pub fn mul_up(a: f64, b: f64) -> f64 {
    mul_dir(a, b, Dir::Up)
}
/// a · b rounded towards −∞ (0·∞ := 0).
pub fn mul_down(a: f64, b: f64) -> f64 {
    mul_dir(a, b, Dir::Down)
}
/// a / b rounded towards +∞ (x/0 = ±∞ for x ≠ 0; 0/b = 0 for b ≠ 0).
pub fn div_up(a: f64, b: f64) -> f64 {
    div_dir(a, b, Dir::Up)
}
/// a / b rounded towards −∞.
pub fn div_down(a: f64, b: f64) -> f64 {
    div_dir(a, b, Dir::Down)
}
/// √a rounded towards +∞.
pub fn sqrt_up(a: f64) -> f64 {
    sqrt_dir(a, Dir::Up)
}
/// √a rounded towards −∞.
pub fn sqrt_down(a: f64) -> f64 {
    sqrt_dir(a, Dir::Down)
}

fn pow_dir(a: f64, e: f64, dir: Dir) -> f64 {
    let (mul, div, sqrt) = match dir {
        Dir::Up => (
            mul_up as fn(f64, f64) -> f64,
            div_up as fn(f64, f64) -> f64,
            sqrt_up as fn(f64) -> f64,
        ),
        Dir::Down => (
            mul_down as fn(f64, f64) -> f64,
            div_down as fn(f64, f64) -> f64,
            sqrt_down as fn(f64) -> f64,
        ),
    };
    let flip = match dir {
        Dir::Up => Dir::Down,
        Dir::Down => Dir::Up,
    };
    if e == 0.0 {
        return 1.0;
    }
    if e < 0.0 {
        // a^e = 1 / a^|e|: round the denominator the other way.
        return div(1.0, pow_dir(a, -e, flip));
    }
    if e == 0.5 {
        return sqrt(a);
    }
    if e == 0.25 {
        // √ is monotone: directed √ of a directed √ stays on the right side.
        return sqrt(sqrt(a));
    }
    if e.fract() == 0.0 && e <= 64.0 {
        // Repeated directed multiplication (exact rounding of each step); a ≥ 0 expected.
        let mut acc = 1.0;
        for _ in 0..(e as u32) {
            acc = mul(acc, a);
        }
        return acc;
    }
    let r = a.powf(e);
    if r == 0.0 || !r.is_finite() {
        return match (dir, r == 0.0) {
            (Dir::Up, true) if a > 0.0 => f64::from_bits(1),
            _ => r,
        };
    }
    // libm hypothesis: relative error ≤ 2u; allow 4u and one more ulp.
    let allowance = 4.0 * UNIT_ROUNDOFF;
    match dir {
        Dir::Up => mul_up(r, 1.0 + allowance).next_up(),
        Dir::Down => mul_down(r, 1.0 - allowance).next_down(),
    }
}

/// a^e for a ≥ 0 rounded towards +∞. Integer exponents ≤ 64 and e = ½, ¼ are computed with exact
/// directed steps; other exponents use libm `powf` with a 4u allowance (libm hypothesis).
pub fn pow_up(a: f64, e: f64) -> f64 {
    pow_dir(a, e, Dir::Up)
}

/// a^e for a ≥ 0 rounded towards −∞ (see [`pow_up`]).
pub fn pow_down(a: f64, e: f64) -> f64 {
    pow_dir(a, e, Dir::Down)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exact rational check through integers: 1/3 rounded both ways brackets 1/3.
    #[test]
    fn division_brackets_one_third() {
        let lo = div_down(1.0, 3.0);
        let hi = div_up(1.0, 3.0);
        assert!(lo < hi);
        assert_eq!(hi, lo.next_up());
        // 3·lo < 1 < 3·hi in exact arithmetic: check with fma residuals.
        assert!(3.0f64.mul_add(lo, -1.0) < 0.0);
        assert!(3.0f64.mul_add(hi, -1.0) > 0.0);
    }

    #[test]
    fn exact_operations_stay_exact() {
        assert_eq!(mul_up(0.5, 1.0), 0.5);
        assert_eq!(mul_down(0.5, 1.0), 0.5);
        assert_eq!(add_up(1.0, 2.0), 3.0);
        assert_eq!(div_up(1.0, 4.0), 0.25);
        assert_eq!(sqrt_up(4.0), 2.0);
        assert_eq!(sqrt_down(4.0), 2.0);
        assert_eq!(pow_up(3.0, 2.0), 9.0);
    }

    #[test]
    fn inexact_operations_bracket() {
        let cases = [(0.1, 0.2), (1e16, 1.0), (-3.7, 1e-9), (7.0, -0.3)];
        for (a, b) in cases {
            assert!(add_down(a, b) <= a + b && a + b <= add_up(a, b));
            assert!(add_up(a, b) - add_down(a, b) <= 2.0 * (a + b).abs() * f64::EPSILON);
            assert!(mul_down(a, b) <= mul_up(a, b));
            assert!(div_down(a, b) <= div_up(a, b));
        }
        let s2 = sqrt_up(2.0);
        assert!(s2.mul_add(s2, -2.0) > 0.0);
        let s2 = sqrt_down(2.0);
        assert!(s2.mul_add(s2, -2.0) < 0.0);
    }

    #[test]
    fn infinities_and_zeros() {
        assert_eq!(mul_up(0.0, f64::INFINITY), 0.0);
        assert_eq!(div_up(2.0, 0.0), f64::INFINITY);
        assert_eq!(div_down(2.0, 0.0), f64::INFINITY);
        assert_eq!(ulp_up(f64::INFINITY), f64::INFINITY);
        assert_eq!(ulp_up(f64::NEG_INFINITY), f64::NEG_INFINITY);
        assert_eq!(ulp_down(f64::INFINITY), f64::INFINITY);
        assert_eq!(ulp_up(1.0), 1.0f64.next_up());
        assert_eq!(ulp_down(1.0), 1.0f64.next_down());
        assert_eq!(add_up(f64::MAX, f64::MAX), f64::INFINITY);
        assert_eq!(add_down(f64::MAX, f64::MAX), f64::MAX);
        assert_eq!(pow_up(0.0, -0.5), f64::INFINITY);
    }

    #[test]
    fn fractional_powers_bracket() {
        for &(a, e) in &[(3.0, -0.25), (0.37, 0.125), (12.5, 1.0 / 3.0)] {
            let r = f64::powf(a, e);
            assert!(pow_down(a, e) < r && r < pow_up(a, e));
        }
        assert!(gamma(3) > 3.0 * UNIT_ROUNDOFF);
    }
}
