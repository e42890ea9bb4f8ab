//! Plain types and rules every layer shares: the row state machine, phone
//! numbers, the OA's clock (day boundaries, durations), send windows and
//! template specs. Nothing here reaches up into another layer.

pub mod clock;
pub mod error_note;
pub mod fees;
pub mod file_name;
pub mod phone;
pub mod reason;
pub mod row_state;
pub mod shell;
pub mod template_spec;
pub mod window;
