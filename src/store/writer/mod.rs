//! The writer: one thread, one connection, row transitions applied in
//! batched transactions. `ops` says what each write does in SQL, `claim`
//! the claim of a row (quota, deadline, frequency cap) and what gives it
//! back, `tally` the day's quota within a batch, `result` what a write did,
//! `thread` runs it all.

mod claim;
mod group;
mod ops;
mod result;
mod tally;
mod thread;

pub use group::GroupWriter;
pub use ops::{Setback, WriteOp};
pub use result::WriteResult;
pub use thread::Writer;

#[cfg(test)]
mod tests;
