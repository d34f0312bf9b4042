//! Property-based suite on random networks: widths 1–16, depths 1–4, every
//! activation, random data. Case count from `PROPTEST_CASES` (CI sets a small one).

mod first_order;
mod net_curvature;
mod simulate;
mod sufficient;
