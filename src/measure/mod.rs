//! Measurements of a checkpoint on its data, one module per quantity (DESIGN.md §2). Each
//! returns [`crate::Quantity`] values that say whether they are exact, bounds or estimates.
