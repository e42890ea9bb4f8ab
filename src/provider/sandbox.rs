//! Sandbox provider server (stub, being written).
