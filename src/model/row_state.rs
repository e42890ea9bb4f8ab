//! A row's states and the moves between them, in one table. The store
//! persists what this module decides: each write guards its UPDATE with the
//! source states of its move (so an illegal move changes nothing), and the
//! "open states" SQL comes from here. No crate imports: a leaf anyone can use.

use serde::Serialize;

/// Row states. Text in the database so it reads well in `sqlite3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RowState {
    Pending,
    TokenReady,
    InFlight,
    InDoubt,
    Sent,
    Failed,
    Rejected,
    /// Not sent: the campaign's deadline (`--not-after`) passed first.
    Expired,
    /// Not sent: the phone had a message from this OA within `--min-interval-per-phone`.
    Skipped,
}

use RowState::*;

/// Rows a run still has to do something about (`in_doubt` included: a
/// resume with `--in-doubt resend` takes them up again).
pub const OPEN_STATES: [RowState; 4] = [Pending, TokenReady, InFlight, InDoubt];

/// What happens to a row; each move has its legal sources and targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Move {
    /// A journey token was bought for the row.
    TokenBought,
    /// The row claimed its quota unit and its request may leave.
    Claimed,
    /// The provider has the message.
    Accepted,
    /// Nothing was accepted (429, refused connection, quota, stop): the row
    /// waits again, keeping its token if it has one.
    Refused,
    /// A permanent failure for this recipient.
    FailedForGood,
    /// The reply was lost; the row is held for an operator.
    Held,
    /// The campaign's deadline passed before the row was sent.
    DeadlinePassed,
    /// The phone had a message from this OA too recently.
    TooSoon,
    /// The import's last pass found the row's phone or tracking id on an
    /// earlier line: the row never becomes sendable.
    Repeated,
}

impl Move {
    pub const ALL: [Move; 9] = [
        Move::TokenBought,
        Move::Claimed,
        Move::Accepted,
        Move::Refused,
        Move::FailedForGood,
        Move::Held,
        Move::DeadlinePassed,
        Move::TooSoon,
        Move::Repeated,
    ];

    /// The transition table: every legal move, from where, to where.
    const fn entry(self) -> (&'static [RowState], &'static [RowState]) {
        match self {
            Move::TokenBought => (&[Pending], &[TokenReady]),
            Move::Claimed => (&OPEN_STATES, &[InFlight]),
            // A reply recorded after the deadline expired the row still tells the truth.
            Move::Accepted => (&[InFlight, InDoubt, Expired], &[Sent]),
            Move::Refused => (&OPEN_STATES, &[Pending, TokenReady]),
            Move::FailedForGood => (&OPEN_STATES, &[Failed]),
            Move::Held => (&[InFlight, InDoubt], &[InDoubt]),
            Move::DeadlinePassed => (&OPEN_STATES, &[Expired]),
            Move::TooSoon => (&OPEN_STATES, &[Skipped]),
            // Only before the import is done, when every loaded row is pending.
            Move::Repeated => (&[Pending], &[Rejected]),
        }
    }

    /// The states this move may start from.
    pub fn sources(self) -> &'static [RowState] {
        self.entry().0
    }

    /// The states this move may end in.
    pub fn targets(self) -> &'static [RowState] {
        self.entry().1
    }

    /// SQL that holds when the row (`table` prefix, e.g. `"r."` or `""`) may
    /// make this move: the guard of the move's UPDATE.
    pub fn guard_sql(self, table: &str) -> String {
        states_sql(self.sources(), table)
    }
}

impl RowState {
    pub const ALL: [RowState; 9] = [
        Pending, TokenReady, InFlight, InDoubt, Sent, Failed, Rejected, Expired, Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Pending => "pending",
            TokenReady => "token_ready",
            InFlight => "in_flight",
            InDoubt => "in_doubt",
            Sent => "sent",
            Failed => "failed",
            Rejected => "rejected",
            Expired => "expired",
            Skipped => "skipped",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether some move takes a row from `self` to `to`.
    pub fn can_become(self, to: RowState) -> bool {
        Move::ALL
            .iter()
            .any(|m| m.sources().contains(&self) && m.targets().contains(&to))
    }

    /// A request for this row may have left and its reply was never
    /// recorded: the provider may have the message.
    pub fn may_have_left(self) -> bool {
        matches!(self, InFlight | InDoubt)
    }

    /// Where a refused attempt leaves the row: a row that has a token
    /// waits with it, one without waits to buy one.
    pub fn after_refusal(has_token: bool) -> RowState {
        if has_token {
            TokenReady
        } else {
            Pending
        }
    }
}

/// The campaign's deadline (`--not-after`) has passed at `now_ms`.
pub fn deadline_passed(not_after_ms: Option<i64>, now_ms: i64) -> bool {
    not_after_ms.is_some_and(|d| now_ms > d)
}

/// The phone's last message (at `last_ms`) is within the frequency cap.
pub fn too_soon(last_ms: i64, now_ms: i64, min_interval_ms: i64) -> bool {
    last_ms > now_ms - min_interval_ms
}

/// `(t.state = 'a' OR t.state = 'b')` for `table` = `"t."`. Written as ORs,
/// not `state IN (…)`: SQLite evaluates an IN list of more than two
/// constants through a temporary b-tree built on every execution of every
/// INSERT and UPDATE that maintains the partial index (a third of the
/// import's time); equality tests cost nothing.
pub fn states_sql(states: &[RowState], table: &str) -> String {
    let tests: Vec<String> = states
        .iter()
        .map(|s| format!("{table}state = '{}'", s.as_str()))
        .collect();
    format!("({})", tests.join(" OR "))
}

/// The open states as SQL. Must read exactly like the `rows_open` partial
/// index's WHERE so SQLite uses the index.
pub fn open_states_sql(table: &str) -> String {
    states_sql(&OPEN_STATES, table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_move_leads_somewhere_from_somewhere() {
        for m in Move::ALL {
            assert!(!m.sources().is_empty() && !m.targets().is_empty(), "{m:?}");
            for to in m.targets() {
                assert!(m.sources().iter().any(|from| from.can_become(*to)));
            }
        }
    }

    #[test]
    fn final_states_never_move_except_a_late_reply_for_an_expired_row() {
        for from in [Sent, Failed, Rejected, Skipped] {
            for to in RowState::ALL {
                assert!(!from.can_become(to), "{from:?} -> {to:?}");
            }
        }
        assert!(Expired.can_become(Sent));
        assert!(!Expired.can_become(InFlight));
        assert!(!Expired.can_become(Pending));
    }

    #[test]
    fn the_table_allows_the_runs_moves_and_nothing_odd() {
        assert!(Pending.can_become(TokenReady));
        assert!(Pending.can_become(InFlight));
        assert!(
            InFlight.can_become(InFlight),
            "an in-doubt retry claims again"
        );
        assert!(InDoubt.can_become(InFlight), "--in-doubt resend");
        assert!(InFlight.can_become(Sent));
        assert!(InFlight.can_become(Pending));
        assert!(InFlight.can_become(TokenReady));
        assert!(InFlight.can_become(InDoubt));
        assert!(!Pending.can_become(Sent), "nothing is sent without a claim");
        assert!(
            !Pending.can_become(InDoubt),
            "a row never claimed cannot be in doubt"
        );
        assert!(!Sent.can_become(Pending));
    }

    #[test]
    fn targets_and_named_rules() {
        assert_eq!(RowState::after_refusal(true), TokenReady);
        assert_eq!(RowState::after_refusal(false), Pending);
        for to in [
            RowState::after_refusal(true),
            RowState::after_refusal(false),
        ] {
            assert!(Move::Refused.targets().contains(&to));
        }
        assert_eq!(Move::DeadlinePassed.targets(), &[Expired]);
        assert_eq!(Move::TooSoon.targets(), &[Skipped]);
        assert_eq!(Move::Repeated.targets(), &[Rejected]);
        assert!(Pending.can_become(Rejected), "a repeat found at import");
        assert!(
            !TokenReady.can_become(Rejected) && !InFlight.can_become(Rejected),
            "a row taken up by a run is never rejected"
        );
        assert!(deadline_passed(Some(10), 11));
        assert!(!deadline_passed(Some(10), 10));
        assert!(!deadline_passed(None, i64::MAX));
        assert!(too_soon(95, 100, 10));
        assert!(!too_soon(90, 100, 10));
    }

    #[test]
    fn states_round_trip_and_the_open_sql_matches_the_index() {
        for s in RowState::ALL {
            assert_eq!(RowState::parse(s.as_str()), Some(s));
        }
        assert_eq!(RowState::parse("nonsense"), None);
        assert_eq!(
            open_states_sql("r."),
            "(r.state = 'pending' OR r.state = 'token_ready' OR r.state = 'in_flight' OR r.state = 'in_doubt')"
        );
        assert_eq!(
            Move::Held.guard_sql(""),
            "(state = 'in_flight' OR state = 'in_doubt')"
        );
    }
}
