//! One module per page.

pub mod agents;
pub mod chat;
pub mod studio;
