//! One module per page.

pub mod account;
pub mod admin;
pub mod agents;
pub mod auth;
pub mod chat;
pub mod studio;
