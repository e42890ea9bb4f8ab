//! The end of an import: repeated phones and tracking ids, found over the
//! whole campaign at once (one sort of the phone keys, one ordered walk of
//! the tracking index) instead of by a unique index at every insert.

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use super::db::{params, Db, DbError, Dialect};

use crate::model::row_state::{Move, RowState};

/// `(phone key, line)` of every loaded row that takes part in the phone
/// de-duplication: what the last batch's pass sorts. 16 bytes a row.
pub type PhoneKeys = Vec<(i64, u64)>;

static REJECT_REPEAT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE rows SET state = '{}', error_code = ?3, error = ?4, \
         reason_code = ?6, reason_params = ?7, dedup_key = NULL, tracking_id = NULL, data = NULL, updated_ms = ?5 \
         WHERE campaign_id = ?1 AND line = ?2 AND {}",
        RowState::Rejected.as_str(),
        Move::Repeated.guard_sql("")
    )
});

/// Every later line of a repeated phone (among `keys`: all the campaign's
/// loaded rows) or of a repeated tracking id becomes a rejected row naming
/// the line that has it. Returns how many.
pub(super) fn settle_repeats(
    tx: &Db,
    campaign_id: i64,
    mut keys: PhoneKeys,
    now: i64,
) -> Result<u64, DbError> {
    let contested = contested_lines(tx, campaign_id, &mut keys)?;
    drop(keys);
    let rejects = settle(contested);
    let mut reject = tx.prepare_cached(&REJECT_REPEAT)?;
    for (line, code, reason) in &rejects {
        // The first line, for the console's words (model/reason.rs).
        let (reason_code, first) = match *code {
            "duplicate_phone" => ("duplicate.phone", reason.1),
            _ => ("duplicate.tracking_id", reason.1),
        };
        reject.execute(params![
            campaign_id,
            *line as i64,
            code,
            reason.0,
            now,
            reason_code,
            format!(r#"[{{"line":"{first}"}}]"#)
        ])?;
    }
    Ok(rejects.len() as u64)
}

/// A line that shares its phone key or its tracking id with another line:
/// only these can be rejected, or hold a value another line wants.
#[derive(Default)]
struct Contested {
    key: Option<i64>,
    tracking_id: Option<String>,
}

/// The lines sharing a phone key (one sort of `keys`) or a tracking id
/// (one ordered walk of the tracking index), by line.
fn contested_lines(
    tx: &Db,
    campaign_id: i64,
    keys: &mut PhoneKeys,
) -> Result<BTreeMap<u64, Contested>, DbError> {
    let mut contested: BTreeMap<u64, Contested> = BTreeMap::new();
    keys.sort_unstable();
    for group in keys.chunk_by(|a, b| a.0 == b.0).filter(|g| g.len() > 1) {
        for &(key, line) in group {
            contested.entry(line).or_default().key = Some(key);
        }
    }
    // SQLite is told to walk the index (its planner would sort instead).
    let sql = match tx.dialect() {
        Dialect::Sqlite => {
            "SELECT tracking_id, line FROM rows INDEXED BY rows_tracking \
             WHERE campaign_id = ?1 AND tracking_id IS NOT NULL ORDER BY tracking_id"
        }
        Dialect::Postgres => {
            "SELECT tracking_id, line FROM rows \
             WHERE campaign_id = ?1 AND tracking_id IS NOT NULL ORDER BY tracking_id COLLATE \"C\""
        }
    };
    let mut group: Option<(String, Vec<u64>)> = None;
    let close = |group: Option<(String, Vec<u64>)>, contested: &mut BTreeMap<u64, Contested>| {
        if let Some((id, lines)) = group.filter(|(_, lines)| lines.len() > 1) {
            for line in lines {
                contested.entry(line).or_default().tracking_id = Some(id.clone());
            }
        }
    };
    tx.query_each(sql, [campaign_id], |r| {
        let id: String = r.get(0)?;
        let line = r.get::<i64>(1)? as u64;
        match &mut group {
            Some((current, lines)) if *current == id => lines.push(line),
            _ => close(group.replace((id, vec![line])), &mut contested),
        }
        Ok(())
    })?;
    close(group, &mut contested);
    Ok(contested)
}

/// Which contested lines lose, decided line by line in file order exactly
/// as a per-row check would: a line is rejected when an earlier accepted
/// line has its phone (checked first) or its tracking id; the reason names
/// that line.
fn settle(contested: BTreeMap<u64, Contested>) -> Vec<(u64, &'static str, (String, u64))> {
    let mut phones: HashMap<i64, u64> = HashMap::new();
    let mut tracking: HashMap<String, u64> = HashMap::new();
    let mut rejects = Vec::new();
    for (line, c) in contested {
        if let Some(first) = c.key.and_then(|k| phones.get(&k)) {
            rejects.push((
                line,
                "duplicate_phone",
                (format!("duplicate phone: already at line {first} (use --allow-duplicate-phones to send to both)"), *first),
            ));
            continue;
        }
        if let Some(first) = c.tracking_id.as_ref().and_then(|t| tracking.get(t)) {
            rejects.push((
                line,
                "duplicate_tracking_id",
                (
                    format!("duplicate tracking_id: already used at line {first}"),
                    *first,
                ),
            ));
            continue;
        }
        if let Some(k) = c.key {
            phones.insert(k, line);
        }
        if let Some(t) = c.tracking_id {
            tracking.insert(t, line);
        }
    }
    rejects
}
