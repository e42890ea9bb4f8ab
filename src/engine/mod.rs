//! What does the sending: the runner (claim, token, send, checkpoint),
//! delivery reconcile, the pace every provider caller keeps, the policy on
//! provider errors they all follow, and the stop flag. Below the campaign core; it knows nothing of a face.

pub mod policy;
pub mod reconcile;
pub mod retry;
pub mod runner;
pub mod stop;
pub mod test_send;
