//! What a write did: shared by the claim (which settles or refuses a row)
//! and the writes around it, so neither needs the other for it.

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteResult {
    Done,
    /// `MarkInFlight` refused: the day's quota is used up.
    QuotaFull,
    /// The row is now `expired`: the campaign's deadline passed.
    Expired,
    /// The row is now `skipped`: its phone had a message too recently.
    Skipped,
    /// `MarkInFlight` refused: the claimer's lease on the campaign is not
    /// live (taken over, or lapsed); nothing was written.
    LeaseLost,
    /// `ExpireOpen`: how many rows expired.
    Count(u64),
}
