//! A sent message's fees as the provider reports them.

use serde::Serialize;

/// The fees (VND) for one message: the message itself and the journey
/// token bought for it. Provider answers, lookups and report rows all
/// carry this pair; `None`: not reported (yet).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MessageFees {
    pub fee_main: Option<i64>,
    pub fee_token: Option<i64>,
}
