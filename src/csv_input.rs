//! CSV reading (stub, being written).
