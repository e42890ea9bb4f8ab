//! What becomes of an accepted message: when it reaches the phone, and
//! whether it is opened. eTelecom's GetMessage, eSMS's status query and
//! every delivery callback tell the same story.

/// A message reaches the phone this long after it is sent (sandbox clock)…
pub(crate) const DELIVERY_DELAY: time::Duration = time::Duration::seconds(1);
/// …and every third one is opened this long after.
const SEEN_DELAY: time::Duration = time::Duration::seconds(5);

/// Delivery as GetMessage reports it, decided by the message's index and
/// the sandbox clock: one in ten is never delivered (phone off, Zalo never
/// opened) and stays `unknown`; the rest are `unknown` until delivered,
/// then `received`; every third of those turns `seen`.
pub(crate) fn delivery_of(n: usize, age: time::Duration) -> (&'static str, bool) {
    if n % 10 == 9 || age < DELIVERY_DELAY {
        ("unknown", false)
    } else if n % 3 == 2 && age >= SEEN_DELAY {
        ("seen", true)
    } else {
        ("received", true)
    }
}
