//! Sign-in sessions: they live in `passalong_accounts::session` (a pure state machine beside
//! the rest of who may act as whom, with roles and members' keys); re-exported here so that
//! the dashboard's paths stay as they were.

pub use passalong_accounts::session::*;
