//! Phone normalisation (stub, being written).
